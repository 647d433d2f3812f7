"""SFT and preference training of one run.

SFT on (prompt, preferred) pairs gives the reference policy `ref` (Eq. 4). A preference
run (DPO, Eq. 2, or a relative from `interp.core.losses`) starts from `ref`'s final
weights; the reference's log-probabilities of every training sequence are computed once,
in eval mode, through the same scoring function as the policy's.

Determinism: initialisation draws from the seed; the order of examples in epoch e is a
permutation drawn from (seed, e) alone, so it does not depend on β or the loss, and a run
resumed from a checkpoint sees exactly the batches it would have seen. A run saves step 0
and `n_checkpoints` evenly spaced steps up to its last, each with the optimizer state of
the newest one (deleted when the run completes); `interp.runs.writer` evaluates and
writes them. A run trains holding its lock (`interp.runs.locks.lock_runs`): a second
process asked to train it meanwhile fails with one line instead of racing it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.core.data import Dataset, Split, encode_pairs
from interp.core.lean import LeanView, supports
from interp.core.losses import LOSSES, PairLogps, reward_stats, sequence_logprobs, sft_loss
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import make_dataset
from interp.core.scoring import model_logprobs
from interp.errors import UserError
from interp.lens import HookedTransformer
from interp.runs import files, locks, steps, store
from interp.runs.config import Hyper, RunSpec
from interp.runs.store import Checkpoint, Run, is_complete
from interp.runs.writer import RunWriter


def make_optimizer(params: Iterable[torch.nn.Parameter], h: Hyper) -> torch.optim.Optimizer:
    if h.optimizer == "adam":
        return torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay, foreach=True)
    if h.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay, foreach=True)
    if h.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=h.lr, weight_decay=h.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {h.optimizer!r}")


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the n training examples in one epoch: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """Example indices of training step `step` (1-based); an epoch's last batch may be short."""
    per_epoch = math.ceil(n / batch_size)
    epoch, i = divmod(step - 1, per_epoch)
    return epoch_order(seed, epoch, n)[i * batch_size : (i + 1) * batch_size]


