"""The parity report: every handnn layer, loss and optimizer against its torch twin, one table.

Each case builds a handnn module, its torch twin (``to_torch``), and runs a few training steps with fresh
random inputs and random upstream gradients, then one eval step, comparing output, dx, every parameter
gradient and every buffer (running statistics included) after each step. For each check the table shows the
worst error over the steps. Losses and optimizer trajectories: see ``reference.battery``. Exit status 1 when
anything mismatches.

Run ``handnn-verify`` or ``python -m reference`` (``--only PATTERN``, ``--dtype float32``, ``--json FILE``; ``--user
MODULE:FUNC`` checks your own CS231n-style code instead, see ``reference.check``).
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import platform
import sys
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from handnn import nn

from .battery import run_init_case, run_loss_case, run_optimizer_case
from .calls import call, first
from .cases import Case, init_cases, layer_cases, loss_cases, optimizer_cases, randomize_affine
from .check import main_user, split_user_arg
from .diagnosis import diagnose
from .harness import run_torch
from .runs import Run, Step, compare_runs, run_handnn, step_masks, worst
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
    out_shape = first(call(copy.deepcopy(module), case.input(np.random.default_rng(0), dtype))).shape
    trace = LayerTrace(state, [], [], [])
    for i in range(steps + 1):
        training = i < steps
        module.train(training)
        twin.train(training)
        step = Step(training, case.input(rng, dtype), rng.normal(size=out_shape).astype(dtype))
        trace.ours.append(run_handnn(module, step.x, step.dout))
        step.masks = step_masks(module)  # the masks handnn drew; the twin's MaskedDropout applies the same ones
        trace.theirs.append(run_torch(twin, step.x, step.dout))
        trace.steps.append(step)
    return trace


def run_case(case: Case, dtype: np.dtype, seed: int = 0, steps: int = 3) -> List[Comparison]:
    """Train ``steps`` steps then one eval step on both sides; the worst comparison per check, a failing one with
    its likely cause when :mod:`reference.diagnosis` recognises it."""
    trace = trace_layer(case, dtype, seed, steps)
    module = case.build(dtype, np.random.default_rng(seed))  # read for its hyper-parameters only
    results = []
    for i, (step, ours, theirs) in enumerate(zip(trace.steps, trace.ours, trace.theirs)):
        for c in compare_runs(ours, theirs, prefix="" if step.training else "eval "):
            if not c.passed and not c.problem:
                # a buffer compared after the eval step is still a running statistic, not an eval output
                check = c.name[len("eval "):] if c.name.startswith("eval buffer") else c.name
                cause = diagnose(check, _named(c.name, ours), _named(c.name, theirs),
                                 **_layer_context(module, trace, i))
                c = replace(c, cause=cause or "")
            results.append(c)
    return worst(results)


def _named(check: str, run: Run) -> np.ndarray:
    """The array of ``run`` a check name ('eval out', 'dx', 'grad weight', 'buffer running_var') refers to."""
    name = check[len("eval "):] if check.startswith("eval ") else check
    if name in ("out", "dx"):
        return getattr(run, name)
    kind, _, key = name.partition(" ")
    return (run.grads if kind == "grad" else run.buffers)[key]


def _layer_context(module: nn.Module, trace: LayerTrace, i: int) -> Dict[str, object]:
    """What the diagnosis detectors recompute from: the step's input and upstream gradient, the layer's
    hyper-parameters and starting state, the training batches so far; for a single layer only."""
    step = trace.steps[i]
    if isinstance(module, nn.Sequential):
        return {}
    state = trace.state
    context: Dict[str, object] = {"kind": type(module).__name__, "x": step.x, "dout": step.dout,
                                  "gamma": state.get("weight"), "beta": state.get("bias"),
                                  "eps": getattr(module, "eps", None), "p": getattr(module, "p", None),
                                  "mask": step.masks[0] if step.masks else None}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.momentum is not None:
        context.update(n=step.x.size // step.x.shape[1], momentum=module.momentum,
                       batches=[s.x for s in trace.steps[:i + 1] if s.training],
                       running_mean0=state.get("running_mean"), running_var0=state.get("running_var"))
        if not step.training:  # the eval output from handnn's own running statistics
            context.update(running_mean=trace.ours[i].buffers.get("running_mean"),
                           running_var=trace.ours[i].buffers.get("running_var"))
    return context


def _sections() -> List[Tuple[str, list, Callable[..., List[Comparison]]]]:
    """(section, cases, runner): layers, losses, optimizer trajectories, initialiser distributions."""
    return [("layer", layer_cases(), run_case), ("loss", loss_cases(), run_loss_case),
            ("optimizer", optimizer_cases(), run_optimizer_case), ("init", init_cases(), run_init_case)]


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
    verdict = "ok" if r.passed else "MISMATCH" + (f" ({r.problem})" if r.problem else "") + (
        f" — likely cause: {r.cause}" if r.cause else "")
    return [component, r.name, r.dtype, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", f"{r.mismatches}/{r.total}", verdict]


def format_table(rows: List[List[str]]) -> str:
    header = ["component", "check", "dtype", "max abs err", "max rel err", "mismatches", "verdict"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def summary_rows(results: Sequence[Tuple[str, Comparison]]) -> List[List[str]]:
    """One row per component, in the battery's order: its checks (passed / total, both dtypes), its worst
    relative error among the checks, and the verdict."""
    by_component: Dict[str, List[Comparison]] = {}
    for component, r in results:
        by_component.setdefault(component, []).append(r)
    rows = []
    for component, checks in by_component.items():
        passed = sum(r.passed for r in checks)
        worst = max(checks, key=lambda r: (not r.passed, r.max_rel if np.isfinite(r.max_rel) else np.inf))
        rows.append([component, f"{passed}/{len(checks)}", f"{worst.max_rel:.2e} ({worst.name}, {worst.dtype})",
                     "ok" if passed == len(checks) else f"MISMATCH ({len(checks) - passed} failed)"])
    return rows


def format_summary(rows: List[List[str]]) -> str:
    header = ["component", "checks", "worst rel err (check, dtype)", "verdict"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    spec, rest = split_user_arg(argv)
    if spec is not None:  # handnn-verify --user MODULE:FUNC ...: check the user's own code instead
        return main_user(spec, rest)
    parser = argparse.ArgumentParser(prog="handnn-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="*", help="run only the components matching this glob (e.g. 'BatchNorm*')")
    parser.add_argument("--dtype", choices=["float64", "float32"], action="append",
                        help="dtype(s) to check (default: both)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="print every check (default: one line per component, the failing checks in full)")
    parser.add_argument("--user", metavar="MODULE:FUNC",
                        help="check your own CS231n-style layer or update rule against torch instead (options: --kind "
                             "--backward --momentum-style --keep-prob --dtype --seed --json)")
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
    failed = [(c, r) for c, r in results if not r.passed]
    if args.verbose:
        print(format_table([_row(c, r) for c, r in results]))
    else:
        print(format_summary(summary_rows(results)))
        if failed:
            print("\nfailing checks:")
            print(format_table([_row(c, r) for c, r in failed]))
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed "
          f"({len({c for c, _ in results})} components, {len(results)} checks)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"versions": info, "results": [dict(component=c, passed=r.passed, **asdict(r))
                                                      for c, r in results]}, fh, indent=1)
    return 1 if failed else 0
