"""Activation patching, across two policies and within one.

Patching runs a model on some tokens but replaces one activation — a hook site at one
position — with the value another run computed there, and measures how the output moves.
Two analyses, one engine:

- **Across policies** (`cross`): B's activations patched into A, on prompts where A
  answers out of distribution and B does not, measured at the first position where A
  departs from B's answer (the gap closed, KL to B, and whether greedy decoding is fixed).
- **Within one policy** (`within`, TransformerLens's `patching` module): clean/corrupted
  prompts that differ at one prompt position, and which (site, position) restores the
  clean behaviour.

`inputs` builds the position-aligned token rows both use; `run` holds the settings, the
engine checks, the typed result and `run_patching`. A task without a judge makes the
cross-policy part not computable; one that cannot corrupt a prompt (or knows no
reference answer) makes the within-policy part not computable.

The engine (`interp.analysis.interventions`: `Site`, `patched`, `patch_grid`) takes
TransformerLens's patch setters and any metric from logits to per-prompt numbers; the
analyses here sit on top of it.
"""

from interp.analysis.patching.cross import (
    CrossPatching,
    Decision,
    Divergence,
    cross_policy,
    decision_metric,
    divergence,
    greedy_patched,
)
from interp.analysis.patching.inputs import probe_tokens, spread, without_eos
from interp.analysis.patching.run import (
    EngineChecks,
    PatchingResult,
    PatchingSettings,
    engine_checks,
    run_patching,
)
from interp.analysis.patching.within import (
    PlacePairs,
    PlacePatching,
    place_pairs,
    place_patching,
    within_pairs,
)

__all__ = [
    "CrossPatching",
    "Decision",
    "Divergence",
    "EngineChecks",
    "PatchingResult",
    "PatchingSettings",
    "PlacePairs",
    "PlacePatching",
    "cross_policy",
    "decision_metric",
    "divergence",
    "engine_checks",
    "greedy_patched",
    "place_pairs",
    "place_patching",
    "probe_tokens",
    "run_patching",
    "spread",
    "within_pairs",
    "without_eos",
]
