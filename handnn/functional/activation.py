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

from .._validation import NO_KERNEL, check_array, normalize_dim
from ._kernels import ZERO, blocks, row_sums, unbuffered, where_kept
from .special import erf


class ActivationCache(NamedTuple):
    """The array an element-wise backward needs (the input, the output, or for GELU the derivative ``dy/dx``
    itself), the layer's scalar option (GELU: 1.0 for the tanh approximation), and a spare slot."""

    saved: np.ndarray
    option: float = 0.0
    extra: Optional[np.ndarray] = None


def relu_values(x: np.ndarray) -> np.ndarray:
    """``np.maximum(x, 0)``: a new array, NaN propagated."""
    return np.maximum(x, 0)


# ---- ReLU: y = max(x, 0); dy/dx = 0 where y <= 0 (so 0 at x == 0, as in torch) -----------------------------
def relu_forward(x: np.ndarray) -> Tuple[np.ndarray, ActivationCache]:
    """``y = max(x, 0)``; shape and dtype of ``x`` (NaN propagates as in torch)."""
    # torch computes relu of an integer or float16 tensor (handnn does not: TypeError), refuses bool and complex
    check_array(x, "relu", refuses={"bool": RuntimeError, "complex": NotImplementedError})
    out = relu_values(x)  # np.maximum propagates NaN, as torch does
    return out, ActivationCache(out)


