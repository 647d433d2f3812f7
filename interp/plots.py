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


def attention_drift(res: Any) -> Figure:
    """Per head, total variation of each run's attention from the reference's over its
    steps (lines), with the run's OOD rate on a second axis (dotted)."""
    fig, axes = new_figure(1, 2)
    for ax, who in zip(axes[0], ("A", "B")):
        t = res.trajectory[who]
        drift = np.asarray(t["drift"])  # [step, layer, head]
        L, H = drift.shape[1:]
        for l in range(L):
            for h in range(H):
                ax.plot(
                    t["steps"],
                    drift[:, l, h],
                    "-o",
                    ms=2.5,
                    color=SWAP_COLORS[(l * H + h) % 6],
                    label=f"L{l}H{h}",
                )
        ax.set_ylabel("attention drift from ref (total variation)")
        ax.set_xlabel(f"training step of {who} ({res.a if who == 'A' else res.b})")
        tw = ax.twinx()
        tw.plot(t["steps"], t["ood_rate"], ":", color=COLORS[who], lw=2, label="OOD rate")
        tw.set_ylabel("OOD rate", color=COLORS[who])
        tw.set_ylim(0, 1)
        tw.grid(False)
        ax.legend(fontsize=7, loc="upper left")
    lim = max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_ylim(0, lim)
    return fig


def attention_parts(res: Any, who: str = "A") -> Figure:
    """Where each head of a run attends (share per key group) over its training steps."""
    t = res.trajectory[who]
    parts = np.asarray(t["parts"])  # [step, layer, head, part]
    L, H = parts.shape[1:3]
    fig, axes = new_figure(L, H, width=3.2, height=2.6)
    for l in range(L):
        for h in range(H):
            ax = axes[l][h]
            for p, name in enumerate(res.parts):
                ax.plot(t["steps"], parts[:, l, h, p], label=name, color=SWAP_COLORS[p % 6])
            ax.set_ylim(0, 1)
            ax.set_title(f"{who} · L{l}H{h}", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
    axes[0][0].set_ylabel("share of attention")
    axes[0][-1].legend(fontsize=7)
    return fig


def patch_heatmaps(
    grids: dict[str, Any],
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


# ----------------------------------------------------------------------------- geometry


def unembedding_panels(res: Any) -> Figure:
    """Norms of the response tokens' unembeddings, and cosine maps of ref, A, B and A − ref."""
    fig, axes = new_figure(1, 5, width=3.3, height=3.3)
    toks = list(res.tokens)
    x = np.arange(len(toks))
    for i, who in enumerate(("ref", "A", "B")):
        axes[0][0].bar(
            x + (i - 1) * 0.27,
            np.asarray(res.unembedding[who]["norm"]),
            0.27,
            label=who,
            color=COLORS.get(who, "#7f8c8d"),
        )
    axes[0][0].set_xticks(x, toks)
    axes[0][0].set_title("‖W_z‖", fontsize=10)
    axes[0][0].legend(fontsize=7)
    panels = [
        (who, np.asarray(res.unembedding[who]["cosine"]), "vlag", -1, 1)
        for who in ("ref", "A", "B")
    ]
    diff = np.asarray(res.unembedding["A"]["cosine"]) - np.asarray(res.unembedding["ref"]["cosine"])
    lim = max(float(np.abs(diff).max()), 1e-6)
    panels.append(("A − ref", diff, "RdBu_r", -lim, lim))
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
            cbar_kws={"shrink": 0.7},
        )
        ax.set_title(f"cosine · {title}", fontsize=10)
        ax.tick_params(labelsize=7)
    return fig


def single_token_scatter(res: Any) -> Figure:
    """Predicted ⟨W_z, W_y⁺ − W_y⁻⟩ against the observed change of log π(z), for A and B;
    and ⟨W_y⁺, W_y⁻⟩ against the change of the preferred token."""
    fig, axes = new_figure(1, 3, width=4.2, height=3.6)
    s = res.single
    others = np.asarray(s["others"], dtype=bool)
    pred = np.asarray(s["predicted"])[others]
    for ax, who in zip(axes[0][:2], ("A", "B")):
        obs = np.asarray(s[who]["observed"])[others]
        ax.scatter(pred, obs, s=3, alpha=0.25, color=COLORS[who])
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel("predicted ⟨W_z, W_y⁺ − W_y⁻⟩")
        ax.set_ylabel(f"observed Δ log π(z), {who} − ref")
    ax = axes[0][2]
    for who in ("A", "B"):
        ax.scatter(
            np.asarray(s["inner_pos_neg"]),
            np.asarray(s[who]["preferred_change"]),
            s=4,
            alpha=0.35,
            color=COLORS[who],
            label=who,
        )
    ax.set_xlabel("⟨W_y⁺, W_y⁻⟩")
    ax.set_ylabel("Δ log π(y⁺ token)")
    ax.legend(fontsize=8)
    return fig


def ches_scatter(res: Any) -> Figure:
    """CHES (raw and length-normalised) against the change of log π(y⁺), for A and B."""
    fig, axes = new_figure(1, 2, width=4.8, height=3.6)
    for ax, kind in zip(axes[0], ("ches", "ches_normalised")):
        for who in ("A", "B"):
            ax.scatter(
                np.asarray(res.ches[kind]),
                np.asarray(res.preferred_change[who]),
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


def displacement_lines(res: Any) -> Figure:
    """Mean log π(y⁺), log π(y⁻) and log of the top OOD response, and the OOD mass, over steps."""
    fig, axes = new_figure(1, 3, width=4.3, height=3.5)
    for who in ("A", "B"):
        d = res.displacement[who]
        c = COLORS[who]
        axes[0][0].plot(d["step"], d["logp_chosen"], "-", color=c, label=f"{who}: log π(y⁺)")
        axes[0][0].plot(d["step"], d["logp_rejected"], "--", color=c, label=f"{who}: log π(y⁻)")
        axes[0][0].plot(
            d["step"], d["logp_top_ood"], ":", color=c, lw=2, label=f"{who}: log top OOD"
        )
        axes[0][1].plot(d["step"], d["ood_mass"], "-o", ms=2.5, color=c, label=who)
        axes[0][2].plot(d["step"], d["share_ood_above_chosen"], "-o", ms=2.5, color=c, label=who)
    axes[0][0].set_ylabel("mean log-probability")
    axes[0][1].set_ylabel("OOD mass (training prompts)")
    axes[0][2].set_ylabel("share of prompts: top OOD > mean π(y⁺)")
    for ax in axes[0]:
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
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


# ----------------------------------------------------------------------------- experiments


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


def grokking_curves(res: Any) -> Figure:
    """OOD rate, Error, Margin and Acc over epochs: SFT and each β (mean over seeds, band)."""
    fig, axes = new_figure(1, 4, width=4.0, height=3.4)
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
    axes[0][0].legend(fontsize=7)
    return fig


def sweep_heatmaps(res: Any, kls: Sequence[str] = ("kl_greedy", "kl_exact")) -> Figure:
    """KL over (β, step), mean over seeds, with each β's OOD-optimal checkpoint marked."""
    fig, axes = new_figure(1, len(kls), width=6.0, height=5.0)
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
    res: Any, kls: Sequence[str] = ("kl_greedy", "kl_exact"), ood: str = "ood_rate"
) -> Figure:
    """OOD of every checkpoint against its KL, coloured by β, with the binned mean."""
    fig, axes = new_figure(1, len(kls), width=5.2, height=3.8)
    norm = plt_lognorm(min(res.betas), max(res.betas))
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


def plt_lognorm(lo: float, hi: float):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=lo, vmax=hi)
