"""The case study's metrics (§3.4), with the variants named plainly.

- `OOD(Y, x)`: Y does not parse, or |Y − x| > W. `Error(Y, x)`: |Y − x|, or max S − min S
  when Y does not parse. Rates are means over the test prompts, under greedy decoding.
- `Acc`, `Margin`: from the implicit reward r = β·log(π/π_ref) of the whole response (EOS
  included) on the test preference pairs: Acc is the share of pairs with r_w > r_l
  (strictly: ties count as misses, so Acc is 0 at step 0, where π = π_ref), Margin the
  mean of r_w − r_l.
- `kl_greedy`: the case study's KL: log π(y) − log π_ref(y) at the policy's greedy
  response y, averaged over test prompts. It is a single-sample proxy, not a KL.
- `kl_mc`: Monte Carlo KL(π ‖ π_ref) from temperature-1 samples of π, with its standard
  error (prompts are strata: SE² = Σ_p s_p² / n / P²).
- `kl_exact`: Σ_y π(y) log(π(y)/π_ref(y)) over the enumerated response tree
  (`interp.sampling.enumerate_responses`), averaged over prompts, reported with
  `exact_residual`, the mean probability of the prefixes left unexpanded. The left-out
  part of the sum is unknown in size and sign: kl_exact is not a bound.
- `ood_mass`: the probability π puts on OOD responses, from the same tree; the true value
  lies in [ood_mass, ood_mass + exact_residual].
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.data import Split, Task, encode_prompts, parse_batch, prompt_ids
from interp.lens import HookedTransformer, forward_cached, new_kv_cache, select_kv_rows_
from interp.losses import sequence_logprobs
from interp.sampling import (
    Responses,
    ResponseTree,
    enumerate_responses,
    greedy,
    group_by_length,
    sample,
)

EXACT_THRESHOLD = 1e-4  # default: enumeration expands prefixes at least this probable
# Bumped whenever a change alters what `evaluate` returns for the same model, so stored
# checkpoint evaluations made by older code are recomputed instead of reused.
EVAL_VERSION = 2


def eval_settings(exact_threshold: float | None, task: Task) -> dict[str, Any]:
    """What an evaluation depends on besides the model; stored with it, compared on reuse."""
    from interp.sampling import MAX_FRONTIER

    return {
        "version": EVAL_VERSION,
        "split": "test",
        "exact_threshold": exact_threshold,
        "max_new_tokens": task.max_new_tokens,
        "max_frontier": MAX_FRONTIER,
    }


@torch.inference_mode()
def model_logprobs(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    response_mask: Bool[Tensor, "batch pos"],
    batch_size: int = 2048,
) -> Float[Tensor, " batch"]:
    """log π(response | prompt) of each row, in chunks; the training loss's code path."""
    was_training = model.training
    model.eval()
    out = [
        sequence_logprobs(model(t, return_type="logits"), t, m)
        for t, m in zip(tokens.split(batch_size), response_mask.split(batch_size))
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


@torch.inference_mode()
def split_logprobs(model: HookedTransformer, split: Split) -> Float[Tensor, " n_seqs"]:
    """log π(response | prompt) of every sequence of a split, each prompt run only once.

    Prompts go through the model once (per prompt length) into a key/value cache, which is
    then fanned out to the prompt's responses; only response tokens are run after that,
    about half the work of scoring every sequence whole. Equal to `model_logprobs` up to
    float rounding (~1e-6), so compare a policy with a reference only when both sides
    came from the same function.
    """
    out = torch.empty(len(split.seq_prompt))
    prompt_row = {int(s): i for i, s in enumerate(split.prompts)}
    for rows in group_by_length(split.prompts.tolist()).values():
        in_group = torch.tensor(rows)
        local = {prompt_row[int(split.prompts[r])]: j for j, r in enumerate(rows)}
        seqs = torch.tensor(
            [q for q, s in enumerate(split.seq_prompt.tolist()) if prompt_row[s] in local]
        )
        fan = torch.tensor([local[prompt_row[int(s)]] for s in split.seq_prompt[seqs]])
        cache = new_kv_cache(model, len(rows))
        first = forward_cached(model, encode_prompts(split.prompts[in_group]), cache)[:, -1]
        select_kv_rows_(cache, fan)
        start = len(prompt_ids(int(split.prompts[rows[0]])))  # one prompt length per group
        resp, mask = split.tokens[seqs, start:], split.response_mask[seqs, start:]
        rest = forward_cached(model, resp[:, :-1], cache)
        logits = torch.cat([first[fan][:, None], rest], dim=1).float()
        lp = logits.log_softmax(-1).gather(-1, resp[..., None]).squeeze(-1)
        out[seqs] = torch.where(mask, lp, torch.zeros_like(lp)).sum(-1)
    return out


def ood_and_error(
    values: list[int | None], prompts: Tensor, task: Task
) -> tuple[Bool[Tensor, " batch"], Float[Tensor, " batch"]]:
    """Per-response OOD flag and Error."""
    ood, err = [], []
    for v, s in zip(values, prompts.tolist()):
        if v is None:
            ood.append(True)
            err.append(float(task.unparsed_error))
        else:
            ood.append(abs(v - s) > task.window)
            err.append(float(abs(v - s)))
    return torch.tensor(ood, dtype=torch.bool), torch.tensor(err)


def ood_flags(tokens: Tensor, lengths: Tensor, prompts: Tensor, task: Task) -> Tensor:
    """OOD of each response (vectorised): it does not parse or lies outside the window."""
    ok, value = parse_batch(tokens, lengths)
    return ~ok | ((value - prompts).abs() > task.window)


def exact_metrics(tree: ResponseTree, task: Task) -> dict[str, float]:
    """kl_exact (needs the tree scored with the reference), exact_residual, ood_mass."""
    ood = ood_flags(tree.tokens, tree.lengths, tree.prompts[tree.leaf_prompt], task)
    out = {
        "ood_mass": float(tree.per_prompt(ood.double()).mean()),
        "exact_residual": float(tree.residual.mean()),
    }
    if tree.logp.shape[1] > 1:
        out["kl_exact"] = float(tree.per_prompt(tree.logp[:, 0] - tree.logp[:, 1]).mean())
    return out


def kl_mc(
    model: HookedTransformer,
    ref: HookedTransformer,
    prompts: Tensor,
    max_new_tokens: int,
    n_samples: int,
    seed: int = 0,
) -> tuple[float, float]:
    """Monte Carlo KL(π ‖ π_ref) over the prompts, and its standard error."""
    if n_samples < 2:
        raise ValueError("kl_mc needs at least 2 samples per prompt")
    resp = sample(model, prompts, max_new_tokens, n_samples, temperature=1.0, seed=seed)
    ratio = greedy_kl(model, ref, resp).double().view(len(prompts), n_samples)
    per_prompt_var = ratio.var(dim=1, unbiased=True) / n_samples
    return float(ratio.mean()), float(per_prompt_var.sum().sqrt() / len(prompts))


def greedy_kl(model: HookedTransformer, ref: HookedTransformer, responses: Responses) -> Tensor:
    """log π(y) − log π_ref(y) of each response given (the greedy ones for kl_greedy)."""
    toks, mask = responses.sequences()
    return model_logprobs(model, toks, mask) - model_logprobs(ref, toks, mask)


def pair_rewards(
    policy_seq_logps: Tensor, ref_seq_logps: Tensor, split: Split, beta: float
) -> tuple[Tensor, Tensor]:
    """Implicit rewards (r_w, r_l) of every pair of the split."""
    ratio = policy_seq_logps - ref_seq_logps
    return beta * ratio[split.chosen], beta * ratio[split.rejected]


def evaluate(
    model: HookedTransformer,
    split: Split,
    ref: HookedTransformer | None = None,
    beta: float | None = None,
    ref_seq_logps: Tensor | None = None,
    exact_threshold: float | None = None,
) -> dict[str, Any]:
    """The checkpoint evaluation: greedy OOD rate and Error on the split's prompts; with a
    reference, kl_greedy, and with β also Acc and Margin on the split's pairs. With
    `exact_threshold`, also ood_mass, exact_residual and (with a reference) kl_exact.

    `ref_seq_logps` (`split_logprobs(ref, split)`) may be passed in to avoid recomputing
    the reference's side at every checkpoint.
    """
    task = split.task
    resp = greedy(model, split.prompts, task.max_new_tokens)
    ood, err = ood_and_error(resp.values, split.prompts, task)
    seq_lp = split_logprobs(model, split)
    out: dict[str, Any] = {
        "ood_rate": float(ood.double().mean()),
        "error": float(err.double().mean()),
        "logp_chosen": float(seq_lp[split.chosen].mean()),
        "logp_rejected": float(seq_lp[split.rejected].mean()),
        "kl_greedy": None,
        "acc": None,
        "margin": None,
    }
    if ref is not None:
        out["kl_greedy"] = float(greedy_kl(model, ref, resp).mean())
        if beta is not None:
            if ref_seq_logps is None:
                ref_seq_logps = split_logprobs(ref, split)
            r_w, r_l = pair_rewards(seq_lp, ref_seq_logps, split, beta)
            out["acc"] = float((r_w > r_l).double().mean())
            out["margin"] = float((r_w - r_l).double().mean())
    if exact_threshold is not None:
        scorers = [ref] if ref is not None else []
        tree = enumerate_responses(
            model, split.prompts, task.max_new_tokens, exact_threshold, score_with=scorers
        )
        out.update(exact_metrics(tree, task))
    return out


def eval_table(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    """A text table of checkpoint evaluations: (label, step, `evaluate` output) per row."""

    def f(v: float | None, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    width = max([len(r[0]) for r in rows] + [6]) + 2
    lines = [
        f"{'policy':<{width}}{'step':>6}{'OOD':>7}{'Error':>8}{'kl_greedy':>11}{'Acc':>7}{'Margin':>9}"
    ]
    for label, step, e in rows:
        ood, err = f(e.get("ood_rate"), ".1%"), f(e.get("error"), ".2f")
        kl, acc, margin = (
            f(e.get("kl_greedy"), ".3f"),
            f(e.get("acc"), ".1%"),
            f(e.get("margin"), ".3f"),
        )
        lines.append(f"{label:<{width}}{step:>6}{ood:>7}{err:>8}{kl:>11}{acc:>7}{margin:>9}")
    return "\n".join(lines)
