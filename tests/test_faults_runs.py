"""Faults in the checkpoint folder: corrupt or misplaced files, kills at every write,
concurrent trainings. Each gets one clear line (a UserError) or an exact resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from interp import checkpoints as ck
from interp import train as tr
from interp.core.model import ModelSpec, build_model
from interp.errors import CheckpointError, PolicyNotFound, UserError
from interp.runs import steps, writer
from interp.runs.config import Hyper, RunSpec
from interp.runs.ensemble import resume_groups, train_ensemble
from interp.runs.files import run_dir, sha256_file, step_dirname, write_json
from interp.runs.locks import lock_path
from interp.runs.names import PolicyKey
from interp.runs.sources import resolve
from interp.runs.steps import load_optimizer_state, load_weights, save_checkpoint
from interp.runs.store import find_run, load, policies
from interp.runs.trainer import train_run

from .conftest import TINY_MODEL

# 3 steps of the tiny preset (180 pairs, batches of 64), saved at steps 0, 2 and 3
FAST = Hyper(epochs=1, optimizer="rmsprop", lr=3e-4, batch_size=64)


# smaller still, for the tests that train dozens of times; wide enough that a stacked
# step's gradients depend on how many members are stacked (with d_model 8 they do not)
MICRO = ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=8)


def fast_spec(beta: float | None, model: ModelSpec = TINY_MODEL) -> RunSpec:
    key = PolicyKey("tiny", "sft", None, 0) if beta is None else PolicyKey("tiny", "dpo", beta, 0)
    return replace(RunSpec.for_key(key, model, 2, exact_threshold=None), hyper=FAST)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def with_ref(tiny_root: Path, dest: Path) -> Path:
    shutil.copytree(tiny_root / "tiny" / "ref", dest / "tiny" / "ref")
    return dest


def rewrite_meta(ckpt: Path, **changes) -> None:
    meta = json.loads((ckpt / "meta.json").read_text())
    meta.update(changes)
    (ckpt / "meta.json").write_text(json.dumps(meta))


@pytest.fixture
def root(tiny_root, tmp_path) -> Path:
    """A copy of the trained tiny root (tiny/ref, tiny/beta0.1, tiny/beta1.0) to corrupt."""
    shutil.copytree(tiny_root, tmp_path / "ck")
    return tmp_path / "ck"


@pytest.fixture(scope="module")
def interrupted(tiny_root, tmp_path_factory) -> Path:
    """A root holding tiny/ref and tiny/beta0.5 killed right after saving step 2 (of 3)."""
    root = with_ref(tiny_root, tmp_path_factory.mktemp("interrupted"))
    real, n = steps.save_checkpoint, {"saves": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        n["saves"] += 1
        if n["saves"] == 2:
            raise KeyboardInterrupt
        return out

    with pytest.MonkeyPatch.context() as m:
        m.setattr(steps, "save_checkpoint", flaky)
        with pytest.raises(KeyboardInterrupt):
            train_run(fast_spec(0.5), root, progress=False)
    return root


@pytest.fixture
def broken(interrupted, tmp_path) -> Path:
    """A copy of the interrupted root, to corrupt before resuming."""
    shutil.copytree(interrupted, tmp_path / "broken")
    return tmp_path / "broken"


BETA05 = PolicyKey("tiny", "dpo", 0.5, 0)


@pytest.fixture(scope="module")
def micro_ref(tmp_path_factory) -> Path:
    """A root holding a micro tiny/ref (3 SFT steps)."""
    root = tmp_path_factory.mktemp("micro")
    train_run(fast_spec(None, MICRO), root, progress=False)
    return root


# --- cause 1: config.json values, and the bounds shared with ModelSpec -------------------


def saved(tmp_path: Path, step: int = 5, optimizer: bool = False) -> Path:
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=0)
    opt = torch.optim.Adam(model.parameters())
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    opt.step()
    return save_checkpoint(
        tmp_path / "run", step, model, {"policy": "x"}, opt.state_dict() if optimizer else None
    )


@pytest.mark.parametrize(
    "change,msg",
    [
        ({"n_ctx": "10"}, "n_ctx: Input should be a valid integer"),
        ({"d_mlp": 128.5}, "d_mlp: Input should be a valid integer"),
        ({"d_model": -128}, "d_model: Input should be greater than or equal to 1"),
        ({"act_fn": "evil"}, "act_fn: Input should be 'gelu'"),
        ({"normalization_type": "RMS"}, "normalization_type"),
        ({"positional_embedding_type": "rotary"}, "positional_embedding_type"),
        ({"n_ctx": 10**9}, "n_ctx: Input should be less than or equal to 2048"),
        ({"n_heads": 3}, "not divisible"),
        ({"d_head": 8}, "is not d_model"),
        ({"n_layers": True}, "n_layers: Input should be a valid integer"),
        ({"rotary_dim": 4}, "rotary_dim: Extra inputs are not permitted"),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, change, msg):
    d = saved(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(CheckpointError) as e:
        load_weights(d)
    assert msg in one_line(e) and "config.json" in str(e.value)


@pytest.mark.parametrize("bad", [[], "x", None, {}])
def test_config_that_is_not_an_object(tmp_path, bad):
    d = saved(tmp_path)
    (d / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="config.json"):
        load_weights(d)


def test_shapes_are_compared_before_a_model_is_allocated(tmp_path, monkeypatch):
    d = saved(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "n_ctx": 2048, "d_mlp": 4096}))

    def no_model(*a, **k):
        raise AssertionError("a model was built before the shapes were compared")

    monkeypatch.setattr(steps, "build_model", no_model)
    with pytest.raises(CheckpointError, match="does not match its config") as e:
        load_weights(d)
    assert "pos_embed.W_pos" in one_line(e) and "blocks.0.mlp.W_in" in str(e.value)


def test_model_spec_bounds():
    with pytest.raises(ValueError, match="between 1 and 8192"):
        ModelSpec(d_model=1_048_576, n_heads=1)
    with pytest.raises(ValueError, match="parameters is above"):
        ModelSpec(n_layers=64, d_model=8192, n_heads=8, d_mlp=32768)
    with pytest.raises(ValueError, match="must be an integer"):
        ModelSpec(d_model="128")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 1 and"):
        ModelSpec(n_ctx=10**9)


# --- cause 2: JSON that parses but has the wrong shape ---------------------------------


@pytest.mark.parametrize(
    "content,msg",
    [
        ([], "expected a JSON object, not list"),
        ({"eval": {"acc": "0.5"}}, "eval.acc: Input should be a valid number"),
        ({"step": "24"}, "step: Input should be a valid integer"),
        ({"sha256": 7}, "sha256"),
    ],
)
def test_invalid_meta_json_names_the_file(root, content, msg):
    ckpt = find_run("tiny/beta0.1", root).checkpoint()
    meta = json.loads((ckpt.path / "meta.json").read_text())
    new = content if isinstance(content, list) else {**meta, **content}
    (ckpt.path / "meta.json").write_text(json.dumps(new))
    for get in (lambda: ckpt.eval, lambda: load("tiny/beta0.1", root=root)):
        with pytest.raises(CheckpointError) as e:
            get()
        assert msg in one_line(e) and str(ckpt.path / "meta.json") in str(e.value)
        assert "delete the run folder" in str(e.value)


def test_run_json_without_reference_names_the_file(root):
    path = run_dir(PolicyKey("tiny", "dpo", 0.1, 0), root) / "run.json"
    info = json.loads(path.read_text())
    del info["reference"]
    path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError) as e:
        resolve("tiny/beta0.1", "tiny/beta1.0", root)
    assert "reference: Field required" in one_line(e) and str(path) in str(e.value)


@pytest.mark.parametrize(
    "log,msg",
    [
        ([], "expected a JSON object"),
        ({"step": [1, 2], "loss": [0.5]}, "columns of different lengths"),
        ({"step": [1, 2], "loss": [0.5, "x"]}, "loss.1: Input should be a valid number"),
        ({"step": [1], "loss": [0.5]}, "does not cover steps 1 to 2"),
    ],
)
def test_bad_log_json_on_resume_is_one_line(broken, log, msg):
    (run_dir(BETA05, broken) / "log.json").write_text(json.dumps(log))
    with pytest.raises(CheckpointError) as e:
        train_run(fast_spec(0.5), broken, progress=False)
    assert msg in one_line(e) and "log.json" in str(e.value)


# --- cause 4: an ensemble killed at any save resumes bit for bit ------------------------


def _cheap_eval(model, *a, **k):
    """Stands in for the test-split evaluation (a pure function of the weights too)."""
    with torch.no_grad():
        return {"sq": float(sum(p.double().square().sum() for p in model.parameters()))}


def _digests(root: Path, keys) -> dict[str, str]:
    out = {}
    for key in keys:
        d = run_dir(key, root)
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.name != "run.json":
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _kill_points(n_saves: int) -> list[tuple[str, int, str]]:
    """Before and after every checkpoint save (2 members × steps 0, 2, 3); and the states
    only a deletion of optimizer states makes: the first member's older state gone, the
    second's not yet (step 2), and each member "complete" with its state not yet deleted."""
    saves = [("save_checkpoint", i, w) for i in range(n_saves) for w in ("before", "after")]
    return saves + [("drop_optimizer_state", i, "before") for i in (3, 6, 7)]


