"""SFT and preference training; `python -m interp.train`.

SFT on (s, preferred) pairs gives the reference policy `ref` (Eq. 4). A preference run
(DPO, Eq. 2, or a relative from `interp.losses`) starts from `ref`'s final weights; the
reference's log-probabilities of every training sequence are computed once, in eval mode,
through the same scoring function as the policy's, and cached.

Determinism: initialisation draws from the seed; the order of examples in epoch e is a
permutation drawn from (seed, e) alone, so it does not depend on β or the loss, and a run
resumed from a checkpoint sees exactly the batches it would have seen. A run saves step 0
and `n_checkpoints` evenly spaced steps up to its last, each with the optimizer state of
the newest one (deleted when the run completes), and evaluates every saved checkpoint on
the test split (`interp.metrics.evaluate`, exact metrics included), storing the result in
the checkpoint's meta.json so that analyses need not recompute it.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from interp import checkpoints as ck
from interp.checkpoints import Checkpoint, PolicyKey, Run
from interp.cli import UserError, option, parse, run
from interp.data import PRESETS, Dataset, Split, encode_pairs, make_dataset
from interp.lens import HookedTransformer
from interp.losses import LOSSES, PairLogps, reward_stats, sequence_logprobs, sft_loss
from interp.metrics import (
    EXACT_THRESHOLD,
    eval_settings,
    eval_table,
    evaluate,
    model_logprobs,
    split_logprobs,
)
from interp.model import CASE_STUDY, ModelSpec, build_model


@dataclass(frozen=True)
class Hyper:
    """Optimisation settings of one training stage."""

    epochs: int
    optimizer: str  # adam | adamw | rmsprop
    lr: float
    batch_size: int
    grad_clip: float | None = None
    weight_decay: float = 0.0


# The case study's settings (§3.3). AdamW's "standard weight decay" is torch's 0.01.
STAGES: dict[str, dict[str, Hyper]] = {
    "sweep": {
        "sft": Hyper(epochs=10, optimizer="adam", lr=1e-3, batch_size=16),
        "pref": Hyper(epochs=3, optimizer="rmsprop", lr=5e-5, batch_size=16),
    },
    "grokking": {
        "sft": Hyper(100, "adamw", 1e-4, 512, grad_clip=5.0, weight_decay=0.01),
        "pref": Hyper(100, "adamw", 1e-4, 512, grad_clip=5.0, weight_decay=0.01),
    },
    # for tests and smoke runs: seconds, not minutes
    "tiny": {
        "sft": Hyper(epochs=4, optimizer="adam", lr=3e-3, batch_size=16),
        "pref": Hyper(epochs=2, optimizer="rmsprop", lr=3e-4, batch_size=16),
    },
}

DEFAULT_POLICIES = ("ref", "beta0.01", "beta1.0")


def paper_betas() -> list[float]:
    """The case study's 30 β values, log-spaced in [0.01, 1] (three significant digits)."""
    return [ck.round_beta(b) for b in np.logspace(-2, 0, 30)]


class TrainingDiverged(UserError):
    """A non-finite loss; the checkpoints saved before it are kept."""


@dataclass(frozen=True)
class RunSpec:
    key: PolicyKey
    hyper: Hyper
    model: ModelSpec = CASE_STUDY
    n_checkpoints: int = 30
    exact_threshold: float | None = EXACT_THRESHOLD  # None: no exact metrics at checkpoints

    @classmethod
    def for_key(
        cls,
        key: PolicyKey,
        model: ModelSpec = CASE_STUDY,
        n_checkpoints: int = 30,
        exact_threshold: float | None = EXACT_THRESHOLD,
    ) -> RunSpec:
        stage = "sft" if key.is_ref else "pref"
        return cls(key, STAGES[key.preset][stage], model, n_checkpoints, exact_threshold)


