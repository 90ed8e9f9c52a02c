"""Adagrad (torch's ``_single_tensor_adagrad``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..functional._kernels import blockwise
from ..nn.parameter import Parameter
from .optimizer import Optimizer, ParamsT, check_hyper, effective_grad, new_step


def adagrad_step(param: np.ndarray, grad: np.ndarray, state: Dict[str, Any], *, lr: float, lr_decay: float,
                 weight_decay: float, eps: float, maximize: bool) -> None:
    """One Adagrad update in place.

    ::

        step += 1;  g = -grad if maximize else grad;  g = g + wd * p
        clr = lr / (1 + (step - 1) lr_decay);  sum += g^2;  p -= clr g / (sqrt(sum) + eps)
    """
    state["step"] += 1
    step = float(state["step"])
    clr = lr / (1 + (step - 1) * lr_decay)

    def kernel(p: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, g_out: np.ndarray, t: np.ndarray) -> None:
        g = effective_grad(p, grad, weight_decay, maximize, g_out, t)
        t = np.square(g, out=t)
        state_sum += t
        std = np.sqrt(state_sum, out=t)
        std += eps
        update = np.divide(g, std, out=std)
        update *= clr
        p -= update

    blockwise(kernel, (param, grad, state["sum"]), scratch=2)


class Adagrad(Optimizer):
    """torch's ``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
    maximize=False)``. State ``step`` and ``sum`` are created here, in ``__init__``, as torch does (for a group
    added later, at its first step); ``sum`` always starts at the constructor's ``initial_accumulator_value``."""

    def __init__(self, params: ParamsT, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: Optional[bool] = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: Optional[bool] = None) -> None:
        check_hyper(0.0 <= lr, f"Invalid learning rate: {lr}")
        check_hyper(0.0 <= lr_decay, f"Invalid lr_decay value: {lr_decay}")
        check_hyper(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        check_hyper(0.0 <= initial_accumulator_value,
                    f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        check_hyper(0.0 <= eps, f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, self.state.setdefault(p, {}))

    def _init_state(self, p: Parameter, state: Dict[str, Any]) -> None:
        # torch fills ``sum`` with the constructor's value (``self.defaults``) even when the parameter's group
        # sets its own ``initial_accumulator_value``: the group's value is recorded but never used.
        if not state:
            state["step"] = new_step()
            state["sum"] = np.full_like(p.data, self.defaults["initial_accumulator_value"])

    def _update(self, p: Parameter, grad: np.ndarray, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        self._init_state(p, state)  # a group added after __init__ starts here
        adagrad_step(p.data, grad, state, lr=group["lr"], lr_decay=group["lr_decay"],
                     weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])
