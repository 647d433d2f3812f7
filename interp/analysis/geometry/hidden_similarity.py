"""CHES: centered hidden embedding similarity of a preference pair (Razin et al.).

What a whole response's log-probability does under DPO depends on the hidden states that
predict its tokens, not only on the unembedding. On the reference, for a pair (y⁺, y⁻):

    CHES = ⟨H⁺, H⁻⟩ − ‖H⁺‖²,   H± = Σ_k h(x, y±<k)

summed over the positions that predict the response's tokens (EOS included), h being the
input to the unembedding (`unembed.hook_in`: after the final LayerNorm). The
length-normalised form uses the means H±/|y±| instead. Higher CHES predicts more
likelihood displacement: a lower log π(y⁺) after training, which the Spearman of each
score against the observed change of log π(y⁺) tests (a negative value agrees).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.core.data import Split
from interp.core.stats import spearman
from interp.lens import HookedTransformer


@dataclass(frozen=True)
class ChesScores:
    """CHES of every pair, from summed and from length-normalised hidden states."""

    ches: Float[Tensor, " n_pairs"]
    ches_normalised: Float[Tensor, " n_pairs"]

    def to_json(self) -> dict[str, Any]:
        return {"ches": self.ches.tolist(), "ches_normalised": self.ches_normalised.tolist()}


@dataclass(frozen=True)
class ChesSpearman:
    """Spearman of each CHES score against the change of log π(y⁺) (None: degenerate)."""

    ches: float | None
    ches_normalised: float | None

    def to_json(self) -> dict[str, Any]:
        return {"ches": self.ches, "ches_normalised": self.ches_normalised}


@torch.inference_mode()
def sequence_hidden_sums(
    model: HookedTransformer, split: Split
) -> tuple[Float[Tensor, "n_seqs d_model"], Int[Tensor, " n_seqs"]]:
    """Σ of the unembedding inputs over the positions that predict each sequence's response
    tokens, and the response lengths."""
    predicts = torch.zeros_like(split.response_mask)
    predicts[:, :-1] = split.response_mask[:, 1:]  # position t predicts token t + 1
    sums = []
    for toks, m in zip(split.tokens.split(2048), predicts.split(2048)):
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n == "unembed.hook_in")
        sums.append((cache["unembed.hook_in"].float() * m[..., None]).sum(1))
    return torch.cat(sums), split.response_mask.sum(1)


def ches(
    h_pos: Float[Tensor, "batch d_model"], h_neg: Float[Tensor, "batch d_model"]
) -> Float[Tensor, " batch"]:
    """CHES per pair from the summed (or mean) hidden states of the two responses."""
    return (h_pos * h_neg).sum(-1) - (h_pos * h_pos).sum(-1)


def ches_scores(model: HookedTransformer, split: Split) -> ChesScores:
    sums, lens = sequence_hidden_sums(model, split)
    hp, hn = sums[split.chosen], sums[split.rejected]
    lp, ln = lens[split.chosen, None].float(), lens[split.rejected, None].float()
    return ChesScores(ches=ches(hp, hn), ches_normalised=ches(hp / lp, hn / ln))


def ches_spearman(scores: ChesScores, change: Float[Tensor, " n_pairs"]) -> ChesSpearman:
    """How well each score ranks the observed change of log π(y⁺)."""
    return ChesSpearman(spearman(scores.ches, change), spearman(scores.ches_normalised, change))