def make_optimizer(params: Iterable[torch.nn.Parameter], h: Hyper) -> torch.optim.Optimizer:
    if h.optimizer == "adam":
        return torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)
    if h.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay)
    if h.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=h.lr, weight_decay=h.weight_decay)
    raise ValueError(f"unknown optimizer {h.optimizer!r}")


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """Step 0 and `n_checkpoints` evenly spaced steps ending at the last one."""
    return sorted({int(round(x)) for x in np.linspace(0, total_steps, n_checkpoints + 1)})


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the n training examples in one epoch: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """Example indices of training step `step` (1-based); an epoch's last batch may be short."""
    per_epoch = math.ceil(n / batch_size)
    epoch, i = divmod(step - 1, per_epoch)
    return epoch_order(seed, epoch, n)[i * batch_size : (i + 1) * batch_size]


# ----------------------------------------------------------------------------- one step


def sft_step_loss(
    model: HookedTransformer, split: Split, idx: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    seq = split.chosen[idx]
    tokens, mask = split.tokens[seq], split.response_mask[seq]
    loss = sft_loss(model(tokens, return_type="logits"), tokens, mask).mean()
    return loss, {}


def pair_logps(
    model: HookedTransformer,
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
        kt, km = encode_pairs(split.seq_prompt[w].tolist(), split.seq_response[w].roll(1).tolist())
        with torch.no_grad():
            logits = model(kt, return_type="logits")
            out.kl_logratio = sequence_logprobs(logits, kt, km) - model_logprobs(ref, kt, km)
    return out


# ----------------------------------------------------------------------------- a run


def _run_info(spec: RunSpec, data: Dataset, total: int, save_at: list[int]) -> dict[str, Any]:
    key = spec.key
    return {
        "policy": key.name,
        "preset": key.preset,
        "loss": key.loss,
        "beta": key.beta,
        "seed": key.seed,
        "reference": None if key.is_ref else key.reference.name,
        "hyper": asdict(spec.hyper),
        "model": asdict(spec.model),
        "n_train_pairs": data.train.n_pairs,
        "n_test_pairs": data.test.n_pairs,
        "total_steps": total,
        "steps_per_epoch": math.ceil(data.train.n_pairs / spec.hyper.batch_size),
        "checkpoint_steps": save_at,
        "status": "running",
    }


_SETTINGS = (
    "preset", "loss", "beta", "seed", "hyper", "model", "total_steps", "checkpoint_steps",
    "reference_sha256",
)  # fmt: skip


def _resume_point(rdir: Path, info: dict[str, Any]) -> tuple[int, Path] | None:
    """The newest checkpoint of an unfinished run that holds optimizer state, if any."""
    if not (rdir / ck.RUN_FILE).exists():
        return None
    old = ck.read_json(rdir / ck.RUN_FILE)
    changed = [k for k in _SETTINGS if old.get(k) != info.get(k)]
    if changed:
        raise UserError(
            f"{rdir} holds an unfinished run with other settings ({', '.join(changed)}); "
            "delete that folder to start over"
        )
    for step in reversed(ck.saved_steps(rdir)):
        d = rdir / ck.step_dirname(step)
        if (d / ck.OPTIM_FILE).exists():
            return step, d
    return None


@dataclass
class TrainLog:
    """Per-step training log, as columns."""

    columns: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, row: dict[str, float]) -> None:
        self.columns.setdefault("step", []).append(step)
        for k, v in row.items():
            self.columns.setdefault(k, []).append(float(v))

    def truncate(self, last_step: int) -> TrainLog:
        keep = [i for i, s in enumerate(self.columns.get("step", [])) if s <= last_step]
        return TrainLog({k: [v[i] for i in keep] for k, v in self.columns.items()})


class RunWriter:
    """One run's folder: run.json, the training log, and evaluated checkpoints.

    Shared by the one-run trainer here and the batched trainer in `interp.ensemble`, so a
    run's files are the same whichever trained it.
    """

    def __init__(
        self,
        spec: RunSpec,
        root: Path | None,
        data: Dataset,
        ref_ckpt: Checkpoint | None,
        ref_test: torch.Tensor | None = None,
    ):
        self.spec, self.key, self.data = spec, spec.key, data
        self.rdir = ck.run_dir(spec.key, root)
        self.ref = ref_ckpt.model if ref_ckpt is not None else None
        self.ref_sha = ref_ckpt.sha256 if ref_ckpt is not None else None
        self.per_epoch = math.ceil(data.train.n_pairs / spec.hyper.batch_size)
        self.total = spec.hyper.epochs * self.per_epoch
        self.save_at = checkpoint_steps(self.total, spec.n_checkpoints)
        self.info = _run_info(spec, data, self.total, self.save_at)
        self.info["reference_sha256"] = self.ref_sha
        self.log = TrainLog()
        self._ref_test = ref_test
        self._t0 = time.time()

    @property
    def ref_test(self) -> torch.Tensor | None:
        """The reference's log-probs of the test sequences (the scoring path evaluate() uses)."""
        if self._ref_test is None and self.ref is not None:
            self._ref_test = split_logprobs(self.ref, self.data.test)
        return self._ref_test

    def begin(self) -> tuple[int, Path | None]:
        """Write run.json; the step to start from and the checkpoint to resume (or None)."""
        resume = _resume_point(self.rdir, self.info)
        if resume is None:
            if self.rdir.exists():
                shutil.rmtree(self.rdir)  # an unfinished run that saved nothing resumable
            ck.write_json(self.rdir / ck.RUN_FILE, self.info)
            return 0, None
        start, d = resume
        self.log = TrainLog(Run(self.key, self.rdir).log()).truncate(start)
        old = ck.read_json(self.rdir / ck.RUN_FILE)
        self.info["resumed_from"] = old.get("resumed_from", []) + [start]
        print(f"resuming {self.key.name} from step {start}", file=sys.stderr)
        ck.write_json(self.rdir / ck.RUN_FILE, self.info)
        return start, d

    def save(self, step: int, model: HookedTransformer, optimizer_state: dict) -> None:
        """Evaluate the model on the test split and write the checkpoint of `step`."""
        spec = self.spec
        ev = evaluate(
            model, self.data.test, self.ref, self.key.beta, self.ref_test, spec.exact_threshold
        )
        meta = {
            **{k: self.info[k] for k in ("policy", "preset", "loss", "beta", "seed", "reference")},
            "epoch": step / self.per_epoch,
            "reference_sha256": self.ref_sha,
            "eval": ev,
            "eval_settings": eval_settings(spec.exact_threshold, self.data.task),
        }
        # log first: if we die before the checkpoint lands, resuming truncates the log to
        # the previous checkpoint; the other order would lose rows.
        ck.write_json(self.rdir / ck.LOG_FILE, self.log.columns)
        d = ck.save_checkpoint(self.rdir, step, model, meta, optimizer_state)
        ck.drop_optimizer_state(self.rdir, keep=d)

    def diverged(self, step: int) -> TrainingDiverged:
        last = max([s for s in self.save_at if s < step], default=0)
        return TrainingDiverged(
            f"{self.key.name}: non-finite loss at step {step}; checkpoints up to step {last} "
            f"are kept in {self.rdir} (lower the learning rate or check β)"
        )

    def finish(self) -> Run:
        self.info.update(status="complete", wall_time_s=round(time.time() - self._t0, 2))
        ck.write_json(self.rdir / ck.RUN_FILE, self.info)
        ck.drop_optimizer_state(self.rdir)  # only once "complete" is on disk
        return Run(self.key, self.rdir)


def check_settings(spec: RunSpec, root: Path | None = None) -> None:
    """A finished run on disk must have been trained as `spec` asks; UserError if not."""
    rdir = ck.run_dir(spec.key, root)
    old = ck.read_json(rdir / ck.RUN_FILE)
    data = make_dataset(spec.key.preset, spec.key.seed)
    total = spec.hyper.epochs * math.ceil(data.train.n_pairs / spec.hyper.batch_size)
    want = {
        "hyper": asdict(spec.hyper),
        "model": asdict(spec.model),
        "checkpoint_steps": checkpoint_steps(total, spec.n_checkpoints),
    }
    changed = [k for k, v in want.items() if old.get(k) != v]
    if changed:
        raise UserError(
            f"{spec.key.name} in {rdir.parent} was trained with other settings "
            f"({', '.join(changed)}); use another --checkpoints folder or delete that run"
        )


def is_complete(key: PolicyKey, root: Path | None = None) -> bool:
    info = ck.run_dir(key, root) / ck.RUN_FILE
    return info.exists() and ck.read_json(info).get("status") == "complete"


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
    if is_complete(key, root):
        return Run(key, ck.run_dir(key, root))
    data = data or make_dataset(key.preset, key.seed)
    train, h = data.train, spec.hyper
    ref_ckpt = None if key.is_ref else ck.find_run(key.reference, root).checkpoint()
    model = initial_policy(spec, ref_ckpt)
    optimizer = make_optimizer(model.parameters(), h)
    writer = RunWriter(spec, root, data, ref_ckpt)
    start, resume_dir = writer.begin()
    if resume_dir is not None:
        model.load_state_dict(ck.load_weights(resume_dir)[0].state_dict())
        optimizer.load_state_dict(ck.load_optimizer_state(resume_dir))
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
    for step in range(start + 1, writer.total + 1):
        idx = batch_indices(key.seed, step, train.n_pairs, h.batch_size)
        if key.is_ref:
            loss, row = sft_step_loss(model, train, idx)
        else:
            lp = pair_logps(model, train, idx, ref_train, ref, with_kl_pairs=key.loss == "kto")
            loss = loss_fn(lp, beta).mean()
            with torch.no_grad():
                row = {k: v.item() for k, v in reward_stats(lp, beta).items()}
        if not torch.isfinite(loss):
            raise writer.diverged(step)
        optimizer.zero_grad(set_to_none=True)
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


def ensure_trained(
    keys: Sequence[PolicyKey],
    root: Path | None = None,
    model: ModelSpec = CASE_STUDY,
    n_checkpoints: int = 30,
    progress: bool = True,
    announce: bool = True,
    exact_threshold: float | None = EXACT_THRESHOLD,
    ensemble: bool = True,
    strict: bool = False,
) -> list[Run]:
    """Train whatever of `keys` (and their references) is missing or unfinished, references
    first. Preference runs that differ only in β are trained together as one batched
    ensemble (`interp.ensemble`) unless `ensemble` is False. With `strict`, a finished run
    among `keys` must also have the requested hyper-parameters, architecture and
    checkpoint schedule (an experiment that reads every epoch cannot use a run saved 30
    times). Returns the runs of `keys`."""
    from interp.ensemble import train_ensemble

    def spec(k: PolicyKey) -> RunSpec:
        return RunSpec.for_key(k, model, n_checkpoints, exact_threshold)

    if strict:  # the runs asked for, not their references (ask for those to check them)
        for k in keys:
            if is_complete(k, root):
                check_settings(spec(k), root)

    def say(ks: Sequence[PolicyKey]) -> None:
        for k in ks:
            if announce and not is_complete(k, root):
                print(
                    f"training {k.name} ({k.preset} preset) into {ck.run_dir(k, root)}",
                    file=sys.stderr,
                )

    refs = list(dict.fromkeys(k if k.is_ref else k.reference for k in keys))
    say(refs)
    for k in refs:
        train_run(spec(k), root, progress)
    groups: dict[tuple, list[PolicyKey]] = {}
    for k in dict.fromkeys(k for k in keys if not k.is_ref):
        groups.setdefault((k.preset, k.loss, k.seed), []).append(k)
    for group in groups.values():
        say(group)
        pending = [k for k in group if not is_complete(k, root)]
        if ensemble and len(pending) > 1:
            train_ensemble([spec(k) for k in pending], root, progress)
        else:
            for k in pending:
                train_run(spec(k), root, progress)
    return [Run(k, ck.run_dir(k, root)) for k in keys]


def ensure_default_policies(names: Sequence[str], root: Path | None = None) -> None:
    """Train those of `names` that are default policies (`DEFAULT_POLICIES`) and missing.

    Any other name is left alone: an unknown one should fail, not start a training run.
    """
    defaults = {ck.parse_policy(n) for n in DEFAULT_POLICIES}
    keys = [ck.parse_policy(n) for n in names]
    for k in keys:  # anything else must exist already: fail before training a thing
        if k not in defaults:
            ck.find_run(k, root)
    ensure_trained([k for k in keys if k in defaults], root)


# ----------------------------------------------------------------------------- CLI


def summary_table(runs: Sequence[Run]) -> str:
    """The final evaluation of each run, as a text table."""
    rows = []
    for r in runs:
        c = r.checkpoint()
        rows.append((r.name, c.step, c.eval))
    return eval_table(rows)


@dataclass
class TrainOptions:
    betas: list[str] = option(
        [],
        help="β values to train, or 'paper' for the case study's 30 values log-spaced in "
        "[0.01, 1]; with none, only the reference is trained",
    )
    loss: str = option("dpo", help="preference loss", choices=sorted(LOSSES))
    preset: str = option(
        "sweep", help="task preset and its hyper-parameters", choices=sorted(PRESETS)
    )
    seeds: list[int] = option([0], help="seeds (data split, initialisation, batch order)")
    checkpoints: str = option(str(ck.default_root()), help="checkpoint root folder")
    n_checkpoints: int = option(30, help="checkpoints saved after step 0, evenly spaced")
    n_layers: int = option(1, help="transformer layers")
    d_model: int = option(128, help="residual width")
    n_heads: int = option(4, help="attention heads (d_head = d_model / n_heads)")
    d_mlp: int = option(128, help="MLP hidden width")
    exact_threshold: float = option(
        EXACT_THRESHOLD,
        help="exact metrics at each checkpoint expand prefixes this probable; 0 = off",
    )
    ensemble: bool = option(True, help="train the β values of a seed together as one batched model")
    progress: bool = option(True, help="show progress bars")


def parse_betas(values: Sequence[str]) -> list[float]:
    if list(values) == ["paper"]:
        return paper_betas()
    out = []
    for v in values:
        try:
            b = float(v)
        except ValueError:
            raise UserError(f"--betas: {v!r} is not a number (or give just 'paper')") from None
        if not (math.isfinite(b) and b > 0):
            raise UserError(f"--betas: β must be a positive number, not {v}")
        out.append(ck.round_beta(b))
    return list(dict.fromkeys(out))


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.train`: train the reference (if missing) and preference runs."""
    prog = "python -m interp.train"
    opts = parse(
        TrainOptions, argv, prog, "Train the SFT reference and preference (DPO-family) runs."
    )

    def body() -> int:
        if opts.n_checkpoints < 1:
            raise UserError("--n-checkpoints must be at least 1")
        try:
            spec = ModelSpec(opts.n_layers, opts.d_model, opts.n_heads, opts.d_mlp)
        except ValueError as e:
            raise UserError(str(e)) from None
        betas = parse_betas(opts.betas)
        keys = []
        for seed in opts.seeds:
            keys.append(PolicyKey(opts.preset, "sft", None, seed))
            keys += [PolicyKey(opts.preset, opts.loss, b, seed) for b in betas]
        root = Path(opts.checkpoints)
        t0 = time.time()
        if not 0 <= opts.exact_threshold < 1:
            raise UserError("--exact-threshold must be in [0, 1)")
        threshold = opts.exact_threshold or None
        runs = ensure_trained(
            keys, root, spec, opts.n_checkpoints, opts.progress, True, threshold, opts.ensemble
        )
        print(summary_table(runs))
        print(f"checkpoints in {root} ({time.time() - t0:.0f} s)")
        return 0

    return run(body, prog)


if __name__ == "__main__":
    sys.exit(main())
