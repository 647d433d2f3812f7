"""Training logs of runs, read for plotting: per-step curves and per-checkpoint evaluations.

Every run folder keeps two records of its training (`interp.runs.writer`):
- `log.json`, one row per optimizer step, with TRL's names: `loss` (the run's own
  objective), and for preference runs `rewards/chosen`, `rewards/rejected` (the batch mean
  of the implicit reward β·log(π/π_ref) of the preferred and dispreferred response),
  `rewards/margins` (their difference), `rewards/accuracies` (the share of pairs with the
  preferred reward higher), `logps/chosen`, `logps/rejected` (the batch mean of the
  policy's sequence log-probabilities). An SFT run logs only `loss`.
- the evaluation stored in each checkpoint's meta.json: greedy OOD rate and Error, KL to
  the reference three ways, Acc and Margin on the test pairs, test log-probabilities
  (`interp.core.metrics.evaluate`); whichever of these the run has.

Per-step values are means over one batch of 16, so they are noisy; each curve keeps its
raw values and a centred moving average over `window` steps (`smooth`): the value at
step i is the mean of the raw values at steps i − ⌊window/2⌋ … i + ⌈window/2⌉ − 1 that
exist, so near either end fewer steps are averaged, and `window` 1 is the raw curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Int

from interp.errors import UserError
from interp.runs.names import parse_policy
from interp.runs.store import CheckpointRef, Run, find_run

# the per-step columns a preference run logs, in the order they are shown
PREFERENCE_COLUMNS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
LOSS = "loss"
DEFAULT_WINDOW = 25  # steps averaged by `smooth` (one batch per step: 400 pairs on sweep)


def check_window(window: int) -> None:
    """UserError unless `window` is a number of steps to average (at least 1)."""
    if window < 1:
        raise UserError(f"--smooth must be at least 1 step, not {window}")


def smooth(values: Float[np.ndarray, " step"], window: int) -> Float[np.ndarray, " step"]:
    """The centred moving average of `values` over `window` steps (fewer at the ends)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    x = np.asarray(values, dtype=float)
    n = len(x)
    before, after = window // 2, (window - 1) - window // 2
    csum = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(n)
    lo, hi = np.maximum(i - before, 0), np.minimum(i + after + 1, n)
    return (csum[hi] - csum[lo]) / (hi - lo)


@dataclass(frozen=True)
class Curve:
    """One logged column of a run, step by step."""

    raw: Float[np.ndarray, " step"]
    smoothed: Float[np.ndarray, " step"]


@dataclass(frozen=True)
class Evaluations:
    """The evaluation stored with each checkpoint: `metrics[name][i]` at `steps[i]` (None
    where that checkpoint does not have it, e.g. KL of the reference to itself)."""

    steps: list[int]
    metrics: dict[str, list[float | None]]

    def has(self, name: str) -> bool:
        """Whether any checkpoint has a value of `name`."""
        return any(v is not None for v in self.metrics.get(name, []))


@dataclass(frozen=True)
class RunLog:
    """One run's training log and checkpoint evaluations."""

    policy: str
    loss: str  # sft, dpo, ipo, …
    beta: float | None
    reference: str | None  # the reference policy's name (None for a reference)
    seed: int
    complete: bool
    steps_per_epoch: int
    steps: Int[np.ndarray, " step"]  # the optimizer steps logged, 1, 2, …
    curves: dict[str, Curve]  # by log column: loss, rewards/chosen, …
    evals: Evaluations
    checkpoints: list[CheckpointRef]

    @property
    def is_preference(self) -> bool:
        return self.loss != "sft"

    def final(self, column: str, window: int) -> float | None:
        """The mean of a logged column over the last `window` steps (all of them if fewer);
        None if the run did not log it."""
        c = self.curves.get(column)
        return float(c.raw[-window:].mean()) if c is not None and len(c.raw) else None

    def last_eval(self, name: str) -> float | None:
        """A metric at the last saved checkpoint (None if it has none)."""
        values = self.evals.metrics.get(name, [])
        return values[-1] if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "loss": self.loss,
            "beta": self.beta,
            "reference": self.reference,
            "seed": self.seed,
            "complete": self.complete,
            "steps_per_epoch": self.steps_per_epoch,
            "steps": self.steps.tolist(),
            "curves": {
                k: {"raw": c.raw.tolist(), "smoothed": c.smoothed.tolist()}
                for k, c in self.curves.items()
            },
            "evals": {"steps": self.evals.steps, **self.evals.metrics},
        }


@dataclass(frozen=True)
class TrainingLogResult:
    """The training logs of several runs, smoothed alike."""

    runs: list[RunLog]
    window: int

    @property
    def checkpoints(self) -> list[CheckpointRef]:
        """Every checkpoint whose evaluation is shown (the report footer lists them)."""
        return [c for r in self.runs for c in r.checkpoints]

    @property
    def preference(self) -> list[RunLog]:
        return [r for r in self.runs if r.is_preference]

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "smoothing": "centred moving average over `window` steps, fewer at the ends",
            "runs": [r.to_json() for r in self.runs],
        }


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def read_evaluations(run: Run) -> tuple[Evaluations, list[CheckpointRef]]:
    """The evaluation stored in each saved checkpoint of `run`, metrics in the order they
    first appear."""
    cks = run.trajectory()
    evs = [c.eval for c in cks]
    names = list(dict.fromkeys(k for e in evs for k in e))
    metrics = {k: [_number(e.get(k)) for e in evs] for k in names}
    return Evaluations([c.step for c in cks], metrics), [c.ref for c in cks]


def read_run_log(run: Run, window: int = DEFAULT_WINDOW) -> RunLog:
    """One run's log (every logged column, raw and smoothed) and its evaluations."""
    columns = run.log()
    steps = np.asarray(columns.get("step", []), dtype=int)
    curves = {
        k: Curve(np.asarray(v, dtype=float), smooth(np.asarray(v, dtype=float), window))
        for k, v in columns.items()
        if k != "step"
    }
    evals, refs = read_evaluations(run)
    rec = run.record
    return RunLog(
        policy=run.name,
        loss=run.key.loss,
        beta=run.key.beta,
        reference=None if run.key.is_ref else run.key.reference.name,
        seed=run.key.seed,
        complete=rec.complete,
        steps_per_epoch=rec.steps_per_epoch,
        steps=steps,
        curves=curves,
        evals=evals,
        checkpoints=refs,
    )


def training_logs(
    names: list[str], root: Path | None = None, window: int = DEFAULT_WINDOW
) -> TrainingLogResult:
    """The training logs of the named policies (unfinished runs too: what they logged so
    far), each name once however it is spelled (`beta1` and `beta1.0` are one run)."""
    check_window(window)
    if not names:
        raise UserError("--policies: give at least one policy")
    keys = list(dict.fromkeys(parse_policy(n) for n in names))
    return TrainingLogResult([read_run_log(find_run(k, root), window) for k in keys], window)
