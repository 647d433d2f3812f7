"""Activation patching, across two policies and within one; `python -m interp.patching`.

**Across policies.** Run policy A on some tokens, but replace one activation — a hook
site at one position — with the activation policy B computes on the same tokens, and see
how far A's output moves toward B's. Sites: each layer's `resid_pre`, each head's output
`z`, `attn_out`, `mlp_out` and `resid_post`. The tokens are a prompt where A answers out
of distribution and B does not, followed by B's answer (teacher-forced, EOS dropped). The
*decision position* q* is the first position where A's next-token choice differs from
B's token. Per prompt, at q*:
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
differ in one digit — "305=3" vs "315=3" for the tens digit, with the identity answer
teacher-forced up to that digit — and the normalised logit difference between the clean
and the corrupted digit at the last position (1 = clean behaviour restored, 0 = corrupted
behaviour). Patching the clean run's activation at each (site, position) into the
corrupted run shows which positions and heads carry each digit of s into the answer.

The engine (`patch_grid`) takes TransformerLens's patch setters and any metric from
logits to per-prompt numbers; the named analyses sit on top of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.attention import PLACES
from interp.checkpoints import resolve_pair
from interp.cli import UserError, option, parse, run_comparison
from interp.data import EOS, Task, make_dataset, prompt_ids
from interp.lens import ActivationCache, HookedTransformer, get_act_name, patching, quiet_patching
from interp.metrics import ood_and_error
from interp.report import Folders, pair_slug
from interp.sampling import greedy


@dataclass(frozen=True)
class Site:
    """A hook site: a TransformerLens activation name and, for per-head activations, a head."""

    label: str
    hook: str
    layer: int
    head: int | None = None

    def setter(self, pos: int) -> Callable[[Tensor, Any], Tensor]:
        """A forward hook replacing this site's activation at `pos` with the source's."""
        index = [self.layer, pos] if self.head is None else [self.layer, pos, self.head]
        tl_setter = (
            patching.layer_pos_patch_setter
            if self.head is None
            else patching.layer_pos_head_vector_patch_setter
        )

        def hook(act: Tensor, hook: Any, source: Tensor) -> Tensor:
            return tl_setter(act.clone(), index, source)

        return hook


def sites(model: HookedTransformer) -> list[Site]:
    out = []
    for l in range(model.cfg.n_layers):
        out.append(Site(f"L{l} resid_pre", get_act_name("resid_pre", l), l))
        out += [Site(f"L{l}H{h} z", get_act_name("z", l), l, h) for h in range(model.cfg.n_heads)]
        out.append(Site(f"L{l} attn_out", get_act_name("attn_out", l), l))
        out.append(Site(f"L{l} mlp_out", get_act_name("mlp_out", l), l))
        out.append(Site(f"L{l} resid_post", get_act_name("resid_post", l), l))
    return out


@torch.inference_mode()
def run_patched(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source: ActivationCache | dict[str, Tensor],
    patches: Sequence[tuple[Site, int]],
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of `model` on `tokens` with each (site, position) taken from `source`."""
    hooks = [(s.hook, partial(s.setter(p), source=source[s.hook])) for s, p in patches]
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


@torch.inference_mode()
def patch_grid(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source: ActivationCache | dict[str, Tensor],
    site_list: Sequence[Site],
    metric: Callable[[Tensor], Tensor],
    positions: Sequence[int] | None = None,
) -> Float[Tensor, "site pos batch metric"]:
    """The generic engine: `metric(patched logits)` -> [batch, m] for every site and position."""
    positions = range(tokens.shape[1]) if positions is None else positions
    rows = []
    for s in site_list:
        rows.append(
            torch.stack([metric(run_patched(model, tokens, source, [(s, p)])) for p in positions])
        )
    return torch.stack(rows)


# ----------------------------------------------------------------------------- across policies


@dataclass
class CrossPatching:
    sites: list[str]
    positions: list[str]
    prompts: list[int]
    decision_pos: list[int]
    # [site, pos, prompt] arrays
    gain: Tensor  # log p(b) − log p_A(b) at the decision position
    kl_to_b: Tensor
    fixed: Tensor
    gap: Tensor  # [prompt]: log p_B(b) − log p_A(b)
    baseline_kl_to_b: Tensor  # [prompt]: KL(p_B ‖ p_A) at the decision position

    @property
    def recovered(self) -> Tensor:
        """[site, pos]: Σ gain / Σ gap over the prompts."""
        return self.gain.sum(-1) / self.gap.sum()


