import math

import pytest
import torch
from safetensors.torch import load_file

from interp import train as tr
from interp.core.losses import LOSSES
from interp.core.numberline import make_dataset
from interp.core.scoring import model_logprobs
from interp.errors import PolicyNotFound, TrainingDiverged
from interp.runs import steps, trainer
from interp.runs.config import RunSpec, checkpoint_steps, paper_betas
from interp.runs.ensure import ensure_default_policies, ensure_trained
from interp.runs.files import RUN_FILE, read_json, run_dir, step_dirname
from interp.runs.names import PolicyKey
from interp.runs.steps import load_weights, save_checkpoint
from interp.runs.store import Run, find_run, load
from interp.runs.trainer import batch_indices, epoch_order, pair_logps, train_run

from .conftest import TINY_MODEL


def spec(loss="dpo", beta=0.5, seed=0, n=3):
    key = (
        PolicyKey("tiny", "sft", None, seed)
        if loss == "sft"
        else PolicyKey("tiny", loss, beta, seed)
    )
    return RunSpec.for_key(key, TINY_MODEL, n_checkpoints=n, exact_threshold=1e-2)


def weights(run, step=None):
    return load_file(str(run.checkpoint(step).path / "model.safetensors"))


def test_checkpoint_steps():
    assert checkpoint_steps(750, 30) == list(range(0, 751, 25))
    assert checkpoint_steps(10, 30) == list(range(11))
    assert checkpoint_steps(7, 2) == [0, 4, 7]


def test_batches_cover_each_epoch_once_and_ignore_beta():
    n, bs = 37, 8
    seen = torch.cat([batch_indices(4, s, n, bs) for s in range(1, 6)])  # 5 steps = 1 epoch
    assert sorted(seen.tolist()) == list(range(n))
    assert not torch.equal(epoch_order(4, 0, n), epoch_order(4, 1, n))
    assert torch.equal(epoch_order(4, 1, n), epoch_order(4, 1, n))


def test_same_seed_same_weights(tmp_path):
    a = train_run(spec("sft"), tmp_path / "a", progress=False)
    b = train_run(spec("sft"), tmp_path / "b", progress=False)
    c = train_run(spec("sft", seed=1), tmp_path / "c", progress=False)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def _interrupt_after(monkeypatch, n_saves):
    real = save_checkpoint
    count = {"n": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        count["n"] += 1
        if count["n"] == n_saves:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(steps, "save_checkpoint", flaky)


def _interrupt_mid_epoch(monkeypatch, at_step):
    real = batch_indices

    def flaky(seed, step, n, bs):
        if step == at_step:
            raise KeyboardInterrupt
        return real(seed, step, n, bs)

    monkeypatch.setattr(trainer, "batch_indices", flaky)


@pytest.mark.parametrize("loss,where", [("sft", "save"), ("dpo", "save"), ("dpo", "step")])
def test_interrupted_then_resumed_equals_straight_run(tmp_path, monkeypatch, loss, where):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    if loss != "sft":
        for root in (straight, broken):
            train_run(spec("sft"), root, progress=False)
    full = train_run(spec(loss), straight, progress=False)

    with monkeypatch.context() as m:
        if where == "save":
            _interrupt_after(m, 2)  # dies right after writing the second checkpoint
        else:
            _interrupt_mid_epoch(m, 11)  # dies between checkpoints
        with pytest.raises(KeyboardInterrupt):
            train_run(spec(loss), broken, progress=False)
    rdir = run_dir(spec(loss).key, broken)
    assert read_json(rdir / RUN_FILE)["status"] == "running"
    with pytest.raises(PolicyNotFound, match="unfinished"):
        load(spec(loss).key.name, root=broken)
    resumed = train_run(spec(loss), broken, progress=False)

    assert resumed.steps() == full.steps()
    for step in full.steps():
        wa, wb = weights(full, step), weights(resumed, step)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), step
    assert full.log() == resumed.log()
    assert not list(rdir.glob("step_*/optimizer.safetensors"))


def test_rerun_skips_finished(tmp_path):
    run = train_run(spec("sft"), tmp_path, progress=False)
    stamp = (run.path / "run.json").stat().st_mtime_ns
    train_run(spec("sft"), tmp_path, progress=False)
    assert (run.path / "run.json").stat().st_mtime_ns == stamp


