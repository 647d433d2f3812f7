"""`python -m interp.checkpoints`: list the trained policies, or one policy step by step."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from interp.cli import check_folder, option, parse, run
from interp.present.text import eval_table
from interp.runs.files import default_root
from interp.runs.names import policy_sort_key
from interp.runs.store import find_run, iter_runs


@dataclass
class InspectOptions:
    policy: str | None = option(None, help="a policy to show step by step (default: list all)")
    checkpoints: str = option(str(default_root()), help="checkpoint root folder")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.checkpoints`: list the policies, or one policy's checkpoints."""
    prog = "python -m interp.checkpoints"
    opts = parse(InspectOptions, argv, prog, "List trained policies and their evaluations.")
    root = Path(opts.checkpoints)

    def body() -> int:
        check_folder(root, "--checkpoints")
        if opts.policy is None:
            runs = sorted(iter_runs(root), key=lambda r: policy_sort_key(r.name))
            if not runs:
                print(f"no policies under {root}; train some with: python -m interp.train")
                return 0
            rows = []
            for r in runs:
                steps = r.steps()
                label = r.name + ("" if r.complete else " (unfinished)")
                ev = r.checkpoint(steps[-1]).eval if steps else {}
                rows.append((label, steps[-1] if steps else 0, ev))
            print(eval_table(rows))
            return 0
        r = find_run(opts.policy, root)
        print(f"{r.name}: {r.path} ({'complete' if r.complete else 'unfinished'})")
        print(eval_table([(r.name, c.step, c.eval) for c in r.trajectory()]))
        return 0

    return run(body, prog)


if __name__ == "__main__":
    sys.exit(main())
