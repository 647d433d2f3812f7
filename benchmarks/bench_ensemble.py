"""The β grid trained as one batched ensemble against one run at a time, in the same run.

1. Training throughput: N DPO runs of the `sweep` preset for K steps, each run's loop
   (forward, loss, backward, RMSprop step) against the ensemble's single vmapped step.
2. End to end: `python -m interp.train` for a small grid (6 β, 3 checkpoints) with
   `--ensemble` and with `--no-ensemble`, from the same trained reference; evaluation at
   the checkpoints costs the same in both.
3. With `--full-sweep`: the wall time of the whole sweep (`--betas paper`, 30 β × 31
   evaluated checkpoints, reference included) from an empty folder; target 10 minutes.

    python benchmarks/bench_ensemble.py [--full-sweep]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import best_of, write

from interp.analysis.interventions import clone
from interp.core.losses import LOSSES
from interp.core.numberline import make_dataset
from interp.core.scoring import model_logprobs
from interp.runs.config import STAGES, RunSpec, paper_betas
from interp.runs.ensemble import Ensemble
from interp.runs.names import PolicyKey
from interp.runs.trainer import batch_indices, make_optimizer, pair_logps, train_run

N_STEPS = 40


def throughput(ref, train, betas) -> dict:
    h = STAGES["sweep"]["pref"]
    ref_lp = model_logprobs(ref, train.tokens, train.response_mask)

    def loop() -> None:
        for b in betas:
            m = clone(ref).train()
            opt = make_optimizer(m.parameters(), h)
            for step in range(1, N_STEPS + 1):
                idx = batch_indices(0, step, train.n_pairs, h.batch_size)
                loss = LOSSES["dpo"](pair_logps(m, train, idx, ref_lp), b).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

    def ensemble() -> None:
        ens = Ensemble([clone(ref) for _ in betas])
        opt = make_optimizer(ens.params.values(), h)
        bt = torch.tensor(betas)[:, None]
        for step in range(1, N_STEPS + 1):
            idx = batch_indices(0, step, train.n_pairs, h.batch_size)
            loss = LOSSES["dpo"](pair_logps(ens, train, idx, ref_lp), bt).mean(-1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()

    t_loop, t_ens = best_of(loop, repeats=2), best_of(ensemble, repeats=2)
    per = len(betas) * N_STEPS
    print(
        f"training {len(betas)} runs × {N_STEPS} steps: loop {t_loop:.1f} s, "
        f"ensemble {t_ens:.1f} s "
        f"(ratio {t_loop / t_ens:.2f}; {per / t_loop:.0f} vs {per / t_ens:.0f} run-steps/s)"
    )
    return {
        "runs": len(betas),
        "steps": N_STEPS,
        "loop_s": t_loop,
        "ensemble_s": t_ens,
        "ratio": t_loop / t_ens,
    }


def end_to_end(tmp: Path) -> dict:
    betas = ["0.01", "0.0359", "0.129", "0.278", "0.599", "1.0"]
    ref_root = tmp / "ref"
    train_run(RunSpec.for_key(PolicyKey(loss="sft")), ref_root, progress=False)
    out = {}
    for flag in ("--ensemble", "--no-ensemble"):
        root = tmp / flag.strip("-")
        shutil.copytree(ref_root, root)
        cmd = [
            sys.executable,
            "-m",
            "interp.train",
            "--betas",
            *betas,
            "--n-checkpoints",
            "3",
            "--checkpoints",
            str(root),
            "--no-progress",
            flag,
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out[flag.strip("-")] = time.perf_counter() - t0
    print(
        f"python -m interp.train, 6 β × 3 checkpoints: ensemble {out['ensemble']:.1f} s, "
        f"one at a time {out['no-ensemble']:.1f} s "
        f"(ratio {out['no-ensemble'] / out['ensemble']:.2f})"
    )
    return out


def full_sweep(tmp: Path) -> float:
    cmd = [
        sys.executable,
        "-m",
        "interp.train",
        "--betas",
        "paper",
        "--checkpoints",
        str(tmp / "sweep"),
        "--no-progress",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    print(
        "the whole sweep (30 β × 31 evaluated checkpoints, reference included): "
        f"{wall / 60:.1f} min (target 10)"
    )
    return wall


def main() -> None:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref = train_run(
            RunSpec.for_key(PolicyKey(loss="sft"), exact_threshold=None), tmp / "r", False
        )
        train = make_dataset("sweep", 0).train
        out["throughput_30"] = throughput(ref.checkpoint().model, train, paper_betas())
        out["end_to_end_6"] = end_to_end(tmp)
        if "--full-sweep" in sys.argv:
            out["full_sweep_s"] = full_sweep(tmp)
    print(f"results: {write('ensemble', out)}")


if __name__ == "__main__":
    main()
