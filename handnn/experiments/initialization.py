"""Seed 003 (deeplearning.ai, "Initialization"): zeros, large random and He initialisation of a 3-layer ReLU network.

Setup (the assignment the seed completes): ``make_circles`` with noise 0.05, 300 training and 100 test points
drawn separately; an MLP [2, 10, 5, 1] (ReLU, ReLU, logits), binary cross-entropy, full-batch gradient descent
at lr 0.01 for 15 000 iterations. The initialisations (weights drawn in torch's (out, in) layout, biases 0):

- **zeros**: every weight 0 — the symmetry is never broken: all hidden units stay equal (here, at 0), so the
  network predicts one class everywhere;
- **large random**: ``randn · 10`` — the logits start huge, the sigmoid saturates, learning is slow;
- **He**: ``randn · sqrt(2 / fan_in)`` (torch's ``kaiming_normal_(mode='fan_in', nonlinearity='relu')``).

Seed 003's conclusion, reproduced: zeros fail, large random is mediocre, He is best. (The course computes the
loss from ``sigmoid`` outputs, which is ``inf`` for the large initialisation's saturated logits; handnn's
``BCEWithLogitsLoss`` is finite for any logit, as torch's is.)
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
from ..data import make_circles
from . import _plot
from ._common import (NO_PROGRESS, Backend, Dataset, HandnnBackend, Progress, Result, run_binary_variants,
                      fmt_accuracy, fmt_loss, format_table, generator, mlp, normal_init,
                      train_full_batch, zeros_init)

NAME = "initialization"
SUMMARY = "seed 003: zeros / large random (x10) / He initialisation of a 3-layer ReLU network on circles"
DEFAULT_ITERATIONS = 15_000
VARIANTS: Tuple[str, ...] = ("zeros", "large random", "He")


@dataclass(frozen=True)
class Config:
    """deeplearning.ai's ``model(X, Y, learning_rate=0.01, num_iterations=15000)`` on ``load_dataset()``."""

    seed: int = 0
    iterations: int = DEFAULT_ITERATIONS
    n_train: int = 300
    n_test: int = 100
    noise: float = 0.05
    hidden: Tuple[int, ...] = (10, 5)
    lr: float = 0.01
    large_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"n_train and n_test must be positive, but got {self.n_train} and {self.n_test}")

    @property
    def sizes(self) -> Tuple[int, ...]:
        return (2, *self.hidden, 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--train", type=int, default=d.n_train, help="training points (default %(default)s)")
    parser.add_argument("--test", type=int, default=d.n_test, help="test points (default %(default)s)")
    parser.add_argument("--noise", type=float, default=d.noise, help="make_circles noise (default %(default)s)")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden), metavar="H",
                        help="hidden layer widths (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--large-scale", type=float, default=d.large_scale,
                        help="the 'large random' factor on randn (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(seed=args.seed, iterations=args.iterations or DEFAULT_ITERATIONS, n_train=args.train,
                  n_test=args.test, noise=args.noise, hidden=tuple(args.hidden), lr=args.lr,
                  large_scale=args.large_scale)


def load_data(config: Config) -> Dataset:
    """Training and test circles from two independent draws (the course seeds them 1 and 2)."""
    x_train, y_train = make_circles(config.n_train, shuffle=True, noise=config.noise,
                                    rng=generator(config.seed, "data"))
    x_test, y_test = make_circles(config.n_test, shuffle=True, noise=config.noise,
                                  rng=generator(config.seed, "test-data"))
    return Dataset(x_train, y_train, x_test, y_test)


def build(config: Config, variant: str) -> Tuple[nn.Module, nn.Module, optim.Optimizer]:
    """The initialised model, its loss and plain gradient descent (``SGD(lr)``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    model = mlp(config.sizes, rng=generator(config.seed, "init"))
    if variant == "zeros":
        zeros_init(model)
    elif variant == "large random":
        normal_init(model, generator(config.seed, "init"), std=lambda fan_in: config.large_scale)
    else:
        normal_init(model, generator(config.seed, "init"), std=lambda fan_in: math.sqrt(2.0 / fan_in))
    return model, nn.BCEWithLogitsLoss(), optim.SGD(model.parameters(), lr=config.lr)


def run(config: Config, backend: Optional[Backend] = None, progress: Progress = NO_PROGRESS,
        variants: Sequence[str] = VARIANTS) -> Result:
    """Train the network from each initialisation for ``config.iterations`` full-batch steps."""
    backend = backend or HandnnBackend()
    start = time.perf_counter()
    data = load_data(config)

    def train(variant: str, target: np.ndarray):
        trainer = backend.trainer(*build(config, variant))
        return trainer, train_full_batch(trainer, data.x_train, target, config.iterations, progress,
                                         f"{NAME} [{backend.name}] {variant}")

    return run_binary_variants(NAME, config, backend, data, variants, train, start)


def describe(config: Config) -> str:
    c = config
    return (f"{NAME} (seed 003): make_circles(noise={c.noise}), {c.n_train} train / {c.n_test} test, "
            f"MLP {list(c.sizes)} (ReLU), BCE on logits, SGD lr {c.lr}, {c.iterations} full-batch iterations, "
            f"--seed {c.seed}")


def table(result: Result, *, reported: bool = True) -> str:
    """initialisation | initial loss | final loss | train acc | test acc."""
    rows = [[r.name, fmt_loss(r.losses[0]), fmt_loss(r.losses[-1]), fmt_accuracy(r.train_accuracy),
             fmt_accuracy(r.test_accuracy)] for r in result.runs]
    return format_table(["initialization", "first loss", "final loss", "train acc", "test acc"], rows)


def notes(config: Config) -> str:
    return "\n".join([
        "zeros:        W = 0, b = 0 (symmetry never broken)",
        f"large random: W = randn(out, in) · {config.large_scale:g}, b = 0",
        "He:           W = randn(out, in) · sqrt(2 / fan_in), b = 0 (kaiming_normal_, fan_in, relu)",
    ])


def plot(result: Result, directory: Path, suffix: str = "") -> List[Path]:
    """``initialization_loss{suffix}.png`` and ``initialization_boundaries{suffix}.png``."""
    return [_plot.loss_curves(result, directory / f"{NAME}_loss{suffix}.png"),
            _plot.decision_boundaries(result, directory / f"{NAME}_boundaries{suffix}.png")]
