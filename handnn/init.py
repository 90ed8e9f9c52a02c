"""Parameter initialisers with ``torch.nn.init``'s names, formulas, fan rules and errors.

Every function fills its target **in place** and returns it: the target is a :class:`~handnn.nn.Parameter`
(its ``.data`` array is overwritten element by element, so the array object — and every reference to it, such
as an optimizer's — stays the same) or a floating NumPy array (a view works too: only the viewed elements
change). The dtype is kept. No other array is modified.

Random initialisers take a keyword-only ``rng`` where torch takes ``generator``: a ``numpy.random.Generator``
(or a torch-style generator, see :mod:`handnn._random`). ``rng=None`` draws from a fresh, OS-seeded
``np.random.default_rng()``: nondeterministic, and never NumPy's global state. Pass a generator for
reproducible results.

Fans follow torch's convention for a weight of shape ``(out, in, *kernel)`` (``Linear`` stores ``(out, in)``)::

    fan_in  = size(1) * prod(size[2:])
    fan_out = size(0) * prod(size[2:])

A CS231n-style weight stored as ``(D_in, D_out)`` must be passed transposed (``kaiming_normal_(w.T)``).

>>> import numpy as np
>>> from handnn import init
>>> w = np.empty((3, 5))
>>> init.kaiming_uniform_(w, a=5 ** 0.5, rng=np.random.default_rng(0)) is w
True
>>> bool(np.all(np.abs(w) <= 1 / np.sqrt(5)))
True
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Literal, Optional, Tuple, TypeVar, Union

import numpy as np

from . import _random
from ._random import RandomSource
from .nn.parameter import Parameter

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
]

Tensor = TypeVar("Tensor", Parameter, np.ndarray)
Nonlinearity = Literal["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                       "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]
FanMode = Literal["fan_in", "fan_out"]

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


# ---------------------------------------------------------------------------------------------- helpers
def _array_of(tensor: Union[Parameter, np.ndarray], op: str) -> np.ndarray:
    """The array to overwrite: a Parameter's ``.data``, or the ndarray itself."""
    if isinstance(tensor, Parameter):
        return tensor.data
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"{op}(): argument 'tensor' must be a Parameter or numpy.ndarray, not {type(tensor).__name__}")


def _fill_uniform(tensor: Tensor, low: float, high: float, rng: Optional[RandomSource], op: str) -> Tensor:
    array = _array_of(tensor, op)
    array[...] = _random.uniform(_random.resolve(rng), low, high, array.shape, array.dtype)
    return tensor


def _fill_normal(tensor: Tensor, mean: float, std: float, rng: Optional[RandomSource], op: str) -> Tensor:
    array = _array_of(tensor, op)
    array[...] = _random.normal(_random.resolve(rng), mean, std, array.shape, array.dtype)
    return tensor


def _warn_if_empty(array: np.ndarray) -> bool:
    """torch's kaiming initialisers skip (with a warning) tensors that have a zero-length dimension."""
    if 0 in array.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return True
    return False


# ---------------------------------------------------------------------------------------------- gain and fans
def calculate_gain(nonlinearity: Nonlinearity, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    ============================  =========================================
    nonlinearity                  gain
    ============================  =========================================
    linear, conv*, sigmoid        1
    tanh                          5/3
    relu                          sqrt(2)
    leaky_relu                    sqrt(2 / (1 + negative_slope^2))
    selu                          3/4
    ============================  =========================================

    Parameters
    ----------
    nonlinearity : str
        The ``nn.functional`` name.
    param : int or float, optional
        ``leaky_relu``'s negative slope (0.01 when None); ignored by the others.

    Raises
    ------
    ValueError
        ``Unsupported nonlinearity {name}``, or ``negative_slope {param} not a valid number`` when ``param`` is
        not an int or float (``bool`` is refused, as are NumPy scalars other than ``np.float64``).
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4  # torch's empirical value (pytorch/pytorch#50664)
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Union[Parameter, np.ndarray]) -> Tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``.

    ``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``.

    Raises
    ------
    ValueError
        For fewer than 2 dimensions.
    """
    shape = np.shape(tensor.data if isinstance(tensor, Parameter) else tensor)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive_field_size = math.prod(shape[2:])
    return shape[1] * receptive_field_size, shape[0] * receptive_field_size


def _calculate_correct_fan(tensor: Union[Parameter, np.ndarray], mode: FanMode) -> int:
    """``fan_in`` or ``fan_out`` by ``mode`` (case-insensitive).

    Raises
    ------
    ValueError
        ``Mode {mode} not supported, please use one of ['fan_in', 'fan_out']``.
    """
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


# ---------------------------------------------------------------------------------------------- plain fills
def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, *, rng: Optional[RandomSource] = None) -> Tensor:
    """Fill with i.i.d. draws from ``U[a, b)``; returns ``tensor``.

    Raises
    ------
    RuntimeError
        ``a > b``, or a bound (or ``b - a``) not representable in the dtype, as torch's ``uniform_``.
    NotImplementedError
        For a non-floating array.
    """
    return _fill_uniform(tensor, a, b, rng, "uniform_")


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, *,
            rng: Optional[RandomSource] = None) -> Tensor:
    """Fill with i.i.d. draws from ``N(mean, std^2)``; returns ``tensor``.

    Raises
    ------
    RuntimeError
        ``std < 0`` (or NaN), as torch's ``normal_``.
    NotImplementedError
        For a non-floating array.
    """
    return _fill_normal(tensor, mean, std, rng, "normal_")


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val`` (any dtype; ``val`` is converted like NumPy assignment, e.g. truncated for ints)."""
    array = _array_of(tensor, "constant_")
    if not isinstance(val, (numbers.Number, np.number, np.bool_)):
        raise TypeError(f"constant_(): argument 'val' must be a number, not {type(val).__name__}")
    array[...] = val
    return tensor


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(tensor, 0.0)


