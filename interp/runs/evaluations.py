"""Reusing the evaluation stored with a checkpoint, only when it is the one asked for.

Training evaluates every checkpoint it saves and stores the result in meta.json. An
analysis may reuse that result instead of recomputing it — but only if it was made by
this evaluation code (`EVAL_VERSION` inside the settings) with the same settings, on the
same split, against the same reference, and holds every metric the analysis reads.
Otherwise the analysis recomputes (`evaluation` does both). This is the one place that
rule lives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from interp.core.data import Dataset
from interp.core.metrics import eval_settings, evaluate
from interp.core.task import Task
from interp.runs.store import Checkpoint


def stored_evaluation(
    ckpt: Checkpoint,
    task: Task,
    exact_threshold: float | None,
    reference_sha256: str | None,
    preset: str,
    seed: int,
    metrics: Iterable[str],
) -> dict[str, Any] | None:
    """The checkpoint's stored evaluation if it can stand in for a fresh one (see the module
    docstring), else None. A stored value of None for a requested metric also means None:
    that metric was not computable when the checkpoint was saved."""
    meta = ckpt.meta
    if getattr(ckpt, "dtype", "float32") != "float32":  # stored evaluations are float32's
        return None
    stored = meta.get("eval", {})
    same = (
        meta.get("eval_settings") == eval_settings(exact_threshold, task)
        and meta.get("reference_sha256") == reference_sha256
        and (meta.get("preset"), meta.get("seed")) == (preset, seed)
        and all(stored.get(k) is not None for k in metrics)
    )
    return stored if same else None


def evaluation(
    ckpt: Checkpoint,
    data: Dataset,
    ref: Checkpoint | None,
    exact_threshold: float | None,
    metrics: Iterable[str],
    beta: float | None = None,
) -> dict[str, Any]:
    """A checkpoint's evaluation on `data.test` against `ref` (A's reference): the stored one
    when it can stand in (`stored_evaluation`), else computed now with `evaluate`."""
    metrics = tuple(metrics)
    ref_sha = None if ref is None else ref.sha256
    stored = stored_evaluation(
        ckpt, data.task, exact_threshold, ref_sha, data.task.name, data.seed, metrics
    )
    if stored is not None:
        return stored
    ref_model = None if ref is None else ref.model
    return evaluate(ckpt.model, data.test, ref_model, beta, exact_threshold=exact_threshold)
