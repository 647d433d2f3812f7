"""Figures of the case study's experiments (F1, F2), kept with the experiment scripts:
the library draws per-comparison figures only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from interp.present.figures.common import METRIC_LABELS, new_figure

if TYPE_CHECKING:  # the experiment modules import this one to draw their results
    from beta_sweep import SweepResult
    from grokking import GrokkingResult


def _mean_band(
    ax: Axes,
    x: Sequence[float],
    runs: list[Sequence[float | None]],
    color: str,
    label: str,
    style: str = "-",
) -> None:
    """Mean over seeds as a line, min–max over seeds as a band."""
    y = np.array([[np.nan if v is None else v for v in r] for r in runs], dtype=float)
    ax.plot(x, np.nanmean(y, 0), style, color=color, label=label, lw=1.6)
    if len(runs) > 1:
        ax.fill_between(x, np.nanmin(y, 0), np.nanmax(y, 0), color=color, alpha=0.15, lw=0)


def grokking_curves(res: GrokkingResult) -> Figure:
    """OOD rate, Error, Margin and Acc over epochs: SFT and each β (mean over seeds, band)."""
    fig, grid = new_figure(2, 2, width=4.4, height=3.0)
    axes = [[ax for row in grid for ax in row]]  # four panels, two by two: legible at 1000 px
    palette = sns.color_palette("rocket", len(res.betas))
    seeds = res.seeds
    onsets = [r["onset_epoch"] for s in seeds for r in res.per_run[s].values() if r["went_ood"]]
    for ax, m in zip(axes[0], ("ood_rate", "error", "margin", "acc")):
        for color, b in zip(palette, res.betas):
            x = res.dpo[seeds[0]][b]["epoch"]
            _mean_band(ax, x, [res.dpo[s][b][m] for s in seeds], color, f"DPO β={b}")
        if m in ("ood_rate", "error"):
            x = res.sft[seeds[0]]["epoch"]
            _mean_band(ax, x, [res.sft[s][m] for s in seeds], "black", "SFT (ref)", "--")
        if onsets:
            ax.axvspan(0, min(onsets), color="#f1c40f", alpha=0.18, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABELS.get(m, m))
    axes[0][0].legend(fontsize=8)
    return fig


def sweep_heatmaps(res: SweepResult, kls: Sequence[str] = ("kl_greedy", "kl_exact")) -> Figure:
    """KL over (β, step), mean over seeds, with each β's OOD-optimal checkpoint marked."""
    fig, axes = new_figure(1, len(kls), width=8.8 / len(kls), height=4.6)
    steps = res.steps
    for ax, kl in zip(axes[0], kls):
        grid = np.nanmean(np.array([res.grid[s][kl] for s in res.seeds], dtype=float), 0)
        sns.heatmap(
            grid,
            ax=ax,
            cmap="mako_r",
            cbar_kws={"label": f"{kl} (nats)"},
            xticklabels=[str(s) if i % 5 == 0 else "" for i, s in enumerate(steps)],
            yticklabels=[f"{b:g}" for b in res.betas],
        )
        for s in res.seeds:
            opt = res.optimal[s]["ood_rate"]["index"]
            ax.plot(np.array(opt) + 0.5, np.arange(len(res.betas)) + 0.5, "w-", lw=1.2, alpha=0.8)
            ax.plot(np.array(opt) + 0.5, np.arange(len(res.betas)) + 0.5, "wo", ms=3)
        ax.set_xlabel("DPO step")
        ax.set_ylabel("β")
        ax.set_title(f"{kl}; white: OOD-optimal checkpoint of each β", fontsize=10)
    return fig


def ood_vs_kl(
    res: SweepResult, kls: Sequence[str] = ("kl_greedy", "kl_exact"), ood: str = "ood_rate"
) -> Figure:
    """OOD of every checkpoint against its KL, coloured by β, with the binned mean."""
    fig, axes = new_figure(1, len(kls), width=8.8 / len(kls), height=3.8)
    norm = LogNorm(vmin=min(res.betas), vmax=max(res.betas))
    for ax, kl in zip(axes[0], kls):
        xs, ys, cs = [], [], []
        for s in res.seeds:
            for i, b in enumerate(res.betas):
                xs += list(res.grid[s][kl][i])
                ys += list(res.grid[s][ood][i])
                cs += [b] * len(res.grid[s][kl][i])
        x, y = np.array(xs, dtype=float), np.array(ys, dtype=float)
        sc = ax.scatter(x, y, c=cs, cmap="viridis", norm=norm, s=6, alpha=0.6)
        b = res.bins[kl][ood]
        ax.plot(b["centre"], b["mean"], "k-o", ms=3, lw=1.5, label="binned mean")
        lo, hi = res.band[kl]["q10"], res.band[kl]["q90"]
        if lo is not None:
            ax.axvspan(
                lo,
                hi,
                color="#e91e63",
                alpha=0.15,
                lw=0,
                label="KL band of OOD-optimal checkpoints",
            )
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel(f"{kl} (nats)")
        ax.set_ylabel(METRIC_LABELS.get(ood, ood))
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="β")
    return fig
