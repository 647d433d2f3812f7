"""Unembedding geometry of the response tokens, and the single-token prediction.

W_U is TransformerLens's raw [d_model, d_vocab] unembedding: no LayerNorm folding, no
centering (checkpoints store raw weights for this reason); W_z = W_U[:, z]. The tokens
studied are the task's response tokens (`task.response_tokens`; on the number line the
digits 0-9 and EOS).

The gradient of the margin log π(y⁺) − log π(y⁻) with respect to the hidden state h that
predicts the token is W_{y⁺} − W_{y⁻} (the softmax normalisers cancel), so a step that
raises the margin moves h along it, and the logit of every token z by about
⟨W_z, W_{y⁺} − W_{y⁻}⟩; y⁺ itself gains ‖W_{y⁺}‖² − ⟨W_{y⁺}, W_{y⁻}⟩, little or nothing when
the two unembeddings are alike. For a pair whose responses first differ at token k (shared
prefix y<k, tokens y⁺_k ≠ y⁻_k) this module computes ⟨W_{y⁺_k}, W_{y⁻_k}⟩ and, for every
other response token z, the predicted direction ⟨W_z, W_{y⁺_k} − W_{y⁻_k}⟩ of its
log-probability change, set against the observed change
log π(z | x, y<k) − log π_ref(z | x, y<k). W is the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.core.data import Split
from interp.core.stats import pearson, spearman
from interp.lens import HookedTransformer


@dataclass(frozen=True)
class Gram:
    """Norms, inner products and cosines of a set of unembedding vectors."""

    norm: Float[Tensor, " n_tokens"]
    inner: Float[Tensor, "n_tokens n_tokens"]
    cosine: Float[Tensor, "n_tokens n_tokens"]

    def to_json(self) -> dict[str, Any]:
        return {
            "norm": self.norm.tolist(),
            "inner": self.inner.tolist(),
            "cosine": self.cosine.tolist(),
        }


def unembedding(
    model: HookedTransformer, tokens: Sequence[int]
) -> Float[Tensor, "n_tokens d_model"]:
    """Raw unembedding vectors of `tokens`, one row per token."""
    return model.W_U[:, list(tokens)].T.detach().float().cpu()


def gram(W: Float[Tensor, "n_tokens d_model"]) -> Gram:
    n = W.norm(dim=1)
    inner = W @ W.T
    return Gram(norm=n, inner=inner, cosine=inner / (n[:, None] * n[None, :]))


@dataclass(frozen=True)
class TokenChanges:
    """How one trained model moved the next-token log-probabilities at the first
    difference of each pair, against the reference."""

    observed: Float[Tensor, "n_pairs n_tokens"]  # log π(z | ·) − log π_ref(z | ·)
    spearman_others: float | None  # predicted vs observed, tokens other than y⁺_k, y⁻_k
    pearson_others: float | None
    preferred_change: Float[Tensor, " n_pairs"]  # observed change of y⁺_k itself
    spearman_inner_vs_preferred: float | None  # ⟨W_y⁺, W_y⁻⟩ vs that change

    def to_json(self) -> dict[str, Any]:
        return {
            "observed": self.observed.tolist(),
            "spearman_others": self.spearman_others,
            "pearson_others": self.pearson_others,
            "preferred_change": self.preferred_change.tolist(),
            "spearman_inner_vs_preferred": self.spearman_inner_vs_preferred,
        }


@dataclass(frozen=True)
class SingleToken:
    """Single-token geometry of every training pair (see the module docstring)."""

    inner_pos_neg: Float[Tensor, " n_pairs"]  # ⟨W_y⁺_k, W_y⁻_k⟩
    k: Int[Tensor, " n_pairs"]  # index of the first differing token in the response
    predicted: Float[Tensor, "n_pairs n_tokens"]  # ⟨W_z, W_y⁺_k − W_y⁻_k⟩
    others: Bool[Tensor, "n_pairs n_tokens"]  # z is neither y⁺_k nor y⁻_k
    changes: dict[str, TokenChanges]  # "A" / "B"

    def to_json(self) -> dict[str, Any]:
        return {
            "inner_pos_neg": self.inner_pos_neg.tolist(),
            "k": self.k.tolist(),
            "predicted": self.predicted.tolist(),
            "others": self.others.tolist(),
        } | {who: c.to_json() for who, c in self.changes.items()}


def first_difference(
    split: Split,
) -> tuple[
    Int[Tensor, " n_pairs"],
    Int[Tensor, " n_pairs"],
    Int[Tensor, " n_pairs"],
    Int[Tensor, " n_pairs"],
]:
    """For every pair: the position (in the sequence) predicting the first differing
    response token, that position's index k within the response, and the two tokens."""
    w, l = split.tokens[split.chosen], split.tokens[split.rejected]
    resp = split.response_mask[split.chosen]
    differ = (w != l) & resp
    pos = differ.float().argmax(1)  # first differing token (sequence position)
    start = resp.float().argmax(1)
    rows = torch.arange(len(w))
    return pos - 1, pos - start, w[rows, pos], l[rows, pos]


def geometry_tokens(split: Split) -> tuple[int, ...]:
    """The tokens the geometry is measured over: every response token of an enumerable
    (small) vocabulary; for a large one (a BPE tokenizer's tens of thousands, whose Gram
    matrix alone would not fit), the tokens that occur in the split's responses."""
    task = split.task
    if task.enumerable:
        return tuple(task.response_tokens)
    return tuple(sorted(set(split.tokens[split.response_mask].tolist())))


@torch.inference_mode()
def next_token_logprobs(
    model: HookedTransformer, split: Split, query: Int[Tensor, " n_pairs"]
) -> Float[Tensor, "n_pairs n_tokens"]:
    """log π(· | prefix) at each pair's query position, over the response tokens."""
    toks = split.tokens[split.chosen]
    tokens = list(geometry_tokens(split))
    out = []
    for t, q in zip(toks.split(2048), query.split(2048)):
        logits = model(t)[torch.arange(len(t)), q].float().log_softmax(-1).cpu()
        out.append(logits[:, tokens])
    return torch.cat(out)


def single_token(
    ref: HookedTransformer, models: dict[str, HookedTransformer], split: Split
) -> SingleToken:
    """Predicted vs observed changes of the other tokens' log-probabilities (see docstring)."""
    query, k, tok_w, tok_l = first_difference(split)
    tokens = geometry_tokens(split)
    W = unembedding(ref, tokens)
    idx = {t: i for i, t in enumerate(tokens)}
    iw = torch.tensor([idx[int(t)] for t in tok_w])
    il = torch.tensor([idx[int(t)] for t in tok_l])
    rows = torch.arange(len(iw))
    inner = (W[iw] * W[il]).sum(-1)
    predicted = (W @ (W[iw] - W[il]).T).T  # [pair, token]
    others = torch.ones_like(predicted, dtype=torch.bool)
    others[rows, iw] = False
    others[rows, il] = False
    base = next_token_logprobs(ref, split, query)
    changes = {}
    for who, m in models.items():
        obs = next_token_logprobs(m, split, query) - base
        preferred = obs[rows, iw]
        changes[who] = TokenChanges(
            observed=obs,
            spearman_others=spearman(predicted[others], obs[others]),
            pearson_others=pearson(predicted[others], obs[others]),
            preferred_change=preferred,
            spearman_inner_vs_preferred=spearman(inner, preferred),
        )
    return SingleToken(
        inner_pos_neg=inner, k=k, predicted=predicted, others=others, changes=changes
    )
