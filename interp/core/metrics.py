"""The case study's metrics (§3.4), with the variants named plainly.

- `OOD(Y, x)`, `Error(Y, x)`: the task's judge (`Task.judge`; the number line's: Y does
  not parse, or |Y − x| > W; |Y − x|, or max S − min S when Y does not parse). Rates are
  means over the test prompts, under greedy decoding. A task without a judge gets None.
- `Acc`, `Margin`: from the implicit reward r = β·log(π/π_ref) of the whole response (EOS
  included) on the test preference pairs: Acc is the share of pairs with r_w > r_l
  (strictly: ties count as misses, so Acc is 0 at step 0, where π = π_ref), Margin the
  mean of r_w − r_l.
- `kl_greedy`: the case study's KL: log π(y) − log π_ref(y) at the policy's greedy
  response y, averaged over test prompts. It is a single-sample proxy, not a KL.
- `kl_mc`: Monte Carlo KL(π ‖ π_ref) from temperature-1 samples of π, with its standard
  error (prompts are strata: SE² = Σ_p s_p² / n / P²).
- `kl_exact`: Σ_y π(y) log(π(y)/π_ref(y)) over the enumerated response tree
  (`interp.core.sampling.enumerate_responses`), averaged over prompts, reported with
  `exact_residual`, the mean probability of the prefixes left unexpanded. The left-out
  part of the sum is unknown in size and sign: kl_exact is not a bound.
- `ood_mass`: the probability π puts on OOD responses, from the same tree; the true value
  lies in [ood_mass, ood_mass + exact_residual].
- `gold_reward`: −E_π Error(y, s), the exact expected reward under the judge's own error
  (a gold reward, where the over-optimisation literature uses a judge model), from the same
  tree, averaged over prompts. The unexpanded prefixes' share of it is unknown: it lies in
  [gold_reward − exact_residual · (max S − min S), gold_reward].
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from interp.core.data import Split
from interp.core.sampling import (
    MAX_FRONTIER,
    Responses,
    ResponseTree,
    enumerate_responses,
    greedy,
    sample,
)
from interp.core.scoring import greedy_kl, split_logprobs
from interp.core.task import Task
from interp.lens import HookedTransformer

# Bumped whenever a change alters what `evaluate` returns for the same model, so stored
# checkpoint evaluations made by older code are recomputed instead of reused.
EVAL_VERSION = 3


def eval_settings(exact_threshold: float | None, task: Task) -> dict[str, Any]:
    """What an evaluation depends on besides the model; stored with it, compared on reuse."""
    return {
        "version": EVAL_VERSION,
        "split": "test",
        "exact_threshold": exact_threshold,
        "max_new_tokens": task.max_new_tokens,
        "max_frontier": MAX_FRONTIER,
    }


def exact_metrics(tree: ResponseTree, task: Task) -> dict[str, float | None]:
    """kl_exact (needs the tree scored with the reference), exact_residual, ood_mass and
    gold_reward (None for a task without a judge)."""
    verdict = task.judge(tree.prompts[tree.leaf_prompt], tree.tokens, tree.lengths)
    out: dict[str, float | None] = {
        "ood_mass": None
        if verdict is None
        else float(tree.per_prompt(verdict.ood.double()).mean()),
        "gold_reward": None
        if verdict is None
        else -float(tree.per_prompt(verdict.error.double()).mean()),
        "exact_residual": float(tree.residual.mean()),
    }
    if tree.logp.shape[1] > 1:
        out["kl_exact"] = float(tree.per_prompt(tree.logp[:, 0] - tree.logp[:, 1]).mean())
    return out


def kl_mc(
    model: HookedTransformer,
    ref: HookedTransformer,
    task: Task,
    prompts: Int[Tensor, " batch"],
    max_new_tokens: int,
    n_samples: int,
    seed: int = 0,
) -> tuple[float, float]:
    """Monte Carlo KL(π ‖ π_ref) over the prompts, and its standard error."""
    if n_samples < 2:
        raise ValueError("kl_mc needs at least 2 samples per prompt")
    resp = sample(model, task, prompts, max_new_tokens, n_samples, temperature=1.0, seed=seed)
    ratio = greedy_kl(model, ref, task, resp).double().view(len(prompts), n_samples)
    per_prompt_var = ratio.var(dim=1, unbiased=True) / n_samples
    return float(ratio.mean()), float(per_prompt_var.sum().sqrt() / len(prompts))


def pair_rewards(
    policy_seq_logps: Float[Tensor, " n_seqs"],
    ref_seq_logps: Float[Tensor, " n_seqs"],
    split: Split,
    beta: float,
) -> tuple[Float[Tensor, " n_pairs"], Float[Tensor, " n_pairs"]]:
    """Implicit rewards (r_w, r_l) of every pair of the split."""
    ratio = policy_seq_logps - ref_seq_logps
    return beta * ratio[split.chosen], beta * ratio[split.rejected]


def assemble(
    split: Split,
    resp: Responses,
    seq_lp: Float[Tensor, " n_seqs"],
    greedy_ratio: Float[Tensor, " n_prompts"] | None,
    ref_seq_logps: Float[Tensor, " n_seqs"] | None,
    beta: float | None,
    tree: ResponseTree | None,
    enumerable: bool = True,
) -> dict[str, Any]:
    """The evaluation from its ingredients: the greedy responses, the split's sequence
    log-probs, log π − log π_ref at each greedy response (None: no reference), the
    reference's sequence log-probs, β and the enumerated tree (None: no exact metrics; with
    `enumerable` False they are reported as None). The one place the metrics are computed,
    for `evaluate` and for the member-batched `interp.core.members.evaluate_members`."""
    task = split.task
    verdict = task.judge(split.prompts, resp.tokens, resp.lengths)
    out: dict[str, Any] = {
        "ood_rate": None if verdict is None else float(verdict.ood.double().mean()),
        "error": None if verdict is None else float(verdict.error.double().mean()),
        "logp_chosen": float(seq_lp[split.chosen].mean()),
        "logp_rejected": float(seq_lp[split.rejected].mean()),
        "kl_greedy": None,
        "acc": None,
        "margin": None,
    }
    if greedy_ratio is not None and ref_seq_logps is not None:
        out["kl_greedy"] = float(greedy_ratio.mean())
        # Acc does not depend on β (> 0): without one it is read off the log-ratios
        r_w, r_l = pair_rewards(seq_lp, ref_seq_logps, split, 1.0 if beta is None else beta)
        out["acc"] = float((r_w > r_l).double().mean())
        out["margin"] = None if beta is None else float((r_w - r_l).double().mean())
    if not enumerable:
        out |= {"kl_exact": None, "exact_residual": None, "ood_mass": None, "gold_reward": None}
    elif tree is not None:
        out.update(exact_metrics(tree, task))
    return out


def evaluate(
    model: HookedTransformer,
    split: Split,
    ref: HookedTransformer | None = None,
    beta: float | None = None,
    ref_seq_logps: Float[Tensor, " n_seqs"] | None = None,
    exact_threshold: float | None = None,
) -> dict[str, Any]:
    """The checkpoint evaluation: greedy OOD rate and Error on the split's prompts; with a
    reference, kl_greedy and Acc, and with β also Margin, on the split's pairs. With
    `exact_threshold`, also ood_mass, exact_residual, gold_reward and (with a reference)
    kl_exact — None for a task whose response space is too large to enumerate
    (`Task.enumerable`).

    `ref_seq_logps` (`split_logprobs(ref, split)`) may be passed in to avoid recomputing
    the reference's side at every checkpoint.
    """
    task = split.task
    resp = greedy(model, task, split.prompts, task.max_new_tokens)
    seq_lp = split_logprobs(model, split)
    ratio = None
    if ref is not None:
        ratio = greedy_kl(model, ref, task, resp)
        if ref_seq_logps is None:
            ref_seq_logps = split_logprobs(ref, split)
    tree = None
    if exact_threshold is not None and task.enumerable:
        scorers = [ref] if ref is not None else []
        tree = enumerate_responses(
            model, task, split.prompts, task.max_new_tokens, exact_threshold, score_with=scorers
        )
    return assemble(
        split,
        resp,
        seq_lp,
        ratio,
        ref_seq_logps,
        beta,
        tree,
        enumerable=exact_threshold is None or task.enumerable,
    )
