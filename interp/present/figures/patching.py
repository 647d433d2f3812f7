"""Activation-patching figures: site × position heatmaps, side by side.

One colour means one thing on every panel: yellow (the top of viridis) is "the patched
model behaves like the donor", dark is "no effect". A metric where lower is better (a KL)
runs the map the other way, and every panel's colour bar, placed under it so it never
sits on a neighbour's tick labels, says what it measures and which way is better. The
figure is sized for a 1000 px wide page, so labels stay at 9 pt or more when embedded;
cells carry their value (percent for shares).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import seaborn as sns
from jaxtyping import Float
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from torch import Tensor

from interp.analysis.patching import CrossPatching, PlacePatching
from interp.present.figures.common import PAGE_WIDTH_IN, new_figure
from interp.present.numbers import NumberFormat

CMAP = "viridis"
FONT = 10  # tick labels and cell values; axis titles one point larger


@dataclass(frozen=True)
class Scale:
    """How one panel is coloured: its colour-bar label, limits, and whether lower is
    better (the map reversed, so yellow still means "like the donor")."""

    label: str
    vmin: float
    vmax: float
    lower_is_better: bool = False
    percent: bool = True  # cell values as whole percents, or as numbers with `decimals`
    decimals: int = 1


def share_scale(
    label: str, grids: Sequence[Float[Tensor, "row pos"]], percent: bool = True
) -> Scale:
    """A share whose natural range is 0 (no effect) to 1 (all of it), widened to the data
    when it goes beyond (a patch can overshoot or hurt)."""
    vals = np.concatenate([np.asarray(g, dtype=float).ravel() for g in grids])
    vals = vals[np.isfinite(vals)]
    lo = min(0.0, float(vals.min())) if vals.size else 0.0
    hi = max(1.0, float(vals.max())) if vals.size else 1.0
    return Scale(label, lo, hi, percent=percent, decimals=2)


def _annotations(g: np.ndarray, sc: Scale) -> np.ndarray:
    """Each cell's value as shown: whole percents for shares, else `sc.decimals`."""
    fmt = NumberFormat(".0f" if sc.percent else f".{sc.decimals}f")
    return np.vectorize(lambda v: fmt(float(v) * (100 if sc.percent else 1)))(g)


def _colorbar(fig: Figure, ax: Axes | list[Axes], sc: Scale, mappable: Any) -> None:
    bar = fig.colorbar(
        mappable,
        ax=ax,
        orientation="horizontal",
        label=sc.label,
        shrink=0.9 if isinstance(ax, Axes) else 0.5,
        aspect=25 if isinstance(ax, Axes) else 40,
        format=PercentFormatter(xmax=1, decimals=0) if sc.percent else None,
    )
    bar.ax.tick_params(labelsize=FONT - 1)
    bar.set_label(sc.label, fontsize=FONT)


def patch_heatmaps(
    grids: dict[str, Float[Tensor, "row pos"]],
    rows: Sequence[str],
    cols: Sequence[str],
    scales: dict[str, Scale] | Scale,
    xlabel: str = "position",
    ylabel: str = "site",
) -> Figure:
    """One heatmap per titled [row, column] grid, side by side, row labels on the first.
    `scales` is one Scale for all panels (one colour bar under them all) or one per panel
    (a colour bar under each)."""
    n = len(grids)
    shared = isinstance(scales, Scale)
    fig, axes = new_figure(1, n, width=PAGE_WIDTH_IN / n, height=0.34 * len(rows) + 2.0)
    for k, (ax, (title, grid)) in enumerate(zip(axes[0], grids.items())):
        sc = scales if isinstance(scales, Scale) else scales[title]
        g = np.asarray(grid, dtype=float)
        sns.heatmap(
            g,
            ax=ax,
            cmap=CMAP + ("_r" if sc.lower_is_better else ""),
            vmin=sc.vmin,
            vmax=sc.vmax,
            annot=_annotations(g, sc) if len(rows) * len(cols) <= 120 else False,
            fmt="",
            annot_kws={"fontsize": FONT - 1},
            xticklabels=list(cols),
            yticklabels=list(rows) if k == 0 else False,
            cbar=False,
        )
        ax.set_title(title, fontsize=FONT + 1)
        ax.set_xlabel(xlabel, fontsize=FONT + 1)
        ax.set_ylabel(ylabel if k == 0 else "", fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT)
        ax.tick_params(axis="y", rotation=0)
        ax.tick_params(axis="x", rotation=90 if max(map(len, cols)) > 3 else 0)
        if not shared:
            _colorbar(fig, ax, sc, ax.collections[0])
    if isinstance(scales, Scale):
        _colorbar(fig, list(axes[0]), scales, axes[0][-1].collections[0])
    return fig


def cross_heatmaps(c: CrossPatching) -> Figure:
    """Recovered share, mean KL to B and share of fixed greedy answers per site and position."""
    kl = np.asarray(c.mean_kl_to_b, dtype=float)
    grids = {
        "gap closed (Σ gain / Σ gap)": c.recovered,
        "KL(p_B ‖ p) after the patch": c.mean_kl_to_b,
        f"greedy answer {c.fixed_means}": c.fixed_share,
    }
    scales = {
        "gap closed (Σ gain / Σ gap)": share_scale("gap closed (yellow: more)", [c.recovered]),
        "KL(p_B ‖ p) after the patch": Scale(
            "KL to B, nats (yellow: less)",
            0.0,
            max(float(np.nanmax(kl)) if np.isfinite(kl).any() else 0.0, 1e-6),
            lower_is_better=True,
            percent=False,
        ),
        f"greedy answer {c.fixed_means}": share_scale(
            "prompts fixed (yellow: more)", [c.fixed_share]
        ),
    }
    return patch_heatmaps(
        grids, c.sites, c.positions, scales, ylabel="B's activation patched into A"
    )


def within_heatmaps(by_model: dict[str, PlacePatching]) -> Figure:
    """One place's within-policy grid for each model (ref, A, B), on one shared scale."""
    grids = {who: r.grid()[0] for who, r in by_model.items()}
    first = next(iter(by_model.values()))
    scale = share_scale(
        "share of the clean digit's logit lead restored (1 = all of it; yellow: more)",
        list(grids.values()),
        percent=False,
    )
    return patch_heatmaps(
        grids, first.grid()[1], first.positions, scale, ylabel="clean activation patched in"
    )
