"""Input checks shared by the functional core and the modules.

Every check raises the exception class torch raises for the same mistake, with a message that names
what was expected and what was given. None of them copies or modifies the array it checks.
"""
from __future__ import annotations

from typing import Type

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_array(x: object, op: str, *, int_error: Type[Exception] = RuntimeError) -> np.ndarray:
    """Return ``x`` if it is a float32/float64 ndarray, else raise like torch.

    Parameters
    ----------
    x : object
        The candidate input.
    op : str
        Name of the operation, used in the message.
    int_error : type
        Exception class torch raises for a non-floating tensor in this operation (``RuntimeError`` for
        ``linear``, ``NotImplementedError`` for ``batch_norm`` ...).
    """
    if isinstance(x, np.ndarray) and x.dtype in FLOAT_DTYPES:  # the common case first: one test
        return x
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}(): argument 'input' must be a numpy.ndarray, not {type(x).__name__}")
    if x.dtype == object:
        raise TypeError(f"{op}(): can't use an ndarray of dtype object; expected float32 or float64")
    if x.dtype not in FLOAT_DTYPES:
        raise int_error(f"{op}(): expected a float32 or float64 input, but got {x.dtype}")
    return x


def check_same_dtype(x: np.ndarray, param: np.ndarray | None, op: str) -> None:
    """Raise ``RuntimeError`` when a parameter's dtype differs from the input's (torch never mixes them)."""
    if param is not None and param.dtype != x.dtype:
        raise RuntimeError(
            f"{op}(): mixed dtype: expected parameters of dtype {x.dtype} (the input's), "
            f"but got {param.dtype}"
        )


def normalize_dim(dim: int, ndim: int) -> int:
    """Wrap a possibly negative ``dim`` into ``[0, ndim)``; torch's ``IndexError`` otherwise."""
    lo, hi = (-ndim, ndim - 1) if ndim > 0 else (-1, 0)
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return dim % max(ndim, 1)
