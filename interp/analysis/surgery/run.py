"""Running a surgery: evaluate A, B and A with groups of B swapped in along A's training,
then every group alone, interpolation, kl_mc and samples at one step (the technique:
`interp.analysis.surgery`).

A checkpoint's own evaluation is read from what training stored with it when that is the
same evaluation (`interp.runs.evaluations`), its Margin rescaled from the run's β to A's
(Margin is linear in β); everything else is computed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from interp.analysis import claims as rules
from interp.analysis.attention import pattern
from interp.analysis.interventions import check_pair, interpolate, swap
from interp.analysis.settings import ExactSettings
from interp.analysis.surgery.claims import surgery_claims
from interp.analysis.surgery.result import (
    COARSE,
    METRICS,
    TRACKED,
    A,
    AttentionExample,
    B,
    Interpolation,
    MonteCarloKL,
    Sample,
    Series,
    SingleSwap,
    SurgeryResult,
    Variant,
    WeightChange,
)
from interp.core.members import evaluate_many
from interp.core.metrics import kl_mc
from interp.core.model import CASE_STUDY, build_model
from interp.core.params import Group, all_groups, frac_weight_delta, partitions, resolve_groups
from interp.core.params import weight_delta as weight_delta_of
from interp.core.sampling import Responses, greedy
from interp.core.task import Task
from interp.errors import UnknownGroup, UserError
from interp.lens import HookedTransformer
from interp.options import option, seed_error, seed_option
from interp.runs.evaluations import stored_evaluation
from interp.runs.sources import FolderPolicy, SourceOptions, resolve
from interp.runs.store import Checkpoint

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
    seed: int = seed_option(0, help="seed of the kl_mc samples")

    def validate(self) -> None:
        super().validate()
        if self.mc_samples == 1 or self.mc_samples < 0:
            raise UserError("--mc-samples must be 0 (skip) or at least 2")
        if self.alphas < 2:
            raise UserError("--alphas must be at least 2")
        if (why := seed_error(self.seed)) is not None:
            raise UserError(f"--seed: {why}")
        check_group_names(self.groups)


@cache
def _group_forms() -> tuple[str, ...]:
    """Every group name of the default architecture with its layer and head numbers
    replaced by placeholders (`L0H1.qk` -> `L{l}H{h}.qk`), and `all`."""
    with torch.random.fork_rng(devices=[]):  # building a model seeds torch's generator
        names = all_groups(build_model(CASE_STUDY))
    kv = ["L{l}KV{g}", "L{l}KV{g}.qk", "L{l}KV{g}.ov"]  # grouped-query attention's own
    return tuple(dict.fromkeys(["all", *map(_group_form, names), *kv]))


def _group_form(name: str) -> str:
    name = re.sub(r"^L(0|[1-9]\d*)", "L{l}", name)
    return re.sub(r"KV(0|[1-9]\d*)", "KV{g}", re.sub(r"H(0|[1-9]\d*)", "H{h}", name))


def check_group_names(names: Iterable[str]) -> None:
    """Reject a group name that no architecture has, before anything is trained or loaded
    (whether a model has that layer or head is checked when its groups are resolved)."""
    for name in names:
        if _group_form(name) not in _group_forms():
            known = ", ".join(_group_forms())
            raise UnknownGroup(
                f"unknown parameter group {name!r}; known: {known} (l a layer, h a head, g a "
                "key/value head)"
            )


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
    sources: SourceOptions | None = None,
) -> SurgeryResult:
    """Surgery between policies A and B along A's trajectory (see the module docstring);
    `sources` says where the policies and the data come from (`interp.runs.sources`)."""
    opts = settings or SurgerySettings()
    opts.validate()
    pair_ = resolve(a, b, root, sources)
    a_run, b_run = pair_.a, pair_.b
    final = check_pair(pair_)
    ref_ckpt, a_final, b_final = final["ref"], final["A"], final["B"]
    ref = ref_ckpt.model
    a_steps = a_run.steps()
    chosen = resolve_groups(a_final.model, opts.groups)
    table_step = a_steps[-1] if opts.step is None else opts.step
    if table_step not in a_steps:
        raise UserError(f"{a_run.name} has no step {table_step}; saved steps: {a_steps}")
    # a folder's steps are not another run's: pair them with B's final checkpoint
    folders = isinstance(a_run, FolderPolicy) or isinstance(b_run, FolderPolicy)
    pair = "final" if pair_.b_is_ref or folders else opts.pair
    if pair == "step":
        missing = sorted(set(a_steps) - set(b_run.steps()))
        if missing:
            raise UserError(
                f"{b_run.name} has no checkpoint at step(s) {missing[:5]} of {a_run.name}; "
                "use --pair final to pair every step with B's final checkpoint"
            )
    donor_step = {t: (t if pair == "step" else b_final.step) for t in a_steps}

    data = pair_.dataset
    test, task = data.test, data.task
    beta = pair_.beta
    threshold = opts.exact_threshold

    def ev_all(models: list[HookedTransformer]) -> list[dict[str, Any]]:
        return evaluate_many(models, test, ref, beta, threshold)  # member-batched

    def ev(model: HookedTransformer) -> dict[str, Any]:
        return ev_all([model])[0]

    def ev_checkpoint(ck: Checkpoint) -> dict[str, Any]:
        stored = stored_evaluation(
            ck, task, threshold, ref_ckpt.sha256, task.name, data.seed, TRACKED
        )
        if stored is None or ck.meta.get("beta") is None or beta is None:
            return ev(ck.model)
        return stored | {"margin": stored["margin"] * beta / float(ck.meta["beta"])}

    swaps = [Variant("swap", g.name) for g in chosen]
    series = [Series(v, {m: [] for m in TRACKED}) for v in (A, B, *swaps)]
    weights = WeightChange([], [], [], [])
    attention = all_groups(ref)["attention"]
    b_cache: dict[int, dict[str, Any]] = {}
    a_rows: list[dict[str, Any]] = []
    hybrids: list[HookedTransformer] = []
    used = [ref_ckpt]
    for t in tqdm(a_steps, desc="surgery", disable=None if progress else True, leave=False):
        a_ck, b_ck = a_run.checkpoint(t), b_run.checkpoint(donor_step[t])
        used += [a_ck] + ([b_ck] if donor_step[t] not in b_cache else [])
        at, bt = a_ck.model, b_ck.model
        if donor_step[t] not in b_cache:
            b_cache[donor_step[t]] = ev_checkpoint(b_ck)
        a_rows.append(ev_checkpoint(a_ck))
        hybrids += [swap(at, bt, g) for g in chosen]
        weights.a_delta.append(weight_delta_of(at, ref))
        weights.a_frac_attention.append(frac_weight_delta(at, ref, attention))
        weights.b_delta.append(weight_delta_of(bt, ref))
        weights.b_frac_attention.append(frac_weight_delta(bt, ref, attention))
    swapped_rows = ev_all(hybrids)  # every step's swaps, evaluated together
    for i, t in enumerate(a_steps):
        rows = [a_rows[i], b_cache[donor_step[t]], *swapped_rows[i * len(chosen) :][: len(chosen)]]
        for s, row in zip(series, rows):
            for m in TRACKED:
                s.values[m].append(row.get(m))
    del hybrids

    # ---- one step: every group alone, interpolation, kl_mc, example, samples
    at = a_run.checkpoint(table_step).model
    bt = b_run.checkpoint(donor_step[table_step]).model
    ti = a_steps.index(table_step)
    known = {s.variant: {m: s[m][ti] for m in TRACKED} for s in series}  # reuse, not redo
    base_a, base_b = known[A], known[B]

    part_of = _partition_of(at)
    table_groups = resolve_groups(
        at, [*COARSE, *partitions(at)["heads"][: at.cfg.n_layers * at.cfg.n_heads], "all"]
    )
    table_groups = [g for g in table_groups if g.slices]  # `pos` under rotary positions
    alphas = [i / (opts.alphas - 1) for i in range(opts.alphas)]
    curve_groups = resolve_groups(at, ["attention", "non-attention"])
    # every model the table and the curves need that is not known yet, evaluated together
    todo: dict[tuple[str, float], HookedTransformer] = {}
    for g in [*table_groups, *curve_groups]:
        if Variant("swap", g.name) not in known:
            todo[(g.name, 1.0)] = swap(at, bt, g)
    for g in curve_groups:
        for al in alphas[1:-1]:
            todo[(g.name, al)] = interpolate(at, bt, g, al)
    done = dict(zip(todo, ev_all(list(todo.values()))))

    def ev_swap(group: Group, alpha: float = 1.0) -> dict[str, Any]:
        if alpha == 1.0 and Variant("swap", group.name) in known:
            return known[Variant("swap", group.name)]
        return done[(group.name, alpha)]

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
    curves = {}
    for g in curve_groups:
        curve = [base_a if al == 0.0 else ev_swap(g, al) for al in alphas]
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
        checkpoints=[c.ref for c in used],
        not_computable=pair_.not_computable,
    )
    # the case study's claims are about kl_exact and the OOD rate
    if not {"kl_exact", "ood_rate"} & set(res.not_computable):
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
