"""Every verdict rule and threshold of the case study's claims, defined once.

A claim gets one of four verdicts: it *holds*, *partly holds*, *does not hold*, or is
*undetermined* — its premise is absent (e.g. the "OOD" policy is not more OOD than the
in-distribution one), so the data can neither support nor refute it. The per-comparison
reports (`interp.analysis.surgery`, `attention`) and the experiment scripts (`analyses/`)
call the rules here, so a report and the paper can never judge the same numbers
differently.

Rules (the experiments' docstrings give the operational definitions in full):
- *A swap tames A* (F4) when it closes at least `GAP_HALF` of the A–B gap in kl_exact and
  in OOD rate; "does not tame" is the mirror image. A gap that does not exist (A and B
  agree) leaves the verdict undetermined.
- *Attention takes a small share of A's weight change* (F5): holds when attention holds
  most parameters and FracWeightDelta(attention) lies within `SMALL_SHARE`; partly when
  it is below attention's share of the parameters but outside that band.
- *A and B attend alike* (F3): mean total variation between their attention rows below
  `SIMILAR`; *the same WeightDelta buys more KL at small β*: A's kl_exact at matched
  WeightDelta at least `KL_RATIO` times B's.
- *DPO does not grok* (F1, per seed, over the β that went OOD — `OOD_RISE` above the
  reference): holds when none came back (within `COME_BACK`) and each one's margin and
  accuracy kept rising (`kept_rising`); undetermined when none went OOD or one went OOD
  too late to tell.
- *One KL band, and a U* (F2, per seed): the OOD-optimal checkpoints' kl_greedy band is at
  most `BAND_WIDTH` wide, and OOD rate vs kl_greedy is U-shaped.
- F3 and F4 compare an OOD policy with an in-distribution one: their premise is that A's
  greedy OOD rate exceeds B's by at least `PREMISE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from interp.core.stats import fmt_ci, spearman

HOLDS, PARTLY, DOES_NOT_HOLD, UNDETERMINED = (
    "holds",
    "partly holds",
    "does not hold",
    "undetermined",
)
VERDICTS = (HOLDS, PARTLY, DOES_NOT_HOLD, UNDETERMINED)

GAP_HALF = 0.5  # a swap "closes the gap" when it closes at least this share of it
KL_GAP_STEP = 0.1  # steps where A's kl_exact exceeds B's by more than this are compared
SMALL_SHARE = (0.15, 0.35)  # the case study's "≈25%" of the weight change
SIMILAR = 0.1  # mean total variation below which two models "attend alike"
KL_RATIO = 1.5  # "more KL for the same WeightDelta": at least this many times B's
PREMISE = 0.05  # A must be at least this much more often OOD than B
# F1 (grokking): going OOD, coming back, rising, and how many epochs it takes to tell
OOD_RISE, COME_BACK, RISING, MIN_EPOCHS = 0.10, 0.05, 0.5, 3
# F2 (β sweep): the widest "one KL band", and the least rise that makes a U
BAND_WIDTH, U_FLOOR = 0.5, 0.01


def gap_closed(a: float | None, swapped: float | None, b: float | None) -> float | None:
    """(M(A) − M(A′)) / (M(A) − M(B)): 0 = no change, 1 = all the way to B; None when a
    value is missing or A and B agree (no gap)."""
    if a is None or swapped is None or b is None or abs(a - b) < 1e-9:
        return None
    return (a - swapped) / (a - b)


def swap_verdict(closed_kl: float | None, closed_ood: float | None, tames: bool) -> str:
    """F4, one half: does the swap close (`tames`) — or leave open — the KL and OOD gaps?"""
    if closed_kl is None or closed_ood is None:
        return UNDETERMINED
    n_big = sum(x >= GAP_HALF for x in (closed_kl, closed_ood))
    n_want = n_big if tames else 2 - n_big
    return HOLDS if n_want == 2 else PARTLY if n_want == 1 else DOES_NOT_HOLD


def attention_share_verdict(frac: float, param_share: float) -> str:
    """F5: attention's share of the weight change against its share of the parameters."""
    lo, hi = SMALL_SHARE
    if frac < param_share and param_share > 0.5 and lo <= frac <= hi:
        return HOLDS
    return PARTLY if frac < param_share else DOES_NOT_HOLD


