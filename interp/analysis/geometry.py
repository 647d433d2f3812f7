"""Token-unembedding geometry, CHES and likelihood displacement.

Following Razin et al. ("Unintentional unalignment: likelihood displacement in direct
preference optimization"), a preference update moves the log-probability of other tokens
according to the geometry of the unembedding, and of whole responses according to the
geometry of the hidden states that predict them.

Conventions
- W_U is TransformerLens's raw [d_model, d_vocab] unembedding: no LayerNorm folding, no
  centering (checkpoints store raw weights for this reason); W_z = W_U[:, z]. The tokens
  studied are the task's response tokens (`task.response_tokens`; on the number line the
  digits 0-9 and EOS).
- Single-token quantities, for a pair whose responses first differ at token k (shared
  prefix y<k, tokens y⁺_k ≠ y⁻_k): ⟨W_{y⁺_k}, W_{y⁻_k}⟩, and for every other response
  token z the predicted direction of its log-probability change ⟨W_z, W_{y⁺_k} − W_{y⁻_k}⟩,
  set against the observed change log π(z | x, y<k) − log π_ref(z | x, y<k). W is the
  reference's.
- CHES (centered hidden embedding similarity) of a pair, on the reference:
  ⟨H⁺, H⁻⟩ − ‖H⁺‖², H± = Σ_k h(x, y±<k) summed over the positions that predict the
  response's tokens (EOS included), h being the input to the unembedding
  (`unembed.hook_in`: after the final LayerNorm). The length-normalised form uses the
  means H±/|y±| instead. Higher CHES predicts more likelihood displacement: a lower
  log π(y⁺) after training.
- Likelihood displacement over training, on the training pairs (the data DPO saw): mean
  log π(y⁺), log π(y⁻), the exact OOD mass, and the probability of the single most
  probable OOD response, at every saved step — the case study's hypothesis is
  π(y_OOD) > π(y⁺) > π(y⁻). OOD is the task's judge; for a task without one these
  numbers are None (not computable).
- Where the mass goes: the exact response distribution on the training prompts, grouped
  by the task's names for kinds of response (`task.response_kinds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from interp.core.data import Split
from interp.core.numberline import make_dataset
from interp.core.sampling import EXACT_THRESHOLD, ResponseTree, enumerate_responses
from interp.core.scoring import split_logprobs
from interp.core.stats import pearson, spearman
from interp.core.task import Task
from interp.lens import HookedTransformer
from interp.runs.store import resolve_pair

# ----------------------------------------------------------------------------- unembedding


@dataclass(frozen=True)
class Gram:
    """Norms, inner products and cosines of a set of unembedding vectors."""

    norm: Float[Tensor, " n_tokens"]
    inner: Float[Tensor, "n_tokens n_tokens"]
    cosine: Float[Tensor, "n_tokens n_tokens"]


def unembedding(
    model: HookedTransformer, tokens: Sequence[int]
) -> Float[Tensor, "n_tokens d_model"]:
    """Raw unembedding vectors of `tokens`, one row per token."""
    return model.W_U[:, list(tokens)].T.detach().float()


def gram(W: Float[Tensor, "n_tokens d_model"]) -> Gram:
    n = W.norm(dim=1)
    inner = W @ W.T
    return Gram(norm=n, inner=inner, cosine=inner / (n[:, None] * n[None, :]))


# ----------------------------------------------------------------------------- CHES


@dataclass(frozen=True)
class ChesScores:
    """CHES of every pair, from summed and from length-normalised hidden states."""

    ches: Float[Tensor, " n_pairs"]
    ches_normalised: Float[Tensor, " n_pairs"]


@dataclass(frozen=True)
class ChesSpearman:
    """Spearman of each CHES score against the change of log π(y⁺) (None: degenerate)."""

    ches: float | None
    ches_normalised: float | None


@torch.inference_mode()
def sequence_hidden_sums(
    model: HookedTransformer, split: Split
) -> tuple[Float[Tensor, "n_seqs d_model"], Int[Tensor, " n_seqs"]]:
    """Σ of the unembedding inputs over the positions that predict each sequence's response
    tokens, and the response lengths."""
    predicts = torch.zeros_like(split.response_mask)
    predicts[:, :-1] = split.response_mask[:, 1:]  # position t predicts token t + 1
    sums = []
    for toks, m in zip(split.tokens.split(2048), predicts.split(2048)):
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n == "unembed.hook_in")
        sums.append((cache["unembed.hook_in"].float() * m[..., None]).sum(1))
    return torch.cat(sums), split.response_mask.sum(1)


def ches(
    h_pos: Float[Tensor, "batch d_model"], h_neg: Float[Tensor, "batch d_model"]
) -> Float[Tensor, " batch"]:
    """CHES per pair from the summed (or mean) hidden states of the two responses."""
    return (h_pos * h_neg).sum(-1) - (h_pos * h_pos).sum(-1)


def ches_scores(model: HookedTransformer, split: Split) -> ChesScores:
    sums, lens = sequence_hidden_sums(model, split)
    hp, hn = sums[split.chosen], sums[split.rejected]
    lp, ln = lens[split.chosen, None].float(), lens[split.rejected, None].float()
    return ChesScores(ches=ches(hp, hn), ches_normalised=ches(hp / lp, hn / ln))


# ----------------------------------------------------------------------------- single tokens


@dataclass(frozen=True)
class TokenChanges:
    """How one trained model moved the next-token log-probabilities at the first
    difference of each pair, against the reference."""

    observed: Float[Tensor, "n_pairs n_tokens"]  # log π(z | ·) − log π_ref(z | ·)
    spearman_others: float | None  # predicted vs observed, tokens other than y⁺_k, y⁻_k
    pearson_others: float | None
    preferred_change: Float[Tensor, " n_pairs"]  # observed change of y⁺_k itself
    spearman_inner_vs_preferred: float | None  # ⟨W_y⁺, W_y⁻⟩ vs that change


@dataclass(frozen=True)
class SingleToken:
    """Single-token geometry of every training pair (see the module docstring)."""

    inner_pos_neg: Float[Tensor, " n_pairs"]  # ⟨W_y⁺_k, W_y⁻_k⟩
    k: Int[Tensor, " n_pairs"]  # index of the first differing token in the response
    predicted: Float[Tensor, "n_pairs n_tokens"]  # ⟨W_z, W_y⁺_k − W_y⁻_k⟩
    others: Bool[Tensor, "n_pairs n_tokens"]  # z is neither y⁺_k nor y⁻_k
    changes: dict[str, TokenChanges]  # "A" / "B"

    def to_json(self) -> dict[str, Any]:
        return {
            "inner_pos_neg": self.inner_pos_neg.tolist(),
            "k": self.k.tolist(),
            "predicted": self.predicted.tolist(),
            "others": self.others.tolist(),
        } | {
            who: {
                "observed": c.observed.tolist(),
                "spearman_others": c.spearman_others,
                "pearson_others": c.pearson_others,
                "preferred_change": c.preferred_change.tolist(),
                "spearman_inner_vs_preferred": c.spearman_inner_vs_preferred,
            }
            for who, c in self.changes.items()
        }


def first_difference(
    split: Split,
) -> tuple[
    Int[Tensor, " n_pairs"],
    Int[Tensor, " n_pairs"],
    Int[Tensor, " n_pairs"],
    Int[Tensor, " n_pairs"],
]:
    """For every pair: the position (in the sequence) predicting the first differing
    response token, that position's index k within the response, and the two tokens."""
    w, l = split.tokens[split.chosen], split.tokens[split.rejected]
    resp = split.response_mask[split.chosen]
    differ = (w != l) & resp
    pos = differ.float().argmax(1)  # first differing token (sequence position)
    start = resp.float().argmax(1)
    rows = torch.arange(len(w))
    return pos - 1, pos - start, w[rows, pos], l[rows, pos]


