"""Plain-text tables for the terminal: checkpoint evaluations, one row per checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interp.runs.store import Run


def eval_table(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    """A text table of checkpoint evaluations: (label, step, `evaluate` output) per row."""

    def f(v: float | None, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    width = max([len(r[0]) for r in rows] + [6]) + 2
    lines = [
        f"{'policy':<{width}}{'step':>6}{'OOD':>7}{'Error':>8}{'kl_greedy':>11}{'Acc':>7}{'Margin':>9}"
    ]
    for label, step, e in rows:
        ood, err = f(e.get("ood_rate"), ".1%"), f(e.get("error"), ".2f")
        kl, acc, margin = (
            f(e.get("kl_greedy"), ".3f"),
            f(e.get("acc"), ".1%"),
            f(e.get("margin"), ".3f"),
        )
        lines.append(f"{label:<{width}}{step:>6}{ood:>7}{err:>8}{kl:>11}{acc:>7}{margin:>9}")
    return "\n".join(lines)


def summary_table(runs: Sequence[Run]) -> str:
    """The final evaluation of each run, as a text table."""
    rows = []
    for r in runs:
        c = r.checkpoint()
        rows.append((r.name, c.step, c.eval))
    return eval_table(rows)