def _answer_inputs(prompts: Tensor, answers: list[str]) -> Tensor:
    """Prompt + answer without its EOS, for rows whose answers have equal length."""
    return torch.tensor(
        [prompt_ids(int(s)) + [int(c) for c in ans.rstrip(".")] for s, ans in zip(prompts, answers)]
    )


def decision_metric(
    tokens: Tensor, a_logits: Tensor, b_logits: Tensor, plen: int
) -> tuple[Tensor, Callable[[Tensor], Tensor], Tensor, Tensor]:
    """The decision position per row, the metric (gain on B's token, kl_to_b) at it, the
    unpatched KL(p_B ‖ p_A) there, and the gap log p_B(b) − log p_A(b)."""
    n, t = tokens.shape
    target = torch.cat([tokens[:, 1:], torch.full((n, 1), EOS)], dim=1)  # B's next tokens
    differs = a_logits.argmax(-1) != target
    differs[:, : plen - 1] = False
    q = torch.where(differs.any(1), differs.float().argmax(1), torch.full((n,), t - 1))
    rows = torch.arange(n)
    b_tok = target[rows, q]
    lp_a = a_logits[rows, q].log_softmax(-1)
    lp_b = b_logits[rows, q].log_softmax(-1)
    gap = lp_b[rows, b_tok] - lp_a[rows, b_tok]

    def metric(logits: Tensor) -> Tensor:
        lp = logits[rows, q].float().log_softmax(-1)
        kl = (lp_b.exp() * (lp_b - lp)).sum(-1)
        return torch.stack([lp[rows, b_tok] - lp_a[rows, b_tok], kl], dim=-1)

    baseline_kl = (lp_b.exp() * (lp_b - lp_a)).sum(-1)
    return q, metric, baseline_kl, gap


@torch.inference_mode()
def greedy_patched(
    a: HookedTransformer, b: HookedTransformer, prompts: Tensor, site: Site, pos: int, limit: int
) -> list[str]:
    """A's greedy answers with (site, pos) taken from B's run on the same sequence at every
    step (prompts of one length). Positions not yet generated are left alone."""
    toks = torch.tensor([prompt_ids(int(s)) for s in prompts])
    plen = toks.shape[1]
    for _ in range(limit):
        if pos < toks.shape[1]:
            _, cache = b.run_with_cache(toks, names_filter=lambda n: n == site.hook)
            logits = run_patched(a, toks, cache, [(site, pos)])
        else:
            logits = a(toks)
        toks = torch.cat([toks, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    out = []
    for row in toks[:, plen:].tolist():
        cut = row[: row.index(EOS) + 1] if EOS in row else row
        out.append("".join("." if t == EOS else str(t) if t < 10 else "?" for t in cut))
    return out


def cross_policy(
    a: HookedTransformer, b: HookedTransformer, prompts: Tensor, task: Task, max_prompts: int = 64
) -> CrossPatching | None:
    """Patch B's activations into A on prompts where A is OOD and B is not (see the module
    docstring); None when there are no such prompts."""
    ga, gb = greedy(a, prompts, task.max_new_tokens), greedy(b, prompts, task.max_new_tokens)
    ood_a = ood_and_error(ga.values, prompts, task)[0]
    ood_b = ood_and_error(gb.values, prompts, task)[0]
    picks = (ood_a & ~ood_b).nonzero().flatten().tolist()
    if not picks:
        return None
    # one shape of input: the most common (prompt length, answer length) among the picks
    shapes = [(len(prompt_ids(int(prompts[i]))), int(gb.lengths[i])) for i in picks]
    common = max(set(shapes), key=shapes.count)
    picks = spread([i for i, sh in zip(picks, shapes) if sh == common], max_prompts)
    sel = prompts[torch.tensor(picks)]
    answers = [gb.text(i) for i in picks]
    tokens = _answer_inputs(sel, answers)
    plen = common[0]
    with torch.inference_mode():
        a_logits = a(tokens)
        b_logits, b_cache = b.run_with_cache(tokens)
    q, metric, base_kl, gap = decision_metric(tokens, a_logits, b_logits, plen)
    site_list = sites(a)
    grid = patch_grid(a, tokens, b_cache, site_list, metric)  # [site, pos, prompt, 2]
    fixed = torch.zeros(grid.shape[:3])
    for i, s in enumerate(site_list):
        for p in range(tokens.shape[1]):
            vals = [task_value(x) for x in greedy_patched(a, b, sel, s, p, task.max_new_tokens)]
            fixed[i, p] = ood_and_error(vals, sel, task)[0].logical_not().float()
    labels = position_labels(plen - 1, tokens.shape[1] - plen)
    return CrossPatching(
        sites=[s.label for s in site_list],
        positions=labels,
        prompts=sel.tolist(),
        decision_pos=q.tolist(),
        gain=grid[..., 0],
        kl_to_b=grid[..., 1],
        fixed=fixed,
        gap=gap,
        baseline_kl_to_b=base_kl,
    )


def spread(items: Sequence[int], n: int) -> list[int]:
    """At most n of the items, evenly spaced (the test prompts are sorted by s: taking the
    first n would favour small numbers)."""
    items = list(items)
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] if n > 1 else items[0] for i in range(n)]


