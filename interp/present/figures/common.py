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

COLORS = {"A": "#c0392b", "B": "#2471a3", "ref": "#7f8c8d"}


SWAP_COLORS = ["#27ae60", "#8e44ad", "#d68910", "#17a589", "#5d6d7e", "#a04000"]


METRIC_LABELS = {
    "kl_greedy": "kl_greedy (nats)",
    "kl_exact": "kl_exact (nats)",
    "kl_mc": "kl_mc (nats)",
    "ood_rate": "OOD rate (greedy)",
    "ood_mass": "OOD mass (exact)",
    "error": "Error",
    "acc": "Acc",
    "margin": "Margin",
}


def new_figure(
    nrows: int = 1, ncols: int = 1, width: float = 6.0, height: float = 3.6
) -> tuple[Figure, Any]:
    """A Figure with a grid of axes in seaborn's whitegrid style."""
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
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
    [layer, head, query, key]; rows named in `diverging` are differences, drawn red/blue."""
    n_heads = np.asarray(next(iter(rows.values()))).shape[1]
    fig, axes = new_figure(len(rows), n_heads, width=2.7, height=2.5)
    for r, (lab, pat) in enumerate(rows.items()):
        pat = np.asarray(pat)[layer]
        diff = lab in diverging
        for h in range(n_heads):
            ax = axes[r][h]
            sns.heatmap(
                pat[h],
                ax=ax,
                cmap="RdBu_r" if diff else "Blues",
                vmin=-1 if diff else 0,
                vmax=1,
                cbar=h == n_heads - 1,
                xticklabels=list(tokens),
                yticklabels=list(tokens),
                square=True,
            )
            ax.set_title(f"{lab} · L{layer}H{h}", fontsize=9)
            ax.tick_params(labelsize=7)
    return fig
