"""The geometry report: findings in prose, and the page of figures and tables.

The findings are stored in the JSON twin's `data` as its last key (`GeometryResult.to_json`
takes them from here), and printed by `python -m interp.geometry`.
"""

from __future__ import annotations

from typing import Any

from interp.analysis.geometry import GeometryResult
from interp.present.figures import geometry as figures
from interp.present.html import FigureBlock, Report, Section, Table, pair_slug
from interp.present.text import not_computable_lines

NO_JUDGE = "not computable (the task has no judge)"


def _f(x: float | None, spec: str = "+.2f") -> str:
    return "n/a" if x is None else format(x, spec)


def findings(res: GeometryResult) -> list[str]:
    out = []
    for who, name in (("A", res.a), ("B", res.b)):
        s = res.single.changes[who]
        ch = res.preferred_change[who]
        rho = res.ches_spearman[who]
        first, last = res.displacement[who][0], res.displacement[who][-1]
        out.append(
            f"{who} ({name}): log π(y⁺) fell on {float((ch < 0).double().mean()):.0%} of the "
            f"training pairs (mean change {float(ch.mean()):+.2f} nats). CHES on the reference "
            f"ranks that change with Spearman {_f(rho.ches)} (length-normalised "
            f"{_f(rho.ches_normalised)}; displacement theory predicts a negative value). "
            "Single-token geometry: ⟨W_z, W_y⁺ − W_y⁻⟩ ranks the observed change of the other "
            f"tokens with Spearman {_f(s.spearman_others)}."
        )
        trend = (
            f"{who} over training: mean log π(y⁺) {first.logp_chosen:.2f} → "
            f"{last.logp_chosen:.2f}, log π(y⁻) {first.logp_rejected:.2f} → "
            f"{last.logp_rejected:.2f}; "
        )
        if first.ood_mass is None or last.ood_mass is None or last.share_ood_above_chosen is None:
            out.append(trend + f"OOD mass and the most probable OOD response {NO_JUDGE}.")
            continue
        out.append(
            trend + f"OOD mass {first.ood_mass:.1%} → {last.ood_mass:.1%}. At the end, the most "
            "probable OOD response outweighs the average preferred response on "
            f"{last.share_ood_above_chosen:.0%} of the training prompts."
        )
    if not res.mass:  # a vocabulary too large to enumerate
        return out
    gains = {k: res.mass["A"][k] - res.mass["ref"].get(k, 0.0) for k in res.mass["A"]}
    top = sorted(gains.items(), key=lambda kv: -kv[1])[:2]
    out.append(
        "Where A's extra mass went (probability, averaged over training prompts, A − ref): "
        + "; ".join(f"{k} {v:+.1%}" for k, v in top)
        + "."
    )
    return out


def _geometry_section(res: GeometryResult) -> Section:
    toks = res.tokens
    geo_rows = []
    for who in ("ref", "A", "B"):
        g = res.unembedding[who]
        for i, t in enumerate(toks):
            shift = None if who == "ref" else float(res.unembedding_shift[who][i])
            geo_rows.append([who, t, float(g.norm[i]), shift])
    cos_rows = [
        [who, t] + [float(x) for x in res.unembedding[who].cosine[i]]
        for who in ("ref", "A", "B")
        for i, t in enumerate(toks)
    ]
    return Section(
        "Unembedding geometry of the response tokens",
        [
            "Raw W_U columns of the digits and EOS. Cosines of ref, A and B, and the changes "
            "A − ref and B − ref on one colour scale centred at 0 and fitted to them."
        ],
        [FigureBlock(figures.unembedding_panels(toks, res.unembedding))],
        [
            Table(
                "Norms and shift from the reference",
                ["model", "token", "‖W_z‖", "‖W_z − W_ref,z‖"],
                geo_rows,
            ),
            Table("Cosine similarities", ["model", "token"] + toks, cos_rows),
        ],
    )


def _single_section(res: GeometryResult) -> Section:
    rows = []
    for who in ("A", "B"):
        c = res.single.changes[who]
        rows.append([who, c.spearman_others, c.pearson_others, c.spearman_inner_vs_preferred])
    return Section(
        "Single-token predictions",
        [
            "For every training pair, at the first token where the two responses differ: the "
            "predicted direction ⟨W_z, W_y⁺ − W_y⁻⟩ (reference's W) for every other response "
            "token z, against the observed change of log π(z | prompt, shared prefix) from the "
            "reference. Right: ⟨W_y⁺, W_y⁻⟩ against the change of the preferred token itself."
        ],
        [FigureBlock(figures.single_token_scatter(res.single))],
        [
            Table(
                "Rank agreement",
                [
                    "model",
                    "Spearman (other tokens)",
                    "Pearson (other tokens)",
                    "Spearman ⟨W+,W−⟩ vs Δ log π(y⁺_k)",
                ],
                rows,
            )
        ],
    )


