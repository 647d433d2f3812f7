"""What the experiment scripts share: their options, their command line, and writing a
report whose path the claims then link to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from interp.analysis.claims import Claim
from interp.cli import Folders, option, parse, run
from interp.options import seed_option
from interp.present.html import Report
from interp.present.write import write_report

# the seeds every experiment and `make paper` run by default: the case study's findings
# depend on the seed (β = 0.01 goes OOD in 2 of 5), so one seed is not a result
SEEDS = [0, 1, 2, 3, 4]

INTERRUPTED = (
    "the checkpoints trained and the reports written so far are kept: rerun the same "
    "command to resume"
)


@dataclass
class ExperimentOptions(Folders):
    seeds: list[int] = seed_option(SEEDS, help="seeds (data split, initialisation, batch order)")
    progress: bool = option(True, help="show progress bars")


def publish(report: Report, reports: Path, claims: list[Claim]) -> Path:
    """Write the report and put its path first among each claim's links."""
    path = write_report(report, reports)
    for c in claims:
        c.links = [str(path.relative_to(reports)), *c.links]
    return path


def cli(
    experiment: Callable[..., Claim | list[Claim]],
    prog: str,
    description: str,
    argv: list[str] | None,
) -> int:
    """Parse the shared options, run the experiment, print one line per claim."""
    opts = parse(ExperimentOptions, argv, prog, description)

    def body() -> int:
        out = experiment(
            opts.seeds,
            Path(opts.checkpoints),
            Path(opts.reports),
            progress=opts.progress,
            argv=argv,
        )
        for c in out if isinstance(out, list) else [out]:
            print(f"{c.id} {c.verdict}: {c.measured()}; {c.detail}")
        return 0

    return run(body, prog, INTERRUPTED)
