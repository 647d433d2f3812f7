"""The checkpoint evaluation of every member of an ensemble at once.

An ensemble (`interp.runs.ensemble`) saves thirty policies at each save point, and each
needs `interp.core.metrics.evaluate`: greedy decoding, the split's sequence
log-probabilities, kl_greedy and the exact response tree, each also scored by the
reference. One member at a time through TransformerLens, that was ~85% of a β sweep's
time. Here the same ingredients come from the lean forward (`interp.core.lean`) with the
members stacked, and the metrics are assembled by the same `interp.core.metrics.assemble`:

- **Split scoring as a prefix forest.** The split's sequences share their prompts and
  most of their response prefixes ("303." and "305." share "30"): the next-token
  distribution after each distinct prefix is computed once, and a sequence's
  log-probability is the sum along its path. Members and the reference are one stack on
  the same (shared) tokens.
- **Greedy decoding** runs every member's prompts in one stacked forward per new token,
  each member feeding its own argmax. kl_greedy scores member e's greedy sequences with
  member e and with the reference in one stacked forward.
- **Exact enumeration** grows a tree per member (their trees differ) but every level is
  one padded forward of all members, and the reference scores the *union* of the
  members' prefixes once (the trees of thirty β overlap in most of their prefixes).

In split scoring and greedy decoding the reference sits in the same stacked forward as
the member it is compared with, and a stacked product gives a member's slot exactly what
it gives the same weights alone; in enumeration a member whose weights equal the
reference's is its own reference. So a member equal to the reference (every run at step
0) gets log-ratios of exactly 0: kl_exact 0, kl_greedy 0, Acc 0 (ties are misses), as
`evaluate` gives it.
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
from interp.core.lean import Lean, Params, supports
from interp.core.metrics import assemble, evaluate
from interp.core.sampling import (
    MAX_FRONTIER,
    Level,
    Responses,
    ResponseTree,
    _Growth,
    check_fits,
    cut_at_eos,
)
from interp.core.task import Task
from interp.lens import HookedTransformer


def _stack(lean: Lean, extra: Params, repeat: int = 1) -> Lean:
    """The lean stack with `extra` (a one-member stack) appended `repeat` times."""
    p = {k: torch.cat([v, extra[k].expand(repeat, *extra[k].shape[1:])]) for k, v in lean.p.items()}
    return Lean(p, lean.cfg)


@torch.inference_mode()
def forest_logprobs(lean: Lean, split: Split) -> Float[Tensor, "member n_seqs"]:
    """log π(response | prompt) of every sequence of the split, for every member: the
    next-token distribution after each distinct prefix (the prompt, then each response
    prefix) is computed once, and a sequence sums along its path."""
    task = split.task
    out = torch.zeros(lean.n_members, len(split.seq_prompt))
    for plen, rows in group_by_length(task, split.prompts.tolist()).items():
        prompts = split.prompts[torch.tensor(rows)].sort().values
        seqs = torch.isin(split.seq_prompt, prompts).nonzero().flatten()
        node = torch.searchsorted(prompts, split.seq_prompt[seqs])  # row of the prefix so far
        prefixes = torch.tensor([task.prompt_ids(int(s)) for s in prompts])
        resp = split.tokens[seqs, plen:]
        length = split.response_mask[seqs, plen:].sum(-1)
        for depth in range(int(length.max())):
            logp = lean.last(prefixes).float().log_softmax(-1).cpu()  # [member, node, vocab]
            live = (length > depth).nonzero().flatten()
            out[:, seqs[live]] += logp[:, node[live], resp[live, depth]]
            nxt = live[length[live] > depth + 1]  # sequences that go on: a longer prefix
            if len(nxt) == 0:
                break
            key = node[nxt] * lean.cfg.d_vocab + resp[nxt, depth]
            uniq, node[nxt] = torch.unique(key, return_inverse=True)
            parent, tok = uniq // lean.cfg.d_vocab, uniq % lean.cfg.d_vocab
            prefixes = torch.cat([prefixes[parent], tok[:, None]], dim=1)
    return out


@torch.inference_mode()
def greedy_members(
    lean: Lean,
    task: Task,
    prompts: Int[Tensor, " batch"],
    max_new_tokens: int,
    ref: Lean | None = None,
) -> tuple[list[Responses], Float[Tensor, "member batch"] | None]:
    """`interp.core.sampling.greedy` for every member, one stacked forward per new token;
    with a reference (a one-member stack), also log π(y) − log π_ref(y) of each member's
    greedy response y, the reference scoring it beside the member in the same forward."""
    n_m, prompts_l = lean.n_members, [int(s) for s in prompts]
    both = lean if ref is None else _stack(lean, ref.p, n_m)  # member e's twin: slot n_m + e
    out = torch.full((n_m, len(prompts_l), max_new_tokens), task.pad, dtype=torch.long)
    lengths = torch.zeros(n_m, len(prompts_l), dtype=torch.long)
    path = torch.zeros(both.n_members, len(prompts_l))  # log-prob of the response so far
    for plen, rows in group_by_length(task, prompts_l).items():
        check_fits(lean, plen, max_new_tokens)
        idx = torch.tensor(rows)
        toks = torch.tensor([task.prompt_ids(prompts_l[i]) for i in rows]).expand(n_m, -1, -1)
        going = torch.ones(n_m, len(rows), dtype=torch.bool)
        for _ in range(max_new_tokens):
            twin = toks if ref is None else toks.repeat(2, 1, 1)
            logp = both.last(twin).float().log_softmax(-1).cpu()  # [slot, rows, vocab]
            nxt = logp[:n_m].argmax(-1)
            step = logp.gather(-1, nxt.repeat(both.n_members // n_m, 1)[..., None]).squeeze(-1)
            path[:, idx] += torch.where(going.repeat(both.n_members // n_m, 1), step, 0.0)
            toks = torch.cat([toks, nxt[..., None]], dim=-1)
            going &= nxt != task.eos
            if not bool(going.any()):
                break
        gen, n = cut_at_eos(task, toks[..., plen:].flatten(0, 1))
        out[:, idx, : gen.shape[1]] = gen.view(n_m, len(rows), -1)
        lengths[:, idx] = n.view(n_m, len(rows))
    responses = [Responses(torch.tensor(prompts_l), out[e], lengths[e]) for e in range(n_m)]
    return responses, None if ref is None else path[:n_m] - path[n_m:]


def _first_of_each(keys: Int[Tensor, " rows"]) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct keys, the row where each first occurs, and each row's distinct key."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(uniq),), len(keys), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(keys)), "amin")
    return uniq, first, inverse


def _padded(rows: list[Tensor]) -> Int[Tensor, "member batch pos"]:
    """Members' token rows in one block, each padded by repeating its first row (a real
    prefix, so the padding computes nothing undefined; its logits are dropped)."""
    n = max(len(r) for r in rows)
    return torch.stack([torch.cat([r, r[:1].expand(n - len(r), -1)]) for r in rows])


@torch.inference_mode()
def enumerate_members(
    members: Lean,
    ref: Lean,
    task: Task,
    prompts: Int[Tensor, " batch"],
    max_new_tokens: int,
    threshold: float,
    max_frontier: int = MAX_FRONTIER,
) -> list[ResponseTree]:
    """`enumerate_responses(member, …, score_with=[ref])` for every member: each member
    grows its own tree by the same rule (`sampling._Growth`), each level is one padded
    forward of all members, and the reference scores the distinct prefixes of all the
    trees at once. A member with the reference's weights is scored by itself."""
    n_m = members.n_members
    same = [all(torch.equal(v[e], ref.p[k][0]) for k, v in members.p.items()) for e in range(n_m)]
    prompts_l = [int(s) for s in prompts]
    grows = [
        _Growth(task, max_new_tokens, threshold, max_frontier, len(prompts_l)) for _ in range(n_m)
    ]

    def steps(toks: list[Tensor]) -> list[Tensor | None]:
        """Next-token log-probs [rows, vocab, 2] (member, reference) of each member's rows
        (None for a member whose tree is complete)."""
        live = [e for e in range(n_m) if len(toks[e])]
        mine = members.last(
            _padded([toks[e] if len(toks[e]) else toks[live[0]] for e in range(n_m)])
        )
        mine = mine.float().log_softmax(-1).cpu()
        every = torch.cat([toks[e] for e in live])
        # a row's key: its tokens as digits base d_vocab (≤ n_ctx digits fit in int64)
        digits = members.cfg.d_vocab ** torch.arange(every.shape[1] - 1, -1, -1)
        _, first, inverse = _first_of_each(every @ digits)
        theirs = (
            ref.last(every[first])[0]
            .float()
            .log_softmax(-1)
            .cpu()[inverse]
            .split([len(toks[e]) for e in live])
        )
        out: list[Tensor | None] = [None] * n_m
        for e, t in zip(live, theirs):
            m = mine[e, : len(toks[e])]
            out[e] = torch.stack([m, m if same[e] else t], dim=-1)
        return out

    for plen, rows in group_by_length(task, prompts_l).items():
        check_fits(members, plen, max_new_tokens)
        start = torch.tensor([task.prompt_ids(prompts_l[i]) for i in rows])
        toks = [start] * n_m
        levels: list[Level | None] = [_Growth.roots(torch.tensor(rows), 2) for _ in range(n_m)]
        for depth in range(max_new_tokens):
            step = steps(toks)
            for e in range(n_m):
                lv = levels[e]
                se = step[e]
                kept = None if lv is None or se is None else grows[e].expand(lv, se, depth)
                if kept is None:
                    levels[e], toks[e] = None, toks[e][:0]
                else:
                    levels[e], (f, v) = kept
                    toks[e] = torch.cat([toks[e][f], v[:, None]], dim=1)
            if all(lv is None for lv in levels):
                break
    return [g.tree(torch.tensor(prompts_l)) for g in grows]


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
    responses, ratio = greedy_members(members, task, split.prompts, task.max_new_tokens, ref)
    assert ratio is not None
    trees: list[ResponseTree | None] = [None] * n_m
    if exact_threshold is not None and task.enumerable:
        trees = list(
            enumerate_members(
                members, ref, task, split.prompts, task.max_new_tokens, exact_threshold
            )
        )
    out = []
    for e, tree in enumerate(trees):
        out.append(
            assemble(
                split,
                responses[e],
                scored[e],
                ratio[e],
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
