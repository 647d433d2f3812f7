"""The case study's claims as a table: claim, the case study's number, ours over seeds,
the verdict (overall and per seed), and a link to the report behind it."""

from __future__ import annotations

from interp.analysis.claims import Claim
from interp.present.html import Link, Table


def claims_table(
    claims: list[Claim], title: str = "The case study's claims", prefix: str = "../"
) -> Table:
    """The claims as a table; `prefix` turns report paths (relative to the reports root)
    into links relative to the page showing the table."""
    return Table(
        title,
        [
            "",
            "claim",
            "case study",
            "measured here (mean ± 95% CI over seeds)",
            "verdict",
            "per seed",
            "report",
        ],
        [
            [
                c.id,
                c.claim,
                c.case_study,
                c.measured() + (f"; {c.detail}" if c.detail else ""),
                c.verdict,
                ", ".join(c.verdicts),
                Link(c.links[0].removesuffix(".html"), prefix + c.links[0]) if c.links else None,
            ]
            for c in claims
        ],
    )
