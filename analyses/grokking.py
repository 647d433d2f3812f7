"""Claim F1 (case study §4.1, Fig. 1): DPO does not grok.

SFT, then DPO at β ∈ {0.01, 0.02, 0.1, 0.2, 0.5}, each for 100 epochs on the `grokking`
preset (AdamW, lr 1e-4, batch 512, clip 5), evaluated after every epoch. The claim: once a
DPO policy goes out of distribution it never comes back, while its margin and accuracy
keep rising.

Operational definitions (per seed and β):
- the policy *goes OOD* at the first epoch whose greedy OOD rate exceeds the reference's
  final OOD rate by more than 10 points; the epochs before are its in-distribution region;
- it *comes back* if a later epoch has an OOD rate within 5 points of the reference's;
- margin and accuracy *keep rising* if, after going OOD, each correlates positively with
  the epoch (Spearman > 0.5) or stays flat (a saturated accuracy has not fallen); with
  fewer than 3 epochs after going OOD there is too little to tell (undetermined).
F1 holds for a seed when at least one β went OOD, none came back, and the margin and
accuracy of each that went OOD kept rising.

    python analyses/grokking.py --seeds 0 1 2
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _experiment import cli, publish
from _figures import grokking_curves

from interp.analysis import claims as rules
from interp.analysis.claims import Claim
from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.sampling import EXACT_THRESHOLD
from interp.core.stats import spearman
from interp.present.claims import claims_table
from interp.present.html import FigureBlock, Report, Section, Table, jsonable
from interp.present.text import seeds_label
from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey
from interp.runs.provenance import provenance
from interp.runs.store import CheckpointRef, Run, find_run
from interp.stages import each

BETAS = [0.01, 0.02, 0.1, 0.2, 0.5]
METRICS = ("ood_rate", "error", "margin", "acc", "kl_exact")


def series(r: Run) -> dict[str, list]:
    """A run's stored evaluation at every saved step, with the step's epoch."""
    out: dict[str, list] = {"epoch": [], **{m: [] for m in METRICS}}
    for c in r.trajectory():
        out["epoch"].append(c.meta.get("epoch", 0.0))
        for m in METRICS:
            out[m].append(c.eval.get(m))
    return out


def verdict_for(run_series: dict[str, list], ref_ood: float) -> dict[str, Any]:
    ood = run_series["ood_rate"]
    onset = next((i for i, v in enumerate(ood) if v > ref_ood + rules.OOD_RISE), None)
    out: dict[str, Any] = {
        "went_ood": onset is not None,
        "onset_epoch": None,
        "came_back": False,
        "margin_rho": None,
        "acc_rho": None,
        "rising": None,
    }
    if onset is None:
        return out
    epochs = run_series["epoch"][onset:]
    margin, acc = run_series["margin"][onset:], run_series["acc"][onset:]
    rising = [rules.kept_rising(epochs, margin), rules.kept_rising(epochs, acc)]
    out.update(
        onset_epoch=run_series["epoch"][onset],
        came_back=any(v <= ref_ood + rules.COME_BACK for v in ood[onset + 1 :]),
        margin_rho=spearman(epochs, margin),
        acc_rho=spearman(epochs, acc),
        rising=None if None in rising else all(rising),
        final_ood=ood[-1],
    )
    return out


@dataclass
class GrokkingResult:
    preset: str
    seeds: list[int]
    betas: list[float]
    sft: dict[int, dict[str, list]]  # seed -> series of the reference
    dpo: dict[int, dict[float, dict[str, list]]]  # seed -> β -> series
    per_run: dict[int, dict[float, dict[str, Any]]]  # seed -> β -> verdict pieces
    checkpoints: list[CheckpointRef] = field(default_factory=list)


def run_grokking(
    seeds: list[int],
    root: Path | None = None,
    preset: str = "grokking",
    model: ModelSpec = CASE_STUDY,
    betas: list[float] = BETAS,
    progress: bool = True,
    exact_threshold: float = EXACT_THRESHOLD,
) -> GrokkingResult:
    res = GrokkingResult(preset, seeds, betas, {}, {}, {})
    for seed in each(seeds, lambda s: f"grokking, seed {s}: ref and {len(betas)} runs"):
        keys = [PolicyKey(preset, "dpo", b, seed) for b in betas]
        ensure_trained(  # the reference too: its curve is read every epoch as well
            [keys[0].reference, *keys],
            root,
            model,
            100,
            progress=progress,
            exact_threshold=exact_threshold,
            strict=True,
        )
        ref = find_run(keys[0].reference, root)
        res.sft[seed] = series(ref)
        ref_ood = res.sft[seed]["ood_rate"][-1]
        res.dpo[seed], res.per_run[seed] = {}, {}
        for k in keys:
            r = find_run(k, root)
            res.dpo[seed][k.beta] = series(r)
            res.per_run[seed][k.beta] = verdict_for(res.dpo[seed][k.beta], ref_ood)
            c = r.checkpoint()
            res.checkpoints.append(c.ref)
    return res


def claim(res: GrokkingResult) -> Claim:
    verdicts, values, onsets, ref_ood, accs = [], [], [], [], []
    for seed in res.seeds:
        runs = res.per_run[seed].values()
        went = [r for r in runs if r["went_ood"]]
        verdicts.append(rules.no_grokking_verdict(list(runs)))
        dpo = res.dpo.get(seed, {})
        values.append(float(np.mean([dpo[b]["ood_rate"][-1] for b in res.betas])) if dpo else None)
        accs += [dpo[b]["acc"][-1] for b in res.betas] if dpo else []
        ref_ood.append(res.sft[seed]["ood_rate"][-1] if seed in res.sft else None)
        onsets += [r["onset_epoch"] for r in went]
    went_counts = [sum(r["went_ood"] for r in res.per_run[s].values()) for s in res.seeds]
    back_counts = [sum(r["came_back"] for r in res.per_run[s].values()) for s in res.seeds]
    onset = f"OOD onset at epoch {min(onsets):.0f}–{max(onsets):.0f}; " if onsets else ""
    known = [v for v in ref_ood if v is not None]
    return Claim(
        id="F1",
        claim="DPO does not grok: once OOD it never comes back, while margin and accuracy "
        "keep rising",
        case_study="DPO ends ~80% OOD after 100 epochs and never returns; margin and accuracy rise",
        statistic="final OOD rate of DPO (mean over β)",
        values=values,
        verdicts=verdicts,
        detail=(
            f"went OOD (10 points above the reference): {sum(went_counts)} of "
            f"{len(res.betas) * len(res.seeds)} runs; came back: {sum(back_counts)}; {onset}"
            f"the SFT reference ends at {np.mean(known):.1%} OOD (mean over seeds); final DPO "
            f"accuracy {min(accs):.0%}–{max(accs):.0%}"
            if accs and known
            else "no runs"
        ),
        spec=".1%",
    )


def build_report(res: GrokkingResult, f1: Claim, prov: dict[str, Any]) -> Report:
    rows = []
    for seed in res.seeds:
        for b, r in res.per_run[seed].items():
            rows.append(
                [
                    seed,
                    b,
                    r["went_ood"],
                    r["onset_epoch"],
                    r["came_back"],
                    r.get("final_ood"),
                    r["margin_rho"],
                    r["acc_rho"],
                ]
            )
    traj = []
    for seed in res.seeds:
        for label, s in [("SFT", res.sft[seed])] + [
            (f"β={b}", res.dpo[seed][b]) for b in res.betas
        ]:
            for i, e in enumerate(s["epoch"]):
                traj.append([seed, label, e] + [s[m][i] for m in METRICS])
    return Report(
        kind="grokking",
        slug=f"{res.preset}_seeds_{'-'.join(map(str, res.seeds))}",
        title=f"F1: does DPO grok? ({res.preset} preset, {seeds_label(len(res.seeds))})",
        summary=[f"{f1.claim}: {f1.verdict.upper()}. {f1.measured()}; {f1.detail}."],
        sections=[
            Section("Verdict", tables=[claims_table([f1])]),
            Section(
                "SFT and DPO over 100 epochs",
                ["Mean over seeds (band: min–max). Shaded: epochs before any DPO run goes OOD."],
                [FigureBlock(grokking_curves(res))],
                [
                    Table(
                        "Per run",
                        [
                            "seed",
                            "β",
                            "went OOD",
                            "onset epoch",
                            "came back",
                            "final OOD",
                            "Spearman(epoch, margin)",
                            "Spearman(epoch, Acc)",
                        ],
                        rows,
                    ),
                    Table("Every epoch", ["seed", "run", "epoch", *METRICS], traj),
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
    preset="grokking",
    model=CASE_STUDY,
    betas=BETAS,
    progress=True,
    exact_threshold=EXACT_THRESHOLD,
    argv=None,
) -> Claim:
    """Train what is missing, write the report, return the F1 claim."""
    started = time.time()
    res = run_grokking(seeds, root, preset, model, betas, progress, exact_threshold)
    f1 = claim(res)
    prov = provenance("analyses/grokking.py", argv, res.checkpoints, {"seeds": seeds}, started)
    publish(build_report(res, f1, prov), reports, [f1])
    return f1


def main(argv: list[str] | None = None) -> int:
    return cli(
        experiment, "python analyses/grokking.py", "F1: DPO does not grok (case study §4.1).", argv
    )


if __name__ == "__main__":
    sys.exit(main())
