"""Loss modules: ``loss = loss_fn(input, target)``; ``dinput = loss_fn.backward(grad_output=1.0)``."""
from __future__ import annotations

import warnings
from typing import Optional, Union

import numpy as np

from ... import functional as F
from ...functional import loss as L
from .module import Module


def legacy_reduction(size_average: Optional[bool], reduce: Optional[bool], reduction: str) -> str:
    """torch's mapping of the deprecated ``size_average``/``reduce`` flags onto ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='"
                  f"{'none' if reduce is False else 'mean' if size_average in (None, True) else 'sum'}' instead.",
                  UserWarning, stacklevel=3)
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


class _Loss(Module):
    """A loss: ``forward(input, target)`` returns a float (``'mean'``/``'sum'``) or the per-element losses
    (``'none'``); ``backward(grad_output=1.0)`` returns dL/d(input)."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__()
        reduction = legacy_reduction(size_average, reduce, reduction)
        L.check_reduction(reduction)
        self.reduction = reduction

    def _compute(self, input: np.ndarray, target: np.ndarray):
        raise NotImplementedError

    def _derivative(self, grad_output, cache) -> np.ndarray:
        return L._elementwise_backward(grad_output, cache)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Union[float, np.ndarray]:
        value, cache = self._compute(input, target)
        self.__dict__["_cache"] = cache  # what Module.__setattr__ does for _cache, without its Python call
        return value if self.reduction == "none" else float(value)

    def backward(self, grad_output=1.0) -> np.ndarray:
        return self._derivative(grad_output, self._saved())

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """``mean((x - y)^2)``."""

    def _compute(self, input, target):
        return F.mse_loss_forward(input, target, self.reduction)


class L1Loss(_Loss):
    """``mean(|x - y|)``."""

    def _compute(self, input, target):
        return F.l1_loss_forward(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    """``0.5 z^2 / beta`` for ``|z| < beta``, else ``|z| - 0.5 beta``."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def _compute(self, input, target):
        return F.smooth_l1_loss_forward(input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    """``0.5 z^2`` for ``|z| < delta``, else ``delta (|z| - 0.5 delta)``."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        self.delta = delta

    def _compute(self, input, target):
        return F.huber_loss_forward(input, target, self.reduction, self.delta)


class _WeightedLoss(_Loss):
    def __init__(self, weight: Optional[np.ndarray] = None, size_average=None, reduce=None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", None if weight is None else np.array(weight, copy=True))


class BCELoss(_WeightedLoss):
    """Binary cross-entropy on probabilities; each log clamped at -100 (as torch)."""

    def _compute(self, input, target):
        return F.binary_cross_entropy_forward(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Binary cross-entropy on logits, ``pos_weight`` scaling the positive term; stable for any logit."""

    def __init__(self, weight: Optional[np.ndarray] = None, size_average=None, reduce=None,
                 reduction: str = "mean", pos_weight: Optional[np.ndarray] = None) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.register_buffer("pos_weight", None if pos_weight is None else np.array(pos_weight, copy=True))

    def _compute(self, input, target):
        buffers = self._buffers  # not Module.__getattr__'s search: a measurable share of a small network's step
        return F.binary_cross_entropy_with_logits_forward(input, target, buffers["weight"], self.reduction,
                                                          buffers["pos_weight"])


class NLLLoss(_WeightedLoss):
    """``-w[y] input[y]`` over log-probabilities; 'mean' divides by the summed target weights."""

    def __init__(self, weight: Optional[np.ndarray] = None, size_average=None, ignore_index: int = -100,
                 reduce=None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def _compute(self, input, target):
        return F.nll_loss_forward(input, target, self.weight, self.ignore_index, self.reduction)

    def _derivative(self, grad_output, cache):
        return F.nll_loss_backward(grad_output, cache)


class CrossEntropyLoss(_WeightedLoss):
    """``log_softmax`` over dim 1 then NLL (class-index targets) or ``-sum y log p`` (probability targets)."""

    def __init__(self, weight: Optional[np.ndarray] = None, size_average=None, ignore_index: int = -100,
                 reduce=None, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _compute(self, input, target):
        return F.cross_entropy_forward(input, target, self.weight, self.ignore_index, self.reduction,
                                       self.label_smoothing)

    def _derivative(self, grad_output, cache):
        return F.cross_entropy_backward(grad_output, cache)
