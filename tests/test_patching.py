from functools import partial

import pytest
import torch

from interp.analysis.interventions import patch_grid, patched, run_patched, sites, swap
from interp.analysis.patching import (
    PatchingResult,
    decision_metric,
    divergence,
    engine_checks,
    greedy_patched,
    place_pairs,
    place_patching,
    within_pairs,
)
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import EOS, NumberLine, get_task, prompt_ids
from interp.core.sampling import greedy
from interp.patching import main
from interp.present.pages.patching import best_cells, build_report, findings
from interp.runs.store import load

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)
TOKENS = torch.tensor([prompt_ids(s) + [int(c) for c in str(s)] for s in (305, 123, 480)])
TASK = get_task("sweep")


class Opaque(NumberLine):
    """The number line without a judge and without places to corrupt."""

    def prompt_places(self, prompt):
        return []

    def judge(self, prompts, tokens, lengths):
        return None


@pytest.fixture
def ab():
    return build_model(SPEC, seed=1).eval(), build_model(SPEC, seed=2).eval()


def _hooked(model):
    return any(hp.has_hooks() for hp in model.hook_dict.values())


def test_patching_a_model_with_itself_changes_nothing(ab):
    a, b = ab
    checks = engine_checks(a, b, TOKENS)
    assert checks.self_patch_max_abs_logit_change == 0.0


def test_patched_removes_its_hooks_on_exit_and_on_error(ab):
    a, b = ab
    plain = a(TOKENS)
    _, b_cache = b.run_with_cache(TOKENS)
    last = sites(a)[-1]
    with patched(a, b_cache, [(last, 1)]) as m:
        assert m is a and _hooked(a)
        assert not torch.equal(a(TOKENS), plain)
    assert not _hooked(a) and torch.equal(a(TOKENS), plain)
    with pytest.raises(RuntimeError, match="inside"):
        with patched(a, b_cache, [(last, 1), (sites(a)[0], 2)]):
            raise RuntimeError("inside")
    assert not _hooked(a) and torch.equal(a(TOKENS), plain)


def test_resid_post_everywhere_gives_b_when_the_readout_is_b(ab):
    a, b = ab
    _, b_cache = b.run_with_cache(TOKENS)
    last = sites(a)[-1]
    everywhere = [(last, p) for p in range(TOKENS.shape[1])]
    same_readout = swap(a, b, ["ln", "unembed"])  # A's blocks, B's final LayerNorm and W_U
    assert torch.equal(run_patched(same_readout, TOKENS, b_cache, everywhere), b(TOKENS))
    assert engine_checks(a, b, TOKENS).resid_post_all_positions_vs_readout_max_abs == 0.0
    assert not torch.equal(run_patched(a, TOKENS, b_cache, everywhere), b(TOKENS))


def test_head_site_patches_one_head_only(ab):
    a, b = ab
    _, b_cache = b.run_with_cache(TOKENS)
    z1 = next(s for s in sites(a) if s.label == "L0H1 z")
    seen = {}

    def grab(act, hook):
        seen["z"] = act.clone()

    setter = partial(z1.setter(2), source=b_cache[z1.hook])
    a.run_with_hooks(TOKENS, fwd_hooks=[(z1.hook, setter), (z1.hook, grab)])
    z = seen["z"]
    _, a_cache = a.run_with_cache(TOKENS)
    assert torch.equal(z[:, 2, 1], b_cache[z1.hook][:, 2, 1])
    assert torch.equal(z[:, 2, 0], a_cache[z1.hook][:, 2, 0])
    assert torch.equal(z[:, 3], a_cache[z1.hook][:, 3])


def test_decision_metric_endpoints(ab):
    a, b = ab
    a_logits, b_logits = a(TOKENS), b(TOKENS)
    d = decision_metric(TOKENS, a_logits, b_logits, plen=4, eos=EOS)
    assert torch.allclose(d.metric(b_logits)[:, 0], d.gap, atol=1e-5)  # B's own logits: full gap
    assert torch.allclose(d.metric(b_logits)[:, 1], torch.zeros(3), atol=1e-6)
    assert torch.equal(d.metric(a_logits)[:, 0], torch.zeros(3))
    assert torch.allclose(d.metric(a_logits)[:, 1], d.baseline_kl)
    assert (d.pos >= 3).all() and (d.pos < TOKENS.shape[1]).all()


def test_patch_grid_with_the_models_own_cache_is_flat(ab):
    a, _ = ab
    logits, cache = a.run_with_cache(TOKENS)
    grid = patch_grid(
        a, TOKENS, cache, sites(a), lambda lg: (lg - logits).abs().amax(dim=(1, 2))[:, None]
    )
    assert grid.shape == (len(sites(a)), TOKENS.shape[1], 3, 1) and float(grid.max()) == 0.0


