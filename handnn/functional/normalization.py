"""BatchNorm, LayerNorm and GroupNorm: forward/backward pairs.

All three normalise ``x_hat = (x - mean) / sqrt(var + eps)`` with the *biased* variance and eps inside
the square root, then apply a per-feature affine map ``y = x_hat * weight + bias``. Their training-mode
backward passes share one fused formula, ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with
``g = dout * weight`` (seeds 000 and 002 derive it from the computational graph), computed with per-channel or
per-row sums as BLAS matrix-vector products and sums of products as row dot products (:mod:`._kernels`), in place
on handnn-owned arrays, the broadcasting passes of large arrays with a small ufunc buffer
(:func:`._kernels.unbuffered`). BatchNorm and GroupNorm keep the centred input instead of ``x_hat``
(:class:`CentredCache`): their output and gradients are then per-channel affine maps of it, and no pass is spent
building ``x_hat``; beyond two dims they work through blocks of samples that stay in cache, as LayerNorm works
through blocks of rows beyond 4 MiB per array.
"""
from __future__ import annotations

import math
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._validation import NO_KERNEL, check_array, check_half_input, check_same_dtype, normalize_dim
from ._kernels import UNBUFFERED_FROM, channel_sums, col_sums, ones, row_dots, row_sums, unbuffered

Grads = Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


class NormCache(NamedTuple):
    """What LayerNorm's backward needs (BatchNorm and GroupNorm keep a :class:`CentredCache`).

    x_hat : the normalised input, shape of ``x``.
    inv_std : ``1 / sqrt(var + eps)``, broadcastable to the (grouped) input.
    weight : the affine weight broadcastable to ``x`` (None without affine).
    has_bias : whether a bias was added.
    stat_axes : axes the statistics were reduced over (of ``x``, or of the grouped view for GroupNorm);
        None when fixed statistics were used (BatchNorm in eval), so backward is a plain scaling.
    param_axes : axes summed to get dweight / dbias.
    groups : for GroupNorm, the number of groups (the grouped view is ``(N, G, -1)``); else 0.
    """

    x_hat: np.ndarray
    inv_std: np.ndarray
    weight: Optional[np.ndarray]
    has_bias: bool
    stat_axes: Optional[Tuple[int, ...]]
    param_axes: Tuple[int, ...]
    groups: int = 0


class CentredCache(NamedTuple):
    """What BatchNorm's and GroupNorm's backward needs, with the normalised input kept implicitly.

    ``x_hat = (centred - shift) * inv_std`` (coefficients broadcast over the trailing dims), never stored: the forward
    output and both gradients are per-channel (or per-(sample, channel)) affine maps of ``centred``, so each costs
    the passes of its own multiply-add and no pass builds ``x_hat``.

    centred : ``x - mean0``, shape of ``x`` (N, C, *), ``mean0`` the first estimate of the mean: the one
        input-sized array kept.
    shift : (N or 1, C) ``mean - mean0``, the second pass's correction (corrected two-pass algorithm); 0 in eval.
    inv_std : (N or 1, C), ``1 / sqrt(var + eps)`` of each element's statistic.
    weight : (C,) or None.
    has_bias : bool
    batch_stats : True when the statistics are the input's (training): backward goes through them.
    group_size : GroupNorm's ``C / G`` (statistics shared by groups of channels); 0 for BatchNorm.
    shape : the input's shape.
    """

    centred: np.ndarray
    shift: np.ndarray
    inv_std: np.ndarray
    weight: Optional[np.ndarray]
    has_bias: bool
    batch_stats: bool
    group_size: int
    shape: Tuple[int, ...]


#: the six public functions run with NumPy's floating-point warnings off: an inf or NaN input (inf - inf, inf * 0)
#: or an overflowing variance gives torch's NaN/inf results, which torch computes without a warning
_nonfinite_quietly = np.errstate(invalid="ignore", over="ignore", divide="ignore")


def _check_vector_size(name: str, v: Optional[np.ndarray], size: int) -> None:
    if v is not None and v.shape != (size,):
        raise RuntimeError(f"{name} should contain {size} elements not {v.size}")


