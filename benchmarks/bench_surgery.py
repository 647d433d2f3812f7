"""Surgery report speed, and its two fast paths against naive baselines in the same run.

1. Scoring every test sequence: `split_logprobs` (each prompt once, fanned out through a
   key/value cache) against `model_logprobs` (every sequence whole).
2. Exact enumeration: `enumerate_responses` (KV cache re-indexed along the tree) against
   a naive enumeration that reruns every prefix from scratch, checked to agree.
3. Wall time of `python -m interp.surgery --a beta0.01 --b beta1.0` with the checkpoints
   present (target: 60 s on a 2-core CPU) and from an empty folder, training included
   (target: 3 minutes).

    python benchmarks/bench_surgery.py [--skip-cli]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import best_of, write

from interp.core.model import build_model
from interp.core.numberline import EOS, make_dataset, prompt_ids
from interp.core.sampling import enumerate_responses
from interp.core.scoring import model_logprobs, split_logprobs
from interp.runs.config import RunSpec
from interp.runs.names import PolicyKey
from interp.runs.trainer import train_run


@torch.inference_mode()
def naive_enumeration(model, ref, prompts, limit, threshold):
    """Every prefix rerun whole, one prompt at a time: the slow path, for the ratio."""
    total_kl = 0.0
    for s in prompts.tolist():
        frontier = [([], 0.0, 0.0)]
        for depth in range(limit):
            nxt = []
            for prefix, lp, lr in frontier:
                toks = torch.tensor([prompt_ids(s) + prefix])
                a = model(toks)[0, -1].float().log_softmax(-1)
                b = ref(toks)[0, -1].float().log_softmax(-1)
                for v in range(a.shape[0]):
                    cp, cr = lp + float(a[v]), lr + float(b[v])
                    if v == EOS or depth == limit - 1:
                        total_kl += torch.tensor(cp).exp().item() * (cp - cr)
                    elif torch.tensor(cp).exp().item() >= threshold:
                        nxt.append((prefix + [v], cp, cr))
            frontier = nxt
    return total_kl / len(prompts)


def main() -> None:
    out: dict = {}
    test = make_dataset("sweep", 0).test
    with tempfile.TemporaryDirectory() as tmp:
        # a trained reference: realistic, peaked distributions
        spec = RunSpec.for_key(PolicyKey(loss="sft"), exact_threshold=None)
        ref_run = train_run(spec, Path(tmp), progress=False)
        ref = ref_run.checkpoint().model
    policy = build_model(ref.cfg)
    policy.load_state_dict(ref.state_dict())
    with torch.no_grad():
        policy.blocks[0].attn.W_Q.mul_(1.3)  # a policy that differs from the reference

    t_fast = best_of(lambda: split_logprobs(policy, test))
    t_slow = best_of(lambda: model_logprobs(policy, test.tokens, test.response_mask))
    out["scoring"] = {
        "split_logprobs_s": t_fast,
        "model_logprobs_s": t_slow,
        "speedup": t_slow / t_fast,
    }
    print(
        f"scoring 4200 test sequences: {t_fast * 1e3:.0f} ms vs {t_slow * 1e3:.0f} ms whole "
        f"(x{t_slow / t_fast:.2f})"
    )

    prompts = test.prompts[:20]
    tree = enumerate_responses(policy, test.task, prompts, 6, 1e-3, [ref])
    fast_kl = float(tree.per_prompt(tree.logp[:, 0] - tree.logp[:, 1]).mean())
    t0 = time.perf_counter()
    slow_kl = naive_enumeration(policy, ref, prompts, 6, 1e-3)
    t_slow = time.perf_counter() - t0
    t_fast = best_of(lambda: enumerate_responses(policy, test.task, prompts, 6, 1e-3, [ref]))
    assert abs(fast_kl - slow_kl) < 1e-4, (fast_kl, slow_kl)
    out["enumeration"] = {
        "fast_s": t_fast,
        "naive_s": t_slow,
        "speedup": t_slow / t_fast,
        "kl_fast": fast_kl,
        "kl_naive": slow_kl,
    }
    print(
        f"exact enumeration, 20 prompts: {t_fast * 1e3:.0f} ms vs {t_slow * 1e3:.0f} ms naive "
        f"(x{t_slow / t_fast:.0f}); kl {fast_kl:.5f} = {slow_kl:.5f}"
    )

    if "--skip-cli" not in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            base = [
                sys.executable,
                "-m",
                "interp.surgery",
                "--a",
                "beta0.01",
                "--b",
                "beta1.0",
                "--checkpoints",
                f"{tmp}/ck",
                "--reports",
                f"{tmp}/reports",
                "--no-progress",
            ]
            t0 = time.perf_counter()
            subprocess.run(base, check=True, capture_output=True)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            subprocess.run(base, check=True, capture_output=True)
            warm = time.perf_counter() - t0
        out["report_with_checkpoints_s"] = round(warm, 1)
        out["report_from_nothing_s"] = round(cold, 1)
        print(f"surgery report, checkpoints present: {warm:.1f} s (target 60 s)")
        print(f"surgery report from nothing (training included): {cold:.1f} s (target 180 s)")
    print(f"results: {write('surgery', out)}")


if __name__ == "__main__":
    main()
