"""Recurrent layers: one step of the RNN (tanh / ReLU), LSTM and GRU cells, and whole sequences of one layer in one
direction, each with its backward pass (through time for the sequences).

The cells are torch's, the gates stacked in the rows of the weights in torch's order::

    RNN    h' = φ(W_ih x + b_ih + W_hh h + b_hh)                         φ = tanh or relu
    LSTM   i, f, g, o = σ, σ, tanh, σ of the four blocks of (W_ih x + b_ih + W_hh h + b_hh)
           c' = f ⊙ c + i ⊙ g,    h' = o ⊙ tanh(c')
    GRU    r, z = σ of the first two blocks of (W_ih x + b_ih + W_hh h + b_hh)
           n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),    h' = (1 − z) ⊙ n + z ⊙ h

(CS231n's ``lstm_step_forward`` stacks i, f, o, g: not torch's order.)

The cell pairs (``*_cell_forward`` / ``*_cell_backward``) are the formulas above line by line, on (N, I) inputs and
(N, H) states. The layer pairs (``*_layer_forward`` / ``*_layer_backward``) run a whole (T, N, I) sequence through
one layer, left to right or (``reverse=True``) right to left, vectorised where the recurrence allows:

- the input projection ``x_t W_ihᵀ + b`` of all T steps is one matrix product before the loop; the loop carries only
  the recurrence (``h W_hhᵀ`` and the gates), writing into preallocated arrays;
- the backward pass forms each gate's local derivative for all steps at once, loops back through time carrying only
  ``dh`` (and ``dc``), and takes the parameter gradients after the loop as one product each over the stacked steps:
  ``dW_ih = Σ_t dA_tᵀ x_t = dAᵀ X``, ``dW_hh = dAᵀ H_prev``, ``db = Σ_t Σ_n dA``, ``dx = dA W_ih``.

States are indexed by time: a layer keeps ``hs`` of shape (T + 1, N, H) where, left to right, step t reads ``hs[t]``
and writes ``hs[t + 1]`` (``hs[0] = h0``); right to left step t reads ``hs[t + 1]`` and writes ``hs[t]``
(``hs[T] = h0``). Either way the output at time t is the state step t wrote.

Gradients: a None upstream gradient (of the output, or of a final state) is zero; a None initial state is zero and
still gets its gradient. Bias gradients are None where the bias is None. Arrays keep the input's dtype (float32
stays float32). Nothing passed in is modified.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._validation import check_array, check_ndarray, check_same_dtype
from ._kernels import col_sums

#: every pair computes with IEEE semantics and no warnings: an inf or NaN input or gradient gives torch's inf/NaN
#: (inf - inf, inf * 0, overflow), not a RuntimeWarning
_IEEE = np.errstate(invalid="ignore", over="ignore", divide="ignore")

NONLINEARITIES = ("tanh", "relu")


# ---- caches --------------------------------------------------------------------------------------------------------
class RNNCellCache(NamedTuple):
    """What :func:`rnn_cell_backward` needs: the step's input and state, the weights, and the new state ``h1``
    (φ'(a) is read from it: ``1 − h1²`` for tanh, ``not h1 <= 0`` for relu)."""

    x: np.ndarray
    h: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    h1: np.ndarray
    nonlinearity: str
    has_bias: Tuple[bool, bool]  # (b_ih, b_hh) given


class LSTMCellCache(NamedTuple):
    """What :func:`lstm_cell_backward` needs: input, states, weights, the four gate activations, ``tanh(c1)``."""

    x: np.ndarray
    h: np.ndarray
    c: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    tanh_c1: np.ndarray
    has_bias: Tuple[bool, bool]


class GRUCellCache(NamedTuple):
    """What :func:`gru_cell_backward` needs: input, state, weights, the gates r, z, n, and ``W_hn h + b_hn``."""

    x: np.ndarray
    h: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    hn: np.ndarray  # W_hn h + b_hn, the term r gates
    has_bias: Tuple[bool, bool]


class RNNLayerCache(NamedTuple):
    """What :func:`rnn_layer_backward` needs. ``hs`` (T + 1, N, H): every state, indexed by time (module docstring)."""

    x: np.ndarray
    hs: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    nonlinearity: str
    has_bias: Tuple[bool, bool]
    reverse: bool


class LSTMLayerCache(NamedTuple):
    """What :func:`lstm_layer_backward` needs: ``hs``, ``cs`` (T + 1, N, H) indexed by time, the gate activations
    ``acts`` (T, N, 4H) in torch's order i, f, g, o, and ``tanh_c`` (T, N, H), tanh of each step's new cell state."""

    x: np.ndarray
    hs: np.ndarray
    cs: np.ndarray
    acts: np.ndarray
    tanh_c: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: Tuple[bool, bool]
    reverse: bool


class GRULayerCache(NamedTuple):
    """What :func:`gru_layer_backward` needs: ``hs`` (T + 1, N, H) indexed by time, the gates ``acts`` (T, N, 3H)
    in torch's order r, z, n, and ``hn`` (T, N, H) = ``W_hn h + b_hn`` of each step."""

    x: np.ndarray
    hs: np.ndarray
    acts: np.ndarray
    hn: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: Tuple[bool, bool]
    reverse: bool


# ---- checks --------------------------------------------------------------------------------------------------------
def check_nonlinearity(nonlinearity: str) -> None:
    """torch's ``ValueError`` for an RNN nonlinearity other than 'tanh' or 'relu'."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


def _check_weights(op: str, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Optional[np.ndarray],
                   b_hh: Optional[np.ndarray], gates: int) -> int:
    """The weights' shapes: ``w_ih`` (gates·H, I), ``w_hh`` (gates·H, H), biases (gates·H,). Returns H."""
    for name, w in (("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh)):
        if w is not None:
            check_ndarray(w, op, name)
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise RuntimeError(f"{op}(): expected w_hh of shape ({gates}·hidden_size, hidden_size), but got "
                           f"{list(w_hh.shape)}")
    hidden = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != gates * hidden:
        raise RuntimeError(f"{op}(): expected w_ih of shape ({gates * hidden}, input_size) to match w_hh "
                           f"{list(w_hh.shape)}, but got {list(w_ih.shape)}")
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None and b.shape != (gates * hidden,):
            raise RuntimeError(f"{op}(): expected {name} of shape ({gates * hidden},), but got {list(b.shape)}")
    return hidden


def _check_dtypes(op: str, x: np.ndarray, others: Sequence[Optional[np.ndarray]]) -> None:
    """torch computes in one dtype: a float input, and every state and parameter of its dtype (RuntimeError)."""
    check_array(x, op)
    for other in others:
        check_same_dtype(x, other, op)


def _check_cell(op: str, x: np.ndarray, states: Sequence[Optional[np.ndarray]], w_ih: np.ndarray,
                w_hh: np.ndarray, b_ih: Optional[np.ndarray], b_hh: Optional[np.ndarray], gates: int) -> int:
    """ATen's checks of an RNN cell's arguments (its messages), in its order. Returns H."""
    check_ndarray(x, op)
    hidden = _check_weights(op, w_ih, w_hh, b_ih, b_hh, gates)
    if x.ndim != 2:
        raise RuntimeError(f"{op}(): expected a 2-d input (batch, input_size), but got input of shape "
                           f"{list(x.shape)}")
    if x.shape[1] != w_ih.shape[1]:
        raise RuntimeError(f"input has inconsistent input_size: got {x.shape[1]} expected {w_ih.shape[1]}")
    for k, s in enumerate(states):
        if s is None:
            continue
        check_ndarray(s, op, f"hidden{k}")
        size0 = s.shape[0] if s.ndim else None
        if size0 != x.shape[0]:
            raise RuntimeError(f"Input batch size {x.shape[0]} doesn't match hidden{k} batch size {size0}")
        size1 = s.shape[1] if s.ndim > 1 else None
        if size1 != hidden:
            raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got {size1}, expected {hidden}")
        if s.ndim != 2:
            raise RuntimeError(f"hidden{k} must be 2-d (batch, hidden_size), but got shape {list(s.shape)}")
    _check_dtypes(op, x, [*states, w_ih, w_hh, b_ih, b_hh])
    return hidden


def _check_layer(op: str, x: np.ndarray, states: Sequence[Optional[np.ndarray]], w_ih: np.ndarray,
                 w_hh: np.ndarray, b_ih: Optional[np.ndarray], b_hh: Optional[np.ndarray], gates: int) -> int:
    """The checks of one layer over a (T, N, I) sequence, with torch's messages (``nn.RNN``'s). Returns H."""
    check_ndarray(x, op)
    hidden = _check_weights(op, w_ih, w_hh, b_ih, b_hh, gates)
    if x.ndim != 3:
        raise RuntimeError(f"input must have 3 dimensions (seq_len, batch, input_size), got {x.ndim}")
    if x.shape[2] != w_ih.shape[1]:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {w_ih.shape[1]}, got "
                           f"{x.shape[2]}")
    expected = (x.shape[1], hidden)
    for s in states:
        if s is not None:
            check_ndarray(s, op, "hx")
            if s.shape != expected:
                raise RuntimeError(f"Expected hidden size {expected}, got {list(s.shape)}")
    if x.shape[0] == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    _check_dtypes(op, x, [*states, w_ih, w_hh, b_ih, b_hh])
    return hidden


def _zeros_if_none(a: Optional[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.zeros(shape, dtype) if a is None else a


def _check_grad(name: str, grad: Optional[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An upstream gradient: zeros for None, else an array of the output's shape (autograd's RuntimeError), in the
    output's dtype (cast when it differs, as autograd casts it; the caller's array is never modified)."""
    if grad is None:
        return np.zeros(shape, dtype)
    check_ndarray(grad, "backward", name)
    if grad.shape != tuple(shape):
        raise RuntimeError(f"Mismatch in shape: {name} has a shape of {list(grad.shape)} and the output it is the "
                           f"gradient of has a shape of {list(shape)}")
    return grad.astype(dtype, copy=False)


def _bias_grads(da: np.ndarray, has_bias: Tuple[bool, bool]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``db_ih = db_hh = Σ da`` over the rows of a 2-d ``da`` (two arrays, each None where that bias is None)."""
    db = col_sums(da) if any(has_bias) else None
    db_ih = db if has_bias[0] else None
    db_hh = (db.copy() if has_bias[0] else db) if has_bias[1] else None
    return db_ih, db_hh


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """``σ(a) = 1 / (1 + exp(−a))`` (exp overflows to inf for very negative a: σ = 0 exactly, as in torch)."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-a))


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """σ in place (four passes over ``a``, no temporary); the caller silences exp's overflow."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    return np.reciprocal(a, out=a)


def _projection(x: np.ndarray, w_ih: np.ndarray, biases: Sequence[Optional[np.ndarray]]) -> np.ndarray:
    """The input projection of every step in one product: ``x_t W_ihᵀ + Σ biases``, shape (T, N, G) (the biases
    summed first: one pass over the result)."""
    t, n, i = x.shape
    a = (x.reshape(t * n, i) @ w_ih.T).reshape(t, n, w_ih.shape[0])
    present = [b for b in biases if b is not None]
    if present:
        a += present[0] if len(present) == 1 else sum(present[1:], present[0])
    return a


def _transposed(w: np.ndarray) -> np.ndarray:
    """``wᵀ`` as a C-contiguous copy: the per-step product ``h @ W_hhᵀ`` runs faster on it than on the view."""
    return np.ascontiguousarray(w.T)


def _time_slots(t: int, reverse: bool):
    """``(order, first, last, prev, new)``: the steps in processing order, the slot of the initial state, the slot of
    the final state, and the slices of ``hs`` holding each step's input state and output state (module docstring)."""
    if reverse:
        return range(t - 1, -1, -1), t, 0, slice(1, t + 1), slice(0, t)
    return range(t), 0, t, slice(0, t), slice(1, t + 1)


# ---- RNN cell ------------------------------------------------------------------------------------------------------
@_IEEE
def rnn_cell_forward(x: np.ndarray, h: Optional[np.ndarray], w_ih: np.ndarray, w_hh: np.ndarray,
                     b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None,
                     nonlinearity: str = "tanh") -> Tuple[np.ndarray, RNNCellCache]:
    """One step of an Elman RNN, torch's ``RNNCell``: ``h1 = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)``.

    Parameters
    ----------
    x : ndarray, shape (N, I)
    h : ndarray, shape (N, H), or None for zeros
    w_ih : ndarray, shape (H, I)
    w_hh : ndarray, shape (H, H)
    b_ih, b_hh : ndarray, shape (H,), optional
    nonlinearity : 'tanh' or 'relu'

    Returns
    -------
    h1 : ndarray, shape (N, H)
    cache : RNNCellCache
    """
    check_nonlinearity(nonlinearity)
    hidden = _check_cell("rnn_cell", x, [h], w_ih, w_hh, b_ih, b_hh, 1)
    h = _zeros_if_none(h, (x.shape[0], hidden), x.dtype)
    a = x @ w_ih.T
    if b_ih is not None:
        a += b_ih
    a += h @ w_hh.T
    if b_hh is not None:
        a += b_hh
    h1 = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h1, RNNCellCache(x, h, w_ih, w_hh, h1, nonlinearity, (b_ih is not None, b_hh is not None))


@_IEEE
def rnn_cell_backward(dh1: Optional[np.ndarray], cache: RNNCellCache):
    """Gradients of :func:`rnn_cell_forward`: with ``da = dh1 ⊙ φ'(a)`` (``1 − h1²`` for tanh; for relu torch's
    mask ``[not h1 <= 0]``, a masked NaN gradient giving 0), ``dx = da W_ih``, ``dh = da W_hh``, ``dW_ih = daᵀ x``,
    ``dW_hh = daᵀ h``, ``db_ih = db_hh = Σ_n da``.

    Returns
    -------
    dx, dh, dw_ih, dw_hh, db_ih, db_hh : ndarray (the biases' None where they were None)
    """
    x, h, w_ih, w_hh, h1, nonlinearity, has_bias = cache
    dh1 = _check_grad("dh1", dh1, h1.shape, h1.dtype)
    if nonlinearity == "tanh":
        da = dh1 * (1 - h1 * h1)
    else:
        da = np.where(h1 <= 0, 0, dh1).astype(h1.dtype, copy=False)  # torch's threshold_backward: NaN passes
    dx = da @ w_ih
    dh = da @ w_hh
    dw_ih = da.T @ x
    dw_hh = da.T @ h
    return (dx, dh, dw_ih, dw_hh, *_bias_grads(da, has_bias))


# ---- LSTM cell -----------------------------------------------------------------------------------------------------
@_IEEE
def lstm_cell_forward(x: np.ndarray, h: Optional[np.ndarray], c: Optional[np.ndarray], w_ih: np.ndarray,
                      w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None
                      ) -> Tuple[Tuple[np.ndarray, np.ndarray], LSTMCellCache]:
    """One step of an LSTM, torch's ``LSTMCell`` (gates i, f, g, o)::

        a = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh                     (N, 4H)
        i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o)
        c1 = f ⊙ c + i ⊙ g
        h1 = o ⊙ tanh(c1)

    Parameters
    ----------
    x : ndarray, shape (N, I)
    h, c : ndarray, shape (N, H), or None for zeros
    w_ih : ndarray, shape (4H, I)
    w_hh : ndarray, shape (4H, H)
    b_ih, b_hh : ndarray, shape (4H,), optional

    Returns
    -------
    (h1, c1) : ndarray, shape (N, H) each
    cache : LSTMCellCache
    """
    hidden = _check_cell("lstm_cell", x, [h, c], w_ih, w_hh, b_ih, b_hh, 4)
    h = _zeros_if_none(h, (x.shape[0], hidden), x.dtype)
    c = _zeros_if_none(c, (x.shape[0], hidden), x.dtype)
    H = hidden
    a = x @ w_ih.T
    if b_ih is not None:
        a += b_ih
    a += h @ w_hh.T
    if b_hh is not None:
        a += b_hh
    i = _sigmoid(a[:, :H])
    f = _sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = _sigmoid(a[:, 3 * H:])
    c1 = f * c + i * g
    tanh_c1 = np.tanh(c1)
    h1 = o * tanh_c1
    return (h1, c1), LSTMCellCache(x, h, c, w_ih, w_hh, i, f, g, o, tanh_c1, (b_ih is not None, b_hh is not None))


@_IEEE
def lstm_cell_backward(dh1: Optional[np.ndarray], dc1: Optional[np.ndarray], cache: LSTMCellCache):
    """Gradients of :func:`lstm_cell_forward`::

        do  = dh1 ⊙ tanh(c1)
        dc  = dc1 + dh1 ⊙ o ⊙ (1 − tanh²(c1))            (all that reaches c1)
        di  = dc ⊙ g,   df = dc ⊙ c,   dg = dc ⊙ i,   dc_prev = dc ⊙ f
        da  = [di ⊙ i(1 − i), df ⊙ f(1 − f), dg ⊙ (1 − g²), do ⊙ o(1 − o)]       (N, 4H)
        dx  = da W_ih,   dh = da W_hh,   dW_ih = daᵀ x,   dW_hh = daᵀ h,   db_ih = db_hh = Σ_n da

    Returns
    -------
    dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh : ndarray (the biases' None where they were None)
    """
    x, h, c, w_ih, w_hh, i, f, g, o, tanh_c1, has_bias = cache
    dh1 = _check_grad("dh1", dh1, tanh_c1.shape, x.dtype)
    dc1 = _check_grad("dc1", dc1, tanh_c1.shape, x.dtype)
    do = dh1 * tanh_c1
    dc = dc1 + dh1 * o * (1 - tanh_c1 * tanh_c1)
    di = dc * g
    df = dc * c
    dg = dc * i
    dc_prev = dc * f
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
    dx = da @ w_ih
    dh = da @ w_hh
    dw_ih = da.T @ x
    dw_hh = da.T @ h
    return (dx, dh, dc_prev, dw_ih, dw_hh, *_bias_grads(da, has_bias))


# ---- GRU cell ------------------------------------------------------------------------------------------------------
@_IEEE
def gru_cell_forward(x: np.ndarray, h: Optional[np.ndarray], w_ih: np.ndarray, w_hh: np.ndarray,
                     b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None
                     ) -> Tuple[np.ndarray, GRUCellCache]:
    """One step of a GRU, torch's ``GRUCell`` (gates r, z, n)::

        gi = x W_ihᵀ + b_ih,   gh = h W_hhᵀ + b_hh                  (N, 3H) each
        r = σ(gi_r + gh_r),   z = σ(gi_z + gh_z)
        n = tanh(gi_n + r ⊙ gh_n)                                  (gh_n = W_hn h + b_hn)
        h1 = (1 − z) ⊙ n + z ⊙ h

    Parameters
    ----------
    x : ndarray, shape (N, I)
    h : ndarray, shape (N, H), or None for zeros
    w_ih : ndarray, shape (3H, I)
    w_hh : ndarray, shape (3H, H)
    b_ih, b_hh : ndarray, shape (3H,), optional

    Returns
    -------
    h1 : ndarray, shape (N, H)
    cache : GRUCellCache
    """
    hidden = _check_cell("gru_cell", x, [h], w_ih, w_hh, b_ih, b_hh, 3)
    h = _zeros_if_none(h, (x.shape[0], hidden), x.dtype)
    H = hidden
    gi = x @ w_ih.T
    if b_ih is not None:
        gi += b_ih
    gh = h @ w_hh.T
    if b_hh is not None:
        gh += b_hh
    r = _sigmoid(gi[:, :H] + gh[:, :H])
    z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:]
    n = np.tanh(gi[:, 2 * H:] + r * hn)
    h1 = (1 - z) * n + z * h
    return h1, GRUCellCache(x, h, w_ih, w_hh, r, z, n, hn, (b_ih is not None, b_hh is not None))


@_IEEE
def gru_cell_backward(dh1: Optional[np.ndarray], cache: GRUCellCache):
    """Gradients of :func:`gru_cell_forward`::

        dn = dh1 ⊙ (1 − z),   dz = dh1 ⊙ (h − n),   dh = dh1 ⊙ z           (the direct path to h)
        da_n = dn ⊙ (1 − n²)                         (of gi_n; gh_n gets da_n ⊙ r)
        da_r = da_n ⊙ gh_n ⊙ r(1 − r),   da_z = dz ⊙ z(1 − z)
        dgi = [da_r, da_z, da_n],   dgh = [da_r, da_z, da_n ⊙ r]
        dx = dgi W_ih,   dh += dgh W_hh,   dW_ih = dgiᵀ x,   dW_hh = dghᵀ h,   db_ih = Σ_n dgi,   db_hh = Σ_n dgh

    Returns
    -------
    dx, dh, dw_ih, dw_hh, db_ih, db_hh : ndarray (the biases' None where they were None)
    """
    x, h, w_ih, w_hh, r, z, n, hn, has_bias = cache
    dh1 = _check_grad("dh1", dh1, n.shape, x.dtype)
    dn = dh1 * (1 - z)
    dz = dh1 * (h - n)
    dh = dh1 * z
    da_n = dn * (1 - n * n)
    da_r = da_n * hn * r * (1 - r)
    da_z = dz * z * (1 - z)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)
    dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
    dx = dgi @ w_ih
    dh += dgh @ w_hh
    dw_ih = dgi.T @ x
    dw_hh = dgh.T @ h
    db_ih = col_sums(dgi) if has_bias[0] else None
    db_hh = col_sums(dgh) if has_bias[1] else None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


# ---- RNN layer -----------------------------------------------------------------------------------------------------
@_IEEE
def rnn_layer_forward(x: np.ndarray, h0: Optional[np.ndarray], w_ih: np.ndarray, w_hh: np.ndarray,
                      b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None,
                      nonlinearity: str = "tanh", *, reverse: bool = False
                      ) -> Tuple[Tuple[np.ndarray, np.ndarray], RNNLayerCache]:
    """One RNN layer over a sequence: ``h_t = φ(x_t W_ihᵀ + b_ih + h_{t∓1} W_hhᵀ + b_hh)`` for every t, left to
    right (``h_{-1} = h0``) or, with ``reverse``, right to left (``h_T = h0``).

    Parameters
    ----------
    x : ndarray, shape (T, N, I), T ≥ 1
    h0 : ndarray, shape (N, H), or None for zeros
    w_ih, w_hh, b_ih, b_hh, nonlinearity : as :func:`rnn_cell_forward`
    reverse : bool, keyword-only

    Returns
    -------
    (out, h_n) : out (T, N, H), the state each step wrote (a view of the cache's states: read only); h_n (N, H),
        the last step's state (a new array)
    cache : RNNLayerCache
    """
    check_nonlinearity(nonlinearity)
    hidden = _check_layer("rnn_layer", x, [h0], w_ih, w_hh, b_ih, b_hh, 1)
    T, N = x.shape[:2]
    order, first, last, prev, new = _time_slots(T, reverse)
    # 1. the input projection of every step, both biases included
    a = _projection(x, w_ih, (b_ih, b_hh))
    # 2. the recurrence: h_t = φ(a_t + h_prev W_hhᵀ), written straight into its slot
    hs = np.empty((T + 1, N, hidden), x.dtype)
    hs[first] = 0 if h0 is None else h0
    w_hh_t = _transposed(w_hh)
    hh = np.empty((N, hidden), x.dtype)
    back = 1 if reverse else 0  # step t reads slot t + back, writes slot t + 1 - back
    for t in order:
        np.matmul(hs[t + back], w_hh_t, out=hh)
        h = hs[t + 1 - back]
        np.add(a[t], hh, out=h)
        if nonlinearity == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)
    cache = RNNLayerCache(x, hs, w_ih, w_hh, nonlinearity, (b_ih is not None, b_hh is not None), reverse)
    return (hs[new], hs[last].copy()), cache


@_IEEE
def rnn_layer_backward(dout: Optional[np.ndarray], dh_n: Optional[np.ndarray], cache: RNNLayerCache):
    """Backward through time of :func:`rnn_layer_forward`.

    With ``D_t = φ'(a_t)`` for all steps at once (``1 − h_t²`` or ``[h_t > 0]``), the loop runs the steps in the
    reverse of the forward's order, carrying ``dh`` (starting from ``dh_n``)::

        dh   += dout_t                 (all that reaches h_t)
        da_t  = dh ⊙ D_t
        dh    = da_t W_hh              (to the step before)

    then ``dx = dA W_ih``, ``dW_ih = dAᵀ X``, ``dW_hh = dAᵀ H_prev``, ``db = Σ dA`` over the stacked steps.

    Returns
    -------
    dx (T, N, I), dh0 (N, H), dw_ih, dw_hh, db_ih, db_hh (None where the bias was None)
    """
    x, hs, w_ih, w_hh, nonlinearity, has_bias, reverse = cache
    T, N, I = x.shape
    hidden = hs.shape[2]
    order, first, last, prev, new = _time_slots(T, reverse)
    dout = _check_grad("dout", dout, (T, N, hidden), x.dtype)
    dh = np.array(_check_grad("dh_n", dh_n, (N, hidden), x.dtype), copy=True)
    h = hs[new]
    # φ'(a) from the output; relu's is torch's threshold_backward mask [not h <= 0], through which a NaN state passes
    d_act = 1 - h * h if nonlinearity == "tanh" else (~(h <= 0)).astype(x.dtype)
    da = np.empty((T, N, hidden), x.dtype)
    for t in reversed(order):
        dh += dout[t]
        np.multiply(dh, d_act[t], out=da[t])
        if nonlinearity == "relu":  # torch's threshold_backward selects: a masked inf or NaN gradient gives 0
            da[t][d_act[t] == 0] = 0
        np.matmul(da[t], w_hh, out=dh)
    dA = da.reshape(T * N, hidden)
    dx = (dA @ w_ih).reshape(T, N, I)
    dw_ih = dA.T @ x.reshape(T * N, I)
    dw_hh = dA.T @ hs[prev].reshape(T * N, hidden)
    return (dx, dh, dw_ih, dw_hh, *_bias_grads(dA, has_bias))


# ---- LSTM layer ----------------------------------------------------------------------------------------------------
@_IEEE
def lstm_layer_forward(x: np.ndarray, h0: Optional[np.ndarray], c0: Optional[np.ndarray], w_ih: np.ndarray,
                       w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None,
                       *, reverse: bool = False
                       ) -> Tuple[Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]], LSTMLayerCache]:
    """One LSTM layer over a sequence: :func:`lstm_cell_forward` at every step, left to right from ``(h0, c0)``
    or, with ``reverse``, right to left.

    The pre-activations ``x_t W_ihᵀ + b_ih + b_hh`` of all steps come from one product; each step adds
    ``h_prev W_hhᵀ`` and turns its row of pre-activations into the gates i, f, g, o in place.

    Parameters
    ----------
    x : ndarray, shape (T, N, I), T ≥ 1
    h0, c0 : ndarray, shape (N, H), or None for zeros
    w_ih, w_hh, b_ih, b_hh : as :func:`lstm_cell_forward`
    reverse : bool, keyword-only

    Returns
    -------
    (out, (h_n, c_n)) : out (T, N, H), the hidden state each step wrote (a view of the cache's states: read
        only); h_n, c_n (N, H), the last step's states (new arrays)
    cache : LSTMLayerCache
    """
    H = _check_layer("lstm_layer", x, [h0, c0], w_ih, w_hh, b_ih, b_hh, 4)
    T, N = x.shape[:2]
    order, first, last, prev, new = _time_slots(T, reverse)
    back = 1 if reverse else 0  # step t reads slot t + back, writes slot t + 1 - back
    # 1. the input projection of every step, both biases included: acts[t] becomes step t's gates in place
    acts = _projection(x, w_ih, (b_ih, b_hh))
    # 2. the recurrence
    hs = np.empty((T + 1, N, H), x.dtype)
    cs = np.empty((T + 1, N, H), x.dtype)
    tanh_c = np.empty((T, N, H), x.dtype)
    hs[first] = 0 if h0 is None else h0
    cs[first] = 0 if c0 is None else c0
    w_hh_t = _transposed(w_hh)
    hh = np.empty((N, 4 * H), x.dtype)
    ig = np.empty((N, H), x.dtype)
    with np.errstate(over="ignore"):  # σ of a very negative number: exp overflows to inf, σ = 0 exactly
        for t in order:
            a = acts[t]
            np.matmul(hs[t + back], w_hh_t, out=hh)
            a += hh
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            _sigmoid_(a[:, :2 * H])  # i and f
            np.tanh(g, out=g)
            _sigmoid_(o)
            c = cs[t + 1 - back]
            np.multiply(f, cs[t + back], out=c)  # c_t = f ⊙ c_prev + i ⊙ g
            c += np.multiply(i, g, out=ig)
            np.tanh(c, out=tanh_c[t])  # h_t = o ⊙ tanh(c_t)
            np.multiply(o, tanh_c[t], out=hs[t + 1 - back])
    cache = LSTMLayerCache(x, hs, cs, acts, tanh_c, w_ih, w_hh, (b_ih is not None, b_hh is not None), reverse)
    return (hs[new], (hs[last].copy(), cs[last].copy())), cache


