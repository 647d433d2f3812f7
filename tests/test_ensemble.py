import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from interp.core.model import build_model
from interp.errors import UserError
from interp.runs import steps
from interp.runs.config import Hyper, RunSpec
from interp.runs.ensemble import (
    Ensemble,
    member_state,
    stack_states,
    train_ensemble,
)
from interp.runs.files import run_dir
from interp.runs.names import PolicyKey
from interp.runs.steps import save_checkpoint
from interp.runs.store import Run
from interp.runs.trainer import deterministic, make_optimizer, train_run

from .conftest import TINY_MODEL


def specs(betas, loss="dpo", hyper=None):
    out = []
    for b in betas:
        s = RunSpec.for_key(PolicyKey("tiny", loss, b, 0), TINY_MODEL, 3, exact_threshold=1e-2)
        out.append(replace(s, hyper=hyper) if hyper else s)
    return out


def weights(run, step):
    return load_file(str(run.checkpoint(step).path / "model.safetensors"))


@pytest.fixture
def two_roots(tiny_root, tmp_path):
    for name in ("loop", "ens"):
        shutil.copytree(tiny_root / "tiny" / "ref", tmp_path / name / "tiny" / "ref")
    return tmp_path / "loop", tmp_path / "ens"


@pytest.mark.parametrize(
    "loss,hyper",
    [
        ("dpo", None),
        ("kto", None),
        (
            "ipo",
            Hyper(
                epochs=2,
                optimizer="adamw",
                lr=1e-3,
                batch_size=16,
                grad_clip=0.05,
                weight_decay=0.01,
            ),
        ),
    ],
)
def test_ensemble_equals_one_run_at_a_time(two_roots, loss, hyper):
    loop_root, ens_root = two_roots
    ss = specs([0.05, 0.5, 2.0], loss, hyper)
    loops = [train_run(s, loop_root, progress=False) for s in ss]
    ens = train_ensemble(ss, ens_root, progress=False)
    for a, b in zip(loops, ens):
        assert a.steps() == b.steps() and b.complete
        for step in a.steps():
            wa, wb = weights(a, step), weights(b, step)
            # equal up to float rounding: batched kernels may sum in another order
            assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=2e-4) for k in wa), (a.name, step)
            ea, eb = a.checkpoint(step).eval, b.checkpoint(step).eval
            for m, v in ea.items():
                assert eb[m] == pytest.approx(v, rel=1e-3, abs=1e-4), (a.name, step, m)
        la, lb = a.log(), b.log()
        for col in la:
            assert lb[col] == pytest.approx(la[col], rel=1e-3, abs=1e-4), col
        assert not list(b.path.glob("step_*/optimizer.safetensors"))


