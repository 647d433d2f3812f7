"""interp: mechanistic interpretability of DPO's out-of-distribution extrapolation.

    >>> from interp import load, tokens
    >>> model = load("beta0.01")                       # a HookedTransformer, eval mode
    >>> theirs = load("runs-trl/beta0.01")             # a Hugging Face / TRL model folder
    >>> logits, cache = model.run_with_cache(tokens("305="))

Names are loaded lazily, so that `import interp` stays cheap and a command's own
module is never imported twice.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load": "interp.runs.sources",
    "load_checkpoint": "interp.runs.sources",
    "policies": "interp.runs.store",
    "trajectory": "interp.runs.sources",
    "encode": "interp.core.numberline",
    "decode": "interp.core.numberline",
    "tokens": "interp.core.numberline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
