"""The fast kernels' building blocks (``handnn.functional._kernels``) and BatchNorm's statistics of large
ill-conditioned float32 inputs, without torch: BLAS sums against NumPy's, the buffer size restored, the batch mean and variance against
float64 NumPy where the data are too ill-conditioned for the parity table."""
from __future__ import annotations

import numpy as np
import pytest

from handnn import nn
from handnn.functional import _kernels

LAYERS = {
    "BatchNorm1d": (lambda d: nn.BatchNorm1d(500, dtype=d), (160, 500)),
    "BatchNorm1d-3d": (lambda d: nn.BatchNorm1d(16, dtype=d), (60, 16, 90)),
    "BatchNorm2d": (lambda d: nn.BatchNorm2d(16, dtype=d), (6, 16, 30, 30)),
}


def test_unbuffered_restores_the_buffer_size():
    before = np.getbufsize()
    with _kernels.unbuffered(_kernels.UNBUFFERED_FROM):
        assert np.getbufsize() == _kernels.SMALL_BUFFER
    assert np.getbufsize() == before
    with pytest.raises(ZeroDivisionError):
        with _kernels.unbuffered(_kernels.UNBUFFERED_FROM):
            1 / 0
    assert np.getbufsize() == before
    with _kernels.unbuffered(_kernels.UNBUFFERED_FROM - 1):  # small work: untouched
        assert np.getbufsize() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalars_are_read_only_zero_d_arrays_giving_the_python_numbers_results(dtype, seed):
    """ZERO/ONE[dtype]: one read-only 0-d array per dtype, and a ufunc gives the same bits and dtype with
    it as with the Python number."""
    x = np.random.default_rng(seed).normal(size=(5, 7)).astype(dtype)
    x[0, :3] = [np.nan, -0.0, np.inf]
    for table, number in ((_kernels.ZERO, 0), (_kernels.ONE, 1)):
        scalar = table[np.dtype(dtype)]
        assert scalar is table[x.dtype] and scalar.shape == () and scalar.dtype == dtype and scalar == number
        assert not scalar.flags.writeable
        for ufunc in (np.subtract, np.minimum, np.maximum, np.not_equal):
            expected = ufunc(x, number)
            got = ufunc(x, scalar)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8), err_msg=ufunc.__name__)


