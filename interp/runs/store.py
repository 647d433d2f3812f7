"""The checkpoint store: the only code that reads or writes model files.

Layout under the checkpoint root (default `./checkpoints`, or $INTERP_CHECKPOINTS):

    <root>/<preset>/<policy>/
        run.json                 the run: loss, β, seed, reference, hyper-parameters, status
        log.json                 per-step training log (columns)
        step_000025/
            model.safetensors    raw HookedTransformer parameters (no weight processing)
            config.json          the HookedTransformerConfig fields that rebuild the model
            meta.json            policy, loss, β, seed, step, epoch, preset, reference, git
                                 commit, sha256 of model.safetensors, vocabulary, evaluation
            optimizer.safetensors  only in the newest checkpoint of an unfinished run

Policy names (`interp.runs.names`) resolve to run folders here.

Every folder is written under a temporary name and renamed into place, so an interrupted
write never leaves a half checkpoint that looks whole; the weights' sha256 is checked on
every load and parameter names must match the architecture exactly. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from interp.core.model import build_model, config_from_dict, config_to_dict
from interp.core.numberline import VOCAB
from interp.errors import CheckpointError, PolicyNotFound, UserError
from interp.lens import HookedTransformer
from interp.runs.names import REF, PolicyKey, parse_policy, policy_sort_key
from interp.runs.provenance import git_commit

MODEL_FILE, CONFIG_FILE, META_FILE, OPTIM_FILE = (
    "model.safetensors",
    "config.json",
    "meta.json",
    "optimizer.safetensors",
)


RUN_FILE, LOG_FILE = "run.json", "log.json"


def default_root() -> Path:
    return Path(os.environ.get("INTERP_CHECKPOINTS", "checkpoints"))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"cannot read {path}: {e}; delete the run folder and retrain"
        ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, plain = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().clone()
            else:
                plain[f"{idx}.{k}"] = v
    return tensors, {"param_groups": json.dumps(state["param_groups"]), "plain": json.dumps(plain)}


def _optimizer_state(path: Path) -> dict:
    state: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for key in f.keys():
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = f.get_tensor(key)
    for key, v in json.loads(meta["plain"]).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": json.loads(meta["param_groups"])}


def step_dirname(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: HookedTransformer,
    meta: dict[str, Any],
    optimizer_state: dict | None = None,
) -> Path:
    """Write one checkpoint folder atomically; returns its path.

    `meta` gets the step, the vocabulary, the git commit and the weights' sha256 added.
    With `optimizer_state` (an optimizer's state_dict), it is saved beside the weights.
    """
    final = run_dir / step_dirname(step)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=run_dir))
    try:
        weights = {k: v.detach().contiguous().clone() for k, v in model.named_parameters()}
        save_file(weights, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        write_json(tmp / CONFIG_FILE, config_to_dict(model.cfg))
        meta = {
            **meta,
            "step": step,
            "vocab": list(VOCAB),
            "git_commit": git_commit(),
            "sha256": sha256_file(tmp / MODEL_FILE),
        }
        write_json(tmp / META_FILE, meta)
        if optimizer_state is not None:
            tensors, extra = _optimizer_tensors(optimizer_state)
            save_file(tensors, str(tmp / OPTIM_FILE), metadata=extra)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_optimizer_state(ckpt_dir: Path) -> dict | None:
    path = ckpt_dir / OPTIM_FILE
    return _optimizer_state(path) if path.exists() else None


def drop_optimizer_state(run_dir: Path, keep: Path | None = None) -> None:
    for p in run_dir.glob(f"step_*/{OPTIM_FILE}"):
        if keep is None or p.parent != keep:
            p.unlink()


def load_weights(ckpt_dir: Path) -> tuple[HookedTransformer, dict[str, Any]]:
    """Model and meta of a checkpoint folder, after checking it is whole and untampered."""
    for f in (MODEL_FILE, CONFIG_FILE, META_FILE):
        if not (ckpt_dir / f).is_file():
            raise CheckpointError(
                f"checkpoint {ckpt_dir} is incomplete (no {f}); delete it and retrain the run"
            )
    meta = read_json(ckpt_dir / META_FILE)
    digest = sha256_file(ckpt_dir / MODEL_FILE)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"checkpoint {ckpt_dir} is corrupt: sha256 of {MODEL_FILE} is {digest[:12]}…, "
            f"meta.json says {str(meta.get('sha256'))[:12]}…; delete it and retrain the run"
        )
    try:
        cfg = config_from_dict(read_json(ckpt_dir / CONFIG_FILE))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {ckpt_dir} has an unusable config.json: {e}") from None
    if meta.get("vocab", list(VOCAB)) != list(VOCAB) or cfg.d_vocab != len(VOCAB):
        raise CheckpointError(f"checkpoint {ckpt_dir} was written for another vocabulary")
    model = build_model(cfg)
    expected = {k: tuple(p.shape) for k, p in model.named_parameters()}
    try:
        with safe_open(str(ckpt_dir / MODEL_FILE), framework="pt") as f:
            found = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {ckpt_dir} cannot be read: {e}") from None
    missing, extra = expected.keys() - found.keys(), found.keys() - expected.keys()
    bad = [k for k in expected.keys() & found.keys() if tuple(found[k].shape) != expected[k]]
    if missing or extra or bad:
        raise CheckpointError(
            f"checkpoint {ckpt_dir} does not match its config: missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}, wrong shape {sorted(bad)}"
        )
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(found[k])
    return model.eval(), meta


@dataclass(frozen=True)
class CheckpointRef:
    """Which checkpoint a result used: the policy, the step and the sha256 of its weights
    (what report footers list)."""

    policy: str
    step: int
    sha256: str


@dataclass(frozen=True)
class Checkpoint:
    """One saved step of a run; `.model` loads (and caches) the HookedTransformer."""

    policy: str
    step: int
    path: Path

    @cached_property
    def _loaded(self) -> tuple[HookedTransformer, dict[str, Any]]:
        return load_weights(self.path)

    @property
    def model(self) -> HookedTransformer:
        return self._loaded[0]

    @property
    def meta(self) -> dict[str, Any]:
        return self._loaded[1] if "_loaded" in self.__dict__ else read_json(self.path / META_FILE)

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]

    @property
    def ref(self) -> CheckpointRef:
        return CheckpointRef(self.policy, self.step, self.sha256)

    @property
    def eval(self) -> dict[str, Any]:
        return self.meta.get("eval", {})


@dataclass(frozen=True)
class Run:
    """A training run on disk."""

    key: PolicyKey
    path: Path

    @property
    def name(self) -> str:
        return self.key.name

    @cached_property
    def info(self) -> dict[str, Any]:
        return read_json(self.path / RUN_FILE)

    @property
    def complete(self) -> bool:
        return self.info.get("status") == "complete"

    def steps(self) -> list[int]:
        return saved_steps(self.path)

    def checkpoint(self, step: int | None = None) -> Checkpoint:
        steps = self.steps()
        if not steps:
            raise PolicyNotFound(f"policy {self.name} has no checkpoints yet; train it first")
        if step is None:
            if not self.complete:
                raise PolicyNotFound(
                    f"policy {self.name} is unfinished (last saved step {steps[-1]}); resume it "
                    "with python -m interp.train, or pass step=N for a saved step"
                )
            step = steps[-1]
        if step not in steps:
            raise PolicyNotFound(
                f"policy {self.name} has no step {step}; saved steps: {_compact(steps)}"
            )
        return Checkpoint(self.name, step, self.path / step_dirname(step))

    def trajectory(self) -> list[Checkpoint]:
        return [Checkpoint(self.name, s, self.path / step_dirname(s)) for s in self.steps()]

    def log(self) -> dict[str, list]:
        p = self.path / LOG_FILE
        return read_json(p) if p.exists() else {}


def saved_steps(run_path: Path) -> list[int]:
    """Steps with a complete checkpoint folder in a run folder, in order."""
    out = []
    for p in run_path.glob("step_*"):
        if p.is_dir() and re.fullmatch(r"step_\d{6}", p.name) and (p / META_FILE).exists():
            out.append(int(p.name[5:]))
    return sorted(out)


def _compact(steps: list[int]) -> str:
    return (
        ", ".join(map(str, steps))
        if len(steps) <= 8
        else (f"{', '.join(map(str, steps[:4]))}, …, {', '.join(map(str, steps[-2:]))}")
    )


def iter_runs(root: Path | None = None) -> Iterator[Run]:
    root = Path(root) if root is not None else default_root()
    for info_path in sorted(root.glob(f"*/*/{RUN_FILE}")):
        try:
            info = json.loads(info_path.read_text())
            key = PolicyKey(info["preset"], info["loss"], info.get("beta"), int(info["seed"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a run folder of ours
        yield Run(key, info_path.parent)


def policies(root: Path | None = None, complete_only: bool = False) -> list[str]:
    """Names of the runs under the checkpoint root."""
    runs = [r for r in iter_runs(root) if r.complete or not complete_only]
    return sorted({r.name for r in runs}, key=policy_sort_key)


def find_run(name: str | PolicyKey, root: Path | None = None) -> Run:
    """The run a name resolves to; PolicyNotFound names what exists if none or several do."""
    key = name if isinstance(name, PolicyKey) else parse_policy(name)
    root = Path(root) if root is not None else default_root()
    matches = [r for r in iter_runs(root) if r.key == key]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        existing = policies(root)
        listing = ", ".join(existing) if existing else "none (train with: python -m interp.train)"
        raise PolicyNotFound(f"unknown policy {str(name)!r} under {root}; existing: {listing}")
    raise PolicyNotFound(
        f"policy {str(name)!r} is ambiguous under {root}: "
        + ", ".join(str(r.path) for r in matches)
        + "; remove the duplicate run folders"
    )


@dataclass(frozen=True)
class Comparison:
    """Two finished runs to compare, and A's reference."""

    a: Run
    b: Run
    ref: Run


def resolve_pair(a: str, b: str, root: Path | None = None) -> Comparison:
    """Policy A (a finished preference run), policy B (any finished run; `ref` means A's
    reference, whatever A's preset and seed) and A's reference."""
    a_run = find_run(a, root)
    if a_run.key.is_ref:
        raise UserError(f"A must be a preference run, not the reference {a_run.name}")
    ref_run = find_run(a_run.info["reference"], root)
    b_run = ref_run if b.strip().lower() == REF else find_run(b, root)
    for r in (a_run, b_run, ref_run):
        if not r.complete:
            raise UserError(f"policy {r.name} is unfinished; resume it with python -m interp.train")
    return Comparison(a_run, b_run, ref_run)


def run_dir(key: PolicyKey, root: Path | None = None) -> Path:
    """Where the run of `key` lives (or will live)."""
    root = Path(root) if root is not None else default_root()
    return root / key.preset / key.local_name


def load_checkpoint(name: str, step: int | None = None, root: Path | None = None) -> Checkpoint:
    return find_run(name, root).checkpoint(step)


def load(name: str, step: int | None = None, root: Path | None = None) -> HookedTransformer:
    """A policy as a HookedTransformer in eval mode: its final checkpoint, or step N."""
    return load_checkpoint(name, step, root).model


def trajectory(name: str, root: Path | None = None) -> list[Checkpoint]:
    """Every saved checkpoint of a policy, in step order (models load on first use)."""
    return find_run(name, root).trajectory()


def is_complete(key: PolicyKey, root: Path | None = None) -> bool:
    """Whether the run of `key` finished (its run.json says so)."""
    info = run_dir(key, root) / RUN_FILE
    return info.exists() and read_json(info).get("status") == "complete"
