"""The torch backend of ``handnn.experiments`` (``handnn-experiment NAME --backend torch``).

handnn never imports torch; ``handnn.experiments.load_backend("torch")`` imports this module by name. An
experiment builds the *same* handnn model, loss and optimizer for either backend (same seed, same initial
weights) and hands them to ``backend.trainer``; here they become torch twins:

- the model through :func:`reference.to_torch` (parameters and buffers copied; each handnn ``Dropout`` becomes a
  ``MaskedDropout`` applying the handnn layer's mask), the loss through ``to_torch`` too, the optimizer through
  :func:`reference.optim.to_torch_optimizer` (same class, hyper-parameters and state);
- dropout masks: before every training forward of a ``MaskedDropout``, a pre-hook makes the handnn ``Dropout`` it
  came from draw its next mask (from its own generator, in the same order as in a handnn run), so both runs drop
  the same units at every step;
- an L2 penalty ``(l2/2)·ΣW²`` over the same Linear weights is added to the torch loss and differentiated by
  autograd.

The data, the mini-batch order and everything else come from the experiment's own seeded generators, which
are the same for both backends. :func:`compare_results` lines up two results under the tolerance table.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from handnn import nn, optim
from handnn.experiments._common import Result, Run, format_table
from handnn.experiments.charlm import CharLM
from handnn.regularization import decay_parameters

from .optim import to_torch_optimizer
from .tolerances import Comparison, compare, tolerance
from .twin import CUSTOM_TWINS, NUMPY_DTYPES, MaskedDropout, to_numpy, to_tensor, to_torch


def _draw_handnn_mask(module: MaskedDropout, inputs: Tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook: the handnn Dropout behind ``module`` draws the mask of this step, exactly as its own
    training forward would (``MaskedDropout`` then applies ``source.mask``)."""
    if module.training and 0.0 < module.p < 1.0:
        module.source.train(True)
        # the input's shape and dtype: the handnn layer draws its mask in the input's dtype
        module.source(np.ones(tuple(inputs[0].shape), dtype=NUMPY_DTYPES[inputs[0].dtype]))


class TorchCharLM(torch.nn.Module):
    """The torch twin of :class:`handnn.experiments.charlm.CharLM`: the same three children, the same forward."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.embedding, self.rnn, self.head = (to_torch(m) for m in (model.embedding, model.rnn, model.head))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embedding(tokens))
        return self.head(out.reshape(-1, out.shape[-1]))


CUSTOM_TWINS[CharLM] = TorchCharLM


class TorchTrainer:
    """The experiments' training loop on torch twins of a handnn model, loss and optimizer."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: optim.Optimizer, *, l2: float = 0.0,
                 max_norm: Optional[float] = None) -> None:
        self.twin = to_torch(model)
        self.loss_fn = to_torch(loss_fn)
        self.optimizer = to_torch_optimizer(optimizer, model, self.twin)
        self.l2 = l2
        self.max_norm = max_norm
        names = {id(p): name for name, p in model.named_parameters()}
        twin_params = dict(self.twin.named_parameters())
        self.penalised = [twin_params[names[id(p)]] for p in decay_parameters(model)] if l2 else []
        for module in self.twin.modules():
            if isinstance(module, MaskedDropout):
                module.register_forward_pre_hook(_draw_handnn_mask)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss_fn(self.twin(to_tensor(x)), to_tensor(y))
        if self.l2:
            loss = loss + (self.l2 / 2) * sum((w * w).sum() for w in self.penalised)
        loss.backward()
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.twin.parameters(), self.max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.item()

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.twin.eval()
        try:
            with torch.no_grad():
                return to_numpy(self.twin(to_tensor(x)))
        finally:
            self.twin.train()

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {name: to_numpy(value) for name, value in self.twin.state_dict().items()}


