"""Pearson and Spearman correlations with their two-sided p-values, as ``scipy.stats`` computes
them: SciPy's own functions when it is installed (it is optional), else the same formulas here.

Both p-values are those of Student's t with n - 2 degrees of freedom for
``t = r * sqrt((n - 2) / (1 - r**2))``, which is the regularised incomplete beta function
``I_{1 - r**2}((n - 2) / 2, 1 / 2)``; it is evaluated by its continued fraction (modified Lentz).
"""

from __future__ import annotations

import math

import numpy as np

Correlation = tuple[float, float]


def pearson_spearman(x: np.ndarray, y: np.ndarray) -> tuple[Correlation, Correlation]:
    """``((pearson r, p), (spearman rho, p))`` of two equally long samples (at least 2)."""
    try:
        from scipy import stats
    except ImportError:
        return _pearson(x, y), _pearson(_average_ranks(x), _average_ranks(y))
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    return (float(pearson[0]), float(pearson[1])), (float(spearman[0]), float(spearman[1]))


def _pearson(x: np.ndarray, y: np.ndarray) -> Correlation:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dx = x - x.mean()
    dy = y - y.mean()
    norms = np.linalg.norm(dx) * np.linalg.norm(dy)
    if norms == 0:
        return math.nan, math.nan
    r = float(np.clip(np.dot(dx, dy) / norms, -1.0, 1.0))
    return r, _two_sided_p(r, len(x))


def _two_sided_p(r: float, n: int) -> float:
    if n <= 2:
        return 1.0
    if abs(r) == 1.0:
        return 0.0
    return _regularized_beta((n - 2) / 2, 0.5, (1.0 - r) * (1.0 + r))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the average of their ranks (SciPy's ``rankdata``)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values))
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast on this side
        return 1.0 - _regularized_beta(b, a, 1.0 - x)
    log_prefactor = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300

    def guarded(value: float) -> float:
        return tiny if abs(value) < tiny else value

    c = 1.0
    d = 1.0 / guarded(1.0 - (a + b) * x / (a + 1.0))
    fraction = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 / guarded(1.0 + numerator * d)
            c = guarded(1.0 + numerator / c)
            fraction *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return math.exp(log_prefactor) * fraction / a
