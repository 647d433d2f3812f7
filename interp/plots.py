"""Figure builders: each takes an analysis result and returns a matplotlib Figure.

Nothing here computes a metric or calls `show()`; figures are built on
`matplotlib.figure.Figure` directly (no pyplot state), styled with seaborn, and embedded in
reports by `interp.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from interp.surgery import SurgeryResult

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


def _lines(
    ax: Axes, x: Sequence[float], series: dict[str, Sequence[float | None]], ylabel: str
) -> None:
    order = list(series)
    for lab, ys in series.items():
        y = np.array([np.nan if v is None else v for v in ys], dtype=float)
        style = "-" if lab in COLORS else "--"
        ax.plot(x, y, style, color=color_of(lab, order), label=lab, lw=1.8, marker="o", ms=2.5)
    ax.set_ylabel(ylabel)


# ----------------------------------------------------------------------------- surgery


def surgery_metric(res: SurgeryResult, metrics: Sequence[str]) -> Figure:
    """One panel per metric over A's training steps: A, B and every swap."""
    fig, axes = new_figure(1, len(metrics))
    for ax, m in zip(axes[0], metrics):
        _lines(
            ax, res.steps, {lab: v[m] for lab, v in res.trajectory.items()}, METRIC_LABELS.get(m, m)
        )
        ax.set_xlabel(f"training step of A ({res.a})")
    axes[0][0].legend(fontsize=8)
    return fig


def surgery_ood(res: SurgeryResult) -> Figure:
    """OOD rate over steps, and OOD(A′) − OOD(A) per swap with harmful/helpful regions."""
    fig, axes = new_figure(1, 2)
    tr = res.trajectory
    _lines(
        axes[0][0], res.steps, {lab: v["ood_rate"] for lab, v in tr.items()}, "OOD rate (greedy)"
    )
    axes[0][0].legend(fontsize=8)
    ax = axes[0][1]
    a = np.array(tr["A"]["ood_rate"], dtype=float)
    order = list(tr)
    for lab in order:
        if lab in ("A", "B"):
            continue
        d = np.array(tr[lab]["ood_rate"], dtype=float) - a
        ax.plot(
            res.steps, d, "--", color=color_of(lab, order), label=f"{lab} − A", marker="o", ms=2.5
        )
        ax.fill_between(res.steps, d, 0, where=d > 0, color="#e74c3c", alpha=0.15, interpolate=True)
        ax.fill_between(res.steps, d, 0, where=d < 0, color="#2ecc71", alpha=0.15, interpolate=True)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("OOD(A′) − OOD(A)   (green: swap helps, red: harms)")
    ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xlabel(f"training step of A ({res.a})")
    return fig


def surgery_weights(res: SurgeryResult) -> Figure:
    """Left: FracWeightDelta(attention) of A beside the KL of A with B's attention.
    Right: WeightDelta from the reference against kl_exact, for A and B."""
    fig, axes = new_figure(1, 2)
    ax = axes[0][0]
    frac = np.array(res.weights["A_frac_attention"], dtype=float)
    ax.plot(res.steps, frac, color="#6c3483", lw=1.8, label="FracWeightDelta(attention), A vs ref")
    ax.axhline(
        res.param_share["attention"],
        color="#6c3483",
        ls=":",
        lw=1,
        label="attention's share of parameters",
    )
    ax.axhline(0.25, color="#6c3483", ls="-.", lw=0.8, alpha=0.6, label="case study: 25%")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of A's weight change")
    ax.set_xlabel(f"training step of A ({res.a})")
    lab = "A[attention←B]"
    if lab in res.trajectory:
        tw = ax.twinx()
        tw.plot(
            res.steps,
            res.trajectory[lab]["kl_exact"],
            "--",
            color=SWAP_COLORS[0],
            label=f"kl_exact of {lab}",
        )
        tw.set_ylabel(f"kl_exact of {lab}")
        tw.grid(False)
        tw.legend(fontsize=8, loc="lower right")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[0][1]
    for who in ("A", "B"):
        ax.plot(
            res.weights[f"{who}_delta"],
            res.trajectory[who]["kl_exact"],
            "-o",
            ms=2.5,
            color=COLORS[who],
            label=f"{who} ({res.a if who == 'A' else res.b})",
        )
    ax.set_xlabel("WeightDelta from the reference (Σ ‖ΔP‖_F)")
    ax.set_ylabel("kl_exact (nats)")
    ax.legend(fontsize=8)
    return fig


def attention_grid(
    patterns: dict[str, Any],
    tokens: Sequence[str],
    layer: int = 0,
    diff: tuple[str, str] | None = ("A", "B"),
) -> Figure:
    """Heatmaps of every head (columns) for each model (rows), plus a difference row."""
    rows = dict(patterns)
    if diff is not None:
        rows[f"{diff[0]} − {diff[1]}"] = np.asarray(patterns[diff[0]]) - np.asarray(
            patterns[diff[1]]
        )
    n_heads = np.asarray(next(iter(patterns.values()))).shape[1]
    fig, axes = new_figure(len(rows), n_heads, width=2.7, height=2.5)
    for r, (lab, pat) in enumerate(rows.items()):
        pat = np.asarray(pat)[layer]
        is_diff = "−" in lab
        for h in range(n_heads):
            ax = axes[r][h]
            sns.heatmap(
                pat[h],
                ax=ax,
                cmap="RdBu_r" if is_diff else "Blues",
                vmin=-1 if is_diff else 0,
                vmax=1,
                cbar=h == n_heads - 1,
                xticklabels=list(tokens),
                yticklabels=list(tokens),
                square=True,
            )
            ax.set_title(f"{lab} · L{layer}H{h}", fontsize=9)
            ax.tick_params(labelsize=7)
    return fig


def single_group_bars(
    rows: list[dict[str, Any]], metrics: Sequence[str] = ("kl_exact", "ood_rate")
) -> Figure:
    """Change of each metric when one group of A comes from B (negative: toward in-distribution)."""
    fig, axes = new_figure(1, len(metrics), width=5.0, height=0.26 * len(rows) + 1.2)
    for ax, m in zip(axes[0], metrics):
        vals = [r[f"d_{m}"] for r in rows]
        colors = ["#27ae60" if (v or 0) < 0 else "#c0392b" for v in vals]
        ax.barh([r["group"] for r in rows], vals, color=colors)
        ax.axvline(0, color="black", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel(f"Δ {METRIC_LABELS.get(m, m)}: A′ − A")
        ax.tick_params(labelsize=8)
    return fig


def interpolation_curves(
    interp: dict[str, Any], metrics: Sequence[str] = ("kl_exact", "ood_rate", "ood_mass")
) -> Figure:
    """Metrics of A with a group moved a fraction alpha of the way to B."""
    fig, axes = new_figure(1, len(metrics), width=4.3)
    groups = [k for k in interp if k != "alpha"]
    for ax, m in zip(axes[0], metrics):
        for i, g in enumerate(groups):
            ax.plot(interp["alpha"], interp[g][m], "-o", ms=3, color=SWAP_COLORS[i], label=g)
        ax.set_xlabel("alpha (0 = A, 1 = group taken from B)")
        ax.set_ylabel(METRIC_LABELS.get(m, m))
    axes[0][0].legend(fontsize=8)
    return fig
