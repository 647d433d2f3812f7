"""Claim F2 (case study §4.2, Fig. 2): in-distribution policies have similar KL.

DPO at 30 β log-spaced in [0.01, 1] on the `sweep` preset, 3 epochs, 31 evaluated
checkpoints each (step 0 and 30 more), trained as one batched ensemble per seed. The
claim: the OOD-optimal checkpoint of every β sits in one KL band (the case study:
0.25–0.5 nats of its greedy "KL"), and OOD against KL is U-shaped.

Operational definitions, computed with kl_greedy (the case study's) and with kl_exact:
- *OOD-optimal checkpoint* of a β: the one with the lowest greedy OOD rate; among ties,
  the latest (how far training can go while staying at its best). The same with the
  exact OOD mass (no ties) is reported beside it.
- *one band*: the 10th–90th percentile of the optimal checkpoints' KL over the 30 β is at
  most 0.5 nats wide;
- *U-shaped*: binning every checkpoint by KL (8 quantile bins), the bin with the lowest
  mean OOD is neither the first nor the last, and each end bin's mean exceeds it by more
  than twice the standard error of that difference and by at least 1 point. (Checkpoints
  along one trajectory are not independent, so the standard errors are optimistic; the
  1-point floor keeps a dip too small to matter from counting.)
F2 holds for a seed when both hold for kl_greedy; partly when one does.

    python analyses/beta_sweep.py --seeds 0 1 2
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _experiment import cli, publish
from _figures import ood_vs_kl, sweep_heatmaps

from interp.analysis import claims as rules
from interp.analysis.claims import Claim
from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.numberline import make_dataset
from interp.core.sampling import EXACT_THRESHOLD
from interp.core.stats import fmt_ci, spearman
from interp.present.claims import claims_table
from interp.present.html import FigureBlock, Report, Section, Table, jsonable
from interp.present.text import seeds_label
from interp.runs.config import N_CHECKPOINTS, paper_betas
from interp.runs.ensure import ensure_trained
from interp.runs.evaluations import evaluation
from interp.runs.names import PolicyKey
from interp.runs.provenance import provenance
from interp.runs.store import CheckpointRef, find_run
from interp.stages import each

KLS = ("kl_greedy", "kl_exact")
OODS = ("ood_rate", "ood_mass")
METRICS = (*KLS, *OODS, "error", "exact_residual")
N_BINS = 8


def optimal_index(ood: list[float], latest: bool = True) -> int:
    """The checkpoint with the lowest OOD; ties go to the latest (or the earliest)."""
    best = min(ood)
    hits = [i for i, v in enumerate(ood) if v <= best + 1e-12]
    return hits[-1] if latest else hits[0]


def binned(kl: np.ndarray, ood: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Mean OOD in quantile bins of KL."""
    edges = np.unique(np.quantile(kl, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, kl, side="right") - 1, 0, len(edges) - 2)
    out: dict[str, list] = {"centre": [], "mean": [], "se": [], "n": []}
    for b in range(len(edges) - 1):
        m = which == b
        if m.any():
            out["centre"].append(float(np.median(kl[m])))
            out["mean"].append(float(ood[m].mean()))
            out["se"].append(float(ood[m].std(ddof=1) / np.sqrt(m.sum())) if m.sum() > 1 else 0.0)
            out["n"].append(int(m.sum()))
    return out


def u_shape(bins: dict[str, list]) -> dict[str, Any]:
    means, se = bins["mean"], bins["se"]
    if len(means) < 3:  # KL barely varies: no shape to speak of
        return {
            "u_shaped": False,
            "min_bin": None,
            "min_kl": None,
            "left_rise": None,
            "right_rise": None,
        }
    k = int(np.argmin(means))

    def rises(end: int) -> bool:
        return means[end] - means[k] > max(2 * float(np.hypot(se[end], se[k])), rules.U_FLOOR)

    return {
        "u_shaped": bool(0 < k < len(means) - 1 and rises(0) and rises(-1)),
        "min_bin": k,
        "min_kl": bins["centre"][k],
        "left_rise": means[0] - means[k],
        "right_rise": means[-1] - means[k],
    }


def band(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"q10": None, "q50": None, "q90": None, "width": None}
    q10, q50, q90 = (float(np.quantile(values, q)) for q in (0.1, 0.5, 0.9))
    return {"q10": q10, "q50": q50, "q90": q90, "width": q90 - q10}


@dataclass
class SweepResult:
    preset: str
    seeds: list[int]
    betas: list[float]
    steps: list[int]
    grid: dict[int, dict[str, list[list[float]]]]  # seed -> metric -> [β][step]
    optimal: dict[int, dict[str, dict[str, list]]]  # seed -> criterion -> index/step/KLs per β
    per_seed: dict[int, dict[str, Any]]  # seed -> kl -> band and U-shape
    band: dict[str, dict[str, float | None]] = field(default_factory=dict)  # pooled over seeds
    # how tightly OOD follows KL across every β: Spearman over all checkpoints, per seed
    collapse: dict[int, dict[str, float | None]] = field(default_factory=dict)
    bins: dict[str, dict[str, dict[str, list]]] = field(default_factory=dict)  # pooled
    checkpoints: list[CheckpointRef] = field(default_factory=list)


