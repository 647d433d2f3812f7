"""Figures of the attention report: drift from the reference along training, and where
each head attends over training. The mean and single-prompt heatmaps are
`interp.present.figures.common.attention_grid`."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from interp.analysis.attention import AttentionResult, Trajectory
from interp.present.figures.common import COLORS, SWAP_COLORS, new_figure


def attention_drift(res: AttentionResult) -> Figure:
    """Per head, total variation of each run's attention from the reference's over its
    steps (lines), with the run's OOD rate on a second axis (dotted)."""
    fig, axes = new_figure(1, 2)
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
                    color=SWAP_COLORS[(l * H + h) % 6],
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
        ax.legend(fontsize=7, loc="upper left")
    lim = max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_ylim(0, lim)
    return fig


def attention_parts(t: Trajectory, parts: list[str], who: str = "A") -> Figure:
    """Where each head of a run attends (share per key group `parts`) over its steps."""
    shares = t.parts.numpy()  # [step, layer, head, part]
    L, H = shares.shape[1:3]
    fig, axes = new_figure(L, H, width=3.2, height=2.6)
    for l in range(L):
        for h in range(H):
            ax = axes[l][h]
            for p, name in enumerate(parts):
                ax.plot(t.steps, shares[:, l, h, p], label=name, color=SWAP_COLORS[p % 6])
            ax.set_ylim(0, 1)
            ax.set_title(f"{who} · L{l}H{h}", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
    axes[0][0].set_ylabel("share of attention")
    axes[0][-1].legend(fontsize=7)
    return fig
