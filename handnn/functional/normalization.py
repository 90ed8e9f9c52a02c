"""BatchNorm, LayerNorm and GroupNorm: forward/backward pairs.

All three normalise ``x_hat = (x - mean) / sqrt(var + eps)`` with the *biased* variance and eps inside
the square root, then apply a per-feature affine map ``y = x_hat * weight + bias``. Their training-mode
backward passes share one fused formula, ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with
``g = dout * weight`` (seeds 000 and 002 derive it from the computational graph), computed with per-channel or
per-row sums (``np.einsum``: no input-sized temporaries for the products) and in place on handnn-owned arrays.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._validation import check_array, check_same_dtype

Grads = Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


class NormCache(NamedTuple):
    """What every normalisation backward needs.

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


def _affine(x_hat: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray]) -> np.ndarray:
    out = x_hat * weight if weight is not None else x_hat.copy()
    if bias is not None:
        out += bias
    return out


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


def channel_sum(x: np.ndarray, dtype=None) -> np.ndarray:
    """Sum over every dim but 1 of an (N, C, *) array: shape (C,). Contiguous last-axis sums first (fast)."""
    x3 = _per_channel(x)
    if x3.shape[2] == 1:
        return x3[:, :, 0].sum(axis=0, dtype=dtype)
    return x3.sum(axis=2, dtype=dtype).sum(axis=0)


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum(a * b)`` over every dim but 1, without the product's temporary: shape (C,).

    ``np.einsum`` accumulates in SIMD partial sums (float32: ~2e-7 relative on 1e6 terms, measured).
    """
    if a.ndim == 2:
        return np.einsum("nc,nc->c", a, b)
    return np.einsum("ncl,ncl->c", _per_channel(a), _per_channel(b))


def _rows_normalized(x2: np.ndarray, eps: float) -> Tuple[np.ndarray, np.ndarray]:
    """Normalise each row of a 2-d (M, K) array: ``x_hat`` (a new array) and ``inv_std`` of shape (M, 1)."""
    mean = x2.mean(axis=1, keepdims=True)
    x_hat = x2 - mean
    var = np.einsum("mk,mk->m", x_hat, x_hat)[:, None] / x2.shape[1]
    inv_std = 1 / np.sqrt(var + eps)
    x_hat *= inv_std
    return x_hat, inv_std


def _rows_backward(g: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """Row-wise fused backward, in place on ``g`` (a handnn-owned (M, K) array): returns
    ``inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with means along each row."""
    k = g.shape[1]
    mean_g = g.sum(axis=1, keepdims=True) / k
    mean_gx = np.einsum("mk,mk->m", g, x_hat)[:, None] / k
    g -= mean_g
    g -= x_hat * mean_gx
    g *= inv_std
    return g


# ---- BatchNorm -----------------------------------------------------------------------------------
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
    cache : NormCache
    """
    # torch's order of checks, so an input with two faults raises what torch raises: shape, batch size,
    # eps, parameter sizes, then the input's dtype and the parameters' dtypes.
    if not isinstance(x, np.ndarray):
        check_array(x, "batch_norm")  # TypeError for anything but an ndarray
    if x.ndim < 2:
        raise ValueError(f"expected an input of shape (N, C, *), but got a {x.ndim}D input")
    if training:
        verify_batch_size(x.shape)
        if eps <= 0:  # eps is printed as given, like torch ("0" for an int)
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif eps < 0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    channels = x.shape[1]
    vectors = (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias))
    for name, v in vectors:
        _check_vector_size(name, v, channels)
    check_array(x, "batch_norm", int_error=NotImplementedError)
    for _, v in vectors:
        check_same_dtype(x, v, "batch_norm")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("batch_norm in eval mode needs running_mean and running_var")

    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, channels) + (1,) * (x.ndim - 2)
    w = weight.reshape(bshape) if weight is not None else None
    b = bias.reshape(bshape) if bias is not None else None
    if x.size == 0:  # torch returns an empty output and leaves the statistics alone
        empty = np.empty_like(x)
        return empty, NormCache(empty, np.ones(bshape, x.dtype), w, b is not None, None, axes)
    if training:
        n = x.size // channels
        # The mean is accumulated in float64 whatever the input dtype, as torch's CPU kernel does
        # (acc_type<float> is double), then rounded to x's dtype: a constant float32 channel then gets its
        # value back as the mean and x_hat == 0 exactly, instead of rounding noise times 1 / sqrt(eps).
        mean64 = channel_sum(x, dtype=np.float64) / n
        x_hat = x - mean64.astype(x.dtype).reshape(bshape)  # the one input-sized array the cache keeps
        var_sum = channel_dot(x_hat, x_hat).astype(np.float64)
        inv_std = (1 / np.sqrt(var_sum / n + eps)).astype(x.dtype).reshape(bshape)
        x_hat *= inv_std
        # torch's update order: momentum * batch_stat + (1 - momentum) * running, unbiased variance; computed
        # in float64 and rounded into the buffers.
        if running_mean is not None:
            running_mean[...] = momentum * mean64 + (1 - momentum) * running_mean
        if running_var is not None:
            running_var[...] = momentum * (var_sum / (n - 1)) + (1 - momentum) * running_var
        stat_axes: Optional[Tuple[int, ...]] = axes
    else:
        inv_std = (1 / np.sqrt(running_var + eps)).reshape(bshape)
        x_hat = x - running_mean.reshape(bshape)
        x_hat *= inv_std
        stat_axes = None
    return _affine(x_hat, w, b), NormCache(x_hat, inv_std, w, b is not None, stat_axes, axes)


