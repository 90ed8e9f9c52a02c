"""How the parity harness calls a module: one array in, one array out, one gradient back — numpy only.

Most modules take one input and return one output. The sequence modules do not: ``RNN``/``GRU`` return
``(out, h_n)``, ``LSTM`` ``(out, (h_n, c_n))``, the cells their new state, ``MultiheadAttention`` takes
``(query, key, value)`` and returns ``(attn_output, attn_weights)``. The report, the golden fixtures and the edge
sweep drive every module the same way through these functions, on either side (a handnn module or its torch twin):
self-attention for ``MultiheadAttention`` (the input as query, key and value), the first output compared, and the
gradient of that output alone passed back (None, i.e. zero, for the others). The states' outputs and gradients are
compared by each module's own parity tests (``tests/parity/test_rnn.py``, ...).
"""
from __future__ import annotations

from typing import Any

#: modules called as self-attention: ``module(x, x, x)``; their three input gradients are summed into dx
SELF_ATTENTION = ("MultiheadAttention",)


def call(module: Any, x: Any) -> Any:
    """``module(x)``, or ``module(x, x, x)`` for self-attention (a handnn module or a torch one)."""
    if type(module).__name__ in SELF_ATTENTION:
        return module(x, x, x)
    return module(x)


def first(out: Any) -> Any:
    """The first array of a (nested) tuple of outputs; a single output as it is."""
    while isinstance(out, tuple):
        out = out[0]
    return out


def backward_first(module: Any, out: Any, dout: Any) -> Any:
    """handnn's backward for the gradient ``dout`` of the first output (None for the others) of a forward that
    returned ``out``; returns dL/dx of the one input (None for an integer input: Embedding)."""
    if isinstance(out, tuple):
        grads = module.backward(dout, *([None] * (len(out) - 1)))
    else:
        grads = module.backward(dout)
    if type(module).__name__ in SELF_ATTENTION:
        dq, dk, dv = grads
        return dq + dk + dv
    return first(grads)
