"""Seed 003 (deeplearning.ai, "Optimization Methods"): mini-batch gradient descent, momentum and Adam on moons.

Setup (the assignment the seed completes): ``make_moons(300, noise=0.2)``; an MLP [2, 5, 2, 1] (ReLU, ReLU,
logits) with He initialisation; binary cross-entropy; mini-batches of 64 reshuffled every epoch, the last
partial batch kept (``random_mini_batches``); lr 0.0007 for 10 000 epochs; every optimizer from the same
initial weights and seeing the same batches. ``--iterations`` counts epochs here. The course's update rules
mapped onto torch's optimizers (exact, see ``docs/torch-semantics.md``):

- **mini-batch GD**: ``θ −= α·g`` is ``SGD(lr=α)``;
- **momentum**: ``v = βv + (1 − β)g; θ −= α·v`` is ``SGD(lr=α(1 − β), momentum=β)`` (torch's buffer is
  ``v / (1 − β)``; ``dampening=β`` is *not* equivalent, it differs on the first step);
- **Adam**: the course's bias-corrected ``θ −= α·v̂ / (sqrt(ŝ) + ε)`` is torch's ``Adam(lr=α, betas=(β1, β2), eps=ε)``.

Seed 003's conclusion, reproduced: Adam's accuracy is clearly the best (the course reports about 0.80 for GD and
momentum and 0.94 for Adam after 10 000 epochs).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import nn, optim
from ..data import make_moons
from . import _plot
from ._common import (NO_PROGRESS, Backend, Dataset, HandnnBackend, Progress, Result, run_binary_variants,
                      fmt_accuracy, fmt_loss, format_table, generator, mlp, normal_init,
                      train_epochs)

NAME = "optimizers"
SUMMARY = "seed 003: mini-batch GD / momentum / Adam on moons (He init, batches of 64)"
DEFAULT_ITERATIONS = 10_000
VARIANTS: Tuple[str, ...] = ("mini-batch GD", "momentum", "Adam")


@dataclass(frozen=True)
class Config:
    """deeplearning.ai's ``model(..., learning_rate=0.0007, mini_batch_size=64, beta=0.9, beta1=0.9,
    beta2=0.999, epsilon=1e-8, num_epochs=10000)``; ``iterations`` are epochs."""

    seed: int = 0
    iterations: int = DEFAULT_ITERATIONS
    n_train: int = 300
    n_test: int = 100
    noise: float = 0.2
    hidden: Tuple[int, ...] = (5, 2)
    lr: float = 0.0007
    batch_size: int = 64
    beta: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, but got {self.batch_size}")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"n_train and n_test must be positive, but got {self.n_train} and {self.n_test}")

    @property
    def sizes(self) -> Tuple[int, ...]:
        return (2, *self.hidden, 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--train", type=int, default=d.n_train, help="training points (default %(default)s)")
    parser.add_argument("--test", type=int, default=d.n_test, help="held-out points (default %(default)s)")
    parser.add_argument("--noise", type=float, default=d.noise, help="make_moons noise (default %(default)s)")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden), metavar="H",
                        help="hidden layer widths (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate α (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="mini-batch size (default %(default)s)")
    parser.add_argument("--beta", type=float, default=d.beta, help="momentum β (default %(default)s)")
    parser.add_argument("--beta1", type=float, default=d.beta1, help="Adam β1 (default %(default)s)")
    parser.add_argument("--beta2", type=float, default=d.beta2, help="Adam β2 (default %(default)s)")
    parser.add_argument("--eps", type=float, default=d.eps, help="Adam ε (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(seed=args.seed, iterations=args.iterations or DEFAULT_ITERATIONS, n_train=args.train,
                  n_test=args.test, noise=args.noise, hidden=tuple(args.hidden), lr=args.lr,
                  batch_size=args.batch_size, beta=args.beta, beta1=args.beta1, beta2=args.beta2, eps=args.eps)


def load_data(config: Config) -> Dataset:
    """Training moons, and an independent held-out draw (the course only reports the training accuracy)."""
    x_train, y_train = make_moons(config.n_train, shuffle=True, noise=config.noise,
                                  rng=generator(config.seed, "data"))
    x_test, y_test = make_moons(config.n_test, shuffle=True, noise=config.noise,
                                rng=generator(config.seed, "test-data"))
    return Dataset(x_train, y_train, x_test, y_test)


def make_optimizer(config: Config, variant: str, params) -> optim.Optimizer:
    """The torch optimizer equal to the course's update rule (see the module docstring)."""
    if variant == "mini-batch GD":
        return optim.SGD(params, lr=config.lr)
    if variant == "momentum":
        return optim.SGD(params, lr=config.lr * (1 - config.beta), momentum=config.beta)
    if variant == "Adam":
        return optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)
    raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")


