"""Parameter-group surgery between two policies; `python -m interp.surgery`.

Surgery (case study §3.4, §4.3): A′ is policy A with the parameters of group Q taken from
policy B; the improvement of a metric D is D(A′) − D(A). Interpolation moves only group Q
a fraction α of the way from A to B (α = 0 gives A, α = 1 the swap). Groups are those of
`interp.params`; head groups take one head's slices of the per-head attention tensors.

`swap` and `interpolate` return new models and leave A and B untouched; `swapped` edits A
in place for the duration of a `with` block and restores it; `interpolate_` edits in place.

The command evaluates A, B and every swap at each of A's saved steps, pairing A_t with
B_t (`--pair step`, the same training step) or with B's final checkpoint (`--pair
final`); `--b ref` uses the reference as donor. At one step (the final one by default) it
tabulates every group of the finest partition swapped alone, and the interpolation curve
of the attention group, then writes `reports/surgery/<a>_vs_<b>.html` and its JSON twin.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from interp import plots
from interp.attention import pattern
from interp.checkpoints import Checkpoint, resolve_pair
from interp.cli import UserError, option, parse, run_comparison
from interp.data import Task, make_dataset
from interp.lens import HookedTransformer
from interp.metrics import eval_settings, evaluate, kl_mc, ood_and_error, split_logprobs
from interp.model import build_model, config_to_dict, same_architecture
from interp.params import (
    Group,
    all_groups,
    frac_weight_delta,
    partitions,
    resolve_groups,
    weight_delta,
)
from interp.report import (
    FigureBlock,
    Folders,
    Report,
    Section,
    Table,
    jsonable,
    pair_slug,
)
from interp.sampling import Responses, greedy

Groups = Group | str | Iterable[Group | str]


class ArchitectureMismatch(UserError):
    """Two policies that cannot exchange parameters."""


def check_compatible(a: HookedTransformer, b: HookedTransformer, what: str = "A and B") -> None:
    if not same_architecture(a, b):
        da, db = config_to_dict(a.cfg), config_to_dict(b.cfg)
        diff = ", ".join(f"{k} {da[k]} vs {db[k]}" for k in da if da[k] != db[k])
        raise ArchitectureMismatch(f"{what} have different architectures ({diff})")


def as_groups(model: HookedTransformer, groups: Groups) -> list[Group]:
    if isinstance(groups, (Group, str)):
        groups = [groups]
    out: list[Group] = []
    for g in groups:
        out += [g] if isinstance(g, Group) else resolve_groups(model, [g])
    return out


def clone(model: HookedTransformer) -> HookedTransformer:
    """An independent copy (same config, same parameters), in eval mode."""
    m = build_model(model.cfg)
    m.load_state_dict(model.state_dict())
    return m.eval()


@torch.no_grad()
def interpolate_(
    model: HookedTransformer, donor: HookedTransformer, groups: Groups, alpha: float = 1.0
) -> HookedTransformer:
    """In place: move `model`'s group parameters a fraction alpha toward `donor`'s.

    alpha = 1 copies the donor's values exactly; alpha = 0 leaves the model as it was.
    """
    check_compatible(model, donor)
    mine, theirs = dict(model.named_parameters()), dict(donor.named_parameters())
    for g in as_groups(model, groups):
        for s in g.slices:
            dst, src = s.of(mine[s.param]), s.of(theirs[s.param])
            if alpha == 1.0:
                dst.copy_(src)
            elif alpha != 0.0:
                dst.copy_(torch.lerp(dst, src, alpha))
    return model


def swap(a: HookedTransformer, b: HookedTransformer, groups: Groups) -> HookedTransformer:
    """A new model: A with the parameters of `groups` taken from B."""
    return interpolate_(clone(a), b, groups, 1.0)


def interpolate(
    a: HookedTransformer, b: HookedTransformer, groups: Groups, alpha: float
) -> HookedTransformer:
    """A new model: A with `groups` moved a fraction alpha of the way to B."""
    return interpolate_(clone(a), b, groups, alpha)


@contextmanager
def swapped(
    a: HookedTransformer, b: HookedTransformer, groups: Groups, alpha: float = 1.0
) -> Iterator[HookedTransformer]:
    """Temporarily give A the groups of B (or a fraction alpha of the way); restores A on exit."""
    saved = {k: v.detach().clone() for k, v in a.named_parameters()}
    try:
        yield interpolate_(a, b, groups, alpha)
    finally:
        with torch.no_grad():
            for k, v in a.named_parameters():
                v.copy_(saved[k])


def group_names(groups: Sequence[Group]) -> list[str]:
    return [g.name for g in groups]


# ----------------------------------------------------------------------------- the analysis

METRICS = ("kl_greedy", "kl_exact", "ood_rate", "ood_mass", "error", "acc", "margin")
COARSE = ("attention", "non-attention", "qk", "ov", "mlp", "embed", "pos", "unembed", "ln")


def swap_label(group: str) -> str:
    return f"A[{group}←B]"


@dataclass
class SurgeryResult:
    """Everything the surgery report shows, as plain numbers (see the module docstring)."""

    a: str
    b: str
    ref: str
    beta: float  # A's β: the implicit reward (Acc, Margin) of every model, B included
    pair: str
    groups: list[str]
    exact_threshold: float
    steps: list[int]
    donor_steps: list[int]
    # label (A, B, A[g←B]) -> metric -> value at each of A's steps
    trajectory: dict[str, dict[str, list[float | None]]]
    # A/B weight change from the reference at each step: total and attention's share
    weights: dict[str, list[float]]
    param_share: dict[str, float]
    table_step: int
    table_donor_step: int
    single: list[dict[str, Any]]  # one row per group swapped alone at table_step
    interpolation: dict[str, Any]
    kl_mc: dict[str, dict[str, float]]
    example: dict[str, Any] | None
    samples: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    claims: list[dict[str, Any]] = field(default_factory=list)


def gap_closed(a: float | None, swapped_: float | None, b: float | None) -> float | None:
    """(M(A) − M(A′)) / (M(A) − M(B)): 0 = no change, 1 = all the way to B."""
    if a is None or swapped_ is None or b is None or abs(a - b) < 1e-9:
        return None
    return (a - swapped_) / (a - b)


def _partition_of(model: HookedTransformer) -> dict[str, str]:
    out: dict[str, str] = {}
    for pname, names in partitions(model).items():
        for n in names:
            out.setdefault(n, pname)
    return out


def run_surgery(
    a: str,
    b: str,
    groups: Sequence[str] = ("attention", "non-attention"),
    pair: str = "step",
    step: int | None = None,
    root: Path | None = None,
    exact_threshold: float = 1e-4,
    mc_samples: int = 16,
    n_alphas: int = 11,
    seed: int = 0,
    progress: bool = True,
) -> SurgeryResult:
    """Surgery between policies A and B along A's trajectory (see the module docstring)."""
    pair_ = resolve_pair(a, b, root)
    a_run, b_run = pair_.a, pair_.b
    ref_ckpt = pair_.ref.checkpoint()
    ref = ref_ckpt.model
    a_steps = a_run.steps()
    a_final, b_final = a_run.checkpoint(), b_run.checkpoint()
    check_compatible(a_final.model, b_final.model, f"{a_run.name} and {b_run.name}")
    check_compatible(a_final.model, ref, f"{a_run.name} and its reference {ref_ckpt.policy}")
    chosen = resolve_groups(a_final.model, groups)
    table_step = a_steps[-1] if step is None else step
    if table_step not in a_steps:
        raise UserError(f"{a_run.name} has no step {table_step}; saved steps: {a_steps}")
    if b_run.key.is_ref and pair == "step":
        pair = "final"  # the reference's own SFT steps do not line up with A's
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

    def ev(model: HookedTransformer, beta_: float = beta) -> dict[str, Any]:
        return evaluate(model, test, ref, beta_, ref_seq, exact_threshold)

    settings = eval_settings(exact_threshold, task)

    def ev_checkpoint(ck: Checkpoint) -> dict[str, Any]:
        """A checkpoint's own evaluation, at A's β: the one training stored when it was made
        by this evaluation code with these settings on this split against this reference
        (its Margin rescaled from the run's β to A's: Margin is linear in β), else computed
        now."""
        meta = ck.meta
        stored = meta.get("eval", {})
        same = (
            meta.get("eval_settings") == settings
            and meta.get("reference_sha256") == ref_ckpt.sha256
            and (meta.get("preset"), meta.get("seed")) == (a_run.key.preset, a_run.key.seed)
            and meta.get("beta") is not None
            and all(stored.get(k) is not None for k in (*METRICS, "exact_residual"))
        )
        if not same:
            return ev(ck.model)
        return stored | {"margin": stored["margin"] * beta / float(meta["beta"])}

    labels = ["A", "B"] + [swap_label(g.name) for g in chosen]
    traj: dict[str, dict[str, list]] = {
        lab: {m: [] for m in (*METRICS, "exact_residual")} for lab in labels
    }
    weights: dict[str, list[float]] = {
        k: [] for k in ("A_delta", "A_frac_attention", "B_delta", "B_frac_attention")
    }
    attention = all_groups(ref)["attention"]
    b_cache: dict[int, dict[str, Any]] = {}
    used = [ref_ckpt]
    for t in tqdm(a_steps, desc="surgery", disable=None if progress else True, leave=False):
        a_ck, b_ck = a_run.checkpoint(t), b_run.checkpoint(donor_step[t])
        used += [a_ck] + ([b_ck] if donor_step[t] not in b_cache else [])
        at, bt = a_ck.model, b_ck.model
        if donor_step[t] not in b_cache:
            b_cache[donor_step[t]] = ev_checkpoint(b_ck)
        rows = {"A": ev_checkpoint(a_ck), "B": b_cache[donor_step[t]]}
        for g in chosen:
            rows[swap_label(g.name)] = ev(swap(at, bt, g))
        for lab, row in rows.items():
            for m in traj[lab]:
                traj[lab][m].append(row.get(m))
        for who, m in (("A", at), ("B", bt)):
            weights[f"{who}_delta"].append(weight_delta(m, ref))
            weights[f"{who}_frac_attention"].append(frac_weight_delta(m, ref, attention))

    # ---- one step: every group alone, interpolation, kl_mc, example, samples
    at = a_run.checkpoint(table_step).model
    bt = b_run.checkpoint(donor_step[table_step]).model
    ti = a_steps.index(table_step)
    known = {lab: {m: traj[lab][m][ti] for m in traj[lab]} for lab in traj}  # reuse, not redo
    base_a, base_b = known["A"], known["B"]

    def ev_swap(group: Group) -> dict[str, Any]:
        return known.get(swap_label(group.name)) or ev(swap(at, bt, group))

    part_of = _partition_of(at)
    table_groups = resolve_groups(
        at, [*COARSE, *partitions(at)["heads"][: at.cfg.n_layers * at.cfg.n_heads], "all"]
    )
    n_total = sum(p.numel() for p in at.parameters())
    single = []
    for g in table_groups:
        row = ev_swap(g)
        single.append(
            {
                "group": g.name,
                "partition": part_of.get(g.name, ""),
                "param_share": g.numel(at) / n_total,
                "frac_weight_delta": frac_weight_delta(at, ref, g),
                **{f"d_{m}": _diff(row[m], base_a[m]) for m in METRICS},
                "gap_closed_kl_exact": gap_closed(
                    base_a["kl_exact"], row["kl_exact"], base_b["kl_exact"]
                ),
                "gap_closed_ood_rate": gap_closed(
                    base_a["ood_rate"], row["ood_rate"], base_b["ood_rate"]
                ),
            }
        )
    alphas = [i / (n_alphas - 1) for i in range(n_alphas)] if n_alphas > 1 else [1.0]
    interp: dict[str, Any] = {"alpha": alphas}
    for g in resolve_groups(at, ["attention", "non-attention"]):
        curve = [
            base_a if al == 0.0 else ev_swap(g) if al == 1.0 else ev(interpolate(at, bt, g, al))
            for al in alphas
        ]
        interp[g.name] = {m: [c[m] for c in curve] for m in METRICS}

    models = {"A": at, "B": bt} | {swap_label(g.name): swap(at, bt, g) for g in chosen}
    kl_mc_out: dict[str, dict[str, float]] = {}
    if mc_samples >= 2:
        for lab, m in models.items():
            mean, se = kl_mc(m, ref, test.prompts, task.max_new_tokens, mc_samples, seed)
            kl_mc_out[lab] = {"mean": mean, "se": se, "n_per_prompt": mc_samples}
    outputs = {lab: greedy(m, test.prompts, task.max_new_tokens) for lab, m in models.items()}
    samples, example = _samples_and_example(outputs, models, ref, test.prompts, task)

    checkpoints = [{"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in used]
    res = SurgeryResult(
        a=a_run.name,
        b=b_run.name,
        ref=ref_ckpt.policy,
        beta=beta,
        pair=pair,
        groups=[g.name for g in chosen],
        exact_threshold=exact_threshold,
        steps=a_steps,
        donor_steps=[donor_step[t] for t in a_steps],
        trajectory=traj,
        weights=weights,
        param_share={g.name: g.numel(at) / n_total for g in table_groups},
        table_step=table_step,
        table_donor_step=donor_step[table_step],
        single=single,
        interpolation=interp,
        kl_mc=kl_mc_out,
        example=example,
        samples=samples,
        checkpoints=checkpoints,
    )
    res.claims = claims(res)
    return res


def _diff(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else x - y


def _samples_and_example(
    outputs: dict[str, Responses],
    models: dict[str, HookedTransformer],
    ref: HookedTransformer,
    prompts: torch.Tensor,
    task: Task,
    n_samples: int = 16,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    ood = {lab: ood_and_error(r.values, prompts, task)[0] for lab, r in outputs.items()}
    a_only = (ood["A"] & ~ood["B"]).nonzero().flatten().tolist()
    rest = [i for i in range(len(prompts)) if i not in set(a_only)]
    samples = []
    for i in (a_only + rest)[:n_samples]:
        row: dict[str, Any] = {"prompt": f"{int(prompts[i])}="}
        for lab, r in outputs.items():
            row[lab] = r.text(i)
            row[f"{lab} OOD"] = bool(ood[lab][i])
        samples.append(row)
    if not a_only:
        return samples, None
    i = a_only[0]
    b_resp = outputs["B"].text(i)
    text = f"{int(prompts[i])}=" + b_resp[:-1]  # teacher-forced on B's response, EOS dropped
    pats = {
        "ref": pattern(ref, text),
        "A": pattern(models["A"], text),
        "B": pattern(models["B"], text),
    }
    example = {
        "prompt": int(prompts[i]),
        "text": text,
        "tokens": pats["A"].tokens,
        "responses": {lab: outputs[lab].text(i) for lab in ("A", "B")},
        "patterns": {lab: p.values for lab, p in pats.items()},
    }
    return samples, example


def claims(res: SurgeryResult) -> list[dict[str, Any]]:
    """The case study's three surgery claims, each with the measured numbers and a verdict."""
    t = res.steps.index(res.table_step)
    tr = res.trajectory

    def at(label: str, metric: str) -> float | None:
        return tr[label][metric][t] if label in tr else None

    def closed(label: str, metric: str) -> float | None:
        return gap_closed(at("A", metric), at(label, metric), at("B", metric))

    out = []
    for group, want_big in (("attention", True), ("non-attention", False)):
        lab = swap_label(group)
        if lab not in tr:
            continue
        ck, co = closed(lab, "kl_exact"), closed(lab, "ood_rate")
        n_big = sum(x is not None and x >= 0.5 for x in (ck, co))
        if want_big:
            claim = "Swapping A's attention for B's tames KL and OOD"
            verdict = "holds" if n_big == 2 else "partly holds" if n_big == 1 else "does not hold"
        else:
            claim = "Swapping A's non-attention parameters for B's does not"
            verdict = "holds" if n_big == 0 else "partly holds" if n_big == 1 else "does not hold"
        if ck is None or co is None:  # A and B agree on a metric: no gap to close
            verdict = "undetermined"
        # along the trajectory: steps where A is clearly further from ref than B
        gap_steps = [
            i
            for i in range(len(res.steps))
            if tr["A"]["kl_exact"][i] - tr["B"]["kl_exact"][i] > 0.1
        ]
        nearer_b = sum(
            abs(tr[lab]["kl_exact"][i] - tr["B"]["kl_exact"][i])
            < abs(tr[lab]["kl_exact"][i] - tr["A"]["kl_exact"][i])
            for i in gap_steps
        )
        out.append(
            {
                "claim": claim,
                "case_study": "attention swap: KL grows slowly, OOD dips"
                if want_big
                else "non-attention swap: KL still explodes, OOD barely changes",
                "measured": (
                    f"step {res.table_step}: kl_exact {at('A', 'kl_exact'):.3f} → "
                    f"{at(lab, 'kl_exact'):.3f} "
                    f"(B {at('B', 'kl_exact'):.3f}; {_pct(ck)} of the gap closed), OOD rate "
                    f"{at('A', 'ood_rate'):.1%} → {at(lab, 'ood_rate'):.1%} "
                    f"(B {at('B', 'ood_rate'):.1%}; "
                    f"{_pct(co)} closed); KL nearer B's than A's at {nearer_b} of {len(gap_steps)} "
                    "steps where A's kl_exact exceeds B's by > 0.1"
                ),
                "gap_closed_kl_exact": ck,
                "gap_closed_ood_rate": co,
                "verdict": verdict,
            }
        )
    fracs = res.weights["A_frac_attention"]
    share = res.param_share["attention"]
    final = fracs[t]
    later = [f for f, s in zip(fracs, res.steps) if s > 0 and f == f]
    lo, hi = (min(later), max(later)) if later else (float("nan"), float("nan"))
    if final < share and 0.15 <= final <= 0.35:
        verdict = "holds"
    elif final < share:
        verdict = "partly holds"
    else:
        verdict = "does not hold"
    out.append(
        {
            "claim": "Attention takes a small share of A's weight change (≈25%) "
            "though it holds most parameters",
            "case_study": "FracWeightDelta(attention) ≈ 25% of the change; "
            "attention ≈ 65% of parameters",
            "measured": (
                f"FracWeightDelta(attention) of A vs ref: {final:.1%} at step {res.table_step} "
                f"(range {lo:.1%}–{hi:.1%} over the trajectory); attention holds {share:.1%} "
                "of the parameters"
            ),
            "frac_weight_delta_attention": final,
            "param_share_attention": share,
            "verdict": verdict,
        }
    )
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


# ----------------------------------------------------------------------------- the report


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def summary_lines(res: SurgeryResult) -> list[str]:
    """The report's summary: measured numbers, then one line per claim with its verdict."""
    t = res.steps.index(res.table_step)
    tr = res.trajectory
    best = min(
        (r for r in res.single if r["d_kl_exact"] is not None and r["group"] not in COARSE[:2]),
        key=lambda r: r["d_kl_exact"],
    )
    head = (
        f"At step {res.table_step}, A ({res.a}) answers out of distribution on "
        f"{tr['A']['ood_rate'][t]:.1%} of the test prompts and puts "
        f"{tr['A']['ood_mass'][t]:.1%} of its "
        f"probability on OOD responses, with kl_exact {tr['A']['kl_exact'][t]:.3f} nats to the "
        f"reference; B ({res.b}, step {res.table_donor_step}): {tr['B']['ood_rate'][t]:.1%}, "
        f"{tr['B']['ood_mass'][t]:.1%}, {tr['B']['kl_exact'][t]:.3f}. "
    )
    for g in res.groups:
        lab = swap_label(g)
        head += (
            f"{lab}: OOD {tr[lab]['ood_rate'][t]:.1%}, OOD mass {tr[lab]['ood_mass'][t]:.1%}, "
            f"kl_exact {tr[lab]['kl_exact'][t]:.3f}. "
        )
    head += (
        f"Apart from attention and non-attention, the group that fixes A most on its own is "
        f"{best['group']} "
        f"(Δ kl_exact {best['d_kl_exact']:+.3f}, Δ OOD {best['d_ood_rate']:+.1%}, "
        f"{best['param_share']:.1%} of the parameters)."
    )
    lines = [head]
    for c in res.claims:
        lines.append(f"{c['claim']}: {c['verdict'].upper()}. {c['measured']}.")
    return lines


def build_report(res: SurgeryResult, prov: dict[str, Any]) -> Report:
    labels = list(res.trajectory)
    tr = res.trajectory
    steps = list(zip(res.steps, res.donor_steps))

    def per_step(metrics: Sequence[str]) -> Table:
        cols = ["step of A", "step of B"] + [f"{lab} {m}" for m in metrics for lab in labels]
        rows = [
            [s, d] + [tr[lab][m][i] for m in metrics for lab in labels]
            for i, (s, d) in enumerate(steps)
        ]
        return Table(f"{', '.join(metrics)} at every step", cols, rows)

    claims_table = Table(
        "The case study's claims",
        ["claim", "case study", "measured here", "verdict"],
        [[c["claim"], c["case_study"], c["measured"], c["verdict"]] for c in res.claims],
    )
    mc_rows = [[lab, v["mean"], v["se"], v["n_per_prompt"]] for lab, v in res.kl_mc.items()]
    kl_section = Section(
        "KL to the reference over A's training",
        [
            f"kl_greedy is the case study's KL (log-ratio at the greedy response); kl_exact sums "
            f"π·log(π/π_ref) over the enumerated response tree (prefixes below probability "
            f"{res.exact_threshold:g} left unexpanded; mean left-out mass at the last step: "
            f"{tr['A']['exact_residual'][-1]:.2%} for A; the left-out part of the KL is unknown "
            "in size and sign, so kl_exact is not a bound). Acc and Margin use A's β for every "
            "model. Pairing: A_t with "
            + ("B_t, the same training step." if res.pair == "step" else "B's final checkpoint.")
        ],
        [
            FigureBlock(
                plots.surgery_metric(res, ["kl_greedy", "kl_exact"]),
                "KL to the reference of A, B and A with each group from B.",
            )
        ],
        [per_step(["kl_greedy", "kl_exact", "exact_residual"])]
        + (
            [
                Table(
                    f"kl_mc at step {res.table_step} (temperature-1 samples)",
                    ["model", "kl_mc", "standard error", "samples per prompt"],
                    mc_rows,
                )
            ]
            if mc_rows
            else []
        ),
    )
    ood_section = Section(
        "Out-of-distribution behaviour over A's training",
        [
            "Left: greedy OOD rate. Right: OOD(A′) − OOD(A) for each swap; green where the swap "
            "helps (fewer OOD answers), red where it harms."
        ],
        [
            FigureBlock(plots.surgery_ood(res)),
            FigureBlock(
                plots.surgery_metric(res, ["ood_mass", "error"]), "Exact OOD mass and mean Error."
            ),
        ],
        [per_step(["ood_rate", "ood_mass"]), per_step(["error", "acc", "margin"])],
    )
    w = res.weights
    weight_section = Section(
        "Where A's weight change goes",
        [
            f"FracWeightDelta(attention) is attention's part of Σ_P ‖A_t[P] − ref[P]‖_F. "
            f"Attention holds {res.param_share['attention']:.1%} of the parameters. "
            "Right: the same "
            "WeightDelta buys different KL at different β (the case study's Fig. 3, right)."
        ],
        [FigureBlock(plots.surgery_weights(res))],
        [
            Table(
                "Weight change from the reference",
                [
                    "step",
                    "A WeightDelta",
                    "A FracWeightDelta(attention)",
                    "B WeightDelta",
                    "B FracWeightDelta(attention)",
                ],
                [
                    [
                        s,
                        w["A_delta"][i],
                        w["A_frac_attention"][i],
                        w["B_delta"][i],
                        w["B_frac_attention"][i],
                    ]
                    for i, s in enumerate(res.steps)
                ],
            )
        ],
    )
    ex = res.example
    if ex is not None:
        pa, pb = np.asarray(ex["patterns"]["A"]), np.asarray(ex["patterns"]["B"])
        n_heads = pa.shape[1]
        att_section = Section(
            "Attention patterns on a prompt where A is OOD and B is not",
            [
                f"Prompt {ex['prompt']}=: A answers {ex['responses']['A']!r}, B answers "
                f"{ex['responses']['B']!r}. Both models (and the reference) are run on the same "
                f"tokens, {ex['text']!r} (B's answer, teacher-forced), so the maps compare "
                "position by position. Row = query position (it predicts the next token)."
            ],
            [
                FigureBlock(
                    plots.attention_grid(
                        {k: ex["patterns"][k] for k in ("ref", "A", "B")}, ex["tokens"]
                    )
                )
            ],
            [
                Table(
                    "How different are A's and B's heads on this prompt",
                    ["head", "mean |A − B|", "max |A − B|"],
                    [
                        [
                            f"L{l}H{h}",
                            float(np.abs(pa[l, h] - pb[l, h]).mean()),
                            float(np.abs(pa[l, h] - pb[l, h]).max()),
                        ]
                        for l in range(pa.shape[0])
                        for h in range(n_heads)
                    ],
                )
            ],
        )
    else:
        att_section = Section(
            "Attention patterns on a prompt where A is OOD and B is not",
            [f"No test prompt at step {res.table_step} has A out of distribution and B in it."],
        )
    metric_cols = ["kl_greedy", "kl_exact", "ood_rate", "ood_mass", "error", "acc", "margin"]
    single_section = Section(
        f"Every group swapped alone (step {res.table_step})",
        [
            "Each row gives A with one group taken from B, minus A (negative KL, OOD and Error "
            "move toward in-distribution). 'Gap closed' is (D(A) − D(A′)) / (D(A) − D(B)). "
            "FracWeightDelta is the group's part of A's weight change from the reference; head "
            "slices are measured as slices, so head rows do not add up with whole-tensor rows.",
            "The interpolation moves only the group a fraction alpha of the way from A to B.",
        ],
        [
            FigureBlock(plots.single_group_bars(res.single)),
            FigureBlock(
                plots.interpolation_curves(res.interpolation),
                "Interpolation of the attention and non-attention groups.",
            ),
        ],
        [
            Table(
                "One group from B",
                ["group", "partition", "parameter share", "FracWeightDelta"]
                + [f"Δ {m}" for m in metric_cols]
                + ["gap closed (kl_exact)", "gap closed (OOD)"],
                [
                    [r["group"], r["partition"], r["param_share"], r["frac_weight_delta"]]
                    + [r[f"d_{m}"] for m in metric_cols]
                    + [r["gap_closed_kl_exact"], r["gap_closed_ood_rate"]]
                    for r in res.single
                ],
            ),
            Table(
                "Interpolation",
                ["group", "alpha"] + metric_cols,
                [
                    [g, al] + [res.interpolation[g][m][i] for m in metric_cols]
                    for g in res.interpolation
                    if g != "alpha"
                    for i, al in enumerate(res.interpolation["alpha"])
                ],
            ),
        ],
    )
    sample_cols = ["prompt"] + labels
    samples_section = Section(
        f"Samples (greedy, step {res.table_step})",
        ["Test prompts where A is OOD and B is not come first; * marks an OOD answer."],
        tables=[
            Table(
                "Greedy responses",
                sample_cols,
                [
                    [r["prompt"]] + [r[lab] + (" *" if r[f"{lab} OOD"] else "") for lab in labels]
                    for r in res.samples
                ],
            )
        ],
    )
    return Report(
        kind="surgery",
        slug=pair_slug(res.a, res.b),
        title=f"Surgery: {res.a} (A) with parts of {res.b} (B)",
        summary=summary_lines(res),
        sections=[
            Section("Verdicts", tables=[claims_table]),
            kl_section,
            ood_section,
            weight_section,
            att_section,
            single_section,
            samples_section,
        ],
        data=jsonable(res),
        provenance=prov,
    )


# ----------------------------------------------------------------------------- CLI


@dataclass
class SurgeryOptions(Folders):
    a: str = option("beta0.01", help="policy A, whose groups are replaced (the OOD one)")
    b: str = option("beta1.0", help="policy B, the donor (in-distribution); 'ref' = A's reference")
    groups: list[str] = option(
        ["attention", "non-attention"],
        help="groups swapped at every step; 'all' = the finest partition (see interp.params)",
    )
    pair: str = option(
        "step",
        help="pair A_t with B_t (step) or with B's final checkpoint (final)",
        choices=["step", "final"],
    )
    step: int | None = option(None, help="A's step for the single-group table (default: A's last)")
    exact_threshold: float = option(1e-4, help="kl_exact: expand prefixes at least this probable")
    mc_samples: int = option(16, help="kl_mc samples per prompt at the table step (0 = skip)")
    alphas: int = option(11, help="points on the interpolation curves")
    seed: int = option(0, help="seed of the kl_mc samples")
    progress: bool = option(True, help="show a progress bar")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.surgery`: the surgery report for policies A and B."""
    prog = "python -m interp.surgery"
    opts = parse(
        SurgeryOptions, argv, prog, "Swap parameter groups between two policies and report."
    )

    def validate() -> None:
        if not 0 <= opts.exact_threshold < 1:
            raise UserError("--exact-threshold must be in [0, 1)")
        if opts.mc_samples == 1 or opts.mc_samples < 0:
            raise UserError("--mc-samples must be 0 (skip) or at least 2")
        if opts.alphas < 2:
            raise UserError("--alphas must be at least 2")

    def compute(root: Path) -> SurgeryResult:
        return run_surgery(
            opts.a, opts.b, opts.groups, opts.pair, opts.step, root, opts.exact_threshold,
            opts.mc_samples, opts.alphas, opts.seed, opts.progress,
        )  # fmt: skip

    return run_comparison(
        prog,
        argv,
        opts,
        "surgery",
        compute,
        build_report,
        summary_lines,
        validate,
        {"kl_mc": opts.seed},
    )


if __name__ == "__main__":
    sys.exit(main())
