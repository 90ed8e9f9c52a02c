"""Adam and AdamW (torch's ``_single_tensor_adam``: eps outside the sqrt, after bias correction)."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..functional._kernels import blockwise
from ..nn.parameter import Parameter
from .optimizer import Optimizer, ParamsT, check_hyper, effective_grad, lerp_, new_step


def adam_step(param: np.ndarray, grad: np.ndarray, state: Dict[str, Any], *, lr: float, beta1: float,
              beta2: float, eps: float, weight_decay: float, amsgrad: bool, maximize: bool,
              decoupled_weight_decay: bool) -> None:
    """One Adam/AdamW update of ``param`` and ``state`` (``step``, ``exp_avg``, ``exp_avg_sq``
    [, ``max_exp_avg_sq``]) in place.

    ::

        step += 1;  g = -grad if maximize else grad
        AdamW: p *= 1 - lr * wd        Adam: g = g + wd * p   (an L2 term inside m and v)
        m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
        v_hat = max(v_max, v) if amsgrad else v
        p -= lr / (1 - beta1^step) * m / (sqrt(v_hat) / sqrt(1 - beta2^step) + eps)
    """
    state["step"] += 1
    step = float(state["step"])
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    l2 = 0.0 if decoupled_weight_decay else weight_decay

    def kernel(p: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, *rest) -> None:
        *max_exp_avg_sq, g_out, t = rest
        if decoupled_weight_decay and weight_decay != 0:
            p *= 1 - lr * weight_decay
        g = effective_grad(p, grad, l2, maximize, g_out, t)
        lerp_(exp_avg, g, 1 - beta1, t)
        exp_avg_sq *= beta2
        t = np.square(g, out=t)
        t *= 1 - beta2
        exp_avg_sq += t
        second = exp_avg_sq
        if amsgrad:
            second = np.maximum(max_exp_avg_sq[0], exp_avg_sq, out=max_exp_avg_sq[0])
        denom = np.sqrt(second, out=t)
        denom /= bias_correction2_sqrt
        denom += eps
        update = np.divide(exp_avg, denom, out=denom)
        update *= lr / bias_correction1
        p -= update

    ams = (state["max_exp_avg_sq"],) if amsgrad else ()
    blockwise(kernel, (param, grad, state["exp_avg"], state["exp_avg_sq"], *ams), scratch=2)


class Adam(Optimizer):
    """torch's ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    maximize=False, decoupled_weight_decay=False)``.

    State per parameter: ``step`` (0-d float32), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq``. ``foreach``, ``capturable``, ``differentiable`` and ``fused`` are accepted and
    recorded for torch's state_dict layout; they change nothing in NumPy.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: Optional[bool] = None,
                 decoupled_weight_decay: bool = False) -> None:
        check_hyper(0.0 <= lr, f"Invalid learning rate: {lr}")
        check_hyper(0.0 <= eps, f"Invalid epsilon value: {eps}")
        check_hyper(0.0 <= betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
        check_hyper(0.0 <= betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")
        check_hyper(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _update(self, p: Parameter, grad: np.ndarray, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        if not state:
            state["step"] = new_step()
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        beta1, beta2 = group["betas"]
        adam_step(p.data, grad, state, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                  weight_decay=group["weight_decay"], amsgrad=group["amsgrad"], maximize=group["maximize"],
                  decoupled_weight_decay=group["decoupled_weight_decay"])


class AdamW(Adam):
    """torch's ``AdamW``: Adam with decoupled weight decay ``p *= 1 - lr * weight_decay`` (default 1e-2)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: Optional[bool] = None, capturable: bool = False, differentiable: bool = False,
                 fused: Optional[bool] = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
