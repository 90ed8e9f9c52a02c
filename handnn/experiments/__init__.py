"""The seeds' experiments, reproduced on handnn: ``handnn-experiment NAME`` (or ``python -m handnn.experiments NAME``).

- ``regularization``: seed 004 — none / L2 / weight decay / dropout on noisy moons;
- ``initialization``: seed 003 — zeros / large random / He initialisation;
- ``optimizers``: seed 003 — mini-batch GD / momentum / Adam;
- ``batchnorm``: seeds 000/002 — staged vs fused BatchNorm backward, and training across weight scales;
- ``cnn``: a small CNN (convolution, BatchNorm2d, pooling) on scikit-learn's 8×8 digits, SGD and Adam;
- ``charlm``: a character-level language model (Embedding, 2-layer LSTM or GRU, Linear), Adam with gradient clipping.

Each prints a table like the seed's. Options: ``--seed`` (every random draw comes from generators built from
it, so a run is reproducible), ``--iterations``, ``--plot DIR`` (PNG files; needs matplotlib:
``pip install handnn[plot]``), ``--backend torch`` (the same experiment — data, initial weights, dropout masks,
batch order — through torch twins as well, tables side by side; needs ``reference`` and torch), ``--progress``
(on stderr; shown by default only on a terminal). ``handnn-experiment --list`` lists them.

From Python, each module's ``run(config, backend)`` returns a :class:`Result`; see the modules.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Sequence, TextIO

from . import batchnorm, charlm, cnn, initialization, optimizers, regularization
from ._common import Backend, HandnnBackend, Progress, Result, Run, side_by_side
from ._plot import PlotUnavailable, figure_class, written

EXPERIMENTS: Dict[str, ModuleType] = {m.NAME: m for m in (regularization, initialization, optimizers, batchnorm,
                                                          cnn, charlm)}
BACKENDS = ("handnn", "torch")
TORCH_HINT = ("--backend torch needs torch and the reference package of a handnn source checkout "
              "(pip install 'handnn[reference]')")

__all__ = ["EXPERIMENTS", "Backend", "HandnnBackend", "Result", "Run", "BackendUnavailable", "load_backend", "main",
           "batchnorm", "charlm", "cnn", "initialization", "optimizers", "regularization"]


class BackendUnavailable(RuntimeError):
    """The torch backend cannot be loaded; the message says what is missing."""


def load_backend(name: str) -> Backend:
    """``HandnnBackend()`` or, imported only now, ``handnn_reference.experiments.TorchBackend()``.

    handnn never imports torch: the torch backend lives in ``reference`` and is looked up by name.
    """
    if name == "handnn":
        return HandnnBackend()
    if name != "torch":
        raise ValueError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")
    # installed, the torch side is handnn_reference; in a checkout it may already be imported as reference (the
    # repository's folder): use that one, never a second copy of the same modules
    names = ["reference", "handnn_reference"] if "reference.twin" in sys.modules else ["handnn_reference", "reference"]
    errors = []
    for name in names:
        try:
            return importlib.import_module(f"{name}.experiments").TorchBackend()
        except ImportError as exc:
            errors.append(exc)
    raise BackendUnavailable(f"{TORCH_HINT}: {errors[0]}") from errors[0]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handnn-experiment",
        description="Reproduce the course reports' experiments on handnn and print their tables.")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    sub = parser.add_subparsers(dest="experiment", metavar="NAME", help="one of: " + ", ".join(EXPERIMENTS))
    for name, module in EXPERIMENTS.items():
        p = sub.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default %(default)s)")
        p.add_argument("--iterations", type=positive_int, default=None,
                       help=f"training iterations (default {module.DEFAULT_ITERATIONS}, the seed's)")
        p.add_argument("--plot", type=Path, default=None, metavar="DIR", help="write PNG plots into DIR")
        p.add_argument("--backend", choices=BACKENDS, default="handnn",
                       help="'torch': also run it through torch twins and print both tables side by side")
        p.add_argument("--progress", action="store_true",
                       help="show progress on stderr (default: only when stderr is a terminal)")
        module.add_arguments(p)
    return parser


def list_experiments(out: TextIO) -> None:
    width = max(len(name) for name in EXPERIMENTS)
    for name, module in EXPERIMENTS.items():
        print(f"{name.ljust(width)}  {module.SUMMARY}", file=out)


def report(module: ModuleType, results: List[Result], out: TextIO) -> None:
    """The heading, the table (two side by side with the torch backend), the notes and the run times."""
    config = results[0].config
    print(module.describe(config), file=out)
    print(file=out)
    if len(results) == 1:
        print(module.table(results[0]), file=out)
    else:
        print(side_by_side(module.table(results[0]), module.table(results[1], reported=False),
                           titles=tuple(r.backend for r in results)), file=out)
    print(file=out)
    print(module.notes(config), file=out)
    print("time: " + ", ".join(f"{r.backend} {r.seconds:.1f} s" for r in results), file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``handnn-experiment`` command. Returns the exit status: 0, or 2 for a usage error or a missing
    optional dependency (matplotlib for ``--plot``, torch for ``--backend torch``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2)
        return int(exit_.code or 0)
    if args.list:
        list_experiments(sys.stdout)
        return 0
    if args.experiment is None:
        parser.print_usage(sys.stderr)
        print("handnn-experiment: error: name an experiment (or --list)", file=sys.stderr)
        return 2
    module = EXPERIMENTS[args.experiment]
    try:
        config = module.config_from_args(args)
        if args.plot is not None:
            figure_class()  # fail now, not after a minute of training
            args.plot.mkdir(parents=True, exist_ok=True)
        backends = [HandnnBackend()] + ([load_backend("torch")] if args.backend == "torch" else [])
    except (PlotUnavailable, BackendUnavailable) as exc:
        print(f"handnn-experiment: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"handnn-experiment {args.experiment}: error: {exc}", file=sys.stderr)
        return 2
    progress = Progress(Progress.wanted(args.progress))
    results = [module.run(config, backend, progress) for backend in backends]
    report(module, results, sys.stdout)
    if len(results) == 2:
        print(backends[1].agreement(results[0], results[1]), file=sys.stdout)
    if args.plot is not None:
        paths: List[Path] = []
        for result in results:
            paths += module.plot(result, args.plot, "" if result.backend == "handnn" else f"_{result.backend}")
        print(written(paths), file=sys.stdout)
    return 0
