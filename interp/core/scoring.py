"""Scoring: the log-probability a model gives each response of a set of sequences.

log π(response | prompt) is the sum over the response's tokens, EOS included, of log π of
each token given everything before it (`interp.core.losses.sequence_logprobs`). Two paths
compute it: `model_logprobs` runs every sequence whole, as training does; `split_logprobs`
runs each prompt once into a key/value cache and then only the response tokens. They
agree up to float rounding (~1e-6), so a policy is compared with its reference only
through the same function.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.core.data import Split, encode_prompts, group_by_length
from interp.core.losses import sequence_logprobs
from interp.core.sampling import Responses
from interp.core.task import Task
from interp.lens import HookedTransformer, forward_cached, new_kv_cache, select_kv_rows_


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
    device = model.cfg.device  # scored where the model is, returned on the CPU
    out = [
        sequence_logprobs(model(t, return_type="logits"), t.to(device), m.to(device)).cpu()
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
    for rows in group_by_length(split.task, split.prompts.tolist()).values():
        in_group = torch.tensor(rows)
        local = {prompt_row[int(split.prompts[r])]: j for j, r in enumerate(rows)}
        seqs = torch.tensor(
            [q for q, s in enumerate(split.seq_prompt.tolist()) if prompt_row[s] in local]
        )
        fan = torch.tensor([local[prompt_row[int(s)]] for s in split.seq_prompt[seqs]])
        cache = new_kv_cache(model, len(rows))
        first = forward_cached(model, encode_prompts(split.task, split.prompts[in_group]), cache)[
            :, -1
        ]
        select_kv_rows_(cache, fan)
        start = len(
            split.task.prompt_ids(int(split.prompts[rows[0]]))
        )  # one prompt length per group
        resp, mask = split.tokens[seqs, start:], split.response_mask[seqs, start:]
        rest = forward_cached(model, resp[:, :-1], cache)
        logits = torch.cat([first[fan.to(first.device)][:, None], rest], dim=1).float()
        lp = logits.log_softmax(-1).gather(-1, resp[..., None].to(logits.device)).squeeze(-1)
        lp = lp.cpu()  # the model's device, whatever it is, then back beside `out`
        out[seqs] = torch.where(mask, lp, torch.zeros_like(lp)).sum(-1)
    return out


def greedy_kl(
    model: HookedTransformer, ref: HookedTransformer, task: Task, responses: Responses
) -> Float[Tensor, " batch"]:
    """log π(y) − log π_ref(y) of each response given (the greedy ones for kl_greedy)."""
    toks, mask = responses.sequences(task)
    return model_logprobs(model, toks, mask) - model_logprobs(ref, toks, mask)
