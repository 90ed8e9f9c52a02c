"""The one tolerance table of the project, and the comparison every parity check uses.

An element matches when ``|actual - expected| <= atol * scale + rtol * |expected|`` with
``scale = max(1, max|expected|)`` over the whole array (NaN matches NaN, inf matches the same inf).
Scaling atol by the array's largest magnitude makes the check invariant to units: a gradient that is a
sum of large terms cancelling to a small value carries the rounding error of the terms, not of the sum.

- float64: rtol 1e-10, atol 1e-12 — "equal up to summation order".
- float32: ``torch.testing.assert_close``'s float32 defaults (rtol 1.3e-6, atol 1e-5) times 4, because
  torch and NumPy sum in different orders (pairwise vs. blocked/vectorised) and torch's MKL
  ``exp``/``sqrt``/``tanh`` are ~1 ulp away from NumPy's; a gradient through several layers accumulates
  a few such roundings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

#: dtype -> (rtol, atol); atol is multiplied by max(1, max|expected|).
FLOAT32_FACTOR = 4
TOLERANCES: Dict[np.dtype, Tuple[float, float]] = {
    np.dtype(np.float64): (1e-10, 1e-12),
    np.dtype(np.float32): (FLOAT32_FACTOR * 1.3e-6, FLOAT32_FACTOR * 1e-5),
}


def tolerance(dtype) -> Tuple[float, float]:
    """(rtol, atol) for arrays of ``dtype`` (integers must be equal)."""
    return TOLERANCES.get(np.dtype(dtype), (0.0, 0.0))


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one array with its reference."""

    name: str
    dtype: str
    max_abs: float
    max_rel: float
    mismatches: int
    total: int
    problem: str = ""  # shape/dtype disagreement, empty when the arrays are comparable
    cause: str = ""  # the likely cause of a mismatch, when reference.diagnosis recognises one

    @property
    def passed(self) -> bool:
        return not self.problem and self.mismatches == 0

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "MISMATCH"
        detail = f" ({self.problem})" if self.problem else ""
        detail += f" — likely cause: {self.cause}" if self.cause and not self.passed else ""
        return (f"{self.name} [{self.dtype}]: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, "
                f"{self.mismatches}/{self.total} mismatching: {verdict}{detail}")


def compare(name: str, actual, expected) -> Comparison:
    """Compare ``actual`` (handnn) with ``expected`` (torch) under the tolerance table of expected's dtype."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dtype = str(expected.dtype)
    if actual.shape != expected.shape:
        return Comparison(name, dtype, np.inf, np.inf, expected.size, expected.size,
                          f"shape {actual.shape} != expected {expected.shape}")
    if actual.dtype != expected.dtype:
        return Comparison(name, dtype, np.inf, np.inf, expected.size, expected.size,
                          f"dtype {actual.dtype} != expected {expected.dtype}")
    rtol, atol = tolerance(expected.dtype)
    a = np.atleast_1d(actual.astype(np.float64, copy=False))
    e = np.atleast_1d(expected.astype(np.float64, copy=False))
    if atol > 0 and e.size:
        # The common case, every value finite on both sides (a finite difference implies it: inf or NaN on either
        # side makes a - e inf or NaN): the same quantities in fewer passes, as the parity suite compares millions.
        with np.errstate(invalid="ignore", over="ignore"):
            err = a - e
            if np.isfinite(err).all():
                np.abs(err, out=err)
                finite = np.abs(e)
                floor = atol * max(1.0, float(finite.max()))
                mismatches = np.count_nonzero(err > floor + rtol * finite)
                max_rel = float((err / np.maximum(finite, floor)).max())
                return Comparison(name, dtype, float(err.max()), max_rel, int(mismatches), int(e.size))
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(e) & (a == e)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
        err[both_nan | same_inf] = 0.0
        err[np.isnan(err)] = np.inf  # NaN on one side only
        finite = np.abs(np.where(np.isfinite(e), e, 0.0))
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        bad = err > atol * scale + rtol * finite
        # relative error against |expected|, floored at the absolute tolerance so exact zeros stay readable
        rel = err / np.maximum(finite, atol * scale)
        rel[err == 0] = 0.0
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    return Comparison(name, dtype, max_abs, max_rel, int(bad.sum()), int(e.size))


def assert_close(actual, expected, name: str = "value") -> Comparison:
    """Raise ``AssertionError`` with the comparison report when ``actual`` and ``expected`` disagree."""
    result = compare(name, actual, expected)
    if not result.passed:
        raise AssertionError(str(result))
    return result