def attend_alike(total_variation: float) -> bool:
    return total_variation < SIMILAR


def premise_holds(ood_a: float, ood_b: float) -> bool:
    """F3/F4's premise: A is clearly more often out of distribution than B."""
    return ood_a - ood_b >= PREMISE


def attention_claim_verdict(total_variation: float, kl_ratio: float | None, premise: bool) -> str:
    """F3: A and B attend alike, and A buys more KL for the same WeightDelta."""
    if not premise:
        return UNDETERMINED
    ok = [attend_alike(total_variation), kl_ratio is not None and kl_ratio >= KL_RATIO]
    return HOLDS if all(ok) else PARTLY if any(ok) else DOES_NOT_HOLD


def surgery_claim_verdict(attention: str, non_attention: str, premise: bool) -> str:
    """F4 from its two halves (attention tames A; non-attention does not)."""
    pair = (attention, non_attention)
    if not premise or UNDETERMINED in pair:
        return UNDETERMINED
    if pair == (HOLDS, HOLDS):
        return HOLDS
    if pair == (DOES_NOT_HOLD, DOES_NOT_HOLD):
        return DOES_NOT_HOLD
    return PARTLY


def kept_rising(epochs: list[float], values: list[float | None]) -> bool | None:
    """Did a series keep rising? Spearman with the epoch above 0.5; a series that stays
    flat (e.g. accuracy saturated at 1) did not fall, so it counts; fewer than
    `MIN_EPOCHS` points: None (too few to say)."""
    pts = [(e, v) for e, v in zip(epochs, values) if v is not None]
    if len(pts) < MIN_EPOCHS:
        return None
    if len({v for _, v in pts}) == 1:
        return True
    rho = spearman([e for e, _ in pts], [v for _, v in pts])
    return rho is not None and rho > RISING


def no_grokking_verdict(runs: Sequence[dict]) -> str:
    """F1 for one seed, from each β's run summary (went_ood, came_back, rising)."""
    went = [r for r in runs if r["went_ood"]]
    if not went:
        return UNDETERMINED  # nothing went OOD: nothing could come back
    if any(r["came_back"] for r in went):
        return DOES_NOT_HOLD
    if any(r["rising"] is None for r in went):
        return UNDETERMINED  # went OOD too late to tell what followed
    return HOLDS if all(r["rising"] for r in went) else PARTLY


def one_band_verdict(band_width: float | None, u_shaped: bool) -> str:
    """F2 for one seed."""
    ok = [band_width is not None and band_width <= BAND_WIDTH, u_shaped]
    return HOLDS if all(ok) else PARTLY if any(ok) else DOES_NOT_HOLD


@dataclass
class Claim:
    """One of the case study's claims, as measured over seeds."""

    id: str  # F1 … F5
    claim: str
    case_study: str  # what the case study reports
    statistic: str  # what `values` are
    values: list[float | None]  # one per seed
    verdicts: list[str]  # one per seed, from VERDICTS
    detail: str = ""
    links: list[str] = field(default_factory=list)  # report paths, relative to the reports root
    spec: str = ".3f"

    @property
    def verdict(self) -> str:
        """All seeds agree: that verdict; otherwise how many seeds gave each."""
        return combined_verdict(self.verdicts)

    def measured(self) -> str:
        return f"{self.statistic}: {fmt_ci(self.values, self.spec)}"


def combined_verdict(verdicts: Sequence[str]) -> str:
    """One verdict over seeds: the common one, or a count of each."""
    if not verdicts:
        return UNDETERMINED
    if len(set(verdicts)) == 1:
        return verdicts[0]
    counts = {v: verdicts.count(v) for v in VERDICTS if v in verdicts}
    return ", ".join(f"{v} in {n} of {len(verdicts)} seeds" for v, n in counts.items())
