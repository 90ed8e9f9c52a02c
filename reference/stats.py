"""Distribution tests in plain NumPy (no SciPy): the two-sample Kolmogorov–Smirnov test.

Used to check handnn's random initialisers against torch's by distribution. With fixed seeds on both sides
the outcome is deterministic.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> bool(ks_2samp(rng.normal(size=5000), rng.normal(size=5000)).pvalue > 0.01)
True
>>> bool(ks_2samp(rng.normal(size=5000), 1.5 * rng.normal(size=5000)).pvalue < 1e-6)
True
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["KSResult", "kolmogorov_sf", "ks_2samp"]

_TERMS = np.arange(1, 101, dtype=np.float64)  # both series below are negligible long before 100 terms


class KSResult(NamedTuple):
    """``statistic`` D = sup |F_a − F_b| and its two-sided asymptotic ``pvalue``."""

    statistic: float
    pvalue: float


def kolmogorov_sf(x: float) -> float:
    """``P(K > x)`` for the Kolmogorov distribution K (the limit of ``sqrt(n) D_n``).

    For ``x >= 1``: ``2 Σ_{k>=1} (−1)^(k−1) exp(−2 k² x²)``, whose terms shrink fast there and which keeps full
    relative precision in the far tail (tiny p-values). For ``x < 1``, where that alternating series converges
    slowly: ``1 − sqrt(2π)/x Σ_{k>=1} exp(−(2k−1)² π² / (8 x²))`` (the same function, Jacobi's theta identity).
    """
    if not x > 0.0:
        return 1.0
    if x < 1.0:
        cdf = math.sqrt(2.0 * math.pi) / x * float(np.sum(np.exp(-(2 * _TERMS - 1) ** 2 * math.pi ** 2 / (8 * x * x))))
        return min(1.0, max(0.0, 1.0 - cdf))
    signs = np.where(_TERMS % 2 == 1, 1.0, -1.0)
    return min(1.0, max(0.0, 2.0 * float(np.sum(signs * np.exp(-2.0 * _TERMS ** 2 * x * x)))))


def _sample(x, name: str) -> np.ndarray:
    """A sorted float64 copy of a non-empty, NaN-free sample (any shape, flattened)."""
    values = np.sort(np.asarray(x, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError(f"ks_2samp: sample {name} is empty")
    if np.isnan(values[-1]):  # NaN sorts last
        raise ValueError(f"ks_2samp: sample {name} contains NaN")
    return values


def ks_2samp(a, b) -> KSResult:
    """Two-sample, two-sided Kolmogorov–Smirnov test of "a and b come from the same continuous distribution".

    Parameters
    ----------
    a, b : array_like, any shapes (flattened), sizes n and m
        Neither is modified.

    Returns
    -------
    KSResult
        ``statistic = max_x |F_a(x) − F_b(x)|`` over the empirical CDFs (evaluated at every sample point, so ties
        are handled), and ``pvalue = kolmogorov_sf(sqrt(n m / (n + m)) · statistic)``: the large-sample limit
        (SciPy's ``method='asymp'`` without finite-size correction), slightly conservative for small samples
        and accurate for the thousands of draws it is used with.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    effective_n = a.size * b.size / (a.size + b.size)
    return KSResult(statistic, kolmogorov_sf(math.sqrt(effective_n) * statistic))
