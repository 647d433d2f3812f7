"""Activation patching, across two policies and within one.

**Across policies.** Run policy A on some tokens, but replace one activation — a hook
site at one position — with the activation policy B computes on the same tokens, and see
how far A's output moves toward B's. Sites: each layer's `resid_pre`, each head's output
`z`, `attn_out`, `mlp_out` and `resid_post`. The tokens are a prompt where A answers out
of distribution and B does not (by the task's judge), followed by B's answer
(teacher-forced, EOS dropped). The *decision position* q* is the first position where
A's next-token choice differs from B's token. Per prompt, at q*:
- `recovered`: how much of the log-probability gap on B's token b the patch closes,
  Σ_prompts (log p(b) − log p_A(b)) / Σ_prompts (log p_B(b) − log p_A(b)): 0 = A
  unchanged, 1 = as sure of b as B is. A ratio of sums, so prompts where A and B nearly
  agree cannot blow it up (the per-prompt gains and gaps are in the JSON twin);
- `kl_to_b`: KL(p_B ‖ p) of the next-token distributions (A's own value is the baseline);
- `fixed`: greedy decoding of A with the patch applied at every step (B's activation
  recomputed on the sequence generated so far) gives an in-distribution answer.
A residual-stream patch at the last layer's `resid_post` replaces everything the model
computed there, so it yields A's *readout* (final LayerNorm and unembedding) of B's
stream; it equals B's logits only where A's readout equals B's (tested).

**Within one policy** (TransformerLens's `patching` module): clean/corrupted prompts that
differ at one prompt position (`task.corrupt`; on the number line one digit — "305=3" vs
"315=3" for the tens digit), with the task's reference answer teacher-forced up to that
place, and the normalised logit difference between the clean and the corrupted token at
the last position (1 = clean behaviour restored, 0 = corrupted behaviour). Patching the
clean run's activation at each (site, position) into the corrupted run shows which
positions and heads carry each prompt token into the answer. A task that cannot corrupt
a prompt (or knows no reference answer) makes this part not computable; a task without a
judge makes the cross-policy part not computable.

The engine (`interp.analysis.interventions`: `Site`, `patched`, `patch_grid`) takes
TransformerLens's patch setters and any metric from logits to per-prompt numbers; the
analyses here sit on top of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analysis.interventions import Site, patch_grid, run_patched, sites
from interp.core.data import modal_prompts
from interp.core.numberline import make_dataset
from interp.core.sampling import Responses, greedy
from interp.core.task import Task
from interp.errors import UserError
from interp.lens import HookedTransformer, patching, quiet_patching
from interp.options import option
from interp.runs.store import resolve_pair


@dataclass
class PatchingSettings:
    """The knobs of a patching run (a command's options inherit them, help included)."""

    max_prompts: int = option(64, help="prompts per analysis, evenly spread over the test split")
    seed: int = option(0, help="seed of the corrupted digits")

    def validate(self) -> None:
        if self.max_prompts < 1:
            raise UserError("--max-prompts must be at least 1")


# ----------------------------------------------------------------------------- across policies


@dataclass
class CrossPatching:
    """B's activations patched into A, per (site, position) and prompt."""

    sites: list[str]
    positions: list[str]
    prompts: list[int]
    decision_pos: list[int]
    gain: Float[Tensor, "site pos batch"]  # log p(b) − log p_A(b) at the decision position
    kl_to_b: Float[Tensor, "site pos batch"]
    fixed: Float[Tensor, "site pos batch"]  # 1 where the patched greedy answer is in-distribution
    gap: Float[Tensor, " batch"]  # log p_B(b) − log p_A(b)
    baseline_kl_to_b: Float[Tensor, " batch"]  # KL(p_B ‖ p_A) at the decision position

    @property
    def recovered(self) -> Float[Tensor, "site pos"]:
        """Σ gain / Σ gap over the prompts."""
        return self.gain.sum(-1) / self.gap.sum()

    @property
    def mean_kl_to_b(self) -> Float[Tensor, "site pos"]:
        """KL(p_B ‖ p) averaged over the prompts."""
        return self.kl_to_b.mean(-1)

    @property
    def fixed_share(self) -> Float[Tensor, "site pos"]:
        """The share of prompts whose patched greedy answer is in-distribution."""
        return self.fixed.mean(-1)

    def to_json(self) -> dict[str, Any]:
        return {
            "sites": self.sites,
            "positions": self.positions,
            "prompts": self.prompts,
            "decision_pos": self.decision_pos,
            "gain": self.gain.tolist(),
            "kl_to_b": self.kl_to_b.tolist(),
            "fixed": self.fixed.tolist(),
            "gap": self.gap.tolist(),
            "baseline_kl_to_b": self.baseline_kl_to_b.tolist(),
        }


@dataclass(frozen=True)
class Decision:
    """Where A first departs from B's teacher-forced tokens, and the metric there."""

    pos: Int[Tensor, " batch"]  # the decision position q* of each row
    token: Int[Tensor, " batch"]  # B's token b at q*
    logp_a: Float[Tensor, "batch d_vocab"]  # A's next-token log-probabilities at q*
    logp_b: Float[Tensor, "batch d_vocab"]  # B's
    gap: Float[Tensor, " batch"]  # log p_B(b) − log p_A(b)
    baseline_kl: Float[Tensor, " batch"]  # KL(p_B ‖ p_A)

    def metric(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch 2"]:
        """(gain on B's token, KL(p_B ‖ p)) of patched logits at each row's q*."""
        rows = torch.arange(len(self.pos))
        lp = logits[rows, self.pos].float().log_softmax(-1)
        kl = (self.logp_b.exp() * (self.logp_b - lp)).sum(-1)
        return torch.stack([lp[rows, self.token] - self.logp_a[rows, self.token], kl], dim=-1)


def decision_metric(
    tokens: Int[Tensor, "batch pos"],
    a_logits: Float[Tensor, "batch pos d_vocab"],
    b_logits: Float[Tensor, "batch pos d_vocab"],
    plen: int,
    eos: int,
) -> Decision:
    """The decision position per row (B's tokens are `tokens` after the prompt, then `eos`),
    and A's and B's next-token distributions there."""
    n, t = tokens.shape
    target = torch.cat([tokens[:, 1:], torch.full((n, 1), eos)], dim=1)  # B's next tokens
    differs = a_logits.argmax(-1) != target
    differs[:, : plen - 1] = False
    q = torch.where(differs.any(1), differs.float().argmax(1), torch.full((n,), t - 1))
    rows = torch.arange(n)
    b_tok = target[rows, q]
    lp_a = a_logits[rows, q].log_softmax(-1)
    lp_b = b_logits[rows, q].log_softmax(-1)
    return Decision(
        pos=q,
        token=b_tok,
        logp_a=lp_a,
        logp_b=lp_b,
        gap=lp_b[rows, b_tok] - lp_a[rows, b_tok],
        baseline_kl=(lp_b.exp() * (lp_b - lp_a)).sum(-1),
    )


@torch.inference_mode()
def greedy_patched(
    a: HookedTransformer,
    b: HookedTransformer,
    task: Task,
    prompts: Int[Tensor, " batch"],
    site: Site,
    pos: int,
    limit: int,
) -> Responses:
    """A's greedy responses with (site, pos) taken from B's run on the same sequence at
    every step (prompts of one length). Positions not yet generated are left alone."""
    toks = torch.tensor([task.prompt_ids(int(s)) for s in prompts])
    plen = toks.shape[1]
    for _ in range(limit):
        if pos < toks.shape[1]:
            _, cache = b.run_with_cache(toks, names_filter=lambda n: n == site.hook)
            logits = run_patched(a, toks, cache, [(site, pos)])
        else:
            logits = a(toks)
        toks = torch.cat([toks, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    generated = toks[:, plen:]
    is_eos = generated == task.eos
    lengths = torch.where(
        is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full((len(toks),), limit)
    )
    after = torch.arange(limit)[None, :] >= lengths[:, None]
    return Responses(prompts, generated.masked_fill(after, task.pad), lengths)


@dataclass(frozen=True)
class Divergence:
    """Greedy answers of A and B, judged: the rows where A is OOD and B is not."""

    rows: list[int]
    b_answers: Responses


def divergence(
    a: HookedTransformer, b: HookedTransformer, task: Task, prompts: Int[Tensor, " batch"]
) -> Divergence | None:
    """The prompts where A's greedy answer is OOD and B's is not; None when the task has
    no judge (cross-policy patching is then not computable)."""
    ga = greedy(a, task, prompts, task.max_new_tokens)
    gb = greedy(b, task, prompts, task.max_new_tokens)
    ja, jb = task.judge(prompts, ga.tokens, ga.lengths), task.judge(prompts, gb.tokens, gb.lengths)
    if ja is None or jb is None:
        return None
    return Divergence((ja.ood & ~jb.ood).nonzero().flatten().tolist(), gb)


def without_eos(task: Task, ids: Sequence[int]) -> list[int]:
    """A response's tokens with a final EOS dropped (for teacher forcing)."""
    ids = list(ids)
    return ids[:-1] if ids and ids[-1] == task.eos else ids


def cross_policy(
    a: HookedTransformer,
    b: HookedTransformer,
    task: Task,
    prompts: Int[Tensor, " batch"],
    div: Divergence,
    max_prompts: int = 64,
) -> CrossPatching | None:
    """Patch B's activations into A on the prompts where A is OOD and B is not (see the
    module docstring); None when there are no such prompts."""
    if not div.rows:
        return None
    gb = div.b_answers
    # one shape of input: the most common (prompt length, answer length) among the picks
    shapes = [(len(task.prompt_ids(int(prompts[i]))), int(gb.lengths[i])) for i in div.rows]
    common = max(set(shapes), key=shapes.count)
    picks = spread([i for i, sh in zip(div.rows, shapes) if sh == common], max_prompts)
    sel = prompts[torch.tensor(picks)]
    tokens = torch.tensor(
        [
            task.prompt_ids(int(prompts[i]))
            + without_eos(task, gb.tokens[i, : int(gb.lengths[i])].tolist())
            for i in picks
        ]
    )
    plen = common[0]
    with torch.inference_mode():
        a_logits = a(tokens)
        b_logits, b_cache = b.run_with_cache(tokens)
    decision = decision_metric(tokens, a_logits, b_logits, plen, task.eos)
    site_list = sites(a)
    grid = patch_grid(a, tokens, b_cache, site_list, decision.metric)  # [site, pos, prompt, 2]
    fixed = torch.zeros(grid.shape[:3])
    for i, s in enumerate(site_list):
        for p in range(tokens.shape[1]):
            resp = greedy_patched(a, b, task, sel, s, p, task.max_new_tokens)
            verdict = task.judge(sel, resp.tokens, resp.lengths)  # not None: `div` was judged
            fixed[i, p] = verdict.ood.logical_not().float()
    return CrossPatching(
        sites=[s.label for s in site_list],
        positions=task.position_labels(int(sel[0]), tokens.shape[1] - plen),
        prompts=sel.tolist(),
        decision_pos=decision.pos.tolist(),
        gain=grid[..., 0],
        kl_to_b=grid[..., 1],
        fixed=fixed,
        gap=decision.gap,
        baseline_kl_to_b=decision.baseline_kl,
    )


def spread(items: Sequence[int], n: int) -> list[int]:
    """At most n of the items, evenly spaced (the test prompts are sorted: taking the
    first n would favour the small ones)."""
    items = list(items)
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] if n > 1 else items[0] for i in range(n)]


# ----------------------------------------------------------------------------- within a policy


@dataclass(frozen=True)
class PlacePairs:
    """Clean and corrupted inputs that differ at one prompt place, the reference answer
    teacher-forced up to that place; and the prompt token there in each."""

    place: str
    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    clean_token: Int[Tensor, " batch"]
    corrupted_token: Int[Tensor, " batch"]
    positions: list[str]


def place_pairs(
    task: Task, prompts: Int[Tensor, " batch"], place: int, seed: int = 0
) -> PlacePairs | None:
    """The pairs for prompt place `place` (one corrupting draw per prompt, in order, from a
    generator seeded with seed + place); None when the task cannot corrupt a prompt there
    or knows no reference answer."""
    g = torch.Generator().manual_seed(seed + place)
    clean, corrupted = [], []
    for s in prompts.tolist():
        other, answer = task.corrupt(s, place, g), task.reference_response(s)
        if other is None or answer is None:
            return None
        forced = task.response_ids(answer)[:place]
        clean.append(task.prompt_ids(s) + forced)
        corrupted.append(task.prompt_ids(other) + forced)
    clean_t, corrupted_t = torch.tensor(clean), torch.tensor(corrupted)
    first = int(prompts[0])
    return PlacePairs(
        place=task.prompt_places(first)[place],
        clean=clean_t,
        corrupted=corrupted_t,
        clean_token=clean_t[:, place],
        corrupted_token=corrupted_t[:, place],
        positions=task.position_labels(first, place),
    )


def within_pairs(
    task: Task, prompts: Int[Tensor, " batch"], seed: int = 0
) -> list[PlacePairs] | None:
    """The pairs of every place the task can corrupt (prompts of one length); None when
    there is none: within-policy patching is then not computable."""
    out = []
    for k in range(len(task.prompt_places(int(prompts[0])))):
        pairs = place_pairs(task, prompts, k, seed)
        if pairs is None:
            return None
        out.append(pairs)
    return out or None


@dataclass(frozen=True)
class PlacePatching:
    """TransformerLens's patching of the clean run into the corrupted one for one place, as
    the normalised logit difference (1 = clean restored, 0 = no effect)."""

    place: str
    resid_pre: Float[Tensor, "layer pos"]
    attn_out: Float[Tensor, "layer pos"]
    mlp_out: Float[Tensor, "layer pos"]
    head_out: Float[Tensor, "layer pos head_index"]
    logit_diff_clean: float
    logit_diff_corrupt: float
    positions: list[str]

    def grid(self) -> tuple[Float[Tensor, "row pos"], list[str]]:
        """All of it as one [row, pos] grid — per layer resid_pre, attn_out, mlp_out and
        each head's output — and the row labels."""
        rows, labels = [], []
        n_layers, _, n_heads = self.head_out.shape
        for l in range(n_layers):
            for name in ("resid_pre", "attn_out", "mlp_out"):
                rows.append(getattr(self, name)[l])
                labels.append(f"L{l} {name}")
            for h in range(n_heads):
                rows.append(self.head_out[l, :, h])
                labels.append(f"L{l}H{h} out")
        return torch.stack(rows), labels

    def to_json(self) -> dict[str, Any]:
        return {
            "resid_pre": self.resid_pre.tolist(),
            "attn_out": self.attn_out.tolist(),
            "mlp_out": self.mlp_out.tolist(),
            "head_out": self.head_out.tolist(),
            "logit_diff_clean": self.logit_diff_clean,
            "logit_diff_corrupt": self.logit_diff_corrupt,
            "positions": self.positions,
        }


def _logit_diff(logits: Tensor, want: Tensor, other: Tensor) -> Float[Tensor, ""]:
    """Mean over rows of logit(clean token) − logit(corrupted token) at the last position."""
    last = logits[:, -1].float()
    rows = torch.arange(len(last))
    return (last[rows, want] - last[rows, other]).mean()


def _restored(logits: Tensor, want: Tensor, other: Tensor, lo: float, hi: float) -> Tensor:
    """The logit difference rescaled so the corrupted run gives 0 and the clean run 1."""
    return (_logit_diff(logits, want, other) - lo) / (hi - lo)


@torch.inference_mode()
def place_patching(model: HookedTransformer, pairs: Sequence[PlacePairs]) -> list[PlacePatching]:
    """Per place: TransformerLens's patching of the clean run into the corrupted one at
    resid_pre, attn_out, mlp_out (each [layer, pos]) and each head's output ([layer, pos,
    head])."""
    out = []
    for pp in pairs:
        want, other, corrupt = pp.clean_token, pp.corrupted_token, pp.corrupted
        clean_logits, clean_cache = model.run_with_cache(pp.clean)
        ld_clean = float(_logit_diff(clean_logits, want, other))
        ld_corrupt = float(_logit_diff(model(corrupt), want, other))
        metric = partial(_restored, want=want, other=other, lo=ld_corrupt, hi=ld_clean)
        with quiet_patching():
            out.append(
                PlacePatching(
                    place=pp.place,
                    resid_pre=patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric),
                    attn_out=patching.get_act_patch_attn_out(model, corrupt, clean_cache, metric),
                    mlp_out=patching.get_act_patch_mlp_out(model, corrupt, clean_cache, metric),
                    head_out=patching.get_act_patch_attn_head_out_by_pos(
                        model, corrupt, clean_cache, metric
                    ),
                    logit_diff_clean=ld_clean,
                    logit_diff_corrupt=ld_corrupt,
                    positions=pp.positions,
                )
            )
    return out


# ----------------------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class EngineChecks:
    """Invariants of the engine measured on real inputs (max |difference|, 0 expected)."""

    self_patch_max_abs_logit_change: float
    resid_post_all_positions_vs_readout_max_abs: float


def engine_checks(
    a: HookedTransformer, b: HookedTransformer, tokens: Int[Tensor, "batch pos"]
) -> EngineChecks:
    """Patching a model's own activations changes nothing; B's final resid_post at every
    position gives A's readout of B's residual stream."""
    with torch.inference_mode():
        a_logits, a_cache = a.run_with_cache(tokens)
        _, b_cache = b.run_with_cache(tokens)
        last = sites(a)[-1]
        own = max(
            float((run_patched(a, tokens, a_cache, [(s, p)]) - a_logits).abs().max())
            for s in sites(a)
            for p in range(tokens.shape[1])
        )
        all_pos = run_patched(a, tokens, b_cache, [(last, p) for p in range(tokens.shape[1])])
        readout = a.unembed(a.ln_final(b_cache[last.hook]))
    return EngineChecks(own, float((all_pos - readout).abs().max()))


@dataclass
class PatchingResult:
    a: str
    b: str
    ref: str
    cross: CrossPatching | None  # None: no prompt where A is OOD and B is not, or no judge
    within: dict[str, list[PlacePatching]] | None  # ref / A / B -> places; None: not computable
    checks: EngineChecks
    checkpoints: list[dict[str, Any]]
    judged: bool = True  # False: the task has no judge, cross-policy is not computable

    def to_json(self, findings: list[str]) -> dict[str, Any]:
        """The report's `data`; `findings` are the page's prose (`interp.present.pages`)."""
        within = self.within
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "cross": None if self.cross is None else self.cross.to_json(),
            "within": None
            if within is None
            else {who: {p.place: p.to_json() for p in places} for who, places in within.items()},
            "checks": dataclasses.asdict(self.checks),
            "checkpoints": self.checkpoints,
            "findings": findings,
        }


