"""`python -m interp.data`: the size of a preset's preference dataset."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from interp.cli import option, parse, run
from interp.core.numberline import PAPER_COUNTS, PRESETS, make_dataset
from interp.options import seed_option


@dataclass
class DataOptions:
    preset: str = option("sweep", help="task preset", choices=sorted(PRESETS))
    seed: int = seed_option(0, help="seed of the train/test split")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.data`: print the size of a preset's dataset."""
    prog = "python -m interp.data"
    opts = parse(DataOptions, argv, prog, "Print the size of a preset's dataset.")

    def body() -> int:
        ds = make_dataset(opts.preset, opts.seed)
        t = ds.task
        print(f"preset {t.name}: S = {t.s_min}..{t.s_max}, W = {t.window}, seed {ds.seed}")
        print(f"{'split':<6} {'prompts':>8} {'pairs':>7} {'sequences':>10}")
        for sp in (ds.train, ds.test):
            print(f"{sp.name:<6} {len(sp.prompts):>8} {sp.n_pairs:>7} {len(sp.seq_prompt):>10}")
        if t.name in PAPER_COUNTS:
            paper = PAPER_COUNTS[t.name]
            print(
                f"case study reports {paper[0]} train / {paper[1]} test pairs "
                "(see README, 'Dataset')"
            )
        return 0

    return run(body, prog)


if __name__ == "__main__":
    sys.exit(main())