@_IEEE
def lstm_layer_backward(dout: Optional[np.ndarray], dh_n: Optional[np.ndarray], dc_n: Optional[np.ndarray],
                        cache: LSTMLayerCache):
    """Backward through time of :func:`lstm_layer_forward`.

    The local derivatives of every step are formed at once (``c_prev`` the cell state step t read)::

        K_c = o ⊙ (1 − tanh²c_t)                      how dh_t reaches c_t
        K   = [g ⊙ i(1 − i), c_prev ⊙ f(1 − f), i ⊙ (1 − g²), tanh c_t ⊙ o(1 − o)]     (T, N, 4H)

    then the loop runs the steps in the reverse of the forward's order, carrying ``dh`` and ``dc`` (from ``dh_n``,
    ``dc_n``)::

        dh  += dout_t
        dc  += dh ⊙ K_c
        da_t = [dc ⊙ K_i, dc ⊙ K_f, dc ⊙ K_g, dh ⊙ K_o]
        dc   = dc ⊙ f,    dh = da_t W_hh             (to the step before)

    and ``dx = dA W_ih``, ``dW_ih = dAᵀ X``, ``dW_hh = dAᵀ H_prev``, ``db = Σ dA`` over the stacked steps.

    Returns
    -------
    dx (T, N, I), dh0 (N, H), dc0 (N, H), dw_ih, dw_hh, db_ih, db_hh (None where the bias was None)
    """
    x, hs, cs, acts, tanh_c, w_ih, w_hh, has_bias, reverse = cache
    T, N, I = x.shape
    H = hs.shape[2]
    order, first, last, prev, new = _time_slots(T, reverse)
    dout = _check_grad("dout", dout, (T, N, H), x.dtype)
    dh = np.array(_check_grad("dh_n", dh_n, (N, H), x.dtype), copy=True)
    dc = np.array(_check_grad("dc_n", dc_n, (N, H), x.dtype), copy=True)
    i, f, g, o = acts[..., :H], acts[..., H:2 * H], acts[..., 2 * H:3 * H], acts[..., 3 * H:]
    # local derivatives of all steps at once, written in place (σ' = s(1 − s), tanh' = 1 − g²)
    k_c = np.multiply(tanh_c, tanh_c)
    np.subtract(1, k_c, out=k_c)
    k_c *= o  # o ⊙ (1 − tanh²c)
    k = np.empty((T, N, 4, H), x.dtype)
    k_i, k_f, k_g, k_o = k[:, :, 0], k[:, :, 1], k[:, :, 2], k[:, :, 3]
    np.subtract(1, i, out=k_i)
    k_i *= i
    k_i *= g  # g ⊙ i(1 − i)
    np.subtract(1, f, out=k_f)
    k_f *= f
    k_f *= cs[prev]  # c_prev ⊙ f(1 − f)
    np.multiply(g, g, out=k_g)
    np.subtract(1, k_g, out=k_g)
    k_g *= i  # i ⊙ (1 − g²)
    np.subtract(1, o, out=k_o)
    k_o *= o
    k_o *= tanh_c  # tanh c ⊙ o(1 − o)
    # the loop through time
    da = np.empty((T, N, 4, H), x.dtype)
    tmp = np.empty((N, H), x.dtype)
    for t in reversed(order):
        dh += dout[t]
        dc += np.multiply(dh, k_c[t], out=tmp)
        np.multiply(dc[:, None, :], k[t, :, :3], out=da[t, :, :3])  # i, f, g
        np.multiply(dh, k[t, :, 3], out=da[t, :, 3])  # o
        dc *= f[t]
        np.matmul(da[t].reshape(N, 4 * H), w_hh, out=dh)
    dA = da.reshape(T * N, 4 * H)
    dx = (dA @ w_ih).reshape(T, N, I)
    dw_ih = dA.T @ x.reshape(T * N, I)
    dw_hh = dA.T @ hs[prev].reshape(T * N, H)
    return (dx, dh, dc, dw_ih, dw_hh, *_bias_grads(dA, has_bias))