def probe_tokens(task: Task, prompts: Int[Tensor, " batch"]) -> Int[Tensor, "batch pos"]:
    """Prompts (of one length) followed by their reference answers without EOS, where the
    task knows them: inputs for the engine checks."""
    rows = []
    for s in prompts.tolist():
        answer = task.reference_response(s)
        forced = [] if answer is None else without_eos(task, task.response_ids(answer))
        rows.append(task.prompt_ids(s) + forced)
    return torch.tensor(rows)


def run_patching(
    a: str, b: str, root: Path | None = None, settings: PatchingSettings | None = None
) -> PatchingResult:
    """Cross-policy patching of B into A, within-policy patching of ref, A and B, and the
    engine checks, on A's test prompts of the most common length (at most
    `settings.max_prompts` per analysis; corrupting draws seeded with `settings.seed`)."""
    opts = settings or PatchingSettings()
    opts.validate()
    pair = resolve_pair(a, b, root)
    cks = {"ref": pair.ref.checkpoint(), "A": pair.a.checkpoint(), "B": pair.b.checkpoint()}
    models = {k: c.model for k, c in cks.items()}
    data = make_dataset(pair.a.key.preset, pair.a.key.seed)
    task = data.task
    prompts = modal_prompts(task, data.test.prompts)
    div = divergence(models["A"], models["B"], task, prompts)
    cross = (
        None
        if div is None
        else cross_policy(models["A"], models["B"], task, prompts, div, opts.max_prompts)
    )
    pairs = within_pairs(task, prompts[spread(range(len(prompts)), opts.max_prompts)], opts.seed)
    within = None if pairs is None else {k: place_patching(m, pairs) for k, m in models.items()}
    return PatchingResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        cross=cross,
        within=within,
        checks=engine_checks(models["A"], models["B"], probe_tokens(task, prompts[:16])),
        checkpoints=[
            {"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in cks.values()
        ],
        judged=div is not None,
    )
