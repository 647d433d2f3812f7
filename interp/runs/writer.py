"""One run's folder as training writes it: run.json, the training log, and evaluated
checkpoints.

`RunWriter` is shared by the one-run trainer (`interp.runs.trainer`) and the batched one
(`interp.runs.ensemble`), so a run's files are the same whichever trained it. Every saved
checkpoint is evaluated on the test split (`interp.core.metrics.evaluate`, exact metrics
included) and the result stored in its meta.json, so that analyses need not recompute it.
The log is written before the checkpoint: if the process dies between the two, resuming
truncates the log to the previous checkpoint; the other order would lose rows.

Every file read here is validated (`interp.runs.schema`); a run resumes only from a
checkpoint that still holds its optimizer state (`resumable`), and `begin` can take it
back to any such step, discarding what was saved after it: the batched trainer uses that
to bring the members of an ensemble back to a step they all saved.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.core.data import Dataset
from interp.core.metrics import eval_settings, evaluate
from interp.core.numberline import make_dataset
from interp.core.scoring import split_logprobs
from interp.errors import CheckpointError, TrainingDiverged, UserError
from interp.lens import HookedTransformer
from interp.runs import files, steps
from interp.runs.config import RunSpec, checkpoint_steps
from interp.runs.store import Checkpoint, Run, read_run


def _run_info(spec: RunSpec, data: Dataset, total: int, save_at: list[int]) -> dict[str, Any]:
    key = spec.key
    return {
        "policy": key.name,
        "preset": key.preset,
        "loss": key.loss,
        "beta": key.beta,
        "seed": key.seed,
        "reference": None if key.is_ref else key.reference.name,
        "hyper": asdict(spec.hyper),
        "model": asdict(spec.model),
        "n_train_pairs": data.train.n_pairs,
        "n_test_pairs": data.test.n_pairs,
        "total_steps": total,
        "steps_per_epoch": math.ceil(data.train.n_pairs / spec.hyper.batch_size),
        "checkpoint_steps": save_at,
        "status": "running",
    }


_SETTINGS = (
    "preset", "loss", "beta", "seed", "hyper", "model", "total_steps", "checkpoint_steps",
    "reference_sha256",
)  # fmt: skip


@dataclass
class TrainLog:
    """Per-step training log, as columns."""

    columns: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, row: dict[str, float]) -> None:
        self.columns.setdefault("step", []).append(step)
        for k, v in row.items():
            self.columns.setdefault(k, []).append(float(v))

    def truncate(self, last_step: int) -> TrainLog:
        keep = [i for i, s in enumerate(self.columns.get("step", [])) if s <= last_step]
        return TrainLog({k: [v[i] for i in keep] for k, v in self.columns.items()})


class RunWriter:
    """One run's folder: run.json, the training log, and evaluated checkpoints.

    Shared by the one-run trainer here and the batched trainer in `interp.ensemble`, so a
    run's files are the same whichever trained it.
    """

    def __init__(
        self,
        spec: RunSpec,
        root: Path | None,
        data: Dataset,
        ref_ckpt: Checkpoint | None,
        ref_test: Float[Tensor, " n_seqs"] | None = None,
    ):
        self.spec, self.key, self.data = spec, spec.key, data
        self.rdir = files.run_dir(spec.key, root)
        self.root = root
        self.ref = ref_ckpt.model if ref_ckpt is not None else None
        self.ref_sha = ref_ckpt.sha256 if ref_ckpt is not None else None
        self.per_epoch = math.ceil(data.train.n_pairs / spec.hyper.batch_size)
        self.total = spec.hyper.epochs * self.per_epoch
        self.save_at = checkpoint_steps(self.total, spec.n_checkpoints)
        self.info = _run_info(spec, data, self.total, self.save_at)
        self.info["reference_sha256"] = self.ref_sha
        self.log = TrainLog()
        self._ref_test = ref_test
        self._t0 = time.time()

    @property
    def ref_test(self) -> Float[Tensor, " n_seqs"] | None:
        """The reference's log-probs of the test sequences (the scoring path evaluate() uses)."""
        if self._ref_test is None and self.ref is not None:
            self._ref_test = split_logprobs(self.ref, self.data.test)
        return self._ref_test

    def resumable(self) -> list[int]:
        """The steps this unfinished run can resume from (saved with optimizer state), in
        order; [] if there is nothing to resume. UserError if the folder holds an
        unfinished run with other settings. Call it holding the run's lock."""
        old = read_run(self.key, self.root)
        if old is None:
            return []
        changed = [k for k in _SETTINGS if old.raw.get(k) != self.info.get(k)]
        if changed:
            raise UserError(
                f"{self.rdir} holds an unfinished run with other settings ({', '.join(changed)}); "
                "delete that folder to start over"
            )
        return steps.resumable_steps(self.rdir)

    def begin(
        self, resume_at: int | None | Literal["newest"] = "newest"
    ) -> tuple[int, Path | None]:
        """Write run.json; the step to start from and the checkpoint to resume (or None).

        Resumes from `resume_at` (one of `resumable()`; by default the newest), discarding
        the checkpoints saved after it; None starts over. Temporaries left by a killed
        process are removed first. Call it holding the run's lock."""
        for p in steps.clean_temporaries(self.rdir):
            print(f"removed {p}, left by an interrupted write", file=sys.stderr)
        saved = self.resumable()
        if resume_at == "newest":
            resume_at = saved[-1] if saved else None
        if resume_at is None:
            steps.clear_run(self.rdir)  # an unfinished run that saved nothing resumable
            files.write_json(self.rdir / files.RUN_FILE, self.info)
            return 0, None
        if resume_at not in saved:
            raise ValueError(f"{self.key.name} cannot resume from step {resume_at}: {saved}")
        start = resume_at
        steps.check_optimizer_state(self.rdir / files.step_dirname(start))
        log_path = self.rdir / files.LOG_FILE
        log = files.read_log(log_path) if log_path.exists() else None
        kept = [s for s in (log.steps() if log else []) if s <= start]
        if kept != list(range(1, start + 1)):
            raise CheckpointError(
                f"{log_path} does not cover steps 1 to {start}, so {self.key.name} cannot "
                f"resume from step {start}; delete the run folder {self.rdir} and retrain it"
            )
        steps.discard_steps_after(self.rdir, start)
        self.log = TrainLog(log.raw if log else {}).truncate(start)
        old = read_run(self.key, self.root)
        self.info["resumed_from"] = (old.resumed_from if old else []) + [start]
        print(f"resuming {self.key.name} from step {start}", file=sys.stderr)
        files.write_json(self.rdir / files.RUN_FILE, self.info)
        return start, self.rdir / files.step_dirname(start)

    def save(
        self,
        step: int,
        model: HookedTransformer,
        optimizer_state: dict,
        drop_older: bool = True,
        evaluation: dict[str, Any] | None = None,
    ) -> None:
        """Evaluate the model on the test split (unless its `evaluation` is given: the
        batched trainer evaluates all its members at once) and write the checkpoint of
        `step`, with the optimizer state; with `drop_older`, delete the older checkpoints'
        optimizer states (else call `drop_older_states` once it is safe to: the batched
        trainer does so when every member has saved the step)."""
        spec = self.spec
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise self.diverged(step, "non-finite weights")
        ev = evaluation
        if ev is None:
            ev = evaluate(
                model, self.data.test, self.ref, self.key.beta, self.ref_test, spec.exact_threshold
            )
        meta = {
            **{k: self.info[k] for k in ("policy", "preset", "loss", "beta", "seed", "reference")},
            "epoch": step / self.per_epoch,
            "reference_sha256": self.ref_sha,
            "eval": ev,
            "eval_settings": eval_settings(spec.exact_threshold, self.data.task),
        }
        # log first: if we die before the checkpoint lands, resuming truncates the log to
        # the previous checkpoint; the other order would lose rows.
        files.write_json(self.rdir / files.LOG_FILE, self.log.columns, indent=None)
        steps.save_checkpoint(self.rdir, step, model, meta, optimizer_state)
        if drop_older:
            self.drop_older_states(step)

    def drop_older_states(self, step: int) -> None:
        """Delete the optimizer states of the checkpoints before `step`."""
        steps.drop_optimizer_state(self.rdir, keep=self.rdir / files.step_dirname(step))

    def diverged(self, step: int, what: str = "non-finite loss") -> TrainingDiverged:
        last = max([s for s in self.save_at if s < step], default=0)
        return TrainingDiverged(
            f"{self.key.name}: {what} at step {step}; checkpoints up to step {last} "
            f"are kept in {self.rdir} (lower the learning rate or check β)"
        )

    def finish(self) -> Run:
        self.info.update(status="complete", wall_time_s=round(time.time() - self._t0, 2))
        files.write_json(self.rdir / files.RUN_FILE, self.info)
        steps.drop_optimizer_state(self.rdir)  # only once "complete" is on disk
        return Run(self.key, self.rdir)


def check_settings(spec: RunSpec, root: Path | None = None) -> None:
    """A finished run on disk must have been trained as `spec` asks; UserError if not."""
    rdir = files.run_dir(spec.key, root)
    old = read_run(spec.key, root)
    if old is None:
        raise UserError(f"{spec.key.name} has no run.json in {rdir}; train it first")
    data = make_dataset(spec.key.preset, spec.key.seed)
    total = spec.hyper.epochs * math.ceil(data.train.n_pairs / spec.hyper.batch_size)
    want = {
        "hyper": asdict(spec.hyper),
        "model": asdict(spec.model),
        "checkpoint_steps": checkpoint_steps(total, spec.n_checkpoints),
    }
    changed = [k for k, v in want.items() if old.raw.get(k) != v]
    if changed:
        raise UserError(
            f"{spec.key.name} in {rdir.parent} was trained with other settings "
            f"({', '.join(changed)}); use another --checkpoints folder or delete that run"
        )