def test_interrupted_ensemble_resumes_to_the_same_weights(two_roots, monkeypatch):
    straight_root, broken_root = two_roots
    ss = specs([0.1, 1.0])
    straight = train_ensemble(ss, straight_root, progress=False)
    real, n = save_checkpoint, {"saves": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        n["saves"] += 1
        if n["saves"] == 3:  # both members at step 0, then one member's next checkpoint
            raise KeyboardInterrupt
        return out

    with monkeypatch.context() as m:
        m.setattr(steps, "save_checkpoint", flaky)
        with pytest.raises(KeyboardInterrupt):
            train_ensemble(ss, broken_root, progress=False)
    resumed = train_ensemble(ss, broken_root, progress=False)
    for a, b in zip(straight, resumed):
        for step in a.steps():
            wa, wb = weights(a, step), weights(b, step)
            assert all(torch.equal(wa[k], wb[k]) for k in wa), (a.name, step)  # same code path


def test_per_member_clipping_matches_torch():
    models = [build_model(TINY_MODEL, seed=s) for s in range(3)]
    ens = Ensemble(models)
    g = torch.Generator().manual_seed(0)
    for scale, p in zip([0.1, 1.0, 10.0, 5.0] * 10, ens.params.values()):
        p.grad = torch.randn(p.shape, generator=g) * scale
    for e, m in enumerate(models):
        for name, p in m.named_parameters():
            p.grad = ens.params[name].grad[e].clone()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    ens.clip_grad_norm_(1.0)
    for e, m in enumerate(models):
        for name, p in m.named_parameters():
            assert torch.allclose(ens.params[name].grad[e], p.grad, atol=1e-6), name


def test_member_round_trip_and_optimizer_state_slices():
    models = [build_model(TINY_MODEL, seed=s) for s in range(2)]
    ens = Ensemble(models)
    x = torch.tensor([[1, 2, 3, 10, 1, 2], [4, 5, 10, 4, 5, 11]])
    assert torch.allclose(ens(x)[1], models[1](x), atol=1e-6)
    assert torch.equal(ens.member(0)(x), models[0](x))  # member() copies the exact weights
    # member e's gradient under the summed loss is its own model's gradient
    ens(x).square().mean(dim=(1, 2, 3)).sum().backward()
    models[1](x).square().mean().backward()
    for name, p in models[1].named_parameters():
        assert torch.allclose(ens.params[name].grad[1], p.grad, rtol=1e-5, atol=1e-7), name
    for p in ens.params.values():
        p.grad = None
    opt = make_optimizer(ens.params.values(), Hyper(1, "adam", 1e-3, 4))
    ens(x).sum().backward()
    opt.step()
    state = opt.state_dict()
    parts = [member_state(state, e) for e in range(2)]
    assert parts[0]["state"][0]["exp_avg"].shape == models[0].embed.W_E.shape
    back = stack_states(parts)
    for idx, st in state["state"].items():
        for k, v in st.items():
            assert torch.equal(back["state"][idx][k], v)


def test_runs_that_differ_in_more_than_beta_are_refused():
    a, b = specs([0.1, 1.0])
    with pytest.raises(UserError, match="differ in more than"):
        train_ensemble([a, replace(b, key=PolicyKey("tiny", "dpo", 1.0, 1))])


def test_one_diverging_member_does_not_stop_the_others(two_roots, monkeypatch):
    from interp.errors import TrainingDiverged
    from interp.runs import ensemble

    _, root = two_roots
    real = ensemble.LOSSES["dpo"]
    calls = {"n": 0}

    def nan_for_beta_half(lp, betas):
        calls["n"] += 1
        out = real(lp, betas)
        if calls["n"] > 5:  # from the sixth step on, the β = 0.5 member blows up
            out = torch.where(betas == 0.5, torch.full_like(out, float("nan")), out)
        return out

    monkeypatch.setitem(ensemble.LOSSES, "dpo", nan_for_beta_half)
    ss = specs([0.05, 0.5, 2.0])
    with pytest.raises(TrainingDiverged, match="tiny/beta0.5"):
        train_ensemble(ss, root, progress=False)
    runs = [Run(s.key, run_dir(s.key, root)) for s in ss]
    assert [r.complete for r in runs] == [True, False, True]
    assert runs[1].steps() and runs[1].steps()[-1] < runs[0].steps()[-1]


def test_ensemble_interrupted_inside_its_final_save_resumes(two_roots, monkeypatch):
    """One member's last checkpoint is written, the other's is not: resuming must finish
    both (the first has nothing left to train) with the straight run's weights."""
    straight_root, broken_root = two_roots
    ss = specs([0.1, 1.0])
    straight = train_ensemble(ss, straight_root, progress=False)
    n_saves = len(straight[0].steps())
    real, n = save_checkpoint, {"saves": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        n["saves"] += 1
        if n["saves"] == 2 * (n_saves - 1) + 1:  # the first member's final checkpoint
            raise KeyboardInterrupt
        return out

    with monkeypatch.context() as m:
        m.setattr(steps, "save_checkpoint", flaky)
        with pytest.raises(KeyboardInterrupt):
            train_ensemble(ss, broken_root, progress=False)
    assert [Run(s.key, run_dir(s.key, broken_root)).complete for s in ss] == [False, False]
    resumed = train_ensemble(ss, broken_root, progress=False)
    for a, b in zip(straight, resumed):
        assert b.complete and a.steps() == b.steps()
        wa, wb = weights(a, a.steps()[-1]), weights(b, b.steps()[-1])
        assert all(torch.equal(wa[k], wb[k]) for k in wa), a.name


def test_ensemble_gradients_are_the_same_every_time():
    """The stacked embeddings' backward pass (index_put_ with accumulate) sums in an order
    that depends on thread scheduling; under `deterministic` the same step gives the same
    bits every time, which bit-for-bit resumption depends on."""
    import hashlib

    ens = Ensemble([build_model(TINY_MODEL, seed=s) for s in range(5)])
    x = torch.randint(0, 13, (128, 10), generator=torch.Generator().manual_seed(0))
    seen = set()
    was = torch.are_deterministic_algorithms_enabled()
    for _ in range(8):
        for p in ens.params.values():
            p.grad = None
        with deterministic():
            ens(x).logsumexp(-1).sum().backward()
        grads = (ens.params[k].grad.numpy().tobytes() for k in ("embed.W_E", "pos_embed.W_pos"))
        seen.add(tuple(hashlib.sha256(g).hexdigest() for g in grads))
    assert len(seen) == 1
    assert torch.are_deterministic_algorithms_enabled() == was  # restored
