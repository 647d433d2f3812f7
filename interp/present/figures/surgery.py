"""Figures of the surgery report: metrics over A's training for A, B and every swap; the
change each swap makes to A's OOD rate; where A's weight change goes; single groups and
interpolation at one step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from interp.analysis.surgery import A, B, Interpolation, SingleSwap, SurgeryResult, Variant
from interp.present.figures.common import (
    COLORS,
    METRIC_LABELS,
    SWAP_COLORS,
    color_of,
    lines,
    new_figure,
)


def _series(res: SurgeryResult, metric: str) -> dict[str, list[float | None]]:
    return {s.variant.label: s[metric] for s in res.series}


def surgery_metric(res: SurgeryResult, metrics: Sequence[str]) -> Figure:
    """One panel per metric over A's training steps: A, B and every swap."""
    fig, axes = new_figure(1, len(metrics))
    for ax, m in zip(axes[0], metrics):
        lines(ax, res.steps, _series(res, m), METRIC_LABELS.get(m, m))
        ax.set_xlabel(f"training step of A ({res.a})")
    axes[0][0].legend(fontsize=8)
    return fig


def surgery_ood(res: SurgeryResult) -> Figure:
    """OOD rate over steps, and OOD(A′) − OOD(A) per swap with harmful/helpful regions."""
    fig, axes = new_figure(1, 2)
    lines(axes[0][0], res.steps, _series(res, "ood_rate"), "OOD rate (greedy)")
    axes[0][0].legend(fontsize=8)
    ax = axes[0][1]
    a = np.array(res.of(A)["ood_rate"], dtype=float)
    order = [s.variant.label for s in res.series]
    for s in res.series:
        if s.variant in (A, B):
            continue
        lab = s.variant.label
        d = np.array(s["ood_rate"], dtype=float) - a
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


def surgery_weights(res: SurgeryResult, kl: str = "kl_exact") -> Figure:
    """Left: FracWeightDelta(attention) of A beside the KL (`kl`) of A with B's attention.
    Right: WeightDelta from the reference against that KL, for A and B."""
    fig, axes = new_figure(1, 2)
    ax = axes[0][0]
    frac = np.array(res.weights.a_frac_attention, dtype=float)
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
    swapped = res.of(Variant("swap", "attention"))
    if swapped is not None:
        lab = swapped.variant.label
        tw = ax.twinx()
        tw.plot(res.steps, swapped[kl], "--", color=SWAP_COLORS[0], label=f"{kl} of {lab}")
        tw.set_ylabel(f"{kl} of {lab}")
        tw.grid(False)
        tw.legend(fontsize=8, loc="lower right")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[0][1]
    for v, delta, name in ((A, res.weights.a_delta, res.a), (B, res.weights.b_delta, res.b)):
        ax.plot(
            delta,
            res.of(v)[kl],
            "-o",
            ms=2.5,
            color=COLORS[v.label],
            label=f"{v.label} ({name})",
        )
    ax.set_xlabel("WeightDelta from the reference (Σ ‖ΔP‖_F)")
    ax.set_ylabel(f"{kl} (nats)")
    ax.legend(fontsize=8)
    return fig


def single_group_bars(
    rows: Sequence[SingleSwap], metrics: Sequence[str] = ("kl_exact", "ood_rate")
) -> Figure:
    """Change of each metric when one group of A comes from B (negative: toward in-distribution)."""
    fig, axes = new_figure(1, len(metrics), width=5.0, height=0.26 * len(rows) + 1.2)
    for ax, m in zip(axes[0], metrics):
        vals = [r.delta[m] for r in rows]
        colors = ["#27ae60" if (v or 0) < 0 else "#c0392b" for v in vals]
        ax.barh([r.group for r in rows], vals, color=colors)
        ax.axvline(0, color="black", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel(f"Δ {METRIC_LABELS.get(m, m)}: A′ − A")
        ax.tick_params(labelsize=8)
    return fig


def interpolation_curves(
    interp: Interpolation, metrics: Sequence[str] = ("kl_exact", "ood_rate", "ood_mass")
) -> Figure:
    """Metrics of A with a group moved a fraction alpha of the way to B."""
    fig, axes = new_figure(1, len(metrics), width=4.3)
    for ax, m in zip(axes[0], metrics):
        for i, (g, curve) in enumerate(interp.curves.items()):
            ax.plot(interp.alphas, curve[m], "-o", ms=3, color=SWAP_COLORS[i], label=g)
        ax.set_xlabel("alpha (0: A, 1: B's group)")
        ax.set_ylabel(METRIC_LABELS.get(m, m))
    axes[0][0].legend(fontsize=8)
    return fig
