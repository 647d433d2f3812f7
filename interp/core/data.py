"""Tokenized preference data: one side of a train/test split, ready for models.

A split holds each distinct (prompt, response) sequence once, right-padded with the
task's pad token, with a mask that is True exactly on response tokens (EOS included);
pairs index into the sequences, so the log-probability of a sequence shared by two pairs
is computed once. Prompts and responses are the task's integer keys (`interp.core.task`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.core.task import Task

T = TypeVar("T")


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad: int, length: int | None = None
) -> Int[Tensor, "batch pos"]:
    """Right-pad token lists into a [batch, pos] LongTensor."""
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


def encode_pairs(
    task: Task, prompts: Sequence[int], responses: Sequence[int]
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """Tokens of prompt + response for each (prompt, response) key, right-padded, and the
    mask of response tokens."""
    seqs, masks = [], []
    for s, y in zip(prompts, responses, strict=True):
        p, r = task.prompt_ids(s), task.response_ids(y)
        seqs.append(p + r)
        masks.append([0] * len(p) + [1] * len(r))
    tokens = pad_sequences(seqs, task.pad)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, m in enumerate(masks):
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    return tokens, mask


def encode_prompts(task: Task, prompts: Sequence[int] | Tensor) -> Int[Tensor, "batch pos"]:
    """Tokens of prompts that all have the same length as a [batch, pos] tensor."""
    rows = [task.prompt_ids(int(s)) for s in prompts]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("encode_prompts needs prompts of one length; group them first")
    return torch.tensor(rows, dtype=torch.long)


def group_by_length(task: Task, prompts: Sequence[int]) -> dict[int, list[int]]:
    """Row indices of the prompts, grouped by the token length of each prompt."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(prompts):
        groups.setdefault(len(task.prompt_ids(int(s))), []).append(i)
    return groups


def most_common(values: Sequence[T]) -> T:
    """The most frequent value; ties go to the one seen first."""
    return max(dict.fromkeys(values), key=list(values).count)


def modal_prompts(task: Task, prompts: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
    """The prompts of the most common token length, in order (ties: the length seen
    first); inputs built from them line up position by position."""
    rows = max(group_by_length(task, prompts.tolist()).values(), key=len)
    return prompts[torch.tensor(rows)]


@dataclass(frozen=True)
class Split:
    """One side of the train/test split (see the module docstring)."""

    name: str
    task: Task
    prompts: Int[Tensor, " n_prompts"]
    seq_prompt: Int[Tensor, " n_seqs"]
    seq_response: Int[Tensor, " n_seqs"]
    chosen: Int[Tensor, " n_pairs"]  # index into the sequences
    rejected: Int[Tensor, " n_pairs"]

    @cached_property
    def _encoded(self) -> tuple[Tensor, Tensor]:
        # cached for the split's lifetime: never as inference tensors, whoever asks first
        with torch.inference_mode(False):
            return encode_pairs(self.task, self.seq_prompt.tolist(), self.seq_response.tolist())

    @property
    def tokens(self) -> Int[Tensor, "n_seqs pos"]:
        return self._encoded[0]

    @property
    def response_mask(self) -> Bool[Tensor, "n_seqs pos"]:
        return self._encoded[1]

    @property
    def n_pairs(self) -> int:
        return len(self.chosen)

    @property
    def pair_prompt(self) -> Int[Tensor, " n_pairs"]:
        return self.seq_prompt[self.chosen]

    @classmethod
    def from_triples(
        cls, name: str, task: Task, prompts: Sequence[int], triples: Sequence[tuple[int, int, int]]
    ) -> Split:
        """A split from (prompt, chosen response, rejected response) keys."""
        index: dict[tuple[int, int], int] = {}
        for s, w, l in triples:
            index.setdefault((s, w), len(index))
            index.setdefault((s, l), len(index))
        keys = list(index)
        return cls(
            name=name,
            task=task,
            prompts=torch.tensor(list(prompts), dtype=torch.long),
            seq_prompt=torch.tensor([k[0] for k in keys], dtype=torch.long),
            seq_response=torch.tensor([k[1] for k in keys], dtype=torch.long),
            chosen=torch.tensor([index[(s, w)] for s, w, _ in triples], dtype=torch.long),
            rejected=torch.tensor([index[(s, l)] for s, _, l in triples], dtype=torch.long),
        )


@dataclass(frozen=True)
class Dataset:
    task: Task
    seed: int
    train: Split
    test: Split