def task_value(answer: str) -> int | None:
    """The integer of an answer string like "305." (None if it does not parse)."""
    body = answer[:-1] if answer.endswith(".") else None
    return int(body) if body and body.isdigit() else None


def position_labels(n_digits: int, n_answer: int) -> list[str]:
    return (
        PLACES.get(n_digits, [f"s{i}" for i in range(n_digits)])
        + ["="]
        + [f"y{i}" for i in range(n_answer)]
    )


# ----------------------------------------------------------------------------- within a policy


def digit_pairs(
    prompts: Tensor, place: int, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clean and corrupted tokens that differ in digit `place` of the prompt, with the
    identity answer teacher-forced up to that digit; and the clean / corrupted digits."""
    g = torch.Generator().manual_seed(seed + place)
    clean, corrupt, want, other = [], [], [], []
    for s in prompts.tolist():
        digits = [int(c) for c in str(s)]
        # any other digit; a leading digit stays non-zero so the prompt keeps its length
        choices = [d for d in range(1 if place == 0 else 0, 10) if d != digits[place]]
        new = choices[int(torch.randint(len(choices), (1,), generator=g))]
        alt = digits.copy()
        alt[place] = new
        answer = digits[:place]
        clean.append(prompt_ids(s) + answer)
        corrupt.append(prompt_ids(int("".join(map(str, alt)))) + answer)
        want.append(digits[place])
        other.append(new)
    return torch.tensor(clean), torch.tensor(corrupt), torch.tensor(want), torch.tensor(other)


def _logit_diff(logits: Tensor, want: Tensor, other: Tensor) -> Tensor:
    """Mean over rows of logit(clean digit) − logit(corrupted digit) at the last position."""
    last = logits[:, -1].float()
    rows = torch.arange(len(last))
    return (last[rows, want] - last[rows, other]).mean()


def _restored(logits: Tensor, want: Tensor, other: Tensor, lo: float, hi: float) -> Tensor:
    """The logit difference rescaled so the corrupted run gives 0 and the clean run 1."""
    return (_logit_diff(logits, want, other) - lo) / (hi - lo)


@torch.inference_mode()
def digit_patching(model: HookedTransformer, prompts: Tensor, seed: int = 0) -> dict[str, Any]:
    """Per prompt digit: TransformerLens's patching of the clean run into the corrupted one,
    at resid_pre, attn_out, mlp_out (each [layer, pos]) and each head's output ([layer, pos,
    head]), as the normalised logit difference."""
    n = len(str(int(prompts[0])))
    out: dict[str, Any] = {}
    for place, name in enumerate(PLACES.get(n, [f"s{i}" for i in range(n)])):
        clean, corrupt, want, other = digit_pairs(prompts, place, seed)
        clean_logits, clean_cache = model.run_with_cache(clean)
        ld_clean = float(_logit_diff(clean_logits, want, other))
        ld_corrupt = float(_logit_diff(model(corrupt), want, other))
        metric = partial(_restored, want=want, other=other, lo=ld_corrupt, hi=ld_clean)
        with quiet_patching():
            res = {
                "resid_pre": patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric),
                "attn_out": patching.get_act_patch_attn_out(model, corrupt, clean_cache, metric),
                "mlp_out": patching.get_act_patch_mlp_out(model, corrupt, clean_cache, metric),
                "head_out": patching.get_act_patch_attn_head_out_by_pos(
                    model, corrupt, clean_cache, metric
                ),
            }
        res["logit_diff_clean"], res["logit_diff_corrupt"] = ld_clean, ld_corrupt
        res["positions"] = position_labels(n, place)
        out[name] = res
    return out


# ----------------------------------------------------------------------------- the analysis


@dataclass
class PatchingResult:
    a: str
    b: str
    ref: str
    cross: CrossPatching | None
    within: dict[str, dict[str, Any]]  # ref / A / B -> digit place -> results
    checks: dict[str, float]
    checkpoints: list[dict[str, Any]]
    findings: list[str] = field(default_factory=list)


def engine_checks(a: HookedTransformer, b: HookedTransformer, tokens: Tensor) -> dict[str, float]:
    """Invariants of the engine on real inputs, reported beside the results: patching a
    model's own activations changes nothing; B's final resid_post at every position gives
    A's readout of B's residual stream."""
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
    return {
        "self_patch_max_abs_logit_change": own,
        "resid_post_all_positions_vs_readout_max_abs": float((all_pos - readout).abs().max()),
    }


def run_patching(
    a: str, b: str, root: Path | None = None, max_prompts: int = 64, seed: int = 0
) -> PatchingResult:
    pair = resolve_pair(a, b, root)
    cks = {"ref": pair.ref.checkpoint(), "A": pair.a.checkpoint(), "B": pair.b.checkpoint()}
    models = {k: c.model for k, c in cks.items()}
    data = make_dataset(pair.a.key.preset, pair.a.key.seed)
    from interp.attention import modal_prompts

    prompts = modal_prompts(data.test.prompts)
    cross = cross_policy(models["A"], models["B"], prompts, data.task, max_prompts)
    within = {
        k: digit_patching(m, prompts[spread(range(len(prompts)), max_prompts)], seed)
        for k, m in models.items()
    }
    probe = torch.tensor([prompt_ids(int(s)) + [int(c) for c in str(int(s))] for s in prompts[:16]])
    res = PatchingResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        cross=cross,
        within=within,
        checks=engine_checks(models["A"], models["B"], probe),
        checkpoints=[
            {"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in cks.values()
        ],
    )
    res.findings = findings(res)
    return res


def within_grid(r: dict[str, Any]) -> tuple[Tensor, list[str]]:
    """A within-policy result as one [row, pos] grid: per layer resid_pre, attn_out,
    mlp_out and each head's output; and the row labels."""
    rows, labels = [], []
    n_layers, _, n_heads = r["head_out"].shape
    for l in range(n_layers):
        for name in ("resid_pre", "attn_out", "mlp_out"):
            rows.append(r[name][l])
            labels.append(f"L{l} {name}")
        for h in range(n_heads):
            rows.append(r["head_out"][l, :, h])
            labels.append(f"L{l}H{h} out")
    return torch.stack(rows), labels