def test_ensemble_killed_at_every_save_resumes_bit_for_bit(micro_ref, tmp_path, monkeypatch):
    """Kill a 2-member ensemble at every save boundary, resume it: every file of every
    member's every checkpoint (and the logs) has the sha256 of the uninterrupted run's."""
    monkeypatch.setattr(writer, "evaluate", _cheap_eval)
    specs = [fast_spec(b, MICRO) for b in (0.1, 1.0)]
    keys = [s.key for s in specs]
    real = {name: getattr(steps, name) for name in ("save_checkpoint", "drop_optimizer_state")}
    counts = dict.fromkeys(real, 0)

    def wrap(name, kill=None):
        def f(*a, **k):
            i = counts[name]
            counts[name] += 1
            if kill == (name, i, "before"):
                raise KeyboardInterrupt
            out = real[name](*a, **k)
            if kill == (name, i, "after"):
                raise KeyboardInterrupt
            return out

        return f

    def patch(kill=None):
        for name in real:
            counts[name] = 0
            monkeypatch.setattr(steps, name, wrap(name, kill))

    straight = with_ref(micro_ref, tmp_path / "straight")
    patch()
    train_ensemble(specs, straight, progress=False)
    want = _digests(straight, keys)
    assert counts["save_checkpoint"] == 2 * 3
    assert len([k for k in want if k.endswith("model.safetensors")]) == 6
    assert counts["drop_optimizer_state"] == 2 * 3 + 2  # after each step's saves; finishing
    points = _kill_points(counts["save_checkpoint"])
    for kill in points:
        root = with_ref(micro_ref, tmp_path / "-".join(map(str, kill)))
        patch(kill)
        with pytest.raises(KeyboardInterrupt):
            train_ensemble(specs, root, progress=False)
        patch()
        runs = train_ensemble(specs, root, progress=False)
        assert all(r.complete for r in runs), kill
        assert _digests(root, keys) == want, kill


