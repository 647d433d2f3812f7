"""Many preference runs trained at once, as one batched model (`torch.func`).

A β grid is dozens of runs of a 105K-parameter model whose steps are dominated by
per-call overhead. Runs that share their data order, reference, loss and
hyper-parameters — everything but β — can share each step instead: their parameters are
stacked along a leading member dimension (`stack_module_state`) and one vmapped
`functional_call` of the HookedTransformer computes every member's logits for the same
batch. Each member's loss uses its own β, the summed loss gives each member exactly its
own gradient, gradient clipping is done per member, and the optimizers used here (Adam,
AdamW, RMSprop) act elementwise, so a member follows the same trajectory as its run would
alone (up to float rounding: tested against `interp.runs.trainer.train_run`).

Each member is written by the same `RunWriter` as a single run — same folders, same
evaluation at every saved step, same optimizer state for resuming — so nothing downstream
can tell how a run was trained.

An interrupted ensemble resumes bit for bit wherever it was stopped. Float rounding
depends on how many members are stacked, so the members must train again as the group
they were: a member keeps its previous optimizer state until every member has saved the
new step, and on resume the members go back to the newest step they can all resume from
(`resume_groups`), discarding what some saved after it. The ensemble trains holding
every member's lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from interp.core.lean import Lean, supports
from interp.core.losses import LOSSES, reward_stats
from interp.core.members import evaluate_members
from interp.core.model import build_model
from interp.core.numberline import make_dataset
from interp.core.scoring import model_logprobs, split_logprobs
from interp.errors import TrainingDiverged, UserError
from interp.lens import HookedTransformer
from interp.runs import files, locks, steps, store
from interp.runs.config import RunSpec
from interp.runs.store import Checkpoint, Run, is_complete
from interp.runs.trainer import (
    batch_indices,
    deterministic,
    initial_policy,
    make_optimizer,
    pair_logps,
)
from interp.runs.writer import RunWriter


class Ensemble:
    """Stacked parameters of several models of one architecture, called like one model:
    `ensemble(tokens)` gives [member, batch, pos, d_vocab] logits."""

    def __init__(self, members: Sequence[HookedTransformer]):
        params, _ = stack_module_state(list(members))
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        self.base = build_model(members[0].cfg)  # supplies the module structure only
        self.buffers = dict(self.base.named_buffers())

        def one(p: dict, tokens: torch.Tensor) -> torch.Tensor:
            return functional_call(
                self.base, (p, self.buffers), (tokens,), {"return_type": "logits"}
            )

        self._forward = vmap(one, in_dims=(0, None))
        # the suite's own architecture runs through the lean forward (same function, a few
        # dense batched products instead of a vmapped HookedTransformer)
        cfg = self.base.cfg
        self.lean = Lean(self.params, cfg) if supports(cfg) else None

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __call__(self, tokens: torch.Tensor, return_type: str = "logits") -> torch.Tensor:
        if self.lean is not None:
            return self.lean(tokens)
        return self._forward(self.params, tokens)

    @torch.no_grad()
    def member(self, e: int, into: HookedTransformer | None = None) -> HookedTransformer:
        """Member e as a HookedTransformer (written into `into` when given)."""
        model = into if into is not None else build_model(self.base.cfg)
        for name, p in model.named_parameters():
            p.copy_(self.params[name][e])
        return model.eval()

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> None:
        """`torch.nn.utils.clip_grad_norm_` applied to each member separately."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # [member]
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))


def member_state(state: dict, e: int) -> dict:
    """Member e's slice of a stacked optimizer's state_dict, shaped like a single run's."""
    out = {"param_groups": state["param_groups"], "state": {}}
    for idx, st in state["state"].items():
        out["state"][idx] = {
            k: v[e] if isinstance(v, torch.Tensor) and v.dim() > 0 else v for k, v in st.items()
        }
    return out


def stack_states(states: Sequence[dict]) -> dict:
    """The inverse of `member_state`: single-run optimizer states stacked for an ensemble."""
    out = {"param_groups": states[0]["param_groups"], "state": {}}
    for idx, st in states[0]["state"].items():
        out["state"][idx] = {
            k: torch.stack([s["state"][idx][k] for s in states])
            if isinstance(v, torch.Tensor) and v.dim() > 0
            else v
            for k, v in st.items()
        }
    return out


def _check_compatible(specs: Sequence[RunSpec]) -> None:
    first = specs[0]
    for s in specs:
        if s.key.is_ref:
            raise UserError("an ensemble trains preference runs; train the reference first")
        same = (
            s.key.preset,
            s.key.loss,
            s.key.seed,
            s.hyper,
            s.model,
            s.n_checkpoints,
            s.exact_threshold,
        ) == (
            first.key.preset,
            first.key.loss,
            first.key.seed,
            first.hyper,
            first.model,
            first.n_checkpoints,
            first.exact_threshold,
        )
        if not same:
            raise UserError(
                f"runs {first.key.name} and {s.key.name} differ in more than β: train them apart"
            )


def train_ensemble(
    specs: Sequence[RunSpec], root: Path | None = None, progress: bool = True
) -> list[Run]:
    """Train the unfinished runs among `specs` (which differ only in β) together; resume any
    that were interrupted. Returns every run, in the order given."""
    _check_compatible(specs)
    pending = [s for s in specs if not store.tidy_finished(s.key, root)]
    if pending:
        key = pending[0].key
        data = make_dataset(key.preset, key.seed)
        ref_ckpt = store.find_run(key.reference, root).checkpoint()
        with locks.lock_runs([s.key for s in pending], root):
            pending = [s for s in pending if not is_complete(s.key, root)]  # done meanwhile?
            # the writers' evaluation needs it only outside the lean forward's architecture
            lean_eval = supports(ref_ckpt.model.cfg)
            ref_test = (
                split_logprobs(ref_ckpt.model, data.test) if pending and not lean_eval else None
            )
            writers = [RunWriter(s, root, data, ref_ckpt, ref_test) for s in pending]
            groups = resume_groups([w.resumable() for w in writers])
            started = []
            for start, members in groups:
                group = []
                for e in members:  # step 0: the initial policy, the same as starting over
                    _, resume_dir = writers[e].begin(start or None)
                    group.append((writers[e], resume_dir))
                started.append((start, group))
            for start, group in started:
                _train_group(group, start, ref_ckpt, progress)
    return [Run(s.key, files.run_dir(s.key, root)) for s in specs]


