"""The attention report: findings in plain language, then the mean patterns, single
prompts where A is OOD and B is not, and the drift along training.

The findings go into the report's summary and, as before, into its JSON twin's `data`
(as `data["findings"]`, through `AttentionResult.to_json`)."""

from __future__ import annotations

from typing import Any

from interp.analysis.attention import ROLES, AttentionResult
from interp.analysis.claims import attend_alike
from interp.core.stats import spearman
from interp.present.figures.attention import attention_drift, attention_parts
from interp.present.figures.common import attention_grid
from interp.present.html import FigureBlock, Report, Section, Table, pair_slug
from interp.present.text import not_computable_lines


def _pct(v: float | None) -> str:
    return "an unknown share (not computable)" if v is None else f"{v:.1%}"


def findings(res: AttentionResult) -> list[str]:
    """Plain-language conclusions with their numbers."""
    L, H = res.a_vs_b.shape
    heads = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    ab = res.a_vs_b.flatten()
    da, db = res.final["A"].drift.flatten(), res.final["B"].drift.flatten()
    ta, tb = res.trajectory["A"], res.trajectory["B"]
    ood_a, ood_b = ta.ood_rate[-1], tb.ood_rate[-1]
    alike = "attend almost alike" if attend_alike(float(ab.mean())) else "attend differently"
    out = [
        f"A ({res.a}) and B ({res.b}) {alike} on the test prompts: the total variation between "
        f"their attention rows is {ab.mean():.3f} on average over heads (largest {ab.max():.3f}, "
        f"{heads[int(ab.argmax())]}), while A answers out of distribution on "
        f"{_pct(ood_a)} of the prompts and B on {_pct(ood_b)}.",
        f"Drift from the reference at the end of training: A {da.mean():.3f} (largest "
        f"{da.max():.3f}, {heads[int(da.argmax())]}), B {db.mean():.3f} (largest {db.max():.3f}).",
    ]
    drift_a = ta.drift.flatten(1).mean(1).tolist()
    rho_kl = spearman(drift_a, ta.kl_exact)
    if (
        rho_kl is not None
        and float(db.mean()) > 0
        and ood_a is not None
        and ood_b is not None
        and ood_b > 0
    ):
        trend = "rises" if rho_kl > 0.5 else "falls" if rho_kl < -0.5 else "shows no clear trend"
        out.append(
            f"Along A's training its mean drift {trend} with its KL (Spearman {rho_kl:+.2f}), but "
            "both grow with the training step, so that alone does not tie them. Across the two "
            f"runs: A is {ood_a / ood_b:.1f}× as often OOD as B at the "
            f"end, with {float(da.mean()) / float(db.mean()):.2f}× B's attention drift."
        )
    return out


def _mean_section(res: AttentionResult, heads: list[tuple[int, int]]) -> Section:
    diffs = {
        "A − ref": res.mean["A"] - res.mean["ref"],
        "B − ref": res.mean["B"] - res.mean["ref"],
        "A − B": res.mean["A"] - res.mean["B"],
    }
    mean_rows = {k: res.mean[k] for k in ROLES} | diffs
    return Section(
        "Mean attention on the test prompts",
        [
            f"Every model runs on the same {res.n_prompts} inputs: each test prompt followed by "
            "the identity answer, teacher-forced. Rows are query positions (a row predicts the "
            "next token), columns keys; values averaged over prompts. The last three rows of "
            "panels are differences, on one colour scale centred at 0 and fitted to them "
            "(±max|Δ|, read the colour bar: red, more attention than the other model; blue, less)."
        ],
        [FigureBlock(attention_grid(mean_rows, res.positions, diverging=set(diffs)))],
        [
            Table(
                "Per head at the final step",
                ["head", "model", "entropy (nats)"]
                + [f"to {p}" for p in res.parts]
                + ["drift from ref"],
                [
                    [f"L{l}H{h}", k, float(res.final[k].entropy[l, h])]
                    + [float(x) for x in res.final[k].parts[l, h]]
                    + [float(res.final[k].drift[l, h])]
                    for (l, h) in heads
                    for k in ROLES
                ],
                note="entropy and shares over the rows that predict response tokens; drift = "
                "mean total variation from the reference's rows.",
                percent=tuple(f"to {p}" for p in res.parts),
            ),
            Table(
                "A against B at the final step",
                ["head", "mean total variation A vs B"],
                [[f"L{l}H{h}", float(res.a_vs_b[l, h])] for (l, h) in heads],
            ),
        ],
    )


def _examples_section(res: AttentionResult) -> Section:
    title = "Single prompts where A is OOD and B is not"
    if res.examples is None:
        return Section(
            title, ["Not computable: the task has no judge, so no answer can be called OOD."]
        )
    figs, text = [], []
    for ex in res.examples:
        text.append(
            f"{ex.prompt}=: A answers {ex.answers['A']!r}, B {ex.answers['B']!r}, "
            f"the reference {ex.answers['ref']!r}; patterns on {ex.text!r}."
        )
        rows = {k: ex.patterns[k] for k in ROLES} | {"A − B": ex.patterns["A"] - ex.patterns["B"]}
        figs.append(
            FigureBlock(attention_grid(rows, ex.tokens, diverging={"A − B"}), f"prompt {ex.prompt}")
        )
    if not res.examples:
        text = ["No test prompt has A out of distribution and B in it at the final step."]
    return Section(title, text, figs)


def _trajectory_section(res: AttentionResult, heads: list[tuple[int, int]]) -> Section:
    rows = []
    for who in ("A", "B"):
        t = res.trajectory[who]
        for i, s in enumerate(t.steps):
            rows.append(
                [who, s, t.kl_exact[i], t.ood_rate[i]]
                + [float(t.drift[i][l, h]) for (l, h) in heads]
                + [float(t.entropy[i][l, h]) for (l, h) in heads]
            )
    return Section(
        "Does attention drift as the policy goes out of distribution?",
        [
            "Per head, over each run's saved steps: drift from the reference's attention "
            "(total variation) beside the run's kl_exact and OOD rate; and where A's attention "
            "goes."
        ],
        [
            FigureBlock(attention_drift(res)),
            FigureBlock(attention_parts(res.trajectory["A"], res.parts, "A")),
        ],
        [
            Table(
                "Drift and entropy per step",
                ["run", "step", "kl_exact", "OOD rate"]
                + [f"drift L{l}H{h}" for (l, h) in heads]
                + [f"entropy L{l}H{h}" for (l, h) in heads],
                rows,
                percent=("OOD rate",),
            )
        ],
    )


def build_report(res: AttentionResult, prov: dict[str, Any]) -> Report:
    L, H = res.a_vs_b.shape
    heads = [(l, h) for l in range(L) for h in range(H)]
    summary = findings(res) + not_computable_lines(res.not_computable)
    return Report(
        kind="attention",
        slug=pair_slug(res.a, res.b),
        title=f"Attention: {res.a} (A) and {res.b} (B) against {res.ref}",
        summary=summary,
        sections=[
            _mean_section(res, heads),
            _examples_section(res),
            _trajectory_section(res, heads),
        ],
        data=res.to_json(summary),
        provenance=prov,
    )
