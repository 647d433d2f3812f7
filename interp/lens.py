"""The single doorway to TransformerLens.

Every other module of `interp` imports TransformerLens names from here, never from
`transformer_lens` directly (a test checks this). The suite is pinned to
`transformer-lens>=3.9,<4`: 4.x removed `HookedTransformer` in favour of
`TransformerBridge`. Moving to 4.x means rewriting this module alone: build the model,
expose its config type, the activation cache, the hook-name helper and the patching
utilities under the same names.
"""

from __future__ import annotations

import warnings

from transformer_lens import ActivationCache, HookedTransformer, HookedTransformerConfig, patching
from transformer_lens.hook_points import HookPoint
from transformer_lens.utilities import get_act_name

__all__ = [
    "ActivationCache",
    "HookPoint",
    "HookedTransformer",
    "HookedTransformerConfig",
    "get_act_name",
    "new_model",
    "patching",
]


def new_model(cfg: HookedTransformerConfig) -> HookedTransformer:
    """A freshly initialised HookedTransformer for `cfg` (no tokenizer, weights from TL's init).

    TransformerLens 3.x warns on every construction that HookedTransformer goes away in
    4.0; we know (see the module docstring), so that one warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
        return HookedTransformer(cfg)
