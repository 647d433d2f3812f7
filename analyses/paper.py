"""`make paper`: every experiment of the case study, and reports/paper.html.

Runs the three experiments — grokking (F1), the β sweep (F2) and the mechanistic
comparison of beta0.01 with beta1.0 (F3–F5) — for each seed, training whatever is
missing, and writes `reports/paper.html`: one row per claim with the case study's number,
ours (mean ± 95% CI over seeds; one seed: its value), the verdict, and links to the reports behind it.

    python analyses/paper.py                 # seeds 0-4 (the default)
    python analyses/paper.py --seeds 0       # one seed
    python analyses/paper.py --tiny          # the same pipeline on the tiny preset: a smoke test
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import beta_sweep
import grokking
import mechanistic
from _experiment import INTERRUPTED, SEEDS

from interp.cli import Folders, option, parse, run
from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.sampling import EXACT_THRESHOLD
from interp.errors import UserError
from interp.options import seed_option
from interp.present.claims import claims_table
from interp.present.html import Report, Section, Table
from interp.present.text import seeds_label
from interp.present.write import ensure_writable, write_report
from interp.runs.provenance import provenance
from interp.stages import Stages

TINY_MODEL = ModelSpec(d_model=32, n_heads=2, d_mlp=32)


@dataclass
class PaperOptions(Folders):
    seeds: list[int] = seed_option(SEEDS, help="seeds to run every experiment with")
    tiny: bool = option(
        False, help="the tiny preset and a tiny model everywhere: checks the pipeline in seconds"
    )
    progress: bool = option(True, help="show progress bars")


def main(argv: list[str] | None = None) -> int:
    prog = "python analyses/paper.py"
    opts = parse(
        PaperOptions,
        argv,
        prog,
        "Reproduce the case study's five claims and write reports/paper.html.",
    )

    def body() -> int:
        started = time.time()
        if not opts.seeds or min(opts.seeds) < 0:
            raise UserError("--seeds must be non-negative integers")
        root, reports = Path(opts.checkpoints), Path(opts.reports)
        ensure_writable(reports)
        if opts.tiny:
            kw = dict(model=TINY_MODEL, progress=opts.progress, exact_threshold=1e-2)
            grok_kw, sweep_kw, mech_kw = (dict(kw, preset="tiny") for _ in range(3))
            sweep_kw["betas"] = [mechanistic.A_BETA, 0.1, mechanistic.B_BETA]
        else:
            grok_kw = sweep_kw = mech_kw = dict(
                model=CASE_STUDY, progress=opts.progress, exact_threshold=EXACT_THRESHOLD
            )
        timings = {}
        seeds = f"seed{'s' if len(opts.seeds) > 1 else ''} {', '.join(map(str, opts.seeds))}"
        with Stages(3) as stage:
            t = time.time()
            stage(f"grokking (F1), {seeds}")
            # one tiny preset stands in for both `grokking` and `sweep`: keep their runs apart
            f1 = grokking.experiment(
                opts.seeds, root / "grokking" if opts.tiny else root, reports, **grok_kw
            )
            timings["grokking (F1)"] = time.time() - t
            t = time.time()
            stage(f"β sweep (F2), {seeds}")
            f2 = beta_sweep.experiment(opts.seeds, root, reports, **sweep_kw)
            timings["β sweep (F2)"] = time.time() - t
            t = time.time()
            stage(f"mechanistic comparison (F3–F5), {seeds}")
            f345 = mechanistic.experiment(opts.seeds, root, reports, **mech_kw)
            timings["mechanistic (F3–F5)"] = time.time() - t
        claims = [f1, f2, *f345]
        prov = provenance(prog, argv, [], {"seeds": opts.seeds}, started)
        report = Report(
            kind="paper",
            slug="paper",
            title=f"The case study, reproduced ({seeds_label(len(opts.seeds))})",
            summary=[f"{c.id} — {c.claim}: {c.verdict.upper()}. {c.measured()}." for c in claims],
            sections=[
                Section(
                    "Claims",
                    [
                        "Each row: the claim, what the case study reports, what we measure ("
                        + (
                            "mean ± 95% confidence interval over seeds"
                            if len(opts.seeds) > 1
                            else "one seed: its value, no interval"
                        )
                        + "; the operational definitions are in each experiment's script and "
                        "report), the verdict (per seed when they differ) and links to every "
                        "report with the numbers behind it."
                    ],
                    tables=[claims_table(claims, prefix="")],
                ),
                Section(
                    "Time taken",
                    tables=[
                        Table(
                            "Wall time",
                            ["experiment", "seconds"],
                            [[k, round(v, 1)] for k, v in timings.items()],
                        )
                    ],
                ),
            ],
            data={
                "claims": [
                    c.__dict__ | {"verdict": c.verdict, "measured": c.measured()} for c in claims
                ],
                "timings_s": timings,
                "seeds": opts.seeds,
                "tiny": opts.tiny,
            },
            provenance=prov,
        )
        path = write_report(report, reports, top_level=True)
        print(path)
        for line in report.summary:
            print("- " + line)
        return 0

    return run(body, prog, INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
