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
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.core.data import group_by_length
from interp.core.lean import Lean
from interp.core.task import Task
from interp.lens import HookedTransformer, forward_cached, new_kv_cache, select_kv_rows_


@dataclass(frozen=True)
class Responses:
    """Generated responses, one row per prompt (prompts may repeat, e.g. for samples)."""

    prompts: Int[Tensor, " batch"]  # the integer s of each prompt
    tokens: Int[Tensor, "batch max_new"]  # response tokens, PAD after the response ends
    lengths: Int[Tensor, " batch"]  # tokens in the response, EOS included

    def sequences(self, task: Task) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Prompt + response tokens, right-padded, and the response mask (for scoring)."""
        rows = [task.prompt_ids(int(s)) for s in self.prompts]
        width = max(len(r) for r in rows) + self.tokens.shape[1]
        toks = torch.full((len(rows), width), task.pad, dtype=torch.long)
        mask = torch.zeros_like(toks, dtype=torch.bool)
        for i, (p, n) in enumerate(zip(rows, self.lengths.tolist())):
            toks[i, : len(p)] = torch.tensor(p)
            toks[i, len(p) : len(p) + n] = self.tokens[i, :n]
            mask[i, len(p) : len(p) + n] = True
        return toks, mask

    def text(self, task: Task, i: int) -> str:
        """Response i as a string, e.g. "303."; a generated pad token shows as <pad>."""
        return task.token_text(self.tokens[i, : int(self.lengths[i])])


def check_fits(model: HookedTransformer | Lean, prompt_len: int, max_new_tokens: int) -> None:
    """Prompt plus a full-length response must fit the context: decoding, enumeration and
    scoring (which feeds the whole sequence) all rely on it."""
    if prompt_len + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(
            f"a prompt of {prompt_len} tokens + {max_new_tokens} response tokens exceeds "
            f"n_ctx {model.cfg.n_ctx}"
        )


def cut_at_eos(
    task: Task, generated: Int[Tensor, "batch max_new"]
) -> tuple[Int[Tensor, "batch max_new"], Int[Tensor, " batch"]]:
    """Cut generated tokens after the first EOS: (tokens with PAD after the end, lengths)."""
    is_eos = generated == task.eos
    has_eos = is_eos.any(-1)
    first = is_eos.float().argmax(-1)
    lengths = torch.where(has_eos, first + 1, torch.full_like(first, generated.shape[1]))
    keep = torch.arange(generated.shape[1])[None, :] < lengths[:, None]
    return torch.where(keep, generated, torch.full_like(generated, task.pad)), lengths


@torch.inference_mode()
def decode(
    model: HookedTransformer,
    task: Task,
    prompts: Sequence[int] | Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> Responses:
    """Greedy (temperature 0) or temperature-sampled responses, batched by prompt length."""
    prompts = [int(s) for s in prompts]
    out = torch.full((len(prompts), max_new_tokens), task.pad, dtype=torch.long)
    lengths = torch.zeros(len(prompts), dtype=torch.long)
    for plen, rows in group_by_length(task, prompts).items():
        check_fits(model, plen, max_new_tokens)
        toks = torch.tensor([task.prompt_ids(prompts[i]) for i in rows])
        done = torch.zeros(len(rows), dtype=torch.bool)
        for _ in range(max_new_tokens):
            # decoding runs beside the model; a model on another device returns its logits
            logits = model(toks, return_type="logits")[:, -1].float().cpu()
            if temperature == 0.0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            toks = torch.cat([toks, nxt[:, None]], dim=1)
            done |= nxt == task.eos
            if bool(done.all()):
                break
        gen, n = cut_at_eos(task, toks[:, plen:])
        idx = torch.tensor(rows)
        out[idx, : gen.shape[1]] = gen
        lengths[idx] = n
    return Responses(torch.tensor(prompts), out, lengths)


def greedy(
    model: HookedTransformer, task: Task, prompts: Sequence[int] | Tensor, max_new_tokens: int
) -> Responses:
    return decode(model, task, prompts, max_new_tokens)


def sample(
    model: HookedTransformer,
    task: Task,
    prompts: Sequence[int] | Tensor,
    max_new_tokens: int,
    n_samples: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> Responses:
    """`n_samples` responses per prompt (rows grouped prompt by prompt)."""
    g = torch.Generator().manual_seed(seed)
    rep = [int(s) for s in prompts for _ in range(n_samples)]
    return decode(model, task, rep, max_new_tokens, temperature=temperature, generator=g)


# ----------------------------------------------------------------------------- exact enumeration


@dataclass(frozen=True)
class ResponseTree:
    """The enumerated response distribution of a policy, one leaf per complete response.

    A leaf ends in EOS or is cut at the generation limit. `logp[:, 0]` is the enumerated
    policy's log-probability of the leaf; `logp[:, k]` that of the k-th model in
    `score_with`. Prefixes whose policy probability fell below the threshold were not
    expanded; `residual[p]` is their total probability for prompt p, so the leaves of p
    carry exactly 1 − residual[p].
    """

    prompts: Int[Tensor, " n_prompts"]
    leaf_prompt: Int[Tensor, " n_leaves"]  # row of `prompts`
    tokens: Int[Tensor, "n_leaves max_new"]
    lengths: Int[Tensor, " n_leaves"]
    logp: Float[Tensor, "n_leaves model"]  # log-prob of the leaf under the policy, then each scorer
    residual: Float[Tensor, " n_prompts"]  # probability of the prefixes left unexpanded
    threshold: float

    def mass(self) -> Float[Tensor, " n_prompts"]:
        """Enumerated probability per prompt (= 1 − residual up to float error)."""
        out = torch.zeros(len(self.prompts), dtype=torch.float64)
        return out.index_add_(0, self.leaf_prompt, self.logp[:, 0].double().exp())

    def per_prompt(self, values: Float[Tensor, " n_leaves"]) -> Float[Tensor, " n_prompts"]:
        """Σ over each prompt's leaves of π(leaf) · values[leaf]."""
        out = torch.zeros(len(self.prompts), dtype=torch.float64)
        return out.index_add_(0, self.leaf_prompt, self.logp[:, 0].double().exp() * values.double())


