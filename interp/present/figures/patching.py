"""Activation-patching figures: site × position heatmaps, side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from interp.analysis.patching import CrossPatching, PlacePatching
from interp.present.figures.common import new_figure


def patch_heatmaps(
    grids: dict[str, Float[Tensor, "row pos"]],
    rows: Sequence[str],
    cols: Sequence[str],
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """One heatmap per titled [row, column] grid (site × position), side by side."""
    fig, axes = new_figure(
        1, len(grids), width=max(3.5, 0.55 * len(cols) + 2.2), height=0.38 * len(rows) + 1.6
    )
    for ax, (title, grid) in zip(axes[0], grids.items()):
        sns.heatmap(
            np.asarray(grid, dtype=float),
            ax=ax,
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            annot=len(rows) * len(cols) <= 120,
            fmt=".2f",
            annot_kws={"fontsize": 7},
            xticklabels=list(cols),
            yticklabels=list(rows),
        )
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
    return fig


def cross_heatmaps(c: CrossPatching) -> Figure:
    """Recovered share, mean KL to B and share of fixed greedy answers per site and position."""
    grids = {
        "recovered (Σ gain / Σ gap)": c.recovered,
        "KL(p_B ‖ p) (mean)": c.mean_kl_to_b,
        "greedy answer in-distribution (share)": c.fixed_share,
    }
    return patch_heatmaps(grids, c.sites, c.positions)


def within_heatmaps(by_model: dict[str, PlacePatching]) -> Figure:
    """One place's within-policy grid for each model (ref, A, B)."""
    grids = {who: r.grid()[0] for who, r in by_model.items()}
    first = next(iter(by_model.values()))
    return patch_heatmaps(grids, first.grid()[1], first.positions, vmin=-0.2, vmax=1.0)
