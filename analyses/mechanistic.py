"""Claims F3–F5 (case study §4.3, Figs. 3–5): what DPO does to the network.

For each seed, the surgery, attention, patching and geometry reports of beta0.01 (A, the
OOD policy) against beta1.0 (B), and an overview page linking them. The claims:
- F3: A and B compute similar attention maps, and the same WeightDelta buys different KL
  at different β. Measured: the mean total variation between A's and B's attention rows
  (similar: below 0.1), and the ratio of A's to B's kl_exact at the same WeightDelta from
  the reference — the smaller of the two runs' final WeightDeltas, each run's KL
  interpolated along its trajectory (different: A's at least 1.5 times B's).
- F4: swapping A's attention for B's tames KL and OOD; swapping the non-attention
  parameters does not (the surgery report's two verdicts, from the share of the A–B gap
  each swap closes).
F3 and F4 are about an OOD policy against an in-distribution one: a seed where A is not
at least 5 points more often OOD than B (greedy, last step) has no such pair, and its
verdict for them is "undetermined".
- F5: attention takes about 25% of A's weight change although it holds about 65% of the
  parameters (FracWeightDelta of the attention group, A against the reference, last step).
  Holds when attention holds most parameters and its share of the change is within
  15–35%; partly when the share is below its share of the parameters but outside that
  band; does not hold otherwise.
The thresholds and rules live in `interp.analysis.claims`, shared with the reports.

    python analyses/mechanistic.py --seeds 0 1 2
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _experiment import cli, publish

from interp.analysis import claims as rules
from interp.analysis.attention import run_attention
from interp.analysis.claims import Claim
from interp.analysis.geometry import run_geometry
from interp.analysis.patching import run_patching
from interp.analysis.surgery import A, B, SurgerySettings, run_surgery
from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.sampling import EXACT_THRESHOLD
from interp.present.claims import claims_table
from interp.present.html import Link, Report, Section, Table
from interp.present.pages import attention as attention_page
from interp.present.pages import geometry as geometry_page
from interp.present.pages import patching as patching_page
from interp.present.pages import surgery as surgery_page
from interp.present.text import seeds_label
from interp.present.write import write_report
from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey
from interp.runs.provenance import provenance
from interp.stages import Stages, each

A_BETA, B_BETA = 0.01, 1.0

KINDS = ("surgery", "attention", "patching", "geometry")  # the four reports of each seed


def kl_at_weight_delta(deltas: list[float], kls: list[float], target: float) -> float:
    """A run's kl_exact where its WeightDelta from the reference reaches `target`, linearly
    interpolated between saved steps (WeightDelta grows along training)."""
    order = np.argsort(deltas)
    return float(np.interp(target, np.asarray(deltas)[order], np.asarray(kls)[order]))


def one_seed(
    seed: int,
    root: Path | None,
    reports: Path,
    preset: str,
    model: ModelSpec,
    progress: bool,
    exact_threshold: float = EXACT_THRESHOLD,
) -> dict[str, Any]:
    """Train A and B if needed, write the four reports, return the numbers for F3–F5."""
    keys = [PolicyKey(preset, "dpo", A_BETA, seed), PolicyKey(preset, "dpo", B_BETA, seed)]
    ensure_trained(keys, root, model, progress=progress, exact_threshold=exact_threshold)
    a, b = (k.name for k in keys)
    out: dict[str, Any] = {"seed": seed, "a": a, "b": b, "links": {}}
    started = time.time()
    with Stages(4) as stage:
        stage(f"surgery, {a} vs {b}")
        sres = run_surgery(a, b, root, SurgerySettings(exact_threshold=exact_threshold), progress)
        stage("attention")
        att = run_attention(a, b, root, progress=progress, exact_threshold=exact_threshold)
        stage("activation patching")
        pat = run_patching(a, b, root)
        stage("unembedding geometry")
        geo = run_geometry(a, b, root, exact_threshold, progress=progress)
    for name, page, res in (
        ("surgery", surgery_page, sres),
        ("attention", attention_page, att),
        ("patching", patching_page, pat),
        ("geometry", geometry_page, geo),
    ):
        prov = provenance(
            f"analyses/mechanistic.py ({name})", None, res.checkpoints, {"seed": seed}, started
        )
        out["links"][name] = str(
            write_report(page.build_report(res, prov), reports).relative_to(reports)
        )
    t, w = sres.table_index, sres.weights
    matched = min(w.a_delta[t], w.b_delta[t])
    kl_at = {
        v.label: kl_at_weight_delta(delta[: t + 1], sres.of(v)["kl_exact"][: t + 1], matched)
        for v, delta in ((A, w.a_delta), (B, w.b_delta))
    }
    f4 = {c.claim: c for c in sres.claims[:2]}
    verdict = {
        group: next(c.verdict for c in sres.claims if c.group == group)
        for group in ("attention", "non-attention")
    }
    out.update(
        attention_tv=float(att.a_vs_b.mean()),
        attention_tv_max=float(att.a_vs_b.max()),
        matched_weight_delta=matched,
        kl_at_matched_weight_delta=kl_at,
        kl_ratio=kl_at["A"] / kl_at["B"] if kl_at["B"] > 0 else None,
        f4_attention=verdict["attention"],
        f4_non_attention=verdict["non-attention"],
        gap_closed={
            claim: (c.numbers["gap_closed_kl_exact"], c.numbers["gap_closed_ood_rate"])
            for claim, c in f4.items()
        },
        ood={"A": sres.at_table_step(A, "ood_rate"), "B": sres.at_table_step(B, "ood_rate")},
        frac_attention=w.a_frac_attention[t],
        param_share_attention=sres.param_share["attention"],
        checkpoints=sres.checkpoints,
    )
    return out


def _premise_note(per_seed: list[dict[str, Any]], premise: list[bool]) -> str:
    ood = ", ".join(f"{r['ood']['A']:.1%} vs {r['ood']['B']:.1%}" for r in per_seed)
    return (
        f"A is clearly more OOD than B in {sum(premise)} of {len(premise)} seeds "
        f"(OOD rate A vs B per seed: {ood}); "
    )


def claims(per_seed: list[dict[str, Any]]) -> list[Claim]:
    links = [f"{r['links']['surgery']}" for r in per_seed]
    premise = [rules.premise_holds(r["ood"]["A"], r["ood"]["B"]) for r in per_seed]
    f3 = [
        rules.attention_claim_verdict(r["attention_tv"], r["kl_ratio"], ok)
        for r, ok in zip(per_seed, premise)
    ]
    f4 = [
        rules.surgery_claim_verdict(r["f4_attention"], r["f4_non_attention"], ok)
        for r, ok in zip(per_seed, premise)
    ]
    f5 = [
        rules.attention_share_verdict(r["frac_attention"], r["param_share_attention"])
        for r in per_seed
    ]
    closed = [r["gap_closed"] for r in per_seed]
    return [
        Claim(
            "F3",
            "A and B compute similar attention maps, and the same WeightDelta buys different KL by β",
            "attention maps of A and B look alike (Fig. 3 left); KL vs WeightDelta differs by β (right)",
            "mean total variation between A's and B's attention",
            [r["attention_tv"] for r in per_seed],
            f3,
            detail=_premise_note(per_seed, premise)
            + "kl_exact of A over B's at the same WeightDelta: "
            + ", ".join(
                f"{r['kl_ratio']:.2f}" if r["kl_ratio"] is not None else "n/a" for r in per_seed
            ),
            links=[r["links"]["attention"] for r in per_seed],
        ),
        Claim(
            "F4",
            "Swapping A's attention for B's tames KL and OOD; swapping non-attention does not",
            "attention swap: KL grows slowly, OOD dips; non-attention swap: KL explodes, OOD unchanged",
            "share of the A–B kl_exact gap closed by the attention swap",
            [list(c.values())[0][0] for c in closed],
            f4,
            detail=_premise_note(per_seed, premise)
            + "attention / non-attention verdicts per seed: "
            + "; ".join(f"{r['f4_attention']} / {r['f4_non_attention']}" for r in per_seed)
            + "; gap closed by non-attention (kl_exact): "
            + ", ".join(
                f"{list(c.values())[1][0]:.0%}" if list(c.values())[1][0] is not None else "n/a"
                for c in closed
            ),
            links=links,
            spec=".0%",
        ),
        Claim(
            "F5",
            "Attention takes a small share (≈25%) of A's weight change though it holds most parameters",
            "FracWeightDelta(attention) ≈ 25%; attention ≈ 65% of the parameters",
            "FracWeightDelta(attention), A vs ref, last step",
            [r["frac_attention"] for r in per_seed],
            f5,
            detail=f"attention holds {per_seed[0]['param_share_attention']:.1%} of the parameters",
            links=links,
            spec=".1%",
        ),
    ]


def overview(
    per_seed: list[dict[str, Any]], cl: list[Claim], prov: dict[str, Any], tag: str
) -> Report:
    rows = [
        [
            r["seed"],
            r["a"],
            r["b"],
            *(Link(r["links"][k], "../" + r["links"][k]) for k in KINDS),
        ]
        for r in per_seed
    ]
    nums = [
        [
            r["seed"],
            r["ood"]["A"],
            r["ood"]["B"],
            r["attention_tv"],
            r["attention_tv_max"],
            r["matched_weight_delta"],
            r["kl_at_matched_weight_delta"]["A"],
            r["kl_at_matched_weight_delta"]["B"],
            r["f4_attention"],
            r["f4_non_attention"],
            r["frac_attention"],
        ]
        for r in per_seed
    ]
    return Report(
        kind="mechanistic",
        slug=tag,
        title=f"F3–F5: mechanistic claims ({seeds_label(len(per_seed))})",
        summary=[f"{c.id} {c.claim}: {c.verdict.upper()}. {c.measured()}; {c.detail}." for c in cl],
        sections=[
            Section("Verdicts", tables=[claims_table(cl)]),
            Section(
                "Per seed",
                ["Each seed's four reports (linked) and the numbers behind F3–F5."],
                tables=[
                    Table(
                        "Reports",
                        ["seed", "A", "B", *KINDS],
                        rows,
                    ),
                    Table(
                        "Numbers",
                        [
                            "seed",
                            "OOD rate A",
                            "OOD rate B",
                            "attention TV (mean)",
                            "attention TV (max)",
                            "matched WeightDelta",
                            "kl_exact of A there",
                            "kl_exact of B there",
                            "F4 attention",
                            "F4 non-attention",
                            "FracWeightDelta(attention)",
                        ],
                        nums,
                    ),
                ],
            ),
        ],
        data={"per_seed": per_seed, "claims": [c.__dict__ | {"verdict": c.verdict} for c in cl]},
        provenance=prov,
    )


def experiment(
    seeds,
    root,
    reports,
    preset="sweep",
    model=CASE_STUDY,
    progress=True,
    exact_threshold=EXACT_THRESHOLD,
    argv=None,
) -> list[Claim]:
    """Write every seed's four reports and the overview; return F3, F4, F5."""
    started = time.time()
    per_seed = [
        one_seed(s, root, reports, preset, model, progress, exact_threshold)
        for s in each(seeds, lambda s: f"mechanistic, seed {s}")
    ]
    cl = claims(per_seed)
    ckpts = [c for r in per_seed for c in r["checkpoints"]]
    prov = provenance("analyses/mechanistic.py", argv, ckpts, {"seeds": seeds}, started)
    publish(
        overview(per_seed, cl, prov, f"{preset}_seeds_{'-'.join(map(str, seeds))}"), reports, cl
    )
    return cl


def main(argv: list[str] | None = None) -> int:
    return cli(
        experiment,
        "python analyses/mechanistic.py",
        "F3–F5: surgery, attention, patching, geometry (§4.3).",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
