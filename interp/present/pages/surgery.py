"""The surgery report: verdicts on the case study's claims, KL and OOD over A's training,
where A's weight change goes, attention on a prompt where only A is OOD, every group
swapped alone, interpolation, and greedy samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from interp.analysis.surgery import COARSE, A, B, SurgeryResult, Variant
from interp.present.figures import surgery as figures
from interp.present.figures.common import attention_grid
from interp.present.html import FigureBlock, Report, Section, Table, jsonable, pair_slug
from interp.present.numbers import SHARE_METRICS
from interp.present.text import not_computable_lines


def _f(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def kl_metric(res: SurgeryResult) -> str:
    """The KL the page leads with: kl_exact where the response space can be enumerated,
    else the case study's kl_greedy."""
    return "kl_greedy" if "kl_exact" in res.not_computable else "kl_exact"


def summary_lines(res: SurgeryResult) -> list[str]:
    """The report's summary: measured numbers, then one line per claim with its verdict."""

    def at(v: Variant, m: str) -> float | None:
        return res.at_table_step(v, m)

    kl = kl_metric(res)
    judged = "ood_rate" not in res.not_computable
    candidates = [r for r in res.single if r.delta[kl] is not None and r.group not in COARSE[:2]]
    best = min(candidates, key=lambda r: r.delta[kl]) if candidates else None

    def numbers(v: Variant) -> str:
        ood = (
            f"OOD {_f(at(v, 'ood_rate'), '.1%')}, OOD mass {_f(at(v, 'ood_mass'), '.1%')}, "
            if judged
            else ""
        )
        return f"{ood}{kl} {_f(at(v, kl), '.3f')}"

    if judged and kl == "kl_exact":  # the number line's wording
        head = (
            f"At step {res.table_step}, A ({res.a}) answers out of distribution on "
            f"{_f(at(A, 'ood_rate'), '.1%')} of the test prompts and puts "
            f"{_f(at(A, 'ood_mass'), '.1%')} of its probability on OOD responses, with kl_exact "
            f"{_f(at(A, 'kl_exact'), '.3f')} nats to the reference; B ({res.b}, step "
            f"{res.table_donor_step}): {_f(at(B, 'ood_rate'), '.1%')}, "
            f"{_f(at(B, 'ood_mass'), '.1%')}, {_f(at(B, 'kl_exact'), '.3f')}. "
        )
    else:
        head = (
            f"At step {res.table_step}: A ({res.a}) {numbers(A)}; B ({res.b}, step "
            f"{res.table_donor_step}) {numbers(B)}. "
        )
    for g in res.groups:
        v = Variant("swap", g)
        head += f"{v.label}: {numbers(v)}. "
    if best is not None and judged and kl == "kl_exact":
        head += (
            f"Apart from attention and non-attention, the group that fixes A most on its own is "
            f"{best.group} (Δ kl_exact {best.delta['kl_exact']:+.3f}, Δ OOD "
            f"{_f(best.delta['ood_rate'], '+.1%')}, {best.param_share:.1%} of the parameters)."
        )
    elif best is not None:
        ood = f", Δ OOD {_f(best.delta['ood_rate'], '+.1%')}" if judged else ""
        head += (
            f"Apart from attention and non-attention, the group that moves A's {kl} furthest "
            f"toward the reference on its own is {best.group} (Δ {kl} "
            f"{best.delta[kl]:+.3f}{ood}, {best.param_share:.1%} of the parameters)."
        )
    lines = [head]
    for c in res.claims:
        lines.append(f"{c.claim}: {c.verdict.upper()}. {c.measured}.")
    return lines


