"""The vectorised kernels behind the activations: erf against math.erf, select against np.where, the float32
normal CDF of exact GELU against the float64 erf, ReLU's blocked maximum against np.maximum."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from handnn.functional import activation
from handnn.functional._kernels import BLOCK
from handnn.functional._kernels import where_kept as select
from handnn.functional.special import erf


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (-8.0, 8.0), (-30.0, 30.0)])
def test_erf_within_4_ulps_of_math_erf(low, high, rng):
    x = np.concatenate([np.linspace(low, high, 20001), rng.uniform(low, high, 20000)])
    expected = np.array([math.erf(v) for v in x])
    ulps = np.abs(erf(x) - expected) / np.spacing(np.maximum(np.abs(expected), np.finfo(float).tiny))
    assert ulps.max() <= 4, f"worst {ulps.max():.1f} ulps at x = {x[ulps.argmax()]!r}"


def test_erf_special_values_and_dtype():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 5.9, 6.0, 8.0, -8.0, 8.5, 30.0, 1e30])
    got = erf(x)
    expected = np.array([math.erf(v) if not math.isnan(v) else np.nan for v in x])
    np.testing.assert_array_equal(got, expected)
    assert np.signbit(got[4]), "erf(-0.0) is -0.0"
    x32 = x.astype(np.float32)
    assert erf(x32).dtype == np.float32
    np.testing.assert_array_equal(erf(x32), expected.astype(np.float32))
    assert erf(np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [6, 12000], ids=["small", "large"])  # a small and a large array
def test_select_is_where_including_nan_and_inf(rows, dtype, rng):
    a = rng.normal(size=(rows, 7)).astype(dtype)
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


def test_float32_normal_cdf_within_its_documented_bound():
    """GELU's float32 Phi (A&S 7.1.26 in float32) against 0.5 (1 + erf(x / sqrt 2)) in float64: the docstring's
    3.1e-7 absolute, over a dense grid and the exactly representable edges."""
    x = np.concatenate([np.linspace(-10, 10, 400001), [0.0, -0.0, 1e-30, -1e-30, 5.5, -5.5]]).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = 0.5 * (1 + erf(x64 / math.sqrt(2)))
    got = np.empty_like(x)
    activation._normal_tail32(x, np.exp(-0.5 * x64 * x64).astype(np.float32), got)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 3.1e-7
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_blocks_give_the_values_of_one_block(approximate, dtype, rng):
    """Blocked evaluation (arrays beyond BLOCK elements) equals the kernel on the whole array, any layout,
    special values included, and warns about nothing (torch does not)."""
    n = 2 * BLOCK + 5
    x = (rng.standard_normal(n) * 4).astype(dtype)
    x[[0, BLOCK - 1, BLOCK, n - 1]] = [np.nan, np.inf, -np.inf, 1e30 if dtype == np.float64 else 1e20]
    kernel = activation._gelu_tanh_block if approximate == "tanh" else activation._gelu_exact_block
    out, local = np.empty_like(x), np.empty_like(x)
    with np.errstate(all="ignore"):
        kernel(x, out, local)
    with warnings.catch_warnings():  # NumPy's default error state: overflow and invalid would warn
        warnings.simplefilter("error")
        got, cache = activation.gelu_forward(x, approximate)
    np.testing.assert_array_equal(got, out)
    np.testing.assert_array_equal(cache.saved, local)
    grid = x[: n - n % 5].reshape(5, -1).T  # non-contiguous
    got2, _ = activation.gelu_forward(grid, approximate)
    np.testing.assert_array_equal(got2, got[: n - n % 5].reshape(5, -1).T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_values_is_np_maximum(dtype, rng):
    """The blocked maximum against a zeros buffer gives np.maximum(x, 0) bit for bit (NaN, -0.0, infinities),
    contiguous or not, empty, 0-d, within one block or across several."""
    x = rng.standard_normal(2 * BLOCK + 3).astype(dtype)
    x[:5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    bits = np.dtype(f"u{np.dtype(dtype).itemsize}")
    for arr in (x, x[:100].reshape(10, 10), x[::3], x[:0], x[7:8].reshape(())):
        expected = np.maximum(arr, dtype(0))
        got = activation.relu_values(arr)
        assert np.asarray(got).dtype == dtype and np.shape(got) == arr.shape
        np.testing.assert_array_equal(np.asarray(got).view(bits), np.asarray(expected).view(bits))