def _ches_section(res: GeometryResult) -> Section:
    rows = []
    for who in ("A", "B"):
        rho = res.ches_spearman[who]
        rows += [[who, "ches", rho.ches], [who, "ches_normalised", rho.ches_normalised]]
    scores = res.ches
    top = scores.ches.argsort(descending=True)[:10].tolist()
    return Section(
        "CHES and the change of the preferred response",
        [
            f"CHES of each of the {len(scores.ches)} training pairs, computed on the reference, "
            "against log π(y⁺) after training minus before."
        ],
        [FigureBlock(figures.ches_scatter(scores, res.preferred_change))],
        [
            Table("Spearman correlation", ["model", "score", "Spearman"], rows),
            Table(
                "The ten highest-CHES training pairs",
                [
                    "prompt",
                    "y⁺",
                    "y⁻",
                    "CHES",
                    "CHES (normalised)",
                    "Δ log π(y⁺) A",
                    "Δ log π(y⁺) B",
                ],
                [
                    [*res.pairs[i], float(scores.ches[i]), float(scores.ches_normalised[i])]
                    + [float(res.preferred_change[w][i]) for w in ("A", "B")]
                    for i in top
                ],
            ),
        ],
    )


def _displacement_section(res: GeometryResult) -> Section:
    rows = [
        [
            who,
            p.step,
            p.logp_chosen,
            p.logp_rejected,
            p.ood_mass,
            p.top_ood,
            p.share_ood_above_chosen,
        ]
        for who in ("A", "B")
        for p in res.displacement[who]
    ]
    return Section(
        "Likelihood displacement over training (training pairs)",
        [
            "Mean log-probability of the preferred and dispreferred training responses, the exact "
            "OOD mass on the training prompts, and the probability of each prompt's single most "
            "probable OOD response, at every saved step."
        ],
        [FigureBlock(figures.displacement_lines(res.displacement))],
        [
            Table(
                "Per step",
                [
                    "run",
                    "step",
                    "mean log π(y⁺)",
                    "mean log π(y⁻)",
                    "OOD mass",
                    "top OOD response (mean prob.)",
                    "share: top OOD > mean π(y⁺)",
                ],
                rows,
                percent=("OOD mass", "share: top OOD > mean π(y⁺)"),
            )
        ],
    )


def _mass_section(res: GeometryResult) -> Section:
    if not res.mass:
        return Section(
            "Which responses gained the probability",
            ["Not computable: the response space is too large to enumerate."],
        )
    kinds = sorted({k for m in res.mass.values() for k in m})
    ref, a, b = (res.mass[who] for who in ("ref", "A", "B"))
    return Section(
        "Which responses gained the probability",
        ["Probability by kind of response, averaged over training prompts (exact enumeration)."],
        [FigureBlock(figures.mass_bars(res.mass, kinds))],
        [
            Table(
                "Mass by kind",
                ["kind", "ref", "A", "B", "A − ref", "B − ref"],
                [
                    [
                        k,
                        ref.get(k, 0.0),
                        a.get(k, 0.0),
                        b.get(k, 0.0),
                        a.get(k, 0.0) - ref.get(k, 0.0),
                        b.get(k, 0.0) - ref.get(k, 0.0),
                    ]
                    for k in kinds
                ],
                percent=("ref", "A", "B", "A − ref", "B − ref"),
            )
        ],
    )


def build_report(res: GeometryResult, prov: dict[str, Any]) -> Report:
    summary = findings(res) + not_computable_lines(res.not_computable)
    return Report(
        kind="geometry",
        slug=pair_slug(res.a, res.b),
        title=f"Unembedding geometry and likelihood displacement: {res.a} (A), {res.b} (B)",
        summary=summary,
        sections=[
            _geometry_section(res),
            _single_section(res),
            _ches_section(res),
            _displacement_section(res),
            _mass_section(res),
        ],
        data=res.to_json(summary),
        provenance=prov,
    )
