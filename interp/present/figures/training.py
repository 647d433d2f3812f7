"""Figures of the training-log page: TRL-style per-step curves and the checkpoint
evaluations over steps, several runs overlaid (one colour per run, listed in a legend).

Per-step panels draw each run's raw values faintly and its moving average (the result's
`window`) on top; panels that hold a pair (chosen and rejected) draw the first solid and
the second dashed. Every panel has both axis titles. Figures take the typed result of
`interp.analysis.training_log` and compute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from interp.analysis.training_log import LOSS, RunLog
from interp.present.figures.common import COLORS, METRIC_LABELS, new_figure

STEP = "training step"
PAIR_STYLES = ("-", "--")  # the first and second series of a paired panel

# per-step panels of a preference run: (panel title, y-axis title, logged columns)
STEP_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("rewards: chosen and rejected", "implicit reward β·log(π/π_ref)",
     ("rewards/chosen", "rewards/rejected")),
    ("rewards/margins", "reward margin (chosen − rejected)", ("rewards/margins",)),
    ("rewards/accuracies", "share of the batch's pairs", ("rewards/accuracies",)),
    ("logps: chosen and rejected", "log π(response) (nats)", ("logps/chosen", "logps/rejected")),
    ("loss", "loss (the run's objective)", (LOSS,)),
)  # fmt: skip

# checkpoint-evaluation panels: (panel title, y-axis title, metrics in meta.json "eval")
EVAL_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("OOD: greedy rate and exact mass", "share of test prompts / mass", ("ood_rate", "ood_mass")),
    ("Error", "mean Error (greedy)", ("error",)),
    ("KL to the reference", "nats", ("kl_greedy", "kl_exact")),
    ("Acc (test pairs)", "share with r_w > r_l", ("acc",)),
    ("Margin (test pairs)", "mean r_w − r_l", ("margin",)),
    ("test log-probabilities", "mean log π (nats)", ("logp_chosen", "logp_rejected")),
)
EVAL_NAMES = METRIC_LABELS | {"logp_chosen": "chosen", "logp_rejected": "rejected"}


def run_colors(runs: Sequence[RunLog]) -> dict[str, str]:
    """One colour per run: the reference grey, up to ten others from a colour-blind-safe
    palette, more than ten along viridis in the given order (a β sweep, say)."""
    others = [r.policy for r in runs if r.is_preference]
    if len(others) <= 10:
        palette = sns.color_palette("colorblind", 10).as_hex()
    else:
        palette = sns.color_palette("viridis", len(others)).as_hex()
    out = {p: palette[i] for i, p in enumerate(others)}
    return out | {r.policy: COLORS["ref"] for r in runs if not r.is_preference}


def _style_key(ax: Axes, names: Sequence[str]) -> None:
    """A legend of line styles (which series of a pair is which), in grey."""
    handles = [Line2D([], [], color="#555555", ls=s) for s in PAIR_STYLES[: len(names)]]
    ax.legend(handles, names, fontsize=8, loc="best", title_fontsize=8)


def _run_legend(fig: Figure, entries: Sequence[tuple[str, str, str]]) -> None:
    """One legend above the panels: (label, colour, line style) per run."""
    handles = [Line2D([], [], color=c, ls=ls, lw=2) for _, c, ls in entries]
    fig.legend(
        handles,
        [label for label, _, _ in entries],
        loc="outside upper center",
        ncol=min(len(entries), 6),
        fontsize=9,
        frameon=False,
    )


def step_curves(runs: Sequence[RunLog], window: int) -> Figure:
    """The per-step log of preference runs, TRL-style: rewards (chosen and rejected),
    margins, accuracies, log-probabilities (chosen and rejected) and loss."""
    colors = run_colors(runs)
    fig, axes = new_figure(3, 2, width=5.0, height=3.0)
    flat = [ax for row in axes for ax in row]
    for ax, (title, ylabel, cols) in zip(flat, STEP_PANELS):
        for r in runs:
            for col, ls in zip(cols, PAIR_STYLES):
                c = r.curves.get(col)
                if c is None or not len(r.steps):
                    continue
                ax.plot(r.steps, c.raw, ls, color=colors[r.policy], lw=0.6, alpha=0.2)
                ax.plot(r.steps, c.smoothed, ls, color=colors[r.policy], lw=1.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(STEP)
        ax.set_ylabel(ylabel)
        if len(cols) > 1:
            _style_key(ax, [c.split("/")[1] for c in cols])
    flat[-1].axis("off")
    flat[-1].text(
        0.02,
        0.5,
        f"faint: every step (one batch);\nbold: moving average over {window} steps",
        fontsize=9,
        va="center",
        transform=flat[-1].transAxes,
    )
    _run_legend(fig, [(r.policy, colors[r.policy], "-") for r in runs])
    return fig


def loss_curves(runs: Sequence[RunLog], window: int) -> Figure:
    """The loss of each run step by step, raw faint and smoothed bold."""
    colors = run_colors(runs)
    fig, axes = new_figure(1, 1, width=7.0, height=3.2)
    ax = axes[0][0]
    for r in runs:
        c = r.curves.get(LOSS)
        if c is None or not len(r.steps):
            continue
        ax.plot(r.steps, c.raw, color=colors[r.policy], lw=0.6, alpha=0.25)
        ax.plot(r.steps, c.smoothed, color=colors[r.policy], lw=1.6, label=r.policy)
    ax.set_xlabel(STEP)
    ax.set_ylabel(f"loss (bold: mean over {window} steps)")
    ax.legend(fontsize=9)
    return fig


def eval_panels(runs: Sequence[RunLog]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The evaluation panels some run has a value for."""
    return [p for p in EVAL_PANELS if any(r.evals.has(m) for r in runs for m in p[2])]


def _values(xs: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in xs], dtype=float)


def eval_curves(runs: Sequence[RunLog], baseline: RunLog | None = None) -> Figure:
    """The evaluation stored with each checkpoint over training steps (one marker per
    checkpoint); with `baseline` (the reference), its final value as a dotted grey line."""
    colors = run_colors(runs)
    panels = eval_panels(runs)
    ncols = 2 if len(panels) > 1 else 1
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = new_figure(nrows, ncols, width=5.0, height=3.0)
    flat = [ax for row in axes for ax in row]
    for ax, (title, ylabel, metrics) in zip(flat, panels):
        for r in runs:
            for m, ls in zip(metrics, PAIR_STYLES):
                if r.evals.has(m):
                    y = _values(r.evals.metrics[m])
                    ax.plot(r.evals.steps, y, ls, color=colors[r.policy], lw=1.5, marker="o", ms=3)
        if baseline is not None:
            for m in metrics:
                final = baseline.last_eval(m)
                if final is not None:
                    ax.axhline(final, color=COLORS["ref"], ls=":", lw=1.4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(STEP)
        ax.set_ylabel(ylabel)
        if len(metrics) > 1:
            _style_key(ax, [EVAL_NAMES.get(m, m) for m in metrics])
    for ax in flat[len(panels) :]:
        ax.axis("off")
    entries = [(r.policy, colors[r.policy], "-") for r in runs]
    if baseline is not None:
        entries.append((f"{baseline.policy}, final checkpoint", COLORS["ref"], ":"))
    _run_legend(fig, entries)
    return fig
