"""Gradient clipping with ``torch.nn.utils.clip_grad``'s names, arithmetic and errors.

``clip_grad_norm_`` is ``get_total_norm`` followed by ``clip_grads_with_norm_``, as in torch:

* each gradient's p-norm is computed in the gradient's dtype; the total norm is the p-norm of those norms (so it is
  the norm of all gradients viewed as one vector), in their promoted dtype (float64 as soon as one gradient is);
* ``clip_coef = max_norm / (total_norm + 1e-6)`` — computed as torch's ``float / tensor`` is, the reciprocal
  times ``max_norm``, in the total norm's dtype — clamped at 1.0, and **every** gradient multiplied by it in place
  (also when the coefficient is 1, as torch does; a float32 gradient is multiplied by the coefficient rounded to
  float32).

The total norm is returned as torch returns it: a 0-d array (``numpy.ndarray`` of shape ``()``) in the gradients'
dtype; ``float(total)`` gives a Python float. With no gradient at all it is ``0.0`` in float32 (torch's
``torch.tensor(0.0)``, in torch's default dtype).

``parameters`` is a :class:`~handnn.nn.Parameter` or an iterable of them (``model.parameters()``); parameters whose
``grad`` is None are skipped. ``foreach`` is accepted for torch's signature and ignored (NumPy has one path).
"""
from __future__ import annotations

import math
import types
import warnings
from typing import Iterable, List, Optional, Union

import numpy as np

from ..._validation import check_array
from ..parameter import Parameter

__all__ = ["clip_grad_norm", "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]

Parameters = Union[Parameter, Iterable[Parameter]]
Arrays = Union[np.ndarray, Iterable[np.ndarray]]


def _parameter_list(parameters: Parameters, op: str, warn_empty_generator: bool = False) -> List[Parameter]:
    """``parameters`` as a list (a single Parameter becomes ``[it]``; a generator is consumed once)."""
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, np.ndarray):
        raise TypeError(f"{op}(): parameters must be a Parameter or an iterable of Parameters, not numpy.ndarray "
                        "(an array has no .grad: wrap it in a Parameter)")
    is_generator = isinstance(parameters, types.GeneratorType)
    params = list(parameters)
    if warn_empty_generator and is_generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", UserWarning,
                      stacklevel=3)
    return params


def _format_order(p: float) -> str:
    """A norm order as torch's C++ message prints it: ``-1``, ``-0.5``, ``-inf``."""
    return f"{p:g}"


