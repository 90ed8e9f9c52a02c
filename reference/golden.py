"""Golden fixtures: torch's results for the parity battery, stored in ``.npz``, replayed with numpy only.

``python -m reference.record`` (needs torch) runs every case of :mod:`reference.cases` against torch and stores, per
case and dtype, what handnn needs to redo the run — starting parameters and buffers, inputs, upstream gradients,
targets, dropout masks, mini-batch indices — and what torch computed: outputs, input and parameter gradients,
running statistics, loss values, and optimizer trajectories (parameters, running statistics and optimizer state
after the steps in :data:`KEEP`). :func:`check` replays one entry through handnn alone and compares with the
tolerance table, so an environment without torch still verifies handnn against numbers torch produced.

Layout: one flat ``.npz`` whose keys are ``section/component/dtype/...`` paths; ``meta/...`` holds the versions it
was recorded with. Everything is a plain numeric, boolean or unicode array: it loads with ``allow_pickle=False``.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .cases import Case, LossCase, OptimCase, layer_cases, loss_cases, optimizer_cases
from .runs import Run, Step, compare_dicts, layer_comparisons, replay_layer, replay_loss, replay_optimizer, worst
from .tolerances import Comparison

#: optimizer steps (1-based) whose snapshots are stored: the first steps (dampening, bias correction, the
#: first momentum buffer), the scheduler's change points, and the end of the run
KEEP = (1, 2, 3, 51, 150)
SECTIONS = ("layer", "loss", "optimizer")
Entry = Tuple[str, str, str]  # (section, component, dtype)


def load(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Every array of a fixture file, read without pickle (no code runs on load)."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def save(arrays: Mapping[str, np.ndarray], path: Union[str, Path]) -> None:
    """Write compressed, atomically (a temporary file, then rename): an interrupted run never leaves a truncated
    fixture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def fixture_main(prog: str, description: str, default: Path, record: Callable[[], Dict[str, np.ndarray]],
                 differences: Callable[[Dict[str, np.ndarray], Dict[str, np.ndarray]], List[str]],
                 argv: Optional[Sequence[str]] = None) -> int:
    """The recorders' command line: record and write ``--out`` (default ``default``), or with ``--check`` compare
    the stored file with a fresh recording and exit 1 on any of ``differences``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", type=Path, default=default, help="fixture file (default %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="compare the stored fixtures with a fresh recording instead of writing")
    args = parser.parse_args(argv)
    fresh = record()
    if args.check:
        stored = load(args.out)
        problems = differences(stored, fresh)
        print(f"{args.out}: recorded with torch {stored.get('meta/torch', '?')}, installed torch "
              f"{fresh['meta/torch']}: {len(problems)} difference(s)")
        for line in problems[:50]:
            print("  " + line)
        return 1 if problems else 0
    save(fresh, args.out)
    print(f"wrote {args.out} ({len(fresh)} arrays, {args.out.stat().st_size / 1024:.0f} KiB, "
          f"torch {fresh['meta/torch']})")
    return 0


def meta(arrays: Mapping[str, np.ndarray]) -> Dict[str, str]:
    """The versions the fixtures were recorded with (``torch``, ``numpy``, ``python``)."""
    return {key[len("meta/"):]: str(value) for key, value in arrays.items() if key.startswith("meta/")}


def entries(keys: Iterable[str]) -> List[Entry]:
    """(section, component, dtype) of every recorded case, in recording order, from the fixture's keys (or the
    arrays keyed by them)."""
    seen: Dict[Entry, None] = {}
    for key in keys:
        section, _, rest = key.partition("/")
        if section in SECTIONS:
            component, dtype = rest.split("/")[:2]
            seen[(section, component, dtype)] = None
    return list(seen)


def sub(arrays: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    """The arrays under ``prefix/``, keyed by the rest of their path."""
    prefix = prefix.rstrip("/") + "/"
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


def flatten(prefix: str, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {f"{prefix}/{key}": np.asarray(value) for key, value in arrays.items()}


def _case(section: str, component: str) -> Union[Case, LossCase, OptimCase]:
    cases = {"layer": layer_cases, "loss": loss_cases, "optimizer": optimizer_cases}[section]()
    for case in cases:
        if case.component == component:
            return case
    raise KeyError(f"the fixture's {section} case {component!r} is no longer in reference.cases: re-record "
                   f"the fixtures (python -m reference.record)")


# ---- layers: what record stores, and its replay -----------------------------------------------------------------
def layer_arrays(state: Mapping[str, np.ndarray], steps: List[Step], theirs: List) -> Dict[str, np.ndarray]:
    """The keys of one layer case: state, then per step its inputs, masks, and torch's Run."""
    out = flatten("state", state)
    for i, (step, run) in enumerate(zip(steps, theirs)):
        out[f"step{i}/training"] = np.asarray(step.training)
        out[f"step{i}/x"], out[f"step{i}/dout"] = step.x, step.dout
        out.update({f"step{i}/mask{j}": mask for j, mask in enumerate(step.masks)})
        out[f"step{i}/torch/out"] = run.out
        if run.dx is not None:  # an integer input (Embedding's indices) has no gradient
            out[f"step{i}/torch/dx"] = run.dx
        out.update(flatten(f"step{i}/torch/grad", run.grads))
        out.update(flatten(f"step{i}/torch/buffer", run.buffers))
    return out


