"""The checkpoint store: runs and checkpoints by policy name.

Policy names (`interp.runs.names`) resolve to run folders under the checkpoint root
($INTERP_CHECKPOINTS, else the repository's `checkpoints/`: `interp.runs.files.default_root`);
a `Run` lists its saved steps (`step=-1` is the last, as in Python) and a `Checkpoint`
loads (and caches) its HookedTransformer on first use, with the task's tokenizer attached
(so TransformerLens's string helpers work) and a name: `cfg.model_name` is
`checkpoint_name(policy, step)`, e.g. "beta0.01@step756". The files themselves
are written and read by `interp.runs.files` (layout, atomic writes, validated JSON) and
`interp.runs.steps` (checkpoint folders, checked before loading); `interp.runs.locks`
keeps two processes from training one run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from interp.core.model import place_
from interp.core.numberline import get_task
from interp.core.task import Task
from interp.errors import CheckpointError, PolicyNotFound
from interp.lens import HookedTransformer, attach_tokenizer
from interp.runs.files import (
    LOG_FILE,
    META_FILE,
    RUN_FILE,
    advice,
    default_root,
    read_log,
    read_meta,
    read_run_file,
    run_dir,
    saved_steps,
    step_dirname,
)
from interp.runs.names import PolicyKey, parse_policy, policy_sort_key
from interp.runs.schema import RunFile
from interp.runs.steps import check_meta, drop_optimizer_state, load_weights


def checkpoint_name(policy: str, step: int) -> str:
    """What a loaded checkpoint is called (`cfg.model_name`): policy and step."""
    return f"{policy}@step{step}"


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
    device: str = "cpu"  # where `.model` is put, in which dtype (stored weights are float32)
    dtype: str = "float32"

    @property
    def key(self) -> PolicyKey:
        return parse_policy(self.policy)

    @property
    def task(self) -> Task:
        return get_task(self.key.preset)

    @property
    def name(self) -> str:
        return checkpoint_name(self.policy, self.step)

    @cached_property
    def _loaded(self) -> tuple[HookedTransformer, dict[str, Any]]:
        model, meta = load_weights(self.path, self.key)
        place_(model, self.device, self.dtype)
        attach_tokenizer(model, self.task.hf_tokenizer())
        model.cfg.model_name = self.name
        return model, meta

    @property
    def model(self) -> HookedTransformer:
        return self._loaded[0]

    @cached_property
    def _meta_only(self) -> dict[str, Any]:
        meta = read_meta(self.path / META_FILE)
        check_meta(meta, self.path, self.key)
        return meta.raw

    @property
    def meta(self) -> dict[str, Any]:
        """meta.json (validated, and checked to belong to this run and step), read once."""
        return self._loaded[1] if "_loaded" in self.__dict__ else self._meta_only

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
    device: str = "cpu"  # where its checkpoints' models are put, and in which dtype
    dtype: str = "float32"

    @property
    def name(self) -> str:
        return self.key.name

    @cached_property
    def record(self) -> RunFile:
        """run.json, validated."""
        return read_run_file(self.path / RUN_FILE)

    @property
    def info(self) -> dict[str, Any]:
        """run.json as read (validated)."""
        return self.record.raw

    @property
    def complete(self) -> bool:
        return self.record.complete

    def steps(self) -> list[int]:
        return saved_steps(self.path)

    def checkpoint(self, step: int | None = None) -> Checkpoint:
        """The final checkpoint (None: the run must be finished), or a saved step; a negative
        step counts from the last saved one (-1 is the last)."""
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
        step = saved_step(self.name, steps, step)
        return Checkpoint(self.name, step, self.path / step_dirname(step), self.device, self.dtype)

    def trajectory(self) -> list[Checkpoint]:
        return [
            Checkpoint(self.name, s, self.path / step_dirname(s), self.device, self.dtype)
            for s in self.steps()
        ]

    def log(self) -> dict[str, list]:
        p = self.path / LOG_FILE
        return read_log(p).raw if p.exists() else {}


def saved_step(policy: str, steps: list[int], step: int) -> int:
    """The saved step `step` names (negative: counted from the last, -1 the last), or
    PolicyNotFound naming the saved steps nearest to it."""
    if step < 0:
        if -step > len(steps):
            raise PolicyNotFound(
                f"policy {policy} has {len(steps)} saved steps, so no step {step}; "
                f"saved steps: {_compact(steps)}"
            )
        step = steps[step]
    if step not in steps:
        raise PolicyNotFound(
            f"policy {policy} has no step {step}; {_nearest(steps, step)} "
            f"(saved steps: {_compact(steps)}; step=-1 is the last)"
        )
    return step


def _nearest(steps: list[int], step: int) -> str:
    """The saved steps either side of a missing one."""
    below = [s for s in steps if s < step]
    above = [s for s in steps if s > step]
    near = ([f"{below[-1]}"] if below else []) + ([f"{above[0]}"] if above else [])
    return f"nearest saved: {' and '.join(near)}"


def _compact(steps: list[int]) -> str:
    return (
        ", ".join(map(str, steps))
        if len(steps) <= 8
        else (f"{', '.join(map(str, steps[:4]))}, …, {', '.join(map(str, steps[-2:]))}")
    )


_warned: set[str] = set()


def iter_runs(root: Path | None = None, warn: bool = True) -> Iterator[Run]:
    """The runs under the checkpoint root. A folder whose run.json is unreadable or not
    valid is skipped, with (if `warn`) one warning line on stderr naming the file, once
    per process."""
    root = Path(root) if root is not None else default_root()
    for info_path in sorted(root.glob(f"*/*/{RUN_FILE}")):
        try:
            record = read_run_file(info_path)
        except CheckpointError as e:
            if warn and str(info_path) not in _warned:
                _warned.add(str(info_path))
                print(f"warning: skipped {e}", file=sys.stderr)
            continue
        yield Run(record.key, info_path.parent)


def policies(root: Path | None = None, complete_only: bool = False, warn: bool = True) -> list[str]:
    """Names of the runs under the checkpoint root."""
    runs = [r for r in iter_runs(root, warn) if r.complete or not complete_only]
    return sorted({r.name for r in runs}, key=policy_sort_key)


def read_run(key: PolicyKey, root: Path | None = None) -> RunFile | None:
    """The run.json where `key`'s run lives (None if there is none); CheckpointError naming
    the file if it is not valid or holds another run."""
    path = run_dir(key, root) / RUN_FILE
    if not path.exists():
        return None
    record = read_run_file(path)
    if record.key != key:
        raise CheckpointError(
            f"{path} is the run.json of {record.key.name}, not of {key.name}: the folder was "
            f"copied or renamed; {advice(path)}"
        )
    return record


def find_run(name: str | PolicyKey, root: Path | None = None) -> Run:
    """The run a name resolves to; PolicyNotFound names what exists if none or several do;
    CheckpointError names the file if the run's run.json is corrupt."""
    key = name if isinstance(name, PolicyKey) else parse_policy(name)
    root = Path(root) if root is not None else default_root()
    read_run(key, root)  # its own folder's run.json, if any, must be valid
    matches = [r for r in iter_runs(root, warn=False) if r.key == key]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        existing = policies(root, warn=False)
        listing = ", ".join(existing) if existing else "none (train with: python -m interp.train)"
        raise PolicyNotFound(
            f"unknown policy {str(name)!r} under {root.resolve()}; existing: {listing}"
        )
    raise PolicyNotFound(
        f"policy {str(name)!r} is ambiguous under {root}: "
        + ", ".join(str(r.path) for r in matches)
        + "; remove the duplicate run folders"
    )


def load_checkpoint(name: str, step: int | None = None, root: Path | None = None) -> Checkpoint:
    """A policy's final checkpoint, or saved step N (-1: the last saved)."""
    return find_run(name, root).checkpoint(step)


def load(name: str, step: int | None = None, root: Path | None = None) -> HookedTransformer:
    """A policy as a HookedTransformer in eval mode, tokenizer attached, named
    "policy@stepN": its final checkpoint, or saved step N (-1: the last saved)."""
    return load_checkpoint(name, step, root).model


def trajectory(name: str, root: Path | None = None) -> list[Checkpoint]:
    """Every saved checkpoint of a policy, in step order (models load on first use)."""
    return find_run(name, root).trajectory()


def is_complete(key: PolicyKey, root: Path | None = None) -> bool:
    """Whether the run of `key` finished (its run.json says so)."""
    record = read_run(key, root)
    return record is not None and record.complete


def tidy_finished(key: PolicyKey, root: Path | None = None) -> bool:
    """`is_complete`, deleting the optimizer states a finished run still holds (a kill
    between writing "complete" and deleting them leaves them; nothing trains a finished
    run, so no lock is needed)."""
    done = is_complete(key, root)
    if done:
        drop_optimizer_state(run_dir(key, root))
    return done
