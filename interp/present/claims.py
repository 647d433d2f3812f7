"""The case study's claims as a table: claim, the case study's number, ours over seeds,
the verdict (overall and per seed), and links to every report behind it.

With one seed there is no interval: the column says "1 seed" and shows the single value
(`interp.core.stats.fmt_ci` writes it so), never "mean ± 95% CI"."""

from __future__ import annotations

from interp.analysis.claims import Claim
from interp.present.html import Link, Table
from interp.present.text import seeds_label


def measured_header(claims: list[Claim]) -> str:
    """The "measured here" column's title: the statistic it shows, by number of seeds."""
    n = max((len(c.values) for c in claims), default=0)
    if n > 1:
        return "measured here (mean ± 95% CI over seeds)"
    return f"measured here ({seeds_label(n)})"


def report_links(paths: list[str], prefix: str) -> list[Link]:
    """One link per report path (relative to the reports root), duplicates dropped."""
    return [Link(p.removesuffix(".html"), prefix + p) for p in dict.fromkeys(paths)]


def claims_table(
    claims: list[Claim], title: str = "The case study's claims", prefix: str = "../"
) -> Table:
    """The claims as a table; `prefix` turns report paths (relative to the reports root)
    into links relative to the page showing the table."""
    return Table(
        title,
        ["", "claim", "case study", measured_header(claims), "verdict", "per seed", "reports"],
        [
            [
                c.id,
                c.claim,
                c.case_study,
                c.measured() + (f"; {c.detail}" if c.detail else ""),
                c.verdict,
                ", ".join(c.verdicts),
                report_links(c.links, prefix) or None,
            ]
            for c in claims
        ],
    )
