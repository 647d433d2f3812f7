"""Checkpoint folders: writing one atomically, loading one only after checking it.

A checkpoint is written into a hidden temporary folder and renamed to `step_NNNNNN`, so a
kill midway leaves a temporary that the next training of the run removes
(`clean_temporaries`, under the run's lock) and never a half checkpoint.

On every load the weights' sha256 is checked against meta.json, the checkpoint must belong
to the run and step it sits in (`check_meta`), its config must be within the suite's limits
and its tensors' names and shapes must match that config — all before a model is
allocated — and its weights must be finite float32. The optimizer state's sha256 is
checked before resuming (when recorded: checkpoints written before it was are accepted).
Nothing is pickled: optimizer states are safetensors too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from interp.core.model import build_model, config_from_dict, config_to_dict
from interp.core.numberline import VOCAB
from interp.errors import CheckpointError
from interp.lens import HookedTransformer
from interp.runs.files import (
    CONFIG_FILE,
    META_FILE,
    MODEL_FILE,
    OPTIM_FILE,
    TEMP_PREFIXES,
    advice,
    discard,
    make_temp_dir,
    one_line,
    read_config,
    read_meta,
    saved_steps,
    sha256_file,
    step_dirname,
    write_json,
    write_new,
)
from interp.runs.names import PolicyKey
from interp.runs.provenance import git_commit
from interp.runs.schema import MetaFile


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """An optimizer state_dict as safetensors: its tensors, and the rest as JSON in ONE
    metadata entry (safetensors writes several entries in a random order, and the file's
    sha256 must not depend on the run)."""
    tensors, plain = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().clone()
            else:
                plain[f"{idx}.{k}"] = v
    rest = {"param_groups": state["param_groups"], "plain": plain}
    return tensors, {"optimizer": json.dumps(rest)}


def _optimizer_state(path: Path) -> dict:
    state: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = f.get_tensor(key)
    if "optimizer" in meta:
        rest = json.loads(meta["optimizer"])
    else:  # written before the one entry: two
        rest = {k: json.loads(meta[k]) for k in ("param_groups", "plain")}
    for key, v in rest["plain"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: HookedTransformer,
    meta: dict[str, Any],
    optimizer_state: dict | None = None,
) -> Path:
    """Write one checkpoint folder atomically; returns its path.

    `meta` gets the step, the vocabulary, the git commit and the weights' sha256 added.
    With `optimizer_state` (an optimizer's state_dict), it is saved beside the weights and
    its sha256 recorded too.
    """
    final = run_dir / step_dirname(step)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(run_dir, final.name)
    try:
        weights = {k: v.detach().contiguous().clone() for k, v in model.named_parameters()}
        write_new(tmp / MODEL_FILE, safetensors_bytes(weights, metadata={"format": "pt"}))
        write_json(tmp / CONFIG_FILE, config_to_dict(model.cfg))
        optim = {}
        if optimizer_state is not None:
            tensors, extra = _optimizer_tensors(optimizer_state)
            write_new(tmp / OPTIM_FILE, safetensors_bytes(tensors, metadata=extra))
            optim["optimizer_sha256"] = sha256_file(tmp / OPTIM_FILE)
        meta = {
            **meta,
            "step": step,
            "vocab": list(VOCAB),
            "git_commit": git_commit(),
            "sha256": sha256_file(tmp / MODEL_FILE),
            **optim,
        }
        write_json(tmp / META_FILE, meta)
        if final.exists():
            discard(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def check_optimizer_state(ckpt_dir: Path) -> None:
    """CheckpointError (one line) unless the checkpoint's optimizer state has the sha256
    its meta.json records (checkpoints written before it was recorded pass)."""
    path = ckpt_dir / OPTIM_FILE
    meta = read_meta(ckpt_dir / META_FILE)
    if meta.optimizer_sha256 is not None and sha256_file(path) != meta.optimizer_sha256:
        raise CheckpointError(
            f"{path} is corrupt (its sha256 is not the one meta.json records), so the run "
            f"cannot resume from it; {advice(path)}"
        )


def load_optimizer_state(ckpt_dir: Path) -> dict | None:
    """The optimizer state saved with a checkpoint (None if there is none), after checking
    its sha256 against meta.json (when recorded there)."""
    path = ckpt_dir / OPTIM_FILE
    if not path.exists():
        return None
    check_optimizer_state(ckpt_dir)
    try:
        return _optimizer_state(path)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"cannot read {path}: {one_line(e)}; {advice(path)}") from None


def drop_optimizer_state(run_dir: Path, keep: Path | None = None) -> None:
    for p in run_dir.glob(f"step_*/{OPTIM_FILE}"):
        if keep is None or p.parent != keep:
            p.unlink(missing_ok=True)


def resumable_steps(run_dir: Path) -> list[int]:
    """Saved steps that still hold their optimizer state, in order."""
    return [s for s in saved_steps(run_dir) if (run_dir / step_dirname(s) / OPTIM_FILE).exists()]


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove what interrupted writes left in a run folder (hidden temporary folders and
    files); returns what was removed. Call it only while holding the run's lock."""
    removed = []
    if run_dir.is_dir():
        for p in sorted(run_dir.iterdir()):
            if p.name.startswith(TEMP_PREFIXES):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed.append(p)
    return removed


def discard_steps_after(run_dir: Path, step: int) -> None:
    """Delete the checkpoints saved after `step` (each folder atomically)."""
    for s in saved_steps(run_dir):
        if s > step:
            discard(run_dir / step_dirname(s))


def clear_run(run_dir: Path) -> None:
    """Empty a run folder (to train it again from the start), each entry atomically."""
    if run_dir.is_dir():
        for p in sorted(run_dir.iterdir()):
            discard(p)


def check_meta(meta: MetaFile, ckpt_dir: Path, key: PolicyKey | None = None) -> None:
    """A checkpoint's meta.json must name the step of its folder and, with `key`, the run it
    sits in (policy, preset, loss, β, seed, reference): a checkpoint copied from another
    run or step is refused."""
    m = re.fullmatch(r"step_(\d{6})", ckpt_dir.name)
    if m and int(m.group(1)) != meta.step:
        raise CheckpointError(
            f"checkpoint {ckpt_dir} says it is step {meta.step} (meta.json), not "
            f"{int(m.group(1))}: it was copied or moved; delete it and retrain the run"
        )
    if key is not None and not meta.belongs_to(key):
        says = (
            f"policy {meta.policy!r}, preset {meta.preset!r}, loss {meta.loss!r}, "
            f"β {meta.beta}, seed {meta.seed}, reference {meta.reference!r}"
        )
        raise CheckpointError(
            f"checkpoint {ckpt_dir} does not belong to {key.name}, the run it sits in: its "
            f"meta.json says {says}; it was copied from elsewhere: delete it and retrain the run"
        )


def load_weights(
    ckpt_dir: Path, key: PolicyKey | None = None
) -> tuple[HookedTransformer, dict[str, Any]]:
    """Model and meta of a checkpoint folder, after checking it is whole and untampered
    (and, with `key`, that it belongs to that run)."""
    for f in (MODEL_FILE, CONFIG_FILE, META_FILE):
        if not (ckpt_dir / f).is_file():
            raise CheckpointError(
                f"checkpoint {ckpt_dir} is incomplete (no {f}); delete it and retrain the run"
            )
    meta = read_meta(ckpt_dir / META_FILE)
    check_meta(meta, ckpt_dir, key)
    digest = sha256_file(ckpt_dir / MODEL_FILE)
    if digest != meta.sha256:
        raise CheckpointError(
            f"checkpoint {ckpt_dir} is corrupt: sha256 of {MODEL_FILE} is {digest[:12]}…, "
            f"meta.json says {meta.sha256[:12]}…; delete it and retrain the run"
        )
    if meta.vocab is not None and meta.vocab != list(VOCAB):
        raise CheckpointError(f"checkpoint {ckpt_dir} was written for another vocabulary")
    config = read_config(ckpt_dir / CONFIG_FILE)  # sizes within the suite's limits
    expected = config.spec.param_shapes()
    try:
        with safe_open(str(ckpt_dir / MODEL_FILE), framework="pt") as f:
            header = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: tuple(v.get_shape()) for k, v in header.items()}
            dtypes = {k: v.get_dtype() for k, v in header.items()}
            missing, extra = expected.keys() - shapes.keys(), shapes.keys() - expected.keys()
            bad = [k for k in expected.keys() & shapes.keys() if shapes[k] != expected[k]]
            if missing or extra or bad:  # compared before anything is allocated
                raise CheckpointError(
                    f"checkpoint {ckpt_dir} does not match its config: missing "
                    f"{sorted(missing)}, unexpected {sorted(extra)}, wrong shape {sorted(bad)}; "
                    "delete it and retrain the run"
                )
            not_f32 = sorted(k for k, d in dtypes.items() if d != "F32")
            if not_f32:
                raise CheckpointError(
                    f"checkpoint {ckpt_dir} holds tensors that are not float32 ({not_f32[0]}: "
                    f"{dtypes[not_f32[0]]}); delete it and retrain the run"
                )
            found = {k: f.get_tensor(k) for k in shapes}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {ckpt_dir} cannot be read: {one_line(e)}") from None
    non_finite = sorted(k for k, t in found.items() if not bool(torch.isfinite(t).all()))
    if non_finite:
        raise CheckpointError(
            f"checkpoint {ckpt_dir} holds non-finite weights (NaN or inf in "
            f"{', '.join(non_finite[:3])}{' …' if len(non_finite) > 3 else ''}); delete it "
            "and retrain the run"
        )
    model = build_model(config_from_dict(config.raw))
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(found[k])
    return model.eval(), meta.raw
