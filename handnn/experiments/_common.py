"""What every experiment shares: seeded random streams, the training loop behind a backend, results, tables,
progress display and weight initialisation.

The training loop is reached through a *backend* so that the very same experiment (same data, same initial
weights, same dropout masks, same mini-batch order) runs either on handnn (:class:`HandnnBackend`, here) or on
torch twins (``reference.experiments.TorchBackend``, loaded only by ``--backend torch``: handnn never imports
torch). A backend turns a freshly built handnn model, loss and optimizer into a :class:`Trainer`.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, TextIO, Tuple

import numpy as np

from .. import functional as F
from .. import nn
from ..data import minibatches
from ..optim import Optimizer
from ..nn.utils import clip_grad_norm_
from ..regularization import decay_parameters, penalty, penalty_backward

#: independent random streams of one experiment, each a ``np.random.Generator`` built from ``(seed, stream id)``
STREAMS = {"data": 0, "init": 1, "dropout": 2, "batches": 3, "test-data": 4, "timing": 5, "split": 6}


def generator(seed: int, stream: str) -> np.random.Generator:
    """The generator of one named stream of an experiment run with ``--seed seed``.

    Streams are independent (``SeedSequence([seed, id])``), so e.g. the data do not change when a variant
    draws more dropout masks, and every variant of an experiment starts from the same initial weights by
    building its model from a fresh ``generator(seed, "init")`` (where the seeds reseed paddle's or NumPy's
    global generator, with 0 or 3, before each model).
    """
    return np.random.default_rng([seed, STREAMS[stream]])


# ---- training behind a backend -------------------------------------------------------------------------------
class Trainer(Protocol):
    """One model being trained: what an experiment needs from a backend."""

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One training step on ``(x, y)`` (train mode): forward, loss (+ penalty), backward, update.
        Returns the loss before the update (the penalised loss when an L2 penalty is set)."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The model's output on ``x`` in eval mode (dropout off, BatchNorm running statistics)."""

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters and buffers, keyed as torch keys them."""


class Backend(Protocol):
    """Where the experiments run: handnn itself, or torch twins of the same handnn objects."""

    name: str
    batch_norm_label: str  # what the BatchNorm backward comparison calls this backend's backward

    def trainer(self, model: nn.Module, loss_fn: nn.Module, optimizer: Optimizer, *, l2: float = 0.0,
                max_norm: Optional[float] = None) -> Trainer:
        """A trainer starting from ``model``'s current parameters and ``optimizer``'s hyper-parameters.
        ``l2`` adds ``(l2 / 2)·ΣW²`` over the Linear weights to the loss (``handnn.regularization``); ``max_norm``
        clips the gradients' total 2-norm before each update (``clip_grad_norm_``)."""

    def batch_norm_backward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, dout: np.ndarray,
                            eps: float) -> Tuple[Callable[[], Any], Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """A training-mode BatchNorm forward of ``x`` (N, D), then ``(run, (dx, dweight, dbias))``: ``run()``
        repeats only the backward of ``dout`` (what is timed), the arrays are its result."""


class HandnnTrainer:
    """The training loop on handnn modules: ``model.backward`` accumulates into ``.grad``, the optimizer
    updates, the gradients are reset to None (torch's ``zero_grad``). With ``max_norm``, the gradients are clipped
    to that total 2-norm before the update."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: Optimizer, *, l2: float = 0.0,
                 max_norm: Optional[float] = None) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.l2 = l2
        self.max_norm = max_norm
        self.penalised = decay_parameters(model) if l2 else []

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward())
        if self.l2:
            # the penalty is evaluated before the update, on the weights the gradient is taken at
            loss += penalty(self.penalised, l2=self.l2)
            penalty_backward(self.penalised, l2=self.l2)
        if self.max_norm is not None:
            clip_grad_norm_(self.model.parameters(), self.max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        try:
            return self.model(x)
        finally:
            self.model.train()

    def state_dict(self) -> Dict[str, np.ndarray]:
        return dict(self.model.state_dict())


class HandnnBackend:
    """Run the experiments on handnn (the default backend)."""

    name = "handnn"
    batch_norm_label = "fused (F.batch_norm_backward)"

    def trainer(self, model: nn.Module, loss_fn: nn.Module, optimizer: Optimizer, *,
                l2: float = 0.0, max_norm: Optional[float] = None) -> HandnnTrainer:
        return HandnnTrainer(model, loss_fn, optimizer, l2=l2, max_norm=max_norm)

    def batch_norm_backward(self, x, weight, bias, dout, eps):
        _, cache = F.batch_norm_forward(x, None, None, weight, bias, training=True, eps=eps)
        return (lambda: F.batch_norm_backward(dout, cache)), F.batch_norm_backward(dout, cache)


# ---- results ---------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A binary-classification data set split in two; ``y`` are class indices (int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Labels as BCE targets: float column (N, 1) in the data's dtype."""
        return y.astype(self.x_train.dtype).reshape(-1, 1)


@dataclass
class Run:
    """One trained model: what the tables and plots show and what the parity tests compare.

    losses : (iterations,) the loss at every recorded step (every iteration, or every epoch for optimizers)
    train_accuracy, test_accuracy : fractions in [0, 1]
    state : final parameters and buffers (state_dict keys)
    grid_logits : the decision function on :func:`decision_grid`'s points, for the decision-boundary plots
    """

    name: str
    losses: np.ndarray
    train_accuracy: float
    test_accuracy: float
    state: Dict[str, np.ndarray]
    grid_logits: Optional[np.ndarray] = None


@dataclass
class Result:
    """Every run of one experiment on one backend, with the data (for plots) and the wall time."""

    experiment: str
    backend: str
    config: Any
    runs: List[Run]
    data: Optional[Dataset] = None
    grid: Optional[Tuple[np.ndarray, np.ndarray]] = None
    seconds: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def run(self, name: str) -> Run:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(f"no run named {name!r}; runs: {[r.name for r in self.runs]}")


def binary_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``(logits > 0) == y``; ``logits`` (N, 1), ``y`` (N,) class indices (the seeds' rule)."""
    return float(np.mean((logits.reshape(-1) > 0) == (y.reshape(-1) == 1)))


def class_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``argmax(logits, 1) == y``; ``logits`` (N, C), ``y`` (N,)."""
    return float(np.mean(np.argmax(logits, axis=1) == y))


def decision_grid(x: np.ndarray, points: int = 200, margin: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """A ``points × points`` grid over the bounding box of ``x`` (N, 2) widened by ``margin``.

    Returns ``(axes, coords)``: ``axes`` (2, points) the two linspaces, ``coords`` (points², 2) every point, in
    the row-major order of ``np.meshgrid(axes[0], axes[1])``.
    """
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    axes = np.stack([np.linspace(lo[0], hi[0], points), np.linspace(lo[1], hi[1], points)])
    g0, g1 = np.meshgrid(axes[0], axes[1])
    return axes, np.column_stack([g0.ravel(), g1.ravel()]).astype(x.dtype)


def train_full_batch(trainer: Trainer, x: np.ndarray, y: np.ndarray, iterations: int, progress: "Progress",
                     label: str) -> np.ndarray:
    """``iterations`` full-batch steps; returns the loss of every step, shape (iterations,)."""
    losses = np.empty(iterations)
    progress.start(label, iterations)
    for i in range(iterations):
        losses[i] = trainer.step(x, y)
        progress.update(i)
    progress.finish()
    return losses


def train_epochs(trainer: Trainer, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
                 rng: np.random.Generator, progress: "Progress", label: str) -> np.ndarray:
    """``epochs`` passes of shuffled mini-batches (the last partial batch kept, seed 003's
    ``random_mini_batches``). Returns each epoch's mean loss per sample, shape (epochs,)."""
    losses = np.empty(epochs)
    progress.start(label, epochs)
    for epoch in range(epochs):
        total = 0.0
        for xb, yb in minibatches(x, y, batch_size, shuffle=True, rng=rng):
            total += trainer.step(xb, yb) * len(xb)
        losses[epoch] = total / len(x)
        progress.update(epoch)
    progress.finish()
    return losses


def train_steps(trainer: Trainer, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int,
                rng: np.random.Generator) -> np.ndarray:
    """``steps`` mini-batch steps over as many shuffled epochs as needed (CS231n's solver: the iteration count
    is what matters). Returns the loss of every step, shape (steps,)."""
    losses = np.empty(steps)
    done = 0
    while done < steps:
        for xb, yb in minibatches(x, y, batch_size, shuffle=True, rng=rng):
            losses[done] = trainer.step(xb, yb)
            done += 1
            if done == steps:
                break
    return losses


# ---- initialisation ------------------------------------------------------------------------------------------
def normal_init(model: nn.Module, rng: np.random.Generator, std: Callable[[int], float]) -> None:
    """Draw every Linear weight (out, in) as ``N(0, 1)·std(fan_in)`` and zero every bias, layer by layer.

    The seeds' initialisations: seed 004's ``std = 1``, deeplearning.ai's "large random" ``std = 10`` and He's
    ``std = sqrt(2 / fan_in)`` (torch's ``kaiming_normal_(mode='fan_in', nonlinearity='relu')``), CS231n's
    ``std = weight_scale``. The weights are drawn in torch's (out, in) layout, so the i-th layer's draw is the
    course's ``randn(n_l, n_{l-1})`` in the same order.
    """
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            out_features, in_features = layer.weight.shape
            layer.weight.data[...] = rng.standard_normal((out_features, in_features)) * std(in_features)
            if layer.bias is not None:
                layer.bias.data[...] = 0.0


def zeros_init(model: nn.Module) -> None:
    """Every Linear weight and bias set to 0 (deeplearning.ai's ``initialize_parameters_zeros``)."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.weight.data[...] = 0.0
            if layer.bias is not None:
                layer.bias.data[...] = 0.0


def mlp(sizes: Sequence[int], *, rng: np.random.Generator, dropout: float = 0.0,
        dropout_rng: Optional[np.random.Generator] = None, dtype=np.float64) -> nn.Sequential:
    """``Linear → ReLU [→ Dropout(p)]`` for every hidden layer, then a final ``Linear`` (logits).

    ``sizes`` = [in, hidden..., out], e.g. seed 004's [2, 20, 3, 1]. The Linear layers draw torch's default
    initialisation from ``rng``; the experiments then overwrite it with the seed's (:func:`normal_init`, from a
    fresh generator of the "init" stream, so the weights do not depend on what the constructors drew).
    """
    layers: List[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out, dtype=dtype, rng=rng))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout, rng=dropout_rng))
    return nn.Sequential(*layers)


# ---- progress --------------------------------------------------------------------------------------------------
class Progress:
    """A one-line progress display on ``stream`` (stderr), redrawn at most every ``interval`` seconds.

    Callers report after every step with :meth:`update`; on long runs the clock is read only every 256 steps,
    so the cost per step is one integer test. Disabled (``enabled=False``) it does nothing at all.
    """

    def __init__(self, enabled: bool, stream: Optional[TextIO] = None, interval: float = 0.25) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._label = ""
        self._total = 0
        self._start = 0.0
        self._last = 0.0
        self._mask = 0

    @staticmethod
    def wanted(flag: bool, stream: Optional[TextIO] = None) -> bool:
        """Shown with ``--progress``, or by default when ``stream`` (stderr) is a terminal and not on CI."""
        stream = stream if stream is not None else sys.stderr
        if flag:
            return True
        return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")

    def start(self, label: str, total: int) -> None:
        self._label, self._total = label, total
        self._mask = 255 if total >= 4096 else 0
        self._start = self._last = time.perf_counter()
        self._draw(0)

    def update(self, done: int) -> None:
        if not self.enabled or done & self._mask:
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(done)

    def finish(self) -> None:
        if self.enabled:
            self._draw(self._total)
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, done: int) -> None:
        if not self.enabled:
            return
        percent = 100.0 * done / self._total if self._total else 100.0
        seconds = time.perf_counter() - self._start
        self.stream.write(f"\r{self._label}: {done}/{self._total} ({percent:3.0f}%) {seconds:6.1f} s")
        self.stream.flush()


NO_PROGRESS = Progress(False)


# ---- tables ----------------------------------------------------------------------------------------------------
def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A markdown table with every column padded to its widest cell.

    ``align`` gives one letter per column, ``l`` or ``r`` (default: the first column left, the rest right).
    """
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def side_by_side(left: str, right: str, *, titles: Tuple[str, str] = ("handnn", "torch"), gap: int = 4) -> str:
    """Two blocks of text next to each other, each under its title (the torch backend's output)."""
    a = [titles[0]] + left.splitlines()
    b = [titles[1]] + right.splitlines()
    width = max(len(s) for s in a)
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    return "\n".join((l.ljust(width + gap) + r).rstrip() for l, r in zip(a, b))


def fmt_accuracy(value: float) -> str:
    return f"{100 * value:.1f} %"


def fmt_loss(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) and abs(value) < 1e4 else f"{value:.3g}"


def run_binary_variants(name: str, config: Any, backend: Any, data: Any, variants: Sequence[str],
                        train: Callable[[str, Any], Tuple[Any, Sequence[float]]], start: float) -> "Result":
    """The binary-classification experiments' common loop: ``train(variant, targets) -> (trainer, losses)`` for
    each variant, then its train and test accuracy, final weights and logits over the decision grid."""
    axes, grid = decision_grid(data.x_train)
    target = data.targets(data.y_train)
    runs = []
    for variant in variants:
        trainer, losses = train(variant, target)
        runs.append(Run(variant, losses, binary_accuracy(trainer.logits(data.x_train), data.y_train),
                        binary_accuracy(trainer.logits(data.x_test), data.y_test), trainer.state_dict(),
                        trainer.logits(grid)))
    return Result(name, backend.name, config, runs, data, (axes, grid), time.perf_counter() - start)
