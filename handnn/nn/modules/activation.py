"""Activation modules over :mod:`handnn.functional.activation`."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ... import functional as F
from .module import Module


class _Elementwise(Module):
    """A parameter-free layer defined by one functional forward/backward pair."""

    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)

    def _args(self) -> tuple:
        return ()

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = self._forward(input, *self._args())
        self.__dict__["_cache"] = cache  # what Module.__setattr__ does for _cache, without its Python call
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return self._backward(grad_output, self._saved())


def _no_inplace(inplace: bool) -> None:
    if inplace:
        raise NotImplementedError("inplace=True is not supported: handnn never modifies its input")


class ReLU(_Elementwise):
    """``y = max(x, 0)``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        _no_inplace(inplace)
        self.inplace = inplace


class LeakyReLU(_Elementwise):
    """``y = x`` for ``x > 0``, else ``negative_slope * x``."""

    _forward = staticmethod(F.leaky_relu_forward)
    _backward = staticmethod(F.leaky_relu_backward)

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        _no_inplace(inplace)
        self.negative_slope = negative_slope
        self.inplace = inplace

    def _args(self) -> tuple:
        return (self.negative_slope,)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Elementwise):
    """``y = 1 / (1 + exp(-x))``."""

    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Elementwise):
    """``y = tanh(x)``."""

    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)


class GELU(_Elementwise):
    """``y = x * Phi(x)`` (``approximate='none'``) or its tanh approximation (``'tanh'``)."""

    _forward = staticmethod(F.gelu_forward)
    _backward = staticmethod(F.gelu_backward)

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def _args(self) -> tuple:
        return (self.approximate,)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(_Elementwise):
    """``y = exp(x) / sum(exp(x), dim)``."""

    _forward = staticmethod(F.softmax_forward)
    _backward = staticmethod(F.softmax_backward)

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def _args(self) -> tuple:
        return (self.dim,)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``y = x - log(sum(exp(x), dim))``."""

    _forward = staticmethod(F.log_softmax_forward)
    _backward = staticmethod(F.log_softmax_backward)
