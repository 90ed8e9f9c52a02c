"""A small CNN on scikit-learn's 8×8 handwritten digits: the second half of the courses, convolution and pooling.

Setup: ``sklearn.datasets.load_digits`` (1797 images of 8×8 pixels in 0..16, scaled to [0, 1]), a seeded split
into 1497 training and 300 held-out images; the network ``Conv2d(1, 8, 3, padding=1, bias=False) → BatchNorm2d →
ReLU → MaxPool2d(2) → Conv2d(8, 16, 3, padding=1) → ReLU → AdaptiveAvgPool2d(1) → Flatten → Linear(16, 10)`` with
torch's default initialisation; cross-entropy; mini-batches of 32 reshuffled every epoch; ``--iterations`` steps
(default 600) with SGD (lr 0.05, momentum 0.9, weight decay 1e-3) and with Adam (lr 3e-3), both from the same initial
weights and seeing the same batches. Every 25 steps the held-out accuracy is evaluated in eval mode (BatchNorm's
running statistics), for the accuracy curves of ``--plot``.

``--backend torch`` trains the torch twins of the same models on the same batches: the two tables agree to rounding
(``tests/parity/test_cnn_trajectory.py`` holds them equal after every step). The data needs scikit-learn
(``pip install scikit-learn``); handnn itself does not.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import nn, optim
from ..data import minibatches
from . import _plot
from ._common import (NO_PROGRESS, Backend, Dataset, HandnnBackend, Progress, Result, Run, class_accuracy,
                      fmt_accuracy, fmt_loss, format_table, generator)

NAME = "cnn"
SUMMARY = "a small CNN on scikit-learn's 8x8 digits: SGD(momentum, weight decay) and Adam"
DEFAULT_ITERATIONS = 600
VARIANTS: Tuple[str, ...] = ("SGD(momentum, weight decay)", "Adam")
EVERY = 25  # steps between two held-out accuracy measurements


@dataclass(frozen=True)
class Config:
    seed: int = 0
    iterations: int = DEFAULT_ITERATIONS
    n_test: int = 300
    batch_size: int = 32
    channels: Tuple[int, int] = (8, 16)
    sgd_lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-3
    adam_lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.batch_size < 1 or not 0 < self.n_test < 1797:
            raise ValueError(f"batch_size must be positive and n_test in 1..1796, but got {self.batch_size} and "
                             f"{self.n_test}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--test", type=int, default=d.n_test, help="held-out images (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="mini-batch size (default %(default)s)")
    parser.add_argument("--channels", type=int, nargs=2, default=list(d.channels), metavar=("C1", "C2"),
                        help="channels of the two convolutions (default %(default)s)")
    parser.add_argument("--sgd-lr", type=float, default=d.sgd_lr, help="SGD's lr (default %(default)s)")
    parser.add_argument("--adam-lr", type=float, default=d.adam_lr, help="Adam's lr (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(seed=args.seed, iterations=args.iterations or DEFAULT_ITERATIONS, n_test=args.test,
                  batch_size=args.batch_size, channels=tuple(args.channels), sgd_lr=args.sgd_lr,
                  adam_lr=args.adam_lr)


@lru_cache(maxsize=1)
def digits() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 1, 8, 8) float64 in [0, 1] and int64 labels, read once per process (the
    arrays are read-only)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ValueError("the cnn experiment trains on scikit-learn's digits: pip install scikit-learn") from exc
    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).reshape(-1, 1, 8, 8), y.astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load_data(config: Config) -> Dataset:
    """The digits as (N, 1, 8, 8) float64 in [0, 1], split by a seeded permutation."""
    x, y = digits()
    order = generator(config.seed, "split").permutation(len(x))
    test, train = order[:config.n_test], order[config.n_test:]
    return Dataset(x[train], y[train], x[test], y[test])


def model(config: Config) -> nn.Sequential:
    """The network of the module docstring, torch's default initialisation from the experiment's seed."""
    rng = generator(config.seed, "init")
    c1, c2 = config.channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, rng=rng), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(c2, 10, rng=rng))


def make_optimizer(config: Config, variant: str, params) -> optim.Optimizer:
    if variant == "SGD(momentum, weight decay)":
        return optim.SGD(params, lr=config.sgd_lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if variant == "Adam":
        return optim.Adam(params, lr=config.adam_lr)
    raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")


def run(config: Config, backend: Optional[Backend] = None, progress: Progress = NO_PROGRESS,
        variants: Sequence[str] = VARIANTS) -> Result:
    """Train each variant for ``config.iterations`` steps; the losses of every step, the held-out accuracy every
    :data:`EVERY` steps (``result.extra['accuracy']``: variant -> (steps, accuracies))."""
    backend = backend or HandnnBackend()
    start = time.perf_counter()
    data = load_data(config)
    runs, curves = [], {}
    for variant in variants:
        net = model(config)
        trainer = backend.trainer(net, nn.CrossEntropyLoss(), make_optimizer(config, variant, net.parameters()))
        batches = generator(config.seed, "batches")
        losses, steps, accuracies = np.empty(config.iterations), [], []
        progress.start(f"{NAME} [{backend.name}] {variant}", config.iterations)
        done = 0
        while done < config.iterations:
            for xb, yb in minibatches(data.x_train, data.y_train, config.batch_size, shuffle=True, rng=batches):
                losses[done] = trainer.step(xb, yb)
                done += 1
                if done % EVERY == 0 or done == config.iterations:
                    steps.append(done)
                    accuracies.append(class_accuracy(trainer.logits(data.x_test), data.y_test))
                    progress.update(done)
                if done == config.iterations:
                    break
        progress.finish()
        runs.append(Run(variant, losses, class_accuracy(trainer.logits(data.x_train), data.y_train), accuracies[-1],
                        trainer.state_dict()))
        curves[variant] = (np.array(steps), np.array(accuracies))
    return Result(NAME, backend.name, config, runs, data, seconds=time.perf_counter() - start,
                  extra={"accuracy": curves})


def describe(config: Config) -> str:
    c = config
    return (f"{NAME}: scikit-learn's digits (8x8), {1797 - c.n_test} train / {c.n_test} held out, Conv({c.channels[0]})"
            f"-BN-ReLU-MaxPool-Conv({c.channels[1]})-ReLU-AvgPool-Linear(10), cross-entropy, batches of "
            f"{c.batch_size}, {c.iterations} steps, --seed {c.seed}")


def table(result: Result, *, reported: bool = True) -> str:
    """optimizer | final loss (mean of the last 25 steps) | train acc | test acc."""
    rows = [[r.name, fmt_loss(float(np.mean(r.losses[-EVERY:]))), fmt_accuracy(r.train_accuracy),
             fmt_accuracy(r.test_accuracy)] for r in result.runs]
    return format_table(["optimizer", "final loss", "train acc", "test acc"], rows)


def notes(config: Config) -> str:
    c = config
    return "\n".join([
        f"SGD:  lr {c.sgd_lr:g}, momentum {c.momentum:g}, weight_decay {c.weight_decay:g} (torch's coupled L2 term)",
        f"Adam: lr {c.adam_lr:g}, betas (0.9, 0.999), eps 1e-8",
        "accuracies in eval mode: BatchNorm2d with its running statistics",
    ])


def plot(result: Result, directory: Path, suffix: str = "") -> List[Path]:
    """``cnn_loss{suffix}.png`` (per step) and ``cnn_accuracy{suffix}.png`` (held out, every 25 steps)."""
    return [_plot.loss_curves(result, directory / f"{NAME}_loss{suffix}.png", xlabel="step"),
            _plot.accuracy_curves(result.extra["accuracy"], directory / f"{NAME}_accuracy{suffix}.png",
                                  title=f"{NAME}: held-out accuracy ({result.backend})")]
