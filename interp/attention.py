"""Attention-pattern report; `python -m interp.attention`.

Runs `interp.analysis.attention.run_attention` on policies A and B (and A's reference)
and writes `reports/attention/<a>_vs_<b>.html` with its JSON twin
(`interp.present.pages.attention`). The technique is explained in
`interp.analysis.attention`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from interp.analysis.attention import AttentionResult, run_attention
from interp.analysis.settings import ExactSettings
from interp.cli import PairOptions, option, parse, run_comparison
from interp.errors import UserError
from interp.present.pages.attention import build_report, findings


@dataclass
class AttentionOptions(ExactSettings, PairOptions):
    examples: int = option(3, help="single prompts to show where A is OOD and B is not")
    progress: bool = option(True, help="show progress bars")

    def validate(self) -> None:
        super().validate()
        if self.examples < 0:
            raise UserError("--examples must be 0 or more")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.attention`: the attention report for policies A and B."""
    prog = "python -m interp.attention"
    opts = parse(AttentionOptions, argv, prog, "Compare the attention patterns of two policies.")

    def compute(root: Path) -> AttentionResult:
        return run_attention(
            opts.a, opts.b, root, opts.examples, opts.progress, opts.exact_threshold, opts
        )

    return run_comparison(
        prog, argv, opts, "attention", compute, build_report, findings, opts.validate
    )


if __name__ == "__main__":
    sys.exit(main())
