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
- `Lean.last` gives only each row's last-position logits, which is all that decoding,
  scoring and enumeration need. For a one-layer model it needs no key/value cache: a
  position's query, key and value depend on nothing but its token and position, so they
  are tables over every (token, position) pair, and a row costs a gather, a softmax over
  its own positions and the MLP of one vector. Prefixes are never cached or copied,
  which is what made tree enumeration memory-bound.

It covers exactly the architecture the suite builds (`interp.core.model`: pre-LayerNorm,
GeLU MLP, learned absolute positions, any depth and width); `supports` says whether a
config is one, and callers fall back to the HookedTransformer for anything else (a
converted Hugging Face folder, say). The LayerNorm is TransformerLens's to the operation
(centre, divide by √(mean square + eps), scale and shift), attention is causal and
divided by √d_head, so the logits agree with `HookedTransformer.forward` up to float
rounding (tested to 1e-5 on random models, the tables included).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.lens import HookedTransformer, HookedTransformerConfig

Params = dict[str, Tensor]  # TransformerLens parameter names → [member, *shape]
ROWS_PER_CHUNK = 8192  # member × row pairs per table-path chunk (measured: larger spills)


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


def _layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """TransformerLens's LayerNorm (centre, divide by √(mean square + eps), scale, shift) with
    each member's own w, b [member, d] over x [member, rows, d]; the normalisation is
    torch's fused kernel, the same formula."""
    return torch.addcmul(b[:, None], F.layer_norm(x, x.shape[-1:], eps=eps), w[:, None])


def _affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x [member, rows, in] @ w [member, in, out] + b [member, out]."""
    return torch.baddbmm(b[:, None], x, w)


class Lean:
    """The forward pass of stacked models of one (supported) architecture.

    `Lean(params, cfg)(tokens)` gives `[member, batch, pos, d_vocab]` logits (differentiable:
    the ensemble trains through it); `.last(tokens)` only the last position's."""

    def __init__(self, params: Params, cfg: HookedTransformerConfig):
        if not supports(cfg):
            raise ValueError("the lean forward covers the suite's own architecture only")
        self.p, self.cfg = params, cfg
        self._one_layer: _OneLayer | None = None

    @classmethod
    def of(cls, models: Sequence[HookedTransformer]) -> Lean:
        """The models stacked, in order, as members (detached copies of their weights)."""
        return cls(stack_params(models), models[0].cfg)

    @property
    def n_members(self) -> int:
        return self.p["embed.W_E"].shape[0]

    def __call__(
        self, tokens: Int[Tensor, "batch pos"] | Int[Tensor, "member batch pos"]
    ) -> Float[Tensor, "member batch pos d_vocab"]:
        p, cfg = self.p, self.cfg
        n_m, h, dh = self.n_members, cfg.n_heads, cfg.d_head
        tokens = self._check(tokens)
        n_b, n_p = tokens.shape[-2:]
        x = self._embed(tokens) + p["pos_embed.W_pos"][:, None, :n_p]
        x = x.reshape(n_m, n_b * n_p, cfg.d_model)
        causal = torch.ones(n_p, n_p, dtype=torch.bool, device=x.device).tril()
        for layer in range(cfg.n_layers):
            b = f"blocks.{layer}."
            y = _layer_norm(x, p[b + "ln1.w"], p[b + "ln1.b"], cfg.eps)
            w_qkv = torch.cat([p[b + f"attn.W_{c}"] for c in "QKV"], dim=1)  # [m, 3h, d, dh]
            w_qkv = w_qkv.permute(0, 2, 1, 3).reshape(n_m, cfg.d_model, 3 * h * dh)
            b_qkv = torch.cat([p[b + f"attn.b_{c}"] for c in "QKV"], dim=1).reshape(n_m, -1)
            qkv = _affine(y, w_qkv, b_qkv).view(n_m, n_b, n_p, 3, h, dh)
            q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each [m, batch, h, pos, dh]
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

    def _check(self, tokens: Tensor) -> Tensor:
        if tokens.shape[-1] > self.cfg.n_ctx:
            raise ValueError(f"{tokens.shape[-1]} positions exceed n_ctx {self.cfg.n_ctx}")
        return tokens.to(self.p["embed.W_E"].device)

    def _embed(self, tokens: Tensor) -> Tensor:
        """W_E rows of shared ([batch, pos]) or per-member ([member, batch, pos]) tokens."""
        w_e = self.p["embed.W_E"]
        if tokens.dim() == 2:
            return w_e[:, tokens]
        return w_e[torch.arange(self.n_members, device=tokens.device)[:, None, None], tokens]

    def last(
        self, tokens: Int[Tensor, "batch pos"] | Int[Tensor, "member batch pos"]
    ) -> Float[Tensor, "member batch d_vocab"]:
        """The logits at each row's last position (what decoding, scoring and enumeration
        need). One layer deep, a position's query, key and value depend only on its token
        and position, so they come from tables of every (token, position) pair and no
        row's prefix is recomputed or cached (`_OneLayer`); deeper models run whole."""
        if self.cfg.n_layers != 1:
            return self(tokens)[:, :, -1]
        if self._one_layer is None:
            self._one_layer = _OneLayer(self)
        return self._one_layer.last(self._check(tokens))


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


