"""The parity report's loss and optimizer sections.

Losses: every handnn loss and option against torch's, on random inputs and targets: the loss value and dL/dinput
for a seeded random ``grad_output``. Optimizers: a small MLP (Linear, BatchNorm1d, ReLU, Dropout, Linear) trained on
mini-batches side by side with its torch twin (the same dropout masks), comparing after every step every parameter,
every running statistic and every optimizer state entry; the table shows the worst error over the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from handnn import nn, optim
from handnn.optim import lr_scheduler

from .optim import to_torch_optimizer, to_torch_scheduler
from .tolerances import Comparison, compare
from .twin import to_numpy, to_tensor, to_torch

TargetMaker = Callable[[np.random.Generator, Tuple[int, ...], np.dtype], np.ndarray]


# ---- losses --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossCase:
    """A loss configuration: how to build it (given dtype and rng), the input shape, and its target maker."""

    component: str
    build: Callable[[np.dtype, np.random.Generator], nn.Module]
    shape: Tuple[int, ...]
    target: TargetMaker
    logits_scale: float = 1.0


def _real(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


def _probabilities(rng, shape, dtype):
    return rng.uniform(0.02, 0.98, shape).astype(dtype)


def _binary(rng, shape, dtype):
    return (rng.uniform(size=shape) < 0.4).astype(dtype)


def _classes(rng, shape, dtype, ignore: Optional[int] = None):
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if ignore is not None:
        target[rng.uniform(size=target.shape) < 0.25] = ignore
    return target.astype(np.int64)


def _soft_classes(rng, shape, dtype):
    p = rng.uniform(0.1, 1.0, shape)
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def loss_cases() -> List[LossCase]:
    """Every loss, each reduction for the elementwise ones, and every option that changes the arithmetic."""
    cases = []
    for reduction in ("mean", "sum", "none"):
        cases += [
            LossCase(f"MSELoss({reduction})", lambda d, r, red=reduction: nn.MSELoss(reduction=red), (7, 5), _real),
            LossCase(f"L1Loss({reduction})", lambda d, r, red=reduction: nn.L1Loss(reduction=red), (7, 5), _real),
            LossCase(f"CrossEntropyLoss({reduction})", lambda d, r, red=reduction: nn.CrossEntropyLoss(
                reduction=red), (7, 5), _classes),
        ]
    weight = lambda d, r, n: r.uniform(0.5, 2.0, n).astype(d)  # noqa: E731
    cases += [
        LossCase("SmoothL1Loss(beta=0.5)", lambda d, r: nn.SmoothL1Loss(beta=0.5), (7, 5), _real),
        LossCase("HuberLoss(delta=0.7)", lambda d, r: nn.HuberLoss(delta=0.7), (7, 5), _real),
        LossCase("BCELoss(weight)", lambda d, r: nn.BCELoss(weight=weight(d, r, 5)), (7, 5), _probabilities),
        LossCase("BCEWithLogitsLoss(pos_weight)", lambda d, r: nn.BCEWithLogitsLoss(pos_weight=weight(d, r, 5)),
                 (7, 5), _binary, logits_scale=30.0),
        LossCase("NLLLoss(weight, ignore_index)", lambda d, r: nn.NLLLoss(weight=weight(d, r, 5), ignore_index=2),
                 (7, 5), lambda r, s, d: _classes(r, s, d)),
        LossCase("CrossEntropyLoss(weight, ignore_index, smoothing) (N, C, d)",
                 lambda d, r: nn.CrossEntropyLoss(weight=weight(d, r, 5), ignore_index=-1, label_smoothing=0.2),
                 (7, 5, 3), lambda r, s, d: _classes(r, s, d, ignore=-1)),
        LossCase("CrossEntropyLoss(probability targets)", lambda d, r: nn.CrossEntropyLoss(label_smoothing=0.1),
                 (7, 5, 3), _soft_classes),
    ]
    return cases


def run_loss_case(case: LossCase, dtype: np.dtype, seed: int = 0) -> List[Comparison]:
    """Loss value and dL/dinput for a random ``grad_output`` (per element for ``'none'``), both sides."""
    rng = np.random.default_rng(seed)
    loss = case.build(dtype, rng)
    twin = to_torch(loss)
    x = (case.logits_scale * rng.normal(size=case.shape)).astype(dtype)
    if case.target is _probabilities or type(loss).__name__ == "BCELoss":
        x = _probabilities(rng, case.shape, dtype)  # BCELoss takes probabilities
    if type(loss).__name__ == "NLLLoss":
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))  # log-probabilities
    target = case.target(rng, case.shape, dtype)
    value = loss(x, target)
    grad_output = (rng.normal(size=np.shape(value)) if loss.reduction == "none" else rng.normal())
    grad_output = np.asarray(grad_output, dtype=dtype)
    dx = loss.backward(grad_output if loss.reduction == "none" else grad_output[()])
    xt = to_tensor(x).requires_grad_(True)
    tvalue = twin(xt, torch.from_numpy(np.array(target, copy=True)))
    tvalue.backward(to_tensor(grad_output))
    return [compare("loss", np.asarray(value, dtype=dtype), to_numpy(tvalue.detach())),
            compare("dinput", dx, to_numpy(xt.grad))]


# ---- optimizer trajectories ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimCase:
    """An optimizer configuration trained for ``steps`` mini-batch steps (``scheduler``: (class name, kwargs))."""

    component: str
    optimizer: type
    kwargs: Dict[str, Any]
    scheduler: Optional[Tuple[str, Dict[str, Any]]] = None
    steps: int = 150
    extra: Dict[str, Any] = field(default_factory=dict)


def optimizer_cases() -> List[OptimCase]:
    """Every optimizer option that changes the arithmetic; a high learning rate; a mid-run lr change."""
    c = OptimCase
    return [
        c("SGD", optim.SGD, {"lr": 0.1}),
        c("SGD(momentum, dampening)", optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
        c("SGD(nesterov, weight_decay)", optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                                      "weight_decay": 1e-2}),
        c("SGD(maximize) + StepLR", optim.SGD, {"lr": 0.05, "momentum": 0.5, "maximize": True},
          ("StepLR", {"step_size": 50, "gamma": 0.3})),
        c("SGD high lr", optim.SGD, {"lr": 1.0}),
        c("Adam", optim.Adam, {"lr": 1e-2}),
        c("Adam(amsgrad, weight_decay)", optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}),
        c("Adam + CosineAnnealingLR", optim.Adam, {"lr": 2e-2}, ("CosineAnnealingLR", {"T_max": 100})),
        c("AdamW(amsgrad)", optim.AdamW, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
        c("RMSprop(centered, momentum)", optim.RMSprop, {"lr": 1e-2, "centered": True, "momentum": 0.9}),
        c("RMSprop(alpha, weight_decay)", optim.RMSprop, {"lr": 1e-2, "alpha": 0.9, "weight_decay": 1e-2}),
        c("Adagrad(lr_decay, initial_accumulator_value)", optim.Adagrad,
          {"lr": 0.1, "lr_decay": 1e-2, "initial_accumulator_value": 0.1}),
    ]


def _mlp(dtype: np.dtype, rng: np.random.Generator) -> nn.Sequential:
    # The first Linear has no bias: before a BatchNorm its true gradient is 0 and the computed one is rounding
    # noise that differs between libraries, which adaptive optimizers would turn into real steps.
    return nn.Sequential(nn.Linear(4, 9, bias=False, dtype=dtype, rng=rng), nn.BatchNorm1d(9, dtype=dtype),
                         nn.ReLU(), nn.Dropout(0.2, rng=rng.spawn(1)[0]), nn.Linear(9, 3, dtype=dtype, rng=rng))


def _snapshot(params, bn, state, data) -> Dict[str, np.ndarray]:
    """Every parameter, running statistic and float optimizer-state entry, by name (either side)."""
    out = {f"param {name}": data(p) for name, p in params}
    out["buffer running_mean"], out["buffer running_var"] = data(bn.running_mean), data(bn.running_var)
    for name, p in params:
        for key, value in state.get(p, {}).items():
            out[f"state {name} {key}"] = data(value)
    return out


def run_optimizer_case(case: OptimCase, dtype: np.dtype, seed: int = 0) -> List[Comparison]:
    """Train both sides ``case.steps`` steps; the worst comparison per array over the whole run."""
    rng = np.random.default_rng(seed)
    x_all = rng.normal(size=(64, 4)).astype(dtype) * rng.uniform(0.5, 2.0, 4).astype(dtype)
    y_all = (x_all @ rng.normal(size=(4, 3))).argmax(axis=1)
    model = _mlp(dtype, rng)
    opt = case.optimizer(model.parameters(), **case.kwargs)
    sched = getattr(lr_scheduler, case.scheduler[0])(opt, **case.scheduler[1]) if case.scheduler else None
    twin = to_torch(model)
    twin_opt = to_torch_optimizer(opt, model, twin)
    twin_sched = to_torch_scheduler(sched, twin_opt) if sched is not None else None
    loss_fn, twin_loss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    ours_p, theirs_p = list(model.named_parameters()), list(twin.named_parameters())
    worst: Dict[str, Comparison] = {}
    for _ in range(case.steps):
        idx = rng.choice(len(x_all), 16, replace=False)
        opt.zero_grad()
        loss = loss_fn(model(x_all[idx]), y_all[idx])
        model.backward(loss_fn.backward())
        opt.step()
        twin_opt.zero_grad()
        twin_loss = twin_loss_fn(twin(to_tensor(x_all[idx])), torch.from_numpy(y_all[idx]))
        twin_loss.backward()
        twin_opt.step()
        for s in (sched, twin_sched):
            if s is not None:
                s.step()
        ours = _snapshot(ours_p, model[1], opt.state, lambda a: a.data if isinstance(a, nn.Parameter) else np.asarray(a))
        theirs = _snapshot(theirs_p, twin[1], twin_opt.state, lambda t: to_numpy(t.detach()))
        ours["loss"], theirs["loss"] = np.asarray(loss, dtype), to_numpy(twin_loss.detach())
        for name in sorted(set(ours) | set(theirs)):
            if name not in ours or name not in theirs:
                side = "handnn" if name not in ours else "torch"
                worst[name] = Comparison(name, "-", np.inf, np.inf, 1, 1, f"absent in {side}")
                continue
            result = compare(name, ours[name], theirs[name])
            if name not in worst or (result.mismatches, result.max_rel) > (worst[name].mismatches,
                                                                             worst[name].max_rel):
                worst[name] = result
    return list(worst.values())
