"""`python -m interp.geometry`: unembedding geometry, CHES and likelihood displacement.

Writes `reports/geometry/<a>_vs_<b>.html` and its JSON twin (the analysis:
`interp.analysis.geometry`; the page: `interp.present.pages.geometry`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from interp.analysis.geometry import run_geometry
from interp.analysis.settings import ExactSettings
from interp.cli import PairOptions, option, parse, run_comparison
from interp.present.pages.geometry import build_report, findings


@dataclass
class GeometryOptions(ExactSettings, PairOptions):
    progress: bool = option(True, help="show progress bars")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.geometry`: unembedding geometry, CHES and likelihood displacement."""
    prog = "python -m interp.geometry"
    opts = parse(
        GeometryOptions, argv, prog, "Unembedding geometry, CHES and likelihood displacement."
    )
    return run_comparison(
        prog,
        argv,
        opts,
        "geometry",
        lambda root: run_geometry(opts.a, opts.b, root, opts.exact_threshold, opts.progress, opts),
        build_report,
        findings,
        opts.validate,
    )


if __name__ == "__main__":
    sys.exit(main())
