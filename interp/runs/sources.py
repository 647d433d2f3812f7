"""Policy sources: what an A-vs-B comparison compares, and on which data.

A policy is either one of the suite's own runs, named as in `interp.runs.names`
(`beta0.01`, `grokking/beta0.5`), or a Hugging Face model folder, named by its path
(`runs-trl/beta0.01`: a folder holding config.json, safetensors weights and tokenizer
files, as `save_pretrained` or TRL's `save_model` writes it; `interp.runs.hf_folder`
converts it). A name that is the path of such a folder is a folder; anything else is a
run name. A folder's saved steps are its `checkpoint-<N>` subfolders (what a Hugging Face
`Trainer` leaves in its output folder), if it has any, then the folder itself as the final
step; a bare model folder has one step.

A comparison needs three policies — A, B and A's reference — and preference data:
- A run knows its reference, β, preset and seed; a folder knows none of them, so a folder A
  needs `--ref`, and Acc/Margin need `--beta` (Acc does not depend on β's size, Margin
  scales with it; both stay "not computable" without it).
- The data are the runs' own number-line split, unless `--data FILE` names a TRL-format
  preference file (`interp.runs.preference_file`), which is then read with A's tokenizer.
  Folders without `--data` are analysed on the number-line task (preset `--preset`, split
  seed `--split-seed`) if their tokenizer is the number line's; otherwise `--data` is
  required.
- `Comparison.not_computable` says, per metric, why it cannot be computed here (no judge,
  a response space too large to enumerate, no β), so reports say so instead of dropping it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from interp.core.data import Dataset
from interp.core.model import DTYPES
from interp.core.numberline import PRESETS, get_task, make_dataset
from interp.core.task import Task
from interp.errors import PolicyNotFound, UserError
from interp.lens import HookedTransformer
from interp.options import option, seed_error, seed_option
from interp.runs import hf_folder
from interp.runs.names import DEFAULT_PRESET, REF
from interp.runs.store import (
    Checkpoint,
    CheckpointRef,
    Run,
    checkpoint_name,
    find_run,
    saved_step,
)


@dataclass
class SourceOptions:
    """Where the policies and the data of a comparison come from, and where they run."""

    ref: str | None = option(
        None,
        help="A's reference: a run name or a Hugging Face folder (default: the reference A "
        "was trained from; required when A is a folder)",
    )
    data: str | None = option(
        None,
        help="preference data: a TRL-format JSONL file or a `datasets` folder with prompt, "
        "chosen and rejected columns (default: the number-line task of the policies)",
    )
    beta: float | None = option(
        None, help="β of A's loss, for Acc and Margin (default: the run's own; a folder has none)"
    )
    preset: str = option(
        DEFAULT_PRESET,
        help="number-line preset for folder policies without --data",
        choices=list(PRESETS),
    )
    split_seed: int = seed_option(
        0, help="seed of the number-line train/test split for folder policies without --data"
    )
    device: str = option("cpu", help="device the models run on: cpu, cuda, cuda:1, mps…")
    dtype: str = option("float32", help="dtype of the models' weights", choices=list(DTYPES))

    def validate_sources(self) -> None:
        if self.beta is not None and not (self.beta > 0 and self.beta < float("inf")):
            raise UserError(f"--beta must be a positive number, not {self.beta}")
        if (why := seed_error(self.split_seed)) is not None:
            raise UserError(f"--split-seed: {why}")
        try:
            torch.empty(0, device=self.device)
        except Exception as e:  # torch raises AssertionError for a device it was built without
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--device {self.device!r} is not usable here: {first}") from None


# ----------------------------------------------------------------------------- folders

_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class FolderCheckpoint:
    """One step of a folder policy; `.model` converts (and caches) it on first use."""

    policy: str
    step: int
    path: Path
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def name(self) -> str:
        return checkpoint_name(self.policy, self.step)

    @cached_property
    def _loaded(self) -> tuple[HookedTransformer, Any]:
        model, info = hf_folder.load_folder(self.path, self.device, DTYPES[self.dtype])
        model.cfg.model_name = self.name
        return model, info

    @property
    def model(self) -> HookedTransformer:
        return self._loaded[0]

    @property
    def sha256(self) -> str:
        return self._loaded[1].sha256

    @property
    def meta(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "step": self.step, "beta": None}

    @property
    def eval(self) -> dict[str, Any]:
        return {}  # a folder stores no evaluation: every metric is computed

    @property
    def ref(self) -> CheckpointRef:
        return CheckpointRef(self.policy, self.step, self.sha256)


@dataclass(frozen=True)
class FolderPolicy:
    """A Hugging Face model folder as a policy (see the module docstring)."""

    name: str
    path: Path
    device: str = "cpu"
    dtype: str = "float32"
    complete: bool = True  # a folder on disk is whatever it is: nothing resumes it

    @cached_property
    def _steps(self) -> dict[int, Path]:
        found = {}
        for sub in self.path.iterdir():
            m = _STEP_DIR.match(sub.name)
            if m and hf_folder.is_hf_folder(str(sub)):
                found[int(m.group(1))] = sub
        final = hf_folder.folder_step(self.path)  # trainer_state.json's global_step, or None
        if final is None:
            final = max(found) if found else 0
        found[final] = self.path
        return dict(sorted(found.items()))

    def steps(self) -> list[int]:
        return list(self._steps)

    def checkpoint(self, step: int | None = None) -> FolderCheckpoint:
        steps = self.steps()
        step = saved_step(self.name, steps, steps[-1] if step is None else step)
        if step == steps[-1]:
            return self._final
        return FolderCheckpoint(self.name, step, self._steps[step], self.device, self.dtype)

    @cached_property
    def _final(self) -> FolderCheckpoint:
        """The last step, kept: resolving the data, checking the pair and the analysis all
        ask for it, and a folder is converted once. Earlier steps are not kept (a
        trajectory of real models would not fit in memory)."""
        last = max(self._steps)
        return FolderCheckpoint(self.name, last, self._steps[last], self.device, self.dtype)

    def trajectory(self) -> list[FolderCheckpoint]:
        return [self.checkpoint(s) for s in self.steps()]


Source = Run | FolderPolicy


def policy_name(text: str) -> str:
    """A folder policy's name: its path as given, without "./" in front or "/" behind."""
    text = text.strip()
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/") or text


