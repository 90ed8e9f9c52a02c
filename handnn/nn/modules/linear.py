"""``Linear`` and ``Identity``."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ... import functional as F
from ... import init
from ..parameter import Parameter
from .module import Module


def default_rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    """The generator a layer draws from: the one given, else a fresh one (never NumPy's global state)."""
    return np.random.default_rng() if rng is None else rng


class Identity(Module):
    """``y = x``; accepts and ignores any constructor arguments, as torch's does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: np.ndarray) -> np.ndarray:
        self._cache = True
        return input

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved()
        return grad_output


class Linear(Module):
    """``y = x W^T + b`` over inputs of shape ``(*, in_features)``.

    Initialised as torch does: ``weight`` by ``init.kaiming_uniform_(a=sqrt(5))`` and ``bias`` ~
    U(-1/sqrt(in_features), 1/sqrt(in_features)), weight drawn first (so ``rng=TorchGenerator(seed)`` gives the
    weights of ``torch.manual_seed(seed); torch.nn.Linear(...)``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : numpy dtype, keyword-only (float64 by default)
    rng : numpy.random.Generator, keyword-only
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise RuntimeError(
                f"Trying to create tensor with negative dimension: in_features={in_features}, "
                f"out_features={out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        rng = default_rng(rng)
        # torch's reset_parameters, draw for draw: the weight first (its bound, sqrt(3)·gain/sqrt(fan_in) with
        # gain = sqrt(2 / (1 + 5)), is 1/sqrt(in_features) up to an ulp), then the bias
        self.weight = init.kaiming_uniform_(Parameter(np.empty((out_features, in_features), dtype)),
                                            a=math.sqrt(5), rng=rng)
        if bias:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
            self.bias = init.uniform_(Parameter(np.empty(out_features, dtype)), -bound, bound, rng=rng)
        else:
            self.register_parameter("bias", None)

    # The parameters are read from ``_parameters`` directly: attribute access would go through
    # Module.__getattr__, a measurable share of a small network's step.
    def forward(self, input: np.ndarray) -> np.ndarray:
        params = self._parameters
        bias = params["bias"]
        out, cache = F.linear_forward(input, params["weight"].data, None if bias is None else bias.data)
        self.__dict__["_cache"] = cache  # what Module.__setattr__ does for _cache, without its Python call
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.linear_backward(grad_output, self._saved())
        # both are fresh results of linear_backward (a matmul and a sum): .grad may take them without a copy
        params = self._parameters
        self._accumulate(params["weight"], dweight, owned=True)
        self._accumulate(params["bias"], dbias, owned=True)
        return dx

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