def relu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = 0`` where ``y <= 0``, else ``dout`` (torch's ``threshold_backward``: NaN passes ``dout``)."""
    # y = max(x, 0) is never negative, so ~(y <= 0) is y != 0 (one comparison, no negation pass); a NaN
    # output passes dout, as it does in torch (NaN <= 0 is false)
    saved = cache.saved
    keep = np.asarray(np.not_equal(saved, ZERO[saved.dtype]))  # an array even for 0-d input
    return where_kept(keep, dout)


# ---- LeakyReLU: y = x if x > 0 else slope * x ---------------------------------------------------
def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> Tuple[np.ndarray, ActivationCache]:
    """``y = x`` where ``x > 0``, else ``negative_slope * x``."""
    # torch's argument parser rejects a non-number slope with TypeError before looking at the input
    if not isinstance(negative_slope, numbers.Real):
        raise TypeError(
            f"leaky_relu(): argument 'negative_slope' must be Number, not {type(negative_slope).__name__}"
        )
    check_array(x, "leaky_relu", refuses=NO_KERNEL)
    slope = x.dtype.type(negative_slope)
    return np.where(x > 0, x, x * slope), ActivationCache(x, negative_slope)


def leaky_relu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else ``negative_slope * dout`` (torch's choice at 0)."""
    slope = dout.dtype.type(cache.option)
    return np.where(cache.saved > 0, dout, dout * slope)


# ---- Sigmoid: y = 1 / (1 + exp(-x)); dy/dx = y (1 - y) -------------------------------------------
def sigmoid_forward(x: np.ndarray) -> Tuple[np.ndarray, ActivationCache]:
    """``y = 1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""
    check_array(x, "sigmoid", refuses={})  # torch computes on every dtype
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
    check_array(x, "tanh", refuses={})  # torch computes on every dtype
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


# Abramowitz & Stegun 7.1.26: erfc(a) ~ t (a1 + t (a2 + ... + t a5)) exp(-a^2), t = 1 / (1 + p a), a >= 0, absolute
# error below 1.5e-7. Used for float32 inputs only (with the coefficients halved: it gives 1 - Phi directly).
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _normal_tail32(x: np.ndarray, e: np.ndarray, out: np.ndarray) -> None:
    """``out = Phi(x)`` for float32 ``x`` (1-d), given ``e = exp(-x^2 / 2)``; absolute error below 3.1e-7
    (the largest error over 2e6 points in [-10, 10] against the float64 ``erf``).

    ``Phi(x) = 1 - h`` for ``x >= 0`` and ``h`` for ``x < 0``, where ``h = erfc(|x| / sqrt 2) / 2`` comes from
    A&S 7.1.26; the sign is applied on the bits (``0.5 - h`` with the sign of ``x``, plus 0.5), NumPy's ``copysign``
    having no SIMD loop. Every step writes into ``out``: no float64 and no temporaries beyond one block.
    """
    f = np.float32
    t = np.abs(x, out=out)
    t *= f(_AS_P * _SQRT1_2)
    t += f(1)
    np.divide(f(1), t, out=t)  # faster than np.reciprocal
    acc = np.multiply(t, f(0.5 * _AS_A[4]))
    for c in reversed(_AS_A[:4]):
        acc += f(0.5 * c)
        acc *= t
    acc *= e  # h
    np.subtract(f(0.5), acc, out=out)  # 0.5 - h = |Phi(x) - 0.5|
    bits = out.view(np.uint32)
    sign = np.bitwise_and(x.view(np.uint32), np.uint32(0x80000000), out=acc.view(np.uint32))
    np.bitwise_xor(bits, sign, out=bits)
    out += f(0.5)


def _gelu_exact_block(x: np.ndarray, out: np.ndarray, local: np.ndarray) -> None:
    """One block of exact GELU: ``out = x Phi(x)`` and ``local = Phi(x) + x phi(x)`` (torch's derivative)."""
    e = np.multiply(x, x.dtype.type(-0.5))
    e *= x
    np.exp(e, out=e)  # exp(-x^2 / 2): phi(x) / alpha, and (float32) the exponential of A&S's erfc
    if x.dtype == np.float32:
        _normal_tail32(x, e, local)
    else:
        np.multiply(x, _SQRT1_2, out=local)
        local[...] = erf(local)
        local += 1
        local *= 0.5
    np.multiply(x, local, out=out)
    e *= x.dtype.type(_GELU_PDF_ALPHA)
    e *= x
    local += e


def _gelu_tanh_block(x: np.ndarray, out: np.ndarray, local: np.ndarray) -> None:
    """One block of tanh GELU: ``out`` and ``local = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 kappa x^2)``
    with ``t = tanh(sqrt(2/pi) (x + kappa x^3))`` (torch's formulas)."""
    f = x.dtype.type
    x_sq = np.multiply(x, x)
    t = np.multiply(x_sq, f(_GELU_TANH_KAPPA))
    t *= x
    t += x
    t *= f(_GELU_TANH_BETA)
    np.tanh(t, out=t)
    np.multiply(t, f(0.5), out=local)
    local += f(0.5)  # 0.5 (1 + t): the left derivative and, times x, the output
    np.multiply(x, local, out=out)
    t *= t
    np.subtract(f(1), t, out=t)
    t *= x
    x_sq *= f(3 * _GELU_TANH_KAPPA)
    x_sq += f(1)
    x_sq *= f(0.5 * _GELU_TANH_BETA)
    t *= x_sq
    local += t


def gelu_forward(x: np.ndarray, approximate: str = "none") -> Tuple[np.ndarray, ActivationCache]:
    """GELU.

    ``'none'``: ``y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``.
    ``'tanh'``: ``y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    float64 evaluates ``erf`` to a few ulps (:func:`handnn.functional.special.erf`); float32 evaluates ``Phi`` in
    float32 to 3.1e-7 absolute (A&S 7.1.26), as torch's float32 kernel also approximates ``erf``.
    The derivative is computed here too, block by block while the block is in cache, and is all the cache holds
    (one input-sized array): backward is then one multiplication.
    """
    _check_approximate(approximate)
    check_array(x, "gelu", refuses=NO_KERNEL)
    kernel = _gelu_tanh_block if approximate == "tanh" else _gelu_exact_block
    out, local = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
    flat_x = x.reshape(-1)  # a copy only for a non-contiguous x
    flat_out, flat_local = out.reshape(-1), local.reshape(-1)
    # inf and huge inputs overflow x^2 and give inf * 0 on the way to torch's values (NaN derivatives at +-inf):
    # no warnings, as torch gives none
    with np.errstate(over="ignore", invalid="ignore"):
        for start, stop in blocks(x.size):
            kernel(flat_x[start:stop], flat_out[start:stop], flat_local[start:stop])
    return out, ActivationCache(local, 1.0 if approximate == "tanh" else 0.0)


def gelu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * dy/dx``, the derivative computed by the forward pass (torch's ``GeluBackwardKernel``):

    ``'none'``: ``Phi(x) + x phi(x)``.
    ``'tanh'``: ``0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``, ``t = tanh(inner)``.
    """
    return np.multiply(dout, cache.saved)


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
    check_array(x, op, refuses=NO_KERNEL)
    if dim is None:
        dim = implicit_softmax_dim(x.ndim, op)
    return normalize_dim(dim, x.ndim)


def _rows(x: np.ndarray, dim: int) -> Optional[np.ndarray]:
    """``x`` as (rows, classes) when ``dim`` is its last axis and it is C-contiguous (the fast path), else None."""
    if dim != x.ndim - 1 or not x.flags.c_contiguous or x.size == 0:
        return None
    return x.reshape(-1, x.shape[-1])


def softmax_forward(x: np.ndarray, dim: Optional[int] = None) -> Tuple[np.ndarray, SoftmaxCache]:
    """``y = exp(x - max) / sum(exp(x - max))`` along ``dim``.

    A row holding +inf gives NaN (inf - inf), as in torch; an empty input gives an empty output.
    """
    dim = _softmax_dim(x, dim, "softmax")
    if x.ndim == 0:
        return np.ones_like(x), SoftmaxCache(np.ones_like(x), 0)
    if x.size == 0:
        return np.empty_like(x), SoftmaxCache(np.empty_like(x), dim)
    rows = _rows(x, dim)
    with np.errstate(invalid="ignore"):  # inf - inf = NaN, torch's result
        if rows is None:
            e = np.exp(x - x.max(axis=dim, keepdims=True))
            e /= e.sum(axis=dim, keepdims=True)
            return e, SoftmaxCache(e, dim)
        with unbuffered(x.size):  # row-wise broadcasting, sums by BLAS (see ._kernels)
            e = np.subtract(rows, rows.max(axis=1, keepdims=True))
            np.exp(e, out=e)
            e /= row_sums(e)[:, None]
    e = e.reshape(x.shape)
    return e, SoftmaxCache(e, dim)


def softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """``dx = y * (dout - sum(dout * y, dim))``."""
    y, dim = cache
    if y.ndim == 0:
        return np.zeros_like(dout)
    rows, dout_rows = _rows(y, dim), _rows(dout, dim)
    with np.errstate(invalid="ignore"):  # a non-finite dout: inf - inf = NaN, as in torch
        if rows is None or dout_rows is None:
            return y * (dout - (dout * y).sum(axis=dim, keepdims=True))
        dx = np.multiply(dout_rows, rows)
        dot = row_sums(dx)[:, None]
        with unbuffered(dx.size):
            np.subtract(dout_rows, dot, out=dx)
        dx *= rows
    return dx.reshape(dout.shape)


def log_softmax_forward(x: np.ndarray, dim: Optional[int] = None) -> Tuple[np.ndarray, SoftmaxCache]:
    """``y = x - max - log(sum(exp(x - max)))`` along ``dim``.

    A row holding +inf gives NaN (inf - inf), as in torch; an empty input gives an empty output.
    """
    dim = _softmax_dim(x, dim, "log_softmax")
    if x.ndim == 0:
        return np.zeros_like(x), SoftmaxCache(np.zeros_like(x), 0)
    if x.size == 0:
        return np.empty_like(x), SoftmaxCache(np.empty_like(x), dim)
    rows = _rows(x, dim)
    with np.errstate(invalid="ignore"):  # inf - inf = NaN, torch's result
        if rows is None:
            shifted = x - x.max(axis=dim, keepdims=True)
            shifted -= np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
            return shifted, SoftmaxCache(shifted, dim)
        with unbuffered(x.size):
            shifted = np.subtract(rows, rows.max(axis=1, keepdims=True))
        lse = np.log(row_sums(np.exp(shifted)))[:, None]
        with unbuffered(x.size):
            shifted -= lse
    shifted = shifted.reshape(x.shape)
    return shifted, SoftmaxCache(shifted, dim)


def log_softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """``dx = dout - exp(y) * sum(dout, dim)``."""
    y, dim = cache
    if y.ndim == 0:
        return np.zeros_like(dout)
    rows, dout_rows = _rows(y, dim), _rows(dout, dim)
    with np.errstate(invalid="ignore"):  # a non-finite dout: inf - inf, inf * 0 = NaN, as in torch
        if rows is None or dout_rows is None:
            return dout - np.exp(y) * dout.sum(axis=dim, keepdims=True)
        dx = np.exp(rows)
        with unbuffered(dx.size):
            dx *= row_sums(dout_rows)[:, None]
        np.subtract(dout_rows, dx, out=dx)
    return dx.reshape(dout.shape)
