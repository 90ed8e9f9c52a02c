"""L1, L2 and elastic-net penalties over a chosen set of parameters, and how they map onto ``weight_decay``.

Penalty (added to the loss) and gradient (added into ``Parameter.grad``)::

    penalty = l1 * sum|w| + (l2 / 2) * sum w^2          d/dw = l1 * sign(w) + l2 * w

Mappings onto torch's optimizers (tested in ``tests/parity/test_conventions.py``):

- ``l2`` here (``(l2/2)·‖W‖²`` in the loss) ≡ ``weight_decay=l2`` in SGD/Adam for the same parameters
  (coupled weight decay: torch adds ``wd·p`` to the gradient).
- Seed 000's (deeplearning.ai's) ``λ/(2m)·ΣW²``, m = the training-set (batch) size ≡ ``l2 = λ/m``.
- Seed 004's weight decay ``θ ← (1 − λ)θ − lr·g`` ≡ ``SGD(lr, weight_decay=λ/lr)`` (no momentum)
  ≡ ``AdamW``-style decoupled decay with ``weight_decay=λ/lr``; it is *not* ``Adam(weight_decay)``,
  which puts an L2 term inside Adam's moment estimates.
- Seed 001's elastic net ``β·L2 + L1`` ≡ ``l1 = λ``, ``l2 = λ·β`` (with L2 = ½‖W‖²).
"""
from __future__ import annotations

from typing import Iterable, List

import numpy as np

from .nn import Linear, Module, Parameter


def decay_parameters(module: Module) -> List[Parameter]:
    """The weights of every ``Linear`` in ``module``: what a penalty usually covers (not biases, not norm
    parameters)."""
    return [m.weight for m in module.modules() if isinstance(m, Linear)]


def penalty(params: Iterable[Parameter], *, l1: float = 0.0, l2: float = 0.0) -> float:
    """``l1 * sum|w| + (l2 / 2) * sum w^2`` over ``params``."""
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty strengths must be non-negative, but got l1={l1}, l2={l2}")
    total = 0.0
    for p in params:
        w = p.data
        if l1:
            total += l1 * float(np.abs(w).sum())
        if l2:
            total += 0.5 * l2 * float((w * w).sum())
    return total


def penalty_backward(params: Iterable[Parameter], *, l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the penalty's gradient ``l1 * sign(w) + l2 * w`` into each ``Parameter.grad`` (created if None).

    A frozen parameter (``requires_grad=False``) is skipped, as torch's autograd skips it and as
    ``Module.backward`` does: giving it a ``.grad`` would make the optimizer update it.
    """
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty strengths must be non-negative, but got l1={l1}, l2={l2}")
    for p in params:
        if not p.requires_grad:
            continue
        grad = l2 * p.data if l2 else np.zeros_like(p.data)
        if l1:
            grad = grad + l1 * np.sign(p.data)
        if p.grad is None:
            p.grad = grad.astype(p.dtype, copy=False)
        else:
            p.grad += grad


def l1_penalty(params: Iterable[Parameter], lam: float) -> float:
    """``lam * sum|w|``."""
    return penalty(params, l1=lam)


def l2_penalty(params: Iterable[Parameter], lam: float) -> float:
    """``(lam / 2) * sum w^2``; its gradient ``lam * w`` is torch's ``weight_decay=lam``."""
    return penalty(params, l2=lam)


def elastic_net_penalty(params: Iterable[Parameter], lam: float, beta: float) -> float:
    """Seed 001's ``lam * (beta * L2 + L1)`` with ``L2 = ½‖W‖²``: ``penalty(l1=lam, l2=lam * beta)``."""
    return penalty(params, l1=lam, l2=lam * beta)