def test_resume_groups():
    # killed between two members' saves of step 8: all go back to step 5, as one group
    assert resume_groups([[5, 8], [5], [5, 8]]) == [(5, [0, 1, 2])]
    # nothing saved yet, or only step 0 by some: all start over together
    assert resume_groups([[], [0], []]) == [(0, [0, 1, 2])]
    # a member that diverged (and stopped at 8) while the others went on to 14
    assert resume_groups([[14], [8], [14]]) == [(8, [1]), (14, [0, 2])]
    assert resume_groups([[3]]) == [(3, [0])]


def test_ensemble_keeps_older_optimizer_state_until_every_member_saved(
    micro_ref, tmp_path, monkeypatch
):
    monkeypatch.setattr(writer, "evaluate", _cheap_eval)
    root = with_ref(micro_ref, tmp_path)
    specs = [fast_spec(b, MICRO) for b in (0.1, 1.0)]
    real, n = steps.save_checkpoint, {"saves": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        n["saves"] += 1
        if n["saves"] == 3:  # both members saved step 0, the first one step 2
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(steps, "save_checkpoint", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(specs, root, progress=False)
    assert steps.resumable_steps(run_dir(specs[0].key, root)) == [0, 2]
    assert steps.resumable_steps(run_dir(specs[1].key, root)) == [0]


# --- cause 9: one training of a run at a time -------------------------------------------


def test_a_run_being_trained_is_locked(broken, capsys):
    lock = FileLock(str(lock_path(BETA05, broken)))
    lock.acquire(timeout=0)  # as another process training it would
    try:
        before = sorted(p.name for p in run_dir(BETA05, broken).iterdir())
        with pytest.raises(UserError, match="being trained by another process") as e:
            train_run(fast_spec(0.5), broken, progress=False)
        one_line(e)
        with pytest.raises(UserError, match="being trained by another process"):
            train_ensemble([fast_spec(0.5), fast_spec(2.0)], broken, progress=False)
        assert sorted(p.name for p in run_dir(BETA05, broken).iterdir()) == before
        assert not run_dir(PolicyKey("tiny", "dpo", 2.0, 0), broken).exists()
        argv = ["--preset", "tiny", "--betas", "0.5", "--checkpoints", str(broken)]
        argv += ["--d-model", "32", "--n-heads", "2", "--d-mlp", "32", "--no-progress"]
        assert tr.main(argv) == 2
        out, err = capsys.readouterr()
        assert err.splitlines() == [e for e in err.splitlines() if "being trained" in e]
        assert len(err.splitlines()) == 1 and "stage" not in out  # nothing announced
    finally:
        lock.release()


def test_the_lock_is_held_while_training(broken, monkeypatch):
    real, held = steps.save_checkpoint, []

    def probe(*a, **k):
        other = FileLock(str(lock_path(BETA05, broken)))
        try:
            other.acquire(timeout=0)
            other.release()
            held.append(False)
        except Exception:
            held.append(True)
        return real(*a, **k)

    monkeypatch.setattr(steps, "save_checkpoint", probe)
    assert train_run(fast_spec(0.5), broken, progress=False).complete
    assert held and all(held)


# --- cause 10: temporaries of a killed write are removed on the next start --------------


def test_stale_temporaries_are_removed_on_resume(broken, capsys):
    rdir = run_dir(BETA05, broken)
    partial = rdir / ".step_000003.k2j4h1"  # what a kill inside save_checkpoint leaves
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    (rdir / ".log.json.x8q1z0").write_text("{")
    (rdir / ".run.json.abcd1234").write_text("")
    (rdir / ".trash.step_000002.0f0f0f0f").mkdir()
    run = train_run(fast_spec(0.5), broken, progress=False)
    assert run.complete and run.steps() == [0, 2, 3]
    assert not [p for p in rdir.iterdir() if p.name.startswith(".")]
    assert "left by an interrupted write" in capsys.readouterr().err


# --- cause 11: the optimizer state's sha256 -----------------------------------------


def test_optimizer_sha256_is_recorded_and_checked(tmp_path):
    d = saved(tmp_path, optimizer=True)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["optimizer_sha256"] == sha256_file(d / "optimizer.safetensors")
    assert load_optimizer_state(d)["state"]
    f = d / "optimizer.safetensors"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match="is corrupt") as e:
        load_optimizer_state(d)
    one_line(e)


def test_older_meta_without_optimizer_sha256_is_accepted(tmp_path):
    """As written before: no optimizer_sha256, and two metadata entries."""
    d = saved(tmp_path, optimizer=True)
    state = load_optimizer_state(d)
    meta = json.loads((d / "meta.json").read_text())
    del meta["optimizer_sha256"]
    (d / "meta.json").write_text(json.dumps(meta))
    tensors = {f"{i}.{k}": v for i, st in state["state"].items() for k, v in st.items()}
    old = {"param_groups": json.dumps(state["param_groups"]), "plain": json.dumps({})}
    save_file(tensors, str(d / "optimizer.safetensors"), metadata=old)
    again = load_optimizer_state(d)
    assert again["param_groups"] == state["param_groups"]
    for i, st in state["state"].items():
        assert all(torch.equal(again["state"][i][k], v) for k, v in st.items())
    f = d / "optimizer.safetensors"
    f.write_bytes(f.read_bytes()[:50])  # unchecked, but unreadable: still one line
    with pytest.raises(CheckpointError, match="cannot read") as e:
        load_optimizer_state(d)
    one_line(e)


def test_truncated_optimizer_state_stops_the_resume(broken):
    rdir = run_dir(BETA05, broken)
    f = rdir / step_dirname(2) / "optimizer.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    before = {p: p.read_bytes() for p in rdir.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="cannot resume from it") as e:
        train_run(fast_spec(0.5), broken, progress=False)
    one_line(e)
    assert {p: p.read_bytes() for p in rdir.rglob("*") if p.is_file()} == before  # untouched


# --- cause 12: a checkpoint belongs to its run and step ---------------------------------


def test_checkpoint_copied_from_another_run_is_refused(root):
    a, b = (
        run_dir(PolicyKey("tiny", "dpo", 0.1, 0), root),
        run_dir(PolicyKey("tiny", "dpo", 1.0, 0), root),
    )
    step = find_run("tiny/beta0.1", root).steps()[-1]
    shutil.rmtree(a / step_dirname(step))
    shutil.copytree(b / step_dirname(step), a / step_dirname(step))
    with pytest.raises(CheckpointError, match="does not belong to tiny/beta0.1") as e:
        load("tiny/beta0.1", root=root)
    assert "policy 'tiny/beta1.0'" in one_line(e)
    with pytest.raises(CheckpointError, match="does not belong to tiny/beta0.1"):
        _ = find_run("tiny/beta0.1", root).checkpoint().eval


def test_meta_json_of_another_beta_is_refused(root):
    ckpt = find_run("tiny/beta0.1", root).checkpoint()
    rewrite_meta(ckpt.path, beta=1.0)
    with pytest.raises(CheckpointError, match="does not belong to tiny/beta0.1") as e:
        load("tiny/beta0.1", root=root)
    assert "β 1.0" in one_line(e)


def test_checkpoint_copied_from_another_step_is_refused(root):
    rdir = run_dir(PolicyKey("tiny", "dpo", 0.1, 0), root)
    steps = find_run("tiny/beta0.1", root).steps()
    shutil.rmtree(rdir / step_dirname(steps[-1]))
    shutil.copytree(rdir / step_dirname(steps[1]), rdir / step_dirname(steps[-1]))
    with pytest.raises(CheckpointError, match=f"says it is step {steps[1]}") as e:
        load("tiny/beta0.1", root=root)
    one_line(e)


# --- cause 13: non-finite weights -------------------------------------------------------


def test_non_finite_weights_are_refused(root):
    ckpt = find_run("tiny/beta0.1", root).checkpoint()
    f = ckpt.path / "model.safetensors"
    w = load_file(str(f))
    w["blocks.0.attn.W_Q"][0, 0, 0] = float("nan")
    save_file(w, str(f), metadata={"format": "pt"})
    rewrite_meta(ckpt.path, sha256=sha256_file(f))
    with pytest.raises(CheckpointError, match="non-finite weights") as e:
        load("tiny/beta0.1", root=root)
    assert "blocks.0.attn.W_Q" in one_line(e)


def test_float64_weights_are_refused(root):
    ckpt = find_run("tiny/beta0.1", root).checkpoint()
    f = ckpt.path / "model.safetensors"
    save_file({k: v.double() for k, v in load_file(str(f)).items()}, str(f))
    rewrite_meta(ckpt.path, sha256=sha256_file(f))
    with pytest.raises(CheckpointError, match="not float32"):
        load("tiny/beta0.1", root=root)


# --- cause 14: a corrupt or invalid run.json is named, and listings skip it -------------


def test_corrupt_run_json_is_named_not_unknown(root):
    path = run_dir(PolicyKey("tiny", "dpo", 0.1, 0), root) / "run.json"
    path.write_text('{"policy": "tiny/beta0.1", ')
    with pytest.raises(CheckpointError) as e:
        load("tiny/beta0.1", root=root)
    assert str(path) in one_line(e) and "unknown policy" not in str(e.value)
    assert "delete the run folder" in str(e.value)


def test_invalid_run_json_is_skipped_by_listings(root, capsys):
    path = run_dir(PolicyKey("tiny", "dpo", 1.0, 0), root) / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "seed": -1}))
    assert policies(root) == ["tiny/ref", "tiny/beta0.1"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and str(path) in err
    assert ck.main(["--checkpoints", str(root)]) == 0
    assert "tiny/beta0.1" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="seed"):
        find_run("tiny/beta1.0", root)
    with pytest.raises(PolicyNotFound, match="unknown policy"):  # the others: as before
        find_run("tiny/beta0.7", root)
    assert find_run("tiny/beta0.1", root).complete


def test_run_json_of_another_run_is_named(root):
    a = run_dir(PolicyKey("tiny", "dpo", 0.1, 0), root) / "run.json"
    shutil.copy(run_dir(PolicyKey("tiny", "dpo", 1.0, 0), root) / "run.json", a)
    with pytest.raises(CheckpointError, match="is the run.json of tiny/beta1.0") as e:
        load("tiny/beta0.1", root=root)
    one_line(e)


# --- files follow the umask -------------------------------------------------------------


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        d = saved(tmp_path, optimizer=True)
        write_json(tmp_path / "run" / "run.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == dir_mode
    for p in [*d.iterdir(), tmp_path / "run" / "run.json"]:
        assert stat.S_IMODE(p.stat().st_mode) == file_mode, p.name
