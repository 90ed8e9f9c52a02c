"""Element-wise activations and (log-)softmax, each a forward/backward pair.

Every ``*_forward`` returns ``(out, cache)``; every ``*_backward(dout, cache)`` returns ``dx``.
Outputs keep the input's dtype.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as np

from .._validation import check_array, normalize_dim
from ._constants import BLOCK, UINT_OF, constant_block
from .special import erf


class ActivationCache(NamedTuple):
    """The array an element-wise backward needs (input or output), the layer's scalar option, and for exact
    GELU the normal CDF of the input (so backward does not evaluate erf again)."""

    saved: np.ndarray
    option: float = 0.0
    extra: Optional[np.ndarray] = None


def select(keep: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``np.where(keep, a, 0)`` (a new array; +0.0 where not kept, NaN in ``a`` dropped where not kept).

    Computed on the bits: ``keep`` as 0/1 integers times ``a`` viewed as unsigned integers, which is ``a``'s bit
    pattern or 0. ``np.where`` on a random boolean mask runs ~10x slower (it has no SIMD loop) and ``a * keep`` in
    floating point would turn a dropped NaN or inf into NaN.
    """
    bits = UINT_OF[a.dtype]
    mask = np.array(keep, dtype=bits)  # an array even for a 0-d keep (whose ``~`` gives a NumPy scalar)
    np.multiply(mask, (a if a.flags.c_contiguous else a.copy()).view(bits), out=mask)  # x * 1 = x, x * 0 = 0: exact integers
    return mask.view(a.dtype)


def relu_values(x: np.ndarray) -> np.ndarray:
    """``np.maximum(x, 0)`` as a new array, 3-4x faster on large inputs.

    NumPy's SIMD ``maximum`` loop runs only for two contiguous arrays: against the scalar 0 it falls back to a
    scalar loop. A C-contiguous ``x`` is therefore taken against a cached zeros buffer, block by block (the same
    values, NaN propagated).
    """
    if not x.flags.c_contiguous or x.size == 0:
        return np.maximum(x, x.dtype.type(0))
    zeros = constant_block(0, x.dtype)
    if x.size <= BLOCK:
        return np.maximum(x, zeros[:x.size].reshape(x.shape))
    out = np.empty_like(x)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for start in range(0, x.size, BLOCK):
        stop = min(start + BLOCK, x.size)
        np.maximum(flat_x[start:stop], zeros[:stop - start], out=flat_out[start:stop])
    return out


# ---- ReLU: y = max(x, 0); dy/dx = 0 where y <= 0 (so 0 at x == 0, as in torch) -----------------------------
def relu_forward(x: np.ndarray) -> Tuple[np.ndarray, ActivationCache]:
    """``y = max(x, 0)``; shape and dtype of ``x`` (NaN propagates as in torch)."""
    # torch computes relu of an integer tensor (handnn does not: TypeError) but rejects bool with RuntimeError.
    if isinstance(x, np.ndarray) and x.dtype == np.bool_:
        raise RuntimeError("relu(): Boolean inputs not supported for relu")
    check_array(x, "relu", int_error=TypeError)
    out = relu_values(x)  # np.maximum propagates NaN, as torch does
    return out, ActivationCache(out)


