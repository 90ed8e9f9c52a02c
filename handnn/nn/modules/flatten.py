"""``Flatten``: merges dims ``start_dim..end_dim`` into one."""
from __future__ import annotations

import math

import numpy as np

from ..._validation import normalize_dim
from .module import Module


class Flatten(Module):
    """Reshape ``(*, d_start, ..., d_end, *)`` to ``(*, d_start * ... * d_end, *)``; backward reshapes back."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: np.ndarray) -> np.ndarray:
        if not isinstance(input, np.ndarray):
            raise TypeError(f"flatten(): argument 'input' must be a numpy.ndarray, not {type(input).__name__}")
        shape = input.shape
        # The dims are validated even for a 0-d input (as torch does, against the range [-1, 0]), so the
        # default ``Flatten()`` (start_dim=1) raises IndexError on a scalar instead of silently returning (1,).
        start = normalize_dim(self.start_dim, input.ndim)
        end = normalize_dim(self.end_dim, input.ndim)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        if input.ndim == 0:
            out_shape = (1,)
        else:
            out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        self._cache = shape
        return input.reshape(out_shape)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output.reshape(self._saved())

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