@torch.inference_mode()
def next_token_logprobs(
    model: HookedTransformer, split: Split, query: Int[Tensor, " n_pairs"]
) -> Float[Tensor, "n_pairs n_tokens"]:
    """log π(· | prefix) at each pair's query position, over the response tokens."""
    toks = split.tokens[split.chosen]
    tokens = list(split.task.response_tokens)
    out = []
    for t, q in zip(toks.split(2048), query.split(2048)):
        logits = model(t)[torch.arange(len(t)), q].float().log_softmax(-1)
        out.append(logits[:, tokens])
    return torch.cat(out)


def single_token(
    ref: HookedTransformer, models: dict[str, HookedTransformer], split: Split
) -> SingleToken:
    """Predicted vs observed changes of the other tokens' log-probabilities (see docstring)."""
    query, k, tok_w, tok_l = first_difference(split)
    tokens = split.task.response_tokens
    W = unembedding(ref, tokens)
    idx = {t: i for i, t in enumerate(tokens)}
    iw = torch.tensor([idx[int(t)] for t in tok_w])
    il = torch.tensor([idx[int(t)] for t in tok_l])
    inner = (W[iw] * W[il]).sum(-1)
    predicted = (W @ (W[iw] - W[il]).T).T  # [pair, token]
    others = torch.ones_like(predicted, dtype=torch.bool)
    others[torch.arange(len(iw)), iw] = False
    others[torch.arange(len(il)), il] = False
    base = next_token_logprobs(ref, split, query)
    changes = {}
    for who, m in models.items():
        obs = next_token_logprobs(m, split, query) - base
        preferred = obs[torch.arange(len(iw)), iw]
        changes[who] = TokenChanges(
            observed=obs,
            spearman_others=spearman(predicted[others], obs[others]),
            pearson_others=pearson(predicted[others], obs[others]),
            preferred_change=preferred,
            spearman_inner_vs_preferred=spearman(inner, preferred),
        )
    return SingleToken(
        inner_pos_neg=inner, k=k, predicted=predicted, others=others, changes=changes
    )


