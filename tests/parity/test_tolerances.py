"""reference.tolerances.compare, the comparison behind every parity check, against its definition element by element.

The definition (the module's docstring): an element matches when ``|a - e| <= atol * scale + rtol * |e|`` with
``scale = max(1, max |e|)`` over the finite expected values; NaN matches NaN and inf the same inf; the reported
errors are the largest ``|a - e|`` (0 for a matched NaN/inf, inf for a NaN on one side) and the largest
``|a - e| / max(|e|, atol * scale)``. ``definition`` below computes that with Python floats, one element at a time,
and every array (finite ones, which take compare's short path, and ones with NaN, inf or overflow, which do not)
must give the same numbers.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.tolerances import compare, tolerance


def definition(actual: np.ndarray, expected: np.ndarray):
    """(max_abs, max_rel, mismatches) of the docstring's rule, with Python floats."""
    rtol, atol = tolerance(expected.dtype)
    a = [float(v) for v in actual.ravel()]
    e = [float(v) for v in expected.ravel()]
    scale = max([1.0] + [abs(v) for v in e if math.isfinite(v)])
    max_abs = max_rel = 0.0
    mismatches = 0
    for x, y in zip(a, e):
        if (math.isnan(x) and math.isnan(y)) or (math.isinf(y) and x == y):
            err = 0.0
        else:
            try:
                err = abs(x - y)
            except OverflowError:  # pragma: no cover - Python floats give inf, not an error
                err = math.inf
            if math.isnan(err):
                err = math.inf  # NaN on one side only, or inf against the other inf
        magnitude = abs(y) if math.isfinite(y) else 0.0
        if err > atol * scale + rtol * magnitude:
            mismatches += 1
        floor = max(magnitude, atol * scale)
        rel = 0.0 if err == 0 else (err / floor if floor > 0 else math.inf)
        max_abs, max_rel = max(max_abs, err), max(max_rel, rel)
    return max_abs, max_rel, mismatches


def _assert_is_the_definition(actual: np.ndarray, expected: np.ndarray) -> None:
    before = actual.copy(), expected.copy()
    result = compare("x", actual, expected)
    max_abs, max_rel, mismatches = definition(actual, expected)
    assert (result.mismatches, result.total) == (mismatches, expected.size)
    assert result.max_abs == max_abs or (math.isinf(max_abs) and math.isinf(result.max_abs))
    assert result.max_rel == pytest.approx(max_rel, rel=1e-15) or (math.isinf(max_rel) and math.isinf(result.max_rel))
    assert result.passed == (mismatches == 0)
    np.testing.assert_array_equal(actual, before[0])  # the caller's arrays are left alone
    np.testing.assert_array_equal(expected, before[1])


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, 1e300, -1e300]


@st.composite
def pairs(draw):
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    n = draw(st.integers(1, 6))
    magnitude = draw(st.sampled_from([1e-12, 1e-3, 1.0, 1e3, 1e12]))
    values = draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=n, max_size=n))
    expected = (np.array(values) * magnitude).astype(dtype)
    # differences around the tolerance: far below, near, and far above it
    noise = draw(st.lists(st.sampled_from([0.0, 1e-16, 1e-12, 1e-10, 1e-7, 1e-5, 1e-2]), min_size=n, max_size=n))
    actual = (expected.astype(np.float64) * (1 + np.array(noise)) + np.array(noise) * 1e-3).astype(dtype)
    if draw(st.booleans()):  # a special value on one or both sides (1e300 becomes inf in float32)
        i = draw(st.integers(0, n - 1))
        with np.errstate(over="ignore"):
            actual[i] = draw(st.sampled_from(SPECIAL))
            if draw(st.booleans()):
                expected[i] = draw(st.sampled_from(SPECIAL + [float(actual[i])]))
    return actual, expected


@given(pairs())
def test_compare_is_the_definition(pair):
    _assert_is_the_definition(*pair)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [
    "equal", "within rtol", "one beyond", "nan both", "nan one side", "inf same", "inf opposite", "overflowing difference",
    "zeros", "large array",
])
def test_compare_named_cases(case, dtype):
    rng = np.random.default_rng(0)
    e = rng.standard_normal(150_000 if case == "large array" else 7).astype(dtype)
    a = e.copy()
    rtol, _ = tolerance(dtype)
    if case == "within rtol":
        a = (e * (1 + rtol / 4)).astype(dtype)
    elif case in ("one beyond", "large array"):
        a[3] += dtype(1e-3)
    elif case == "nan both":
        a[2] = e[2] = np.nan
    elif case == "nan one side":
        a[2] = np.nan
    elif case == "inf same":
        a[2] = e[2] = -np.inf
    elif case == "inf opposite":
        a[2], e[2] = np.inf, -np.inf
    elif case == "overflowing difference":
        a[2], e[2] = np.finfo(dtype).max, -np.finfo(dtype).max
    elif case == "zeros":
        a[:] = e[:] = 0.0
    _assert_is_the_definition(a, e)
    expected_mismatches = {"one beyond": 1, "large array": 1, "nan one side": 1, "inf opposite": 1,
                           "overflowing difference": 1}.get(case, 0)
    assert compare("x", a, e).mismatches == expected_mismatches


def test_shape_and_dtype_disagreements_are_problems():
    assert compare("x", np.zeros(3), np.zeros(4)).problem == "shape (3,) != expected (4,)"
    assert compare("x", np.zeros(3, np.float32), np.zeros(3)).problem == "dtype float32 != expected float64"


def test_integers_must_be_equal():
    result = compare("x", np.array([1, 2, 3]), np.array([1, 2, 4]))
    assert (result.mismatches, result.max_abs) == (1, 1.0)
    assert compare("x", np.array([0, 5]), np.array([0, 5])).passed