def _layer_steps(arrays: Mapping[str, np.ndarray]):
    steps, theirs = [], []
    i = 0
    while f"step{i}/x" in arrays:
        masks = [arrays[f"step{i}/mask{j}"] for j in range(8) if f"step{i}/mask{j}" in arrays]
        steps.append(Step(bool(arrays[f"step{i}/training"]), arrays[f"step{i}/x"], arrays[f"step{i}/dout"], masks))
        theirs.append(Run(arrays[f"step{i}/torch/out"], arrays.get(f"step{i}/torch/dx"),
                          sub(arrays, f"step{i}/torch/grad"), sub(arrays, f"step{i}/torch/buffer")))
        i += 1
    return steps, theirs


def _check_layer(case: Case, dtype: str, arrays: Mapping[str, np.ndarray]) -> List[Comparison]:
    steps, theirs = _layer_steps(arrays)
    ours = replay_layer(case, np.dtype(dtype), sub(arrays, "state"), steps)
    return layer_comparisons(steps, ours, theirs)


# ---- losses ------------------------------------------------------------------------------------------------------
def loss_arrays(state, x, target, grad_output, theirs) -> Dict[str, np.ndarray]:
    out = flatten("state", state)
    out.update({"x": x, "target": target, "grad_output": grad_output})
    out.update(flatten("torch", theirs))
    return out


def _check_loss(case: LossCase, dtype: str, arrays: Mapping[str, np.ndarray]) -> List[Comparison]:
    ours = replay_loss(case, np.dtype(dtype), sub(arrays, "state"), arrays["x"], arrays["target"],
                       arrays["grad_output"])
    return compare_dicts(ours, sub(arrays, "torch"))


# ---- optimizer trajectories --------------------------------------------------------------------------------------
def optimizer_arrays(state, x_all, y_all, batches, masks, theirs: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Data, starting state, batches (uint8 indices) and masks of every step; torch's snapshots at :data:`KEEP`."""
    out = flatten("state", state)
    out.update({"x_all": x_all, "y_all": y_all, "batches": batches.astype(np.uint8), "masks": masks})
    for step in KEEP:
        if step <= len(theirs):
            out.update(flatten(f"torch/step{step}", theirs[step - 1]))
    return out


def _check_optimizer(case: OptimCase, dtype: str, arrays: Mapping[str, np.ndarray]) -> List[Comparison]:
    keep = [step for step in KEEP if f"torch/step{step}/loss" in arrays]
    if not keep:
        raise KeyError("the fixture holds no torch snapshot for this trajectory")
    replay = replay_optimizer(case, np.dtype(dtype), sub(arrays, "state"), arrays["x_all"], arrays["y_all"],
                              arrays["batches"].astype(np.intp), arrays["masks"], keep)
    return worst([c for step, ours in replay for c in compare_dicts(ours, sub(arrays, f"torch/step{step}"))])


def check(arrays: Mapping[str, np.ndarray], entry: Entry) -> List[Comparison]:
    """Replay one recorded case through handnn (numpy only) and compare with torch's stored results."""
    section, component, dtype = entry
    case = _case(section, component)
    checker = {"layer": _check_layer, "loss": _check_loss, "optimizer": _check_optimizer}[section]
    return checker(case, dtype, sub(arrays, f"{section}/{component}/{dtype}"))


def iter_checks(arrays: Mapping[str, np.ndarray]) -> Iterator[Tuple[Entry, List[Comparison]]]:
    for entry in entries(arrays):
        yield entry, check(arrays, entry)