# ---- GRU layer -----------------------------------------------------------------------------------------------------
@_IEEE
def gru_layer_forward(x: np.ndarray, h0: Optional[np.ndarray], w_ih: np.ndarray, w_hh: np.ndarray,
                      b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None, *, reverse: bool = False
                      ) -> Tuple[Tuple[np.ndarray, np.ndarray], GRULayerCache]:
    """One GRU layer over a sequence: :func:`gru_cell_forward` at every step, left to right from ``h0`` or, with
    ``reverse``, right to left.

    ``x_t W_ihᵀ + b_ih`` (plus ``b_hh``'s r and z blocks, which add outside any gate) of all steps come from one
    product; each step adds ``h_prev W_hhᵀ``, turns its row into r, z, n in place, and writes
    ``h_t = n + z ⊙ (h_prev − n)`` (= (1 − z) ⊙ n + z ⊙ h_prev, torch's arrangement).

    Parameters
    ----------
    x : ndarray, shape (T, N, I), T ≥ 1
    h0 : ndarray, shape (N, H), or None for zeros
    w_ih, w_hh, b_ih, b_hh : as :func:`gru_cell_forward`
    reverse : bool, keyword-only

    Returns
    -------
    (out, h_n) : out (T, N, H), the state each step wrote (a view of the cache's states: read only); h_n (N, H),
        the last step's state (a new array)
    cache : GRULayerCache
    """
    H = _check_layer("gru_layer", x, [h0], w_ih, w_hh, b_ih, b_hh, 3)
    T, N = x.shape[:2]
    order, first, last, prev, new = _time_slots(T, reverse)
    back = 1 if reverse else 0
    # 1. the input projection of every step; b_hh's r and z blocks join it, its n block stays inside r ⊙ (...)
    acts = _projection(x, w_ih, (b_ih,))
    b_hn = None
    if b_hh is not None:
        acts[..., :2 * H] += b_hh[:2 * H]
        b_hn = b_hh[2 * H:]
    # 2. the recurrence
    hs = np.empty((T + 1, N, H), x.dtype)
    hs[first] = 0 if h0 is None else h0
    hn = np.empty((T, N, H), x.dtype)
    w_hh_t = _transposed(w_hh)
    hh = np.empty((N, 3 * H), x.dtype)
    tmp = np.empty((N, H), x.dtype)
    with np.errstate(over="ignore"):  # σ of a very negative number: exp overflows to inf, σ = 0 exactly
        for t in order:
            a, h = acts[t], hs[t + back]
            np.matmul(h, w_hh_t, out=hh)
            rz = a[:, :2 * H]
            rz += hh[:, :2 * H]
            _sigmoid_(rz)
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            if b_hn is None:
                hn[t] = hh[:, 2 * H:]
            else:
                np.add(hh[:, 2 * H:], b_hn, out=hn[t])
            n += np.multiply(r, hn[t], out=tmp)  # n = tanh(gi_n + r ⊙ (W_hn h + b_hn))
            np.tanh(n, out=n)
            np.subtract(h, n, out=tmp)  # h_t = n + z ⊙ (h − n)
            tmp *= z
            np.add(n, tmp, out=hs[t + 1 - back])
    cache = GRULayerCache(x, hs, acts, hn, w_ih, w_hh, (b_ih is not None, b_hh is not None), reverse)
    return (hs[new], hs[last].copy()), cache


