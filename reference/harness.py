"""Run a handnn module and its torch twin on the same input and upstream gradient, and compare everything.

One call of :func:`run_handnn` / :func:`run_torch` is one training (or eval) step: forward, backward with the
given upstream gradient, then a snapshot of the output, dL/dx, every parameter gradient and every buffer.
:func:`compare_runs` lines the two snapshots up key by key.
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional

import numpy as np
import torch

from handnn import nn

from .calls import call, first
from .runs import Run, compare_runs, failures, run_handnn
from .tolerances import Comparison
from .twin import to_numpy, to_tensor


def run_torch(twin: torch.nn.Module, x: np.ndarray, dout: Optional[np.ndarray]) -> Run:
    """The same step through the torch twin (autograd computes the gradients)."""
    twin.zero_grad(set_to_none=True)
    xt = to_tensor(x)
    differentiable = dout is not None and xt.is_floating_point()  # integer input (Embedding): no dx
    xt.requires_grad_(differentiable)
    out = first(call(twin, xt))
    if dout is not None and out.requires_grad:
        out.backward(to_tensor(dout))
    grads = {name: to_numpy(p.grad) for name, p in twin.named_parameters() if p.grad is not None}
    buffers = {name: to_numpy(b) for name, b in twin.named_buffers()}
    return Run(to_numpy(out), to_numpy(xt.grad) if differentiable else None, grads, buffers)


def assert_nonzero(name: str, array: np.ndarray) -> None:
    """Fail when a reference gradient is ~0: a test comparing zeros with zeros proves nothing."""
    if array.size and not np.any(np.abs(array) > 1e-6 * max(1.0, float(np.max(np.abs(array))))):
        raise AssertionError(f"reference {name} is ~0 everywhere: choose a non-degenerate input or upstream gradient")


def assert_bit_exact(ours: Run, theirs: Run) -> None:
    """Output and dx identical to torch's, dtype included (assert_array_equal alone ignores dtype)."""
    for name in ("out", "dx"):
        actual, expected = getattr(ours, name), getattr(theirs, name)
        assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != torch's {expected.dtype}"
        np.testing.assert_array_equal(actual, expected, err_msg=f"{name} differs from torch")


def assert_nondegenerate(mask: np.ndarray) -> None:
    """A dropout keep-mask keeping everything or nothing would not test the drop/keep arithmetic."""
    assert 0 < mask.sum() < mask.size, f"degenerate mask: {mask.sum()} of {mask.size} kept"


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
            if grad is not None:  # no dx for an integer input
                assert_nonzero(prefix + name, grad)
    return results


def _raised(call: Callable[[], object]) -> BaseException:
    """The exception ``call`` raises (an ``AssertionError`` when it raises none)."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any class: the caller compares the two sides' classes
        return exc
    raise AssertionError("the input was accepted where a rejection was expected")


def torch_error(call: Callable[[], object]) -> BaseException:
    """The exception torch raises for ``call`` (an ``AssertionError`` if torch accepts the input)."""
    return _raised(call)


def assert_rejected_like_torch(module: nn.Module, twin: torch.nn.Module, x: np.ndarray,
                               match: Optional[str] = None, own_match: Optional[str] = None) -> None:
    """Bad input: handnn raises torch's exception class (``match`` found in both messages, or ``own_match`` in
    handnn's), and changes nothing: the state_dict, and the cache backward would use."""
    cache = module._cache
    expected = torch_error(lambda: twin(torch.from_numpy(x.copy())))
    if match is not None:  # the message fragment is checked against torch's own message too
        assert re.search(match, str(expected)), str(expected)
    before = module.state_dict()
    raised = _raised(lambda: module(x))
    assert type(raised) is type(expected), f"handnn raised {type(raised).__name__}, torch {type(expected).__name__}"
    pattern = match or own_match
    assert pattern is None or re.search(pattern, str(raised)), f"{pattern!r} not in {str(raised)!r}"
    after = module.state_dict()
    assert list(after) == list(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert module._cache is cache  # the last good forward is still the one backward would use


def assert_inputs_untouched(module: nn.Module, x: np.ndarray, dout: np.ndarray) -> None:
    """Forward and backward leave the input and the upstream gradient as they were, and return new arrays."""
    x_copy, dout_copy = x.copy(), dout.copy()
    out = module(x)
    dx = module.backward(dout)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    assert not np.shares_memory(out, x) and not np.shares_memory(dx, dout)