class TorchBackend:
    """Run an experiment on torch twins of the handnn objects it builds."""

    name = "torch"
    batch_norm_label = "torch autograd (F.batch_norm)"

    def __init__(self, num_threads: Optional[int] = 1) -> None:
        """``num_threads``: torch's intra-op threads for the run (``torch.set_num_threads``, process-wide). The
        experiments' networks are tiny: extra threads only add synchronisation (on 2 busy cores one thread
        makes a backward ~10x faster) and make reductions depend on the thread count. None leaves it alone."""
        if num_threads is not None:
            torch.set_num_threads(num_threads)

    def trainer(self, model: nn.Module, loss_fn: nn.Module, optimizer: optim.Optimizer, *,
                l2: float = 0.0, max_norm: Optional[float] = None) -> TorchTrainer:
        return TorchTrainer(model, loss_fn, optimizer, l2=l2, max_norm=max_norm)

    def batch_norm_backward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, dout: np.ndarray,
                            eps: float) -> Tuple[Callable[[], Any], Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """torch's training-mode ``F.batch_norm`` and ``run()`` = autograd's backward of ``dout`` through it."""
        xt, wt, bt = (to_tensor(a).requires_grad_() for a in (x, weight, bias))
        out = torch.nn.functional.batch_norm(xt, None, None, wt, bt, training=True, eps=eps)
        upstream = to_tensor(dout)

        def run() -> Tuple[torch.Tensor, ...]:
            return torch.autograd.grad(out, (xt, wt, bt), upstream, retain_graph=True)

        dx, dw, db = run()
        return run, (to_numpy(dx), to_numpy(dw), to_numpy(db))

    def agreement(self, ours: Result, theirs: Result) -> str:
        """A table of the worst disagreement per run, under the tolerance table."""
        return agreement_table(ours, theirs)


def compare_run(ours: Run, theirs: Run) -> List[Comparison]:
    """Losses, accuracies, every final parameter and buffer, and the decision function of two runs."""
    prefix = f"{ours.name}: "
    results = [compare(prefix + "losses", ours.losses, theirs.losses),
               compare(prefix + "train accuracy", np.float64(ours.train_accuracy), np.float64(theirs.train_accuracy)),
               compare(prefix + "test accuracy", np.float64(ours.test_accuracy), np.float64(theirs.test_accuracy))]
    for key in sorted(set(ours.state) | set(theirs.state)):
        if key not in ours.state or key not in theirs.state:
            side = "handnn" if key not in ours.state else "torch"
            results.append(Comparison(prefix + key, "-", np.inf, np.inf, 1, 1, f"absent in {side}"))
        else:
            results.append(compare(prefix + key, ours.state[key], theirs.state[key]))
    if ours.grid_logits is not None or theirs.grid_logits is not None:
        results.append(compare(prefix + "grid logits", ours.grid_logits, theirs.grid_logits))
    return results


def compare_results(ours: Result, theirs: Result) -> List[Comparison]:
    """Every run of two results of the same experiment, matched by name (and the BatchNorm backward arrays)."""
    if [r.name for r in ours.runs] != [r.name for r in theirs.runs]:
        return [Comparison("runs", "-", np.inf, np.inf, 1, 1,
                           f"{[r.name for r in ours.runs]} != {[r.name for r in theirs.runs]}")]
    results = [c for a, b in zip(ours.runs, theirs.runs) for c in compare_run(a, b)]
    if "backward" in ours.extra and "backward" in theirs.extra:
        for label, a, b in zip(("dx", "dgamma", "dbeta"), ours.extra["backward"]["fused"],
                               theirs.extra["backward"]["fused"]):
            results.append(compare(f"batchnorm backward {label}", a, b))
    return results


def agreement_table(ours: Result, theirs: Result) -> str:
    """run | worst loss error | worst state error | accuracies equal | verdict, and the tolerance used."""
    comparisons = compare_results(ours, theirs)
    rows = []
    for run in ours.runs:
        mine = [c for c in comparisons if c.name.startswith(f"{run.name}: ")]
        losses = [c for c in mine if c.name.endswith(": losses")]
        accuracies = [c for c in mine if "accuracy" in c.name]
        state = [c for c in mine if c not in losses and c not in accuracies]
        rows.append([run.name, f"{max(c.max_rel for c in losses):.2g}", f"{max(c.max_abs for c in state):.2g}",
                     "yes" if all(c.passed for c in accuracies) else "NO",
                     "ok" if all(c.passed for c in mine) else "MISMATCH"])
    rtol, atol = tolerance(np.float64)
    failed = [str(c) for c in comparisons if not c.passed]
    lines = [f"handnn vs torch, under reference/tolerances.py (float64: rtol {rtol:g}, atol {atol:g}):",
             format_table(["run", "loss max rel", "params max abs", "same accuracies", "verdict"], rows)]
    extra = [c for c in comparisons if c.name.startswith("batchnorm backward")]
    if extra:
        lines.append("BatchNorm backward, fused vs autograd: " + ", ".join(
            f"{c.name.split()[-1]} max abs {c.max_abs:.2g} ({'ok' if c.passed else 'MISMATCH'})" for c in extra))
    if failed:
        lines.append(f"{len(failed)} mismatching comparisons (long runs can drift apart by rounding), the first:")
        lines += failed[:5]
    return "\n".join(lines)