def test_place_pairs_differ_in_one_digit():
    prompts = torch.tensor([305, 123, 480, 999])
    for place in range(3):
        pp = place_pairs(TASK, prompts, place, seed=0)
        assert pp.clean.shape == pp.corrupted.shape == (4, 4 + place)
        diff = (pp.clean != pp.corrupted).nonzero()
        assert diff[:, 1].unique().tolist() == [place]
        assert (pp.corrupted[:, 0] != 0).all() and (pp.clean_token != pp.corrupted_token).all()
        assert torch.equal(pp.clean[torch.arange(4), place], pp.clean_token)
        assert pp.place == ["hundreds", "tens", "units"][place]
        assert pp.positions == ["hundreds", "tens", "units", "="] + [f"y{i}" for i in range(place)]
        # the identity answer is teacher-forced up to the corrupted digit
        assert pp.clean[:, 4:].tolist() == [
            [int(c) for c in str(s)][:place] for s in (305, 123, 480, 999)
        ]


def test_within_policy_known_answers(tiny_root):
    model = load("tiny/beta0.1", root=tiny_root)
    prompts = torch.tensor([101, 123, 145, 150, 133, 119])
    out = place_patching(model, within_pairs(TASK, prompts))
    assert [r.place for r in out] == ["hundreds", "tens", "units"]
    for place, r in enumerate(out):
        rp = r.resid_pre[0]
        # the clean residual at the changed digit makes the corrupted run the clean run
        assert float(rp[place]) == pytest.approx(1.0, abs=1e-5)
        # at the other prompt digits the two runs already agree: no effect
        for p in range(3):
            if p != place:
                assert float(rp[p]) == pytest.approx(0.0, abs=1e-5)


def test_greedy_patched_without_reachable_patch_is_greedy(ab):
    a, b = ab
    prompts = torch.tensor([305, 123])
    far = sites(a)[0]
    got = greedy_patched(a, b, TASK, prompts, far, pos=50, limit=6)
    want = greedy(a, TASK, prompts, 6)
    assert torch.equal(got.tokens, want.tokens) and torch.equal(got.lengths, want.lengths)
    j_got, j_want = (TASK.judge(prompts, r.tokens, r.lengths) for r in (got, want))
    assert torch.equal(j_got.ood, j_want.ood) and torch.equal(j_got.error, j_want.error)


def test_a_task_without_judge_or_places_is_not_computable(ab):
    a, b = ab
    task = Opaque("opaque", s_min=100, s_max=500, window=10, test_fraction=0.5)
    prompts = torch.tensor([305, 123, 480])
    assert within_pairs(task, prompts) is None
    div = divergence(a, b, task, prompts)  # without a judge: the prompts where A's answer ≠ B's
    ga, gb = (greedy(m, task, prompts, task.max_new_tokens) for m in (a, b))
    differ = [i for i in range(3) if ga.text(task, i) != gb.text(task, i)]
    assert not div.judged and div.rows == differ
    res = PatchingResult(
        a="A", b="B", ref="ref", cross=None, within=None,
        checks=engine_checks(a, b, TOKENS), checkpoints=[], judged=False,
    )  # fmt: skip
    found = findings(res)
    assert len(found) == 2 and "same greedy answer" in found[0] and "not computable" in found[1]
    report = build_report(res, {})
    assert report.data["cross"] is None and report.data["within"] is None
    assert report.data["findings"] == found
    assert "Not computable" in report.sections[1].paragraphs[0]


def test_cli(tiny_root, tmp_path, capsys):
    args = ["--checkpoints", str(tiny_root), "--reports", str(tmp_path), "--max-prompts", "8"]
    assert main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", *args]) == 0
    assert (tmp_path / "patching" / "tiny-beta0.1_vs_tiny-beta1.0.html").exists()
    capsys.readouterr()
    assert main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", *args, "--max-prompts", "0"]) == 2
    assert "max-prompts" in capsys.readouterr().err


def test_two_layer_models_label_every_row():
    model = build_model(ModelSpec(n_layers=2, d_model=32, n_heads=2, d_mlp=32), seed=3)
    out = place_patching(model, within_pairs(TASK, torch.tensor([305, 123, 480])))
    grid, labels = out[1].grid()  # the tens digit
    assert len(labels) == grid.shape[0] == 2 * (3 + 2)
    assert labels[:5] == ["L0 resid_pre", "L0 attn_out", "L0 mlp_out", "L0H0 out", "L0H1 out"]
    assert labels[5] == "L1 resid_pre"
    # the clean input at the changed digit makes the corrupted run the clean run
    assert float(grid[labels.index("L0 resid_pre"), 1]) == pytest.approx(1.0, abs=1e-5)
    # layer 1's residual there does not: later positions mixed the digit in at layer 0
    assert float(grid[labels.index("L1 resid_pre"), 1]) < 0.99


def test_findings_name_ties_and_none():
    grid = torch.tensor([[0.0, 0.9], [0.9, 0.1]])
    assert best_cells(grid, ["r0", "r1"], ["c0", "c1"], ".0%") == "r0 at c1 and r1 at c0 (90%)"
    assert best_cells(torch.zeros(2, 2), ["r0", "r1"], ["c0", "c1"], ".0%") == "none"
