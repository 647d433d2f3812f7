"""Training speed: steps per second of SFT and of one DPO run, against a bare baseline.

The baseline is the same model doing forward + backward + optimizer step on a fixed batch,
with no data indexing, logging or loss bookkeeping: the ratio `step / baseline` is the
overhead our training loop adds, measured in this run on this machine. Also the wall time
of `python -m interp.train --betas 0.01 1.0` from an empty checkpoint folder.

    python benchmarks/bench_train.py [--skip-cli]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import best_of, write

from interp.core.losses import LOSSES, sft_loss
from interp.core.model import build_model
from interp.core.numberline import make_dataset
from interp.core.scoring import model_logprobs
from interp.runs.config import STAGES
from interp.runs.trainer import batch_indices, make_optimizer, pair_logps, sft_step_loss

N_STEPS = 200


def bench_stage(stage: str, train) -> dict:
    """Seconds per step of our training step and of the bare baseline, for one stage."""
    h = STAGES["sweep"]["sft" if stage == "sft" else "pref"]
    model = build_model(seed=0)
    opt = make_optimizer(model.parameters(), h)
    ref_lp = model_logprobs(model, train.tokens, train.response_mask)
    bs = h.batch_size
    rows = 2 * bs if stage == "dpo" else bs  # DPO scores chosen and rejected together
    fixed_t, fixed_m = train.tokens[:rows], train.response_mask[:rows]

    def baseline() -> None:
        for _ in range(N_STEPS):
            loss = sft_loss(model(fixed_t), fixed_t, fixed_m).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def ours() -> None:
        for step in range(1, N_STEPS + 1):
            idx = batch_indices(0, step, train.n_pairs, bs)
            if stage == "sft":
                loss, _ = sft_step_loss(model, train, idx)
            else:
                loss = LOSSES["dpo"](pair_logps(model, train, idx, ref_lp), 0.1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    t_base = best_of(baseline) / N_STEPS
    t_ours = best_of(ours) / N_STEPS
    print(
        f"{stage}: {1 / t_ours:7.1f} steps/s  (bare fwd+bwd+step {1 / t_base:7.1f} steps/s, "
        f"ratio {t_ours / t_base:.2f})"
    )
    return {
        "steps_per_s": round(1 / t_ours, 1),
        "baseline_steps_per_s": round(1 / t_base, 1),
        "overhead_ratio": round(t_ours / t_base, 3),
    }


def main() -> None:
    train = make_dataset("sweep", 0).train
    out: dict = {stage: bench_stage(stage, train) for stage in ("sft", "dpo")}
    if "--skip-cli" not in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            ck = str(Path(tmp) / "ck")
            cmd = [sys.executable, "-m", "interp.train", "--betas", "0.01", "1.0"]
            cmd += ["--checkpoints", ck, "--no-progress"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            wall = time.perf_counter() - t0
        out["train_cli_from_nothing_s"] = round(wall, 1)
        print(f"python -m interp.train --betas 0.01 1.0 from nothing: {wall:.1f} s")
    out["note"] = "sweep preset, case-study model, batch 16"
    print(f"results: {write('train', out)}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
