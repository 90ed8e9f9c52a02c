"""The handnn half of every parity check — numpy only.

A *trace* is what one battery case did: the inputs, upstream gradients and dropout masks of every step, and each
side's results. The report (``reference.report``, ``reference.battery``) records traces with torch live; the golden
fixtures store the inputs and torch's results; :func:`replay_layer`, :func:`replay_loss` and :func:`replay_optimizer`
run handnn alone on the stored inputs, so the results can be compared where torch is not installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from handnn import nn
from handnn.optim import lr_scheduler

from .calls import backward_first, call, first
from .cases import Case, LossCase, OptimCase, mlp
from .tolerances import Comparison, compare


@dataclass
class Run:
    """One forward/backward snapshot: output, input gradient, parameter gradients, buffers."""

    out: np.ndarray
    dx: Optional[np.ndarray]
    grads: Dict[str, np.ndarray] = field(default_factory=dict)
    buffers: Dict[str, np.ndarray] = field(default_factory=dict)


def run_handnn(module: nn.Module, x: np.ndarray, dout: Optional[np.ndarray]) -> Run:
    """Forward ``x`` (and backward ``dout`` unless None) through a handnn module, from zeroed gradients."""
    module.zero_grad()
    outputs = call(module, x)
    dx = backward_first(module, outputs, dout) if dout is not None else None
    out = first(outputs)
    grads = {name: p.grad.copy() for name, p in module.named_parameters() if p.grad is not None}
    buffers = {name: np.array(b, copy=True) for name, b in module.named_buffers()}
    return Run(np.array(out, copy=True), None if dx is None else np.array(dx, copy=True), grads, buffers)


def compare_runs(ours: Run, theirs: Run, prefix: str = "") -> List[Comparison]:
    """Compare output, dx, every gradient and every buffer; a key present on one side only is a mismatch."""
    results = [compare(prefix + "out", ours.out, theirs.out)]
    if theirs.dx is not None:
        results.append(compare(prefix + "dx", ours.dx, theirs.dx))
    for kind, a, b in (("grad", ours.grads, theirs.grads), ("buffer", ours.buffers, theirs.buffers)):
        results += compare_dicts(a, b, prefix=f"{prefix}{kind} ")
    return results


def compare_dicts(ours: Dict[str, np.ndarray], theirs: Dict[str, np.ndarray], prefix: str = "") -> List[Comparison]:
    """Compare two name → array maps key by key (sorted); a key on one side only is a mismatch."""
    results = []
    for name in sorted(set(ours) | set(theirs)):
        if name not in ours or name not in theirs:
            missing = "handnn" if name not in ours else "torch"
            results.append(Comparison(prefix + name, "-", np.inf, np.inf, 1, 1, f"absent in {missing}"))
        else:
            results.append(compare(prefix + name, ours[name], theirs[name]))
    return results


def failures(results: List[Comparison]) -> str:
    """The report lines of the failed comparisons ('' when all passed)."""
    return "\n".join(str(r) for r in results if not r.passed)


def worst(results: Sequence[Comparison]) -> List[Comparison]:
    """The worst comparison per check name (first-seen order): most mismatches, then largest relative error."""
    kept: Dict[str, Comparison] = {}
    for r in results:
        if r.name not in kept or _badness(r) > _badness(kept[r.name]):
            kept[r.name] = r
    return list(kept.values())


def _badness(c: Comparison) -> Tuple[int, float]:
    return (c.mismatches + (1 if c.problem else 0), c.max_rel)


# ---- layers --------------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One step's inputs: mode, input, upstream gradient, and each training Dropout's keep-mask in module order."""

    training: bool
    x: np.ndarray
    dout: np.ndarray
    masks: List[np.ndarray] = field(default_factory=list)


def dropouts(module: nn.Module) -> List[nn.Module]:
    """The module's Dropout and Dropout2d layers, in order: each one's mask is recorded and replayed."""
    return [m for m in module.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]


def layer_step(module: nn.Module, step: Step) -> Run:
    """Set the mode, inject the step's masks, run forward and backward."""
    module.train(step.training)
    for layer, mask in zip(dropouts(module), step.masks):
        layer.use_mask(mask)
    return run_handnn(module, step.x, step.dout)


