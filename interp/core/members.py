"""The checkpoint evaluation of every member of an ensemble at once.

An ensemble (`interp.runs.ensemble`) saves thirty policies at each save point, and each
needs `interp.core.metrics.evaluate`: greedy decoding, the split's sequence
log-probabilities, kl_greedy and the exact response tree, each also scored by the
reference. One member at a time through TransformerLens, that was ~85% of a β sweep's
time. Here the same ingredients come from the lean forward (`interp.core.lean`) with the
members stacked, and the metrics are assembled by the same `interp.core.metrics.assemble`:

- **Split scoring as a prefix forest.** The split's sequences share their prompts and
  most of their response prefixes ("303." and "305." share "30"): each distinct prefix is
  run once, through a key/value cache, and a sequence's log-probability is the sum along
  its path. Members and the reference are one stack on the same (shared) tokens.
- **Greedy decoding** runs every member's prompts in one stacked forward per new token,
  each member feeding its own argmax. kl_greedy scores member e's greedy sequences with
  member e and with the reference in one stacked forward.
- **Exact enumeration** stays a tree per member (their trees differ), each level one
  forward of the member and the reference stacked together.

The reference always sits in the same stacked forward as the member it is compared with,
and a stacked product gives a member's slot exactly what it gives the same weights
alone, so a member equal to the reference (every run at step 0) gets log-ratios of
exactly 0: kl_exact 0, kl_greedy 0, Acc 0 (ties are misses), as `evaluate` gives it.
Otherwise the numbers agree with `evaluate` up to float rounding (tested), which can move
a greedy argmax or a prefix at the enumeration threshold only where two values tie to
~1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.core.data import Split, group_by_length
from interp.core.lean import Cache, Lean, Params, supports
from interp.core.metrics import assemble, evaluate
from interp.core.sampling import Responses, check_fits, cut_at_eos, enumerate_responses
from interp.core.task import Task
from interp.lens import HookedTransformer


def _stack(lean: Lean, extra: Params, repeat: int = 1) -> Lean:
    """The lean stack with `extra` (a one-member stack) appended `repeat` times."""
    p = {k: torch.cat([v, extra[k].expand(repeat, *extra[k].shape[1:])]) for k, v in lean.p.items()}
    return Lean(p, lean.cfg)


@torch.inference_mode()
def forest_logprobs(lean: Lean, split: Split) -> Float[Tensor, "member n_seqs"]:
    """log π(response | prompt) of every sequence of the split, for every member: each
    distinct prefix (prompt, then response prefixes) is run once, through a cache."""
    task = split.task
    out = torch.zeros(lean.n_members, len(split.seq_prompt))
    prompt_of = split.seq_prompt
    for plen, rows in group_by_length(task, split.prompts.tolist()).items():
        prompts = split.prompts[torch.tensor(rows)]
        seqs = torch.isin(prompt_of, prompts).nonzero().flatten()
        node = torch.searchsorted(prompts.sort().values, prompt_of[seqs])  # depth-0 node
        order = prompts.sort().indices
        toks = torch.tensor([task.prompt_ids(int(s)) for s in prompts[order]])
        resp = split.tokens[seqs, plen:]
        length = split.response_mask[seqs, plen:].sum(-1)
        cache = Cache()
        logp = lean(toks, cache)[:, :, -1].float().log_softmax(-1)  # [member, node, vocab]
        for depth in range(int(length.max())):
            live = (length > depth).nonzero().flatten()
            tok = resp[live, depth]
            out[:, seqs[live]] += logp[:, node[live], tok].cpu()
            nxt = live[length[live] > depth + 1]  # sequences that go on: their prefix is a node
            if len(nxt) == 0:
                break
            key = node[nxt] * lean.cfg.d_vocab + resp[nxt, depth]
            uniq, inverse = torch.unique(key, return_inverse=True)
            node = torch.full_like(node, -1)
            node[nxt] = inverse
            cache.select_(uniq // lean.cfg.d_vocab)
            step = (uniq % lean.cfg.d_vocab)[:, None]
            logp = lean(step, cache)[:, :, -1].float().log_softmax(-1)
    return out


@torch.inference_mode()
def greedy_members(
    lean: Lean, task: Task, prompts: Int[Tensor, " batch"], max_new_tokens: int
) -> list[Responses]:
    """`interp.core.sampling.greedy` for every member: one stacked forward per new token."""
    n_m, prompts_l = lean.n_members, [int(s) for s in prompts]
    out = torch.full((n_m, len(prompts_l), max_new_tokens), task.pad, dtype=torch.long)
    lengths = torch.zeros(n_m, len(prompts_l), dtype=torch.long)
    for plen, rows in group_by_length(task, prompts_l).items():
        check_fits(lean, plen, max_new_tokens)
        cache = Cache()
        logits = lean(torch.tensor([task.prompt_ids(prompts_l[i]) for i in rows]), cache)
        gen = []
        for i in range(max_new_tokens):
            nxt = logits[:, :, -1].float().argmax(-1).cpu()  # [member, rows]
            gen.append(nxt)
            if bool((torch.stack(gen, -1) == task.eos).any(-1).all()) or i == max_new_tokens - 1:
                break
            logits = lean(nxt[..., None], cache)
        toks, n = cut_at_eos(task, torch.stack(gen, -1).flatten(0, 1))
        idx = torch.tensor(rows)
        out[:, idx, : toks.shape[1]] = toks.view(n_m, len(rows), -1)
        lengths[:, idx] = n.view(n_m, len(rows))
    return [Responses(torch.tensor(prompts_l), out[e], lengths[e]) for e in range(n_m)]


@torch.inference_mode()
def _sequence_logprobs(
    lean: Lean, tokens: Int[Tensor, "member batch pos"], mask: Tensor
) -> Float[Tensor, "member batch"]:
    lp = lean(tokens)[:, :, :-1].float().log_softmax(-1)
    lp = lp.gather(-1, tokens[:, :, 1:, None].to(lp.device)).squeeze(-1).cpu()
    return torch.where(mask[:, :, 1:], lp, torch.zeros_like(lp)).sum(-1)


def evaluate_members(
    members: Lean,
    ref: Lean,
    split: Split,
    betas: Sequence[float | None],
    exact_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """`interp.core.metrics.evaluate(member, split, ref, β, exact_threshold=…)` for every
    member of the stack (`betas`: one per member), member-batched; `ref` is a one-member
    stack of the reference."""
    task, n_m = split.task, members.n_members
    scored = forest_logprobs(_stack(members, ref.p), split)  # members, then the reference
    responses = greedy_members(members, task, split.prompts, task.max_new_tokens)
    seqs = [r.sequences(task) for r in responses]
    width = max(t.shape[1] for t, _ in seqs)
    toks = torch.full((n_m, len(split.prompts), width), task.pad, dtype=torch.long)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for e, (t, m) in enumerate(seqs):
        toks[e, :, : t.shape[1]], mask[e, :, : m.shape[1]] = t, m
    both = _sequence_logprobs(
        _stack(members, ref.p, n_m), toks.repeat(2, 1, 1), mask.repeat(2, 1, 1)
    )
    out = []
    for e in range(n_m):
        tree = None
        if exact_threshold is not None and task.enumerable:
            pair = Lean(
                {k: torch.stack([v[e], ref.p[k][0]]) for k, v in members.p.items()}, members.cfg
            )
            tree = enumerate_responses(
                pair, task, split.prompts, task.max_new_tokens, exact_threshold
            )
        out.append(
            assemble(
                split,
                responses[e],
                scored[e],
                both[e] - both[n_m + e],
                scored[n_m],
                betas[e],
                tree,
                enumerable=exact_threshold is None or task.enumerable,
            )
        )
    return out


def evaluate_many(
    models: Sequence[HookedTransformer],
    split: Split,
    ref: HookedTransformer,
    beta: float | None,
    exact_threshold: float | None = None,
    chunk: int = 32,
) -> list[dict[str, Any]]:
    """`evaluate(model, split, ref, beta, exact_threshold=…)` of each model: member-batched,
    `chunk` at a time, when every model and the reference have the lean forward's
    architecture; else one at a time through TransformerLens."""
    if not models:
        return []
    if not all(supports(m.cfg) for m in [ref, *models]):
        return [evaluate(m, split, ref, beta, exact_threshold=exact_threshold) for m in models]
    ref_lean = Lean.of([ref])
    out: list[dict[str, Any]] = []
    for i in range(0, len(models), chunk):
        part = models[i : i + chunk]
        out += evaluate_members(Lean.of(part), ref_lean, split, [beta] * len(part), exact_threshold)
    return out