def build_report(res: SurgeryResult, prov: dict[str, Any]) -> Report:
    labels = [s.variant.label for s in res.series]

    def shown(metrics: Sequence[str]) -> list[str]:  # the computable ones
        return [m for m in metrics if m not in res.not_computable]

    kl = kl_metric(res)
    judged = "ood_rate" not in res.not_computable
    steps = list(zip(res.steps, res.donor_steps))

    def per_step(metrics: Sequence[str]) -> Table:
        cols = ["step of A", "step of B"] + [f"{lab} {m}" for m in metrics for lab in labels]
        rows = [
            [s, d] + [series[m][i] for m in metrics for series in res.series]
            for i, (s, d) in enumerate(steps)
        ]
        shares = tuple(f"{lab} {m}" for m in metrics if m in SHARE_METRICS for lab in labels)
        return Table(f"{', '.join(metrics)} at every step", cols, rows, percent=shares)

    claims_table = Table(
        "The case study's claims",
        ["claim", "case study", "measured here", "verdict"],
        [[c.claim, c.case_study, c.measured, c.verdict] for c in res.claims],
    )
    mc_rows = [[m.variant.label, m.mean, m.se, m.n_per_prompt] for m in res.kl_mc]
    residual = res.of(A)["exact_residual"][-1]
    kl_section = Section(
        "KL to the reference over A's training",
        [
            f"kl_greedy is the case study's KL (log-ratio at the greedy response); kl_exact sums "
            f"π·log(π/π_ref) over the enumerated response tree (prefixes below probability "
            f"{res.exact_threshold:g} left unexpanded; mean left-out mass at the last step: "
            f"{_f(residual, '.2%')} for A; the left-out part of the KL is unknown "
            "in size and sign, so kl_exact is not a bound). Acc and Margin use A's β for every "
            "model. Pairing: A_t with "
            + ("B_t, the same training step." if res.pair == "step" else "B's final checkpoint.")
        ],
        [
            FigureBlock(
                figures.surgery_metric(res, shown(["kl_greedy", "kl_exact"])),
                "KL to the reference of A, B and A with each group from B.",
            )
        ],
        [per_step(shown(["kl_greedy", "kl_exact", "exact_residual"]))]
        + (
            [
                Table(
                    f"kl_mc at step {res.table_step} (temperature-1 samples)",
                    ["model", "kl_mc", "standard error", "samples per prompt"],
                    mc_rows,
                )
            ]
            if mc_rows
            else []
        ),
    )
    ood_section = (
        Section(
            "Out-of-distribution behaviour over A's training",
            [
                "Left: greedy OOD rate. Right: OOD(A′) − OOD(A) for each swap; green where the "
                "swap helps (fewer OOD answers), red where it harms."
            ],
            [
                FigureBlock(figures.surgery_ood(res)),
                FigureBlock(
                    figures.surgery_metric(res, shown(["ood_mass", "error"])),
                    "Exact OOD mass and mean Error.",
                ),
            ],
            [
                per_step(shown(["ood_rate", "ood_mass"])),
                per_step(shown(["error", "acc", "margin"])),
            ],
        )
        if judged
        else Section(
            "Log-probabilities and rewards over A's training",
            not_computable_lines({m: res.not_computable[m] for m in ("ood_rate",)}),
            tables=[per_step(shown(["acc", "margin"]))],
        )
    )
    w = res.weights
    weight_section = Section(
        "Where A's weight change goes",
        [
            f"FracWeightDelta(attention) is attention's part of Σ_P ‖A_t[P] − ref[P]‖_F. "
            f"Attention holds {res.param_share['attention']:.1%} of the parameters. "
            "Right: the same "
            "WeightDelta buys different KL at different β (the case study's Fig. 3, right)."
        ],
        [FigureBlock(figures.surgery_weights(res, kl))],
        [
            Table(
                "Weight change from the reference",
                [
                    "step",
                    "A WeightDelta",
                    "A FracWeightDelta(attention)",
                    "B WeightDelta",
                    "B FracWeightDelta(attention)",
                ],
                [
                    [
                        s,
                        w.a_delta[i],
                        w.a_frac_attention[i],
                        w.b_delta[i],
                        w.b_frac_attention[i],
                    ]
                    for i, s in enumerate(res.steps)
                ],
                percent=("A FracWeightDelta(attention)", "B FracWeightDelta(attention)"),
            )
        ],
    )
    ex = res.example
    if ex is not None:
        pa, pb = np.asarray(ex.patterns["A"]), np.asarray(ex.patterns["B"])
        n_heads = pa.shape[1]
        att_section = Section(
            "Attention patterns on a prompt where A is OOD and B is not",
            [
                f"Prompt {ex.prompt}=: A answers {ex.responses['A']!r}, B answers "
                f"{ex.responses['B']!r}. Both models (and the reference) are run on the same "
                f"tokens, {ex.text!r} (B's answer, teacher-forced), so the maps compare "
                "position by position. Row = query position (it predicts the next token)."
            ],
            [
                FigureBlock(
                    attention_grid({k: ex.patterns[k] for k in ("ref", "A", "B")}, ex.tokens)
                )
            ],
            [
                Table(
                    "How different are A's and B's heads on this prompt",
                    ["head", "mean |A − B|", "max |A − B|"],
                    [
                        [
                            f"L{l}H{h}",
                            float(np.abs(pa[l, h] - pb[l, h]).mean()),
                            float(np.abs(pa[l, h] - pb[l, h]).max()),
                        ]
                        for l in range(pa.shape[0])
                        for h in range(n_heads)
                    ],
                )
            ],
        )
    else:
        att_section = Section(
            "Attention patterns on a prompt where A is OOD and B is not",
            [f"No test prompt at step {res.table_step} has A out of distribution and B in it."],
        )
    metric_cols = ["kl_greedy", "kl_exact", "ood_rate", "ood_mass", "error", "acc", "margin"]
    single_section = Section(
        f"Every group swapped alone (step {res.table_step})",
        [
            "Each row gives A with one group taken from B, minus A (negative KL, OOD and Error "
            "move toward in-distribution). 'Gap closed' is (D(A) − D(A′)) / (D(A) − D(B)). "
            "FracWeightDelta is the group's part of A's weight change from the reference; head "
            "slices are measured as slices, so head rows do not add up with whole-tensor rows.",
            "The interpolation moves only the group a fraction alpha of the way from A to B.",
        ],
        [
            FigureBlock(figures.single_group_bars(res.single, shown([kl, "ood_rate"]))),
            FigureBlock(
                figures.interpolation_curves(
                    res.interpolation, shown([kl, "ood_rate", "ood_mass"])
                ),
                "Interpolation of the attention and non-attention groups.",
            ),
        ],
        [
            Table(
                "One group from B",
                ["group", "partition", "parameter share", "FracWeightDelta"]
                + [f"Δ {m}" for m in metric_cols]
                + ["gap closed (kl_exact)", "gap closed (OOD)"],
                [
                    [r.group, r.partition, r.param_share, r.frac_weight_delta]
                    + [r.delta[m] for m in metric_cols]
                    + [r.gap_closed_kl_exact, r.gap_closed_ood_rate]
                    for r in res.single
                ],
                percent=("parameter share", "FracWeightDelta", "gap closed (kl_exact)")
                + ("gap closed (OOD)",)
                + tuple(f"Δ {m}" for m in metric_cols if m in SHARE_METRICS),
            ),
            Table(
                "Interpolation",
                ["group", "alpha"] + metric_cols,
                [
                    [g, al] + [curve[m][i] for m in metric_cols]
                    for g, curve in res.interpolation.curves.items()
                    for i, al in enumerate(res.interpolation.alphas)
                ],
                percent=tuple(m for m in metric_cols if m in SHARE_METRICS),
            ),
        ],
    )
    sample_cols = ["prompt"] + labels
    samples_section = Section(
        f"Samples (greedy, step {res.table_step})",
        ["Test prompts where A is OOD and B is not come first; * marks an OOD answer."],
        tables=[
            Table(
                "Greedy responses",
                sample_cols,
                [
                    [s.prompt] + [text + (" *" if ood else "") for _, text, ood in s.answers]
                    for s in res.samples
                ],
            )
        ],
    )
    return Report(
        kind="surgery",
        slug=pair_slug(res.a, res.b),
        title=f"Surgery: {res.a} (A) with parts of {res.b} (B)",
        summary=summary_lines(res) + not_computable_lines(res.not_computable),
        sections=[
            Section("Verdicts", tables=[claims_table])
            if res.claims
            else Section(
                "Verdicts",
                [
                    "The case study's claims are about kl_exact and the OOD rate, which are not "
                    "both computable here: no verdicts."
                ],
            ),
            kl_section,
            ood_section,
            weight_section,
            att_section,
            single_section,
            samples_section,
        ],
        data=jsonable(res.to_json()),
        provenance=prov,
    )