def run_sweep(
    seeds: list[int],
    root: Path | None = None,
    preset: str = "sweep",
    model: ModelSpec = CASE_STUDY,
    betas: list[float] | None = None,
    progress: bool = True,
    exact_threshold: float = EXACT_THRESHOLD,
) -> SweepResult:
    betas = betas or paper_betas()
    res = SweepResult(preset, seeds, betas, [], {}, {}, {})
    for seed in each(seeds, lambda s: f"β sweep, seed {s}: {len(betas)} runs (trained if missing)"):
        keys = [PolicyKey(preset, "dpo", b, seed) for b in betas]
        ensure_trained(
            keys,
            root,
            model,
            N_CHECKPOINTS,
            progress=progress,
            exact_threshold=exact_threshold,
            strict=True,
        )
        runs = [find_run(k, root) for k in keys]
        ref = find_run(keys[0].reference, root).checkpoint()
        data = make_dataset(preset, seed)
        res.steps = runs[0].steps()
        grid: dict[str, list[list[float]]] = {m: [] for m in METRICS}
        for r in runs:
            # the evaluations stored at training, unless they are not the ones asked for
            evs = [
                evaluation(c, data, ref, exact_threshold, METRICS, r.key.beta)
                for c in r.trajectory()
            ]
            for m in METRICS:
                grid[m].append([e.get(m) for e in evs])
            c = r.checkpoint()
            res.checkpoints.append(c.ref)
        res.grid[seed] = grid
        res.optimal[seed] = {}
        for crit in OODS:
            idx = [optimal_index(row, latest=crit == "ood_rate") for row in grid[crit]]
            res.optimal[seed][crit] = {
                "index": idx,
                "step": [res.steps[i] for i in idx],
                **{kl: [grid[kl][b][i] for b, i in enumerate(idx)] for kl in KLS},
                "ood": [grid[crit][b][i] for b, i in enumerate(idx)],
            }
        flat = {m: np.array(grid[m], dtype=float).ravel() for m in METRICS}
        res.collapse[seed] = {
            f"{ood} ~ {kl}": spearman(torch.tensor(flat[kl]), torch.tensor(flat[ood]))
            for kl in KLS
            for ood in OODS
        }
        res.per_seed[seed] = {}
        for kl in KLS:
            x = np.array(grid[kl], dtype=float).ravel()
            res.per_seed[seed][kl] = {
                "band": band(res.optimal[seed]["ood_rate"][kl]),
                "band_by_mass": band(res.optimal[seed]["ood_mass"][kl]),
                **{
                    ood: u_shape(binned(x, np.array(grid[ood], dtype=float).ravel()))
                    for ood in OODS
                },
            }
    for kl in KLS:
        res.band[kl] = band([v for s in seeds for v in res.optimal[s]["ood_rate"][kl]])
        x = np.concatenate([np.array(res.grid[s][kl], dtype=float).ravel() for s in seeds])
        res.bins[kl] = {
            ood: binned(
                x, np.concatenate([np.array(res.grid[s][ood], dtype=float).ravel() for s in seeds])
            )
            for ood in OODS
        }
    return res


def claim(res: SweepResult) -> Claim:
    verdicts = []
    for s in res.seeds:
        g = res.per_seed[s]["kl_greedy"]
        verdicts.append(rules.one_band_verdict(g["band"]["width"], g["ood_rate"]["u_shaped"]))
    widths = {kl: [res.per_seed[s][kl]["band"]["width"] for s in res.seeds] for kl in KLS}
    u = {kl: sum(res.per_seed[s][kl]["ood_rate"]["u_shaped"] for s in res.seeds) for kl in KLS}
    um = sum(res.per_seed[s]["kl_exact"]["ood_mass"]["u_shaped"] for s in res.seeds)
    b = res.band
    return Claim(
        id="F2",
        claim="OOD-optimal checkpoints of every β share one KL band, and OOD vs KL is U-shaped",
        case_study="optimal checkpoints at greedy KL 0.25–0.5 for all 30 β; U-shaped OOD vs KL",
        statistic="median kl_greedy of the OOD-optimal checkpoints",
        values=[res.per_seed[s]["kl_greedy"]["band"]["q50"] for s in res.seeds],
        verdicts=verdicts,
        detail=(
            f"10–90% band of the optimal checkpoints' KL: kl_greedy {b['kl_greedy']['q10']:.2f}–"
            f"{b['kl_greedy']['q90']:.2f}, kl_exact {b['kl_exact']['q10']:.2f}–{b['kl_exact']['q90']:.2f} "
            f"(width per seed, kl_greedy: {', '.join(f'{w:.2f}' for w in widths['kl_greedy'])}); "
            f"U-shaped OOD rate vs KL in {u['kl_greedy']} (kl_greedy) and {u['kl_exact']} (kl_exact) of "
            f"{len(res.seeds)} seeds; OOD mass vs kl_exact U-shaped in {um}. Across all β, OOD mass "
            f"follows kl_exact with Spearman {fmt_ci([res.collapse[s]['ood_mass ~ kl_exact'] for s in res.seeds])}"
            f" (kl_greedy: {fmt_ci([res.collapse[s]['ood_mass ~ kl_greedy'] for s in res.seeds])})"
        ),
    )


