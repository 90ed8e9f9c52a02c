"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay (torch's ``SGD``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..nn.parameter import Parameter
from .optimizer import Optimizer, ParamsT, check_hyper, effective_grad


def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buffer: Optional[np.ndarray], *, lr: float,
             momentum: float, dampening: float, weight_decay: float, nesterov: bool,
             maximize: bool) -> Optional[np.ndarray]:
    """Update ``param`` in place; return the (new or updated) momentum buffer.

    ::

        g = -grad if maximize else grad;  g += weight_decay * p
        buf = g (first step: NO dampening)  |  buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
        p -= lr * g
    """
    g = effective_grad(param, grad, weight_decay, maximize, None, None)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = np.array(g, copy=True)
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g if dampening != 0 else g  # no temporary when undamped
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * g
    return momentum_buffer


class SGD(Optimizer):
    """torch's ``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False)``.

    State: ``momentum_buffer`` per parameter (only when momentum != 0). ``foreach``, ``differentiable`` and
    ``fused`` are accepted and recorded for torch's state_dict layout; they change nothing in NumPy.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: Optional[bool] = None, differentiable: bool = False, fused: Optional[bool] = None) -> None:
        # written as torch writes them (``if lr < 0.0: raise``), so NaN passes here exactly as it does in torch
        check_hyper(not lr < 0.0, f"Invalid learning rate: {lr}")
        check_hyper(not momentum < 0.0, f"Invalid momentum value: {momentum}")
        check_hyper(not weight_decay < 0.0, f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def _step_group(self, group: Dict[str, Any]) -> None:
        if group["momentum"] or group["weight_decay"] or group["maximize"]:
            super()._step_group(group)
            return
        # plain gradient descent (sgd_step's last line, no state): the per-parameter call and state lookup of
        # the general loop are a measurable share of a small network's step
        lr, scale = group["lr"], None
        for p in group["params"]:
            grad = p.grad
            if grad is not None:
                if scale is None or scale.dtype != grad.dtype:
                    # lr as a 0-d array of the gradient's dtype: the value a Python float takes in ``lr * grad``
                    # (NumPy's weak scalars), without that conversion's cost on every call
                    scale = np.array(lr, grad.dtype)
                p.data -= scale * grad

    def _update(self, p: Parameter, grad: np.ndarray, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        buf = sgd_step(p.data, grad, state.get("momentum_buffer"), lr=group["lr"], momentum=group["momentum"],
                       dampening=group["dampening"], weight_decay=group["weight_decay"],
                       nesterov=group["nesterov"], maximize=group["maximize"])
        if group["momentum"] != 0:
            state["momentum_buffer"] = buf
