"""BatchNorm, LayerNorm and GroupNorm: forward/backward pairs.

All three normalise ``x_hat = (x - mean) / sqrt(var + eps)`` with the *biased* variance and eps inside
the square root, then apply a per-feature affine map ``y = x_hat * weight + bias``. Their training-mode
backward passes share one fused formula (see :func:`_normalized_backward`).
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


def _normalized_backward(dxhat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes) -> np.ndarray:
    """Fused backward through ``x_hat = (x - mean) * inv_std`` with batch statistics over ``axes``.

    ``dx = inv_std * (dxhat - mean(dxhat) - x_hat * mean(dxhat * x_hat))`` — the one-step form seeds 000
    and 002 derive from the computational graph.
    """
    mean_d = dxhat.mean(axis=axes, keepdims=True)
    mean_dx = (dxhat * x_hat).mean(axis=axes, keepdims=True)
    return inv_std * (dxhat - mean_d - x_hat * mean_dx)


def _param_grads(dout: np.ndarray, cache: NormCache):
    dweight = (dout * cache.x_hat).sum(axis=cache.param_axes) if cache.weight is not None else None
    dbias = dout.sum(axis=cache.param_axes) if cache.has_bias else None
    return dweight, dbias


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
        # The statistics are accumulated in float64 whatever the input dtype, as torch's CPU kernel does
        # (acc_type<float> is double), then rounded to x's dtype: a constant float32 channel then gets its
        # value back as the mean and x_hat == 0 exactly, instead of rounding noise times 1 / sqrt(eps).
        mean64 = x.mean(axis=axes, keepdims=True, dtype=np.float64)
        centred64 = x - mean64
        var_sum = (centred64 * centred64).sum(axis=axes)
        inv_std = (1 / np.sqrt(var_sum.reshape(bshape) / n + eps)).astype(x.dtype)
        x_hat = x - mean64.astype(x.dtype)
        x_hat *= inv_std
        # torch's update order: momentum * batch_stat + (1 - momentum) * running, unbiased variance; computed
        # in float64 and rounded into the buffers.
        if running_mean is not None:
            running_mean[...] = momentum * mean64.reshape(channels) + (1 - momentum) * running_mean
        if running_var is not None:
            running_var[...] = momentum * (var_sum / (n - 1)) + (1 - momentum) * running_var
        stat_axes: Optional[Tuple[int, ...]] = axes
    else:
        inv_std = (1 / np.sqrt(running_var + eps)).reshape(bshape)
        x_hat = (x - running_mean.reshape(bshape)) * inv_std
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
    dxhat = dout * cache.weight if cache.weight is not None else dout
    if cache.stat_axes is None:
        dx = dxhat * cache.inv_std
    else:
        dx = _normalized_backward(dxhat, cache.x_hat, cache.inv_std, cache.stat_axes)
    return (dx, *_param_grads(dout, cache))


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
    mean = x.mean(axis=axes, keepdims=True)
    x_hat = x - mean
    var = (x_hat * x_hat).mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat *= inv_std
    param_axes = tuple(range(x.ndim - k))
    return _affine(x_hat, weight, bias), NormCache(x_hat, inv_std, weight, bias is not None, axes, param_axes)


def layer_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`layer_norm_forward`.

    ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` per sample with ``g = dout * weight``;
    ``dweight = sum(dout * x_hat)``, ``dbias = sum(dout)`` over the leading dims.
    """
    dxhat = dout * cache.weight if cache.weight is not None else dout
    dx = _normalized_backward(dxhat, cache.x_hat, cache.inv_std, cache.stat_axes)
    return (dx, *_param_grads(dout, cache))


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
    grouped = x.reshape(n, num_groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    x_hat = grouped - mean
    inv_std = 1 / np.sqrt((x_hat * x_hat).mean(axis=2, keepdims=True) + eps)
    x_hat *= inv_std
    x_hat = x_hat.reshape(x.shape)
    bshape = (1, channels) + (1,) * (x.ndim - 2)
    w = weight.reshape(bshape) if weight is not None else None
    b = bias.reshape(bshape) if bias is not None else None
    param_axes = (0,) + tuple(range(2, x.ndim))
    return _affine(x_hat, w, b), NormCache(x_hat, inv_std, w, b is not None, (2,), param_axes, num_groups)


def group_norm_backward(dout: np.ndarray, cache: NormCache) -> Grads:
    """Gradients of :func:`group_norm_forward`: the LayerNorm formula on the ``(N, G, -1)`` view."""
    dxhat = dout * cache.weight if cache.weight is not None else dout
    n = dout.shape[0]
    grouped = _normalized_backward(
        dxhat.reshape(n, cache.groups, -1), cache.x_hat.reshape(n, cache.groups, -1), cache.inv_std, (2,)
    )
    return (grouped.reshape(dout.shape), *_param_grads(dout, cache))
