"""Token-unembedding geometry, CHES and likelihood displacement.

Following Razin et al. ("Unintentional unalignment: likelihood displacement in direct
preference optimization"), a preference update moves the log-probability of other tokens
according to the geometry of the unembedding, and of whole responses according to the
geometry of the hidden states that predict them.

- `token_geometry`: the raw unembedding of the response tokens (norms, inner products,
  cosines) and the single-token prediction ⟨W_z, W_y⁺ − W_y⁻⟩ against the observed change
  of each token's log-probability at a pair's first difference.
- `hidden_similarity`: CHES of every pair from the reference's hidden states, the
  response-level predictor of likelihood displacement.
- `displacement`: likelihood displacement over training (log π(y⁺), log π(y⁻), the OOD mass
  and the most probable OOD response at every saved step) and where the mass goes.
- `result`: `GeometryResult` (with the JSON twin's layout) and `run_geometry`, which
  computes all of it for an A-vs-B comparison.
"""

from interp.analysis.geometry.displacement import (
    DisplacementPoint,
    displacement_point,
    leaf_prompts,
    mass_by_kind,
    ood_leaves,
    top_ood,
)
from interp.analysis.geometry.hidden_similarity import (
    ChesScores,
    ChesSpearman,
    ches,
    ches_scores,
    ches_spearman,
    sequence_hidden_sums,
)
from interp.analysis.geometry.result import GeometryResult, run_geometry
from interp.analysis.geometry.token_geometry import (
    Gram,
    SingleToken,
    TokenChanges,
    first_difference,
    gram,
    next_token_logprobs,
    single_token,
    unembedding,
)

__all__ = [
    "ChesScores",
    "ChesSpearman",
    "DisplacementPoint",
    "GeometryResult",
    "Gram",
    "SingleToken",
    "TokenChanges",
    "ches",
    "ches_scores",
    "ches_spearman",
    "displacement_point",
    "first_difference",
    "gram",
    "leaf_prompts",
    "mass_by_kind",
    "next_token_logprobs",
    "ood_leaves",
    "run_geometry",
    "sequence_hidden_sums",
    "single_token",
    "top_ood",
    "unembedding",
]
