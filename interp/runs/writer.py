"""One run's folder as training writes it: run.json, the training log, and evaluated
checkpoints.

`RunWriter` is shared by the one-run trainer (`interp.runs.trainer`) and the batched one
(`interp.runs.ensemble`), so a run's files are the same whichever trained it. Every saved
checkpoint is evaluated on the test split (`interp.core.metrics.evaluate`, exact metrics
included) and the result stored in its meta.json, so that analyses need not recompute it.
The log is written before the checkpoint: if the process dies between the two, resuming
truncates the log to the previous checkpoint; the other order would lose rows.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jaxtyping import Float
from torch import Tensor

from interp.core.data import Dataset
from interp.core.metrics import eval_settings, evaluate
from interp.core.numberline import make_dataset
from interp.core.scoring import split_logprobs
from interp.errors import TrainingDiverged, UserError
from interp.lens import HookedTransformer
from interp.runs import store
from interp.runs.config import RunSpec, checkpoint_steps
from interp.runs.store import Checkpoint, Run


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


def _resume_point(rdir: Path, info: dict[str, Any]) -> tuple[int, Path] | None:
    """The newest checkpoint of an unfinished run that holds optimizer state, if any."""
    if not (rdir / store.RUN_FILE).exists():
        return None
    old = store.read_json(rdir / store.RUN_FILE)
    changed = [k for k in _SETTINGS if old.get(k) != info.get(k)]
    if changed:
        raise UserError(
            f"{rdir} holds an unfinished run with other settings ({', '.join(changed)}); "
            "delete that folder to start over"
        )
    for step in reversed(store.saved_steps(rdir)):
        d = rdir / store.step_dirname(step)
        if (d / store.OPTIM_FILE).exists():
            return step, d
    return None


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
        self.rdir = store.run_dir(spec.key, root)
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

    def begin(self) -> tuple[int, Path | None]:
        """Write run.json; the step to start from and the checkpoint to resume (or None)."""
        resume = _resume_point(self.rdir, self.info)
        if resume is None:
            if self.rdir.exists():
                shutil.rmtree(self.rdir)  # an unfinished run that saved nothing resumable
            store.write_json(self.rdir / store.RUN_FILE, self.info)
            return 0, None
        start, d = resume
        self.log = TrainLog(Run(self.key, self.rdir).log()).truncate(start)
        old = store.read_json(self.rdir / store.RUN_FILE)
        self.info["resumed_from"] = old.get("resumed_from", []) + [start]
        print(f"resuming {self.key.name} from step {start}", file=sys.stderr)
        store.write_json(self.rdir / store.RUN_FILE, self.info)
        return start, d

    def save(self, step: int, model: HookedTransformer, optimizer_state: dict) -> None:
        """Evaluate the model on the test split and write the checkpoint of `step`."""
        spec = self.spec
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
        store.write_json(self.rdir / store.LOG_FILE, self.log.columns)
        d = store.save_checkpoint(self.rdir, step, model, meta, optimizer_state)
        store.drop_optimizer_state(self.rdir, keep=d)

    def diverged(self, step: int) -> TrainingDiverged:
        last = max([s for s in self.save_at if s < step], default=0)
        return TrainingDiverged(
            f"{self.key.name}: non-finite loss at step {step}; checkpoints up to step {last} "
            f"are kept in {self.rdir} (lower the learning rate or check β)"
        )

    def finish(self) -> Run:
        self.info.update(status="complete", wall_time_s=round(time.time() - self._t0, 2))
        store.write_json(self.rdir / store.RUN_FILE, self.info)
        store.drop_optimizer_state(self.rdir)  # only once "complete" is on disk
        return Run(self.key, self.rdir)


def check_settings(spec: RunSpec, root: Path | None = None) -> None:
    """A finished run on disk must have been trained as `spec` asks; UserError if not."""
    rdir = store.run_dir(spec.key, root)
    old = store.read_json(rdir / store.RUN_FILE)
    data = make_dataset(spec.key.preset, spec.key.seed)
    total = spec.hyper.epochs * math.ceil(data.train.n_pairs / spec.hyper.batch_size)
    want = {
        "hyper": asdict(spec.hyper),
        "model": asdict(spec.model),
        "checkpoint_steps": checkpoint_steps(total, spec.n_checkpoints),
    }
    changed = [k for k, v in want.items() if old.get(k) != v]
    if changed:
        raise UserError(
            f"{spec.key.name} in {rdir.parent} was trained with other settings "
            f"({', '.join(changed)}); use another --checkpoints folder or delete that run"
        )