# ----------------------------------------------------------------------------- where the mass goes


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
    p = torch.where(ood, tree.logp[:, 0].double().exp(), torch.zeros(len(ood), dtype=torch.float64))
    out = torch.zeros(len(tree.prompts), dtype=torch.float64)
    return out.scatter_reduce(0, tree.leaf_prompt, p, reduce="amax")


# ----------------------------------------------------------------------------- displacement


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


# ----------------------------------------------------------------------------- the analysis


@dataclass
class GeometryResult:
    a: str
    b: str
    ref: str
    tokens: list[str]  # the response tokens' names, the index of every per-token array
    unembedding: dict[str, Gram]  # ref / A / B
    unembedding_shift: dict[str, Float[Tensor, " n_tokens"]]  # A / B: ‖W_z − W_ref,z‖
    single: SingleToken
    pairs: list[tuple[int, int, int]]  # training pairs (s, y⁺, y⁻), index of per-pair arrays
    ches: ChesScores
    preferred_change: dict[str, Float[Tensor, " n_pairs"]]  # A / B: log π(y⁺) − log π_ref(y⁺)
    ches_spearman: dict[str, ChesSpearman]  # A / B
    displacement: dict[str, list[DisplacementPoint]]  # A / B: one per saved step
    mass: dict[str, dict[str, float]]  # ref / A / B -> response kind -> mean probability
    exact_threshold: float
    checkpoints: list[dict[str, Any]]

    def to_json(self, findings: list[str]) -> dict[str, Any]:
        """The report's `data`, in the layout of its JSON twin; `findings` is the page's
        prose, stored last."""
        point_fields = [f.name for f in dataclasses.fields(DisplacementPoint)]
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "tokens": list(self.tokens),
            "unembedding": {
                who: {
                    "norm": g.norm.tolist(),
                    "inner": g.inner.tolist(),
                    "cosine": g.cosine.tolist(),
                }
                for who, g in self.unembedding.items()
            },
            "unembedding_shift": {who: s.tolist() for who, s in self.unembedding_shift.items()},
            "single": self.single.to_json(),
            "pairs": [list(p) for p in self.pairs],
            "ches": {
                "ches": self.ches.ches.tolist(),
                "ches_normalised": self.ches.ches_normalised.tolist(),
            },
            "preferred_change": {who: c.tolist() for who, c in self.preferred_change.items()},
            "ches_spearman": {
                who: {"ches": r.ches, "ches_normalised": r.ches_normalised}
                for who, r in self.ches_spearman.items()
            },
            "displacement": {
                who: {name: [getattr(p, name) for p in points] for name in point_fields}
                for who, points in self.displacement.items()
            },
            "mass": {who: dict(m) for who, m in self.mass.items()},
            "exact_threshold": self.exact_threshold,
            "checkpoints": [dict(c) for c in self.checkpoints],
            "findings": list(findings),
        }


def run_geometry(
    a: str,
    b: str,
    root: Path | None = None,
    exact_threshold: float = EXACT_THRESHOLD,
    progress: bool = True,
) -> GeometryResult:
    pair = resolve_pair(a, b, root)
    ref_ck = pair.ref.checkpoint()
    ref = ref_ck.model
    finals = {"A": pair.a.checkpoint(), "B": pair.b.checkpoint()}
    models = {k: c.model for k, c in finals.items()}
    data = make_dataset(pair.a.key.preset, pair.a.key.seed)
    train, task = data.train, data.task

    W = {"ref": unembedding(ref, task.response_tokens)}
    W |= {k: unembedding(m, task.response_tokens) for k, m in models.items()}
    shift = {k: (W[k] - W["ref"]).norm(dim=1) for k in models}

    scores = ches_scores(ref, train)
    ref_seq = split_logprobs(ref, train)
    change = {k: (split_logprobs(m, train) - ref_seq)[train.chosen] for k, m in models.items()}

    used = [ref_ck]
    disp: dict[str, list[DisplacementPoint]] = {}
    for who, r in (("A", pair.a), ("B", pair.b)):
        disp[who] = []
        for c in tqdm(
            r.trajectory(),
            desc=f"displacement {who}",
            disable=None if progress else True,
            leave=False,
        ):
            disp[who].append(displacement_point(c.model, train, c.step, exact_threshold))
            used.append(c)

    mass = {
        k: mass_by_kind(
            enumerate_responses(m, task, train.prompts, task.max_new_tokens, exact_threshold), task
        )
        for k, m in ({"ref": ref} | models).items()
    }
    return GeometryResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        tokens=[task.vocab[t] for t in task.response_tokens],
        unembedding={k: gram(w) for k, w in W.items()},
        unembedding_shift=shift,
        single=single_token(ref, models, train),
        pairs=list(
            zip(
                train.pair_prompt.tolist(),
                train.seq_response[train.chosen].tolist(),
                train.seq_response[train.rejected].tolist(),
            )
        ),
        ches=scores,
        preferred_change=change,
        ches_spearman={
            k: ChesSpearman(spearman(scores.ches, c), spearman(scores.ches_normalised, c))
            for k, c in change.items()
        },
        displacement=disp,
        mass=mass,
        exact_threshold=exact_threshold,
        checkpoints=[{"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in used],
    )