EXACT_THRESHOLD = 1e-4  # default: enumeration expands prefixes at least this probable
MAX_FRONTIER = 20_000  # prefixes kept per level and prompt length: bounds near-uniform models


class _Hooked:
    """The enumeration's forward passes with HookedTransformers: one key/value cache each."""

    def __init__(self, models: Sequence[HookedTransformer]):
        self.models = models
        self.caches: list = []

    def start(self, tokens: Int[Tensor, "rows pos"]) -> Float[Tensor, "rows d_vocab model"]:
        self.caches = [new_kv_cache(m, len(tokens)) for m in self.models]
        return self._last(tokens)

    def advance(
        self, rows: Int[Tensor, " rows"], tokens: Int[Tensor, " rows"]
    ) -> Float[Tensor, "rows d_vocab model"]:
        for c in self.caches:
            select_kv_rows_(c, rows)
        return self._last(tokens[:, None])

    def _last(self, tokens: Tensor) -> Tensor:
        # on the CPU whatever device the models are on
        return torch.stack(
            [
                forward_cached(m, tokens, c)[:, -1].float().log_softmax(-1).cpu()
                for m, c in zip(self.models, self.caches)
            ],
            dim=-1,
        )


class _Stacked:
    """The same with a lean stack whose members are the policy, then its scorers; it keeps
    each row's tokens and asks for their last-position logits (`Lean.last`)."""

    def __init__(self, lean: Lean):
        self.lean, self.rows = lean, torch.zeros(0, 0, dtype=torch.long)

    def start(self, tokens: Int[Tensor, "rows pos"]) -> Float[Tensor, "rows d_vocab model"]:
        self.rows = tokens
        return self._last()

    def advance(
        self, rows: Int[Tensor, " rows"], tokens: Int[Tensor, " rows"]
    ) -> Float[Tensor, "rows d_vocab model"]:
        self.rows = torch.cat([self.rows[rows], tokens[:, None]], dim=1)
        return self._last()

    def _last(self) -> Tensor:
        return self.lean.last(self.rows).float().log_softmax(-1).permute(1, 2, 0).cpu()