def step_masks(module: nn.Module) -> List[np.ndarray]:
    """The keep-masks the module's Dropouts applied in the last (training) forward."""
    return [layer.mask.copy() for layer in dropouts(module) if layer.training and layer.mask is not None]


def layer_comparisons(steps: Sequence[Step], ours: Sequence[Run], theirs: Sequence[Run]) -> List[Comparison]:
    """The worst comparison per check over the steps (eval checks prefixed 'eval ')."""
    return worst([c for step, a, b in zip(steps, ours, theirs)
                  for c in compare_runs(a, b, prefix="" if step.training else "eval ")])


def replay_layer(case: Case, dtype: np.dtype, state: Dict[str, np.ndarray], steps: Sequence[Step]) -> List[Run]:
    """handnn alone on recorded steps, from the recorded state (parameters and buffers)."""
    module = case.build(np.dtype(dtype), np.random.default_rng(0))
    module.load_state_dict(state)
    return [layer_step(module, step) for step in steps]


# ---- losses ----------------------------------------------------------------------------------------------------
def loss_run(loss: nn.Module, x: np.ndarray, target: np.ndarray, grad_output: np.ndarray) -> Dict[str, np.ndarray]:
    """The loss value and dL/dinput for ``grad_output`` (per element for ``reduction='none'``)."""
    value = loss(x, target)
    dx = loss.backward(grad_output if loss.reduction == "none" else grad_output[()])
    return {"loss": np.asarray(value, dtype=x.dtype), "dinput": np.array(dx, copy=True)}


def replay_loss(case: LossCase, dtype: np.dtype, state: Dict[str, np.ndarray], x: np.ndarray, target: np.ndarray,
                grad_output: np.ndarray) -> Dict[str, np.ndarray]:
    loss = case.build(np.dtype(dtype), np.random.default_rng(0))
    loss.load_state_dict(state)
    return loss_run(loss, x, target, grad_output)


# ---- optimizer trajectories --------------------------------------------------------------------------------------
def snapshot(params, bn, state, data: Callable) -> Dict[str, np.ndarray]:
    """Every parameter, running statistic and float optimizer-state entry, by name (either side)."""
    out = {f"param {name}": data(p) for name, p in params}
    out["buffer running_mean"], out["buffer running_var"] = data(bn.running_mean), data(bn.running_var)
    for name, p in params:
        for key, value in state.get(p, {}).items():
            out[f"state {name} {key}"] = data(value)
    return out


def _data(a) -> np.ndarray:
    return np.array(a.data if isinstance(a, nn.Parameter) else a, copy=True)


class Trainer:
    """The handnn side of an optimizer trajectory: the battery's MLP, the case's optimizer and scheduler."""

    def __init__(self, case: OptimCase, dtype: np.dtype, rng: np.random.Generator) -> None:
        self.model = mlp(np.dtype(dtype), rng)
        self.opt = case.optimizer(self.model.parameters(), **case.kwargs)
        self.sched = (getattr(lr_scheduler, case.scheduler[0])(self.opt, **case.scheduler[1])
                      if case.scheduler else None)
        self.loss_fn = nn.CrossEntropyLoss()
        self.params = list(self.model.named_parameters())

    def step(self, x: np.ndarray, y: np.ndarray, mask: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """One mini-batch step (with the given dropout mask, else a drawn one); the snapshot after it."""
        if mask is not None:
            self.model[3].use_mask(mask)
        self.opt.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward())
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        out = snapshot(self.params, self.model[1], self.opt.state, _data)
        out["loss"] = np.asarray(loss, x.dtype)
        return out


def replay_optimizer(case: OptimCase, dtype: np.dtype, state: Dict[str, np.ndarray], x_all: np.ndarray,
                     y_all: np.ndarray, batches: np.ndarray, masks: np.ndarray,
                     keep: Sequence[int]) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """handnn alone over a recorded trajectory: yield (step, snapshot) for the steps in ``keep`` (1-based)."""
    trainer = Trainer(case, dtype, np.random.default_rng(0))
    trainer.model.load_state_dict(state)
    wanted = set(keep)
    for step, (idx, mask) in enumerate(zip(batches, masks), start=1):
        snap = trainer.step(x_all[idx], y_all[idx], mask)
        if step in wanted:
            yield step, snap
