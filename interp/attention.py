"""Attention-pattern analysis.

`pattern(model, "305=303.")` gives the attention of every head on one token string:
`pattern[layer, head, query, key]` is how much the query position attends to the key
position (rows sum to 1 over the causal window). Query position t is the one that
predicts token t+1, so on "305=303." the row of `=` is where the first response digit is
chosen. Patterns come from TransformerLens's `hook_pattern` via `run_with_cache`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.data import VOCAB, encode
from interp.lens import HookedTransformer


@dataclass(frozen=True)
class Pattern:
    """Attention of every layer and head on one sequence, with its token labels."""

    text: str
    tokens: list[str]
    values: Float[Tensor, "layer head_index query_pos key_pos"]

    def __getitem__(self, idx):
        return self.values[idx]

    def frame(self, layer: int = 0, head: int = 0):
        """One head's pattern as a pandas DataFrame, rows = queries, columns = keys."""
        import pandas as pd

        labels = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        return pd.DataFrame(self.values[layer, head].numpy(), index=labels, columns=labels)


@torch.inference_mode()
def pattern(model: HookedTransformer, text: str) -> Pattern:
    """The attention pattern of every head of `model` on `text` (e.g. "305=303")."""
    toks = torch.tensor([encode(text)])
    _, cache = model.run_with_cache(toks, names_filter=lambda name: name.endswith("hook_pattern"))
    values = torch.stack([cache["pattern", l][0] for l in range(model.cfg.n_layers)])
    return Pattern(text, [VOCAB[i] for i in toks[0].tolist()], values.float())
