"""Parameter-group surgery between two policies (case study §3.4, §4.3).

A′ is policy A with the parameters of group Q taken from policy B (`interp.core.params`
names the groups; `interp.analysis.interventions` does the swapping); the improvement of
a metric D is D(A′) − D(A). Interpolation moves only group Q a fraction α of the way from
A to B (α = 0 gives A, α = 1 the swap). How much of the A–B difference a swap removes is
the *gap closed*, (D(A) − D(A′)) / (D(A) − D(B)): 0 = no change, 1 = all the way to B.

`run_surgery` evaluates A, B and every requested swap at each of A's saved steps, pairing
A_t with B_t (`pair="step"`, the same training step) or with B's final checkpoint
(`pair="final"`; always so when B is the reference, whose SFT steps do not line up with
A's). At one step (the final one by default) it also swaps every group of the finest
partition alone, interpolates the attention and non-attention groups, estimates kl_mc,
and collects greedy samples. Acc and Margin of every model use A's β.

A checkpoint's own evaluation is read from what training stored with it when that is the
same evaluation (`interp.runs.evaluations`), its Margin rescaled from the run's β to A's
(Margin is linear in β); everything else is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from interp.analysis import claims as rules
from interp.analysis.attention import pattern
from interp.analysis.interventions import check_compatible, interpolate, swap
from interp.analysis.settings import ExactSettings
from interp.core.metrics import evaluate, kl_mc
from interp.core.numberline import make_dataset
from interp.core.params import Group, all_groups, frac_weight_delta, partitions, resolve_groups
from interp.core.params import weight_delta as weight_delta_of
from interp.core.sampling import Responses, greedy
from interp.core.scoring import split_logprobs
from interp.core.task import Task
from interp.errors import UserError
from interp.lens import HookedTransformer
from interp.options import option
from interp.runs.evaluations import stored_evaluation
from interp.runs.store import Checkpoint, resolve_pair

METRICS = ("kl_greedy", "kl_exact", "ood_rate", "ood_mass", "error", "acc", "margin")
TRACKED = (*METRICS, "exact_residual")  # what is kept at every step
COARSE = ("attention", "non-attention", "qk", "ov", "mlp", "embed", "pos", "unembed", "ln")
N_SAMPLES = 16  # greedy samples shown


@dataclass
class SurgerySettings(ExactSettings):
    """The knobs of a surgery run (a command's options inherit them, help included)."""

    groups: list[str] = option(
        ["attention", "non-attention"],
        help="groups swapped at every step; 'all' = the finest partition (see interp.core.params)",
    )
    pair: str = option(
        "step",
        help="pair A_t with B_t (step) or with B's final checkpoint (final)",
        choices=["step", "final"],
    )
    step: int | None = option(None, help="A's step for the single-group table (default: A's last)")
    mc_samples: int = option(16, help="kl_mc samples per prompt at the table step (0 = skip)")
    alphas: int = option(11, help="points on the interpolation curves")
    seed: int = option(0, help="seed of the kl_mc samples")

    def validate(self) -> None:
        super().validate()
        if self.mc_samples == 1 or self.mc_samples < 0:
            raise UserError("--mc-samples must be 0 (skip) or at least 2")
        if self.alphas < 2:
            raise UserError("--alphas must be at least 2")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Variant:
    """A model the surgery evaluates: A, B, or A with `group` taken from B."""

    role: str  # "A", "B" or "swap"
    group: str | None = None

    @property
    def label(self) -> str:
        return f"A[{self.group}←B]" if self.role == "swap" else self.role


A, B = Variant("A"), Variant("B")


@dataclass
class Series:
    """One model's evaluation at each of A's saved steps (None: not computable)."""

    variant: Variant
    values: dict[str, list[float | None]]  # metric (TRACKED) -> one value per step

    def __getitem__(self, metric: str) -> list[float | None]:
        return self.values[metric]


@dataclass
class WeightChange:
    """WeightDelta of A and B from the reference at each step, and attention's part of it."""

    a_delta: list[float]
    a_frac_attention: list[float]
    b_delta: list[float]
    b_frac_attention: list[float]


@dataclass
class SingleSwap:
    """A with one group from B at the table step, relative to A."""

    group: str
    partition: str  # the first partition the group belongs to ("" for none)
    param_share: float
    frac_weight_delta: float  # the group's part of A's weight change from the reference
    delta: dict[str, float | None]  # metric -> D(A′) − D(A)
    gap_closed_kl_exact: float | None
    gap_closed_ood_rate: float | None


@dataclass
class Interpolation:
    alphas: list[float]
    curves: dict[str, dict[str, list[float | None]]]  # group -> metric -> one value per alpha


@dataclass
class MonteCarloKL:
    variant: Variant
    mean: float
    se: float
    n_per_prompt: int


@dataclass
class AttentionExample:
    """Attention of ref, A and B on a prompt where A is OOD and B is not, all run on the
    prompt followed by B's answer (teacher-forced, EOS dropped)."""

    prompt: int
    text: str
    tokens: list[str]
    responses: dict[str, str]  # "A" / "B" -> greedy answer
    patterns: dict[str, Float[Tensor, "layer head_index query_pos key_pos"]]  # ref / A / B


@dataclass
class Sample:
    prompt: str
    answers: list[tuple[Variant, str, bool]]  # (model, greedy answer, OOD)


@dataclass
class ClaimCheck:
    """One of the case study's surgery claims, measured, with its verdict."""

    claim: str
    case_study: str
    measured: str
    numbers: dict[str, float | None]  # the measured values the verdict rests on
    verdict: str
    group: str | None = None  # the group swapped in from B (F4's two halves)


@dataclass
class SurgeryResult:
    a: str
    b: str
    ref: str
    beta: float  # A's β: the implicit reward (Acc, Margin) of every model, B included
    pair: str
    groups: list[str]
    exact_threshold: float
    steps: list[int]
    donor_steps: list[int]
    series: list[Series]  # A, B, then A with each group from B
    weights: WeightChange
    param_share: dict[str, float]  # group -> share of the parameters
    table_step: int
    table_donor_step: int
    single: list[SingleSwap]
    interpolation: Interpolation
    kl_mc: list[MonteCarloKL]
    example: AttentionExample | None
    samples: list[Sample]
    checkpoints: list[dict[str, Any]]
    claims: list[ClaimCheck] = field(default_factory=list)

    def of(self, variant: Variant) -> Series | None:
        return next((s for s in self.series if s.variant == variant), None)

    @property
    def table_index(self) -> int:
        return self.steps.index(self.table_step)

    def at_table_step(self, variant: Variant, metric: str) -> float | None:
        s = self.of(variant)
        return None if s is None else s[metric][self.table_index]

    def to_json(self) -> dict[str, Any]:
        """The report's data, in the layout of its JSON twin."""
        w = self.weights
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "beta": self.beta,
            "pair": self.pair,
            "groups": self.groups,
            "exact_threshold": self.exact_threshold,
            "steps": self.steps,
            "donor_steps": self.donor_steps,
            "trajectory": {s.variant.label: s.values for s in self.series},
            "weights": {
                "A_delta": w.a_delta,
                "A_frac_attention": w.a_frac_attention,
                "B_delta": w.b_delta,
                "B_frac_attention": w.b_frac_attention,
            },
            "param_share": self.param_share,
            "table_step": self.table_step,
            "table_donor_step": self.table_donor_step,
            "single": [
                {
                    "group": r.group,
                    "partition": r.partition,
                    "param_share": r.param_share,
                    "frac_weight_delta": r.frac_weight_delta,
                    **{f"d_{m}": v for m, v in r.delta.items()},
                    "gap_closed_kl_exact": r.gap_closed_kl_exact,
                    "gap_closed_ood_rate": r.gap_closed_ood_rate,
                }
                for r in self.single
            ],
            "interpolation": {"alpha": self.interpolation.alphas, **self.interpolation.curves},
            "kl_mc": {
                m.variant.label: {"mean": m.mean, "se": m.se, "n_per_prompt": m.n_per_prompt}
                for m in self.kl_mc
            },
            "example": None
            if self.example is None
            else {
                "prompt": self.example.prompt,
                "text": self.example.text,
                "tokens": self.example.tokens,
                "responses": self.example.responses,
                "patterns": self.example.patterns,
            },
            "samples": [
                {"prompt": s.prompt}
                | {k: v for var, text, ood in s.answers for k, v in _sample_cells(var, text, ood)}
                for s in self.samples
            ],
            "checkpoints": self.checkpoints,
            "claims": [
                {
                    "claim": c.claim,
                    "case_study": c.case_study,
                    "measured": c.measured,
                    **c.numbers,
                    "verdict": c.verdict,
                }
                for c in self.claims
            ],
        }


