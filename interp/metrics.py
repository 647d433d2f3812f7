"""The case study's metrics (§3.4), with the variants named plainly.

- `OOD(Y, x)`: Y does not parse, or |Y − x| > W. `Error(Y, x)`: |Y − x|, or max S − min S
  when Y does not parse. Rates are means over the test prompts, under greedy decoding.
- `Acc`, `Margin`: from the implicit reward r = β·log(π/π_ref) of the whole response (EOS
  included) on the test preference pairs: Acc is the share of pairs with r_w > r_l
  (strictly), Margin the mean of r_w − r_l.
- `kl_greedy`: the case study's KL: log π(y) − log π_ref(y) at the policy's greedy
  response y, averaged over test prompts. It is a single-sample proxy, not a KL.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.data import Split, Task
from interp.lens import HookedTransformer
from interp.losses import sequence_logprobs
from interp.sampling import Responses, greedy


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


def greedy_kl(model: HookedTransformer, ref: HookedTransformer, responses: Responses) -> Tensor:
    """Per-prompt log π(y) − log π_ref(y) at the responses given (the greedy ones for kl_greedy)."""
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
) -> dict[str, Any]:
    """The checkpoint evaluation: greedy OOD rate and Error on the split's prompts; with a
    reference, kl_greedy, and with β also Acc and Margin on the split's pairs.

    `ref_seq_logps` (log π_ref of `split`'s sequences) may be passed in to avoid
    recomputing the reference's side at every checkpoint.
    """
    task = split.task
    resp = greedy(model, split.prompts, task.max_new_tokens)
    ood, err = ood_and_error(resp.values, split.prompts, task)
    seq_lp = model_logprobs(model, split.tokens, split.response_mask)
    out: dict[str, Any] = {
        "ood_rate": float(ood.float().mean()),
        "error": float(err.mean()),
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
                ref_seq_logps = model_logprobs(ref, split.tokens, split.response_mask)
            r_w, r_l = pair_rewards(seq_lp, ref_seq_logps, split, beta)
            out["acc"] = float((r_w > r_l).float().mean())
            out["margin"] = float((r_w - r_l).mean())
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
