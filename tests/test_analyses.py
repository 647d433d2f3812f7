"""The experiment scripts of analyses/: their claim logic on hand-made numbers, one of them
end to end on the tiny runs, and (slow) the whole `make paper` pipeline on the tiny preset."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyses"))

import beta_sweep  # noqa: E402
import grokking  # noqa: E402
import mechanistic  # noqa: E402


def series(ood, margin=None, acc=None):
    n = len(ood)
    return {
        "epoch": list(range(n)),
        "ood_rate": ood,
        "margin": margin or list(range(n)),
        "acc": acc or [0.5 + i / 100 for i in range(n)],
        "error": [0] * n,
        "kl_exact": [0] * n,
    }


def test_grokking_run_verdicts():
    never = grokking.verdict_for(series([0.0, 0.05, 0.08, 0.02]), ref_ood=0.0)
    assert not never["went_ood"]
    stays = grokking.verdict_for(series([0.0, 0.05, 0.3, 0.5, 0.6]), ref_ood=0.0)
    assert stays["went_ood"] and stays["onset_epoch"] == 2 and not stays["came_back"]
    assert stays["margin_rho"] == pytest.approx(1.0)
    back = grokking.verdict_for(series([0.0, 0.3, 0.4, 0.04]), ref_ood=0.0)
    assert back["came_back"]


def test_grokking_edge_cases():
    # accuracy saturates at 1 after going OOD: flat, not falling
    flat = grokking.verdict_for(series([0.0, 0.3, 0.5, 0.6], acc=[0.9, 1.0, 1.0, 1.0]), ref_ood=0.0)
    assert flat["rising"] is True
    # goes OOD at the last epoch: too late to say anything about what follows
    late = grokking.verdict_for(series([0.0, 0.0, 0.0, 0.5]), ref_ood=0.0)
    assert late["went_ood"] and late["rising"] is None
    assert grokking.claim(_grok({0.1: late, 1.0: late})).verdicts == ["undetermined"]


def test_kl_at_matched_weight_delta():
    assert mechanistic.kl_at_weight_delta([0, 1, 2], [0, 1, 4], 1.5) == 2.5
    assert mechanistic.kl_at_weight_delta([0, 2, 1], [0, 4, 1], 1.5) == 2.5  # unsorted steps


def _grok(per_run):
    return grokking.GrokkingResult("tiny", [0], [0.1, 1.0], {}, {}, {0: per_run})


def test_grokking_claim():
    ok = {
        "went_ood": True,
        "came_back": False,
        "margin_rho": 0.9,
        "acc_rho": 0.8,
        "rising": True,
        "onset_epoch": 3,
        "final_ood": 0.7,
    }
    quiet = {
        "went_ood": False,
        "came_back": False,
        "margin_rho": None,
        "acc_rho": None,
        "rising": None,
        "onset_epoch": None,
    }
    assert grokking.claim(_grok({0.1: ok, 1.0: quiet})).verdicts == ["holds"]
    assert grokking.claim(_grok({0.1: ok | {"came_back": True}, 1.0: quiet})).verdicts == [
        "does not hold"
    ]
    assert grokking.claim(
        _grok({0.1: ok | {"acc_rho": -0.2, "rising": False}, 1.0: quiet})
    ).verdicts == ["partly holds"]
    assert grokking.claim(_grok({0.1: quiet, 1.0: quiet})).verdicts == ["undetermined"]


def test_sweep_helpers():
    assert beta_sweep.optimal_index([0.2, 0.0, 0.0, 0.1]) == 2  # ties: the latest
    assert beta_sweep.optimal_index([0.2, 0.0, 0.0, 0.1], latest=False) == 1
    kl = np.linspace(0, 4, 400)
    u = beta_sweep.binned(kl, (kl - 2) ** 2 / 4 + np.random.default_rng(0).normal(0, 0.01, 400))
    assert beta_sweep.u_shape(u)["u_shaped"]
    mono = beta_sweep.binned(kl, kl / 4)
    assert not beta_sweep.u_shape(mono)["u_shaped"] and beta_sweep.u_shape(mono)["min_bin"] == 0
    flat = beta_sweep.binned(np.ones(50), np.linspace(0, 1, 50))
    assert not beta_sweep.u_shape(flat)["u_shaped"]  # one bin: no shape, no crash
    shallow = beta_sweep.binned(kl, 0.002 * (kl - 2) ** 2)  # a clean dip under a point
    assert not beta_sweep.u_shape(shallow)["u_shaped"]
    b = beta_sweep.band([0.3] * 9 + [5.0])
    assert b["q50"] == pytest.approx(0.3) and b["width"] > 0


def test_sweep_experiment_on_tiny_runs(tmp_path):
    from interp.core.model import ModelSpec

    f2 = beta_sweep.experiment(
        [0],
        tmp_path / "ck",
        tmp_path,
        model=ModelSpec(d_model=32, n_heads=2, d_mlp=32),
        preset="tiny",
        betas=[0.1, 1.0],
        progress=False,
        exact_threshold=1e-2,
    )
    assert f2.id == "F2" and len(f2.verdicts) == 1 and f2.links
    assert (tmp_path / f2.links[0]).exists()


def test_mechanistic_claim_logic():
    base = {
        "attention_tv": 0.02,
        "kl_ratio": 3.0,
        "f4_attention": "holds",
        "f4_non_attention": "holds",
        "gap_closed": {"a": (0.6, 0.6), "n": (0.1, 0.1)},
        "frac_attention": 0.25,
        "ood": {"A": 0.5, "B": 0.1},
        "param_share_attention": 0.63,
        "links": {k: f"{k}/x.html" for k in ("surgery", "attention")},
    }
    f3, f4, f5 = mechanistic.claims([base])
    assert (f3.verdicts, f4.verdicts, f5.verdicts) == (["holds"], ["holds"], ["holds"])
    other = base | {"attention_tv": 0.3, "f4_non_attention": "does not hold", "frac_attention": 0.5}
    f3, f4, f5 = mechanistic.claims([other])
    assert (f3.verdicts, f4.verdicts, f5.verdicts) == (
        ["partly holds"],
        ["partly holds"],
        ["partly holds"],
    )
    worst = base | {
        "attention_tv": 0.3,
        "kl_ratio": 1.0,
        "f4_attention": "does not hold",
        "f4_non_attention": "does not hold",
        "frac_attention": 0.7,
    }
    assert [c.verdicts for c in mechanistic.claims([worst])] == [["does not hold"]] * 3
    assert mechanistic.claims([base, worst])[0].verdict == (
        "holds in 1 of 2 seeds, does not hold in 1 of 2 seeds"
    )
    # A not clearly more OOD than B: no OOD-vs-in-distribution pair to speak of
    same = base | {"ood": {"A": 0.02, "B": 0.01}}
    f3, f4, f5 = mechanistic.claims([same])
    assert (f3.verdicts, f4.verdicts, f5.verdicts) == (
        ["undetermined"],
        ["undetermined"],
        ["holds"],
    )


@pytest.mark.slow
def test_paper_pipeline_on_the_tiny_preset(tmp_path):
    import paper

    reports = tmp_path / "reports"
    rc = paper.main(
        [
            "--tiny",
            "--seeds",
            "0",
            "1",
            "--checkpoints",
            str(tmp_path / "ck"),
            "--reports",
            str(reports),
            "--no-progress",
        ]
    )
    assert rc == 0
    html = (reports / "paper.html").read_text()
    for fid in ("F1", "F2", "F3", "F4", "F5"):
        assert f">{fid}<" in html
    assert "grokking/" in html and "beta_sweep/" in html and "mechanistic/" in html
    index = (reports / "index.html").read_text()
    assert "paper.html" in index and "surgery/" in index