def _sample_cells(variant: Variant, text: str, ood: bool) -> list[tuple[str, Any]]:
    return [(variant.label, text), (f"{variant.label} OOD", ood)]


# ----------------------------------------------------------------------------- the analysis


def _partition_of(model: HookedTransformer) -> dict[str, str]:
    out: dict[str, str] = {}
    for pname, names in partitions(model).items():
        for n in names:
            out.setdefault(n, pname)
    return out


def _diff(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else x - y


def run_surgery(
    a: str,
    b: str,
    root: Path | None = None,
    settings: SurgerySettings | None = None,
    progress: bool = True,
) -> SurgeryResult:
    """Surgery between policies A and B along A's trajectory (see the module docstring)."""
    opts = settings or SurgerySettings()
    opts.validate()
    pair_ = resolve_pair(a, b, root)
    a_run, b_run = pair_.a, pair_.b
    ref_ckpt = pair_.ref.checkpoint()
    ref = ref_ckpt.model
    a_steps = a_run.steps()
    a_final, b_final = a_run.checkpoint(), b_run.checkpoint()
    check_compatible(a_final.model, b_final.model, f"{a_run.name} and {b_run.name}")
    check_compatible(a_final.model, ref, f"{a_run.name} and its reference {ref_ckpt.policy}")
    chosen = resolve_groups(a_final.model, opts.groups)
    table_step = a_steps[-1] if opts.step is None else opts.step
    if table_step not in a_steps:
        raise UserError(f"{a_run.name} has no step {table_step}; saved steps: {a_steps}")
    pair = "final" if b_run.key.is_ref else opts.pair
    if pair == "step":
        missing = sorted(set(a_steps) - set(b_run.steps()))
        if missing:
            raise UserError(
                f"{b_run.name} has no checkpoint at step(s) {missing[:5]} of {a_run.name}; "
                "use --pair final to pair every step with B's final checkpoint"
            )
    donor_step = {t: (t if pair == "step" else b_final.step) for t in a_steps}

    data = make_dataset(a_run.key.preset, a_run.key.seed)
    test, task = data.test, data.task
    beta = float(a_run.key.beta)
    ref_seq = split_logprobs(ref, test)
    threshold = opts.exact_threshold

    def ev(model: HookedTransformer) -> dict[str, Any]:
        return evaluate(model, test, ref, beta, ref_seq, threshold)

    def ev_checkpoint(ck: Checkpoint) -> dict[str, Any]:
        stored = stored_evaluation(
            ck, task, threshold, ref_ckpt.sha256, a_run.key.preset, a_run.key.seed, TRACKED
        )
        if stored is None or ck.meta.get("beta") is None:
            return ev(ck.model)
        return stored | {"margin": stored["margin"] * beta / float(ck.meta["beta"])}

    swaps = [Variant("swap", g.name) for g in chosen]
    series = [Series(v, {m: [] for m in TRACKED}) for v in (A, B, *swaps)]
    weights = WeightChange([], [], [], [])
    attention = all_groups(ref)["attention"]
    b_cache: dict[int, dict[str, Any]] = {}
    used = [ref_ckpt]
    for t in tqdm(a_steps, desc="surgery", disable=None if progress else True, leave=False):
        a_ck, b_ck = a_run.checkpoint(t), b_run.checkpoint(donor_step[t])
        used += [a_ck] + ([b_ck] if donor_step[t] not in b_cache else [])
        at, bt = a_ck.model, b_ck.model
        if donor_step[t] not in b_cache:
            b_cache[donor_step[t]] = ev_checkpoint(b_ck)
        rows = [ev_checkpoint(a_ck), b_cache[donor_step[t]]] + [ev(swap(at, bt, g)) for g in chosen]
        for s, row in zip(series, rows):
            for m in TRACKED:
                s.values[m].append(row.get(m))
        weights.a_delta.append(weight_delta_of(at, ref))
        weights.a_frac_attention.append(frac_weight_delta(at, ref, attention))
        weights.b_delta.append(weight_delta_of(bt, ref))
        weights.b_frac_attention.append(frac_weight_delta(bt, ref, attention))

    # ---- one step: every group alone, interpolation, kl_mc, example, samples
    at = a_run.checkpoint(table_step).model
    bt = b_run.checkpoint(donor_step[table_step]).model
    ti = a_steps.index(table_step)
    known = {s.variant: {m: s[m][ti] for m in TRACKED} for s in series}  # reuse, not redo
    base_a, base_b = known[A], known[B]

    def ev_swap(group: Group) -> dict[str, Any]:
        return known.get(Variant("swap", group.name)) or ev(swap(at, bt, group))

    part_of = _partition_of(at)
    table_groups = resolve_groups(
        at, [*COARSE, *partitions(at)["heads"][: at.cfg.n_layers * at.cfg.n_heads], "all"]
    )
    n_total = sum(p.numel() for p in at.parameters())
    single = []
    for g in table_groups:
        row = ev_swap(g)
        single.append(
            SingleSwap(
                group=g.name,
                partition=part_of.get(g.name, ""),
                param_share=g.numel(at) / n_total,
                frac_weight_delta=frac_weight_delta(at, ref, g),
                delta={m: _diff(row[m], base_a[m]) for m in METRICS},
                gap_closed_kl_exact=rules.gap_closed(
                    base_a["kl_exact"], row["kl_exact"], base_b["kl_exact"]
                ),
                gap_closed_ood_rate=rules.gap_closed(
                    base_a["ood_rate"], row["ood_rate"], base_b["ood_rate"]
                ),
            )
        )
    alphas = [i / (opts.alphas - 1) for i in range(opts.alphas)]
    curves = {}
    for g in resolve_groups(at, ["attention", "non-attention"]):
        curve = [
            base_a if al == 0.0 else ev_swap(g) if al == 1.0 else ev(interpolate(at, bt, g, al))
            for al in alphas
        ]
        curves[g.name] = {m: [c[m] for c in curve] for m in METRICS}

    models = {A: at, B: bt} | {v: swap(at, bt, g) for v, g in zip(swaps, chosen)}
    mc = []
    if opts.mc_samples >= 2:
        for v, m in models.items():
            mean, se = kl_mc(
                m, ref, task, test.prompts, task.max_new_tokens, opts.mc_samples, opts.seed
            )
            mc.append(MonteCarloKL(v, mean, se, opts.mc_samples))
    outputs = {v: greedy(m, task, test.prompts, task.max_new_tokens) for v, m in models.items()}
    samples, example = _samples_and_example(task, outputs, models, ref, test.prompts)

    res = SurgeryResult(
        a=a_run.name,
        b=b_run.name,
        ref=ref_ckpt.policy,
        beta=beta,
        pair=pair,
        groups=[g.name for g in chosen],
        exact_threshold=threshold,
        steps=a_steps,
        donor_steps=[donor_step[t] for t in a_steps],
        series=series,
        weights=weights,
        param_share={g.name: g.numel(at) / n_total for g in table_groups},
        table_step=table_step,
        table_donor_step=donor_step[table_step],
        single=single,
        interpolation=Interpolation(alphas, curves),
        kl_mc=mc,
        example=example,
        samples=samples,
        checkpoints=[{"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in used],
    )
    res.claims = surgery_claims(res)
    return res


def _samples_and_example(
    task: Task,
    outputs: dict[Variant, Responses],
    models: dict[Variant, HookedTransformer],
    ref: HookedTransformer,
    prompts: Int[Tensor, " batch"],
) -> tuple[list[Sample], AttentionExample | None]:
    """Greedy samples (prompts where A is OOD and B is not first), and the attention
    patterns of ref, A and B on the first such prompt."""
    ood = {v: _ood(task, r) for v, r in outputs.items()}
    a_only = (ood[A] & ~ood[B]).nonzero().flatten().tolist()
    rest = [i for i in range(len(prompts)) if i not in set(a_only)]
    samples = [
        Sample(
            task.prompt_text(int(prompts[i])),
            [(v, r.text(task, i), bool(ood[v][i])) for v, r in outputs.items()],
        )
        for i in (a_only + rest)[:N_SAMPLES]
    ]
    if not a_only:
        return samples, None
    i = a_only[0]
    b_resp = outputs[B].text(task, i)
    text = task.prompt_text(int(prompts[i])) + b_resp[:-1]  # B's answer, EOS dropped
    pats = {
        "ref": pattern(ref, text, task=task),
        "A": pattern(models[A], text, task=task),
        "B": pattern(models[B], text, task=task),
    }
    example = AttentionExample(
        prompt=int(prompts[i]),
        text=text,
        tokens=pats["A"].tokens,
        responses={v.label: outputs[v].text(task, i) for v in (A, B)},
        patterns={k: p.values for k, p in pats.items()},
    )
    return samples, example


def _ood(task: Task, responses: Responses) -> Tensor:
    verdict = task.judge(responses.prompts, responses.tokens, responses.lengths)
    if verdict is None:
        return torch.zeros(len(responses.prompts), dtype=torch.bool)
    return verdict.ood


# ----------------------------------------------------------------------------- claims


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def surgery_claims(res: SurgeryResult) -> list[ClaimCheck]:
    """The case study's three surgery claims at the table step, judged by
    `interp.analysis.claims`."""
    t = res.table_index
    a, b = res.of(A), res.of(B)
    assert a is not None and b is not None

    def at(v: Variant, metric: str) -> float:
        value = res.at_table_step(v, metric)
        return float("nan") if value is None else value

    out = []
    for group, tames in (("attention", True), ("non-attention", False)):
        swapped = res.of(Variant("swap", group))
        if swapped is None:
            continue
        v = swapped.variant
        ck, co = (
            rules.gap_closed(
                res.at_table_step(A, m), res.at_table_step(v, m), res.at_table_step(B, m)
            )
            for m in ("kl_exact", "ood_rate")
        )
        # along the trajectory: steps where A is clearly further from ref than B
        gap_steps = [
            i
            for i in range(len(res.steps))
            if a["kl_exact"][i] - b["kl_exact"][i] > rules.KL_GAP_STEP
        ]
        nearer_b = sum(
            abs(swapped["kl_exact"][i] - b["kl_exact"][i])
            < abs(swapped["kl_exact"][i] - a["kl_exact"][i])
            for i in gap_steps
        )
        out.append(
            ClaimCheck(
                claim="Swapping A's attention for B's tames KL and OOD"
                if tames
                else "Swapping A's non-attention parameters for B's does not",
                case_study="attention swap: KL grows slowly, OOD dips"
                if tames
                else "non-attention swap: KL still explodes, OOD barely changes",
                measured=(
                    f"step {res.table_step}: kl_exact {at(A, 'kl_exact'):.3f} → "
                    f"{at(v, 'kl_exact'):.3f} "
                    f"(B {at(B, 'kl_exact'):.3f}; {_pct(ck)} of the gap closed), OOD rate "
                    f"{at(A, 'ood_rate'):.1%} → {at(v, 'ood_rate'):.1%} "
                    f"(B {at(B, 'ood_rate'):.1%}; "
                    f"{_pct(co)} closed); KL nearer B's than A's at {nearer_b} of {len(gap_steps)} "
                    f"steps where A's kl_exact exceeds B's by > {rules.KL_GAP_STEP}"
                ),
                numbers={"gap_closed_kl_exact": ck, "gap_closed_ood_rate": co},
                verdict=rules.swap_verdict(ck, co, tames),
                group=group,
            )
        )
    fracs = res.weights.a_frac_attention
    share = res.param_share["attention"]
    final = fracs[t]
    later = [f for f, s in zip(fracs, res.steps) if s > 0 and f == f]
    lo, hi = (min(later), max(later)) if later else (float("nan"), float("nan"))
    out.append(
        ClaimCheck(
            claim="Attention takes a small share of A's weight change (≈25%) "
            "though it holds most parameters",
            case_study="FracWeightDelta(attention) ≈ 25% of the change; "
            "attention ≈ 65% of parameters",
            measured=(
                f"FracWeightDelta(attention) of A vs ref: {final:.1%} at step {res.table_step} "
                f"(range {lo:.1%}–{hi:.1%} over the trajectory); attention holds {share:.1%} "
                "of the parameters"
            ),
            numbers={"frac_weight_delta_attention": final, "param_share_attention": share},
            verdict=rules.attention_share_verdict(final, share),
        )
    )
    return out
