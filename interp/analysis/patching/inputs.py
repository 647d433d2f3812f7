"""Inputs for activation patching: which prompts, and which tokens after them.

A patch replaces the activation at one (site, position), so the two runs it connects must
line up position by position: every batch here holds prompts of one token length
(`interp.core.data.modal_prompts`) followed by answers of one length. The answers are
teacher-forced — fed as input rather than generated — with a final EOS dropped, since
the model never reads past it. The test prompts are sorted, so at most n of them are
taken evenly spread over the range (`spread`), not the first n.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from interp.core.data import most_common
from interp.core.task import Task


def spread(items: Sequence[int], n: int) -> list[int]:
    """At most n of the items, evenly spaced (the test prompts are sorted: taking the
    first n would favour the small ones)."""
    items = list(items)
    if len(items) <= n:
        return items
    if n == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def without_eos(task: Task, ids: Sequence[int]) -> list[int]:
    """A response's tokens with a final EOS dropped (for teacher forcing)."""
    ids = list(ids)
    return ids[:-1] if ids and ids[-1] == task.eos else ids


def probe_tokens(task: Task, prompts: Int[Tensor, " batch"]) -> Int[Tensor, "batch pos"]:
    """Prompts (of one length) followed by their teacher-forced answers without EOS, where
    the task knows them: inputs for the engine checks (the rows of the most common length,
    when the answers differ in length)."""
    rows = []
    for s in prompts.tolist():
        answer = task.teacher_response(s)
        forced = [] if answer is None else without_eos(task, task.response_ids(answer))
        rows.append(task.prompt_ids(s) + forced)
    lengths = [len(r) for r in rows]
    common = most_common(lengths)
    return torch.tensor([r for r in rows if len(r) == common])
