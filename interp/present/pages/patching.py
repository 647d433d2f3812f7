"""The activation-patching report: findings prose and the page (`build_report`).

The findings are also the report's summary and go into its JSON twin's `data`
(`PatchingResult.to_json(findings)`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor

from interp.analysis.patching import PatchingResult
from interp.present.figures.patching import cross_heatmaps, within_heatmaps
from interp.present.html import FigureBlock, Report, Section, Table, pair_slug
from interp.present.text import not_computable_lines

MODELS = ("ref", "A", "B")


def best_cells(grid: Tensor, rows: list[str], cols: list[str], spec: str) -> str:
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
    if c is None and not res.judged:
        out.append("A and B give the same greedy answer on every test prompt: nothing to patch.")
    elif c is None:
        out.append("No test prompt has A out of distribution and B in it: nothing to patch across.")
    else:
        rec, fixed = c.recovered, c.fixed_share
        out.append(
            f"Across policies, on {len(c.prompts)} prompts {c.selection}: the B "
            "activation that closes most of A's log-probability gap on B's next token is "
            f"{best_cells(rec, c.sites, c.positions, '.0%')}; the one that most often makes A's "
            f"greedy answer {c.fixed_means} is "
            f"{best_cells(fixed, c.sites, c.positions, '.0%')}."
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
    if res.within is None:
        out.append(
            "Patching within each policy is not computable: the task cannot corrupt a prompt at "
            "one place, or knows no reference answer to teacher-force."
        )
        return out
    for who in MODELS:
        parts = []
        for r in res.within[who]:
            grid, labels = r.grid()
            heads = [i for i, lab in enumerate(labels) if lab.endswith(" out") and "H" in lab]
            best = best_cells(grid[heads], [labels[i] for i in heads], r.positions, ".2f")
            parts.append(f"{r.place}: {best}")
        out.append(
            f"Within {who}, the head output that carries each prompt digit most — "
            + "; ".join(parts)
            + "."
        )
    return out


def _cross_section(res: PatchingResult) -> Section:
    title = "Patching B's activations into A"
    c = res.cross
    if c is None:
        return Section(
            title,
            ["No prompt where A is OOD and B is not." if res.judged else "A's answers are B's."],
        )
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
    return Section(
        title,
        [
            f"{len(c.prompts)} test prompts {c.selection}, each followed by "
            "B's answer. Unpatched, KL(p_B ‖ p_A) at the decision position is "
            f"{float(c.baseline_kl_to_b.mean()):.3f} on average. Positions after a "
            "prompt's decision position cannot change it (causal attention) and show 0 "
            "recovered. Recovered: the share of A's log-probability gap on B's token that the "
            "patch closes (Σ gain / Σ gap over prompts); greedy fixed: the share of prompts "
            f"whose greedy answer becomes {c.fixed_means}. In the figure yellow always means "
            "'patched A behaves like B' (for the KL panel, a low KL)."
        ],
        [FigureBlock(cross_heatmaps(c))],
        [
            Table(
                "Per site and position",
                ["site", "position", "recovered", "KL to B", "greedy fixed"],
                rows,
                percent=("recovered", "greedy fixed"),
            )
        ],
    )


def _within_sections(res: PatchingResult) -> list[Section]:
    if res.within is None:
        return [
            Section(
                "Within each policy",
                ["Not computable: the task cannot corrupt a prompt at one place."],
            )
        ]
    sections = []
    for k, first in enumerate(res.within["A"]):
        by_model = {who: res.within[who][k] for who in MODELS}
        rows = []
        for who, r in by_model.items():
            grid, labels = r.grid()
            rows += [[who, lab] + [float(x) for x in grid[i]] for i, lab in enumerate(labels)]
        sections.append(
            Section(
                f"Within each policy: the {first.place} digit",
                [
                    f"Clean and corrupted prompts differ in the {first.place} digit; the answer is "
                    "teacher-forced up to that digit. 1 = patching the clean activation restores "
                    "the clean digit's logit lead, 0 = no effect."
                ],
                [FigureBlock(within_heatmaps(by_model))],
                [Table(f"{first.place} digit", ["model", "site"] + first.positions, rows)],
            )
        )
    return sections


def build_report(res: PatchingResult, prov: dict[str, Any]) -> Report:
    found = findings(res) + not_computable_lines(res.not_computable)
    checks = Table(
        "Invariants measured on this run",
        ["check", "max |difference|"],
        [[k, v] for k, v in dataclasses.asdict(res.checks).items()],
    )
    return Report(
        kind="patching",
        slug=pair_slug(res.a, res.b),
        title=f"Activation patching: {res.a} (A) and {res.b} (B)",
        summary=found,
        sections=[
            _cross_section(res),
            *_within_sections(res),
            Section("Engine checks", tables=[checks]),
        ],
        data=res.to_json(found),
        provenance=prov,
    )
