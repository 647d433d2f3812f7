"""`python -m interp.train`: train the SFT reference (if missing) and preference runs.

Training itself lives in `interp.runs` (`trainer`, `ensemble`, `ensure`); this module
only reads the command line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from interp.analysis.settings import ExactSettings
from interp.cli import check_folder, option, parse, run
from interp.core.losses import LOSSES
from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.numberline import PRESETS
from interp.core.sampling import EXACT_THRESHOLD
from interp.errors import UserError
from interp.options import seed_option
from interp.present.text import summary_table
from interp.runs.config import N_CHECKPOINTS, paper_betas
from interp.runs.ensure import ensure_trained
from interp.runs.files import default_root, run_dir, saved_steps
from interp.runs.names import PolicyKey, round_beta
from interp.runs.store import is_complete

MAX_CHECKPOINTS = 10_000  # every preset trains fewer steps (sweep's reference: 2520)


@dataclass
class TrainOptions:
    betas: list[str] = option(
        [],
        help="β values to train, or 'paper' for the case study's 30 values log-spaced in "
        "[0.01, 1]; with none, only the reference is trained",
    )
    loss: str = option("dpo", help="preference loss", choices=sorted(LOSSES))
    preset: str = option(
        "sweep", help="task preset and its hyper-parameters", choices=sorted(PRESETS)
    )
    seeds: list[int] = seed_option([0], help="seeds (data split, initialisation, batch order)")
    checkpoints: str = option(str(default_root()), help="checkpoint root folder")
    n_checkpoints: int = option(
        N_CHECKPOINTS,
        help=f"checkpoints saved after step 0, evenly spaced (1 to {MAX_CHECKPOINTS}; more "
        "than a run has steps saves every step)",
    )
    n_layers: int = option(CASE_STUDY.n_layers, help="transformer layers")
    d_model: int = option(CASE_STUDY.d_model, help="residual width")
    n_heads: int = option(CASE_STUDY.n_heads, help="attention heads (d_head = d_model / n_heads)")
    d_mlp: int = option(CASE_STUDY.d_mlp, help="MLP hidden width")
    exact_threshold: float = option(
        EXACT_THRESHOLD,
        help="exact metrics at each checkpoint expand prefixes this probable; 0 = off",
    )
    ensemble: bool = option(True, help="train the β values of a seed together as one batched model")
    progress: bool = option(True, help="show progress bars")


def parse_betas(values: Sequence[str]) -> list[float]:
    if list(values) == ["paper"]:
        return paper_betas()
    out = []
    for v in values:
        try:
            b = float(v)
        except ValueError:
            raise UserError(f"--betas: {v!r} is not a number (or give just 'paper')") from None
        if not (math.isfinite(b) and b > 0):
            raise UserError(f"--betas: β must be a positive number, not {v}")
        out.append(round_beta(b))
    return list(dict.fromkeys(out))


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.train`: train the reference (if missing) and preference runs."""
    prog = "python -m interp.train"
    opts = parse(
        TrainOptions, argv, prog, "Train the SFT reference and preference (DPO-family) runs."
    )

    root = Path(opts.checkpoints)
    keys: list[PolicyKey] = []

    def body() -> int:
        if not 1 <= opts.n_checkpoints <= MAX_CHECKPOINTS:
            raise UserError(f"--n-checkpoints must be at least 1 and at most {MAX_CHECKPOINTS}")
        try:
            spec = ModelSpec(opts.n_layers, opts.d_model, opts.n_heads, opts.d_mlp)
        except ValueError as e:
            raise UserError(str(e)) from None
        betas = parse_betas(opts.betas)
        for seed in opts.seeds:
            keys.append(PolicyKey(opts.preset, "sft", None, seed))
            keys.extend(PolicyKey(opts.preset, opts.loss, b, seed) for b in betas)
        t0 = time.time()
        ExactSettings(opts.exact_threshold).validate()
        check_folder(root, "--checkpoints")
        threshold = opts.exact_threshold or None
        runs = ensure_trained(
            keys, root, spec, opts.n_checkpoints, opts.progress, True, threshold, opts.ensemble
        )
        print(summary_table(runs))
        print(f"checkpoints in {root} ({time.time() - t0:.0f} s)")
        return 0

    return run(body, prog, lambda: kept(keys, root))


def kept(keys: Sequence[PolicyKey], root: Path, most: int = 6) -> str:
    """One line on what an interrupted training left: each run's last saved step."""
    parts = []
    for k in keys:
        try:
            steps = saved_steps(run_dir(k, root))
            done = is_complete(k, root)
        except (OSError, ValueError, UserError):  # a run folder this summary cannot read
            continue
        if steps:
            parts.append(f"{k.name} {'complete' if done else f'saved up to step {steps[-1]}'}")
    if not parts:
        return "no checkpoint was saved yet; rerun the same command to start again"
    more = f" and {len(parts) - most} more" if len(parts) > most else ""
    return (
        f"checkpoints kept in {root}: {', '.join(parts[:most])}{more}; rerun the same "
        "command to resume"
    )


if __name__ == "__main__":
    sys.exit(main())