def find_source(
    name: str, root: Path | None = None, device: str = "cpu", dtype: str = "float32"
) -> Source:
    """The policy a name means: a Hugging Face folder if it is the path of one, else a run."""
    if hf_folder.is_hf_folder(name):
        return FolderPolicy(policy_name(name), Path(name).expanduser().resolve(), device, dtype)
    try:
        run = find_run(name, root)
    except PolicyNotFound:
        if Path(name).expanduser().is_dir() and ("/" in name or name.startswith((".", "~"))):
            raise PolicyNotFound(
                f"{name} is a folder without config.json: not a Hugging Face model folder "
                "(save the model with save_pretrained, or name one of the suite's runs)"
            ) from None
        raise
    return dataclasses.replace(run, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    """Policy A, policy B, A's reference, the data, and A's β (None: unknown)."""

    a: Source
    b: Source
    ref: Source
    dataset: Dataset
    beta: float | None
    b_is_ref: bool = False

    @property
    def task(self) -> Task:
        return self.dataset.task

    @property
    def not_computable(self) -> dict[str, str]:
        """Metric → why this comparison cannot compute it."""
        out: dict[str, str] = {}
        if not self.task.has_judge:
            for m in ("ood_rate", "error", "ood_mass", "gold_reward"):
                out[m] = f"the task {self.task.name} has no judge of OOD"
        if not self.task.enumerable:
            why = (
                f"the response space of {len(self.task.response_tokens)} tokens per position "
                "is too large to enumerate (kl_mc estimates the KL instead)"
            )
            for m in ("kl_exact", "exact_residual", "ood_mass", "gold_reward"):
                out.setdefault(m, why)
        if self.beta is None:
            out["margin"] = "A's β is unknown: pass --beta"
        return out


def _is_folder(s: Source) -> bool:
    return isinstance(s, FolderPolicy)


def resolve(
    a: str, b: str, root: Path | None = None, opts: SourceOptions | None = None
) -> Comparison:
    """Policy A, policy B (`ref` means A's reference), A's reference and the data, checked:
    every run finished, a folder A given its reference, the data readable."""
    o = opts or SourceOptions()
    o.validate_sources()
    a_src = find_source(a, root, o.device, o.dtype)
    if isinstance(a_src, Run) and a_src.key.is_ref:
        raise UserError(f"A must be a preference run, not the reference {a_src.name}")
    if o.ref is not None:
        ref_src = find_source(o.ref, root, o.device, o.dtype)
    elif isinstance(a_src, Run):
        ref_src = find_source(a_src.key.reference.name, root, o.device, o.dtype)
    else:
        raise UserError(f"A ({a_src.name}) is a folder: name its reference with --ref PATH")
    b_is_ref = b.strip().lower() == REF
    b_src = ref_src if b_is_ref else find_source(b, root, o.device, o.dtype)
    for s in (a_src, b_src, ref_src):
        if not s.complete:
            raise UserError(f"policy {s.name} is unfinished; resume it with python -m interp.train")
    beta = o.beta if o.beta is not None or _is_folder(a_src) else float(a_src.key.beta)
    return Comparison(a_src, b_src, ref_src, _dataset(a_src, o), beta, b_is_ref)


def _dataset(a: Source, o: SourceOptions) -> Dataset:
    if o.data is not None:
        from interp.runs.preference_file import preference_task

        model = a.checkpoint().model
        task = preference_task(Path(o.data), model.tokenizer, n_ctx=model.cfg.n_ctx)
        return task.dataset(o.split_seed)
    if isinstance(a, Run):
        return make_dataset(a.key.preset, a.key.seed)
    task = get_task(o.preset)
    tok = a.checkpoint().model.tokenizer
    if tok is None or [tok.convert_ids_to_tokens(i) for i in range(len(task.vocab))] != list(
        task.vocab
    ):
        raise UserError(
            f"{a.name}'s tokenizer is not the number line's: give its preference data with "
            "--data FILE (TRL's prompt/chosen/rejected columns)"
        )
    return make_dataset(o.preset, o.split_seed)


# ----------------------------------------------------------------------------- IPython


def load_checkpoint(
    name: str, step: int | None = None, root: Path | None = None
) -> Checkpoint | FolderCheckpoint:
    """A policy's final checkpoint, or saved step N (-1: the last saved): a run by name or a
    Hugging Face folder by path."""
    return find_source(name, root).checkpoint(step)


def load(name: str, step: int | None = None, root: Path | None = None) -> HookedTransformer:
    """A policy as a HookedTransformer in eval mode, tokenizer attached, named
    "policy@stepN": a run by name (`load("beta0.01")`) or a Hugging Face model folder by
    path (`load("runs-trl/beta0.01")`); its final checkpoint, or saved step N."""
    return load_checkpoint(name, step, root).model


def trajectory(name: str, root: Path | None = None) -> list[Checkpoint | FolderCheckpoint]:
    """Every saved checkpoint of a policy (run or folder), in step order."""
    return find_source(name, root).trajectory()
