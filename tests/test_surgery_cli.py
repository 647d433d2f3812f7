"""The surgery analysis and command on the tiny policies of conftest."""

import json
import shutil

import pytest

from interp.analysis.claims import gap_closed
from interp.analysis.surgery import (
    A,
    B,
    Interpolation,
    Series,
    SurgeryResult,
    SurgerySettings,
    Variant,
    WeightChange,
    run_surgery,
    surgery_claims,
)
from interp.core.metrics import evaluate
from interp.core.model import ModelSpec
from interp.core.numberline import make_dataset
from interp.core.scoring import split_logprobs
from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey
from interp.runs.store import find_run, load, load_checkpoint
from interp.surgery import main

FAST = ["--no-progress", "--mc-samples", "4", "--alphas", "3", "--exact-threshold", "0.01"]


def fast_surgery(root, b="tiny/beta1.0", **kw):
    """run_surgery on the tiny runs, with the cheap settings the tests use."""
    settings = SurgerySettings(**(dict(exact_threshold=1e-2, mc_samples=0, alphas=2) | kw))
    return run_surgery("tiny/beta0.1", b, root, settings, progress=False)


def swapped(group):
    return Variant("swap", group)


def cli(root, reports, *args):
    return main(["--checkpoints", str(root), "--reports", str(reports), *FAST, *args])


def test_report_written_with_twin_and_index(tiny_root, tmp_path, capsys):
    rc = cli(tiny_root, tmp_path, "--a", "tiny/beta0.1", "--b", "tiny/beta1.0")
    assert rc == 0
    out = capsys.readouterr().out
    html = tmp_path / "surgery" / "tiny-beta0.1_vs_tiny-beta1.0.html"
    assert str(html) in out and "non-attention" in out
    doc = html.read_text()
    assert "<script" not in doc and "http://" not in doc and "https://" not in doc
    assert doc.count("data:image/png;base64,") >= 6
    twin = json.loads(html.with_suffix(".json").read_text())
    assert twin["kind"] == "surgery" and len(twin["summary"]) == 4
    titles = {t["title"] for t in twin["tables"]}
    assert {
        "The case study's claims",
        "One group from B",
        "Interpolation",
        "Greedy responses",
    } <= titles
    a_final = load_checkpoint("tiny/beta0.1", root=tiny_root)
    shas = {(c["policy"], c["step"]): c["sha256"] for c in twin["provenance"]["checkpoints"]}
    assert shas[("tiny/beta0.1", a_final.step)] == a_final.sha256
    assert "tiny/ref" in {c["policy"] for c in twin["provenance"]["checkpoints"]}
    data = twin["data"]
    assert data["steps"] == find_run("tiny/beta0.1", tiny_root).steps()
    assert set(data["trajectory"]) == {"A", "B", "A[attention←B]", "A[non-attention←B]"}
    index = (tmp_path / "index.html").read_text()
    assert "surgery/tiny-beta0.1_vs_tiny-beta1.0.html" in index


def test_stored_evaluations_equal_recomputed_ones(tiny_root):
    # surgery reuses the evaluation training stored; it must be what evaluate() gives now
    res = fast_surgery(tiny_root)
    data = make_dataset("tiny", 0)
    ref = load("tiny/ref", root=tiny_root)
    ref_seq = split_logprobs(ref, data.test)
    for i, step in enumerate(res.steps):
        model = load("tiny/beta0.1", step=step, root=tiny_root)
        fresh = evaluate(model, data.test, ref, 0.1, ref_seq, exact_threshold=1e-2)
        for m in ("kl_greedy", "kl_exact", "ood_rate", "ood_mass", "acc", "margin"):
            assert res.of(A)[m][i] == pytest.approx(fresh[m], abs=1e-6), (step, m)


def test_swapping_the_whole_model_gives_b_at_every_step(tiny_root):
    res = fast_surgery(tiny_root, groups=["model"])
    a_b, b = res.of(swapped("model")), res.of(B)
    for m in ("kl_greedy", "kl_exact", "ood_rate", "ood_mass", "error", "acc"):
        assert a_b[m] == b[m], m
    # B's stored evaluation used β = 1.0; the report puts every margin at A's β = 0.1
    assert a_b["margin"] == pytest.approx(b["margin"], abs=1e-9)


def test_interpolation_endpoints_are_a_and_the_swap(tiny_root):
    res = fast_surgery(tiny_root, alphas=3)
    last = res.steps.index(res.table_step)
    for g in ("attention", "non-attention"):
        curve = res.interpolation.curves[g]["kl_exact"]
        assert curve[0] == res.of(A)["kl_exact"][last]
        assert curve[-1] == res.of(swapped(g))["kl_exact"][last]
    row = next(r for r in res.single if r.group == "attention")
    assert row.delta["kl_exact"] == pytest.approx(
        res.of(swapped("attention"))["kl_exact"][last] - res.of(A)["kl_exact"][last]
    )


def test_pair_final_and_ref_donor(tiny_root, tmp_path):
    res = fast_surgery(tiny_root, pair="final")
    assert set(res.donor_steps) == {load_checkpoint("tiny/beta1.0", root=tiny_root).step}
    res = fast_surgery(tiny_root, "ref")
    assert res.b == "tiny/ref" and res.pair == "final"
    assert all(v == 0.0 for v in res.of(B)["kl_exact"])
    assert res.interpolation.curves["attention"]["kl_exact"][0] == res.of(A)["kl_exact"][-1]


