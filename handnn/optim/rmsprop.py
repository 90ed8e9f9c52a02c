"""RMSprop (torch's ``_single_tensor_rmsprop``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..functional._kernels import blockwise
from ..nn.parameter import Parameter
from .optimizer import Optimizer, ParamsT, check_hyper, effective_grad, lerp_, new_step


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

    def kernel(p: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, *rest) -> None:
        *extra, g_out, t = rest
        g = effective_grad(p, grad, weight_decay, maximize, g_out, t)
        square_avg *= alpha
        t = np.square(g, out=t)
        t *= 1 - alpha
        square_avg += t
        if centered:
            grad_avg = extra[-1]
            lerp_(grad_avg, g, 1 - alpha, t)
            t = np.square(grad_avg, out=t)
            avg = np.sqrt(np.subtract(square_avg, t, out=t), out=t)
        else:
            avg = np.sqrt(square_avg, out=t)
        avg += eps
        step = np.divide(g, avg, out=avg)
        if momentum > 0:
            buf = extra[0]
            buf *= momentum
            buf += step
            step = np.multiply(buf, lr, out=step)
        else:
            step *= lr
        p -= step

    extra = ((state["momentum_buffer"],) if momentum > 0 else ()) + ((state["grad_avg"],) if centered else ())
    blockwise(kernel, (param, grad, state["square_avg"], *extra), scratch=2)


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