def _vector_norm(x: np.ndarray, p: float, op: str) -> np.generic:
    """``torch.linalg.vector_norm(x, p)`` in ``x``'s dtype: ``(sum |x|^p)^(1/p)``; ``inf`` the largest ``|x|``,
    ``-inf`` the smallest, ``0`` the number of nonzero elements (NaN counts)."""
    dtype = x.dtype
    if x.size == 0:
        if p == math.inf:
            raise RuntimeError(f"{op} cannot compute the infinity norm on an empty tensor because the operation "
                               "does not have an identity")
        if p < 0:
            raise RuntimeError(f"linalg.vector_norm cannot compute the {_format_order(p)} norm on an empty tensor "
                               "because the operation does not have an identity")
        return dtype.type(0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if p == 0:
            return dtype.type(np.count_nonzero(x))
        a = np.abs(x)
        if p == math.inf:
            return a.max()
        if p == -math.inf:
            return a.min()
        if p == 1:
            return a.sum(dtype=dtype)
        if p == 2:
            flat = a.reshape(-1)
            return np.sqrt(np.dot(flat, flat))
        return np.power(np.power(a, dtype.type(p)).sum(dtype=dtype), dtype.type(1.0 / p))


def get_total_norm(tensors: Arrays, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: Optional[bool] = None) -> np.ndarray:
    """The p-norm of ``tensors`` viewed as one vector: the norm of their individual norms.

    Parameters
    ----------
    tensors : ndarray or iterable of ndarrays (float32/float64)
        Typically ``[p.grad for p in params if p.grad is not None]``.
    norm_type : float
        ``p``; ``inf`` (or ``'inf'``) for the largest absolute value, ``-inf``, ``0`` and negative orders as in
        ``torch.linalg.vector_norm``.
    error_if_nonfinite : bool
        Raise when the total norm is NaN or infinite.
    foreach : bool, optional
        Ignored.

    Returns
    -------
    total_norm : 0-d ndarray in the promoted dtype of ``tensors`` (float32 ``0.0`` for no tensor at all)

    Raises
    ------
    RuntimeError
        A non-finite total with ``error_if_nonfinite`` (torch's message); an ``inf`` or negative order over an
        empty tensor (the norm has no identity).
    """
    if isinstance(tensors, np.ndarray):
        tensors = [tensors]
    else:
        tensors = list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return np.array(0.0, dtype=np.float32)
    norms = [np.asarray(_vector_norm(check_array(t, "get_total_norm", refuses={}, name="tensor"), norm_type,
                                     "_foreach_norm")) for t in tensors]
    stacked = np.stack(norms)  # promoted: float64 as soon as one norm is
    total = np.asarray(_vector_norm(stacked, norm_type, "linalg.vector_norm"))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    return total


def clip_grads_with_norm_(parameters: Parameters, max_norm: float, total_norm: Union[np.ndarray, float],
                          foreach: Optional[bool] = None) -> None:
    """Multiply every gradient in place by ``min(max_norm / (total_norm + 1e-6), 1)``.

    The coefficient is computed in ``total_norm``'s dtype as torch computes it (``(total_norm + 1e-6)``'s reciprocal
    times ``max_norm``); a NaN total gives NaN gradients and an infinite one zeros (NaN where a gradient is
    infinite), as in torch.
    """
    params = _parameter_list(parameters, "clip_grads_with_norm_")
    grads = [p.grad for p in params if p.grad is not None]
    max_norm = float(max_norm)
    if not grads:
        return
    total = np.asarray(total_norm)
    dtype = total.dtype if total.dtype.kind == "f" else np.dtype(np.float64)
    total = total.astype(dtype, copy=False)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        coef = np.reciprocal(total + dtype.type(1e-6)) * dtype.type(max_norm)
        coef = np.minimum(coef, dtype.type(1.0))
        for grad in grads:
            np.multiply(grad, coef.astype(grad.dtype), out=grad)


def clip_grad_norm_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Optional[bool] = None) -> np.ndarray:
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type``-norm is at most ``max_norm``.

    ``get_total_norm`` of the gradients, then ``clip_grads_with_norm_`` with it (see the module docstring for the
    arithmetic). An empty generator warns, as torch's does.

    Returns
    -------
    total_norm : 0-d ndarray
        The total norm **before** clipping, in the gradients' dtype.

    Raises
    ------
    RuntimeError
        With ``error_if_nonfinite``, when the total norm is NaN or infinite (the gradients are then left as they
        were).
    """
    params = _parameter_list(parameters, "clip_grad_norm_", warn_empty_generator=True)
    grads = [p.grad for p in params if p.grad is not None]
    total_norm = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total_norm, foreach)
    return total_norm


def clip_grad_norm(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: Optional[bool] = None) -> np.ndarray:
    """Deprecated alias of :func:`clip_grad_norm_` (``FutureWarning``, as in torch)."""
    warnings.warn("`handnn.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`handnn.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters: Parameters, clip_value: float, foreach: Optional[bool] = None) -> None:
    """Clamp every gradient in place into ``[-clip_value, clip_value]`` (NaN stays NaN).

    As torch: first ``max(grad, -clip_value)``, then ``min(grad, clip_value)``, so a negative ``clip_value`` sets
    every element to ``clip_value``. ``clip_value`` is rounded to each gradient's dtype.
    """
    params = _parameter_list(parameters, "clip_grad_value_")
    clip_value = float(clip_value)
    for param in params:
        grad = param.grad
        if grad is None:
            continue
        value = grad.dtype.type(clip_value)
        np.maximum(grad, -value, out=grad)
        np.minimum(grad, value, out=grad)
