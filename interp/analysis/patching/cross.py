"""Activation patching across policies: B's activations patched into A.

Run policy A on some tokens, but replace one activation — a hook site at one position —
with the activation policy B computes on the same tokens, and see how far A's output
moves toward B's. Sites: each layer's `resid_pre`, each head's output `z`, `attn_out`,
`mlp_out` and `resid_post`. The tokens are a prompt where A answers out of distribution
and B does not (by the task's judge), followed by B's answer (teacher-forced, EOS
dropped). The *decision position* q* is the first position where A's next-token choice
differs from B's token. Per prompt, at q*:
- `recovered`: how much of the log-probability gap on B's token b the patch closes,
  Σ_prompts (log p(b) − log p_A(b)) / Σ_prompts (log p_B(b) − log p_A(b)): 0 = A
  unchanged, 1 = as sure of b as B is. A ratio of sums, so prompts where A and B nearly
  agree cannot blow it up (the per-prompt gains and gaps are in the JSON twin);
- `kl_to_b`: KL(p_B ‖ p) of the next-token distributions (A's own value is the baseline);
- `fixed`: greedy decoding of A with the patch applied at every step (B's activation
  recomputed on the sequence generated so far) gives an in-distribution answer.

A task without a judge (a preference file) cannot say which answers are OOD; there the
prompts are those where A's greedy answer differs from B's, and `fixed` means the patched
greedy answer is B's. Everything else is the same.
A residual-stream patch at the last layer's `resid_post` replaces everything the model
computed there, so it yields A's *readout* (final LayerNorm and unembedding) of B's
stream; it equals B's logits only where A's readout equals B's (tested, and measured on
every run by the engine checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analysis.interventions import Site, patch_grid, run_patched, sites
from interp.analysis.patching.inputs import spread, without_eos
from interp.core.sampling import Responses, cut_at_eos, greedy
from interp.core.task import Task
from interp.lens import HookedTransformer


@dataclass
class CrossPatching:
    """B's activations patched into A, per (site, position) and prompt."""

    sites: list[str]
    positions: list[str]
    prompts: list[int]
    decision_pos: list[int]
    gain: Float[Tensor, "site pos batch"]  # log p(b) − log p_A(b) at the decision position
    kl_to_b: Float[Tensor, "site pos batch"]
    fixed: Float[Tensor, "site pos batch"]  # 1 where the patched greedy answer is in-distribution
    gap: Float[Tensor, " batch"]  # log p_B(b) − log p_A(b)
    baseline_kl_to_b: Float[Tensor, " batch"]  # KL(p_B ‖ p_A) at the decision position
    judged: bool = True  # False: prompts where A's answer differs from B's; fixed = B's answer

    @property
    def selection(self) -> str:
        """Which prompts were patched, in words."""
        return "where A is OOD and B is not" if self.judged else "where A's answer is not B's"

    @property
    def fixed_means(self) -> str:
        """What a fixed greedy answer is, in words."""
        return "in-distribution" if self.judged else "B's answer"

    @property
    def recovered(self) -> Float[Tensor, "site pos"]:
        """Σ gain / Σ gap over the prompts."""
        return self.gain.sum(-1) / self.gap.sum()

    @property
    def mean_kl_to_b(self) -> Float[Tensor, "site pos"]:
        """KL(p_B ‖ p) averaged over the prompts."""
        return self.kl_to_b.mean(-1)

    @property
    def fixed_share(self) -> Float[Tensor, "site pos"]:
        """The share of prompts whose patched greedy answer is in-distribution."""
        return self.fixed.mean(-1)

    def to_json(self) -> dict[str, Any]:
        return {
            "sites": self.sites,
            "positions": self.positions,
            "prompts": self.prompts,
            "decision_pos": self.decision_pos,
            "gain": self.gain.tolist(),
            "kl_to_b": self.kl_to_b.tolist(),
            "fixed": self.fixed.tolist(),
            "gap": self.gap.tolist(),
            "baseline_kl_to_b": self.baseline_kl_to_b.tolist(),
        }


def _kl(logp_b: Float[Tensor, "batch d_vocab"], logp: Float[Tensor, "batch d_vocab"]) -> Tensor:
    """KL(p_B ‖ p) per row, from log-probabilities."""
    return (logp_b.exp() * (logp_b - logp)).sum(-1)


