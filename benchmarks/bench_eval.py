"""Evaluating every member of an ensemble at a save point: batched against one at a time.

The baseline is what each save point did before the member-batched evaluation:
`interp.core.metrics.evaluate` on each member in turn, through TransformerLens (it is still
what evaluates a model outside the lean forward's architecture). The contender is
`interp.core.members.evaluate_members` on the same members. Both get the same 30
realistic policies — the default pair's reference, beta0.01 and beta1.0 of seed 0, and
points on the straight lines between them — and the script checks that the numbers agree
before it reports the ratio.

    python benchmarks/bench_eval.py [--members 30] [--checkpoints checkpoints]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import write

from interp.analysis.interventions import clone
from interp.core.lean import Lean
from interp.core.members import evaluate_members
from interp.core.metrics import evaluate
from interp.core.numberline import make_dataset
from interp.core.sampling import EXACT_THRESHOLD
from interp.core.scoring import split_logprobs
from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey
from interp.runs.store import find_run


def members(root: Path | None, n: int) -> tuple[list, list[float], object]:
    """n policies between the reference and the default pair, with a β for each."""
    keys = [PolicyKey(beta=0.01), PolicyKey(beta=1.0)]
    ensure_trained(keys, root, progress=False)
    ref = find_run(PolicyKey(loss="sft"), root).checkpoint().model
    ends = [find_run(k, root).checkpoint().model for k in keys]
    start = dict(ref.named_parameters())
    out, betas = [], []
    for i in range(n):
        end, t = ends[i % 2], (i // 2 + 1) / ((n + 1) // 2)  # 1/15 … 1 of the way to A or B
        m = clone(ref)
        with torch.no_grad():
            for (name, p), q in zip(m.named_parameters(), end.parameters()):
                p.add_(t * (q - start[name]))
        out.append(m.eval())
        betas.append(keys[i % 2].beta)
    return out, betas, ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=30, help="policies evaluated at once")
    ap.add_argument("--checkpoints", type=Path, default=None, help="checkpoint root")
    args = ap.parse_args()
    models, betas, ref = members(args.checkpoints, args.members)
    test = make_dataset("sweep", 0).test
    ref_test = split_logprobs(ref, test)

    t0 = time.perf_counter()
    slow = [
        evaluate(m, test, ref, b, ref_test, EXACT_THRESHOLD) for m, b in zip(models, betas)
    ]
    t_slow = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = evaluate_members(Lean.of(models), Lean.of([ref]), test, betas, EXACT_THRESHOLD)
    t_fast = time.perf_counter() - t0

    worst = {
        k: max(abs(f[k] - s[k]) for f, s in zip(fast, slow) if s[k] is not None)
        for k in slow[0]
    }
    print(f"max |batched − one at a time| per metric: {worst}")
    ratio = t_slow / t_fast
    print(
        f"evaluating {len(models)} members at a save point: one at a time (TransformerLens) "
        f"{t_slow:.2f} s, batched {t_fast:.2f} s — {ratio:.1f}× (target ≥ 5×)"
    )
    path = write(
        "eval",
        {"members": len(models), "one_at_a_time_s": t_slow, "batched_s": t_fast,
         "ratio": ratio, "max_abs_difference": worst},
    )  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
