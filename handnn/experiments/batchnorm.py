"""Seeds 000 and 002 (CS231n assignment 2, "Batch Normalization"): the backward pass step by step versus fused,
and deep networks trained with and without BatchNorm across weight-initialisation scales.

1. **Backward, staged versus fused.** :func:`staged_backward` walks the computational graph of
   ``y = γ·(x − μ)/sqrt(σ² + ε) + β`` node by node, as seed 002 derives it (four paths into ``dx``);
   ``handnn.functional.batch_norm_backward`` is the fused one-line form
   ``dx = inv_std·(g − mean(g) − x̂·mean(g·x̂))``, ``g = γ·dout``. Both run on CS231n's check input
   (N, D = 100, 500, ``x = 5·randn + 12``); the table gives their relative errors (CS231n's
   ``max |a − b| / max(1e-8, |a| + |b|)``) and the best time per call of each. Seed 000 reported a 1.84x
   speed-up and noted how noisy single timings are: here each time is the best of several repeats, each
   repeat long enough for the clock, and it is printed, never asserted.
2. **Weight scale.** CS231n's experiment: a 7-hidden-layer ReLU network of width 50 (``Linear → ReLU``, or
   ``Linear → BatchNorm1d → ReLU``) initialised with ``W = weight_scale·randn``, trained with Adam (lr 1e-3)
   on mini-batches of 50 for 200 iterations, for 20 weight scales from 1e-4 to 1. The data are 2-class noisy
   moons (1000 train / 200 validation), not CIFAR-10, so the whole sweep runs in seconds. The two networks of
   one scale start from the same weights and see the same batches. Expected, as in CS231n: without
   BatchNorm only a narrow band of scales trains (small scales vanish to chance accuracy, large ones explode);
   with BatchNorm nearly every scale does.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .. import functional as F
from .. import nn, optim
from ..data import make_moons
from . import _plot
from ._common import (NO_PROGRESS, Backend, Dataset, HandnnBackend, Progress, Result, Run, class_accuracy,
                      fmt_accuracy, fmt_loss, format_table, generator, normal_init, train_steps)

NAME = "batchnorm"
SUMMARY = "seeds 000/002: staged vs fused BatchNorm backward (equal, speed-up) and training across weight scales"
DEFAULT_ITERATIONS = 200


@dataclass(frozen=True)
class Config:
    """CS231n's ``FullyConnectedNet([50] * 7, weight_scale=...)`` + ``Solver(batch_size=50, adam, 1e-3)``,
    on moons; ``iterations`` are training steps per network."""

    seed: int = 0
    iterations: int = DEFAULT_ITERATIONS
    n_train: int = 1000
    n_val: int = 200
    noise: float = 0.25
    hidden: Tuple[int, ...] = (50,) * 7
    batch_size: int = 50
    lr: float = 1e-3
    scales: int = 20
    scale_min: float = 1e-4
    scale_max: float = 1.0
    timing_shape: Tuple[int, int] = (100, 500)
    timing_repeats: int = 7
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.scales < 1:
            raise ValueError(f"scales must be positive, but got {self.scales}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"weight scales must satisfy 0 < min <= max, but got {self.scale_min}, {self.scale_max}")
        if self.batch_size < 2:
            raise ValueError(f"BatchNorm needs batches of at least 2, but got batch_size={self.batch_size}")

    @property
    def weight_scales(self) -> np.ndarray:
        """``np.logspace(log10(min), log10(max), scales)`` (CS231n: ``np.logspace(-4, 0, num=20)``)."""
        return np.logspace(math.log10(self.scale_min), math.log10(self.scale_max), self.scales)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--train", type=int, default=d.n_train, help="training points (default %(default)s)")
    parser.add_argument("--val", type=int, default=d.n_val, help="validation points (default %(default)s)")
    parser.add_argument("--noise", type=float, default=d.noise, help="make_moons noise (default %(default)s)")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden), metavar="H",
                        help="hidden layer widths (default: 50 x 7)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="mini-batch size (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--scales", type=int, default=d.scales, help="number of weight scales (default %(default)s)")
    parser.add_argument("--scale-range", type=float, nargs=2, default=[d.scale_min, d.scale_max],
                        metavar=("MIN", "MAX"), help="weight scale range, log-spaced (default %(default)s)")
    parser.add_argument("--timing-shape", type=int, nargs=2, default=list(d.timing_shape), metavar=("N", "D"),
                        help="input of the backward comparison (default %(default)s)")
    parser.add_argument("--timing-repeats", type=int, default=d.timing_repeats,
                        help="timing repeats, the best is kept (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(seed=args.seed, iterations=args.iterations or DEFAULT_ITERATIONS, n_train=args.train,
                  n_val=args.val, noise=args.noise, hidden=tuple(args.hidden), batch_size=args.batch_size,
                  lr=args.lr, scales=args.scales, scale_min=args.scale_range[0], scale_max=args.scale_range[1],
                  timing_shape=tuple(args.timing_shape), timing_repeats=args.timing_repeats)


# ---- 1. staged versus fused backward ---------------------------------------------------------------------------
class StagedCache(NamedTuple):
    """Every node of the forward graph the staged backward walks back through."""

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    x_hat: np.ndarray
    eps: float
    gamma: np.ndarray


def staged_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                   eps: float) -> Tuple[np.ndarray, StagedCache]:
    """Training-mode BatchNorm of ``x`` (N, D), node by node: ``μ = mean(x)``, ``σ² = mean((x − μ)²)`` (biased),
    ``x̂ = (x − μ)/sqrt(σ² + ε)``, ``y = γ·x̂ + β``. Returns ``y`` (N, D) and the cache."""
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma * x_hat + beta, StagedCache(x, mean, var, x_hat, eps, gamma)


def staged_backward(dout: np.ndarray, cache: StagedCache) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The computational-graph backward of seed 002: every node's gradient in turn, ``dx`` summed over its four
    paths (directly through ``x − μ``, through ``σ²``, and through ``μ`` along both). Returns
    ``(dx (N, D), dgamma (D,), dbeta (D,))``."""
    x, mean, var, x_hat, eps, gamma = cache
    n = x.shape[0]
    mu1 = x - mean                                  # x − μ, feeding x̂ and σ²
    mu2 = np.sqrt(var + eps)                        # sqrt(σ² + ε)
    dbeta = dout.sum(axis=0)
    dgamma = (x_hat * dout).sum(axis=0)
    dx_hat = dout * gamma
    dmu1 = dx_hat / mu2                             # through x̂ = mu1 / mu2, into mu1
    dmu2 = -(mu1 / mu2 ** 2 * dx_hat).sum(axis=0)   # ... and into mu2
    dvar = 0.5 / np.sqrt(var + eps) * dmu2          # mu2 = sqrt(σ² + ε)
    dsquare = dvar / n                              # σ² = mean(mu1²)
    dmu3 = 2.0 * mu1 * dsquare
    dx1 = dmu1                                      # x → mu1 → x̂
    dx2 = dmu3                                      # x → mu1 → σ²
    dx3 = -dmu1.sum(axis=0) / n                     # x → μ → mu1 → x̂
    dx4 = -dmu3.sum(axis=0) / n                     # x → μ → mu1 → σ²: 0 in exact arithmetic, Σ(x − μ) = 0
    return dx1 + dx2 + dx3 + dx4, dgamma, dbeta