def sft_step_loss(
    model: HookedTransformer | LeanView, split: Split, idx: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    seq = split.chosen[idx]
    tokens, mask = split.tokens[seq], split.response_mask[seq]
    loss = sft_loss(model(tokens, return_type="logits"), tokens, mask).mean()
    return loss, {}


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels during a backward pass; the previous setting after.

    The embeddings' backward pass accumulates with `index_put_(accumulate=True)`. Its
    multithreaded CPU kernel, used for large index counts (an ensemble's stacked batch,
    the grokking preset's batch of 512), sums in an order that depends on thread
    scheduling: on a busy machine two runs of the same step can differ in the last bits
    (`test_ensemble_gradients_are_the_same_every_time` failed under load without this).
    With deterministic kernels a run's weights are the same in every process, which is
    what lets an interrupted run resume bit for bit. Small batches take the serial kernel,
    which sums in the same order either way, so their numbers do not change."""
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def pair_logps(
    model: HookedTransformer | LeanView,
    split: Split,
    idx: torch.Tensor,
    ref_seq_logps: torch.Tensor,
    ref: HookedTransformer | None = None,
    with_kl_pairs: bool = False,
) -> PairLogps:
    """Policy and cached reference log-probs of a batch of pairs (one forward pass for both
    responses). With `with_kl_pairs`, also the log-ratio of mismatched pairs (prompt i with
    the preferred response of pair i−1), which KTO uses for its reference point. `model`
    may be an ensemble returning [member, batch, pos, d_vocab] logits: every output then
    gains a leading member dimension."""
    w, l = split.chosen[idx], split.rejected[idx]
    seqs = torch.cat([w, l])
    tokens, mask = split.tokens[seqs], split.response_mask[seqs]
    lp = sequence_logprobs(model(tokens, return_type="logits"), tokens, mask)
    lens = mask.sum(-1).float()
    b = len(idx)
    out = PairLogps(
        policy_chosen=lp[..., :b],
        policy_rejected=lp[..., b:],
        ref_chosen=ref_seq_logps[w],
        ref_rejected=ref_seq_logps[l],
        len_chosen=lens[:b],
        len_rejected=lens[b:],
    )
    if with_kl_pairs and b == 1:  # no other pair to mismatch with: z0 falls back to 0
        out.kl_logratio = torch.zeros(1)
    elif with_kl_pairs:
        assert ref is not None
        kt, km = encode_pairs(
            split.task, split.seq_prompt[w].tolist(), split.seq_response[w].roll(1).tolist()
        )
        with torch.no_grad():
            logits = model(kt, return_type="logits")
            out.kl_logratio = sequence_logprobs(logits, kt, km) - model_logprobs(ref, kt, km)
    return out


def initial_policy(spec: RunSpec, ref_ckpt: Checkpoint | None) -> HookedTransformer:
    """Where a run starts: a fresh model from the seed (SFT), or the reference's weights."""
    if ref_ckpt is None:
        return build_model(spec.model, seed=spec.key.seed)
    ref = ref_ckpt.model
    if spec.model != ModelSpec.from_config(ref.cfg):
        raise UserError(
            f"{ref_ckpt.policy} at {ref_ckpt.path.parent} has architecture "
            f"{ModelSpec.from_config(ref.cfg)}, not {spec.model}; use another --checkpoints folder"
        )
    model = build_model(ref.cfg)
    model.load_state_dict(ref.state_dict())
    return model


def train_run(
    spec: RunSpec,
    root: Path | None = None,
    progress: bool = True,
    data: Dataset | None = None,
) -> Run:
    """Train one run (SFT for `ref`, else a preference loss), resuming if it was interrupted.

    Returns the finished run; a finished run is returned untouched.
    """
    key = spec.key
    if store.tidy_finished(key, root):
        return Run(key, files.run_dir(key, root))
    data = data or make_dataset(key.preset, key.seed)
    ref_ckpt = None if key.is_ref else store.find_run(key.reference, root).checkpoint()
    with locks.lock_runs([key], root):
        if is_complete(key, root):  # finished by another process meanwhile
            return Run(key, files.run_dir(key, root))
        return _train_locked(spec, data, ref_ckpt, root, progress)


def _train_locked(
    spec: RunSpec,
    data: Dataset,
    ref_ckpt: Checkpoint | None,
    root: Path | None,
    progress: bool,
) -> Run:
    key = spec.key
    train, h = data.train, spec.hyper
    model = initial_policy(spec, ref_ckpt)
    optimizer = make_optimizer(model.parameters(), h)
    writer = RunWriter(spec, root, data, ref_ckpt)
    start, resume_dir = writer.begin()
    if resume_dir is not None:
        model.load_state_dict(steps.load_weights(resume_dir, key)[0].state_dict())
        optimizer.load_state_dict(steps.load_optimizer_state(resume_dir))
    ref = writer.ref
    ref_train = None if ref is None else model_logprobs(ref, train.tokens, train.response_mask)
    loss_fn, beta = LOSSES.get(key.loss), key.beta

    if start == 0:
        writer.save(0, model, optimizer.state_dict())
    bar = tqdm(
        total=writer.total,
        initial=start,
        desc=key.name,
        disable=None if progress else True,
        leave=False,
    )
    model.train()
    # the suite's own architecture trains through the lean forward, as an ensemble does
    forward = LeanView(model) if supports(model.cfg) else model
    for step in range(start + 1, writer.total + 1):
        idx = batch_indices(key.seed, step, train.n_pairs, h.batch_size)
        if key.is_ref:
            loss, row = sft_step_loss(forward, train, idx)
        else:
            lp = pair_logps(forward, train, idx, ref_train, ref, with_kl_pairs=key.loss == "kto")
            loss = loss_fn(lp, beta).mean()
            with torch.no_grad():
                row = {k: v.item() for k, v in reward_stats(lp, beta).items()}
        if not torch.isfinite(loss):
            raise writer.diverged(step)
        optimizer.zero_grad(set_to_none=True)
        with deterministic():  # the same bits in every process
            loss.backward()
        if h.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip)
        optimizer.step()
        writer.log.add(step, {"loss": loss.item(), **row})
        bar.update(1)
        if step in writer.save_at:
            model.eval()
            writer.save(step, model, optimizer.state_dict())
            model.train()
    bar.close()
    model.eval()
    return writer.finish()
