"""Run a handnn module and its torch twin on the same input and upstream gradient, and compare everything.

One call of :func:`run_handnn` / :func:`run_torch` is one training (or eval) step: forward, backward with the
given upstream gradient, then a snapshot of the output, dL/dx, every parameter gradient and every buffer.
:func:`compare_runs` lines the two snapshots up key by key.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from handnn import nn

from .runs import Run, compare_runs, failures, run_handnn
from .tolerances import Comparison
from .twin import to_numpy, to_tensor


def run_torch(twin: torch.nn.Module, x: np.ndarray, dout: Optional[np.ndarray]) -> Run:
    """The same step through the torch twin (autograd computes the gradients)."""
    twin.zero_grad(set_to_none=True)
    xt = to_tensor(x).requires_grad_(dout is not None)
    out = twin(xt)
    if dout is not None:
        out.backward(to_tensor(dout))
    grads = {name: to_numpy(p.grad) for name, p in twin.named_parameters() if p.grad is not None}
    buffers = {name: to_numpy(b) for name, b in twin.named_buffers()}
    return Run(to_numpy(out), to_numpy(xt.grad) if dout is not None else None, grads, buffers)


def assert_nonzero(name: str, array: np.ndarray) -> None:
    """Fail when a reference gradient is ~0: a test comparing zeros with zeros proves nothing."""
    if array.size and not np.any(np.abs(array) > 1e-6 * max(1.0, float(np.max(np.abs(array))))):
        raise AssertionError(f"reference {name} is ~0 everywhere: choose a non-degenerate input or upstream gradient")


def assert_step_parity(module: nn.Module, twin: torch.nn.Module, x: np.ndarray, dout: Optional[np.ndarray],
                       *, prefix: str = "", nonzero: bool = True) -> List[Comparison]:
    """One step on both sides; raise ``AssertionError`` listing every mismatch.

    With ``nonzero`` (the default) torch's dx and parameter gradients must also not be ~0.
    Returns the comparisons (for reports).
    """
    ours = run_handnn(module, x, dout)
    theirs = run_torch(twin, x, dout)
    results = compare_runs(ours, theirs, prefix)
    report = failures(results)
    if report:
        raise AssertionError(report)
    if nonzero and dout is not None:
        for name, grad in [("dx", theirs.dx), *theirs.grads.items()]:
            assert_nonzero(prefix + name, grad)
    return results
