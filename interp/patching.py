"""`python -m interp.patching`: activation patching within and across two policies.

Patches B's activations into A where A answers out of distribution and B does not, and
patches clean into corrupted runs within ref, A and B, then writes
`reports/patching/<a>_vs_<b>.html` and its JSON twin (the analysis:
`interp.analysis.patching`; the page: `interp.present.pages.patching`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from interp.analysis.patching import PatchingSettings, run_patching
from interp.cli import PairOptions, parse, run_comparison
from interp.present.pages.patching import build_report, findings


@dataclass
class PatchingOptions(PatchingSettings, PairOptions):
    """Policies A (patched) and B (the source), the folders, and the patching settings."""


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.patching`: the activation-patching report for policies A and B."""
    prog = "python -m interp.patching"
    opts = parse(PatchingOptions, argv, prog, "Activation patching within and across two policies.")
    return run_comparison(
        prog,
        argv,
        opts,
        "patching",
        lambda root: run_patching(opts.a, opts.b, root, opts, opts),
        build_report,
        findings,
        opts.validate,
        {"corrupted digits": opts.seed},
    )


if __name__ == "__main__":
    sys.exit(main())
