"""Training-log page; `python -m interp.training_log --policies beta0.01 beta1.0`.

Reads each policy's per-step log and checkpoint evaluations
(`interp.analysis.training_log`) and writes `reports/training/<policies>.html` with its
JSON twin (`interp.present.pages.training`). Any number of policies, overlaid; the
default policies are trained first if missing, any other name must exist.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from interp.analysis.training_log import (
    DEFAULT_WINDOW,
    TrainingLogResult,
    check_window,
    training_logs,
)
from interp.cli import Folders, option, parse, run_comparison
from interp.errors import UserError
from interp.present.pages.training import KIND, build_report, summary
from interp.runs.config import DEFAULT_POLICIES
from interp.runs.names import parse_policy


@dataclass
class TrainingLogOptions(Folders):
    policies: list[str] = option(
        list(DEFAULT_POLICIES), help="policies to show, overlaid (any number)"
    )
    smooth: int = option(
        DEFAULT_WINDOW, help="steps in the moving average of the per-step curves (1: raw)"
    )

    def validate(self) -> None:
        check_window(self.smooth)


def _seeds(names: list[str]) -> dict[str, list[int]]:
    """The policies' seeds, for the footer (none for a name that does not parse: the
    command then stops with that name's error)."""
    try:
        return {"seeds": sorted({parse_policy(n).seed for n in names})}
    except UserError:
        return {}


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.training_log`: the training-log page of some policies."""
    prog = "python -m interp.training_log"
    opts = parse(
        TrainingLogOptions,
        argv,
        prog,
        "Plot the training logs (rewards, margins, accuracies, logps, loss) and checkpoint "
        "evaluations of policies.",
    )

    def compute(root: Path) -> TrainingLogResult:
        return training_logs(opts.policies, root, opts.smooth)

    return run_comparison(
        prog,
        argv,
        opts,
        KIND,
        compute,
        build_report,
        lambda res: summary(res)[1:],
        opts.validate,
        _seeds(opts.policies),
        opts.policies,
    )


if __name__ == "__main__":
    sys.exit(main())