@_IEEE
def gru_layer_backward(dout: Optional[np.ndarray], dh_n: Optional[np.ndarray], cache: GRULayerCache):
    """Backward through time of :func:`gru_layer_forward`.

    Every pre-activation gradient of a step is ``dh_t`` (all that reaches h_t) times a local factor, formed for all
    steps at once (``h_prev`` the state step t read, ``hn = W_hn h_prev + b_hn``)::

        K_n = (1 − z) ⊙ (1 − n²),   K_z = (h_prev − n) ⊙ z(1 − z),   K_r = K_n ⊙ hn ⊙ r(1 − r)
        dgi_t = dh_t ⊙ [K_r, K_z, K_n],     dgh_t = dh_t ⊙ [K_r, K_z, K_n ⊙ r]

    The loop runs the steps in the reverse of the forward's order, carrying ``dh`` (from ``dh_n``)::

        dh_t = dout_t + dh,    dgh_t = dh_t ⊙ [K_r, K_z, K_n ⊙ r],    dh = dgh_t W_hh + dh_t ⊙ z

    then ``dgi`` for all steps, ``dx = dGi W_ih``, ``dW_ih = dGiᵀ X``, ``dW_hh = dGhᵀ H_prev``,
    ``db_ih = Σ dGi``, ``db_hh = Σ dGh``.

    Returns
    -------
    dx (T, N, I), dh0 (N, H), dw_ih, dw_hh, db_ih, db_hh (None where the bias was None)
    """
    x, hs, acts, hn, w_ih, w_hh, has_bias, reverse = cache
    T, N, I = x.shape
    H = hs.shape[2]
    order, first, last, prev, new = _time_slots(T, reverse)
    dout = _check_grad("dout", dout, (T, N, H), x.dtype)
    dh = np.array(_check_grad("dh_n", dh_n, (N, H), x.dtype), copy=True)
    r, z, n = acts[..., :H], acts[..., H:2 * H], acts[..., 2 * H:]
    h_prev = hs[prev]
    # local factors of all steps at once
    k_n = (1 - z) * (1 - n * n)
    k_gi = np.empty((T, N, 3, H), x.dtype)
    k_gi[:, :, 0] = k_n * hn * r * (1 - r)
    k_gi[:, :, 1] = (h_prev - n) * z * (1 - z)
    k_gi[:, :, 2] = k_n
    k_gh = k_gi.copy()
    k_gh[:, :, 2] *= r
    # the loop through time
    dhs = np.empty((T, N, H), x.dtype)
    dgh = np.empty((T, N, 3, H), x.dtype)
    direct = np.empty((N, H), x.dtype)
    for t in reversed(order):
        dh_t = np.add(dout[t], dh, out=dhs[t])
        np.multiply(dh_t[:, None, :], k_gh[t], out=dgh[t])
        np.multiply(dh_t, z[t], out=direct)
        np.matmul(dgh[t].reshape(N, 3 * H), w_hh, out=dh)
        dh += direct
    dGi = (dhs[:, :, None, :] * k_gi).reshape(T * N, 3 * H)
    dGh = dgh.reshape(T * N, 3 * H)
    dx = (dGi @ w_ih).reshape(T, N, I)
    dw_ih = dGi.T @ x.reshape(T * N, I)
    dw_hh = dGh.T @ h_prev.reshape(T * N, H)
    db_ih = col_sums(dGi) if has_bias[0] else None
    db_hh = col_sums(dGh) if has_bias[1] else None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh
