"""PNG plots of the experiments, with matplotlib as an optional extra (``pip install handnn[plot]``).

Figures are built with ``matplotlib.figure.Figure`` and saved directly, without ``pyplot``: no GUI backend is
chosen and no global figure state is touched, so plotting works headless and leaves a caller's session alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence, Tuple

import numpy as np

from ._common import Result, fmt_accuracy

INSTALL_HINT = "matplotlib is required for --plot; install it with: pip install 'handnn[plot]' (or pip install matplotlib)"

#: the seeds' colours: class 0 black, class 1 magenta; regions light grey / pink (seed 004's show_class_boundary)
POINT_COLOURS = ("#000000", "#e4007f")
REGION_COLOURS = ("#f5f5f5", "#f19ec2")


class PlotUnavailable(RuntimeError):
    """matplotlib cannot be imported; the message says how to install it."""


def figure_class() -> Any:
    """``matplotlib.figure.Figure``, or :class:`PlotUnavailable` with the install hint."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(f"{INSTALL_HINT} ({exc})") from exc
    return Figure


def save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100, format="png")
    return path


def block_means(losses: np.ndarray, points: int = 500) -> Tuple[np.ndarray, np.ndarray, int]:
    """``(steps, means, k)``: the mean loss of each block of ``k = ceil(n / points)`` consecutive steps, at the
    block's last step. A dropout run's loss jumps at every step (a new mask each time): plotting 50 000 raw
    values would hide the other curves, block means show the trend (k = 1 keeps short runs as they are)."""
    k = max(1, -(-len(losses) // points))
    blocks = len(losses) // k
    means = losses[:blocks * k].reshape(blocks, k).mean(axis=1)
    return np.arange(1, blocks + 1) * k, means, k


def loss_curves(result: Result, path: Path, *, xlabel: str = "iteration", title: str = "") -> Path:
    """Every run's loss against the iteration (or epoch), as block means on long runs, log-scaled when all
    losses are positive."""
    Figure = figure_class()
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    positive = all(np.all(run.losses > 0) for run in result.runs)
    styles = ("-", "--", "-.", ":")  # curves that coincide (GD and momentum at a small lr) stay visible
    k = 1
    for i, run in enumerate(result.runs):
        steps, means, k = block_means(run.losses)
        ax.plot(steps, means, styles[i % len(styles)], label=run.name, linewidth=1.4)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss" if k == 1 else f"loss (mean of each {k} {xlabel}s)")
    ax.set_title(title or f"{result.experiment}: training loss ({result.backend})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save(fig, path)


def decision_boundaries(result: Result, path: Path, *, title: str = "") -> Path:
    """One panel per run: the predicted class regions on the grid, the training points coloured by label, and
    the train/test accuracies in the panel's title."""
    Figure = figure_class()
    from matplotlib.colors import ListedColormap

    if result.grid is None or result.data is None:
        raise ValueError(f"{result.experiment}: decision boundaries need the data and a grid, but the result has none")
    axes, _ = result.grid
    runs = result.runs
    cols = min(len(runs), 2 if len(runs) == 4 else 3)
    rows = -(-len(runs) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.8 * rows), layout="constrained")
    panels = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    data = result.data
    for ax, run in zip(panels, runs):
        predicted = (run.grid_logits.reshape(len(axes[1]), len(axes[0])) > 0).astype(float)
        ax.contourf(axes[0], axes[1], predicted, levels=[-0.5, 0.5, 1.5], cmap=ListedColormap(REGION_COLOURS))
        for label, colour in enumerate(POINT_COLOURS):
            chosen = data.y_train == label
            ax.scatter(data.x_train[chosen, 0], data.x_train[chosen, 1], s=10, c=colour, label=f"class {label}")
        ax.set_title(f"{run.name}\ntrain {fmt_accuracy(run.train_accuracy)}, test {fmt_accuracy(run.test_accuracy)}",
                     fontsize=10)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    for ax in panels[len(runs):]:
        ax.set_visible(False)
    panels[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(title or f"{result.experiment}: decision boundaries on the training set ({result.backend})")
    return save(fig, path)


def accuracy_vs_scale(scales: Sequence[float], series: dict, losses: dict, path: Path, *, title: str) -> Path:
    """CS231n's figure: accuracy (train and validation) and final training loss against the weight scale,
    with and without BatchNorm. ``series`` maps a label to accuracies per scale, ``losses`` a label to
    final losses per scale."""
    Figure = figure_class()
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    for ax, split in ((left, "val"), (middle, "train")):
        for label, values in series.items():
            if label.endswith(split):
                ax.semilogx(scales, values, "o-", label=label.rsplit(" ", 1)[0])
        ax.set_title(f"final {'validation' if split == 'val' else 'training'} accuracy")
        ax.set_xlabel("weight initialization scale")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0.0, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend()
    for label, values in losses.items():
        right.loglog(scales, np.maximum(values, 1e-12), "o-", label=label)
    right.set_title("final training loss")
    right.set_xlabel("weight initialization scale")
    right.set_ylabel("loss")
    right.grid(True, alpha=0.3)
    right.legend()
    fig.suptitle(title)
    return save(fig, path)


def accuracy_curves(curves: dict, path: Path, *, title: str) -> Path:
    """Held-out accuracy against the training step, one line per run; ``curves`` maps a run's name to
    ``(steps, accuracies)``."""
    Figure = figure_class()
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, (steps, accuracies) in curves.items():
        ax.plot(steps, accuracies, "o-", label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save(fig, path)


def written(paths: List[Path]) -> str:
    return "\n".join(f"wrote {p}" for p in paths)
