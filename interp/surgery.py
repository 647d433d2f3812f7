"""`python -m interp.surgery`: swap parameter groups of A for B's and report.

Swaps every requested group of A for B's at each of A's saved steps, tabulates every
group of the finest partition alone and interpolates at one step, then writes
`reports/surgery/<a>_vs_<b>.html` and its JSON twin (the analysis:
`interp.analysis.surgery`; the page: `interp.present.pages.surgery`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from interp.analysis.surgery import SurgerySettings, run_surgery
from interp.cli import PairOptions, option, parse, run_comparison
from interp.present.pages.surgery import build_report, summary_lines


@dataclass
class SurgeryOptions(SurgerySettings, PairOptions):
    progress: bool = option(True, help="show a progress bar")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.surgery`: the surgery report for policies A and B."""
    prog = "python -m interp.surgery"
    opts = parse(
        SurgeryOptions, argv, prog, "Swap parameter groups between two policies and report."
    )
    return run_comparison(
        prog,
        argv,
        opts,
        "surgery",
        lambda root: run_surgery(opts.a, opts.b, root, opts, opts.progress, opts),
        build_report,
        summary_lines,
        opts.validate,
        {"kl_mc": opts.seed},
    )


if __name__ == "__main__":
    sys.exit(main())