def resume_groups(resumable: Sequence[Sequence[int]]) -> list[tuple[int, list[int]]]:
    """Which members resume together from which step: (step, member indices), by step.

    `resumable[e]` holds the steps member e can resume from (none: it starts over, as
    from step 0). The step most members share comes first (the later one on a tie): after
    an interruption every member still holds the step they all last saved, so they resume
    from it as one group, as they trained. Only members that really trained apart (one
    that diverged and dropped out, one trained alone before) resume in several groups."""
    left = {e: set(r) or {0} for e, r in enumerate(resumable)}
    out = []
    while left:
        counts = Counter(s for r in left.values() for s in r)
        step = max(counts, key=lambda s: (counts[s], s))
        members = [e for e, r in left.items() if step in r]
        out.append((step, members))
        for e in members:
            del left[e]
    return sorted(out)


def _train_group(
    group: list[tuple[RunWriter, Path | None]], start: int, ref_ckpt: Checkpoint, progress: bool
) -> None:
    writers = [w for w, _ in group]
    first = writers[0]
    spec, data = first.spec, first.data
    train, h = data.train, spec.hyper
    members = []
    for w, d in group:
        m = initial_policy(w.spec, ref_ckpt)
        if d is not None:
            m.load_state_dict(steps.load_weights(d, w.key)[0].state_dict())
        members.append(m)
    ens = Ensemble(members)
    optimizer = make_optimizer(ens.params.values(), h)
    if start > 0:
        optimizer.load_state_dict(stack_states([steps.load_optimizer_state(d) for _, d in group]))
    ref = ref_ckpt.model
    ref_train = model_logprobs(ref, train.tokens, train.response_mask)
    betas = torch.tensor([w.key.beta for w in writers])[:, None]
    loss_fn = LOSSES[spec.key.loss]
    scratch = build_model(ref.cfg)

    ref_lean = Lean.of([ref]) if ens.lean is not None else None

    def save(step: int) -> None:
        state = optimizer.state_dict()
        evs: list = [None] * len(writers)
        if ref_lean is not None:  # every member at once (else each by `evaluate` as it saves)
            ens_now = Lean({k: v.detach() for k, v in ens.params.items()}, ref.cfg)
            finite = all(bool(torch.isfinite(v).all()) for v in ens_now.p.values())
            if finite:  # a diverged member is reported by its writer, unevaluated
                betas_ = [w.key.beta for w in writers]
                evs = evaluate_members(ens_now, ref_lean, data.test, betas_, spec.exact_threshold)
        for e, w in enumerate(writers):
            m = ens.member(e, into=scratch)
            w.save(step, m, member_state(state, e), drop_older=False, evaluation=evs[e])
        for w in writers:  # only now: until every member has saved `step`, all can go back
            w.drop_older_states(step)

    if start == 0:
        save(0)
    names = ", ".join(w.key.name for w in writers[:3]) + (" …" if len(writers) > 3 else "")
    bar = tqdm(
        total=first.total,
        initial=start,
        desc=f"{len(writers)} runs ({names})",
        disable=None if progress else True,
        leave=False,
    )
    diverged: list[TrainingDiverged] = []
    bad: set[int] = set()  # stays empty when resumed at the last step: nothing left to train
    for step in range(start + 1, first.total + 1):
        idx = batch_indices(spec.key.seed, step, train.n_pairs, h.batch_size)
        while True:
            lp = pair_logps(ens, train, idx, ref_train, ref, with_kl_pairs=spec.key.loss == "kto")
            losses = loss_fn(lp, betas).mean(-1)  # [member]
            bad = set((~torch.isfinite(losses)).nonzero().flatten().tolist())
            if not bad:
                break
            # a diverging member stops here, its saved checkpoints kept; the others go on
            diverged += [writers[e].diverged(step) for e in sorted(bad)]
            keep = [e for e in range(len(writers)) if e not in bad]
            if not keep:
                break
            state = optimizer.state_dict()
            ens = Ensemble([ens.member(e) for e in keep])
            optimizer = make_optimizer(ens.params.values(), h)
            optimizer.load_state_dict(stack_states([member_state(state, e) for e in keep]))
            writers, betas = [writers[e] for e in keep], betas[keep]
        if bad:
            break
        optimizer.zero_grad(set_to_none=True)
        with deterministic():  # the same bits in every process (see `deterministic`)
            losses.sum().backward()  # member e's parameters get exactly member e's gradient
        if h.grad_clip is not None:
            ens.clip_grad_norm_(h.grad_clip)
        optimizer.step()
        with torch.no_grad():
            stats = reward_stats(lp, betas)
        for e, w in enumerate(writers):
            w.log.add(
                step, {"loss": losses[e].item(), **{k: v[e].item() for k, v in stats.items()}}
            )
        bar.update(1)
        if step in first.save_at:
            save(step)
    bar.close()
    if not bad:
        for w in writers:
            w.finish()
    if diverged:
        names = ", ".join(d.args[0].split(":")[0] for d in diverged)
        raise TrainingDiverged(f"{diverged[0]} (diverged: {names}; the other runs finished)")
