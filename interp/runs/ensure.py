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
from interp.runs import files, store
from interp.runs.config import DEFAULT_POLICIES, N_CHECKPOINTS, RunSpec
from interp.runs.ensemble import train_ensemble
from interp.runs.names import PolicyKey, parse_policy
from interp.runs.store import Run, is_complete
from interp.runs.trainer import train_run
from interp.runs.writer import check_settings


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
    say(refs)
    for k in refs:
        train_run(spec(k), root, progress)
    groups: dict[tuple, list[PolicyKey]] = {}
    for k in dict.fromkeys(k for k in keys if not k.is_ref):
        groups.setdefault((k.preset, k.loss, k.seed), []).append(k)
    for group in groups.values():
        say(group)
        pending = [k for k in group if not store.tidy_finished(k, root)]
        if ensemble and len(pending) > 1:
            train_ensemble([spec(k) for k in pending], root, progress)
        else:
            for k in pending:
                train_run(spec(k), root, progress)
    return [Run(k, files.run_dir(k, root)) for k in keys]


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
