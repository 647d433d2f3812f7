import pytest
import torch

from interp.data import prompt_ids
from interp.model import ModelSpec, build_model
from interp.patching import (
    decision_metric,
    digit_pairs,
    digit_patching,
    engine_checks,
    greedy_patched,
    main,
    patch_grid,
    run_patched,
    sites,
    task_value,
)
from interp.surgery import swap

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)
TOKENS = torch.tensor([prompt_ids(s) + [int(c) for c in str(s)] for s in (305, 123, 480)])


@pytest.fixture
def ab():
    return build_model(SPEC, seed=1).eval(), build_model(SPEC, seed=2).eval()


def test_patching_a_model_with_itself_changes_nothing(ab):
    a, b = ab
    checks = engine_checks(a, b, TOKENS)
    assert checks["self_patch_max_abs_logit_change"] == 0.0


def test_resid_post_everywhere_gives_b_when_the_readout_is_b(ab):
    a, b = ab
    _, b_cache = b.run_with_cache(TOKENS)
    last = sites(a)[-1]
    everywhere = [(last, p) for p in range(TOKENS.shape[1])]
    same_readout = swap(a, b, ["ln", "unembed"])  # A's blocks, B's final LayerNorm and W_U
    assert torch.equal(run_patched(same_readout, TOKENS, b_cache, everywhere), b(TOKENS))
    assert engine_checks(a, b, TOKENS)["resid_post_all_positions_vs_readout_max_abs"] == 0.0
    assert not torch.equal(run_patched(a, TOKENS, b_cache, everywhere), b(TOKENS))


def test_head_site_patches_one_head_only(ab):
    a, b = ab
    _, b_cache = b.run_with_cache(TOKENS)
    z1 = next(s for s in sites(a) if s.label == "L0H1 z")
    seen = {}

    def grab(act, hook):
        seen["z"] = act.clone()

    a.run_with_hooks(TOKENS, fwd_hooks=[(z1.hook, _wrap(z1, b_cache)), (z1.hook, grab)])
    z = seen["z"]
    _, a_cache = a.run_with_cache(TOKENS)
    assert torch.equal(z[:, 2, 1], b_cache[z1.hook][:, 2, 1])
    assert torch.equal(z[:, 2, 0], a_cache[z1.hook][:, 2, 0])
    assert torch.equal(z[:, 3], a_cache[z1.hook][:, 3])


def _wrap(site, cache):
    from functools import partial

    return partial(site.setter(2), source=cache[site.hook])


def test_decision_metric_endpoints(ab):
    a, b = ab
    a_logits, b_logits = a(TOKENS), b(TOKENS)
    q, metric, base, gap = decision_metric(TOKENS, a_logits, b_logits, plen=4)
    assert torch.allclose(metric(b_logits)[:, 0], gap, atol=1e-5)  # B's own logits: full gap
    assert torch.allclose(metric(b_logits)[:, 1], torch.zeros(3), atol=1e-6)
    assert torch.equal(metric(a_logits)[:, 0], torch.zeros(3))
    assert torch.allclose(metric(a_logits)[:, 1], base)
    assert (q >= 3).all() and (q < TOKENS.shape[1]).all()


def test_patch_grid_with_the_models_own_cache_is_flat(ab):
    a, _ = ab
    logits, cache = a.run_with_cache(TOKENS)
    grid = patch_grid(
        a, TOKENS, cache, sites(a), lambda lg: (lg - logits).abs().amax(dim=(1, 2))[:, None]
    )
    assert grid.shape == (len(sites(a)), TOKENS.shape[1], 3, 1) and float(grid.max()) == 0.0


def test_digit_pairs_differ_in_one_digit():
    prompts = torch.tensor([305, 123, 480, 999])
    for place in range(3):
        clean, corrupt, want, other = digit_pairs(prompts, place, seed=0)
        assert clean.shape == corrupt.shape == (4, 4 + place)
        diff = (clean != corrupt).nonzero()
        assert diff[:, 1].unique().tolist() == [place]
        assert (corrupt[:, 0] != 0).all() and (want != other).all()
        assert torch.equal(clean[torch.arange(4), place], want)


def test_within_policy_known_answers(tiny_root):
    from interp import load

    model = load("tiny/beta0.1", root=tiny_root)
    prompts = torch.tensor([101, 123, 145, 150, 133, 119])
    out = digit_patching(model, prompts)
    for place, name in enumerate(["hundreds", "tens", "units"]):
        rp = out[name]["resid_pre"][0]
        # the clean residual at the changed digit makes the corrupted run the clean run
        assert float(rp[place]) == pytest.approx(1.0, abs=1e-5)
        # at the other prompt digits the two runs already agree: no effect
        for p in range(3):
            if p != place:
                assert float(rp[p]) == pytest.approx(0.0, abs=1e-5)


def test_greedy_patched_without_reachable_patch_is_greedy(ab):
    from interp.sampling import greedy

    a, b = ab
    prompts = torch.tensor([305, 123])
    far = sites(a)[0]
    got = greedy_patched(a, b, prompts, far, pos=50, limit=6)
    want = greedy(a, prompts, 6)
    assert got == [want.text(i) for i in range(2)]
    assert task_value("305.") == 305 and task_value("3=5.") is None and task_value(".") is None


def test_cli(tiny_root, tmp_path, capsys):
    args = ["--checkpoints", str(tiny_root), "--reports", str(tmp_path), "--max-prompts", "8"]
    assert main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", *args]) == 0
    assert (tmp_path / "patching" / "tiny-beta0.1_vs_tiny-beta1.0.html").exists()
    capsys.readouterr()
    assert main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", *args, "--max-prompts", "0"]) == 2
    assert "max-prompts" in capsys.readouterr().err


def test_two_layer_models_label_every_row():
    from interp.patching import within_grid

    model = build_model(ModelSpec(n_layers=2, d_model=32, n_heads=2, d_mlp=32), seed=3)
    out = digit_patching(model, torch.tensor([305, 123, 480]))
    grid, labels = within_grid(out["tens"])
    assert len(labels) == grid.shape[0] == 2 * (3 + 2)
    assert labels[:5] == ["L0 resid_pre", "L0 attn_out", "L0 mlp_out", "L0H0 out", "L0H1 out"]
    assert labels[5] == "L1 resid_pre"
    # the clean input at the changed digit makes the corrupted run the clean run
    assert float(grid[labels.index("L0 resid_pre"), 1]) == pytest.approx(1.0, abs=1e-5)
    # layer 1's residual there does not: later positions mixed the digit in at layer 0
    assert float(grid[labels.index("L1 resid_pre"), 1]) < 0.99


def test_findings_name_ties_and_none():
    from interp.patching import _best

    grid = torch.tensor([[0.0, 0.9], [0.9, 0.1]])
    assert _best(grid, ["r0", "r1"], ["c0", "c1"], ".0%") == "r0 at c1 and r1 at c0 (90%)"
    assert _best(torch.zeros(2, 2), ["r0", "r1"], ["c0", "c1"], ".0%") == "none"
