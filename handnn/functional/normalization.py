"""BatchNorm, LayerNorm and GroupNorm: forward/backward pairs.

All three normalise with the *biased* variance and eps inside the square root, then apply an affine map::

    mean  = mean(x)                       over the statistic's axes
    var   = mean((x - mean)^2)
    rstd  = 1 / sqrt(var + eps)
    x_hat = (x - mean) * rstd
    y     = x_hat * weight + bias

They differ only in the axes the statistics are taken over: BatchNorm every dim but the channels (1),
LayerNorm the trailing ``normalized_shape`` dims, GroupNorm each (sample, group of channels) — the input viewed
as ``(N, G, C / G * H * W)``, statistics over its last axis. :func:`_normalize` computes the lines above for any
axes, and :func:`_normalized_backward` their training-mode backward, derived in seeds 000 and 002::

    dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)),   dx_hat = dout * weight

with ``dweight = sum(dout * x_hat)`` and ``dbias = sum(dout)`` over the parameter's broadcast axes. As torch's
own kernels and its Python decompositions (``native_batch_norm_backward``) do, the cache keeps the centred input
``x - mean`` and ``rstd`` rather than ``x_hat``, and the backward passes multiply by ``rstd`` after summing: where
``rstd`` is 0 (an overflowing variance) or NaN (no values) and a sum is infinite or empty, the gradients are then
torch's NaN rather than 0.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._validation import NO_KERNEL, check_array, check_half_input, check_same_dtype, normalize_dim
from ._kernels import axis_dots, axis_sums, unbuffered

Grads = Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]
Axes = Tuple[int, ...]


class NormCache(NamedTuple):
    """What a normalisation's backward needs.

    centred : ``x - mean``, shape of ``x`` (``x_hat = centred * rstd``): the one input-sized array kept.
    rstd : ``1 / sqrt(var + eps)``, float64, statistics' axes kept (for GroupNorm ``(N, G, 1)``, the grouped
        view's).
    weight : the affine weight shaped to broadcast against ``x``, or None.
    has_bias : whether a bias was added.
    stat_axes : axes of ``centred`` (GroupNorm: of its grouped view) the statistics were taken over; None when
        they were constants (BatchNorm in eval), which makes the backward a plain scaling.
    param_axes : axes of ``x`` that ``dweight`` and ``dbias`` are summed over.
    shape : the input's shape.
    """

    centred: np.ndarray
    rstd: np.ndarray
    weight: Optional[np.ndarray]
    has_bias: bool
    stat_axes: Optional[Axes]
    param_axes: Axes
    shape: Tuple[int, ...]


#: the six public functions run with NumPy's floating-point warnings off: an inf or NaN input (inf - inf, inf * 0)
#: or an overflowing variance gives torch's NaN/inf results, which torch computes without a warning
_nonfinite_quietly = np.errstate(invalid="ignore", over="ignore", divide="ignore")


def verify_batch_size(size: Sequence[int]) -> None:
    """torch's ``_verify_batch_size``: batch statistics need more than one value per channel."""
    size_prods = size[0] * math.prod(size[2:])
    if size_prods == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {list(size)}"
        )


def _check_vector_size(name: str, v: Optional[np.ndarray], size: int) -> None:
    if v is not None and v.shape != (size,):
        raise RuntimeError(f"{name} should contain {size} elements not {v.size}")