def batch_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`batch_norm_forward`.

    Training: ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` with ``g = dout * weight``.
    Eval: ``dx = g * inv_std`` (the statistics are constants).
    ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over every dim but 1.

    Returns
    -------
    dx : ndarray, shape of ``dout``
    dweight, dbias : ndarray, shape (C,), or None when absent
    """
    # With a = weight * inv_std per channel, S1 = sum(dout) (= dbias) and S2 = sum(dout * x_hat) (= dweight):
    # dx = a * (dout - S1 / n - x_hat * S2 / n). One input-sized temporary, five passes over the data.
    sum_dout = channel_sum(dout)
    sum_dout_xhat = channel_dot(dout, cache.x_hat)
    bshape = cache.inv_std.shape
    scale = cache.inv_std if cache.weight is None else cache.weight * cache.inv_std
    if cache.stat_axes is None:  # eval: the statistics are constants
        dx = dout * scale
    else:
        n = dout.size // dout.shape[1]
        dx = cache.x_hat * (sum_dout_xhat / n).astype(dout.dtype).reshape(bshape)
        np.subtract(dout, dx, out=dx)
        dx -= (sum_dout / n).astype(dout.dtype).reshape(bshape)
        dx *= scale
    dweight = sum_dout_xhat if cache.weight is not None else None
    dbias = sum_dout if cache.has_bias else None
    return dx, dweight, dbias


# ---- LayerNorm -----------------------------------------------------------------------------------
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
    for v in (weight, bias):
        check_same_dtype(x, v, "layer_norm")
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*, {', '.join(map(str, shape))}], "
            f"but got input of size{list(x.shape)}"
        )
    check_array(x, "layer_norm", int_error=NotImplementedError)
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None:
            if v.shape != shape:
                raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got "
                                   f"{name} of shape {list(v.shape)} and normalized_shape = {list(shape)}")
    axes = tuple(range(x.ndim - k, x.ndim))
    x_hat, inv_std = _rows_normalized(x.reshape(-1, math.prod(shape)), eps)
    x_hat = x_hat.reshape(x.shape)
    inv_std = inv_std.reshape(x.shape[:x.ndim - k] + (1,) * k)
    param_axes = tuple(range(x.ndim - k))
    return _affine(x_hat, weight, bias), NormCache(x_hat, inv_std, weight, bias is not None, axes, param_axes)


def layer_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`layer_norm_forward`.

    ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` per sample with ``g = dout * weight``;
    ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over the leading dims.
    """
    d = math.prod(dout.shape[len(cache.param_axes):])
    dout2, x_hat2 = dout.reshape(-1, d), cache.x_hat.reshape(-1, d)
    g = dout2 * cache.weight.reshape(d) if cache.weight is not None else dout2.copy()
    dx = _rows_backward(g, x_hat2, cache.inv_std.reshape(-1, 1)).reshape(dout.shape)
    dweight = np.einsum("md,md->d", dout2, x_hat2).reshape(cache.weight.shape) if cache.weight is not None else None
    dbias = dout2.sum(axis=0).reshape(dout.shape[len(cache.param_axes):]) if cache.has_bias else None
    return dx, dweight, dbias


# ---- GroupNorm -----------------------------------------------------------------------------------
def group_norm_forward(
    x: np.ndarray,
    num_groups: int,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, NormCache]:
    """Group normalisation: statistics per (sample, group of ``C / G`` channels), affine per channel.

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
    for v in (weight, bias):
        check_same_dtype(x, v, "group_norm")
    check_array(x, "group_norm", int_error=NotImplementedError)
    x_hat, inv_std = _rows_normalized(x.reshape(n * num_groups, -1), eps)
    x_hat = x_hat.reshape(x.shape)
    inv_std = inv_std.reshape(n, num_groups, 1)
    bshape = (1, channels) + (1,) * (x.ndim - 2)
    w = weight.reshape(bshape) if weight is not None else None
    b = bias.reshape(bshape) if bias is not None else None
    param_axes = (0,) + tuple(range(2, x.ndim))
    return _affine(x_hat, w, b), NormCache(x_hat, inv_std, w, b is not None, (2,), param_axes, num_groups)


def group_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`group_norm_forward`: the LayerNorm formula on the ``(N, G, -1)`` view."""
    n = dout.shape[0]
    g = dout * cache.weight if cache.weight is not None else dout.copy()
    rows = n * cache.groups
    dx = _rows_backward(g.reshape(rows, -1), cache.x_hat.reshape(rows, -1), cache.inv_std.reshape(rows, 1))
    dweight = channel_dot(dout, cache.x_hat) if cache.weight is not None else None
    dbias = channel_sum(dout) if cache.has_bias else None
    return dx.reshape(dout.shape), dweight, dbias