@pytest.fixture(scope="module")
def mixed_root(tiny_root, tmp_path_factory):
    """tiny_root's runs plus seed 1 trained with a different architecture."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(tiny_root / "tiny", root / "tiny")
    key = PolicyKey("tiny", "dpo", 0.5, 1)
    ensure_trained(
        [key],
        root,
        ModelSpec(d_model=16, n_heads=2, d_mlp=16),
        2,
        progress=False,
        announce=False,
        exact_threshold=1e-2,
    )
    return root


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--a", "tiny/beta0.3"], "unknown policy"),
        (["--a", "tiny/beta0.1", "--b", "tiny/beta0.5-s1"], "different architectures"),
        (
            ["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", "--groups", "atention"],
            "unknown parameter group",
        ),
        (["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", "--step", "7"], "no step 7"),
        (["--a", "tiny/ref", "--b", "tiny/beta1.0"], "must be a preference run"),
        (["--a", "tiny/beta0.1", "--exact-threshold", "1.5"], "exact-threshold"),
        (["--a", "tiny/beta0.1", "--alphas", "1"], "alphas"),
        (["--a", "tiny/beta0.1", "--mc-samples", "1"], "mc-samples"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(mixed_root, tmp_path, capsys, args, msg):
    reports = tmp_path / "reports"
    assert cli(mixed_root, reports, *args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(reports.rglob("*.html")) and not list(reports.rglob("*.json"))


def test_unwritable_reports_folder(tiny_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli(tiny_root, blocker / "reports", "--a", "tiny/beta0.1", "--b", "tiny/beta1.0") == 2
    err = capsys.readouterr().err
    assert "cannot write reports" in err and err.count("\n") == 1


def test_gap_closed():
    assert gap_closed(4.0, 2.0, 0.0) == 0.5
    assert gap_closed(4.0, -1.0, 0.0) == 1.25
    assert gap_closed(1.0, 0.5, 1.0) is None
    assert gap_closed(None, 0.5, 1.0) is None


def _result(att, non, frac):
    """A SurgeryResult with a single step where A has KL 4, OOD 0.5 and B has 0, 0."""
    series = [
        Series(A, {"kl_exact": [4.0], "ood_rate": [0.5]}),
        Series(B, {"kl_exact": [0.0], "ood_rate": [0.0]}),
        Series(swapped("attention"), {"kl_exact": [att[0]], "ood_rate": [att[1]]}),
        Series(swapped("non-attention"), {"kl_exact": [non[0]], "ood_rate": [non[1]]}),
    ]
    return SurgeryResult(
        a="A",
        b="B",
        ref="ref",
        beta=0.1,
        pair="step",
        groups=["attention", "non-attention"],
        exact_threshold=1e-4,
        steps=[10],
        donor_steps=[10],
        series=series,
        weights=WeightChange([1.0], [frac], [1.0], [0.5]),
        param_share={"attention": 0.63},
        table_step=10,
        table_donor_step=10,
        single=[],
        interpolation=Interpolation([], {}),
        kl_mc=[],
        example=None,
        samples=[],
        checkpoints=[],
    )


@pytest.mark.parametrize(
    "att,non,frac,verdicts",
    [
        ((1.0, 0.1), (3.9, 0.45), 0.25, ["holds", "holds", "holds"]),
        ((1.0, 0.45), (1.0, 0.1), 0.5, ["partly holds", "does not hold", "partly holds"]),
        ((3.9, 0.45), (1.0, 0.45), 0.7, ["does not hold", "partly holds", "does not hold"]),
    ],
)
def test_claim_verdicts(att, non, frac, verdicts):
    got = surgery_claims(_result(att, non, frac))
    assert [c.verdict for c in got] == verdicts


def test_no_gap_no_verdict():
    res = _result((1.0, 0.1), (3.9, 0.45), 0.25)
    res.of(B).values["ood_rate"] = [0.5]  # A and B equally OOD: nothing to close
    assert [c.verdict for c in surgery_claims(res)][:2] == ["undetermined", "undetermined"]


def test_stale_stored_evaluations_are_recomputed(tiny_root, tmp_path, monkeypatch):
    import interp.analysis.surgery.run as surgery
    import interp.core.metrics as metrics

    base = fast_surgery(tiny_root)
    calls = {"n": 0}
    real = surgery.evaluate_many

    def counting(models, *a, **k):
        calls["n"] += len(models)  # models evaluated, however they are batched
        return real(models, *a, **k)

    monkeypatch.setattr(surgery, "evaluate_many", counting)
    fast_surgery(tiny_root)
    fresh_calls = calls["n"]
    monkeypatch.setattr(metrics, "EVAL_VERSION", metrics.EVAL_VERSION + 1)
    calls["n"] = 0
    again = fast_surgery(tiny_root)
    n_steps = len(base.steps)
    assert calls["n"] == fresh_calls + 2 * n_steps  # A and B at every step, recomputed
    assert again.of(A)["kl_exact"] == pytest.approx(base.of(A)["kl_exact"])
