"""What every figure shares: a seaborn-styled Figure factory, colours, metric labels,
line plots of labelled series, and attention heatmaps.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state), take typed
analysis results, compute nothing, and are embedded in reports by
`interp.present.html`. One module per analysis sits beside this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from interp.present.figures.scales import DIVERGING, QUALITATIVE, SEQUENTIAL, symmetric_limits

PAGE_WIDTH_IN = 8.8  # ≈ 970 px at the reports' 110 dpi: fits a 1000 px window unscaled
COLORS = {"A": "#c0392b", "B": "#2471a3", "ref": "#7f8c8d"}


SWAP_COLORS = QUALITATIVE  # swapped groups and heads: distinct, and none is A's, B's or ref's


METRIC_LABELS = {
    "kl_greedy": "kl_greedy (nats)",
    "kl_exact": "kl_exact (nats)",
    "kl_mc": "kl_mc (nats)",
    "ood_rate": "OOD rate (greedy)",
    "ood_mass": "OOD mass (exact)",
    "error": "Error",
    "gold_reward": "gold reward −E|y − s| (exact)",
    "acc": "Acc",
    "margin": "Margin",
}


def new_figure(
    nrows: int = 1, ncols: int = 1, width: float = 6.0, height: float = 3.6
) -> tuple[Figure, Any]:
    """A Figure with a grid of axes in seaborn's whitegrid style, never wider than
    `PAGE_WIDTH_IN` (the reports embed figures at 110 dpi: a wider one would be shrunk to
    fit a 1000 px window, and its labels with it)."""
    with sns.axes_style("whitegrid"):
        total = min(width * ncols, PAGE_WIDTH_IN)
        fig = Figure(figsize=(total, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def color_of(label: str, order: Sequence[str]) -> str:
    if label in COLORS:
        return COLORS[label]
    swaps = [lab for lab in order if lab not in COLORS]
    return SWAP_COLORS[swaps.index(label) % len(SWAP_COLORS)] if label in swaps else "#333333"


def lines(
    ax: Axes, x: Sequence[float], series: dict[str, Sequence[float | None]], ylabel: str
) -> None:
    order = list(series)
    for lab, ys in series.items():
        y = np.array([np.nan if v is None else v for v in ys], dtype=float)
        style = "-" if lab in COLORS else "--"
        ax.plot(x, y, style, color=color_of(lab, order), label=lab, lw=1.8, marker="o", ms=2.5)
    ax.set_ylabel(ylabel)


def attention_grid(
    rows: dict[str, Any], tokens: Sequence[str], layer: int = 0, diverging: set[str] = frozenset()
) -> Figure:
    """Heatmaps of every head (columns) for each labelled pattern (rows). Patterns are
    [layer, head, query, key]. Rows named in `diverging` are differences: one diverging
    scale centred at 0 and fitted to them all (±max|Δ|); the others are probabilities on
    0–1. Every panel names its axes (query, key); every row has a labelled colour bar."""
    n_heads = np.asarray(next(iter(rows.values()))).shape[1]
    fig, axes = new_figure(len(rows), n_heads, width=2.3, height=2.35)
    dlo, dhi = symmetric_limits(np.asarray(rows[k])[layer] for k in rows if k in diverging)
    for r, (lab, pat) in enumerate(rows.items()):
        pat = np.asarray(pat)[layer]
        diff = lab in diverging
        for h in range(n_heads):
            ax = axes[r][h]
            sns.heatmap(
                pat[h],
                ax=ax,
                cmap=DIVERGING if diff else SEQUENTIAL,
                vmin=dlo if diff else 0,
                vmax=dhi if diff else 1,
                cbar=False,
                xticklabels=list(tokens),
                yticklabels=list(tokens),
                square=True,
            )
            ax.set_title(f"{lab} · L{layer}H{h}", fontsize=10)
            ax.set_xlabel("key", fontsize=9)
            ax.set_ylabel("query", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.tick_params(axis="x", rotation=90)
            ax.tick_params(axis="y", rotation=0)
        fig.colorbar(
            axes[r][-1].collections[0],
            ax=list(axes[r]),
            shrink=0.85,
            pad=0.01,
            label=f"Δ attention ({lab})" if diff else "attention",
        )
    return fig