# ---------------------------------------------------------------------------------------------- scaled by fans
def xavier_uniform_(tensor: Tensor, gain: float = 1.0, *, rng: Optional[RandomSource] = None) -> Tensor:
    """Glorot uniform: ``U(-bound, bound)`` with ``bound = gain * sqrt(6 / (fan_in + fan_out))``.

    Computed as torch does, ``sqrt(3) * gain * sqrt(2 / (fan_in + fan_out))``. A negative ``gain`` makes
    ``-bound > bound``: torch's ``RuntimeError``; ``fan_in + fan_out = 0`` raises ``ZeroDivisionError``, as torch.
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return _fill_uniform(tensor, -bound, bound, rng, "xavier_uniform_")


def xavier_normal_(tensor: Tensor, gain: float = 1.0, *, rng: Optional[RandomSource] = None) -> Tensor:
    """Glorot normal: ``N(0, std^2)`` with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _fill_normal(tensor, 0.0, std, rng, "xavier_normal_")


def _kaiming_std(tensor: Tensor, a: float, mode: FanMode, nonlinearity: Nonlinearity) -> float:
    """``gain / sqrt(fan)``: fan by ``mode``, gain by ``calculate_gain(nonlinearity, a)`` (in torch's order)."""
    fan = _calculate_correct_fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    return gain / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: FanMode = "fan_in",
                     nonlinearity: Nonlinearity = "leaky_relu", *, rng: Optional[RandomSource] = None) -> Tensor:
    """He uniform: ``U(-bound, bound)`` with ``bound = sqrt(3) * gain / sqrt(fan_mode)``.

    Parameters
    ----------
    tensor : Parameter or ndarray, shape ``(out, in, *kernel)``
    a : float
        Negative slope of the rectifier after this layer (used by ``'leaky_relu'`` only).
        ``nn.Linear``'s default weight is ``kaiming_uniform_(w, a=sqrt(5))``: ``bound = 1 / sqrt(in)``.
    mode : {'fan_in', 'fan_out'}
    nonlinearity : str
        See :func:`calculate_gain`.
    rng : numpy.random.Generator, keyword-only

    A tensor with a zero-length dimension is left alone with torch's warning
    ``Initializing zero-element tensors is a no-op``.
    """
    array = _array_of(tensor, "kaiming_uniform_")
    if _warn_if_empty(array):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return _fill_uniform(tensor, -bound, bound, rng, "kaiming_uniform_")


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: FanMode = "fan_in",
                    nonlinearity: Nonlinearity = "leaky_relu", *, rng: Optional[RandomSource] = None) -> Tensor:
    """He normal: ``N(0, std^2)`` with ``std = gain / sqrt(fan_mode)``; arguments as :func:`kaiming_uniform_`."""
    array = _array_of(tensor, "kaiming_normal_")
    if _warn_if_empty(array):
        return tensor
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return _fill_normal(tensor, 0.0, std, rng, "kaiming_normal_")


# ---------------------------------------------------------------------------------------------- truncated normal
def _norm_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


