"""Make sure runs exist: train whatever is missing or unfinished, references first.

Preference runs that differ only in β are trained together as one batched ensemble
(`interp.runs.ensemble`). The main job trains its default policies on demand; any other
name must already exist, so a typo fails instead of starting a training run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.sampling import EXACT_THRESHOLD
from interp.runs import files, locks, store
from interp.runs.config import DEFAULT_POLICIES, N_CHECKPOINTS, RunSpec
from interp.runs.ensemble import train_ensemble
from interp.runs.names import PolicyKey, parse_policy
from interp.runs.store import Run, is_complete
from interp.runs.trainer import train_run
from interp.runs.writer import check_settings
from interp.stages import Stages


def ensure_trained(
    keys: Sequence[PolicyKey],
    root: Path | None = None,
    model: ModelSpec = CASE_STUDY,
    n_checkpoints: int = N_CHECKPOINTS,
    progress: bool = True,
    announce: bool = True,
    exact_threshold: float | None = EXACT_THRESHOLD,
    ensemble: bool = True,
    strict: bool = False,
) -> list[Run]:
    """Train whatever of `keys` (and their references) is missing or unfinished, references
    first. Preference runs that differ only in β are trained together as one batched
    ensemble (`interp.ensemble`) unless `ensemble` is False. With `strict`, a finished run
    among `keys` must also have the requested hyper-parameters, architecture and
    checkpoint schedule (an experiment that reads every epoch cannot use a run saved 30
    times). Returns the runs of `keys`."""

    def spec(k: PolicyKey) -> RunSpec:
        return RunSpec.for_key(k, model, n_checkpoints, exact_threshold)

    if strict:  # the runs asked for, not their references (ask for those to check them)
        for k in keys:
            if is_complete(k, root):
                check_settings(spec(k), root)

    def say(ks: Sequence[PolicyKey]) -> None:
        for k in ks:
            if announce and not is_complete(k, root):
                print(
                    f"training {k.name} ({k.preset} preset) into {files.run_dir(k, root)}",
                    file=sys.stderr,
                )

    refs = list(dict.fromkeys(k if k.is_ref else k.reference for k in keys))
    groups: dict[tuple, list[PolicyKey]] = {}
    for k in dict.fromkeys(k for k in keys if not k.is_ref):
        groups.setdefault((k.preset, k.loss, k.seed), []).append(k)
    # one stage per reference to train and per group of preference runs with work left
    todo_refs = [k for k in refs if announce and not is_complete(k, root)]
    todo = [g for g in groups.values() if announce and not all(is_complete(k, root) for k in g)]
    locks.check_free([*todo_refs, *(k for g in todo for k in g)], root)  # before announcing
    with Stages(len(todo_refs) + len(todo), show=None if announce else False) as stage:
        for k in refs:
            if k in todo_refs:
                stage(_stage_title([k], ensemble))
            say([k])
            train_run(spec(k), root, progress)
        for group in groups.values():
            if group in todo:
                stage(_stage_title(group, ensemble))
            say(group)
            pending = [k for k in group if not store.tidy_finished(k, root)]
            if ensemble and len(pending) > 1:
                train_ensemble([spec(k) for k in pending], root, progress)
            else:
                for k in pending:
                    train_run(spec(k), root, progress)
    return [Run(k, files.run_dir(k, root)) for k in keys]


def _stage_title(group: Sequence[PolicyKey], ensemble: bool) -> str:
    """What a training stage does: `train ref (sft, sweep preset, seed 0)`, or for several
    β of one seed `train 28 runs, β 0.01…1 (dpo, sweep preset, seed 0, one ensemble)`."""
    k = group[0]
    if len(group) <= 3:
        what = f"train {', '.join(g.name for g in group)}"
    else:
        betas = sorted(g.beta or 0.0 for g in group)
        what = f"train {len(group)} runs, β {betas[0]:g}…{betas[-1]:g}"
    together = ", one ensemble" if ensemble and len(group) > 1 else ""
    return f"{what} ({k.loss}, {k.preset} preset, seed {k.seed}{together})"


def ensure_default_policies(names: Sequence[str], root: Path | None = None) -> None:
    """Train those of `names` that are default policies (`DEFAULT_POLICIES`) and missing.

    Any other name is left alone: an unknown one should fail, not start a training run.
    """
    defaults = {parse_policy(n) for n in DEFAULT_POLICIES}
    keys = [parse_policy(n) for n in names]
    for k in keys:  # anything else must exist already: fail before training a thing
        if k not in defaults:
            store.find_run(k, root)
    ensure_trained([k for k in keys if k in defaults], root)
