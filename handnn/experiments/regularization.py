"""Seed 004 (nndl, §7.6): an over-fitting MLP on noisy moons, and three regularisers that make it generalise.

Setup, as in the seed: ``make_moons(300, noise=0.5)``, the first 200 samples for training and the last 100 for
testing; an MLP [2, 20, 3, 1] with ReLU, logits out, weights ~ N(0, 1) and zero biases (the seed's
``MLP_3L``), binary cross-entropy on logits, full-batch gradient descent at lr 0.2 for 50 000 iterations,
every variant from the same initial weights. The variants, mapped onto handnn (= torch's conventions):

- **none**.
- **L2**: the seed adds ``λ/(2m)·ΣW²`` (λ = 0.7, m = 200, the Linear weights only) to the loss:
  ``handnn.regularization.penalty(l2=λ/m)`` with its gradient ``(λ/m)·W`` from ``penalty_backward``.
- **weight decay**: the seed's ``θ ← (1 − β)θ − lr·g`` (β = 0.001) on every parameter, biases included:
  ``SGD(lr, weight_decay=β/lr)``, since torch's ``θ − lr(g + wd·θ) = (1 − lr·wd)θ − lr·g``.
- **dropout**: ``Dropout(p)`` after each hidden ReLU with the seed's ``drop_rate`` 0.3, which *is* torch's drop
  probability (its text says 0.5, its code and table use 0.3); a course ``keep_prob`` k is ``p = 1 − k``.

Seed 004 reports train / test accuracy 0.91 / 0.71 (none), 0.86 / 0.77 (L2), 0.845 / 0.75 (weight decay) and
0.855 / 0.76 (dropout) with paddle's random streams; handnn's streams differ, so the numbers differ, while
the conclusion (each regulariser lowers the train accuracy and raises the test accuracy) is what is reproduced.
"""
from __future__ import annotations

import argparse
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
                      train_full_batch)

NAME = "regularization"
SUMMARY = "seed 004: none / L2 / weight decay / dropout on noisy moons — train vs test accuracy"
DEFAULT_ITERATIONS = 50_000
VARIANTS: Tuple[str, ...] = ("none", "L2", "weight decay", "dropout")
#: seed 004's (train, test) accuracies, printed beside ours for reference (paddle's data and weights)
SEED_REPORTED = {"none": (0.91, 0.71), "L2": (0.86, 0.77), "weight decay": (0.845, 0.75), "dropout": (0.855, 0.76)}


@dataclass(frozen=True)
class Config:
    """Seed 004's setup; every field can be changed from the command line.

    l2_lambda : the seed's λ in ``λ/(2m)·ΣW²`` (m = n_train)
    weight_decay : the seed's β in ``θ ← (1 − β)θ − lr·g``
    drop_prob : torch's drop probability p (the seed's ``drop_rate``; ``1 − keep_prob``)
    """

    seed: int = 0
    iterations: int = DEFAULT_ITERATIONS
    n_samples: int = 300
    n_train: int = 200
    noise: float = 0.5
    hidden: Tuple[int, ...] = (20, 3)
    lr: float = 0.2
    l2_lambda: float = 0.7
    weight_decay: float = 0.001
    drop_prob: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.n_train < self.n_samples:
            raise ValueError(f"n_train must be between 1 and n_samples - 1 = {self.n_samples - 1}, "
                             f"but got {self.n_train}")
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"the drop probability must be in [0, 1), but got {self.drop_prob}")

    @property
    def sizes(self) -> Tuple[int, ...]:
        return (2, *self.hidden, 1)

    @property
    def l2(self) -> float:
        """handnn's ``l2`` (penalty ``(l2/2)·ΣW²``) for the seed's ``λ/(2m)·ΣW²``: ``λ/m``."""
        return self.l2_lambda / self.n_train

    @property
    def sgd_weight_decay(self) -> float:
        """torch's SGD ``weight_decay`` for the seed's ``θ ← (1 − β)θ − lr·g``: ``β/lr``."""
        return self.weight_decay / self.lr


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--samples", type=int, default=d.n_samples, help="moons samples in all (default %(default)s)")
    parser.add_argument("--train", type=int, default=d.n_train, help="of which for training (default %(default)s)")
    parser.add_argument("--noise", type=float, default=d.noise, help="make_moons noise (default %(default)s)")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden), metavar="H",
                        help="hidden layer widths (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--l2-lambda", type=float, default=d.l2_lambda,
                        help="the seed's λ in λ/(2m)·ΣW² (default %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay,
                        help="the seed's β in θ ← (1−β)θ − lr·g (default %(default)s)")
    drop = parser.add_mutually_exclusive_group()
    drop.add_argument("--drop-prob", type=float, default=None,
                      help=f"dropout's drop probability p (the seed's drop_rate; default {d.drop_prob})")
    drop.add_argument("--keep-prob", type=float, default=None, help="a course's keep_prob instead: p = 1 − keep_prob")