@dataclass(frozen=True)
class Decision:
    """Where A first departs from B's teacher-forced tokens, and the metric there."""

    pos: Int[Tensor, " batch"]  # the decision position q* of each row
    token: Int[Tensor, " batch"]  # B's token b at q*
    logp_a: Float[Tensor, "batch d_vocab"]  # A's next-token log-probabilities at q*
    logp_b: Float[Tensor, "batch d_vocab"]  # B's
    gap: Float[Tensor, " batch"]  # log p_B(b) − log p_A(b)
    baseline_kl: Float[Tensor, " batch"]  # KL(p_B ‖ p_A)

    def metric(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch 2"]:
        """(gain on B's token, KL(p_B ‖ p)) of patched logits at each row's q*."""
        rows = torch.arange(len(self.pos))
        lp = logits[rows, self.pos].float().log_softmax(-1).cpu()
        gain = lp[rows, self.token] - self.logp_a[rows, self.token]
        return torch.stack([gain, _kl(self.logp_b, lp)], dim=-1)


def decision_metric(
    tokens: Int[Tensor, "batch pos"],
    a_logits: Float[Tensor, "batch pos d_vocab"],
    b_logits: Float[Tensor, "batch pos d_vocab"],
    plen: int,
    eos: int,
) -> Decision:
    """The decision position per row (B's tokens are `tokens` after the prompt, then `eos`),
    and A's and B's next-token distributions there."""
    n, t = tokens.shape
    target = torch.cat([tokens[:, 1:], torch.full((n, 1), eos)], dim=1)  # B's next tokens
    differs = a_logits.argmax(-1) != target
    differs[:, : plen - 1] = False
    q = torch.where(differs.any(1), differs.float().argmax(1), torch.full((n,), t - 1))
    rows = torch.arange(n)
    b_tok = target[rows, q]
    lp_a = a_logits[rows, q].log_softmax(-1)
    lp_b = b_logits[rows, q].log_softmax(-1)
    return Decision(
        pos=q,
        token=b_tok,
        logp_a=lp_a,
        logp_b=lp_b,
        gap=lp_b[rows, b_tok] - lp_a[rows, b_tok],
        baseline_kl=_kl(lp_b, lp_a),
    )


@torch.inference_mode()
def greedy_patched(
    a: HookedTransformer,
    b: HookedTransformer,
    task: Task,
    prompts: Int[Tensor, " batch"],
    site: Site,
    pos: int,
    limit: int,
) -> Responses:
    """A's greedy responses with (site, pos) taken from B's run on the same sequence at
    every step (prompts of one length). Positions not yet generated are left alone."""
    toks = torch.tensor([task.prompt_ids(int(s)) for s in prompts])
    plen = toks.shape[1]
    for _ in range(limit):
        if pos < toks.shape[1]:
            _, cache = b.run_with_cache(toks, names_filter=lambda n: n == site.hook)
            logits = run_patched(a, toks, cache, [(site, pos)])
        else:
            logits = a(toks)
        toks = torch.cat([toks, logits[:, -1].argmax(-1, keepdim=True).cpu()], dim=1)
    return Responses(prompts, *cut_at_eos(task, toks[:, plen:]))


@dataclass(frozen=True)
class Divergence:
    """Greedy answers of A and B: the rows where A is OOD and B is not (judged), or where
    A's answer differs from B's (a task without a judge)."""

    rows: list[int]
    b_answers: Responses
    judged: bool = True


def _same_answer(x: Responses, y: Responses) -> Tensor:
    return (x.lengths == y.lengths) & (x.tokens == y.tokens).all(-1)


def divergence(
    a: HookedTransformer, b: HookedTransformer, task: Task, prompts: Int[Tensor, " batch"]
) -> Divergence:
    """The prompts where A's greedy answer is OOD and B's is not; for a task without a
    judge, those where A's greedy answer is not B's."""
    ga = greedy(a, task, prompts, task.max_new_tokens)
    gb = greedy(b, task, prompts, task.max_new_tokens)
    ja, jb = task.judge(prompts, ga.tokens, ga.lengths), task.judge(prompts, gb.tokens, gb.lengths)
    if ja is None or jb is None:
        return Divergence((~_same_answer(ga, gb)).nonzero().flatten().tolist(), gb, judged=False)
    return Divergence((ja.ood & ~jb.ood).nonzero().flatten().tolist(), gb)


def cross_policy(
    a: HookedTransformer,
    b: HookedTransformer,
    task: Task,
    prompts: Int[Tensor, " batch"],
    div: Divergence,
    max_prompts: int = 64,
) -> CrossPatching | None:
    """Patch B's activations into A on the prompts where A is OOD and B is not (or, with no
    judge, where A's answer is not B's: see the module docstring); None when there are no
    such prompts."""
    if not div.rows:
        return None
    gb = div.b_answers
    # one shape of input: the most common (prompt length, answer length) among the picks
    shapes = [(len(task.prompt_ids(int(prompts[i]))), int(gb.lengths[i])) for i in div.rows]
    common = max(set(shapes), key=shapes.count)
    picks = spread([i for i, sh in zip(div.rows, shapes) if sh == common], max_prompts)
    sel = prompts[torch.tensor(picks)]
    tokens = torch.tensor(
        [
            task.prompt_ids(int(prompts[i]))
            + without_eos(task, gb.tokens[i, : int(gb.lengths[i])].tolist())
            for i in picks
        ]
    )
    plen = common[0]
    with torch.inference_mode():
        a_logits = a(tokens).cpu()
        b_logits, b_cache = b.run_with_cache(tokens)
        b_logits = b_logits.cpu()
    decision = decision_metric(tokens, a_logits, b_logits, plen, task.eos)
    site_list = sites(a)
    grid = patch_grid(a, tokens, b_cache, site_list, decision.metric)  # [site, pos, prompt, 2]
    fixed = torch.zeros(grid.shape[:3])
    b_sel = Responses(sel, gb.tokens[torch.tensor(picks)], gb.lengths[torch.tensor(picks)])
    for i, s in enumerate(site_list):
        for p in range(tokens.shape[1]):
            resp = greedy_patched(a, b, task, sel, s, p, task.max_new_tokens)
            if div.judged:
                fixed[i, p] = task.judge(sel, resp.tokens, resp.lengths).ood.logical_not().float()
            else:
                fixed[i, p] = _same_answer(resp, b_sel).float()
    return CrossPatching(
        sites=[s.label for s in site_list],
        positions=task.position_labels(int(sel[0]), tokens.shape[1] - plen),
        prompts=sel.tolist(),
        decision_pos=decision.pos.tolist(),
        gain=grid[..., 0],
        kl_to_b=grid[..., 1],
        fixed=fixed,
        gap=decision.gap,
        baseline_kl_to_b=decision.baseline_kl,
        judged=div.judged,
    )