@pytest.mark.parametrize("ufunc", [np.maximum, np.minimum])
@pytest.mark.parametrize("size", [7, _kernels.SMALL_AGAINST_ZERO + 1, 3 * _kernels.BLOCK // 2,
                                  3 * _kernels.BLOCK // 2 + 5],
                         ids=["small", "one-block", "rows", "rows-and-tail"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_zero_is_the_ufunc_with_zero(ufunc, size, dtype, seed):
    """against_zero(ufunc, x) == ufunc(x, 0) bit for bit (NaN propagated, the sign of a zero kept as NumPy gives
    it), a new array, for every path: the scalar loop, one block, whole rows of ZERO_ROW and a shorter tail, and
    a strided x."""
    x = np.random.default_rng(seed).normal(size=size).astype(dtype)
    x[:3] = [np.nan, np.inf, -np.inf]
    x[-4:] = [-0.0, np.nan, -np.inf, 0.5]  # in the tail when there is one
    if size > _kernels.ZERO_ROW:
        x[_kernels.ZERO_ROW - 1:_kernels.ZERO_ROW + 1] = [np.nan, -0.0]  # across the first row boundary
    wide = np.repeat(x, 2)  # non-contiguous views of it, past the block on the large sizes
    for arr in (x, x[::2], x.reshape(-1, 1), wide[::2], wide.reshape(2, -1).T):  # the last F-contiguous
        got = _kernels.against_zero(ufunc, arr)
        assert got.dtype == dtype and got.shape == arr.shape and not np.shares_memory(got, arr)
        expected = ufunc(arr, dtype(0))
        bits = [np.ascontiguousarray(a).view(np.uint8) for a in (got, expected)]
        np.testing.assert_array_equal(*bits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blockwise_cuts_only_beyond_whole_bytes(dtype):
    """blockwise hands arrays of up to WHOLE_BYTES whole (one call, whole-sized scratch) and cuts larger ones into
    consecutive BLOCK-element blocks (the last partial), covering every element once."""
    n = _kernels.WHOLE_BYTES // np.dtype(dtype).itemsize
    for size, calls in ((n, 1), (n + 1, -(-(n + 1) // _kernels.BLOCK))):
        a = np.zeros(size, dtype)
        seen = []

        def kernel(block, scratch):
            assert scratch.shape == block.shape and scratch.dtype == dtype
            seen.append(block.size)
            block += 1

        _kernels.blockwise(kernel, (a,), scratch=1)
        assert len(seen) == calls and sum(seen) == size and max(seen) <= max(_kernels.BLOCK, n if calls == 1 else 0)
        np.testing.assert_array_equal(a, 1)


@pytest.mark.parametrize("value", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_blocks_are_made_once_and_read_only(value, dtype):
    block = _kernels.constant_block(value, np.dtype(dtype))
    assert _kernels.constant_block(value, np.dtype(dtype)) is block
    assert block.shape == (_kernels.BLOCK,) and block.dtype == dtype and not block.flags.writeable
    np.testing.assert_array_equal(block, value)


@pytest.mark.parametrize("n", [0, 1, _kernels.BLOCK, _kernels.BLOCK + 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ones_is_n_ones_on_both_sides_of_the_shared_block(n, dtype):
    """Up to BLOCK elements a view of the shared read-only block, beyond it a new array: n ones either way, so a
    column sum of more rows than the block holds is still a sum."""
    ones = _kernels.ones(n, np.dtype(dtype))
    assert ones.shape == (n,) and ones.dtype == dtype
    np.testing.assert_array_equal(ones, np.ones(n, dtype))
    tall = np.arange(2 * n, dtype=dtype).reshape(n, 2) % 7
    np.testing.assert_array_equal(_kernels.col_sums(tall), tall.sum(axis=0, dtype=np.float64).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_sums_are_sums(dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(37, 5, 11)).astype(dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    a2 = a.reshape(37, -1)
    np.testing.assert_allclose(_kernels.row_sums(a2), a2.sum(axis=1, dtype=np.float64), rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(_kernels.col_sums(a2), a2.sum(axis=0, dtype=np.float64), rtol=rtol, atol=rtol * 10)
    for axes in ((0, 2), (0,), (2,), (1, 2), (0, 1, 2), (1,)):  # leading and/or trailing blocks, and NumPy's path
        expected = a.sum(axis=axes, dtype=np.float64, keepdims=True)
        np.testing.assert_allclose(_kernels.axis_sums(a, axes), expected, rtol=rtol, atol=rtol * 10)
        np.testing.assert_allclose(_kernels.axis_dots(a, a, axes), (a.astype(np.float64) ** 2).sum(
            axis=axes, keepdims=True), rtol=rtol, atol=rtol * 10)
    assert _kernels.row_sums(a2).dtype == dtype
    assert np.array_equal(_kernels.row_sums(np.zeros((3, 0), dtype)), np.zeros(3, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("vecdot", [True, False], ids=["vecdot", "multiply-gemv"])
def test_row_dots_are_row_dot_products(dtype, vecdot, seed, monkeypatch):
    """Both implementations (NumPy >= 2's ``vecdot``, older NumPy's multiply and matrix-vector product) against
    float64 sums of the products, into ``out`` too."""
    if not vecdot:
        monkeypatch.setattr(_kernels, "_vecdot", None)
    elif _kernels._vecdot is None:
        pytest.skip("this NumPy has no vecdot")  # NumPy < 2.0: the other parametrisation covers it
    rng = np.random.default_rng(seed)
    a, b = (rng.normal(size=(37, 300)).astype(dtype) for _ in range(2))
    expected = (a.astype(np.float64) * b).sum(axis=1)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    dots = _kernels.row_dots(a, b)
    assert dots.dtype == dtype and dots.shape == (37,)
    np.testing.assert_allclose(dots, expected, rtol=rtol, atol=rtol * 10)
    out = np.empty(37, dtype)
    assert _kernels.row_dots(a, b, out=out) is out
    np.testing.assert_array_equal(out, dots)


@pytest.mark.parametrize("spread", [1.0, 1e-2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_batch_statistics_to_float32_rounding(name, spread, seed):
    """float32 data 1e3 / spread standard deviations off zero (beyond the tolerance table's conditioning, so compared
    with float64 NumPy here, not torch, which is further off): a float32 BLAS mean would be off by many ulps;
    accumulated in float64, the batch mean (read through momentum=1's running_mean) is the float64 mean to 2
    ulps, and the unbiased variance is the float64 one to 1e-5 relative (the correction's sign matters at 1e-2)."""
    build, shape = LAYERS[name]
    rng = np.random.default_rng(seed)
    module = build(np.float32)
    module.momentum = 1.0
    x = (spread * rng.normal(size=shape) + 1000).astype(np.float32)
    module(x)
    axes = (0,) + tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes)
    ulps = np.abs(module.running_mean.astype(np.float64) - mean) / np.spacing(np.float32(1000))
    assert ulps.max() <= 2, f"batch mean off by {ulps.max():.1f} ulps"
    np.testing.assert_allclose(module.running_var, x64.var(axis=axes, ddof=1), rtol=1e-5)