def verify_batch_size(size: Sequence[int]) -> None:
    """torch's ``_verify_batch_size``: batch statistics need more than one value per channel."""
    size_prods = size[0] * math.prod(size[2:])
    if size_prods == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {list(size)}"
        )


def _per_channel(x: np.ndarray) -> np.ndarray:
    """``x`` of shape (N, C, *) as a 3-d view (N, C, L), L the product of the trailing dims (1 for (N, C))."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def channel_sum64(x: np.ndarray) -> np.ndarray:
    """Sum over every dim but 1 of an (N, C, *) array, accumulated in float64 as torch's CPU kernel does for the
    batch mean (exact for a constant float32 channel): shape (C,), NumPy's sum (the small arrays' path; large ones
    sum by BLAS in their own dtype and correct the mean in a second pass)."""
    return _per_channel(x).sum(axis=2, dtype=np.float64).sum(axis=0)


# ---- blocks of samples: the kernels below make their several passes over a few samples at a time, while these
# are in cache, instead of streaming the whole array through memory once per pass (3-5 passes per kernel) ---------
#: elements per block of samples (1 MiB of float32): at 32 x 64 x 28 x 28, BatchNorm2d and GroupNorm forward +
#: backward took 5-12 % less time (float32; float64 1-5 %) than with blocks of 65536 elements, whose extra Python
#: iterations cost more than the smaller blocks saved in cache traffic
BLOCK = 262144

def _sample_blocks(a: np.ndarray) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of samples (the first dim of ``a``), about ``BLOCK`` elements each
    (at least one sample)."""
    n = a.shape[0]
    step = max(1, BLOCK // max(a.size // max(n, 1), 1))
    return ((start, min(start + step, n)) for start in range(0, n, step))


#: LayerNorm's rows run whole up to this many bytes per array, in blocks of samples beyond. Measured at 512 x 1024
#: (2 and 4 MiB): whole was 3-8 % faster than two blocks when the machine's memory was quiet, two blocks 28 % faster
#: (float32) when it was contended; at 4096 x 1024, blocks took 0.66-0.77 of the whole-array time
ROWS_WHOLE_BYTES = 4 * 1024 * 1024


def _row_blocks(a: np.ndarray) -> List[Tuple[int, int]]:
    """LayerNorm's blocks of rows of a 2-d ``a``: one block up to :data:`ROWS_WHOLE_BYTES`, else
    :func:`_sample_blocks`."""
    if a.nbytes <= ROWS_WHOLE_BYTES:  # an empty array too: one empty block
        return [(0, a.shape[0])]
    return list(_sample_blocks(a))


def _samples(v: np.ndarray, start: int, stop: int) -> np.ndarray:
    """A coefficient of leading dim N (per sample) or 1 (shared) for the samples ``start:stop``."""
    return v if v.shape[0] == 1 else v[start:stop]


def _squares_overflow(mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where ``mean ** 2`` overflows in ``dtype``: torch's LayerNorm and GroupNorm moments (a Welford cascade) then
    give NaN statistics, where an overflowing variance alone gives them an infinite one (``inv_std = 0``)."""
    mean = mean.astype(dtype, copy=False)
    return np.isinf(mean * mean) & np.isfinite(mean)


def _rows_normalized(x2: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray],
                     eps: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise each row of a 2-d (M, K) array and apply the affine map: ``out = x_hat * weight + bias``, ``x_hat``
    and ``inv_std`` (M, 1), ``weight`` and ``bias`` of K elements or None.

    Two passes for the statistics (mean, then the squares of the centred values), as torch does: no cancellation
    from ``E[x^2] - E[x]^2``. Large arrays go through every step a block of rows at a time (:func:`_row_blocks`),
    while the block is in cache.
    """
    x2 = np.ascontiguousarray(x2)
    m, k = x2.shape
    dtype = x2.dtype
    x_hat, out, inv_std = np.empty_like(x2), np.empty_like(x2), np.empty((m, 1), dtype)
    one, count, eps_ = ones(k, dtype), dtype.type(k), dtype.type(eps)
    with unbuffered(x2.size):
        for r0, r1 in _row_blocks(x2):
            rows, hat, s = x2[r0:r1], x_hat[r0:r1], inv_std[r0:r1]
            mean = np.matmul(rows, one)
            mean /= count
            np.subtract(rows, mean[:, None], out=hat)
            var = row_dots(hat, hat)
            var /= count
            var[_squares_overflow(mean, dtype)] = np.nan
            var += eps_
            np.sqrt(var, out=s[:, 0])
            np.divide(dtype.type(1), s, out=s)
            hat *= s
            _affine_into(out[r0:r1], hat, weight, bias)
    return out, x_hat, inv_std


def _affine_into(out: np.ndarray, x_hat: np.ndarray, weight: Optional[np.ndarray],
                 bias: Optional[np.ndarray]) -> None:
    """``out = x_hat * weight + bias`` (either may be None), broadcasting over rows."""
    if weight is not None:
        np.multiply(x_hat, weight, out=out)
    else:
        np.copyto(out, x_hat)
    if bias is not None:
        out += bias


def _rows_backward(dout: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, weight: Optional[np.ndarray],
                   has_bias: bool) -> Grads:
    """LayerNorm's backward on (M, K) rows: ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with means
    along each row and ``g = dout * weight``; ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over the rows
    (accumulated in float64 block by block, returned in the input's dtype; None when absent).

    The row means come from ``dout`` and ``dout * x_hat`` (the product ``dweight`` needs) as matrix-vector
    products with ``weight``, so ``g`` is formed once, as the start of ``dx``. Large arrays go a block of rows at a
    time (:func:`_row_blocks`), with one block of scratch.
    """
    m, k = dout.shape
    dtype = dout.dtype
    dx = np.empty_like(dout)
    dweight = np.zeros(k) if weight is not None else None
    dbias = np.zeros(k) if has_bias else None
    blocks = _row_blocks(dout)
    scratch = np.empty((blocks[0][1], k), dtype)
    count = dtype.type(k)
    with unbuffered(dout.size):
        for r0, r1 in blocks:
            d, hat, g, product = dout[r0:r1], x_hat[r0:r1], dx[r0:r1], scratch[:r1 - r0]
            np.multiply(d, hat, out=product)
            if weight is not None:
                dweight += col_sums(product)
                mean_gx, mean_g = np.matmul(product, weight), np.matmul(d, weight)
                np.multiply(d, weight, out=g)
            else:
                mean_gx, mean_g = row_sums(product), row_sums(d)
                np.copyto(g, d)
            if dbias is not None:
                dbias += col_sums(d)
            mean_gx /= count
            mean_g /= count
            g -= mean_g[:, None]
            g -= np.multiply(hat, mean_gx[:, None], out=product)
            g *= inv_std[r0:r1]
    return dx, _rounded(dweight, dtype), _rounded(dbias, dtype)


def _rounded(v: Optional[np.ndarray], dtype: np.dtype) -> Optional[np.ndarray]:
    """``v`` (a float64 accumulator) rounded to ``dtype``, or None."""
    return None if v is None else v.astype(dtype)


def _expand(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (N or 1, C) coefficient as an array broadcasting against an (N, C, *) array of ``ndim`` dims."""
    return v.reshape(v.shape + (1,) * (ndim - 2))


def _centred_affine(centred: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``centred * scale + offset``, (N, C, *) array, (N or 1, C) coefficients broadcast over the trailing dims."""
    out = np.empty_like(centred)
    if centred.ndim == 2:
        with unbuffered(out.size):
            np.multiply(centred, scale, out=out)
            out += offset
        return out
    c3, o3 = _per_channel(centred), _per_channel(out)
    scale, offset = scale[:, :, None], offset[:, :, None]
    with unbuffered(out.size):
        for n0, n1 in _sample_blocks(c3):
            block = o3[n0:n1]
            np.multiply(c3[n0:n1], _samples(scale, n0, n1), out=block)
            block += _samples(offset, n0, n1)
    return out


def _centre_rows(x3: np.ndarray, mean0: Optional[np.ndarray] = None
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``centred = x3 - mean0`` for a C-contiguous (N, R, K) array (R rows of K values per sample), with the sums
    of ``centred`` and of its squares per row ((N, R) each, BLAS in the array's dtype), a block of samples at a
    time; and the first means used, (N, R) (``mean0`` broadcast when given).

    ``mean0`` : (1, R, 1), or None for each row's own mean (a BLAS sum, corrected later by the second pass).
    """
    n, r, k = x3.shape
    dtype = x3.dtype
    centred = np.empty_like(x3)
    sums, sums_sq, means = np.zeros((n, r), dtype), np.zeros((n, r), dtype), np.zeros((n, r, 1), dtype)
    if mean0 is not None:
        means[...] = mean0
    if k == 0:
        return centred, sums, sums_sq, means[:, :, 0]
    one = ones(k, dtype)
    with unbuffered(x3.size):
        for n0, n1 in _sample_blocks(x3):
            block, rows = centred[n0:n1], centred[n0:n1].reshape(-1, k)
            mean = means[n0:n1]
            if mean0 is None:
                np.matmul(x3[n0:n1].reshape(-1, k), one, out=mean.reshape(-1))
                mean /= dtype.type(k)
            np.subtract(x3[n0:n1], mean, out=block)
            np.matmul(rows, one, out=sums[n0:n1].reshape(-1))
            row_dots(rows, rows, out=sums_sq[n0:n1].reshape(-1))
    return centred, sums, sums_sq, means[:, :, 0]


def _second_pass(sums: np.ndarray, sums_sq: np.ndarray, count: int,
                 eps: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the sums of the centred values ``c`` and of their squares (``count`` values each): the shift to the
    exact mean, the summed squared deviations ``sum((x - mean)^2)``, and ``inv_std``, all float64.

    The corrected two-pass algorithm (Chan, Golub & LeVeque): ``sum((c - d)^2) = sum(c^2) - d sum(c)`` with
    ``d = sum(c) / count``; ``c`` is centred already, so nothing cancels. A non-finite ``d`` comes from an inf or NaN
    input or first mean, a non-finite ``sum(c^2)`` from those or an overflow: there is nothing to correct then, and
    ``sum(c^2)`` is torch's inf or NaN as it is.
    """
    sums, sums_sq = sums.astype(np.float64), sums_sq.astype(np.float64)
    shift = sums / count
    finite = np.isfinite(shift) & np.isfinite(sums_sq)
    shift = np.where(finite, shift, 0.0)
    var_sum = np.where(finite, np.maximum(sums_sq - shift * sums, 0.0), sums_sq)
    return shift, var_sum, 1 / np.sqrt(var_sum / count + eps)


def _shifted(v: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``v * shift``, the second pass's correction of a term by the shift to the exact mean (0 in eval and for
    non-finite statistics); 0 where ``v`` is inf or NaN: the term is non-finite whatever the correction, and
    ``inf - inf`` (or ``inf * 0``) would turn it into NaN where torch's formula, which has no such correction, gives
    inf."""
    return np.where(np.isfinite(v), v * shift, 0.0)


def _affine_coefficients(inv_std: np.ndarray, shift: np.ndarray, weight: Optional[np.ndarray],
                         bias: Optional[np.ndarray], dtype: np.dtype) -> Tuple[np.ndarray, np.ndarray]:
    """``y = x_hat * weight + bias = centred * a + c`` with ``a = inv_std * weight`` and ``c = bias - shift * a``."""
    a = inv_std if weight is None else inv_std * weight
    c = -_shifted(a, shift) if bias is None else bias - _shifted(a, shift)
    return a.astype(dtype), c.astype(dtype)


def _grad_sums(dout: np.ndarray, centred: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``sum(dout)`` and ``sum(dout * centred)`` over the trailing dims of two C-contiguous (N, C, *) arrays with
    more than two dims: (N, C) each, in their dtype, a block of samples at a time."""
    d3, c3 = _per_channel(dout), _per_channel(centred)
    n, c, length = d3.shape
    s_dout, s_dc = np.zeros((n, c), dout.dtype), np.zeros((n, c), dout.dtype)
    if length:
        one = ones(length, dout.dtype)
        for n0, n1 in _sample_blocks(d3):  # dout's block read twice, the second time from cache
            d_rows = d3[n0:n1].reshape(-1, length)
            np.matmul(d_rows, one, out=s_dout[n0:n1].reshape(-1))
            row_dots(d_rows, c3[n0:n1].reshape(-1, length), out=s_dc[n0:n1].reshape(-1))
    return s_dout, s_dc


def _centred_grads(dout: np.ndarray, cache: CentredCache) -> Tuple[np.ndarray, np.ndarray]:
    """The sums ``sum(dout)`` and ``sum(dout * x_hat)`` per statistic's channel:
    float64, (1, C) for BatchNorm (over the batch too), (N, C) for GroupNorm."""
    if dout.ndim == 2:
        s_dout, s_dc = dout, np.multiply(dout, cache.centred)
    else:
        s_dout, s_dc = _grad_sums(dout, cache.centred)
    if cache.group_size:
        s_dout, s_dc = s_dout.astype(np.float64), s_dc.astype(np.float64)
    else:  # BatchNorm: over the batch too
        s_dout, s_dc = col_sums(s_dout).astype(np.float64)[None, :], col_sums(s_dc).astype(np.float64)[None, :]
    s_dxhat = cache.inv_std * (s_dc - _shifted(s_dout, cache.shift))  # sum(dout * (centred - shift)) * inv_std
    return s_dout, s_dxhat


def _centred_backward(dout: np.ndarray, cache: CentredCache, s_dout: np.ndarray, s_dxhat: np.ndarray) -> np.ndarray:
    """dx of BatchNorm / GroupNorm, ``inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with ``g = dout * w``,
    from the sums of :func:`_centred_grads`: ``dout * A + centred * B + C`` with per-channel (BatchNorm) or
    per-(sample, channel) (GroupNorm) coefficients computed in float64, four passes (over blocks of samples beyond
    two dims). This is torch's GroupNorm backward (``c1 * dy + c2 * x + c3``); each term is rounded once, so the
    error is that of the bracket summed before the scaling. A statistic over one value (a GroupNorm group of one
    element) has ``x_hat = 0`` whatever the input: its dx is exactly 0 where ``dout * inv_std`` is finite, given as
    such rather than as the rounding noise of terms that cancel, and NaN where torch's is (a NaN or inf input or
    upstream gradient)."""
    n, c = dout.shape[:2]
    length = dout.size // (n * c)
    if cache.group_size * length == 1:
        inv_std = cache.inv_std.reshape((n, c) + (1,) * (dout.ndim - 2))  # over trailing dims of size 1
        return np.multiply(dout, inv_std.astype(dout.dtype)) * dout.dtype.type(0)
    w = None if cache.weight is None else cache.weight.reshape(c).astype(np.float64)
    inv_std, shift = cache.inv_std, cache.shift
    if cache.group_size:  # per (sample, group): sum the channels of each group, give each channel its group's
        size = cache.group_size

        def mean(v: np.ndarray) -> np.ndarray:
            return np.repeat(v.reshape(n, -1, size).sum(axis=2), size, axis=1) / (size * length)
    else:  # per channel: the sums are over the batch already

        def mean(v: np.ndarray) -> np.ndarray:
            return v / (n * length)
    mean_g = mean(s_dout if w is None else w * s_dout)
    mean_gx = mean(s_dxhat if w is None else w * s_dxhat)
    b = -inv_std * mean_gx  # centred * b + offset = -mean_gx * x_hat - mean_g
    offset = -mean_g - _shifted(b, shift)
    dtype = dout.dtype
    coefficients = [inv_std if w is None else inv_std * w, b * inv_std, offset * inv_std]
    coefficients = [v.astype(dtype) for v in coefficients]
    dx = np.empty(dout.shape, dtype)  # C-contiguous whatever dout's layout: written through reshaped views below
    if dout.ndim == 2:
        with unbuffered(dx.size):
            _affine_sum(dx, dout, cache.centred, np.empty_like(dout), *coefficients)
        return dx
    arrays = [_per_channel(a) for a in (dx, dout, cache.centred)]
    coefficients = [v[:, :, None] for v in coefficients]
    blocks = list(_sample_blocks(arrays[0]))
    scratch = np.empty((blocks[0][1],) + arrays[0].shape[1:], dtype)
    with unbuffered(dx.size):
        for n0, n1 in blocks:
            _affine_sum(*(a[n0:n1] for a in arrays), scratch[:n1 - n0],
                        *(_samples(v, n0, n1) for v in coefficients))
    return dx


def _affine_sum(dx: np.ndarray, dout: np.ndarray, centred: np.ndarray, scratch: np.ndarray, a: np.ndarray,
                b: np.ndarray, c: np.ndarray) -> None:
    """``dx = dout * a + centred * b + c``, coefficients broadcasting against the arrays; ``scratch`` of their
    shape is overwritten."""
    np.multiply(dout, a, out=dx)
    dx += np.multiply(centred, b, out=scratch)
    dx += c


# ---- BatchNorm -----------------------------------------------------------------------------------
@_nonfinite_quietly
def batch_norm_forward(
    x: np.ndarray,
    running_mean: Optional[np.ndarray],
    running_var: Optional[np.ndarray],
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, "CentredCache"]:
    """Batch normalisation over every dim but 1 (torch's ``F.batch_norm``).

    Parameters
    ----------
    x : ndarray, shape (N, C, *)
    running_mean, running_var : ndarray, shape (C,), or None
        Updated **in place** when ``training`` (as torch does):
        ``running <- (1 - momentum) * running + momentum * batch_stat``, where the variance stored is the
        unbiased one, ``sum((x - mean)^2) / (n - 1)`` with ``n = numel / C``.
    weight, bias : ndarray, shape (C,), optional
    training : bool
        Use batch statistics (biased variance) when True, else the running ones.
    momentum : float
    eps : float
        Added to the variance inside the square root.

    Returns
    -------
    out : ndarray, shape of ``x``
        ``(x - mean) / sqrt(var + eps) * weight + bias``.
    cache : CentredCache
    """
    # torch's order of checks, so an input with two faults raises what torch raises: shape, batch size,
    # eps, parameter sizes, then the input's dtype and the parameters' dtypes.
    if not isinstance(x, np.ndarray):
        check_array(x, "batch_norm")  # TypeError for anything but an ndarray
    if x.ndim < 2:  # torch counts 0 channels, then finds no dim 1 (the modules refuse the rank first: ValueError)
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            _check_vector_size(name, v, 0)
        normalize_dim(1, x.ndim)
    if training:
        verify_batch_size(x.shape)
        if eps <= 0:  # eps is printed as given, like torch ("0" for an int)
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif eps < 0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    channels = x.shape[1]
    vectors = (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias))
    if x.size:  # an empty input is returned empty whatever the vectors' sizes, as torch does, updating nothing
        for name, v in vectors:
            _check_vector_size(name, v, channels)
    check_half_input(x, [v for _, v in vectors], "batch_norm")
    check_array(x, "batch_norm", refuses=NO_KERNEL)
    if x.size == 0:  # no statistics: backward returns empty and zero gradients at once
        return np.empty_like(x), CentredCache(np.empty_like(x), None, None, weight, bias is not None, training, 0,
                                              x.shape)
    for _, v in vectors:
        check_same_dtype(x, v, "batch_norm")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("batch_norm in eval mode needs running_mean and running_var")
    x = np.ascontiguousarray(x)
    n = x.size // channels
    bshape = (1, channels) + (1,) * (x.ndim - 2)
    if training:
        # mean0: the mean accumulated in float64 as torch's CPU kernel does (acc_type<float> is double), so a
        # constant float32 channel gives x_hat == 0 exactly, below UNBUFFERED_FROM elements; above, a BLAS sum in
        # x's dtype, which the second pass corrects (the shift).
        if x.size < UNBUFFERED_FROM:
            mean0 = (channel_sum64(x) / n).astype(x.dtype)
        else:
            mean0 = channel_sums(x) / x.dtype.type(n)
        if x.ndim == 2:
            with unbuffered(x.size):
                centred = np.subtract(x, mean0.reshape(bshape))  # the one input-sized array the cache keeps
            sums, sums_sq = col_sums(centred), col_sums(np.multiply(centred, centred))
        else:  # by blocks of samples, then the (sample, channel) sums summed per channel
            centred, sums, sums_sq, _ = _centre_rows(_per_channel(x), mean0.reshape(1, -1, 1))
            centred = centred.reshape(x.shape)
            sums, sums_sq = col_sums(sums), col_sums(sums_sq)
        shift, var_sum, inv_std = _second_pass(sums, sums_sq, n, eps)
        mean64 = mean0 + shift
        # torch's update order: momentum * batch_stat + (1 - momentum) * running, unbiased variance; computed
        # in float64 and rounded into the buffers.
        if running_mean is not None:
            running_mean[...] = momentum * mean64 + (1 - momentum) * running_mean
        if running_var is not None:
            running_var[...] = momentum * (var_sum / (n - 1)) + (1 - momentum) * running_var
    else:
        with unbuffered(x.size):
            centred = np.subtract(x, running_mean.reshape(bshape))
        shift = np.zeros(channels)
        inv_std = 1 / np.sqrt(running_var.astype(np.float64) + eps)
    a, c = _affine_coefficients(inv_std, shift, weight, bias, x.dtype)
    out = _centred_affine(centred, a[None, :], c[None, :])
    return out, CentredCache(centred, shift[None, :], inv_std[None, :], weight, bias is not None, training, 0,
                             x.shape)


@_nonfinite_quietly
def batch_norm_backward(dout: np.ndarray, cache: CentredCache) -> Grads:
    """Gradients of :func:`batch_norm_forward`.

    Training: ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with ``g = dout * weight``.
    Eval: ``dx = g * inv_std`` (the statistics are constants).
    ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over every dim but 1.

    Returns
    -------
    dx : ndarray, shape of ``dout``
    dweight, dbias : ndarray, shape (C,), or None when absent
    """
    if dout.size == 0:  # zero gradients of the parameters' own size (an empty input may have other channels)
        zeros = np.zeros(cache.shape[1] if cache.weight is None else cache.weight.shape[0], dout.dtype)
        return (np.empty_like(dout), zeros if cache.weight is not None else None,
                zeros.copy() if cache.has_bias else None)
    s_dout, s_dxhat = _centred_grads(dout, cache)
    if cache.batch_stats:
        dx = _centred_backward(dout, cache, s_dout, s_dxhat)
    else:  # eval: the statistics are constants
        a, _ = _affine_coefficients(cache.inv_std, cache.shift, cache.weight, None, dout.dtype)
        dx = np.empty_like(dout)
        with unbuffered(dx.size):
            np.multiply(dout, _expand(a, dout.ndim), out=dx)
    dweight = s_dxhat.sum(axis=0).astype(dout.dtype) if cache.weight is not None else None
    dbias = s_dout.sum(axis=0).astype(dout.dtype) if cache.has_bias else None
    return dx, dweight, dbias


# ---- LayerNorm -----------------------------------------------------------------------------------
@_nonfinite_quietly
def layer_norm_forward(
    x: np.ndarray,
    normalized_shape: Sequence[int],
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, NormCache]:
    """Layer normalisation over the trailing ``len(normalized_shape)`` dims.

    Parameters
    ----------
    x : ndarray, shape (*, *normalized_shape)
    normalized_shape : tuple of int
    weight, bias : ndarray, shape normalized_shape, optional

    Returns
    -------
    out : ndarray, shape of ``x``; ``(x - mean) / sqrt(var + eps) * weight + bias`` per sample.
    cache : NormCache
    """
    # torch's order of checks: a parameter of another dtype than the input (an integer input included) is a
    # "mixed dtype" RuntimeError before the shape is looked at; an integer input without parameters is
    # NotImplementedError, after the shape check.
    if not isinstance(x, np.ndarray):
        check_array(x, "layer_norm")  # TypeError for anything but an ndarray
    check_half_input(x, (weight, bias), "layer_norm")
    for v in (weight, bias):
        check_same_dtype(x, v, "layer_norm")
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*, {', '.join(map(str, shape))}], "
            f"but got input of size{list(x.shape)}"
        )
    check_array(x, "layer_norm", refuses=NO_KERNEL)
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None:
            if v.shape != shape:
                raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got "
                                   f"{name} of shape {list(v.shape)} and normalized_shape = {list(shape)}")
    axes = tuple(range(x.ndim - k, x.ndim))
    d = math.prod(shape)
    out, x_hat, inv_std = _rows_normalized(x.reshape(-1, d), None if weight is None else weight.reshape(d),
                                           None if bias is None else bias.reshape(d), eps)
    inv_std = inv_std.reshape(x.shape[:x.ndim - k] + (1,) * k)
    param_axes = tuple(range(x.ndim - k))
    return out.reshape(x.shape), NormCache(x_hat.reshape(x.shape), inv_std, weight, bias is not None, axes,
                                           param_axes)


@_nonfinite_quietly
def layer_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`layer_norm_forward`.

    ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` per sample with ``g = dout * weight``;
    ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over the leading dims.
    """
    normalized = dout.shape[len(cache.param_axes):]
    d = math.prod(normalized)
    weight = None if cache.weight is None else cache.weight.reshape(d)
    dx, dweight, dbias = _rows_backward(np.ascontiguousarray(dout).reshape(-1, d), cache.x_hat.reshape(-1, d),
                                        cache.inv_std.reshape(-1, 1), weight, cache.has_bias)
    return (dx.reshape(dout.shape), None if dweight is None else dweight.reshape(normalized),
            None if dbias is None else dbias.reshape(normalized))


# ---- GroupNorm -----------------------------------------------------------------------------------
@_nonfinite_quietly
def group_norm_forward(
    x: np.ndarray,
    num_groups: int,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, "CentredCache"]:
    """Group normalisation: statistics per (sample, group of ``C / G`` channels), affine per channel.

    Parameters
    ----------
    x : ndarray, shape (N, C, *)
    num_groups : int, dividing C
    weight, bias : ndarray, shape (C,), optional

    Returns
    -------
    out : ndarray, shape of ``x``
    cache : CentredCache
    """
    # torch's order of checks: rank, values per group, divisibility, parameter sizes, then dtypes (a
    # parameter of another dtype is "mixed dtype"; an integer input without parameters NotImplementedError).
    if not isinstance(x, np.ndarray):
        check_array(x, "group_norm")  # TypeError for anything but an ndarray
    if x.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {x.ndim}")
    n, channels = x.shape[:2]
    verify_batch_size([n * channels // num_groups, num_groups, *x.shape[2:]])
    if channels % num_groups:
        raise RuntimeError(
            "Expected number of channels in input to be divisible by num_groups, but got input of shape "
            f"{list(x.shape)} and num_groups={num_groups}"
        )
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.shape != (channels,):
            raise RuntimeError(
                f"Expected {name} to be a vector of size equal to the number of channels in input, but "
                f"got {name} of shape {list(v.shape)} and input of shape {list(x.shape)}"
            )
    check_half_input(x, (weight, bias), "group_norm")
    for v in (weight, bias):
        check_same_dtype(x, v, "group_norm")
    check_array(x, "group_norm", refuses=NO_KERNEL)
    size = channels // num_groups
    x = np.ascontiguousarray(x)
    k = size * math.prod(x.shape[2:])
    rows = x.reshape(n, num_groups, k)  # one row per (sample, group)
    centred, sums, sums_sq, mean0 = _centre_rows(rows)  # centred: the one input-sized array the cache keeps
    shift, _, inv_std = _second_pass(sums.reshape(-1), sums_sq.reshape(-1), k, eps)  # k = 0: NaN, as torch
    inv_std[_squares_overflow(mean0.reshape(-1), x.dtype)] = np.nan

    def per_channel(v: np.ndarray) -> np.ndarray:  # (N * G,) -> (N, C): each channel its group's value
        return np.repeat(v.reshape(n, num_groups), size, axis=1)

    shift, inv_std = per_channel(shift), per_channel(inv_std)
    a, c = _affine_coefficients(inv_std, shift, weight, bias, x.dtype)
    centred = centred.reshape(x.shape)
    return _centred_affine(centred, a, c), CentredCache(centred, shift, inv_std, weight, bias is not None, True,
                                                        size, x.shape)


@_nonfinite_quietly
def group_norm_backward(dout: np.ndarray, cache: CentredCache) -> Grads:
    """Gradients of :func:`group_norm_forward`: the LayerNorm formula per (sample, group);
    ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over every dim but 1."""
    s_dout, s_dxhat = _centred_grads(dout, cache)
    dx = _centred_backward(dout, cache, s_dout, s_dxhat) if dout.size else np.empty_like(dout)
    dweight = s_dxhat.sum(axis=0).astype(dout.dtype) if cache.weight is not None else None
    dbias = s_dout.sum(axis=0).astype(dout.dtype) if cache.has_bias else None
    return dx, dweight, dbias
