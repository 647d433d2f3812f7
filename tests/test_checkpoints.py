import json

import pytest
import torch

from interp import checkpoints as ck
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import VOCAB, tokens
from interp.errors import CheckpointError, PolicyNotFound
from interp.runs import steps, store
from interp.runs.files import sha256_file
from interp.runs.names import PolicyKey, parse_policy
from interp.runs.steps import load_weights, save_checkpoint
from interp.runs.store import load, policies, trajectory


@pytest.mark.parametrize(
    "name", ["beta1", "beta1.0", "beta=1.0", "beta1.000", "BETA1e0", "dpo-beta1"]
)
def test_names_resolve_numerically(name):
    assert parse_policy(name) == PolicyKey("sweep", "dpo", 1.0, 0)
    assert parse_policy(name).name == "beta1.0"


def test_name_grammar():
    assert parse_policy("ref") == PolicyKey("sweep", "sft", None, 0)
    assert parse_policy("ref-s3").name == "ref-s3"
    k = parse_policy("grokking/ipo-beta0.0117210-s2")
    assert (k.preset, k.loss, k.beta, k.seed) == ("grokking", "ipo", 0.0117, 2)
    assert k.name == "grokking/ipo-beta0.0117-s2"
    assert k.reference.name == "grokking/ref-s2"
    for bad in ["beta", "foo-beta1", "dpo-ref", "beta1-x", "beta-1", ""]:
        with pytest.raises(PolicyNotFound):
            parse_policy(bad)


def _save(tmp_path, seed=0):
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=seed)
    d = save_checkpoint(tmp_path / "run", 5, model, {"policy": "x"})
    return model, d


def test_save_load_identical_logits(tmp_path):
    model, d = _save(tmp_path)
    loaded, meta = load_weights(d)
    x = tokens("305=303.")
    assert torch.equal(model(x), loaded(x))
    assert meta["step"] == 5 and meta["vocab"] == list(VOCAB) and len(meta["sha256"]) == 64
    assert not loaded.training
    assert {p.name for p in d.iterdir()} == {"model.safetensors", "config.json", "meta.json"}


def test_corrupt_checkpoint_is_refused(tmp_path):
    _, d = _save(tmp_path)
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(d)


def test_truncated_checkpoint_is_refused(tmp_path):
    _, d = _save(tmp_path)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_weights(d)
    (d / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_weights(d)


def test_parameter_names_must_match_exactly(tmp_path):
    from safetensors.torch import save_file

    model, d = _save(tmp_path)
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    weights.pop("unembed.b_U")
    save_file(weights, str(d / "model.safetensors"))
    meta = json.loads((d / "meta.json").read_text())
    meta["sha256"] = sha256_file(d / "model.safetensors")
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unembed.b_U"):
        load_weights(d)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(steps, "write_json", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "run", 1, model, {})
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize(
    "spec",
    [ModelSpec(), ModelSpec(d_model=32, n_heads=2, d_mlp=32), ModelSpec(2, 32, 4, 48, 9)],
)
def test_param_shapes_are_the_built_models(spec):
    """The shapes a weights file is checked against before any model is allocated."""
    model = build_model(spec)
    assert spec.param_shapes() == {k: tuple(p.shape) for k, p in model.named_parameters()}
    assert spec.n_params() == sum(p.numel() for p in model.parameters())


def test_every_checkpoint_of_a_trained_root_passes_the_checks(tiny_root):
    for run in store.iter_runs(tiny_root):
        for c in run.trajectory():
            assert c.model is not None and c.meta["sha256"] == c.sha256


def test_load_trajectory_policies(tiny_root):
    names = policies(tiny_root)
    assert names == ["tiny/ref", "tiny/beta0.1", "tiny/beta1.0"]
    traj = trajectory("tiny/beta1", root=tiny_root)
    steps = [c.step for c in traj]
    assert steps == sorted(steps) and steps[0] == 0 and len(steps) == 5
    final = load("tiny/beta=1.0", root=tiny_root)
    x = tokens("123=")
    assert torch.equal(final(x), traj[-1].model(x))
    mid = load("tiny/beta1.0", step=steps[2], root=tiny_root)
    assert not torch.equal(mid(x), final(x))
    meta = traj[-1].meta
    assert meta["loss"] == "dpo" and meta["beta"] == 1.0 and meta["reference"] == "tiny/ref"
    assert meta["sha256"] == sha256_file(traj[-1].path / "model.safetensors")


def test_unknown_policy_one_line_error(tiny_root):
    with pytest.raises(PolicyNotFound) as e:
        load("tiny/beta0.3", root=tiny_root)
    msg = str(e.value)
    assert "\n" not in msg and "tiny/beta0.1" in msg and "tiny/beta1.0" in msg
    with pytest.raises(PolicyNotFound, match="no step 3"):
        load("tiny/beta0.1", step=3, root=tiny_root)


def test_ambiguous_policy(tiny_root, tmp_path):
    import shutil

    root = tmp_path / "ck"
    shutil.copytree(tiny_root / "tiny" / "beta0.1", root / "tiny" / "beta0.1")
    shutil.copytree(tiny_root / "tiny" / "beta0.1", root / "tiny" / "beta0.1-backup")
    with pytest.raises(PolicyNotFound, match="ambiguous"):
        load("tiny/beta0.1", root=root)


def test_inspect_cli(tiny_root, capsys):
    assert ck.main(["--checkpoints", str(tiny_root)]) == 0
    assert "tiny/beta0.1" in capsys.readouterr().out
    assert ck.main(["--checkpoints", str(tiny_root), "--policy", "tiny/beta0.7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown policy" in err