def _trunc_normal_by_rejection(rng: RandomSource, mean: float, std: float, a: float, b: float,
                               shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Redraw every element outside ``[a, b]`` from ``N(mean, std^2)`` until none is (torch, when P([a, b]) > 0.3).

    Each round draws a full-size array, as torch does, so a torch-stream generator would see torch's draws.
    """
    result = _random.normal(rng, mean, std, shape, dtype)
    low, high = dtype.type(a), dtype.type(b)  # torch compares with the bounds rounded to the tensor's dtype
    while True:
        outside = (result < low) | (result > high)
        if not outside.any():
            return result
        result = np.where(outside, _random.normal(rng, mean, std, shape, dtype), result)


def _rejected(candidates: np.ndarray, rng: RandomSource, mean: float, std: float, log_peak: float) -> np.ndarray:
    """Accept-reject step against the envelope ``exp(log_peak)``: reject where ``log u > log pdf - log_peak``."""
    log_ratio = -0.5 * ((candidates - mean) / std) ** 2 - log_peak  # in the array's dtype, as torch
    with np.errstate(divide="ignore"):  # log(0) = -inf: always accepted
        log_u = np.log(_random.uniform(rng, 0.0, 1.0, candidates.shape, candidates.dtype))
    return log_u > log_ratio


def _trunc_normal_by_uniform_proposals(rng: RandomSource, mean: float, std: float, a: float, b: float,
                                       shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Uniform proposals on ``[a, b]`` accepted with probability ``pdf(x) / pdf(mode)`` (torch, when
    P([a, b]) <= 0.3: a narrow or far-out interval, where normal proposals would rarely land)."""
    mode = max(a, min(mean, b))
    log_peak = -0.5 * ((mode - mean) / std) ** 2
    result = _random.uniform(rng, a, b, shape, dtype)
    pending = _rejected(result, rng, mean, std, log_peak)
    while pending.any():
        candidates = _random.uniform(rng, a, b, shape, dtype)
        result = np.where(pending, candidates, result)
        pending &= _rejected(candidates, rng, mean, std, log_peak)
    return result


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, *,
                  rng: Optional[RandomSource] = None) -> Tensor:
    """Fill with draws from ``N(mean, std^2)`` truncated to ``[a, b]``; returns ``tensor``.

    torch 2.13's algorithm (earlier releases used the inverse CDF, ``erfinv`` of a uniform, which loses accuracy
    far in the tails), so a torch-stream generator reproduces torch's values exactly: with ``p = Phi((b - mean) / std) - Phi((a - mean) / std)``,

    - ``p > 0.3``: draw from the normal and redraw the elements outside ``[a, b]``;
    - otherwise: uniform proposals on ``[a, b]``, accepted with probability
      ``exp(-((x - mean)^2 - (m - mean)^2) / (2 std^2))``, ``m`` the point of ``[a, b]`` nearest ``mean``.

    Both are exact samplers of the truncated normal. Warns, as torch, when ``mean`` is more than ``2 std`` outside
    ``[a, b]``; ``std = 0`` raises ``ZeroDivisionError`` and ``a > b`` torch's ``RuntimeError``.
    """
    array = _array_of(tensor, "trunc_normal_")
    if (mean < a - 2 * std) or (mean > b + 2 * std):
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
                      "The distribution of values may be incorrect.", UserWarning, stacklevel=2)
    rng = _random.resolve(rng)
    p = _norm_cdf((b - mean) / std) - _norm_cdf((a - mean) / std)
    sampler = _trunc_normal_by_rejection if p > 0.3 else _trunc_normal_by_uniform_proposals
    array[...] = sampler(rng, mean, std, a, b, array.shape, array.dtype)
    return tensor


# ---------------------------------------------------------------------------------------------- orthogonal
def orthogonal_(tensor: Tensor, gain: float = 1, *, rng: Optional[RandomSource] = None) -> Tensor:
    """Fill with a (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013); trailing dimensions flattened.

    As torch: ``G ~ N(0, 1)`` of shape ``(rows, cols)`` with ``rows = size(0)``, ``cols = numel / rows``
    (transposed when ``rows < cols``), ``G = QR``, ``Q <- Q diag(sign(diag R))`` — the sign fix that makes ``Q``
    Haar-distributed (Mezzadri 2007) — transposed back, so ``Q^T Q = gain^2 I`` (``rows >= cols``) or
    ``Q Q^T = gain^2 I`` (``rows < cols``). The draws are in the tensor's dtype; the QR is computed in float64
    (torch uses the tensor's dtype: same distribution, better orthogonality in float32).

    Raises
    ------
    ValueError
        ``Only tensors with 2 or more dimensions are supported``. An empty tensor is left alone.
    """
    array = _array_of(tensor, "orthogonal_")
    if array.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if array.size == 0:
        return tensor
    rows = array.shape[0]
    cols = array.size // rows
    flattened = _random.normal(_random.resolve(rng), 0.0, 1.0, (rows, cols), array.dtype).astype(np.float64)
    if rows < cols:
        flattened = flattened.T
    q, r = np.linalg.qr(flattened)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    array[...] = q.reshape(array.shape)
    array *= gain  # in the array's dtype, as torch's mul_
    return tensor