class _OneLayer:
    """Tables of a one-layer stack: for every (token, position) pair its residual stream
    (W_E + W_pos), its attention scores against every other pair (q·k / √d_head) and its
    value; a row's last-position logits are then a gather, a softmax over the row's
    positions, one product with the values, and the MLP and unembedding of one vector."""

    def __init__(self, lean: Lean):
        p, cfg = lean.p, lean.cfg
        n_m, n_ctx = lean.n_members, cfg.n_ctx
        self.lean, self.n_ctx, self.n_keys = lean, n_ctx, cfg.d_vocab * n_ctx
        # pair (token t, position i) is row t * n_ctx + i
        resid = p["embed.W_E"][:, :, None] + p["pos_embed.W_pos"][:, None]  # [m, vocab, ctx, d]
        self.resid = resid.reshape(n_m, self.n_keys, cfg.d_model)
        y = _layer_norm(self.resid, p["blocks.0.ln1.w"], p["blocks.0.ln1.b"], cfg.eps)
        q, k, v = (
            torch.einsum("mkd,mhde->mhke", y, p[f"blocks.0.attn.W_{c}"])
            + p[f"blocks.0.attn.b_{c}"][:, :, None]
            for c in "QKV"
        )  # each [m, h, pair, dh]
        self.scores = (q @ k.transpose(-1, -2)) / cfg.attn_scale  # [m, h, query pair, key pair]
        self.values = v

    def last(self, tokens: Tensor) -> Tensor:
        n_m = self.lean.n_members
        pairs = tokens * self.n_ctx + torch.arange(tokens.shape[-1], device=tokens.device)
        if pairs.dim() == 2:
            pairs = pairs.expand(n_m, *pairs.shape)
        step = max(1, ROWS_PER_CHUNK // n_m)  # rows at a time: the temporaries stay in cache
        return torch.cat([self._last(c) for c in pairs.split(step, dim=1)], dim=1)

    def _last(self, pairs: Tensor) -> Tensor:
        lean, p, cfg = self.lean, self.lean.p, self.lean.cfg
        n_m, h, n_b = lean.n_members, cfg.n_heads, pairs.shape[1]
        members = torch.arange(n_m, device=pairs.device)[:, None, None, None]
        heads = torch.arange(h, device=pairs.device)[None, :, None, None]
        # scores[m, h, query = the row's last pair, key = each of the row's pairs]
        pattern = self.scores[members, heads, pairs[:, None, :, -1:], pairs[:, None]].softmax(-1)
        weights = torch.zeros(n_m, h, n_b, self.n_keys, dtype=pattern.dtype, device=pairs.device)
        weights.scatter_(-1, pairs[:, None].expand(-1, h, -1, -1), pattern)
        z = (weights @ self.values).permute(0, 2, 1, 3).reshape(n_m, n_b, h * cfg.d_head)
        w_o = p["blocks.0.attn.W_O"].reshape(n_m, h * cfg.d_head, cfg.d_model)
        x = torch.gather(self.resid, 1, pairs[:, :, -1:].expand(-1, -1, cfg.d_model))
        x = x + _affine(z, w_o, p["blocks.0.attn.b_O"])
        y = _layer_norm(x, p["blocks.0.ln2.w"], p["blocks.0.ln2.b"], cfg.eps)
        y = F.gelu(_affine(y, p["blocks.0.mlp.W_in"], p["blocks.0.mlp.b_in"]))
        x = x + _affine(y, p["blocks.0.mlp.W_out"], p["blocks.0.mlp.b_out"])
        x = _layer_norm(x, p["ln_final.w"], p["ln_final.b"], cfg.eps)
        return _affine(x, p["unembed.W_U"], p["unembed.b_U"])
