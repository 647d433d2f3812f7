"""Figures of the attention report: drift from the reference along training, and where
each head attends over training. The mean and single-prompt heatmaps are
`interp.present.figures.common.attention_grid`."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from interp.analysis.attention import AttentionResult, Trajectory
from interp.present.figures.common import COLORS, new_figure
from interp.present.figures.scales import qualitative


def attention_drift(res: AttentionResult) -> Figure:
    """Per head, total variation of each run's attention from the reference's over its
    steps (lines), with the run's OOD rate on a second axis (dotted)."""
    fig, axes = new_figure(1, 2, width=4.4, height=3.4)
    for ax, who in zip(axes[0], ("A", "B")):
        t = res.trajectory[who]
        drift = t.drift.numpy()  # [step, layer, head]
        L, H = drift.shape[1:]
        for l in range(L):
            for h in range(H):
                ax.plot(
                    t.steps,
                    drift[:, l, h],
                    "-o",
                    ms=2.5,
                    color=qualitative(l * H + h),
                    label=f"L{l}H{h}",
                )
        ax.set_ylabel("attention drift from ref (total variation)")
        ax.set_xlabel(f"training step of {who} ({res.a if who == 'A' else res.b})")
        ood = np.array([np.nan if v is None else v for v in t.ood_rate], dtype=float)
        tw = ax.twinx()
        tw.plot(t.steps, ood, ":", color=COLORS[who], lw=2, label="OOD rate")
        tw.set_ylabel("OOD rate", color=COLORS[who])
        tw.set_ylim(0, 1)
        tw.grid(False)
        ax.legend(fontsize=9, loc="upper left", title="head", title_fontsize=9)
    lim = max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_ylim(0, lim)
    return fig


def attention_parts(t: Trajectory, parts: list[str], who: str = "A") -> Figure:
    """Where each head of a run attends (share per key group `parts`) over its steps."""
    shares = t.parts.numpy()  # [step, layer, head, part]
    L, H = shares.shape[1:3]
    fig, axes = new_figure(L, H, width=8.8 / H, height=2.6)
    for l in range(L):
        for h in range(H):
            ax = axes[l][h]
            for p, name in enumerate(parts):
                ax.plot(t.steps, shares[:, l, h, p], label=name, color=qualitative(p), lw=1.8)
            ax.set_ylim(0, 1)
            ax.set_title(f"{who} · L{l}H{h}", fontsize=10)
            ax.set_xlabel(f"training step of {who}", fontsize=9)
            ax.set_ylabel("share of attention" if h == 0 else "", fontsize=9)
            ax.tick_params(labelsize=9)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncol=len(parts),
        fontsize=9,
        title="attention to the key group",
        title_fontsize=9,
    )
    return fig