def test_run_contents(tiny_root):
    run = find_run("tiny/beta0.1", tiny_root)
    info = run.info
    assert info["status"] == "complete" and info["reference"] == "tiny/ref"
    assert run.steps() == info["checkpoint_steps"] and run.steps()[-1] == info["total_steps"]
    log = run.log()
    for col in ("loss", "logps/chosen", "logps/rejected") + tuple(
        f"rewards/{k}" for k in ("chosen", "rejected", "margins", "accuracies")
    ):
        assert len(log[col]) == info["total_steps"], col
    # first step: policy = reference, so DPO's loss is log 2 and the rewards are 0
    assert log["loss"][0] == pytest.approx(math.log(2), abs=1e-5)
    assert log["rewards/margins"][0] == pytest.approx(0.0, abs=1e-5)
    for c in run.trajectory():
        assert set(c.eval) >= {"ood_rate", "error", "kl_greedy", "acc", "margin"}
    assert run.checkpoint(0).eval["kl_greedy"] == 0.0
    assert find_run("tiny/ref", tiny_root).checkpoint().eval["acc"] is None


def test_reference_cache_matches_recomputation(tiny_root):
    ref = load("tiny/ref", root=tiny_root)
    data = make_dataset("tiny", 0)
    full = model_logprobs(ref, data.train.tokens, data.train.response_mask)
    idx = torch.tensor([3, 1, 4, 1, 5])
    lp = pair_logps(ref, data.train, idx, full)
    assert torch.allclose(lp.policy_chosen, lp.ref_chosen, atol=1e-5)
    assert torch.allclose(lp.policy_rejected, lp.ref_rejected, atol=1e-5)


@pytest.mark.parametrize("loss", sorted(set(LOSSES) - {"dpo"}))
def test_every_loss_trains(tiny_root, tmp_path, loss):
    import shutil

    shutil.copytree(tiny_root / "tiny" / "ref", tmp_path / "tiny" / "ref")
    run = train_run(spec(loss, beta=0.2, n=1), tmp_path, progress=False)
    w0, w1 = weights(run, 0), weights(run, run.steps()[-1])
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    assert all(math.isfinite(v) for v in run.log()["loss"])


def test_non_finite_loss_stops_and_keeps_checkpoints(tiny_root, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_root / "tiny" / "ref", tmp_path / "tiny" / "ref")
    calls = {"n": 0}
    real = LOSSES["dpo"]

    def nan_later(lp, beta):
        calls["n"] += 1
        out = real(lp, beta)
        return out * float("nan") if calls["n"] > 10 else out

    monkeypatch.setitem(LOSSES, "dpo", nan_later)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 11"):
        train_run(spec("dpo", n=4), tmp_path, progress=False)
    run = Run(spec().key, run_dir(spec().key, tmp_path))
    assert run.steps() and run.steps()[-1] <= 10
    load_weights(run.path / step_dirname(run.steps()[-1]))


def test_cli_trains_and_prints_table(tmp_path, capsys):
    tiny = (
        "--d-model 32 --n-heads 2 --d-mlp 32 --no-progress --n-checkpoints 2 --exact-threshold 0.01"
    )
    tiny = tiny.split()
    rc = tr.main(["--preset", "tiny", "--betas", "0.5", "--checkpoints", str(tmp_path), *tiny])
    assert rc == 0
    out = capsys.readouterr().out
    assert "tiny/ref" in out and "tiny/beta0.5" in out and "kl_greedy" in out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--betas", "-1"], "positive"),
        (["--betas", "abc"], "not a number"),
        (["--n-checkpoints", "0"], "at least 1"),
        (["--n-heads", "3"], "divisible"),
        (["--d-model", "1048576", "--n-heads", "1"], "d_model must be between 1 and 8192"),
        (["--n-layers", "0"], "n_layers must be between 1 and"),
        (["--n-layers", "64", "--d-model", "8192", "--d-mlp", "32768"], "parameters is above"),
    ],
)
def test_cli_bad_values(tmp_path, capsys, argv, msg):
    assert tr.main(argv + ["--checkpoints", str(tmp_path), "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_cli_bad_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        tr.main(["--preset", "nope"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_paper_betas():
    b = paper_betas()
    assert len(b) == 30 and b[0] == 0.01 and b[-1] == 1.0
    assert all(x < y for x, y in zip(b, b[1:]))


def test_default_policies_only_are_auto_trained(tmp_path):
    with pytest.raises(PolicyNotFound):  # not a default: an error, and nothing trained
        ensure_default_policies(["beta1.0", "beta0.3"], tmp_path)
    assert not any(tmp_path.iterdir())


def test_strict_reuse_checks_the_checkpoint_schedule(tiny_root):
    from interp.errors import UserError

    key = PolicyKey("tiny", "dpo", 0.1, 0)  # trained in conftest with 4 checkpoints
    with pytest.raises(UserError, match="checkpoint_steps"):
        ensure_trained([key], tiny_root, TINY_MODEL, 10, progress=False, strict=True)
    runs = ensure_trained([key], tiny_root, TINY_MODEL, 4, progress=False, strict=True)
    assert runs[0].complete
    ensure_trained([key], tiny_root, TINY_MODEL, 10, progress=False)  # lenient: reused
