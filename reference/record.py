"""Record the golden fixtures: ``python -m reference.record [--out FILE] [--check]``.

Runs every case of the parity battery (layers, losses, optimizer trajectories; float64 and float32) against the
installed torch and writes what torch computed, with the inputs that produced it, to one compressed ``.npz``
(default ``tests/golden/fixtures/parity.npz``), stamped with the torch, numpy and python versions. ``--check``
records in memory instead and exits 1 when the stored fixtures no longer match what the installed torch computes
(inputs must be identical; torch's results within the tolerance table).
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .battery import trace_loss, trace_optimizer
from .cases import layer_cases, loss_cases, optimizer_cases
from .golden import SECTIONS, fixture_main, layer_arrays, loss_arrays, optimizer_arrays
from .report import trace_layer
from .tolerances import Comparison, compare

DEFAULT = Path("tests/golden/fixtures/parity.npz")
DTYPES = ("float64", "float32")


def _put(out: Dict[str, np.ndarray], prefix: str, arrays: Dict[str, np.ndarray]) -> None:
    if "/" in prefix.split("/", 1)[1].rsplit("/", 1)[0]:
        raise ValueError(f"a component name may not contain '/': {prefix!r}")
    out.update({f"{prefix}/{key}": value for key, value in arrays.items()})


def record(sections: Sequence[str] = SECTIONS, dtypes: Sequence[str] = DTYPES) -> Dict[str, np.ndarray]:
    """Every fixture array of the given sections and dtypes, keyed ``section/component/dtype/...``, plus ``meta/``."""
    torch.set_num_threads(1)
    out: Dict[str, np.ndarray] = {"meta/torch": np.asarray(torch.__version__), "meta/numpy": np.asarray(np.__version__),
                                  "meta/python": np.asarray(platform.python_version())}
    for dtype in dtypes:
        if "layer" in sections:
            for case in layer_cases():
                t = trace_layer(case, np.dtype(dtype))
                _put(out, f"layer/{case.component}/{dtype}", layer_arrays(t.state, t.steps, t.theirs))
        if "loss" in sections:
            for case in loss_cases():
                t = trace_loss(case, np.dtype(dtype))
                _put(out, f"loss/{case.component}/{dtype}",
                     loss_arrays(t.state, t.x, t.target, t.grad_output, t.theirs))
        if "optimizer" in sections:
            for case in optimizer_cases():
                t = trace_optimizer(case, np.dtype(dtype))
                _put(out, f"optimizer/{case.component}/{dtype}",
                     optimizer_arrays(t.state, t.x_all, t.y_all, t.batches, t.masks, t.theirs))
    return out


def differences(stored: Dict[str, np.ndarray], fresh: Dict[str, np.ndarray]) -> List[str]:
    """Why the stored fixtures differ from a fresh recording ('' entries: none).

    Inputs (everything outside ``torch/``) must be equal; torch's results must agree within the tolerance table
    (a torch build on another CPU may round differently; a changed torch changes them beyond rounding).
    """
    problems = [f"{key}: only in the stored fixtures" for key in sorted(set(stored) - set(fresh))
                if not key.startswith("meta/")]
    problems += [f"{key}: not in the stored fixtures" for key in sorted(set(fresh) - set(stored))
                 if not key.startswith("meta/")]
    for key in sorted(set(stored) & set(fresh)):
        if key.startswith("meta/"):
            continue
        a, b = stored[key], fresh[key]
        if "/torch/" not in key:
            if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=True):
                problems.append(f"{key}: input differs")
            continue
        result: Comparison = compare(key, a, b)
        if not result.passed:
            problems.append(str(result))
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    return fixture_main("python -m reference.record", __doc__.splitlines()[0], DEFAULT, record, differences, argv)

if __name__ == "__main__":
    sys.exit(main())