def max_rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """CS231n's ``max |a − b| / max(1e-8, |a| + |b|)``."""
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def best_time(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.005) -> float:
    """Seconds per call of ``fn``: the best of ``repeats`` repeats, each of as many calls as take ``min_seconds``
    (a single call is too short for the clock: seed 000 saw its time come out as 0)."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= min_seconds or number >= 1 << 16:
            break
        number *= 2
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / number


def compare_backward(config: Config, backend: Backend) -> Dict[str, Any]:
    """Staged versus the backend's BatchNorm backward on CS231n's check input: forward difference, relative
    errors of dx / dgamma / dbeta, and the best time per call of each."""
    rng = generator(config.seed, "timing")
    n, d = config.timing_shape
    x = 5.0 * rng.standard_normal((n, d)) + 12.0
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    dout = rng.standard_normal((n, d))
    out, cache = staged_forward(x, gamma, beta, config.eps)
    reference_out, _ = F.batch_norm_forward(x, None, None, gamma, beta, training=True, eps=config.eps)
    staged = staged_backward(dout, cache)
    fused_run, fused = backend.batch_norm_backward(x, gamma, beta, dout, config.eps)
    return {
        "shape": (n, d),
        "forward_max_abs": float(np.max(np.abs(out - reference_out))),
        "staged": staged,
        "fused": fused,
        "errors": [max_rel_error(a, b) for a, b in zip(staged, fused)],
        "staged_seconds": best_time(lambda: staged_backward(dout, cache), config.timing_repeats),
        "fused_seconds": best_time(fused_run, config.timing_repeats),
        "fused_label": backend.batch_norm_label,
    }


# ---- 2. training across weight scales --------------------------------------------------------------------------
def load_data(config: Config) -> Dataset:
    x, y = make_moons(config.n_train + config.n_val, shuffle=True, noise=config.noise,
                      rng=generator(config.seed, "data"))
    n = config.n_train
    return Dataset(x[:n], y[:n], x[n:], y[n:])


def deep_network(config: Config, batchnorm: bool, rng: np.random.Generator) -> nn.Sequential:
    """``[Linear → (BatchNorm1d →) ReLU] × len(hidden) → Linear(·, 2)`` (CS231n's FullyConnectedNet).

    A Linear followed by BatchNorm has no bias (CS231n keeps one): BatchNorm subtracts the batch mean, so that
    bias has an exactly zero gradient, and Adam (step ≈ lr·m/(sqrt(v) + eps)) would turn the rounding noise
    of its computed gradient into steps of up to lr·noise/eps — values that are rounding noise, different
    on every backend. Without it the network computes the same function.
    """
    layers: List[nn.Module] = []
    sizes = (2, *config.hidden)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(fan_in, fan_out, bias=not batchnorm, rng=rng))
        if batchnorm:
            layers.append(nn.BatchNorm1d(fan_out))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(sizes[-1], 2, rng=rng))
    return nn.Sequential(*layers)


def build(config: Config, batchnorm: bool, scale: float) -> Tuple[nn.Module, nn.Module, optim.Optimizer]:
    """A network with ``W = scale·randn``, ``b = 0`` (BatchNorm: γ = 1, β = 0), softmax cross-entropy, Adam.
    Both networks of one scale draw the same weights (fresh ``generator(seed, "init")``)."""
    model = deep_network(config, batchnorm, generator(config.seed, "init"))
    normal_init(model, generator(config.seed, "init"), std=lambda fan_in: scale)
    return model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=config.lr)


def run_name(kind: str, scale: float) -> str:
    return f"{kind} {scale:.3g}"


def run(config: Config, backend: Optional[Backend] = None, progress: Progress = NO_PROGRESS) -> Result:
    """The backward comparison, then both networks trained at every weight scale."""
    backend = backend or HandnnBackend()
    start = time.perf_counter()
    backward = compare_backward(config, backend)
    data = load_data(config)
    scales = config.weight_scales
    runs: List[Run] = []
    progress.start(f"{NAME} [{backend.name}] weight scales", 2 * len(scales))
    for scale in scales:
        for kind in ("baseline", "batchnorm"):
            model, loss_fn, optimizer = build(config, kind == "batchnorm", scale)
            trainer = backend.trainer(model, loss_fn, optimizer)
            losses = train_steps(trainer, data.x_train, data.y_train, config.iterations, config.batch_size,
                                 generator(config.seed, "batches"))
            runs.append(Run(run_name(kind, scale), losses, class_accuracy(trainer.logits(data.x_train), data.y_train),
                            class_accuracy(trainer.logits(data.x_test), data.y_test), trainer.state_dict()))
            progress.update(len(runs))
    progress.finish()
    return Result(NAME, backend.name, config, runs, data, None, time.perf_counter() - start,
                  {"backward": backward, "weight_scales": scales})


def describe(config: Config) -> str:
    c = config
    n, d = c.timing_shape
    return (f"{NAME} (seeds 000/002, CS231n): (1) staged vs fused backward on N, D = {n}, {d}; "
            f"(2) MLP {list((2, *c.hidden, 2))} with/without BatchNorm1d, W = scale·randn for {c.scales} scales in "
            f"[{c.scale_min:g}, {c.scale_max:g}], Adam lr {c.lr:g}, {c.iterations} steps of batch {c.batch_size}, "
            f"make_moons({c.n_train} + {c.n_val}, noise={c.noise}), --seed {c.seed}")


def backward_table(backward: Dict[str, Any]) -> str:
    """staged / fused: relative errors against the staged result, best time per call, speed-up."""
    staged_s, fused_s = backward["staged_seconds"], backward["fused_seconds"]
    errors = [f"{e:.2e}" for e in backward["errors"]]
    rows = [["staged (computational graph)", "-", "-", "-", f"{1e6 * staged_s:.1f} µs", "1.00x"],
            [backward["fused_label"], *errors, f"{1e6 * fused_s:.1f} µs", f"{staged_s / fused_s:.2f}x"]]
    return format_table(["backward", "dx rel err", "dgamma rel err", "dbeta rel err", "time/call", "speed-up"], rows)


def scale_table(result: Result) -> str:
    """weight scale | train / val accuracy and final loss, without and with BatchNorm."""
    rows = []
    for scale in result.extra["weight_scales"]:
        base, bn = result.run(run_name("baseline", scale)), result.run(run_name("batchnorm", scale))
        rows.append([f"{scale:.2e}", fmt_accuracy(base.train_accuracy), fmt_accuracy(base.test_accuracy),
                     fmt_loss(base.losses[-1]), fmt_accuracy(bn.train_accuracy), fmt_accuracy(bn.test_accuracy),
                     fmt_loss(bn.losses[-1])])
    return format_table(["weight scale", "train", "val", "loss", "BN train", "BN val", "BN loss"], rows)


def table(result: Result, *, reported: bool = True) -> str:
    return backward_table(result.extra["backward"]) + "\n\n" + scale_table(result)


def notes(config: Config) -> str:
    return "\n".join([
        "backward: relative errors against the staged result; times are the best of "
        f"{config.timing_repeats} repeats (printed, not asserted; seed 000 reported 1.84x)",
        "weight scales: train / val = final accuracies in eval mode (running statistics); loss = last batch's loss; "
        "chance = 50 %",
    ])


def plot(result: Result, directory: Path, suffix: str = "") -> List[Path]:
    """``batchnorm_weight_scale{suffix}.png``: accuracies and final loss against the weight scale."""
    scales = result.extra["weight_scales"]
    series: Dict[str, List[float]] = {}
    losses: Dict[str, np.ndarray] = {}
    for kind, label in (("baseline", "baseline"), ("batchnorm", "batchnorm")):
        runs = [result.run(run_name(kind, s)) for s in scales]
        series[f"{label} train"] = [r.train_accuracy for r in runs]
        series[f"{label} val"] = [r.test_accuracy for r in runs]
        losses[label] = np.array([r.losses[-1] for r in runs])
    return [_plot.accuracy_vs_scale(scales, series, losses, directory / f"{NAME}_weight_scale{suffix}.png",
                                    title=f"BatchNorm and weight initialization scale ({result.backend})")]