def config_from_args(args: argparse.Namespace) -> Config:
    drop_prob = Config.drop_prob
    if args.drop_prob is not None:
        drop_prob = args.drop_prob
    elif args.keep_prob is not None:
        drop_prob = 1.0 - args.keep_prob
    return Config(seed=args.seed, iterations=args.iterations or DEFAULT_ITERATIONS, n_samples=args.samples,
                  n_train=args.train, noise=args.noise, hidden=tuple(args.hidden), lr=args.lr,
                  l2_lambda=args.l2_lambda, weight_decay=args.weight_decay, drop_prob=drop_prob)


def load_data(config: Config) -> Dataset:
    """``make_moons(n_samples, noise)`` shuffled, split into the first ``n_train`` and the rest."""
    x, y = make_moons(config.n_samples, shuffle=True, noise=config.noise, rng=generator(config.seed, "data"))
    n = config.n_train
    return Dataset(x[:n], y[:n], x[n:], y[n:])


def build(config: Config, variant: str) -> Tuple[nn.Module, nn.Module, optim.Optimizer, float]:
    """The model, loss, optimizer and L2 strength of one variant, from the seed's initialisation.

    Every variant draws its weights from a fresh ``generator(seed, "init")``: all four start equal.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    dropout = config.drop_prob if variant == "dropout" else 0.0
    model = mlp(config.sizes, rng=generator(config.seed, "init"), dropout=dropout,
                dropout_rng=generator(config.seed, "dropout"))
    normal_init(model, generator(config.seed, "init"), std=lambda fan_in: 1.0)  # the seed's MLP_3L: W ~ N(0, 1), b = 0
    weight_decay = config.sgd_weight_decay if variant == "weight decay" else 0.0
    optimizer = optim.SGD(model.parameters(), lr=config.lr, weight_decay=weight_decay)
    l2 = config.l2 if variant == "L2" else 0.0
    return model, nn.BCEWithLogitsLoss(), optimizer, l2


def run(config: Config, backend: Optional[Backend] = None, progress: Progress = NO_PROGRESS,
        variants: Sequence[str] = VARIANTS) -> Result:
    """Train every variant for ``config.iterations`` full-batch steps; accuracies in eval mode (no dropout)."""
    backend = backend or HandnnBackend()
    start = time.perf_counter()
    data = load_data(config)

    def train(variant: str, target: np.ndarray):
        model, loss_fn, optimizer, l2 = build(config, variant)
        trainer = backend.trainer(model, loss_fn, optimizer, l2=l2)
        return trainer, train_full_batch(trainer, data.x_train, target, config.iterations, progress,
                                         f"{NAME} [{backend.name}] {variant}")

    return run_binary_variants(NAME, config, backend, data, variants, train, start)


def describe(config: Config) -> str:
    c = config
    return (f"{NAME} (seed 004): make_moons({c.n_samples}, noise={c.noise}), {c.n_train} train / "
            f"{c.n_samples - c.n_train} test, MLP {list(c.sizes)} (ReLU, W ~ N(0, 1)), BCE on logits, "
            f"SGD lr {c.lr}, {c.iterations} full-batch iterations, --seed {c.seed}")


def table(result: Result, *, reported: bool = True) -> str:
    """variant | final loss | train acc | test acc [| seed 004 train / test]."""
    headers = ["variant", "final loss", "train acc", "test acc"]
    rows = [[r.name, fmt_loss(r.losses[-1]), fmt_accuracy(r.train_accuracy), fmt_accuracy(r.test_accuracy)]
            for r in result.runs]
    if reported:
        headers.append("seed 004 (train / test)")
        for row, r in zip(rows, result.runs):
            train, test = SEED_REPORTED[r.name]
            row.append(f"{fmt_accuracy(train)} / {fmt_accuracy(test)}")
    return format_table(headers, rows, "lrrr" + "r" * reported)


def notes(config: Config) -> str:
    c = config
    return "\n".join([
        f"L2:           loss + λ/(2m)·ΣW² with λ = {c.l2_lambda}, m = {c.n_train}: "
        f"regularization.penalty(l2=λ/m = {c.l2:.6g}) on the Linear weights",
        f"weight decay: θ ← (1 − β)θ − lr·g with β = {c.weight_decay}: "
        f"SGD(lr={c.lr}, weight_decay=β/lr = {c.sgd_weight_decay:.6g}) on every parameter",
        f"dropout:      Dropout(p={c.drop_prob}) after each hidden ReLU (keep_prob {1 - c.drop_prob:.6g}); "
        "accuracies in eval mode",
    ])


def plot(result: Result, directory: Path, suffix: str = "") -> List[Path]:
    """``regularization_loss{suffix}.png`` and ``regularization_boundaries{suffix}.png``."""
    return [_plot.loss_curves(result, directory / f"{NAME}_loss{suffix}.png"),
            _plot.decision_boundaries(result, directory / f"{NAME}_boundaries{suffix}.png")]
