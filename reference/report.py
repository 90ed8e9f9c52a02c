"""The parity report: every handnn layer, loss and optimizer against its torch twin, one table.

Each case builds a handnn module, its torch twin (``to_torch``), and runs a few training steps with fresh
random inputs and random upstream gradients, then one eval step, comparing output, dx, every parameter
gradient and every buffer (running statistics included) after each step. For each check the table shows the
worst error over the steps. Losses and optimizer trajectories: see ``reference.battery``. Exit status 1 when
anything mismatches.

Run ``python -m reference`` (``--only PATTERN``, ``--dtype float32``, ``--json FILE``).
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .battery import run_loss_case, run_optimizer_case
from .cases import Case, layer_cases, loss_cases, optimizer_cases, randomize_affine
from .harness import run_torch
from .runs import Run, Step, layer_comparisons, run_handnn, step_masks
from .tolerances import Comparison, tolerance
from .twin import to_torch

@dataclass
class LayerTrace:
    """A layer case run on both sides: the starting state, every step's inputs, and each side's results."""

    state: Dict[str, np.ndarray]
    steps: List[Step]
    ours: List[Run]
    theirs: List[Run]


def trace_layer(case: Case, dtype: np.dtype, seed: int = 0, steps: int = 3) -> LayerTrace:
    """``steps`` training steps then one eval step, each with a fresh random input and upstream gradient."""
    rng = np.random.default_rng(seed)
    module = case.build(dtype, rng)
    randomize_affine(module, rng)
    twin = to_torch(module)
    state = {k: np.array(v, copy=True) for k, v in module.state_dict().items()}
    # the output shape, from a throwaway copy, so the upstream gradient can be drawn before the real step
    out_shape = copy.deepcopy(module)(np.zeros(case.shape, dtype)).shape
    trace = LayerTrace(state, [], [], [])
    for i in range(steps + 1):
        training = i < steps
        module.train(training)
        twin.train(training)
        step = Step(training, rng.normal(1.0, 2.0, case.shape).astype(dtype), rng.normal(size=out_shape).astype(dtype))
        trace.ours.append(run_handnn(module, step.x, step.dout))
        step.masks = step_masks(module)  # the masks handnn drew; the twin's MaskedDropout applies the same ones
        trace.theirs.append(run_torch(twin, step.x, step.dout))
        trace.steps.append(step)
    return trace


def run_case(case: Case, dtype: np.dtype, seed: int = 0, steps: int = 3) -> List[Comparison]:
    """Train ``steps`` steps then one eval step on both sides; the worst comparison per check."""
    trace = trace_layer(case, dtype, seed, steps)
    return layer_comparisons(trace.steps, trace.ours, trace.theirs)


def _sections() -> List[Tuple[str, list, Callable[..., List[Comparison]]]]:
    """(section, cases, runner): layers, losses, optimizer trajectories."""
    return [("layer", layer_cases(), run_case), ("loss", loss_cases(), run_loss_case),
            ("optimizer", optimizer_cases(), run_optimizer_case)]


def battery(pattern: str = "*", dtypes: Sequence[str] = ("float64", "float32")) -> Iterator[Tuple[str, Comparison]]:
    """Every (component, comparison) of the cases whose name matches ``pattern`` (fnmatch, case-insensitive)."""
    for _, cases, runner in _sections():
        for case in cases:
            if not fnmatch.fnmatch(case.component.lower(), pattern.lower()):
                continue
            for dtype in dtypes:
                for result in runner(case, np.dtype(dtype)):
                    yield case.component, result


def versions() -> Dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}


def _row(component: str, r: Comparison) -> List[str]:
    verdict = "ok" if r.passed else "MISMATCH" + (f" ({r.problem})" if r.problem else "")
    return [component, r.name, r.dtype, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", f"{r.mismatches}/{r.total}", verdict]


def format_table(rows: List[List[str]]) -> str:
    header = ["component", "check", "dtype", "max abs err", "max rel err", "mismatches", "verdict"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="*", help="run only the components matching this glob (e.g. 'BatchNorm*')")
    parser.add_argument("--dtype", choices=["float64", "float32"], action="append",
                        help="dtype(s) to check (default: both)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dtypes = args.dtype or ["float64", "float32"]
    results = list(battery(args.only, dtypes))
    if not results:
        print(f"no component matches {args.only!r}", file=sys.stderr)
        return 2
    info = versions()
    print("handnn parity report — " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print("tolerances (rtol, atol x max(1, max|expected|)): " + ", ".join(
        f"{d} {tolerance(d)}" for d in dtypes))
    print(format_table([_row(c, r) for c, r in results]))
    failed = [(c, r) for c, r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed "
          f"({len({c for c, _ in results})} components, {len(results)} checks)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"versions": info, "results": [dict(component=c, passed=r.passed, **asdict(r))
                                                      for c, r in results]}, fh, indent=1)
    return 1 if failed else 0