def relu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = 0`` where ``y <= 0``, else ``dout`` (torch's ``threshold_backward``: NaN passes ``dout``)."""
    return select(~(cache.saved <= 0), dout)


# ---- LeakyReLU: y = x if x > 0 else slope * x ---------------------------------------------------
def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> Tuple[np.ndarray, ActivationCache]:
    """``y = x`` where ``x > 0``, else ``negative_slope * x``."""
    # torch's argument parser rejects a non-number slope with TypeError before looking at the input
    if not isinstance(negative_slope, numbers.Real):
        raise TypeError(
            f"leaky_relu(): argument 'negative_slope' must be Number, not {type(negative_slope).__name__}"
        )
    check_array(x, "leaky_relu", int_error=NotImplementedError)
    slope = x.dtype.type(negative_slope)
    return np.where(x > 0, x, x * slope), ActivationCache(x, negative_slope)


def leaky_relu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else ``negative_slope * dout`` (torch's choice at 0)."""
    slope = dout.dtype.type(cache.option)
    return np.where(cache.saved > 0, dout, dout * slope)


# ---- Sigmoid: y = 1 / (1 + exp(-x)); dy/dx = y (1 - y) -------------------------------------------
def sigmoid_forward(x: np.ndarray) -> Tuple[np.ndarray, ActivationCache]:
    """``y = 1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""
    check_array(x, "sigmoid", int_error=TypeError)
    # exp of a non-positive number never overflows: use e = exp(-|x|) on both branches.
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return out, ActivationCache(out)


def sigmoid_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * y * (1 - y)``."""
    y = cache.saved
    return dout * ((1 - y) * y)


# ---- Tanh: dy/dx = 1 - y^2 ----------------------------------------------------------------------
def tanh_forward(x: np.ndarray) -> Tuple[np.ndarray, ActivationCache]:
    """``y = tanh(x)``."""
    check_array(x, "tanh", int_error=TypeError)
    out = np.tanh(x)
    return out, ActivationCache(out)


def tanh_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * (1 - y^2)``."""
    y = cache.saved
    return dout * (1 - y * y)


# ---- GELU ---------------------------------------------------------------------------------------
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_GELU_TANH_BETA = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5  # sqrt(2 / pi)
_GELU_TANH_KAPPA = 0.044715
_GELU_PDF_ALPHA = (2.0 / math.sqrt(math.pi)) * _SQRT1_2 * 0.5  # 1 / sqrt(2 pi)


def _check_approximate(approximate: str) -> None:
    # torch: a non-str is rejected by the argument parser (TypeError), an unknown str by the kernel (RuntimeError)
    if not isinstance(approximate, str):
        raise TypeError(f"gelu(): argument 'approximate' must be str, not {type(approximate).__name__}")
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh, but got {approximate!r}.")


def gelu_forward(x: np.ndarray, approximate: str = "none") -> Tuple[np.ndarray, ActivationCache]:
    """GELU.

    ``'none'``: ``y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``.
    ``'tanh'``: ``y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    """
    _check_approximate(approximate)
    check_array(x, "gelu", int_error=NotImplementedError)
    if approximate == "tanh":
        inner = _GELU_TANH_BETA * (x + _GELU_TANH_KAPPA * (x * x * x))
        out = 0.5 * x * (1 + np.tanh(inner))
    else:
        cdf = 0.5 * (1 + erf(x * _SQRT1_2))
        return (x * cdf).astype(x.dtype, copy=False), ActivationCache(x, 0.0, cdf)
    return out.astype(x.dtype, copy=False), ActivationCache(x, 1.0)


def gelu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """GELU's derivative (torch's ``GeluBackwardKernel`` formulas).

    ``'none'``: ``Phi(x) + x phi(x)``.
    ``'tanh'``: ``0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``, ``t = tanh(inner)``.
    """
    x = cache.saved
    if cache.option:  # tanh approximation
        x_sq = x * x
        t = np.tanh(_GELU_TANH_BETA * (x + _GELU_TANH_KAPPA * x_sq * x))
        left_derivative = 0.5 * (1 + t)
        right_derivative = 0.5 * x * (1 - t * t) * (_GELU_TANH_BETA * (1 + 3 * _GELU_TANH_KAPPA * x_sq))
        grad = left_derivative + right_derivative
    else:
        cdf = cache.extra if cache.extra is not None else 0.5 * (1 + erf(x * _SQRT1_2))
        pdf = _GELU_PDF_ALPHA * np.exp(-0.5 * x * x)
        grad = cdf + x * pdf
    return (dout * grad).astype(dout.dtype, copy=False)


# ---- Softmax / LogSoftmax ----------------------------------------------------------------------
class SoftmaxCache(NamedTuple):
    """The output (softmax or log-softmax) and the reduced dimension."""

    out: np.ndarray
    dim: int


def implicit_softmax_dim(ndim: int, name: str) -> int:
    """torch's deprecated choice when ``dim`` is None: 0 for 0-, 1- and 3-d inputs, else 1."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_dim(x: np.ndarray, dim: Optional[int], op: str) -> int:
    # torch's argument parser takes Python and NumPy integers but not bool or float (TypeError), before the dtype
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
        raise TypeError(f"{op}(): argument 'dim' must be int, not {type(dim).__name__}")
    check_array(x, op, int_error=NotImplementedError)
    if dim is None:
        dim = implicit_softmax_dim(x.ndim, op)
    return normalize_dim(dim, x.ndim)


def softmax_forward(x: np.ndarray, dim: Optional[int] = None) -> Tuple[np.ndarray, SoftmaxCache]:
    """``y = exp(x - max) / sum(exp(x - max))`` along ``dim``."""
    dim = _softmax_dim(x, dim, "softmax")
    if x.ndim == 0:
        return np.ones_like(x), SoftmaxCache(np.ones_like(x), 0)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    e /= e.sum(axis=dim, keepdims=True)
    return e, SoftmaxCache(e, dim)


def softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """``dx = y * (dout - sum(dout * y, dim))``."""
    y, dim = cache
    if y.ndim == 0:
        return np.zeros_like(dout)
    return y * (dout - (dout * y).sum(axis=dim, keepdims=True))


def log_softmax_forward(x: np.ndarray, dim: Optional[int] = None) -> Tuple[np.ndarray, SoftmaxCache]:
    """``y = x - max - log(sum(exp(x - max)))`` along ``dim``."""
    dim = _softmax_dim(x, dim, "log_softmax")
    if x.ndim == 0:
        return np.zeros_like(x), SoftmaxCache(np.zeros_like(x), 0)
    shifted = x - x.max(axis=dim, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return shifted, SoftmaxCache(shifted, dim)


def log_softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """``dx = dout - exp(y) * sum(dout, dim)``."""
    y, dim = cache
    if y.ndim == 0:
        return np.zeros_like(dout)
    return dout - np.exp(y) * dout.sum(axis=dim, keepdims=True)
