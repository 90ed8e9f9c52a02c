"""The parity report's loss and optimizer sections.

Losses: every handnn loss and option against torch's, on random inputs and targets: the loss value and dL/dinput
for a seeded random ``grad_output``. Optimizers: a small MLP (Linear, BatchNorm1d, ReLU, Dropout, Linear) trained on
mini-batches side by side with its torch twin (the same dropout masks), comparing after every step every parameter,
every running statistic and every optimizer state entry; the table shows the worst error over the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch

from .cases import LossCase, OptimCase, loss_input, trajectory_data
from .optim import to_torch_optimizer, to_torch_scheduler
from .runs import Trainer, compare_dicts, loss_run, snapshot, worst
from .tolerances import Comparison
from .twin import to_numpy, to_tensor, to_torch


@dataclass
class LossTrace:
    """A loss case run on both sides: its state (weights), input, target, upstream gradient and both results."""

    state: Dict[str, np.ndarray]
    x: np.ndarray
    target: np.ndarray
    grad_output: np.ndarray
    ours: Dict[str, np.ndarray]
    theirs: Dict[str, np.ndarray]


def trace_loss(case: LossCase, dtype: np.dtype, seed: int = 0) -> LossTrace:
    """Loss value and dL/dinput for a random ``grad_output`` (per element for ``'none'``), both sides."""
    rng = np.random.default_rng(seed)
    loss = case.build(dtype, rng)
    twin = to_torch(loss)
    x = loss_input(case, loss, rng, dtype)
    target = case.target(rng, case.shape, dtype)
    value_shape = () if loss.reduction != "none" else np.shape(loss(x, target))
    grad_output = np.asarray(rng.normal(size=value_shape) if value_shape else rng.normal(), dtype=dtype)
    ours = loss_run(loss, x, target, grad_output)
    xt = to_tensor(x).requires_grad_(True)
    tvalue = twin(xt, torch.from_numpy(np.array(target, copy=True)))
    tvalue.backward(to_tensor(grad_output))
    theirs = {"loss": to_numpy(tvalue.detach()), "dinput": to_numpy(xt.grad)}
    state = {k: np.array(v, copy=True) for k, v in loss.state_dict().items()}
    return LossTrace(state, x, target, grad_output, ours, theirs)


def run_loss_case(case: LossCase, dtype: np.dtype, seed: int = 0) -> List[Comparison]:
    trace = trace_loss(case, dtype, seed)
    return compare_dicts(trace.ours, trace.theirs)


@dataclass
class OptimTrace:
    """An optimizer trajectory on both sides: data, starting state, each step's batch and mask, both snapshots."""

    state: Dict[str, np.ndarray]
    x_all: np.ndarray
    y_all: np.ndarray
    batches: np.ndarray
    masks: np.ndarray
    ours: List[Dict[str, np.ndarray]]
    theirs: List[Dict[str, np.ndarray]]


def trace_optimizer(case: OptimCase, dtype: np.dtype, seed: int = 0) -> OptimTrace:
    """Train both sides ``case.steps`` mini-batch steps with the same batches and dropout masks."""
    rng = np.random.default_rng(seed)
    x_all, y_all = trajectory_data(rng, dtype)
    ours = Trainer(case, dtype, rng)
    state = {k: np.array(v, copy=True) for k, v in ours.model.state_dict().items()}
    twin = to_torch(ours.model)
    twin_opt = to_torch_optimizer(ours.opt, ours.model, twin)
    twin_sched = to_torch_scheduler(ours.sched, twin_opt) if ours.sched is not None else None
    twin_loss_fn = torch.nn.CrossEntropyLoss()
    twin_params = list(twin.named_parameters())
    trace = OptimTrace(state, x_all, y_all, np.zeros((case.steps, 16), np.int64), np.zeros((case.steps, 16, 9), bool),
                       [], [])
    for i in range(case.steps):
        idx = trace.batches[i] = rng.choice(len(x_all), 16, replace=False)
        trace.ours.append(ours.step(x_all[idx], y_all[idx]))
        trace.masks[i] = ours.model[3].mask
        twin_opt.zero_grad()
        twin_loss = twin_loss_fn(twin(to_tensor(x_all[idx])), torch.from_numpy(y_all[idx]))
        twin_loss.backward()
        twin_opt.step()
        if twin_sched is not None:
            twin_sched.step()
        theirs = snapshot(twin_params, twin[1], twin_opt.state, lambda t: to_numpy(t.detach()))
        theirs["loss"] = to_numpy(twin_loss.detach())
        trace.theirs.append(theirs)
    return trace


def run_optimizer_case(case: OptimCase, dtype: np.dtype, seed: int = 0) -> List[Comparison]:
    """The worst comparison per array over the whole run."""
    trace = trace_optimizer(case, dtype, seed)
    return worst([c for a, b in zip(trace.ours, trace.theirs) for c in compare_dicts(a, b)])
