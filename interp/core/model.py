"""The case study's transformer as a TransformerLens HookedTransformer (§3.3).

One layer, d_model 128, 4 heads of 32, a 2-layer GeLU MLP of width 128, learned absolute
positional embeddings, LayerNorm before attention, before the MLP and before the
unembedding, residual connections throughout. The vocabulary is the task's 13 tokens and
the context holds the longest prompt (4) plus the generation limit (6).

Layers, widths and heads are overridable (`ModelSpec`) so that every analysis also runs
on deeper or smaller models, within `LIMITS` and `MAX_PARAMS`: the bounds every size is
checked against, from the command line (`python -m interp.train`) and from a checkpoint's
config.json alike, before anything is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from interp.core.numberline import VOCAB
from interp.lens import HookedTransformer, HookedTransformerConfig, new_model

# Upper bounds on the architecture knobs: far above anything this suite trains (the case
# study has 105K parameters), far below a typo's terabyte allocation.
LIMITS = {"n_layers": 64, "d_model": 8192, "n_heads": 256, "d_mlp": 32768, "n_ctx": 2048}
MAX_PARAMS = 1_000_000_000  # 4 GB of float32 weights

# What the task fixes: the only values a config.json may hold for these fields.
ACT_FN, NORMALIZATION, POSITIONAL = "gelu", "LN", "standard"


@dataclass(frozen=True)
class ModelSpec:
    """The architecture knobs the suite varies; everything else is fixed by the task.

    ValueError (one line) for a size that is not a positive integer within `LIMITS`, a
    d_model not divisible by n_heads, or more than `MAX_PARAMS` parameters."""

    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 128
    n_ctx: int = 10

    def __post_init__(self) -> None:
        for name, limit in LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{name} must be an integer, not {v!r}")
            if not 1 <= v <= limit:
                raise ValueError(f"{name} must be between 1 and {limit}, not {v}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if (n := self.n_params()) > MAX_PARAMS:
            raise ValueError(
                f"a model of {n:,} parameters is above this suite's limit of {MAX_PARAMS:,}; "
                "use smaller sizes"
            )

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter of `build_model(self)`, computed without building it."""
        d, h, m, v = self.d_model, self.n_heads, self.d_mlp, len(VOCAB)
        dh = d // h
        out: dict[str, tuple[int, ...]] = {"embed.W_E": (v, d), "pos_embed.W_pos": (self.n_ctx, d)}
        for i in range(self.n_layers):
            b = f"blocks.{i}."
            out |= {
                **{b + f"{ln}.{wb}": (d,) for ln in ("ln1", "ln2") for wb in "wb"},
                **{b + f"attn.W_{x}": (h, d, dh) for x in "QKV"},
                **{b + f"attn.b_{x}": (h, dh) for x in "QKV"},
                b + "attn.W_O": (h, dh, d),
                b + "attn.b_O": (d,),
                b + "mlp.W_in": (d, m),
                b + "mlp.b_in": (m,),
                b + "mlp.W_out": (m, d),
                b + "mlp.b_out": (d,),
            }
        out |= {"ln_final.w": (d,), "ln_final.b": (d,), "unembed.W_U": (d, v), "unembed.b_U": (v,)}
        return out

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def config(self) -> HookedTransformerConfig:
        return HookedTransformerConfig(
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_head=self.d_model // self.n_heads,
            d_mlp=self.d_mlp,
            d_vocab=len(VOCAB),
            n_ctx=self.n_ctx,
            act_fn=ACT_FN,
            normalization_type=NORMALIZATION,
            positional_embedding_type=POSITIONAL,
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
    """The config a config.json dict describes; ValueError unless it is one `ModelSpec`
    builds (validate the file first: `interp.runs.schema.ConfigFile`)."""
    missing = [k for k in CONFIG_FIELDS if k not in d]
    if missing:
        raise ValueError(f"config is missing {', '.join(missing)}")
    spec = ModelSpec(**{f.name: d[f.name] for f in fields(ModelSpec)})
    fixed = {k: v for k, v in config_to_dict(spec.config()).items() if k != "default_prepend_bos"}
    wrong = [k for k, v in fixed.items() if d[k] != v or type(d[k]) is not type(v)]
    if wrong:
        raise ValueError(f"config has {', '.join(f'{k}={d[k]!r}' for k in wrong)}, not {fixed}")
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
    """Same config fields and the same parameter names and shapes (which also tells apart
    architectures the config fields above do not describe: gated MLPs, grouped K/V heads)."""
    shapes_a = {n: tuple(p.shape) for n, p in a.named_parameters()}
    shapes_b = {n: tuple(p.shape) for n, p in b.named_parameters()}
    return config_to_dict(a.cfg) == config_to_dict(b.cfg) and shapes_a == shapes_b


# What `--dtype` may ask for; the suite trains and stores float32.
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def place_(
    model: HookedTransformer, device: str = "cpu", dtype: str = "float32"
) -> HookedTransformer:
    """In place: the model's weights on `device` in `dtype`, its config saying so."""
    if torch.device(model.cfg.device) != torch.device(device):
        model.to(device, print_details=False)  # TransformerLens's `to` also sets cfg.device
    if model.cfg.dtype != DTYPES[dtype]:
        model.to(DTYPES[dtype])
        model.cfg.dtype = DTYPES[dtype]
    return model


def param_count(model: HookedTransformer) -> int:
    return sum(p.numel() for p in model.parameters())
