"""How numbers are written on a page: one format per table column, and the true minus sign.

A reader compares the numbers of a column down the page, so the column, not the cell,
chooses the format (`column_format`), and every cell of the column is written with it:

- a column the page declares a *percentage* (a fraction in [0, 1] the text calls a rate, a
  share or a mass) is written as a percent with one decimal: 0.505 → ``50.5%``;
- a column of integers stays integers;
- any other numeric column gets fixed decimals giving its largest value three significant
  digits (0.0702, 3.84, 402; a value far smaller is written at that precision, 0.0000),
  unless that takes more than `MAX_DECIMALS` decimals (the largest |value| is below
  0.01) or the values reach 10⁶: then the whole column is in scientific notation
  (``6.21e−09`` beside ``4.00e−03``; never ``6.21e-09`` beside ``0.07018``);
- a column holding values of both signs shows the sign of every value (``+0.12``,
  ``−0.30``).

Negative numbers use U+2212 MINUS SIGN, which browsers do not break a line at (a hyphen
they do: ``-6.90e-05`` used to wrap after its first character). Missing values (None,
NaN, inf) are ``—``. The JSON twin keeps the raw numbers; only the page is formatted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MINUS = "\u2212"
MISSING = "—"
SIG_DIGITS = 3  # significant digits of a column's largest value in fixed notation
SHARE_METRICS = ("ood_rate", "ood_mass", "acc", "exact_residual")  # fractions: shown as percent
MAX_DECIMALS = 4  # beyond this a column goes scientific
SCI_FROM = 1e6  # values this large make a column scientific


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if is_number(v) and math.isfinite(v)]


@dataclass(frozen=True)
class NumberFormat:
    """A column's number format: a `format()` spec, and whether it is a percentage."""

    spec: str
    percent: bool = False

    def __call__(self, v: float) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return MISSING
        text = format(v * 100 if self.percent else v, self.spec) + ("%" if self.percent else "")
        mantissa = text.lstrip("+-").split("e")[0]
        if not any(c in "123456789" for c in mantissa):
            text = text.lstrip("+-")  # a value written as zero carries no sign
        return text.replace("-", MINUS)


def column_format(values: Iterable[Any], percent: bool = False) -> NumberFormat:
    """The one format for a column holding `values` (non-numbers are ignored)."""
    values = list(values)
    nums = _finite(values)
    signed = "+" if any(v < 0 for v in nums) and any(v > 0 for v in nums) else ""
    if percent:
        return NumberFormat(f"{signed}.1f", percent=True)
    if all(isinstance(v, int) for v in values if is_number(v)):
        return NumberFormat(f"{signed}d")
    nonzero = [abs(v) for v in nums if v != 0]
    if not nonzero:
        return NumberFormat(f"{signed}.0f")
    hi = max(nonzero)
    decimals = max(0, SIG_DIGITS - 1 - math.floor(math.log10(hi)))
    if hi >= SCI_FROM or decimals > MAX_DECIMALS:
        return NumberFormat(f"{signed}.2e")
    return NumberFormat(f"{signed}.{decimals}f")


def fmt_number(v: Any, spec: str = ".3f") -> str:
    """One number outside a table (prose), with the true minus sign."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return MISSING
    return format(v, spec).replace("-", MINUS)
