"""Plain text: tables of checkpoint evaluations for the terminal (one row per checkpoint),
the short form of a summary (`shorten`), and how a number of seeds is said (`seeds_label`).

`shorten` keeps a summary's whole first sentence when it fits; otherwise it cuts at the
last clause break (`;`, `:`, `,`, a dash) or word boundary that fits, never inside a word
and never just before a number (a cut before "50.5%" would drop the one thing the
sentence was saying), and marks the cut with an ellipsis.
"""

from __future__ import annotations

import re
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


_SENTENCE_END = re.compile(r"[.!?](?=\s+[^a-z\s])")  # "0.025" and "e.g. x" do not end one
_NUMBERISH = re.compile(r"[−+\-]?[(\[]?[−+\-]?[0-9.]")


def shorten(text: str, limit: int = 300) -> str:
    """`text`'s first sentence if it fits in `limit` characters, else a cut of it at a
    clause or word boundary not followed by a number, ending in "…"."""
    text = " ".join(text.split())
    end = _SENTENCE_END.search(text)
    first = text[: end.end()] if end else text
    if len(first) <= limit:
        return first
    room = first[: limit - 1]
    spaces = [m.start() for m in re.finditer(r"\s", room)]
    cuts = [i for i in spaces if not _NUMBERISH.match(first[i + 1 :])]
    clauses = [i for i in cuts if room[i - 1] in ";:,—" or room[i + 1 : i + 2] == "—"]
    best = [i for i in clauses if i >= limit // 2] or cuts
    if not best:
        return room.rstrip() + "…"
    return first[: best[-1]].rstrip(" ;:,—") + "…"


def seeds_label(n: int) -> str:
    """ "1 seed", "5 seeds"."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def not_computable_lines(reasons: dict[str, str]) -> list[str]:
    """One sentence per reason: the metrics a comparison could not compute, and why
    (`interp.runs.sources.Comparison.not_computable`), for a page's opening section."""
    by_reason: dict[str, list[str]] = {}
    for metric, why in reasons.items():
        by_reason.setdefault(why, []).append(metric)
    return [f"Not computable here: {', '.join(ms)} ({why})." for why, ms in by_reason.items()]
