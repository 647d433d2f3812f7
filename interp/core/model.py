"""The case study's transformer as a TransformerLens HookedTransformer (§3.3).

One layer, d_model 128, 4 heads of 32, a 2-layer GeLU MLP of width 128, learned absolute
positional embeddings, LayerNorm before attention, before the MLP and before the
unembedding, residual connections throughout. The vocabulary is the task's 13 tokens and
the context holds the longest prompt (4) plus the generation limit (6).

Layers, widths and heads are overridable (`ModelSpec`) so that every analysis also runs
on deeper or smaller models.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from interp.core.numberline import VOCAB
from interp.lens import HookedTransformer, HookedTransformerConfig, new_model


@dataclass(frozen=True)
class ModelSpec:
    """The architecture knobs the suite varies; everything else is fixed by the task."""

    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 128
    n_ctx: int = 10

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_heads, self.d_mlp, self.n_ctx) < 1:
            raise ValueError(f"model sizes must be positive: {self}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    def config(self) -> HookedTransformerConfig:
        return HookedTransformerConfig(
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_head=self.d_model // self.n_heads,
            d_mlp=self.d_mlp,
            d_vocab=len(VOCAB),
            n_ctx=self.n_ctx,
            act_fn="gelu",
            normalization_type="LN",
            positional_embedding_type="standard",
            default_prepend_bos=False,
            device="cpu",
        )

    @classmethod
    def from_config(cls, cfg: HookedTransformerConfig) -> ModelSpec:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


CASE_STUDY = ModelSpec()

# The fields of HookedTransformerConfig that config.json stores: enough to rebuild the
# model exactly; the rest are TransformerLens defaults.
CONFIG_FIELDS = (
    "n_layers",
    "d_model",
    "n_heads",
    "d_head",
    "d_mlp",
    "d_vocab",
    "n_ctx",
    "act_fn",
    "normalization_type",
    "positional_embedding_type",
    "attn_only",
    "default_prepend_bos",
)


def config_to_dict(cfg: HookedTransformerConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in CONFIG_FIELDS}


def config_from_dict(d: dict[str, Any]) -> HookedTransformerConfig:
    missing = [k for k in CONFIG_FIELDS if k not in d]
    if missing:
        raise ValueError(f"config is missing {', '.join(missing)}")
    return HookedTransformerConfig(**{k: d[k] for k in CONFIG_FIELDS}, device="cpu")


def build_model(
    spec: ModelSpec | HookedTransformerConfig | None = None, seed: int = 0
) -> HookedTransformer:
    """A freshly initialised model; the same seed gives the same weights.

    The global torch RNG is left as it was: initialisation draws from a forked RNG.
    """
    spec = CASE_STUDY if spec is None else spec
    cfg = spec.config() if isinstance(spec, ModelSpec) else spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return new_model(cfg)


def same_architecture(a: HookedTransformer, b: HookedTransformer) -> bool:
    return config_to_dict(a.cfg) == config_to_dict(b.cfg)


def param_count(model: HookedTransformer) -> int:
    return sum(p.numel() for p in model.parameters())
