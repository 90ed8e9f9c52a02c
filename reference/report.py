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

from handnn import nn

from .battery import loss_cases, optimizer_cases, run_loss_case, run_optimizer_case
from .harness import compare_runs, run_handnn, run_torch
from .tolerances import Comparison, tolerance
from .twin import to_torch

Builder = Callable[[np.dtype, np.random.Generator], nn.Module]


@dataclass(frozen=True)
class Case:
    """One component configuration: how to build it and the input shape it takes."""

    component: str
    build: Builder
    shape: Tuple[int, ...]


def _cases() -> List[Case]:
    def c(name: str, shape: Sequence[int], build: Builder) -> Case:
        return Case(name, build, tuple(shape))

    return [
        c("Linear", (7, 5), lambda d, r: nn.Linear(5, 3, dtype=d, rng=r)),
        c("Linear(bias=False) 3-d", (4, 6, 5), lambda d, r: nn.Linear(5, 3, bias=False, dtype=d, rng=r)),
        c("Identity", (7, 5), lambda d, r: nn.Identity()),
        c("Flatten", (7, 5, 4, 3), lambda d, r: nn.Flatten()),
        c("ReLU", (7, 5), lambda d, r: nn.ReLU()),
        c("LeakyReLU(0.2)", (7, 5), lambda d, r: nn.LeakyReLU(0.2)),
        c("Sigmoid", (7, 5), lambda d, r: nn.Sigmoid()),
        c("Tanh", (7, 5), lambda d, r: nn.Tanh()),
        c("GELU", (7, 5), lambda d, r: nn.GELU()),
        c("GELU(tanh)", (7, 5), lambda d, r: nn.GELU("tanh")),
        c("Softmax(dim=1)", (7, 5, 3), lambda d, r: nn.Softmax(dim=1)),
        c("LogSoftmax(dim=-1)", (7, 5, 3), lambda d, r: nn.LogSoftmax(dim=-1)),
        c("BatchNorm1d (N, C)", (9, 5), lambda d, r: nn.BatchNorm1d(5, dtype=d)),
        c("BatchNorm1d (N, C, L)", (7, 5, 4), lambda d, r: nn.BatchNorm1d(5, dtype=d)),
        c("BatchNorm1d momentum=None", (9, 5), lambda d, r: nn.BatchNorm1d(5, momentum=None, dtype=d)),
        c("BatchNorm1d affine=False", (9, 5), lambda d, r: nn.BatchNorm1d(5, affine=False, dtype=d)),
        c("BatchNorm1d no running stats", (9, 5),
          lambda d, r: nn.BatchNorm1d(5, track_running_stats=False, dtype=d)),
        c("BatchNorm2d", (7, 5, 4, 3), lambda d, r: nn.BatchNorm2d(5, dtype=d)),
        c("LayerNorm(5)", (7, 5), lambda d, r: nn.LayerNorm(5, dtype=d)),
        c("LayerNorm((4, 3))", (7, 5, 4, 3), lambda d, r: nn.LayerNorm((4, 3), dtype=d)),
        c("GroupNorm(2, 6)", (7, 6, 4, 3), lambda d, r: nn.GroupNorm(2, 6, dtype=d)),
        c("GroupNorm(3, 6) affine=False", (7, 6, 5), lambda d, r: nn.GroupNorm(3, 6, affine=False, dtype=d)),
        c("Dropout(0.3)", (7, 5, 4), lambda d, r: nn.Dropout(0.3, rng=r)),
        c("MLP Linear-BN-ReLU-Dropout-Linear", (16, 2), lambda d, r: nn.Sequential(
            nn.Linear(2, 20, dtype=d, rng=r), nn.BatchNorm1d(20, dtype=d), nn.ReLU(),
            nn.Dropout(0.3, rng=r), nn.Linear(20, 1, dtype=d, rng=r))),
    ]


def _randomize_affine(module: nn.Module, rng: np.random.Generator) -> None:
    """Move norm weights/biases off their 1/0 initialisation so a swapped or ignored one shows."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            if m.bias is not None:
                m.bias.data[...] = rng.normal(size=m.bias.shape)


def run_case(case: Case, dtype: np.dtype, seed: int = 0, steps: int = 3) -> List[Comparison]:
    """Train ``steps`` steps then one eval step on both sides; the worst comparison per check."""
    rng = np.random.default_rng(seed)
    module = case.build(dtype, rng)
    _randomize_affine(module, rng)
    twin = to_torch(module)
    # the output shape, from a throwaway copy, so the upstream gradient can be drawn before the real step
    out_shape = copy.deepcopy(module)(np.zeros(case.shape, dtype)).shape
    worst: Dict[str, Comparison] = {}
    for step in range(steps + 1):
        if step == steps:
            module.eval()
            twin.eval()
        x = rng.normal(1.0, 2.0, case.shape).astype(dtype)
        dout = rng.normal(size=out_shape).astype(dtype)
        ours = run_handnn(module, x, dout)
        theirs = run_torch(twin, x, dout)
        for result in compare_runs(ours, theirs, prefix="eval " if step == steps else ""):
            if result.name not in worst or _badness(result) > _badness(worst[result.name]):
                worst[result.name] = result
    return list(worst.values())


def _badness(c: Comparison) -> Tuple[int, float]:
    return (c.mismatches + (1 if c.problem else 0), c.max_rel)


def _sections() -> List[Tuple[str, list, Callable[..., List[Comparison]]]]:
    """(section, cases, runner): layers, losses, optimizer trajectories."""
    return [("layer", _cases(), run_case), ("loss", loss_cases(), run_loss_case),
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