def _best(grid: Tensor, rows: list[str], cols: list[str], spec: str) -> str:
    """The (row, column) cells holding the grid's maximum, ties listed; "none" if it is 0."""
    top = float(grid.max())
    if top <= 0:
        return "none"
    cells = (grid >= top - 1e-9).nonzero().tolist()
    where = " and ".join(f"{rows[i]} at {cols[j]}" for i, j in cells[:4])
    return f"{where} ({format(top, spec)})"


def findings(res: PatchingResult) -> list[str]:
    out = []
    c = res.cross
    if c is None:
        out.append("No test prompt has A out of distribution and B in it: nothing to patch across.")
    else:
        rec, fixed = c.recovered, c.fixed.mean(-1)
        out.append(
            f"Across policies, on {len(c.prompts)} prompts where A is OOD and B is not: the B "
            "activation that closes most of A's log-probability gap on B's next token is "
            f"{_best(rec, c.sites, c.positions, '.0%')}; the one that most often makes A's "
            f"greedy answer in-distribution is {_best(fixed, c.sites, c.positions, '.0%')}."
        )
        heads = [k for k, s in enumerate(c.sites) if " z" in s]
        layer_sites = [k for k, s in enumerate(c.sites) if s.endswith(("attn_out", "resid_post"))]
        if heads and layer_sites:
            best_head, best_layer = float(rec[heads].max()), float(rec[layer_sites].max())
            k = heads[int(rec[heads].max(1).values.argmax())]
            compare = "less than" if best_head < best_layer - 1e-9 else "as much as or more than"
            out.append(
                f"The best single head output, {c.sites[k]}, closes {best_head:.0%} of the gap: "
                f"{compare} the best whole-layer site ({best_layer:.0%})."
            )
    for who in ("ref", "A", "B"):
        parts = []
        for place, r in res.within[who].items():
            grid, labels = within_grid(r)
            heads = [i for i, lab in enumerate(labels) if lab.endswith(" out") and "H" in lab]
            parts.append(
                f"{place}: {_best(grid[heads], [labels[i] for i in heads], r['positions'], '.2f')}"
            )
        out.append(
            f"Within {who}, the head output that carries each prompt digit most — "
            + "; ".join(parts)
            + "."
        )
    return out


