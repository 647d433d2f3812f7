"""Parameter-group surgery between two policies (case study §3.4, §4.3).

A′ is policy A with the parameters of group Q taken from policy B (`interp.core.params`
names the groups; `interp.analysis.interventions` does the swapping); the improvement of
a metric D is D(A′) − D(A). Interpolation moves only group Q a fraction α of the way from
A to B (α = 0 gives A, α = 1 the swap). How much of the A–B difference a swap removes is
the *gap closed*, (D(A) − D(A′)) / (D(A) − D(B)): 0 = no change, 1 = all the way to B.

`run_surgery` evaluates A, B and every requested swap at each of A's saved steps, pairing
A_t with B_t (`pair="step"`, the same training step) or with B's final checkpoint
(`pair="final"`; always so when B is the reference, whose SFT steps do not line up with
A's). At one step (the final one by default) it also swaps every group of the finest
partition alone, interpolates the attention and non-attention groups, estimates kl_mc,
and collects greedy samples. Acc and Margin of every model use A's β.

A checkpoint's own evaluation is read from what training stored with it when that is the
same evaluation (`interp.runs.evaluations`), its Margin rescaled from the run's β to A's
(Margin is linear in β); everything else is computed here.
"""

from interp.analysis.surgery.claims import surgery_claims
from interp.analysis.surgery.result import (
    COARSE,
    METRICS,
    TRACKED,
    A,
    AttentionExample,
    B,
    ClaimCheck,
    Interpolation,
    MonteCarloKL,
    Sample,
    Series,
    SingleSwap,
    SurgeryResult,
    Variant,
    WeightChange,
)
from interp.analysis.surgery.run import SurgerySettings, run_surgery

__all__ = [
    "A",
    "B",
    "COARSE",
    "METRICS",
    "TRACKED",
    "AttentionExample",
    "ClaimCheck",
    "Interpolation",
    "MonteCarloKL",
    "Sample",
    "Series",
    "SingleSwap",
    "SurgeryResult",
    "SurgerySettings",
    "Variant",
    "WeightChange",
    "run_surgery",
    "surgery_claims",
]
