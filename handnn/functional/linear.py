"""Affine map ``y = x W^T + b`` and its backward pass."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from .._validation import check_array, check_same_dtype
from ._kernels import ones


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs: the input and the weight."""

    x: np.ndarray
    weight: np.ndarray
    has_bias: bool


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, LinearCache]:
    """``y = x W^T + b``.

    Parameters
    ----------
    x : ndarray, shape (*, in_features)
    weight : ndarray, shape (out_features, in_features)
    bias : ndarray, shape (out_features,), optional

    Returns
    -------
    out : ndarray, shape (*, out_features)
    cache : LinearCache
    """
    check_array(x, "linear")
    check_same_dtype(x, weight, "linear")
    check_same_dtype(x, bias, "linear")
    if x.ndim == 0:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
    if x.shape[-1] != weight.shape[1]:
        rows = int(np.prod(x.shape[:-1]))
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{x.shape[-1]} and "
            f"{weight.shape[1]}x{weight.shape[0]})"
        )
    # np.dot on 2-d inputs is the same BLAS product as ``@`` (bit for bit) with less call overhead: a share of a
    # small network's step
    out = np.dot(x, weight.T) if x.ndim == 2 else x @ weight.T
    if bias is not None:
        out += bias  # ``out`` is a fresh array owned by us
    return out, LinearCache(x, weight, bias is not None)


def linear_backward(
    dout: np.ndarray, cache: LinearCache
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of :func:`linear_forward`.

    ``dx = dout W``, ``dW = dout^T x`` (summed over every leading dim), ``db = sum(dout)``.

    Returns
    -------
    dx : ndarray, shape (*, in_features)
    dweight : ndarray, shape (out_features, in_features)
    dbias : ndarray, shape (out_features,), or None without bias
    """
    x, weight, has_bias = cache
    if dout.ndim == 2:  # the common case: no reshapes, and np.dot (as in linear_forward)
        d2, x2 = dout, x
        dx = np.dot(dout, weight)
    else:
        d2, x2 = dout.reshape(-1, dout.shape[-1]), x.reshape(-1, x.shape[-1])
        dx = dout @ weight
    dweight = np.dot(d2.T, x2)
    # the column sums as a matrix-vector product: BLAS runs them faster than ``d2.sum(axis=0)``, whose inner loop
    # is one row at a time
    dbias = np.dot(ones(d2.shape[0], d2.dtype), d2) if has_bias else None
    return dx, dweight, dbias