def build_report(res: SweepResult, f2: Claim, prov: dict[str, Any]) -> Report:
    opt_rows = []
    for s in res.seeds:
        for crit in OODS:
            o = res.optimal[s][crit]
            for i, b in enumerate(res.betas):
                opt_rows.append(
                    [s, crit, b, o["step"][i], o["ood"][i], o["kl_greedy"][i], o["kl_exact"][i]]
                )
    shape_rows = [
        [s, kl, ood, v["u_shaped"], v["min_kl"], v["left_rise"], v["right_rise"]]
        for s in res.seeds
        for kl in KLS
        for ood in OODS
        for v in [res.per_seed[s][kl][ood]]
    ]
    band_rows = [
        [s, kl, crit, *(res.per_seed[s][kl][name][q] for q in ("q10", "q50", "q90", "width"))]
        for s in res.seeds
        for kl in KLS
        for crit, name in (("ood_rate", "band"), ("ood_mass", "band_by_mass"))
    ]
    grid_rows = [
        [s, b, step] + [res.grid[s][m][i][j] for m in METRICS]
        for s in res.seeds
        for i, b in enumerate(res.betas)
        for j, step in enumerate(res.steps)
    ]
    return Report(
        kind="beta_sweep",
        slug=f"{res.preset}_seeds_{'-'.join(map(str, res.seeds))}",
        title=f"F2: the KL of in-distribution policies ({len(res.betas)} β, {seeds_label(len(res.seeds))})",
        summary=[f"{f2.claim}: {f2.verdict.upper()}. {f2.measured()}; {f2.detail}."],
        sections=[
            Section("Verdict", tables=[claims_table([f2])]),
            Section(
                "KL over β and training step",
                [
                    "Mean over seeds. White: each β's OOD-optimal checkpoint (lowest greedy OOD rate, latest on ties)."
                ],
                [FigureBlock(sweep_heatmaps(res))],
                [
                    Table(
                        "OOD-optimal checkpoints",
                        ["seed", "criterion", "β", "step", "OOD", "kl_greedy", "kl_exact"],
                        opt_rows,
                    ),
                    Table(
                        "KL band of the optimal checkpoints",
                        ["seed", "KL", "criterion", "q10", "median", "q90", "width"],
                        band_rows,
                    ),
                ],
            ),
            Section(
                "OOD against KL, every checkpoint",
                [
                    "Pink: the pooled 10–90% band of the optimal checkpoints' KL; black: mean OOD in 8 KL quantile bins."
                ],
                [
                    FigureBlock(ood_vs_kl(res, ood="ood_rate")),
                    FigureBlock(ood_vs_kl(res, ood="ood_mass")),
                ],
                [
                    Table(
                        "Is it U-shaped?",
                        [
                            "seed",
                            "KL",
                            "OOD",
                            "U-shaped",
                            "KL of the lowest bin",
                            "rise to the left",
                            "rise to the right",
                        ],
                        shape_rows,
                    ),
                    Table(
                        "How tightly OOD follows KL across every β (Spearman over all checkpoints)",
                        ["seed", *res.collapse[res.seeds[0]]],
                        [[s, *res.collapse[s].values()] for s in res.seeds],
                    ),
                    Table("Every checkpoint", ["seed", "β", "step", *METRICS], grid_rows),
                ],
            ),
        ],
        data=jsonable(res),
        provenance=prov,
    )


def experiment(
    seeds,
    root,
    reports,
    preset="sweep",
    model=CASE_STUDY,
    betas=None,
    progress=True,
    exact_threshold=EXACT_THRESHOLD,
    argv=None,
) -> Claim:
    """Train what is missing, write the report, return the F2 claim."""
    started = time.time()
    res = run_sweep(seeds, root, preset, model, betas, progress, exact_threshold)
    f2 = claim(res)
    prov = provenance("analyses/beta_sweep.py", argv, res.checkpoints, {"seeds": seeds}, started)
    publish(build_report(res, f2, prov), reports, [f2])
    return f2


def main(argv: list[str] | None = None) -> int:
    return cli(
        experiment,
        "python analyses/beta_sweep.py",
        "F2: in-distribution policies have similar KL (§4.2).",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
