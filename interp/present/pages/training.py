"""The training-log page: how each run trained, step by step and checkpoint by checkpoint.

Sections: the per-step log of the preference runs (TRL's rewards/chosen, rewards/rejected,
margins, accuracies, logps and loss), the evaluation stored at each checkpoint (OOD,
Error, KL, Acc, Margin, test log-probabilities), and the SFT runs' loss and evaluation.
Every number drawn is in the JSON twin (`TrainingLogResult.to_json`: raw and smoothed
curves, every checkpoint's evaluation); the tables hold the end of each run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from interp.analysis.training_log import LOSS, PREFERENCE_COLUMNS, RunLog, TrainingLogResult
from interp.present.figures.training import (
    EVAL_PANELS,
    eval_curves,
    loss_curves,
    step_curves,
)
from interp.present.html import FigureBlock, Report, Section, Table

KIND = "training"
EVAL_COLUMNS = tuple(m for _, _, ms in EVAL_PANELS for m in ms)


def slug(policies: list[str]) -> str:
    """The page's file name stem: the policy names joined, or for many of them the first,
    the last, their number and a short hash of them all."""
    joined = "_".join(policies)
    if len(policies) > 4 or len(joined) > 80:
        digest = hashlib.sha1("\n".join(policies).encode()).hexdigest()[:8]
        joined = f"{policies[0]}_to_{policies[-1]}_{len(policies)}_runs_{digest}"
    return joined.replace("/", "-")


def _fmt(v: float | None, spec: str) -> str:
    return "— (not computable)" if v is None else format(v, spec)


def summary(res: TrainingLogResult) -> list[str]:
    """One line on what the page holds, then one per run: where its log ended."""
    w = res.window
    out = [
        f"Training logs of {', '.join(r.policy for r in res.runs)}: per-step rewards, margins, "
        f"accuracies, log-probabilities and loss (bold: moving average over {w} steps), and "
        "the evaluation stored at every checkpoint."
    ]
    for r in res.runs:
        n = int(r.steps[-1]) if len(r.steps) else 0
        unfinished = "" if r.complete else " (unfinished)"
        evals = (
            f"at its last checkpoint (step {r.evals.steps[-1]}) OOD "
            f"{_fmt(r.last_eval('ood_rate'), '.1%')}, Error {_fmt(r.last_eval('error'), '.2f')}"
            if r.evals.steps
            else "no checkpoint yet"
        )
        if r.is_preference:
            out.append(
                f"{r.policy}{unfinished}: after {n} steps, over the last {min(w, n)} steps, "
                f"rewards/chosen {_fmt(r.final('rewards/chosen', w), '+.3g')}, rewards/rejected "
                f"{_fmt(r.final('rewards/rejected', w), '+.3g')}, margin "
                f"{_fmt(r.final('rewards/margins', w), '.3g')}, accuracy "
                f"{_fmt(r.final('rewards/accuracies', w), '.0%')}; {evals}, kl_greedy "
                f"{_fmt(r.last_eval('kl_greedy'), '.3f')}."
            )
        else:
            out.append(
                f"{r.policy}{unfinished} ({r.loss}): after {n} steps the loss is "
                f"{_fmt(r.final(LOSS, w), '.3g')} (mean of the last {min(w, n)}); {evals}."
            )
    return out


def _end_table(runs: list[RunLog], window: int) -> Table:
    cols = [*PREFERENCE_COLUMNS, LOSS]
    return Table(
        "At the end of training",
        ["policy", "objective", "β", "steps", *cols],
        [
            [r.policy, r.loss, r.beta, int(r.steps[-1]) if len(r.steps) else 0]
            + [r.final(c, window) for c in cols]
            for r in runs
        ],
        note=f"means over each run's last {window} logged steps.",
    )


def _eval_table(runs: list[RunLog], title: str) -> Table:
    return Table(
        title,
        ["policy", "step", "epoch", *EVAL_COLUMNS],
        [
            [r.policy, s, round(s / r.steps_per_epoch, 2)]
            + [r.evals.metrics.get(m, [None] * len(r.evals.steps))[i] for m in EVAL_COLUMNS]
            for r in runs
            for i, s in enumerate(r.evals.steps)
        ],
        note="ood_rate, ood_mass, acc: fractions (0 to 1); KL in nats; — where a checkpoint "
        "has no value (the reference has no KL, Acc or Margin).",
    )


def _missing(runs: list[RunLog]) -> list[str]:
    """A sentence naming the evaluations no run has (not computable, e.g. without a judge)."""
    absent = [m for m in EVAL_COLUMNS if not any(r.evals.has(m) for r in runs)]
    if not absent:
        return []
    return [f"Not computable for these runs, so not drawn: {', '.join(absent)}."]


def _preference_sections(res: TrainingLogResult, ref: RunLog | None) -> list[Section]:
    pref = res.preference
    if not pref:
        return [Section("Preference training", ["No preference run among these policies."])]
    baseline = (
        f" The dotted grey line is {ref.policy}'s final checkpoint, where every preference "
        "run starts."
        if ref is not None
        else ""
    )
    return [
        Section(
            "Preference training, step by step",
            [
                "Each optimizer step logs, as means over its batch: the implicit rewards "
                "β·log(π/π_ref) of the chosen and the rejected response, their margin, the share "
                "of pairs whose chosen reward is higher (accuracy), the policy's log-probabilities "
                "of both responses, and the loss. When rewards/chosen falls while the margin "
                "grows, the policy lowers the likelihood of the preferred answer too "
                "(likelihood displacement).",
                f"Faint lines are every step; bold lines the centred moving average over "
                f"{res.window} steps. Rewards carry the factor β, so a small β's rewards and "
                "margins look flat beside a large β's; its log-probabilities show how far it "
                "moved.",
            ],
            [FigureBlock(step_curves(pref, res.window), "the per-step training log")],
            [_end_table(pref, res.window)],
        ),
        Section(
            "Evaluation at each checkpoint",
            [
                "The evaluation stored with each saved checkpoint, on the test split: greedy "
                "OOD rate and the exact OOD mass, mean Error, KL to the reference (kl_greedy, "
                "the case study's; kl_exact, the enumerated sum), Acc and Margin of the "
                f"implicit reward on the test pairs, and test log-probabilities.{baseline}",
                *_missing(pref),
            ],
            [FigureBlock(eval_curves(pref, ref), "one marker per saved checkpoint")],
            [_eval_table(pref, "Evaluation at each checkpoint")],
        ),
    ]


def _sft_section(res: TrainingLogResult) -> list[Section]:
    sft = [r for r in res.runs if not r.is_preference]
    if not sft:
        return []
    return [
        Section(
            "SFT (reference) training",
            [
                "Supervised fine-tuning logs its cross-entropy loss at every step; "
                "its checkpoints are evaluated like every other run's (no KL, Acc or Margin: "
                "it is its own reference).",
                *_missing(sft),
            ],
            [
                FigureBlock(loss_curves(sft, res.window), "loss per step"),
                FigureBlock(eval_curves(sft), "evaluation at each saved checkpoint"),
            ],
            [_eval_table(sft, "SFT: evaluation at each checkpoint")],
        )
    ]


def build_report(res: TrainingLogResult, prov: dict[str, Any]) -> Report:
    """The training-log page of `res` (`kind` training, one slug per set of policies)."""
    names = [r.policy for r in res.runs]
    refs = {r.policy: r for r in res.runs if not r.is_preference}
    used = {r.reference for r in res.preference}
    ref = refs.get(used.pop()) if len(used) == 1 else None  # the one reference they share
    return Report(
        kind=KIND,
        slug=slug(names),
        title=f"Training logs: {', '.join(names) if len(names) <= 6 else slug(names)}",
        summary=summary(res),
        sections=_preference_sections(res, ref) + _sft_section(res),
        data=res.to_json(),
        provenance=prov,
    )
