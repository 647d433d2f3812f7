"""Preference training throughput against a peer: TRL's `DPOTrainer`, in the same run.

All three train DPO on the `sweep` preset's training pairs with the case study's model
(1 layer, d_model 128, 4 heads, MLP 128), batch 16, RMSprop at the preset's learning
rate, the reference's log-probabilities computed once up front (TRL:
`precompute_ref_log_probs=True`, its fastest setting; the suite always does):

- TRL 1.16's `DPOTrainer` on the model in GPT-2's layout (steps/s from its own
  `train_runtime`, which leaves out its set-up and the precomputation);
- the suite's one-run trainer step (`interp.runs.trainer`: lean forward, loss, backward,
  RMSprop), steps/s;
- the suite's 30-member ensemble (`interp.runs.ensemble.Ensemble`), member-steps/s.

The ratios are against TRL's steps/s (target for the ensemble: ≥ 5×). Without TRL
installed (`pip install -e '.[bench]'`) the script says so and compares nothing.

    python benchmarks/bench_trl.py [--steps 300]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import write

from interp.core.losses import LOSSES
from interp.core.model import CASE_STUDY, build_model
from interp.core.numberline import get_task, make_dataset
from interp.core.scoring import model_logprobs
from interp.runs.config import STAGES, paper_betas
from interp.runs.ensemble import Ensemble
from interp.runs.trainer import batch_indices, make_optimizer, pair_logps

H = STAGES["sweep"]["pref"]


def trl_steps_per_s(n_steps: int) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import copy

    import datasets
    from transformers import GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer
    from trl_numberline import common_args, dpo_rows, gpt2_config

    datasets.disable_progress_bars()
    tokenizer = copy.deepcopy(get_task("sweep").hf_tokenizer())
    rows = dpo_rows(make_dataset("sweep", 0).train)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DPOConfig(
            **common_args(H, 1, Path(tmp) / "dpo", 0, "cpu"),
            beta=0.1, loss_type=["sigmoid"], max_steps=n_steps, precompute_ref_log_probs=True,
        )  # fmt: skip
        trainer = DPOTrainer(
            model=GPT2LMHeadModel(gpt2_config(tokenizer)),
            ref_model=GPT2LMHeadModel(gpt2_config(tokenizer)),
            args=cfg,
            train_dataset=rows,
            processing_class=tokenizer,
        )
        out = trainer.train()
    return n_steps / out.metrics["train_runtime"]


def suite_steps_per_s(n_steps: int, n_members: int | None) -> float:
    """Steps/s of one run (n_members None) or member-steps/s of an ensemble."""
    train = make_dataset("sweep", 0).train
    ref = build_model(CASE_STUDY, seed=0)
    ref_lp = model_logprobs(ref, train.tokens, train.response_mask)
    if n_members is None:
        from interp.core.lean import LeanView

        model = build_model(CASE_STUDY, seed=0).train()
        forward, params, betas = LeanView(model), list(model.parameters()), 0.1
    else:
        ens = Ensemble([build_model(CASE_STUDY, seed=0) for _ in range(n_members)])
        forward, params = ens, list(ens.params.values())
        betas = torch.tensor(paper_betas()[:n_members])[:, None]
    opt = make_optimizer(params, H)

    def step(s: int) -> None:
        idx = batch_indices(0, s, train.n_pairs, H.batch_size)
        loss = LOSSES["dpo"](pair_logps(forward, train, idx, ref_lp), betas)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    for s in range(1, 11):  # warm-up
        step(s)
    t0 = time.perf_counter()
    for s in range(11, 11 + n_steps):
        step(s)
    return n_steps * (n_members or 1) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps timed for each")
    args = ap.parse_args()
    if importlib.util.find_spec("trl") is None:
        print("TRL is not installed (pip install -e '.[bench]'): no comparison was made")
        write("trl", {"trl": None})
        return
    trl = trl_steps_per_s(args.steps)
    one = suite_steps_per_s(args.steps, None)
    ens = suite_steps_per_s(max(args.steps // 10, 20), 30)
    print(f"TRL DPOTrainer: {trl:.0f} steps/s")
    print(f"suite, one run: {one:.0f} steps/s ({one / trl:.1f}× TRL)")
    print(f"suite, 30-member ensemble: {ens:.0f} member-steps/s ({ens / trl:.1f}× TRL; target ≥ 5×)")
    path = write(
        "trl",
        {"steps": args.steps, "trl_steps_per_s": trl, "one_run_steps_per_s": one,
         "ensemble_member_steps_per_s": ens, "one_run_ratio": one / trl,
         "ensemble_ratio": ens / trl},
    )  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
