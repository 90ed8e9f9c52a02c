"""The parity report's loss and optimizer sections.

Losses: every handnn loss and option against torch's, on random inputs and targets: the loss value and dL/dinput
for a seeded random ``grad_output``. Optimizers: a small MLP (Linear, BatchNorm1d, ReLU, Dropout, Linear) trained on
mini-batches side by side with its torch twin (the same dropout masks), comparing after every step every parameter,
every running statistic and every optimizer state entry; the table shows the worst error over the run.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Tuple

import numpy as np
import torch

from handnn import init, nn

from .cases import InitCase, LossCase, OptimCase, loss_input, trajectory_data
from .diagnosis import diagnose
from .optim import to_torch_optimizer, to_torch_scheduler
from .runs import Trainer, compare_dicts, loss_run, snapshot, worst
from .stats import ks_2samp
from .tolerances import Comparison, compare
from .twin import TORCH_DTYPES, to_numpy, to_tensor, to_torch


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
    """Loss value and dL/dinput; a mismatch with its likely cause (e.g. a sum where torch takes the mean)."""
    trace = trace_loss(case, dtype, seed)
    x = trace.x
    # the count a 'mean' divides by: every element, or (class losses) every position of the class axis' complement
    n = x.size // x.shape[1] if any(k in case.component for k in ("CrossEntropy", "NLL")) else x.size
    return [c if c.passed or c.problem else
            replace(c, cause=diagnose(c.name, trace.ours[c.name], trace.theirs[c.name], n=n) or "")
            for c in compare_dicts(trace.ours, trace.theirs)]


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
    first_grads: Dict[str, np.ndarray]  # every parameter's gradient at the first step (both sides share it)


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
                       [], [], {})
    for i in range(case.steps):
        idx = trace.batches[i] = rng.choice(len(x_all), 16, replace=False)
        trace.ours.append(ours.step(x_all[idx], y_all[idx]))
        trace.masks[i] = ours.model[3].mask
        if i == 0:
            trace.first_grads = {name: p.grad.copy() for name, p in ours.params}
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
    """The worst comparison per array over the whole run. A parameter already wrong after the first step gets its
    likely cause (dampening on the first momentum step, Adam without bias correction, ...): until then both sides
    saw the same gradient, so the update rule alone explains the difference."""
    trace = trace_optimizer(case, dtype, seed)
    first = [_with_cause(c, case, trace) for c in compare_dicts(trace.ours[0], trace.theirs[0])]
    later = [c for a, b in zip(trace.ours[1:], trace.theirs[1:]) for c in compare_dicts(a, b)]
    causes = {c.name: c.cause for c in first if c.cause}
    return [replace(c, cause=causes.get(c.name, "")) if not c.passed else c for c in worst(first + later)]


def _with_cause(c: Comparison, case: OptimCase, trace: OptimTrace) -> Comparison:
    if c.passed or c.problem or not c.name.startswith("param "):
        return c
    name = c.name[len("param "):]
    defaults = case.optimizer([nn.Parameter(np.zeros(1))], **case.kwargs).defaults  # torch's defaults filled in
    context = dict(defaults, kind=case.optimizer.__name__, param0=trace.state[name],
                   grads=trace.first_grads[name][None])
    return replace(c, cause=diagnose(c.name, trace.ours[0][c.name], trace.theirs[0][c.name], **context) or "")


# ---- initialisers --------------------------------------------------------------------------------------------------
#: a distribution check fails below this KS p-value; the seeds are fixed, so the outcome is deterministic
KS_ALPHA = 1e-3


def init_samples(case: InitCase, dtype: np.dtype, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One tensor of ``case.shape`` from handnn (numpy generator seeded ``seed``) and one from torch (manual_seed)."""
    ours = np.empty(case.shape, dtype)
    getattr(init, case.name)(ours, **case.kwargs, rng=np.random.default_rng(seed))
    generator = torch.Generator().manual_seed(seed)
    theirs = torch.empty(case.shape, dtype=TORCH_DTYPES[np.dtype(dtype)])
    getattr(torch.nn.init, case.name)(theirs, **case.kwargs, generator=generator)
    return ours, to_numpy(theirs)


def _support(name: str, sample: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> Comparison:
    """How far (max abs) and how many of ``sample`` fall outside [lo, hi]."""
    outside = int(np.count_nonzero((sample < lo) | (sample > hi)))
    excess = max(0.0, lo - float(sample.min()), float(sample.max()) - hi)
    return Comparison(name, str(np.dtype(dtype)), excess, float("nan"), outside, sample.size)


def run_init_case(case: InitCase, dtype: np.dtype, seed: int = 0) -> List[Comparison]:
    """Same distribution (two-sample KS test); for bounded ones the same support; for orthogonal_ the same Gram
    matrix (gain²·I)."""
    ours, theirs = init_samples(case, dtype, seed)
    ks = ks_2samp(ours, theirs)
    results = [Comparison(f"distribution: KS D (p = {ks.pvalue:.2g})", str(np.dtype(dtype)), ks.statistic,
                          float("nan"), int(ks.pvalue < KS_ALPHA), 1)]
    if case.name == "trunc_normal_":  # the documented support [a, b], exactly
        lo, hi = case.kwargs.get("a", -2.0), case.kwargs.get("b", 2.0)
        results.append(_support("support within [a, b]", ours, lo, hi, dtype))
    elif case.name.endswith("uniform_"):
        # a flat density: torch's tens of thousands of draws reach within ~range/size of the true bounds, so
        # handnn's draws must lie in torch's range up to 1% of it
        lo, hi = float(theirs.min()), float(theirs.max())
        results.append(_support("support within torch's range", ours, lo - 0.01 * (hi - lo), hi + 0.01 * (hi - lo),
                                dtype))
    if case.name == "orthogonal_":
        flat_ours, flat_theirs = ours.reshape(ours.shape[0], -1), theirs.reshape(theirs.shape[0], -1)
        gram = (lambda q: q @ q.T) if flat_ours.shape[0] <= flat_ours.shape[1] else (lambda q: q.T @ q)
        results.append(compare("Gram matrix", gram(flat_ours), gram(flat_theirs)))
    return results
