"""Likelihood displacement over training, and where the probability mass goes.

Likelihood displacement (Razin et al.): DPO widens the margin log π(y⁺) − log π(y⁻), yet
log π(y⁺) itself can fall, and the mass both responses lose goes elsewhere. Measured on
the training pairs (the data DPO saw) at every saved step: mean log π(y⁺), log π(y⁻), the
exact OOD mass, and the probability of the single most probable OOD response — the case
study's hypothesis is π(y_OOD) > π(y⁺) > π(y⁻). OOD is the task's judge; for a task
without one these numbers are None (not computable).

Where the mass goes: the exact response distribution on the training prompts (every
prefix at least as probable as the enumeration threshold expanded, the mass of the others
counted as not enumerated), grouped by the task's names for kinds of response
(`task.response_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.core.data import Split
from interp.core.sampling import ResponseTree, enumerate_responses
from interp.core.scoring import split_logprobs
from interp.core.task import Task
from interp.lens import HookedTransformer


def leaf_prompts(tree: ResponseTree) -> Int[Tensor, " n_leaves"]:
    """The prompt key of every enumerated response."""
    return tree.prompts[tree.leaf_prompt]


def mass_by_kind(tree: ResponseTree, task: Task) -> dict[str, float]:
    """Mean probability (over prompts) of each kind of response the task names, and of the
    responses not enumerated."""
    kinds = task.response_kinds(leaf_prompts(tree), tree.tokens, tree.lengths)
    out = {}
    for name in sorted(set(kinds)):
        flag = torch.tensor([k == name for k in kinds], dtype=torch.float64)
        out[name] = float(tree.per_prompt(flag).mean())
    out["(not enumerated)"] = float(tree.residual.mean())
    return out


def ood_leaves(tree: ResponseTree, task: Task) -> Bool[Tensor, " n_leaves"] | None:
    """The judge's OOD flag of every enumerated response; None if the task has no judge."""
    verdict = task.judge(leaf_prompts(tree), tree.tokens, tree.lengths)
    return None if verdict is None else verdict.ood


def top_ood(tree: ResponseTree, ood: Bool[Tensor, " n_leaves"]) -> Float[Tensor, " n_prompts"]:
    """Per prompt, the probability of its single most probable OOD response (0 if none)."""
    p = torch.where(ood, tree.logp[:, 0].double().exp(), 0.0)
    out = torch.zeros(len(tree.prompts), dtype=torch.float64)
    return out.scatter_reduce(0, tree.leaf_prompt, p, reduce="amax")


@dataclass(frozen=True)
class DisplacementPoint:
    """Likelihood displacement at one saved step, on the training pairs. The OOD numbers
    are None when the task has no judge (not computable)."""

    step: int
    logp_chosen: float  # mean log π(y⁺)
    logp_rejected: float  # mean log π(y⁻)
    ood_mass: float | None  # exact OOD mass, mean over training prompts
    top_ood: float | None  # mean probability of each prompt's most probable OOD response
    # mean log of that probability over the prompts that have an OOD response at all (a
    # floor would swamp the mean); None also when no prompt has one
    logp_top_ood: float | None
    share_ood_above_chosen: float | None  # prompts whose top OOD > their mean π(y⁺)


def displacement_point(
    model: HookedTransformer, split: Split, step: int, exact_threshold: float
) -> DisplacementPoint:
    task = split.task
    lp = split_logprobs(model, split)
    chosen, rejected = float(lp[split.chosen].mean()), float(lp[split.rejected].mean())
    if not (task.enumerable and task.has_judge):  # no OOD mass to find: not computable
        return DisplacementPoint(step, chosen, rejected, None, None, None, None)
    tree = enumerate_responses(model, task, split.prompts, task.max_new_tokens, exact_threshold)
    ood = ood_leaves(tree, task)
    if ood is None:
        return DisplacementPoint(step, chosen, rejected, None, None, None, None)
    top = top_ood(tree, ood)
    # per prompt: the mean preferred-response probability of its pairs
    prompt_row = {int(s): i for i, s in enumerate(split.prompts)}
    pair_row = torch.tensor([prompt_row[int(s)] for s in split.pair_prompt])
    pw = torch.zeros(len(split.prompts), dtype=torch.float64).index_add_(
        0, pair_row, lp[split.chosen].double().exp()
    ) / torch.bincount(pair_row, minlength=len(split.prompts))
    has = top > 0
    return DisplacementPoint(
        step=step,
        logp_chosen=chosen,
        logp_rejected=rejected,
        ood_mass=float(tree.per_prompt(ood.double()).mean()),
        top_ood=float(top.mean()),
        logp_top_ood=float(top[has].log().mean()) if bool(has.any()) else None,
        share_ood_above_chosen=float((top > pw).double().mean()),
    )
