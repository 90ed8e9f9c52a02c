"""RMSprop (torch's ``_single_tensor_rmsprop``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..nn.parameter import Parameter
from .optimizer import Optimizer, ParamsT, check_hyper, lerp_, new_step


def rmsprop_step(param: np.ndarray, grad: np.ndarray, state: Dict[str, Any], *, lr: float, alpha: float,
                 eps: float, weight_decay: float, momentum: float, centered: bool, maximize: bool) -> None:
    """One RMSprop update in place.

    ::

        step += 1;  g = -grad if maximize else grad;  g = g + wd * p
        sq = alpha sq + (1 - alpha) g^2
        avg = sqrt(sq - ga^2) + eps with ga = lerp(ga, g, 1 - alpha) if centered, else sqrt(sq) + eps
        momentum: buf = momentum buf + g / avg (buf starts at zeros); p -= lr buf   else: p -= lr g / avg
    """
    state["step"] += 1
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    square_avg = state["square_avg"]
    square_avg *= alpha
    square_avg += (1 - alpha) * (g * g)
    if centered:
        grad_avg = state["grad_avg"]
        lerp_(grad_avg, g, 1 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        buf = state["momentum_buffer"]
        buf *= momentum
        buf += g / avg
        param -= lr * buf
    else:
        param -= lr * (g / avg)


class RMSprop(Optimizer):
    """torch's ``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
    maximize=False)``.

    State: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: Optional[bool] = None, maximize: bool = False, differentiable: bool = False) -> None:
        check_hyper(0.0 <= lr, f"Invalid learning rate: {lr}")
        check_hyper(0.0 <= eps, f"Invalid epsilon value: {eps}")
        check_hyper(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        check_hyper(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        check_hyper(0.0 <= alpha, f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _update(self, p: Parameter, grad: np.ndarray, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        if not state:
            state["step"] = new_step()
            state["square_avg"] = np.zeros_like(p.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        rmsprop_step(p.data, grad, state, lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                     weight_decay=group["weight_decay"], momentum=group["momentum"], centered=group["centered"],
                     maximize=group["maximize"])
