"""The case study's surgery claims, measured at the table step and judged by the shared
rules of `interp.analysis.claims`: B's attention tames A, B's non-attention does not, and
attention takes a small share of A's weight change."""

from __future__ import annotations

from interp.analysis import claims as rules
from interp.analysis.surgery.result import A, B, ClaimCheck, SurgeryResult, Variant


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def surgery_claims(res: SurgeryResult) -> list[ClaimCheck]:
    """The case study's three surgery claims at the table step, judged by
    `interp.analysis.claims`."""
    t = res.table_index
    a, b = res.of(A), res.of(B)
    assert a is not None and b is not None

    def at(v: Variant, metric: str) -> float:
        value = res.at_table_step(v, metric)
        return float("nan") if value is None else value

    out = []
    for group, tames in (("attention", True), ("non-attention", False)):
        swapped = res.of(Variant("swap", group))
        if swapped is None:
            continue
        v = swapped.variant
        ck, co = (
            rules.gap_closed(
                res.at_table_step(A, m), res.at_table_step(v, m), res.at_table_step(B, m)
            )
            for m in ("kl_exact", "ood_rate")
        )
        # along the trajectory: steps where A is clearly further from ref than B
        gap_steps = [
            i
            for i in range(len(res.steps))
            if a["kl_exact"][i] - b["kl_exact"][i] > rules.KL_GAP_STEP
        ]
        nearer_b = sum(
            abs(swapped["kl_exact"][i] - b["kl_exact"][i])
            < abs(swapped["kl_exact"][i] - a["kl_exact"][i])
            for i in gap_steps
        )
        out.append(
            ClaimCheck(
                claim="Swapping A's attention for B's tames KL and OOD"
                if tames
                else "Swapping A's non-attention parameters for B's does not",
                case_study="attention swap: KL grows slowly, OOD dips"
                if tames
                else "non-attention swap: KL still explodes, OOD barely changes",
                measured=(
                    f"step {res.table_step}: kl_exact {at(A, 'kl_exact'):.3f} → "
                    f"{at(v, 'kl_exact'):.3f} "
                    f"(B {at(B, 'kl_exact'):.3f}; {_pct(ck)} of the gap closed), OOD rate "
                    f"{at(A, 'ood_rate'):.1%} → {at(v, 'ood_rate'):.1%} "
                    f"(B {at(B, 'ood_rate'):.1%}; "
                    f"{_pct(co)} closed); KL nearer B's than A's at {nearer_b} of {len(gap_steps)} "
                    f"steps where A's kl_exact exceeds B's by > {rules.KL_GAP_STEP}"
                ),
                numbers={"gap_closed_kl_exact": ck, "gap_closed_ood_rate": co},
                verdict=rules.swap_verdict(ck, co, tames),
                group=group,
            )
        )
    fracs = res.weights.a_frac_attention
    share = res.param_share["attention"]
    final = fracs[t]
    later = [f for f in fracs if f == f]  # NaN where A is still the reference (step 0)
    lo, hi = (min(later), max(later)) if later else (float("nan"), float("nan"))
    out.append(
        ClaimCheck(
            claim="Attention takes a small share of A's weight change (≈25%) "
            "though it holds most parameters",
            case_study="FracWeightDelta(attention) ≈ 25% of the change; "
            "attention ≈ 65% of parameters",
            measured=(
                f"FracWeightDelta(attention) of A vs ref: {final:.1%} at step {res.table_step} "
                f"(range {lo:.1%}–{hi:.1%} over the trajectory); attention holds {share:.1%} "
                "of the parameters"
            ),
            numbers={"frac_weight_delta_attention": final, "param_share_attention": share},
            verdict=rules.attention_share_verdict(final, share),
        )
    )
    return out
