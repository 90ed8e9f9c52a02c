"""Input checks shared by the functional core and the modules.

Every check raises the exception class torch raises for the same mistake, with a message that names what was expected
and what was given. None of them copies or modifies the array it checks.

handnn computes in float32 and float64 only. For another dtype, an operation either raises the class torch raises for
that kind of dtype (``refuses``), or — where torch would compute — ``TypeError`` naming the dtype, so that the cast is
the caller's visible choice (a documented deviation, docs/differences.md).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Type

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: the kinds of non-float dtype torch may refuse, as :func:`check_array`'s ``refuses`` names them
KINDS = ("int", "bool", "float16", "complex")

#: an operation torch refuses every other dtype in with RuntimeError (a product with float parameters: "mixed dtype")
REFUSES_ALL: Mapping[str, Type[Exception]] = dict.fromkeys(KINDS, RuntimeError)

#: an operation torch has no kernel of for integer, bool or complex inputs (NotImplementedError), but computes in
#: float16 (where handnn raises TypeError)
NO_KERNEL: Mapping[str, Type[Exception]] = dict.fromkeys(("int", "bool", "complex"), NotImplementedError)


def dtype_kind(dtype: np.dtype) -> str:
    """'int' (signed or unsigned), 'bool', 'float16', 'complex', 'float' (float32/64), or 'other' (object, str...)."""
    if dtype in FLOAT_DTYPES:
        return "float"
    if dtype == np.float16:
        return "float16"
    return {"i": "int", "u": "int", "b": "bool", "c": "complex"}.get(dtype.kind, "other")


def check_ndarray(x: object, op: str, name: str = "input") -> np.ndarray:
    """Return ``x`` if it is an ndarray, else ``TypeError`` (torch's argument parser's class for a non-tensor)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}(): argument '{name}' must be a numpy.ndarray, not {type(x).__name__}")
    return x


def check_array(x: object, op: str, *, refuses: Optional[Mapping[str, Type[Exception]]] = None,
                name: str = "input") -> np.ndarray:
    """Return ``x`` if it is a float32/float64 ndarray, else raise like torch.

    Parameters
    ----------
    x : object
        The candidate input.
    op : str
        Name of the operation, used in the message.
    refuses : mapping of 'int' / 'bool' / 'float16' / 'complex' to an exception class
        The class torch raises in this operation for an input of each kind of dtype. A kind not listed is one torch
        computes on: handnn raises ``TypeError`` there (it computes in float32 and float64 only). Default: torch
        refuses every kind with ``RuntimeError``.
    name : str
        The argument's name, used in the message.
    """
    if isinstance(x, np.ndarray) and x.dtype in FLOAT_DTYPES:  # the common case first: one test
        return x
    check_ndarray(x, op, name)
    kind = dtype_kind(x.dtype)
    error = (REFUSES_ALL if refuses is None else refuses).get(kind)
    if error is not None:
        raise error(f"{op}(): expected a float32 or float64 {name}, but got {x.dtype}")
    if kind == "other":  # object, str, datetime...: no tensor of those exists
        raise TypeError(f"{op}(): can't use an ndarray of dtype {x.dtype} as the {name}; expected float32 or float64")
    raise TypeError(f"{op}(): handnn computes in float32 or float64, but the {name} is {x.dtype} (torch would "
                    "compute in it: cast it with .astype(np.float32) or .astype(np.float64))")


def check_half_input(x: object, params: Sequence[Optional[np.ndarray]], op: str) -> None:
    """A float16 input to a normalisation layer: torch refuses it beside a float64 parameter or statistic
    (``RuntimeError``, mixed dtype) and computes beside float32 ones (mixed precision), where handnn raises
    ``TypeError`` (float32 and float64 only). Nothing for any other input."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float16):
        return
    if any(p is not None and p.dtype == np.float64 for p in params):
        raise RuntimeError(f"{op}(): mixed dtype: a float16 input beside float64 parameters")
    check_array(x, op, refuses={})


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