def _normalize(x: np.ndarray, axes: Axes, eps: float,
               accumulate: Optional[type] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The statistics over ``axes`` and the centred input: ``x_hat = (x - mean) * rstd = centred * rstd``.

    Returns ``centred = x - mean`` (x's shape and dtype), and ``mean``, ``var`` (biased) and
    ``rstd = 1 / sqrt(var + eps)``, float64 with the reduced axes kept (size 1).

    The mean is accumulated in ``accumulate`` (default x's dtype). ``centred`` uses the mean rounded to x's dtype,
    ``mean0``; the variance about the exact mean is ``mean((x - mean0)^2) - (mean - mean0)^2``. The squares are
    summed in x's dtype, so a sum of squares overflowing it is an infinite variance (``rstd = 0``), as in torch.
    """
    n = math.prod(x.shape[a] for a in axes)
    if accumulate is None:  # by BLAS in x's dtype
        mean = axis_sums(x, axes).astype(np.float64) / n
    else:  # NumPy's pairwise sum, in that dtype
        mean = np.add.reduce(x, axis=axes, dtype=accumulate, keepdims=True).astype(np.float64) / n
    mean0 = mean.astype(x.dtype)
    centred = x - mean0
    shift = np.where(mean == mean0, 0.0, mean - mean0)  # 0 for an infinite mean too (not inf - inf = NaN)
    var = np.maximum(axis_dots(centred, centred, axes) / n - shift * shift, 0.0)
    rstd = 1 / np.sqrt(var + eps)
    return centred, mean, var, rstd


def _normalized_backward(dx_hat: np.ndarray, centred: np.ndarray, rstd: np.ndarray,
                         axes: Axes) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx of ``x_hat = (x - mean(x)) * rstd`` given ``dx_hat``, with the statistics over ``axes``::

        dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))

    (the first mean is the path through ``mean``, the second through ``var``), computed from ``centred = x - mean``
    as torch's decompositions do: ``x_hat * mean(dx_hat * x_hat) = centred * rstd^2 * mean(dx_hat * centred)``.
    A statistic over one value has ``centred = 0`` and ``dx_hat - mean(dx_hat) = 0``: its dx is exactly 0 (NaN for
    a non-finite input or gradient).

    Returns dx and the two sums, ``sum(dx_hat)`` and ``sum(dx_hat * centred)`` (x's dtype, axes kept), which are
    BatchNorm's ``dbias`` and ``dweight / rstd``.
    """
    n = math.prod(centred.shape[a] for a in axes)
    dtype = dx_hat.dtype
    sum_dx_hat = axis_sums(dx_hat, axes)
    sum_dx_hat_centred = axis_dots(dx_hat, centred, axes)
    dx = dx_hat - sum_dx_hat / n
    dx -= centred * (rstd * rstd * sum_dx_hat_centred / n).astype(dtype)  # the factor in float64, rounded once
    dx *= rstd.astype(dtype)
    return dx, sum_dx_hat, sum_dx_hat_centred


def _per_channel(group_values: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """GroupNorm's per-(sample, group) values ``(N, G, 1)`` given to each channel of its group: ``(N, C, 1, ...)``,
    broadcasting against an input of ``shape``."""
    n, groups = group_values.shape[:2]
    return np.repeat(group_values.reshape(n, groups), shape[1] // groups, axis=1).reshape(
        shape[:2] + (1,) * (len(shape) - 2))


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
) -> Tuple[np.ndarray, NormCache]:
    """Batch normalisation over every dim but 1 (torch's ``F.batch_norm``)::

        x_hat = (x - mean) / sqrt(var + eps),   y = x_hat * weight + bias

    with ``mean``, ``var`` (biased) per channel over the batch and every trailing dim in training, the running
    statistics in eval.

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
    cache : NormCache
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
    axes = (0,) + tuple(range(2, x.ndim))  # every dim but the channels
    if x.size == 0:  # no statistics: backward returns an empty dx and zero parameter gradients
        return np.empty_like(x), NormCache(np.empty_like(x), None, weight, bias is not None, axes, axes, x.shape)
    for _, v in vectors:
        check_same_dtype(x, v, "batch_norm")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("batch_norm in eval mode needs running_mean and running_var")
    x = np.ascontiguousarray(x)  # so are the output and the cache, whatever x's layout
    bshape = (channels,) + (1,) * (x.ndim - 2)  # a (C,) vector broadcast against (N, C, *)
    weight_b = None if weight is None else weight.reshape(bshape)
    with unbuffered(x.size):
        if training:
            # the mean accumulated in float64, as torch's CPU BatchNorm does: a constant float32 channel then has
            # exactly its value as mean, so its x - mean and x_hat are exactly 0
            centred, mean, var, rstd = _normalize(x, axes, eps, accumulate=np.float64)
            # torch's update: momentum * batch_stat + (1 - momentum) * running, with the unbiased variance;
            # computed in float64 and rounded into the buffers
            n = x.size // channels
            if running_mean is not None:
                running_mean[...] = momentum * mean.reshape(-1) + (1 - momentum) * running_mean
            if running_var is not None:
                running_var[...] = momentum * (var.reshape(-1) * n / (n - 1)) + (1 - momentum) * running_var
        else:  # the running statistics are constants
            centred = x - running_mean.reshape(bshape)
            rstd = 1 / np.sqrt(running_var.astype(np.float64).reshape(bshape) + eps)
        # y = x_hat * weight + bias = (x - mean) * (rstd * weight) + bias, the per-channel factor formed first
        out = centred * (rstd if weight is None else rstd * weight_b).astype(x.dtype)
        if bias is not None:
            out += bias.reshape(bshape)
    cache = NormCache(centred, rstd, weight_b, bias is not None, axes if training else None, axes,
                      x.shape)
    return out, cache


@_nonfinite_quietly
def batch_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`batch_norm_forward`, with ``dx_hat = dout * weight`` and sums over every dim but 1:

    Training: ``dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))``, means per channel.
    Eval: ``dx = dx_hat * rstd`` (the statistics are constants).
    ``dweight = sum(dout * x_hat) = sum(dout * (x - mean)) * rstd``, ``dbias = sum(dout)``.

    Returns
    -------
    dx : ndarray, shape of ``dout``
    dweight, dbias : ndarray, shape (C,), or None when absent
    """
    if dout.size == 0:  # zero gradients of the parameters' own size (an empty input may have other channels)
        channels = cache.shape[1] if cache.weight is None else cache.weight.shape[0]
        zeros = np.zeros(channels, dout.dtype)
        return (np.empty_like(dout), zeros if cache.weight is not None else None,
                zeros.copy() if cache.has_bias else None)
    centred, rstd, axes, weight = cache.centred, cache.rstd, cache.param_axes, cache.weight
    with unbuffered(dout.size):
        # the weight is constant over each channel's statistics, so it factors out of the formula: dx is computed
        # with dout for dx_hat and multiplied by the weight last, as torch's kernel does (its NaN/inf pattern too)
        if cache.stat_axes is not None:
            dx, sum_dout, sum_dout_centred = _normalized_backward(dout, centred, rstd, cache.stat_axes)
        else:  # eval: the statistics are constants
            dx = dout * rstd.astype(dout.dtype)
            sum_dout, sum_dout_centred = axis_sums(dout, axes), axis_dots(dout, centred, axes)
        if weight is not None:
            dx *= weight
    # dweight = sum(dout * x_hat) = sum(dout * centred) * rstd: summed in dout's dtype, as torch does (a sum that
    # overflows there, times rstd = 0, is torch's NaN)
    dweight = None if weight is None else (sum_dout_centred * rstd).reshape(-1).astype(dout.dtype)
    dbias = sum_dout.reshape(-1) if cache.has_bias else None
    return np.ascontiguousarray(dx), dweight, dbias


# ---- LayerNorm -----------------------------------------------------------------------------------
@_nonfinite_quietly
def layer_norm_forward(
    x: np.ndarray,
    normalized_shape: Sequence[int],
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, NormCache]:
    """Layer normalisation over the trailing ``len(normalized_shape)`` dims, per sample::

        x_hat = (x - mean) / sqrt(var + eps),   y = x_hat * weight + bias

    Parameters
    ----------
    x : ndarray, shape (*, *normalized_shape)
    normalized_shape : tuple of int
    weight, bias : ndarray, shape normalized_shape, optional

    Returns
    -------
    out : ndarray, shape of ``x``
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
    axes = tuple(range(x.ndim - k, x.ndim))  # the normalized dims
    x = np.ascontiguousarray(x)  # so are the output and the cache, whatever x's layout
    with unbuffered(x.size):
        centred, mean, _, rstd = _normalize(x, axes, eps)
        # torch's LayerNorm moments (a Welford cascade in x's dtype) are NaN where mean^2 overflows that dtype
        rstd[np.isinf(mean.astype(x.dtype) ** 2) & np.isfinite(mean)] = np.nan
        out = centred * rstd.astype(x.dtype)  # x_hat
        if weight is not None:
            out *= weight
        if bias is not None:
            out += bias
    return out, NormCache(centred, rstd, weight, bias is not None, axes, tuple(range(x.ndim - k)),
                          x.shape)


@_nonfinite_quietly
def layer_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`layer_norm_forward`, with ``dx_hat = dout * weight``:

    ``dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))``, means per sample over the normalized
    dims; ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over the leading dims (normalized_shape each).
    """
    centred, rstd, axes = cache.centred, cache.rstd, cache.param_axes
    with unbuffered(dout.size):
        dx_hat = dout if cache.weight is None else dout * cache.weight
        dx, _, _ = _normalized_backward(dx_hat, centred, rstd, cache.stat_axes)
        dweight = None if cache.weight is None else axis_sums(dout * (centred * rstd.astype(dout.dtype)), axes)
    dbias = axis_sums(dout, axes) if cache.has_bias else None
    normalized = dout.shape[len(axes):]
    return (np.ascontiguousarray(dx), None if dweight is None else dweight.astype(dout.dtype).reshape(normalized),
            None if dbias is None else dbias.astype(dout.dtype).reshape(normalized))


# ---- GroupNorm -----------------------------------------------------------------------------------
@_nonfinite_quietly
def group_norm_forward(
    x: np.ndarray,
    num_groups: int,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, NormCache]:
    """Group normalisation: statistics per (sample, group of ``C / G`` channels), affine per channel::

        x_hat = (x - mean) / sqrt(var + eps),   y = x_hat * weight + bias

    with ``x`` viewed as ``(N, G, C / G * prod(*))`` and the statistics over its last axis.

    Parameters
    ----------
    x : ndarray, shape (N, C, *)
    num_groups : int, dividing C
    weight, bias : ndarray, shape (C,), optional

    Returns
    -------
    out : ndarray, shape of ``x``
    cache : NormCache
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
    x = np.ascontiguousarray(x)  # so are the output and the cache, whatever x's layout
    grouped = (n, num_groups, channels // num_groups * math.prod(x.shape[2:]))  # one row per (sample, group)
    bshape = (channels,) + (1,) * (x.ndim - 2)  # a (C,) vector broadcast against (N, C, *)
    weight_b = None if weight is None else weight.reshape(bshape)
    with unbuffered(x.size):
        centred, mean, _, rstd = _normalize(x.reshape(grouped), (2,), eps)  # no values per group: NaN, as torch
        # torch's GroupNorm moments (a Welford cascade in x's dtype) are NaN where mean^2 overflows that dtype
        rstd[np.isinf(mean.astype(x.dtype) ** 2) & np.isfinite(mean)] = np.nan
        centred = centred.reshape(x.shape)
        # y = x_hat * weight + bias = (x - mean) * (rstd * weight) + bias, the per-(sample, channel) factor first
        rstd_c = _per_channel(rstd, x.shape)
        out = centred * (rstd_c if weight is None else rstd_c * weight_b).astype(x.dtype)
        if bias is not None:
            out += bias.reshape(bshape)
    return out, NormCache(centred, rstd, weight_b, bias is not None, (2,),
                          (0,) + tuple(range(2, x.ndim)), x.shape)


@_nonfinite_quietly
def group_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`group_norm_forward`, ``dx_hat = dout * weight``:

    ``dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))``, means per (sample, group) — over the
    last axis of the ``(N, G, -1)`` view; ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over every dim
    but 1.
    """
    centred, rstd, axes = cache.centred, cache.rstd, cache.param_axes
    n, groups = rstd.shape[:2]
    grouped = (n, groups, math.prod(dout.shape[1:]) // groups)  # one row per (sample, group)
    with unbuffered(dout.size):
        dx_hat = dout if cache.weight is None else dout * cache.weight
        dx, _, _ = _normalized_backward(dx_hat.reshape(grouped), centred.reshape(grouped), rstd, cache.stat_axes)
        # per (sample, channel) sums first, then scaled by their group's rstd: NaN for groups of no values, as torch
        trailing = tuple(range(2, dout.ndim))
        dweight = None if cache.weight is None else axis_sums(
            axis_dots(dout, centred, trailing) * _per_channel(rstd, dout.shape), (0,))
    dbias = axis_sums(dout, axes) if cache.has_bias else None
    return (np.ascontiguousarray(dx.reshape(dout.shape)),
            None if dweight is None else dweight.astype(dout.dtype).reshape(-1),
            None if dbias is None else dbias.astype(dout.dtype).reshape(-1))