@torch.inference_mode()
def enumerate_responses(
    model: HookedTransformer | Lean,
    task: Task,
    prompts: Sequence[int] | Tensor,
    max_new_tokens: int,
    threshold: float = EXACT_THRESHOLD,
    score_with: Sequence[HookedTransformer] = (),
    max_frontier: int = MAX_FRONTIER,
) -> ResponseTree:
    """Enumerate the policy's responses level by level: one batched forward pass per level
    and model (over the new tokens only, with a key/value cache re-indexed to follow the
    tree), expanding every prefix whose policy probability is at least `threshold`, and
    at most the `max_frontier` most probable ones per level (this binds only for
    near-uniform policies, such as an untrained model). Every complete response of an
    expanded prefix becomes a leaf, however unlikely, so the only mass not accounted for
    is that of unexpanded prefixes (`residual`).

    `model` may also be a lean stack (`interp.core.lean.Lean`) whose first member is the
    policy and whose others score its tree, in one forward pass per level (then
    `score_with` stays empty)."""
    prompts_t = torch.as_tensor([int(s) for s in prompts], dtype=torch.long)
    if isinstance(model, Lean):
        if score_with:
            raise ValueError("a lean stack holds its scorers as members: no score_with")
        steps: _Hooked | _Stacked = _Stacked(model)
        n_models = model.n_members
    else:
        steps, n_models = _Hooked([model, *score_with]), 1 + len(score_with)
    grow = _Growth(task, max_new_tokens, threshold, max_frontier, len(prompts_t))
    for plen, rows in group_by_length(task, prompts_t.tolist()).items():
        check_fits(model, plen, max_new_tokens)
        step = steps.start(torch.tensor([task.prompt_ids(int(prompts_t[i])) for i in rows]))
        level = grow.roots(torch.tensor(rows), n_models)
        for depth in range(max_new_tokens):
            kept = grow.expand(level, step, depth)
            if kept is None:
                break
            level, (f, v) = kept
            step = steps.advance(f, v)
    return grow.tree(prompts_t)


@dataclass
class Level:
    """The prefixes being expanded at one depth: each one's prompt row, log-probability
    under every model (policy first) and response tokens so far."""

    row: Int[Tensor, " rows"]
    logp: Float[Tensor, "rows model"]
    prefix: Int[Tensor, "rows depth"]


class _Growth:
    """The enumeration's bookkeeping, apart from its forward passes: from one level's
    next-token log-probabilities, the leaves it completes, the probability it leaves
    unexpanded and the prefixes it expands (one rule, used per policy and per member)."""

    def __init__(
        self, task: Task, max_new_tokens: int, threshold: float, max_frontier: int, n_prompts: int
    ):
        self.task, self.max_new, self.threshold = task, max_new_tokens, threshold
        self.max_frontier = max_frontier
        self.residual = torch.zeros(n_prompts, dtype=torch.float64)
        self.leaves: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    @staticmethod
    def roots(rows: Int[Tensor, " rows"], n_models: int) -> Level:
        return Level(rows, torch.zeros(len(rows), n_models), torch.zeros(len(rows), 0).long())

    def expand(
        self, level: Level, step: Float[Tensor, "rows d_vocab model"], depth: int
    ) -> tuple[Level, tuple[Tensor, Tensor]] | None:
        """Record the level's leaves and dropped mass; the next level and, for the forward
        passes, which row each new prefix extends and with which token (None: done)."""
        task, row = self.task, level.row
        child = level.logp[:, None, :] + step
        tok = torch.arange(step.shape[1])[None, :].expand(len(row), -1)
        leaf = (tok == task.eos) | (depth == self.max_new - 1)
        prob = child[..., 0].exp()
        keep = ~leaf & (prob >= self.threshold)
        if int(keep.sum()) > self.max_frontier:  # keep only the most probable prefixes
            cut = prob[keep].topk(self.max_frontier).values[-1]
            keep &= prob >= cut
        drop = ~leaf & ~keep
        self.residual.index_add_(
            0, row[:, None].expand_as(tok)[drop], child[..., 0][drop].double().exp()
        )
        f, v = leaf.nonzero(as_tuple=True)
        lt = torch.full((len(f), self.max_new), task.pad, dtype=torch.long)
        lt[:, :depth] = level.prefix[f]
        lt[:, depth] = v
        self.leaves.append((row[f], lt, torch.full((len(f),), depth + 1), child[f, v]))
        f, v = keep.nonzero(as_tuple=True)
        if len(f) == 0:
            return None
        return Level(row[f], child[f, v], torch.cat([level.prefix[f], v[:, None]], 1)), (f, v)

    def tree(self, prompts: Int[Tensor, " n_prompts"]) -> ResponseTree:
        return ResponseTree(
            prompts=prompts,
            leaf_prompt=torch.cat([x[0] for x in self.leaves]),
            tokens=torch.cat([x[1] for x in self.leaves]),
            lengths=torch.cat([x[2] for x in self.leaves]),
            logp=torch.cat([x[3] for x in self.leaves]),
            residual=self.residual,
            threshold=self.threshold,
        )
