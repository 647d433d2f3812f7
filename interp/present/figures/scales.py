"""Colour scales and palettes, one rule each.

- A *difference* (A − ref, A − B, a change of cosine) is drawn on a diverging map centred
  at 0 whose limits are fitted to the data and symmetric: ±max|Δ| over every panel that
  shares the colour bar (`symmetric_limits`), so a difference of 0.05 fills the scale
  instead of vanishing into the grey middle of a fixed ±1.
- A *probability* (an attention weight, a share of answers) keeps its natural 0–1 scale.
- Lines that only need telling apart (heads, swapped groups) take colours from one
  qualitative palette (`QUALITATIVE`, the Okabe–Ito colour-blind-safe set), chosen to
  stay clear of the red, blue and grey that mean A, B and the reference everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DIVERGING = "RdBu_r"  # red: more than the other model; blue: less
SEQUENTIAL = "Blues"  # probabilities, 0 → 1
TINY = 1e-12  # a difference map that is exactly zero still gets a (tiny) scale

QUALITATIVE = [
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#8C564B",  # brown
    "#000000",  # black
    "#BCBD22",  # olive
    "#7B3294",  # violet
]


def symmetric_limits(arrays: Iterable[object]) -> tuple[float, float]:
    """(−m, m) with m = max |value| over `arrays` (NaN ignored), for a diverging map."""
    m = 0.0
    for a in arrays:
        x = np.abs(np.asarray(a, dtype=float))
        if x.size and np.isfinite(x).any():
            m = max(m, float(np.nanmax(np.where(np.isfinite(x), x, np.nan))))
    m = max(m, TINY)
    return -m, m


def qualitative(i: int) -> str:
    """The i-th colour of the qualitative palette (cycling)."""
    return QUALITATIVE[i % len(QUALITATIVE)]