def build(config: Config, variant: str) -> Tuple[nn.Module, nn.Module, optim.Optimizer]:
    """The He-initialised model (the same for every variant), its loss and the variant's optimizer."""
    model = mlp(config.sizes, rng=generator(config.seed, "init"))
    normal_init(model, generator(config.seed, "init"), std=lambda fan_in: math.sqrt(2.0 / fan_in))
    return model, nn.BCEWithLogitsLoss(), make_optimizer(config, variant, model.parameters())


def run(config: Config, backend: Optional[Backend] = None, progress: Progress = NO_PROGRESS,
        variants: Sequence[str] = VARIANTS) -> Result:
    """Train with each optimizer for ``config.iterations`` epochs; the loss recorded is each epoch's mean."""
    backend = backend or HandnnBackend()
    start = time.perf_counter()
    data = load_data(config)

    def train(variant: str, target: np.ndarray):
        trainer = backend.trainer(*build(config, variant))
        return trainer, train_epochs(trainer, data.x_train, target, config.iterations, config.batch_size,
                                     generator(config.seed, "batches"), progress, f"{NAME} [{backend.name}] {variant}")

    return run_binary_variants(NAME, config, backend, data, variants, train, start)


def describe(config: Config) -> str:
    c = config
    return (f"{NAME} (seed 003): make_moons({c.n_train}, noise={c.noise}) (+ {c.n_test} held out), "
            f"MLP {list(c.sizes)} (ReLU, He init), BCE on logits, mini-batches of {c.batch_size}, "
            f"lr {c.lr}, {c.iterations} epochs, --seed {c.seed}")


def table(result: Result, *, reported: bool = True) -> str:
    """optimizer | final epoch loss | train acc | test acc."""
    rows = [[r.name, fmt_loss(r.losses[-1]), fmt_accuracy(r.train_accuracy), fmt_accuracy(r.test_accuracy)]
            for r in result.runs]
    return format_table(["optimizer", "final loss", "train acc", "test acc"], rows)


def notes(config: Config) -> str:
    c = config
    return "\n".join([
        f"mini-batch GD: θ −= α·g  ≡  SGD(lr={c.lr:g})",
        f"momentum:      v = βv + (1 − β)g, θ −= α·v (β = {c.beta:g})  ≡  "
        f"SGD(lr=α(1 − β) = {c.lr * (1 - c.beta):.6g}, momentum={c.beta:g})",
        f"Adam:          θ −= α·v̂/(sqrt(ŝ) + ε), v̂, ŝ bias-corrected  ≡  "
        f"Adam(lr={c.lr:g}, betas=({c.beta1:g}, {c.beta2:g}), eps={c.eps:g})",
    ])


def plot(result: Result, directory: Path, suffix: str = "") -> List[Path]:
    """``optimizers_loss{suffix}.png`` (per epoch) and ``optimizers_boundaries{suffix}.png``."""
    return [_plot.loss_curves(result, directory / f"{NAME}_loss{suffix}.png", xlabel="epoch"),
            _plot.decision_boundaries(result, directory / f"{NAME}_boundaries{suffix}.png")]
