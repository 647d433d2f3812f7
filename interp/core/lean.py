"""A lean forward pass of the suite's own transformer, over stacked members.

TransformerLens runs every activation through a hook point and every weight through
einops, which is what makes it the right tool for looking inside a model and the wrong
one for the suite's hot loops: training thirty β at once and evaluating every saved step
call a 105K-parameter model millions of times, and there the bookkeeping costs more than
the arithmetic. This module computes the same function in a few dense operations:

- parameters stay in TransformerLens's names and layouts (`W_Q[head, d_model, d_head]`…),
  stacked along a leading *member* dimension (one member: an ordinary model);
- Q, K and V come from one matrix product (`W_Q | W_K | W_V` side by side), heads are
  folded into W_O's product, and every product is a batched matmul over members;
- tokens are shared by all members (`[batch, pos]`) or given per member
  (`[member, batch, pos]`); logits come back as `[member, batch, pos, d_vocab]`;
- a key/value cache (`Cache`) lets decoding and enumeration feed only new tokens, with
  its rows re-indexed to follow a tree of prefixes (`Cache.select_`).

It covers exactly the architecture the suite builds (`interp.core.model`: pre-LayerNorm,
GeLU MLP, learned absolute positions, any depth and width); `supports` says whether a
config is one, and callers fall back to the HookedTransformer for anything else (a
converted Hugging Face folder, say). The LayerNorm is TransformerLens's to the operation
(centre, divide by √(mean square + eps), scale and shift), attention is causal and
divided by √d_head, so the logits agree with `HookedTransformer.forward` up to float
rounding (tested to 1e-5 on random models, with and without the cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.lens import HookedTransformer, HookedTransformerConfig

Params = dict[str, Tensor]  # TransformerLens parameter names → [member, *shape]


def supports(cfg: HookedTransformerConfig) -> bool:
    """Is this config the architecture the lean forward computes (the suite's own)?"""
    return (
        cfg.act_fn == "gelu"
        and cfg.normalization_type == "LN"
        and cfg.positional_embedding_type == "standard"
        and not cfg.attn_only
        and not cfg.parallel_attn_mlp
        and not cfg.gated_mlp
        and cfg.use_attn_scale
        and cfg.attn_scale == cfg.d_head**0.5
        and not cfg.scale_attn_by_inverse_layer_idx
        and cfg.attn_scores_soft_cap <= 0
        and cfg.output_logits_soft_cap <= 0
        and cfg.n_key_value_heads is None
        and not cfg.use_qk_norm
        and cfg.original_architecture is None
        and cfg.dtype in (torch.float32, torch.float64)
    )


def stack_params(models: Sequence[HookedTransformer]) -> Params:
    """The models' parameters stacked along a new leading member dimension (detached)."""
    named = [dict(m.named_parameters()) for m in models]
    return {k: torch.stack([n[k].detach() for n in named]) for k in named[0]}


@dataclass
class Cache:
    """Keys and values of every position seen so far, per layer:
    `[member, batch, head_index, pos, d_head]`."""

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.keys[0].shape[3] if self.keys else 0

    def select_(self, rows: Int[Tensor, " new_batch"]) -> None:
        """Keep (repeat, reorder) batch rows in place: row i becomes `rows[i]`."""
        rows = rows.to(self.keys[0].device) if self.keys else rows
        self.keys = [k[:, rows] for k in self.keys]
        self.values = [v[:, rows] for v in self.values]


def _layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """TransformerLens's LayerNorm (biased variance, eps inside the root), each member its
    own scale and shift: w, b [member, d] over x [member, rows, d]."""
    x = x - x.mean(-1, keepdim=True)
    scale = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return (x / scale) * w[:, None] + b[:, None]


def _affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x [member, rows, in] @ w [member, in, out] + b [member, out]."""
    return torch.baddbmm(b[:, None], x, w)


class Lean:
    """The forward pass of stacked models of one (supported) architecture.

    `Lean(params, cfg)(tokens)` gives `[member, batch, pos, d_vocab]` logits; pass a
    `Cache` to append `tokens` to what it holds (and extend it). Differentiable: the
    ensemble trains through it."""

    def __init__(self, params: Params, cfg: HookedTransformerConfig):
        if not supports(cfg):
            raise ValueError("the lean forward covers the suite's own architecture only")
        self.p, self.cfg = params, cfg

    @classmethod
    def of(cls, models: Sequence[HookedTransformer]) -> Lean:
        """The models stacked, in order, as members (detached copies of their weights)."""
        return cls(stack_params(models), models[0].cfg)

    @property
    def n_members(self) -> int:
        return self.p["embed.W_E"].shape[0]

    def __call__(
        self,
        tokens: Int[Tensor, "batch pos"] | Int[Tensor, "member batch pos"],
        cache: Cache | None = None,
    ) -> Float[Tensor, "member batch pos d_vocab"]:
        p, cfg = self.p, self.cfg
        n_m, h, dh = self.n_members, cfg.n_heads, cfg.d_head
        tokens = tokens.to(p["embed.W_E"].device)
        shared = tokens.dim() == 2
        start = cache.length if cache is not None else 0
        n_b, n_p = tokens.shape[-2:]
        if start + n_p > cfg.n_ctx:
            raise ValueError(f"{start + n_p} positions exceed n_ctx {cfg.n_ctx}")
        if shared:
            x = p["embed.W_E"][:, tokens]
        else:
            x = p["embed.W_E"][torch.arange(n_m, device=tokens.device)[:, None, None], tokens]
        x = x + p["pos_embed.W_pos"][:, None, start : start + n_p]
        x = x.reshape(n_m, n_b * n_p, cfg.d_model)
        causal = torch.ones(n_p, start + n_p, dtype=torch.bool, device=x.device).tril(start)
        for layer in range(cfg.n_layers):
            b = f"blocks.{layer}."
            y = _layer_norm(x, p[b + "ln1.w"], p[b + "ln1.b"], cfg.eps)
            w_qkv = torch.cat([p[b + f"attn.W_{c}"] for c in "QKV"], dim=1)  # [m, 3h, d, dh]
            w_qkv = w_qkv.permute(0, 2, 1, 3).reshape(n_m, cfg.d_model, 3 * h * dh)
            b_qkv = torch.cat([p[b + f"attn.b_{c}"] for c in "QKV"], dim=1).reshape(n_m, -1)
            qkv = _affine(y, w_qkv, b_qkv).view(n_m, n_b, n_p, 3, h, dh)
            q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each [m, batch, h, pos, dh]
            if cache is not None:
                if layer < len(cache.keys):
                    k = torch.cat([cache.keys[layer], k], dim=3)
                    v = torch.cat([cache.values[layer], v], dim=3)
                    cache.keys[layer], cache.values[layer] = k, v
                else:
                    cache.keys.append(k)
                    cache.values.append(v)
            scores = (q @ k.transpose(-1, -2)) / cfg.attn_scale
            scores = scores.masked_fill(~causal, float("-inf"))
            z = scores.softmax(-1) @ v  # [m, batch, h, pos, dh]
            z = z.permute(0, 1, 3, 2, 4).reshape(n_m, n_b * n_p, h * dh)
            w_o = p[b + "attn.W_O"].reshape(n_m, h * dh, cfg.d_model)
            x = x + _affine(z, w_o, p[b + "attn.b_O"])
            y = _layer_norm(x, p[b + "ln2.w"], p[b + "ln2.b"], cfg.eps)
            y = F.gelu(_affine(y, p[b + "mlp.W_in"], p[b + "mlp.b_in"]))
            x = x + _affine(y, p[b + "mlp.W_out"], p[b + "mlp.b_out"])
        x = _layer_norm(x, p["ln_final.w"], p["ln_final.b"], cfg.eps)
        logits = _affine(x, p["unembed.W_U"], p["unembed.b_U"])
        return logits.view(n_m, n_b, n_p, cfg.d_vocab)


class LeanView:
    """A HookedTransformer's own parameters run through the lean forward, called like the
    model: `view(tokens)` gives `[batch, pos, d_vocab]` logits, and gradients reach the
    model's parameters. One-run training uses it, so a run trained alone and the same run
    trained as an ensemble member compute the same function the same way."""

    def __init__(self, model: HookedTransformer):
        if not supports(model.cfg):
            raise ValueError("the lean forward covers the suite's own architecture only")
        self.model = model

    def __call__(self, tokens: Tensor, return_type: str = "logits") -> Tensor:
        p = {k: v.unsqueeze(0) for k, v in self.model.named_parameters()}
        return Lean(p, self.model.cfg)(tokens)[0]
