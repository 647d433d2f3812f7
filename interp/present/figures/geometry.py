"""Figures of the geometry report: unembedding norms and cosines, single-token and CHES
scatters, likelihood displacement over training, and mass by kind of response."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from torch import Tensor

from interp.analysis.geometry import ChesScores, DisplacementPoint, Gram, SingleToken
from interp.present.figures.common import COLORS, new_figure
from interp.present.figures.scales import DIVERGING, symmetric_limits


def unembedding_panels(tokens: Sequence[str], unembedding: dict[str, Gram]) -> Figure:
    """Norms of the response tokens' unembeddings, cosine maps of ref, A and B, and the
    changes A − ref and B − ref on one diverging scale fitted to both (two rows of three
    panels, so the figure fits a 1000 px page)."""
    fig, grid = new_figure(2, 3, width=8.8 / 3, height=2.9)
    axes = [[ax for row in grid for ax in row]]
    toks = list(tokens)
    x = np.arange(len(toks))
    for i, who in enumerate(("ref", "A", "B")):
        axes[0][0].bar(
            x + (i - 1) * 0.27,
            np.asarray(unembedding[who].norm),
            0.27,
            label=who,
            color=COLORS.get(who, "#7f8c8d"),
        )
    axes[0][0].set_xticks(x, toks)
    axes[0][0].set_title("‖W_z‖", fontsize=10)
    axes[0][0].set_xlabel("token z")
    axes[0][0].set_ylabel("norm of the unembedding")
    axes[0][0].legend(fontsize=7)
    panels = [
        (who, np.asarray(unembedding[who].cosine), "vlag", -1, 1) for who in ("ref", "A", "B")
    ]
    ref = np.asarray(unembedding["ref"].cosine)
    diffs = {f"{who} − ref": np.asarray(unembedding[who].cosine) - ref for who in ("A", "B")}
    lo, hi = symmetric_limits(diffs.values())
    panels += [(title, d, DIVERGING, lo, hi) for title, d in diffs.items()]
    for ax, (title, mat, cmap, lo, hi) in zip(axes[0][1:], panels):
        sns.heatmap(
            mat,
            ax=ax,
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            xticklabels=toks,
            yticklabels=toks,
            square=True,
            cbar_kws={"shrink": 0.8, "label": "Δ cosine" if "−" in title else "cosine"},
        )
        ax.set_title(f"cosine · {title}", fontsize=10)
        ax.set_xlabel("token")
        ax.set_ylabel("token")
        ax.tick_params(labelsize=9)
        ax.tick_params(axis="y", rotation=0)
    return fig


def single_token_scatter(single: SingleToken) -> Figure:
    """Predicted ⟨W_z, W_y⁺ − W_y⁻⟩ against the observed change of log π(z), for A and B;
    and ⟨W_y⁺, W_y⁻⟩ against the change of the preferred token."""
    fig, axes = new_figure(1, 3, width=8.8 / 3, height=3.2)
    others = np.asarray(single.others, dtype=bool)
    pred = np.asarray(single.predicted)[others]
    for ax, who in zip(axes[0][:2], ("A", "B")):
        obs = np.asarray(single.changes[who].observed)[others]
        ax.scatter(pred, obs, s=3, alpha=0.25, color=COLORS[who])
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel("predicted ⟨W_z, W_y⁺ − W_y⁻⟩")
        ax.set_ylabel(f"observed Δ log π(z), {who} − ref")
    ax = axes[0][2]
    for who in ("A", "B"):
        ax.scatter(
            np.asarray(single.inner_pos_neg),
            np.asarray(single.changes[who].preferred_change),
            s=4,
            alpha=0.35,
            color=COLORS[who],
            label=who,
        )
    ax.set_xlabel("⟨W_y⁺, W_y⁻⟩")
    ax.set_ylabel("Δ log π(y⁺ token)")
    ax.legend(fontsize=8)
    return fig


def ches_scatter(scores: ChesScores, preferred_change: dict[str, Tensor]) -> Figure:
    """CHES (raw and length-normalised) against the change of log π(y⁺), for A and B."""
    fig, axes = new_figure(1, 2, width=4.4, height=3.4)
    kinds = (("ches", scores.ches), ("ches_normalised", scores.ches_normalised))
    for ax, (kind, score) in zip(axes[0], kinds):
        for who in ("A", "B"):
            ax.scatter(
                np.asarray(score),
                np.asarray(preferred_change[who]),
                s=3,
                alpha=0.3,
                color=COLORS[who],
                label=who,
            )
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel(kind.replace("_", " ") + " (on the reference)")
        ax.set_ylabel("log π(y⁺): after − before")
        ax.legend(fontsize=8)
    return fig


def _series(points: Sequence[DisplacementPoint], name: str) -> np.ndarray:
    """One measure over the steps; a missing value (None) becomes a gap."""
    return np.array([np.nan if (v := getattr(p, name)) is None else v for p in points], float)


def displacement_lines(displacement: dict[str, list[DisplacementPoint]]) -> Figure:
    """Mean log π(y⁺), log π(y⁻) and log of the top OOD response, and the OOD mass, over steps."""
    fig, axes = new_figure(1, 3, width=8.8 / 3, height=3.4)
    for who in ("A", "B"):
        d = displacement[who]
        step = _series(d, "step")
        c = COLORS[who]
        axes[0][0].plot(step, _series(d, "logp_chosen"), "-", color=c, label=f"{who}: log π(y⁺)")
        axes[0][0].plot(step, _series(d, "logp_rejected"), "--", color=c, label=f"{who}: log π(y⁻)")
        axes[0][0].plot(
            step, _series(d, "logp_top_ood"), ":", color=c, lw=2, label=f"{who}: log top OOD"
        )
        axes[0][1].plot(step, _series(d, "ood_mass"), "-o", ms=2.5, color=c, label=who)
        axes[0][2].plot(
            step, _series(d, "share_ood_above_chosen"), "-o", ms=2.5, color=c, label=who
        )
    axes[0][0].set_ylabel("mean log-probability")
    axes[0][1].set_ylabel("OOD mass (training prompts)")
    axes[0][2].set_ylabel("share of prompts: top OOD > mean π(y⁺)")
    for ax in axes[0]:
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    return fig


def mass_bars(mass: dict[str, dict[str, float]], kinds: Sequence[str]) -> Figure:
    """Probability by kind of response for each model (horizontal grouped bars)."""
    fig, axes = new_figure(1, 1, width=8.0, height=0.45 * len(kinds) + 1.2)
    ax = axes[0][0]
    y = np.arange(len(kinds))
    for i, who in enumerate(mass):
        ax.barh(
            y + (i - 1) * 0.27,
            [mass[who].get(k, 0.0) for k in kinds],
            0.27,
            label=who,
            color=COLORS.get(who, "#7f8c8d"),
        )
    ax.set_yticks(y, list(kinds))
    ax.invert_yaxis()
    ax.set_xlabel("mean probability over training prompts")
    ax.legend(fontsize=8)
    return fig
