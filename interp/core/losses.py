"""Sequence log-probabilities and the preference losses.

Conventions
- `logits[:, t]` predicts `tokens[:, t + 1]`; the log-probability of a response is the
  sum over its tokens, EOS included, of log π(token | everything before it). Prompt and
  pad positions are masked out (`response_mask` is True exactly on response tokens).
- Every loss returns one value per example (the trainer takes the mean) and accepts β as
  a float or as a tensor that broadcasts against the batch (one β per ensemble member).
- The implicit reward is r = β · (log π(y|x) − log π_ref(y|x)) of the whole response.

Losses (β plays each one's own role):
- `dpo`    −log σ(β[(log π_w − log π_ref,w) − (log π_l − log π_ref,l)])        Rafailov et al. 2023
- `ipo`    ((log-ratio_w − log-ratio_l) − 1/(2β))², summed log-ratios (TRL
           length-normalises them for IPO; we keep the paper's form)      Azar et al. 2023
- `simpo`  −log σ(β·(log π_w/|y_w| − log π_l/|y_l|) − γ),
           γ = `SIMPO_GAMMA_RATIO`·β                                     Meng et al. 2024
- `orpo`   −log π_w/|y_w| − β·log σ(log odds_w − log odds_l), odds of the mean
           per-token probability p: p/(1 − p); no reference in the loss             Hong et al. 2024
- `kto`    1 − σ(β(r̂_w − z₀)) for the preferred and 1 − σ(β(z₀ − r̂_l)) for the
           dispreferred response, averaged; r̂ = log-ratio, z₀ = max(0, mean
           log-ratio of mismatched (prompt, response) pairs), held constant
                                                                         Ethayarajh et al. 2024
- `dponll` dpo + `NLL_WEIGHT`·(−log π_w/|y_w|)                                 (a.k.a. RPO)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

SIMPO_GAMMA_RATIO = 0.5
NLL_WEIGHT = 1.0

Beta = float | Tensor


def token_logprobs(
    logits: Float[Tensor, "*member batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "*member batch pos_minus_1"]:
    """log π(tokens[:, t+1] | tokens[:, :t+1]) for every t. Logits may carry leading
    (ensemble member) dimensions; the tokens broadcast over them."""
    logp = F.log_softmax(logits[..., :-1, :].float(), dim=-1)
    index = tokens[:, 1:].expand(logp.shape[:-1])
    return logp.gather(-1, index[..., None]).squeeze(-1)


def sequence_logprobs(
    logits: Float[Tensor, "*member batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    response_mask: Bool[Tensor, "batch pos"],
) -> Float[Tensor, "*member batch"]:
    """Sum of the response tokens' log-probabilities (prompt and pad masked out)."""
    lp = token_logprobs(logits, tokens)
    return torch.where(response_mask[:, 1:], lp, torch.zeros_like(lp)).sum(-1)


def sft_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    response_mask: Bool[Tensor, "batch pos"],
) -> Float[Tensor, " batch"]:
    """Eq. 4: −log π(y | x) of each example's whole response."""
    return -sequence_logprobs(logits, tokens, response_mask)


@dataclass
class PairLogps:
    """Log-probabilities of a batch of preference pairs (one entry per pair)."""

    policy_chosen: Float[Tensor, " batch"]
    policy_rejected: Float[Tensor, " batch"]
    ref_chosen: Float[Tensor, " batch"]
    ref_rejected: Float[Tensor, " batch"]
    len_chosen: Float[Tensor, " batch"]
    len_rejected: Float[Tensor, " batch"]
    # KTO only: log-ratio of mismatched (prompt, response) pairs, for its reference point z0
    kl_logratio: Float[Tensor, " batch"] | None = None

    @property
    def chosen_logratio(self) -> Float[Tensor, "*member batch"]:
        return self.policy_chosen - self.ref_chosen

    @property
    def rejected_logratio(self) -> Float[Tensor, "*member batch"]:
        return self.policy_rejected - self.ref_rejected


def dpo_loss(lp: PairLogps, beta: Beta) -> Float[Tensor, "*member batch"]:
    return -F.logsigmoid(beta * (lp.chosen_logratio - lp.rejected_logratio))


def ipo_loss(lp: PairLogps, beta: Beta) -> Float[Tensor, "*member batch"]:
    return (lp.chosen_logratio - lp.rejected_logratio - 1.0 / (2.0 * beta)) ** 2


def simpo_loss(lp: PairLogps, beta: Beta) -> Float[Tensor, "*member batch"]:
    gap = lp.policy_chosen / lp.len_chosen - lp.policy_rejected / lp.len_rejected
    return -F.logsigmoid(beta * gap - SIMPO_GAMMA_RATIO * beta)


def _log_odds(mean_logp: Tensor) -> Tensor:
    # log(p / (1 − p)) for p = exp(mean_logp) < 1; expm1 keeps precision when p is near 1
    mean_logp = mean_logp.clamp(max=-1e-7)
    return mean_logp - torch.log(-torch.expm1(mean_logp))


def orpo_loss(lp: PairLogps, beta: Beta) -> Float[Tensor, "*member batch"]:
    mean_w = lp.policy_chosen / lp.len_chosen
    mean_l = lp.policy_rejected / lp.len_rejected
    return -mean_w - beta * F.logsigmoid(_log_odds(mean_w) - _log_odds(mean_l))


def kto_loss(lp: PairLogps, beta: Beta) -> Float[Tensor, "*member batch"]:
    if lp.kl_logratio is None:
        raise ValueError("kto needs the log-ratios of mismatched pairs (PairLogps.kl_logratio)")
    z0 = lp.kl_logratio.mean(-1, keepdim=True).clamp(min=0).detach()
    desirable = 1 - torch.sigmoid(beta * (lp.chosen_logratio - z0))
    undesirable = 1 - torch.sigmoid(beta * (z0 - lp.rejected_logratio))
    return (desirable + undesirable) / 2


def dponll_loss(lp: PairLogps, beta: Beta) -> Float[Tensor, "*member batch"]:
    return dpo_loss(lp, beta) + NLL_WEIGHT * (-lp.policy_chosen / lp.len_chosen)


LOSSES: dict[str, Callable[[PairLogps, Beta], Tensor]] = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
    "kto": kto_loss,
    "dponll": dponll_loss,
}


def reward_stats(lp: PairLogps, beta: Beta) -> dict[str, Float[Tensor, "*member"]]:
    """The diagnostics logged at every step, with TRL's names; rewards are DPO's implicit
    reward β·log-ratio for every loss, so runs of different losses compare directly."""
    r_w = beta * lp.chosen_logratio
    r_l = beta * lp.rejected_logratio
    return {
        "rewards/chosen": r_w.mean(-1),
        "rewards/rejected": r_l.mean(-1),
        "rewards/margins": (r_w - r_l).mean(-1),
        "rewards/accuracies": (r_w > r_l).float().mean(-1),
        "logps/chosen": lp.policy_chosen.mean(-1),
        "logps/rejected": lp.policy_rejected.mean(-1),
    }