def build_report(res: PatchingResult, prov: dict[str, Any]):
    from interp import plots
    from interp.report import FigureBlock, Report, Section, Table, jsonable

    sections = []
    c = res.cross
    if c is not None:
        grids = {
            "recovered (Σ gain / Σ gap)": c.recovered,
            "KL(p_B ‖ p) (mean)": c.kl_to_b.mean(-1),
            "greedy answer in-distribution (share)": c.fixed.mean(-1),
        }
        rows = [
            [
                s,
                pos,
                float(c.recovered[i, p]),
                float(c.kl_to_b[i, p].mean()),
                float(c.fixed[i, p].mean()),
            ]
            for i, s in enumerate(c.sites)
            for p, pos in enumerate(c.positions)
        ]
        sections.append(
            Section(
                "Patching B's activations into A",
                [
                    f"{len(c.prompts)} test prompts where A is OOD and B is not, each followed by "
                    "B's answer. Unpatched, KL(p_B ‖ p_A) at the decision position is "
                    f"{float(c.baseline_kl_to_b.mean()):.3f} on average. Positions after a "
                    "prompt's decision position cannot change it (causal attention) and show 0 "
                    "recovered."
                ],
                [FigureBlock(plots.patch_heatmaps(grids, c.sites, c.positions))],
                [
                    Table(
                        "Per site and position",
                        ["site", "position", "recovered", "KL to B", "greedy fixed"],
                        rows,
                    )
                ],
            )
        )
    else:
        sections.append(
            Section("Patching B's activations into A", ["No prompt where A is OOD and B is not."])
        )
    for place in res.within["A"]:
        grids, rows = {}, []
        for who in ("ref", "A", "B"):
            r = res.within[who][place]
            grid, labels = within_grid(r)
            grids[who] = grid
            rows += [[who, lab] + [float(x) for x in grid[k]] for k, lab in enumerate(labels)]
        pos = res.within["A"][place]["positions"]
        sections.append(
            Section(
                f"Within each policy: the {place} digit",
                [
                    f"Clean and corrupted prompts differ in the {place} digit; the answer is "
                    "teacher-forced up to that digit. 1 = patching the clean activation restores "
                    "the clean digit's logit lead, 0 = no effect."
                ],
                [FigureBlock(plots.patch_heatmaps(grids, labels, pos, vmin=-0.2, vmax=1.0))],
                [Table(f"{place} digit", ["model", "site"] + pos, rows)],
            )
        )
    sections.append(
        Section(
            "Engine checks",
            tables=[
                Table(
                    "Invariants measured on this run",
                    ["check", "max |difference|"],
                    [[k, v] for k, v in res.checks.items()],
                )
            ],
        )
    )
    return Report(
        kind="patching",
        slug=pair_slug(res.a, res.b),
        title=f"Activation patching: {res.a} (A) and {res.b} (B)",
        summary=res.findings,
        sections=sections,
        data=jsonable(res),
        provenance=prov,
    )


@dataclass
class PatchingOptions(Folders):
    a: str = option("beta0.01", help="policy A (the OOD one), patched")
    b: str = option("beta1.0", help="policy B (the in-distribution one), the source")
    max_prompts: int = option(64, help="prompts per analysis, evenly spread over the test split")
    seed: int = option(0, help="seed of the corrupted digits")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.patching`: the activation-patching report for policies A and B."""
    prog = "python -m interp.patching"
    opts = parse(PatchingOptions, argv, prog, "Activation patching within and across two policies.")

    def validate() -> None:
        if opts.max_prompts < 1:
            raise UserError("--max-prompts must be at least 1")

    def compute(root: Path) -> PatchingResult:
        return run_patching(opts.a, opts.b, root, opts.max_prompts, opts.seed)

    return run_comparison(
        prog,
        argv,
        opts,
        "patching",
        compute,
        build_report,
        lambda r: r.findings,
        validate,
        {"corrupted digits": opts.seed},
    )


if __name__ == "__main__":
    sys.exit(main())
