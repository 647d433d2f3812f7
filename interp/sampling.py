"""Decoding: greedy and temperature sampling, batched over prompts.

A response is the run of generated tokens up to and including the first EOS, or the
first `max_new_tokens` tokens if no EOS comes. Prompts of different lengths are decoded
in separate batches (one per length), so no prompt is ever padded: positions, and hence
positional embeddings, are exactly those of an unbatched run. There is no KV cache: the
sequences are at most `n_ctx` = 10 tokens, so recomputing them costs less than the
bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.data import EOS, PAD, parse_response, prompt_ids
from interp.data import decode as detokenize
from interp.lens import HookedTransformer


@dataclass(frozen=True)
class Responses:
    """Generated responses, one row per prompt (prompts may repeat, e.g. for samples)."""

    prompts: Int[Tensor, " batch"]  # the integer s of each prompt
    tokens: Int[Tensor, "batch max_new"]  # response tokens, PAD after the response ends
    lengths: Int[Tensor, " batch"]  # tokens in the response, EOS included

    @property
    def values(self) -> list[int | None]:
        """The integer each response denotes, None where it does not parse."""
        return [parse_response(t[:n]) for t, n in zip(self.tokens, self.lengths.tolist())]

    def sequences(self) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Prompt + response tokens, right-padded, and the response mask (for scoring)."""
        rows = [prompt_ids(int(s)) for s in self.prompts]
        width = max(len(r) for r in rows) + self.tokens.shape[1]
        toks = torch.full((len(rows), width), PAD, dtype=torch.long)
        mask = torch.zeros_like(toks, dtype=torch.bool)
        for i, (p, n) in enumerate(zip(rows, self.lengths.tolist())):
            toks[i, : len(p)] = torch.tensor(p)
            toks[i, len(p) : len(p) + n] = self.tokens[i, :n]
            mask[i, len(p) : len(p) + n] = True
        return toks, mask

    def text(self, i: int) -> str:
        """Response i as a string, e.g. "303." ("" for an empty one)."""
        return detokenize(self.tokens[i, : int(self.lengths[i])])


def group_by_length(prompts: Sequence[int]) -> dict[int, list[int]]:
    """Row indices of the prompts, grouped by the token length of each prompt."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(prompts):
        groups.setdefault(len(prompt_ids(int(s))), []).append(i)
    return groups


def _finish(generated: Tensor) -> tuple[Tensor, Tensor]:
    """Cut generated tokens after the first EOS: (tokens with PAD after the end, lengths)."""
    is_eos = generated == EOS
    has_eos = is_eos.any(-1)
    first = is_eos.float().argmax(-1)
    lengths = torch.where(has_eos, first + 1, torch.full_like(first, generated.shape[1]))
    keep = torch.arange(generated.shape[1])[None, :] < lengths[:, None]
    return torch.where(keep, generated, torch.full_like(generated, PAD)), lengths


@torch.inference_mode()
def decode(
    model: HookedTransformer,
    prompts: Sequence[int] | Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> Responses:
    """Greedy (temperature 0) or temperature-sampled responses, batched by prompt length."""
    prompts = [int(s) for s in prompts]
    out = torch.full((len(prompts), max_new_tokens), PAD, dtype=torch.long)
    lengths = torch.zeros(len(prompts), dtype=torch.long)
    for plen, rows in group_by_length(prompts).items():
        if plen + max_new_tokens - 1 > model.cfg.n_ctx:
            raise ValueError(
                f"prompt of {plen} tokens + {max_new_tokens} new tokens "
                f"exceeds n_ctx {model.cfg.n_ctx}"
            )
        toks = torch.tensor([prompt_ids(prompts[i]) for i in rows])
        done = torch.zeros(len(rows), dtype=torch.bool)
        for _ in range(max_new_tokens):
            logits = model(toks, return_type="logits")[:, -1].float()
            if temperature == 0.0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            toks = torch.cat([toks, nxt[:, None]], dim=1)
            done |= nxt == EOS
            if bool(done.all()):
                break
        gen, n = _finish(toks[:, plen:])
        idx = torch.tensor(rows)
        out[idx, : gen.shape[1]] = gen
        lengths[idx] = n
    return Responses(torch.tensor(prompts), out, lengths)


def greedy(
    model: HookedTransformer, prompts: Sequence[int] | Tensor, max_new_tokens: int
) -> Responses:
    return decode(model, prompts, max_new_tokens)


def sample(
    model: HookedTransformer,
    prompts: Sequence[int] | Tensor,
    max_new_tokens: int,
    n_samples: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> Responses:
    """`n_samples` responses per prompt (rows grouped prompt by prompt)."""
    g = torch.Generator().manual_seed(seed)
    rep = [int(s) for s in prompts for _ in range(n_samples)]
    return decode(model, rep, max_new_tokens, temperature=temperature, generator=g)
