"""Small statistics shared by the analyses: rank and linear correlation, and the mean with
a confidence interval over seeds (Student's t, no SciPy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

# two-sided 95% quantiles of Student's t with df = 1..30 degrees of freedom
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def ranks(v: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """Ranks from 0, ties given their average rank."""
    v = v.double().flatten()
    order = v.argsort()
    r = torch.empty_like(v)
    r[order] = torch.arange(len(v), dtype=v.dtype)
    values, inverse, counts = v.unique(return_inverse=True, return_counts=True)
    if (counts > 1).any():
        sums = torch.zeros(len(values), dtype=v.dtype).index_add_(0, inverse, r)
        r = (sums / counts)[inverse]
    return r


def pearson(x: Tensor | Sequence[float], y: Tensor | Sequence[float]) -> float | None:
    x, y = torch.as_tensor(x).double().flatten(), torch.as_tensor(y).double().flatten()
    if len(x) < 3:
        return None
    x, y = x - x.mean(), y - y.mean()
    d = float(x.norm() * y.norm())
    return float(x @ y) / d if d > 0 else None


def spearman(
    x: Tensor | Sequence[float | None], y: Tensor | Sequence[float | None]
) -> float | None:
    """Spearman rank correlation over the pairs where both values are present and finite."""

    def as_tensor(v: Tensor | Sequence[float | None]) -> Tensor:
        if isinstance(v, Tensor):
            return v.double().flatten()
        return torch.tensor(
            [float("nan") if a is None else float(a) for a in v], dtype=torch.float64
        )

    x, y = as_tensor(x), as_tensor(y)
    keep = torch.isfinite(x) & torch.isfinite(y)
    if int(keep.sum()) < 3:
        return None
    return pearson(ranks(x[keep]), ranks(y[keep]))


def mean_ci(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, half-width of its 95% confidence interval (None for fewer than 2 values), n."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return None, None, 0
    m = sum(xs) / n
    if n < 2:
        return m, None, n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    df = n - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # close to the table's tail
    return m, t * sd / math.sqrt(n), n


def fmt_ci(values: Sequence[float | None], spec: str = ".3f") -> str:
    """ "m ± h (n seeds)" or "m (1 seed)"."""
    m, h, n = mean_ci(values)
    if m is None:
        return "n/a"
    if h is None:
        return f"{format(m, spec)} (1 seed)"
    return f"{format(m, spec)} ± {format(h, spec)} ({n} seeds)"
