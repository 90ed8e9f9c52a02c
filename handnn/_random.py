"""The one place where handnn draws random numbers for initialisers.

Every draw goes through :func:`uniform` or :func:`normal`, which take the generator explicitly (no global RNG).
Two kinds of generator are accepted:

- a ``numpy.random.Generator`` (the default kind). Values are drawn in float64 and rounded once to the target
  dtype, so float32 and float64 arrays filled from the same seed hold the same numbers up to that rounding.
- a *torch-style* generator: any object with in-place methods ``uniform_(out, low, high)`` and
  ``normal_(out, mean, std)`` filling a fresh ``np.empty(shape, dtype)`` — the hook for a generator that
  reproduces torch's random stream. It is dispatched here and nowhere else.

Before drawing, the arguments are checked as torch's kernels check them (same exception class and message):
floating dtype, finite uniform bounds with ``low <= high`` and a representable range, ``std >= 0``.
"""
from __future__ import annotations

from typing import Optional, Protocol, Tuple, Union, runtime_checkable

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_C_NAMES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}  # torch's names in messages


@runtime_checkable
class TorchStyleGenerator(Protocol):
    """A generator that fills arrays in place, as ``torch.Tensor.uniform_`` / ``normal_`` do."""

    def uniform_(self, out: np.ndarray, low: float, high: float) -> None: ...

    def normal_(self, out: np.ndarray, mean: float, std: float) -> None: ...


RandomSource = Union[np.random.Generator, TorchStyleGenerator]


def resolve(rng: Optional[RandomSource]) -> RandomSource:
    """The generator to draw from: ``rng`` itself, or a fresh, OS-seeded ``default_rng()`` when it is None.

    ``None`` therefore means *nondeterministic*, never NumPy's global state.

    Raises
    ------
    TypeError
        If ``rng`` is neither None, a ``numpy.random.Generator``, nor a torch-style generator.
    """
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (np.random.Generator, TorchStyleGenerator)):
        return rng
    raise TypeError(f"rng must be a numpy.random.Generator (or None), not {type(rng).__name__}")


def _check_float(dtype: np.dtype, op: str) -> np.dtype:
    """torch has no random kernels for integer tensors: ``NotImplementedError``."""
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise NotImplementedError(f"{op}(): expected a float32 or float64 array, but got {dtype}")
    return dtype


def check_uniform_bounds(low: float, high: float, dtype: np.dtype) -> None:
    """torch's ``check_uniform_bounds``: both bounds representable in ``dtype``, ``low <= high``, and
    ``high - low`` representable (so the scaled draw cannot overflow). NaN bounds fail the first check."""
    info = np.finfo(dtype)
    lowest, largest = float(info.min), float(info.max)
    name = _C_NAMES[np.dtype(dtype)]
    if not lowest <= low <= largest:
        raise RuntimeError(f"from is out of bounds for {name}")
    if not lowest <= high <= largest:
        raise RuntimeError(f"to is out of bounds for {name}")
    # numbers shown as C++ streams them (torch's messages): the %g format
    if low > high:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={low:g} > to={high:g}")
    if high - low > largest:
        raise RuntimeError(
            f"uniform_ expects to-from <= std::numeric_limits<{name.capitalize()}>::max(), but found "
            f"to={high:g} and from={low:g} which result in to-from to exceed the limit")


def check_normal_std(std: float) -> None:
    """torch's check in ``normal_``: ``std >= 0`` (NaN fails too)."""
    if not std >= 0.0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std:g}")


def uniform(rng: RandomSource, low: float, high: float, shape: Tuple[int, ...], dtype) -> np.ndarray:
    """A new array of shape ``shape`` and dtype ``dtype`` with i.i.d. draws from ``U[low, high)``.

    ``low + (high - low) * u`` with ``u ~ U[0, 1)`` in float64, then rounded to ``dtype``. Rounding can reach
    ``high`` (often in float32 when the range is a few ulps wide); such a value becomes ``low``, as in torch's
    ``uniform_``, so the result stays in ``[low, high)``.
    """
    dtype = _check_float(dtype, "uniform_")
    check_uniform_bounds(low, high, dtype)
    if isinstance(rng, TorchStyleGenerator):
        out = np.empty(shape, dtype)
        rng.uniform_(out, low, high)
        return out
    values = rng.uniform(low, high, shape).astype(dtype, copy=False)
    values[values == dtype.type(high)] = low
    return values


def normal(rng: RandomSource, mean: float, std: float, shape: Tuple[int, ...], dtype) -> np.ndarray:
    """A new array of shape ``shape`` and dtype ``dtype`` with i.i.d. draws from ``N(mean, std^2)``.

    ``mean + std * z`` with ``z ~ N(0, 1)`` in float64, then rounded to ``dtype``.
    """
    dtype = _check_float(dtype, "normal_")
    check_normal_std(std)
    if isinstance(rng, TorchStyleGenerator):
        out = np.empty(shape, dtype)
        rng.normal_(out, mean, std)
        return out
    return rng.normal(mean, std, shape).astype(dtype, copy=False)
