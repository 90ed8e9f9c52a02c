"""The vectorised kernels behind the activations: erf against math.erf, select against np.where."""
from __future__ import annotations

import math

import numpy as np
import pytest

from handnn.functional.activation import select
from handnn.functional.special import erf


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (-8.0, 8.0), (-30.0, 30.0)])
def test_erf_within_4_ulps_of_math_erf(low, high, rng):
    x = np.concatenate([np.linspace(low, high, 20001), rng.uniform(low, high, 20000)])
    expected = np.array([math.erf(v) for v in x])
    ulps = np.abs(erf(x) - expected) / np.spacing(np.maximum(np.abs(expected), np.finfo(float).tiny))
    assert ulps.max() <= 4, f"worst {ulps.max():.1f} ulps at x = {x[ulps.argmax()]!r}"


def test_erf_special_values_and_dtype():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 8.0, -8.0, 30.0])
    got = erf(x)
    expected = np.array([math.erf(v) if not math.isnan(v) else np.nan for v in x])
    np.testing.assert_array_equal(got, expected)
    assert np.signbit(got[4]), "erf(-0.0) is -0.0"
    x32 = x.astype(np.float32)
    assert erf(x32).dtype == np.float32
    np.testing.assert_array_equal(erf(x32), expected.astype(np.float32))
    assert erf(np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_select_is_where_including_nan_and_inf(dtype, rng):
    a = rng.normal(size=(6, 7)).astype(dtype)
    a[0, :3] = [np.nan, np.inf, -np.inf]
    a[1, :3] = [np.nan, np.inf, -np.inf]
    keep = rng.uniform(size=a.shape) < 0.5
    keep[0, :3], keep[1, :3] = False, True
    view = a[:, ::2]  # non-contiguous
    for arr, k in ((a, keep), (view, keep[:, ::2])):
        got = select(k, arr)
        expected = np.where(k, arr, dtype(0))
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == dtype and not np.any(np.signbit(got[~k]))
    assert not np.shares_memory(select(keep, a), a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_evaluation_equals_the_whole_array(dtype):
    """Arrays beyond one block are evaluated block by block: the same values, element by element, any layout."""
    from handnn.functional import special

    rng = np.random.default_rng(7)
    n = 3 * special._BLOCK + 17
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[[0, special._BLOCK - 1, special._BLOCK, n - 1]] = [np.nan, np.inf, -np.inf, 0.5]
    grid = x.reshape(-1, 1)[: n - n % 7].reshape(7, -1).T  # a non-contiguous 2-d view
    np.testing.assert_array_equal(special.erf(x), special._erf_block(x))
    np.testing.assert_array_equal(special.erf(grid), special._erf_block(np.ascontiguousarray(grid)))
