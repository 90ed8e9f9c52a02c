"""Parity of ``RNNCell`` (tanh, relu), ``LSTMCell``, ``GRUCell`` and the functional cell pairs with torch: the new
states, dx, the state gradients and every parameter gradient from random upstream gradients on every output, batched /
batch of one / unbatched, with and without an initial state and a bias, over several accumulating steps; torch's
initialisation bit for bit; None gradients; bad inputs raising torch's classes; inputs left unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from handnn.functional import rnn as R
from handnn.nn.modules.rnn import GRUCell, LSTMCell, RNNCell
from handnn.random import TorchGenerator
from reference import assert_close
from reference.harness import assert_nonzero, torch_error
from reference.twin import TORCH_DTYPES, to_numpy, to_tensor

N, I, H = 4, 3, 5  # all different, so a wrong axis or reshape cannot pass

KINDS = {
    "RNNCell tanh": (RNNCell, dict(nonlinearity="tanh")),
    "RNNCell relu": (RNNCell, dict(nonlinearity="relu")),
    "LSTMCell": (LSTMCell, {}),
    "GRUCell": (GRUCell, {}),
}
SHAPES = {  # (batch or None for unbatched, initial state given)
    "batched hx": (N, True),
    "batched no hx": (N, False),
    "batch of one hx": (1, True),
    "unbatched hx": (None, True),
    "unbatched no hx": (None, False),
}


def make(kind: str, bias: bool, dtype, rng):
    cls, extra = KINDS[kind]
    return cls(I, H, bias, **extra, dtype=dtype, rng=rng)


def twin_of(cell) -> torch.nn.Module:
    extra = dict(nonlinearity=cell.nonlinearity) if isinstance(cell, RNNCell) else {}
    twin = getattr(torch.nn, type(cell).__name__)(cell.input_size, cell.hidden_size, cell.bias, **extra,
                                                 dtype=TORCH_DTYPES[cell.weight_ih.dtype])
    assert list(twin.state_dict()) == list(cell.state_dict())
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in cell.state_dict().items()})
    return twin


def is_lstm(cell) -> bool:
    return isinstance(cell, (LSTMCell, torch.nn.LSTMCell))


def draw(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


def step_like_torch(cell, twin, x, states, grads, *, nonzero=True):
    """One forward/backward on both sides (torch given explicit zero states when handnn gets none): new states,
    dx, the state gradients and every parameter gradient equal; torch's gradients not ~0."""
    k = 2 if is_lstm(cell) else 1
    if is_lstm(cell):
        h1, c1 = cell(x, None if states is None else tuple(states))
        dx, (dh, dc) = cell.backward(*grads)
        ours = [h1, c1], [dh, dc]
    else:
        h1 = cell(x, None if states is None else states[0])
        dx, dh = cell.backward(grads[0])
        ours = [h1], [dh]
    state_shape = x.shape[:-1] + (H,)
    xt = to_tensor(x).requires_grad_()
    st = [to_tensor(s if states is not None else np.zeros(state_shape, x.dtype)).requires_grad_()
          for s in (states or [None] * k)]
    new = twin(xt, tuple(st) if k == 2 else st[0])
    new = list(new) if k == 2 else [new]
    pairs = [(o, to_tensor(g)) for o, g in zip(new, grads) if g is not None]
    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    assert_close(dx, to_numpy(xt.grad), name="dx")
    for j in range(k):
        assert_close(ours[0][j], to_numpy(new[j]), name=f"new state {j}")
        assert_close(ours[1][j], to_numpy(st[j].grad), name=f"state {j} gradient")
    # a relu cell whose every unit is dead (likely with one sample) has exactly zero gradients on both sides:
    # compared, but not required nonzero
    nonzero = nonzero and bool(np.any(ours[0][0]))
    for name, p in twin.named_parameters():
        assert_close(getattr(cell, name).grad, to_numpy(p.grad), name=f"grad {name}")
        if nonzero and not (name == "weight_hh" and states is None):  # W_hh times zero states: exactly 0
            assert_nonzero(name, to_numpy(p.grad))
    if nonzero:
        assert_nonzero("dx", to_numpy(xt.grad))
    return dx, ours


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_cell_matches_torch(kind, bias, shape, dtype, rng):
    n, initial = shape
    cell = make(kind, bias, dtype, rng)
    k = 2 if kind == "LSTMCell" else 1
    x_shape = (I,) if n is None else (n, I)
    state_shape = (H,) if n is None else (n, H)
    x = draw(rng, x_shape, dtype)
    states = [draw(rng, state_shape, dtype) for _ in range(k)] if initial else None
    grads = [draw(rng, state_shape, dtype) for _ in range(k)]
    given = [x, *(states or []), *grads]
    snapshot = [a.copy() for a in given]
    dx, (new, dstates) = step_like_torch(cell, twin_of(cell), x, states, grads)
    for before, after in zip(snapshot, given):
        np.testing.assert_array_equal(after, before, err_msg="an input or upstream gradient was modified")
    for a in [dx, *new, *dstates]:
        assert a.dtype == np.dtype(dtype) and a.shape == (x_shape if a is dx else state_shape)
        assert not any(np.shares_memory(a, g) for g in given)
    assert {p.grad.dtype for p in cell.parameters()} == {np.dtype(dtype)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_accumulate_over_steps_like_torch(kind, dtype, rng):
    """A cell run over a sequence one step at a time (each step's state fed to the next, backward after each
    forward, no zero_grad): every step equal to torch's, and .grad the sum over the steps."""
    cell = make(kind, True, dtype, rng)
    twin = twin_of(cell)
    k = 2 if kind == "LSTMCell" else 1
    states = [draw(rng, (N, H), dtype) for _ in range(k)]
    for _ in range(3):
        x = draw(rng, (N, I), dtype)
        grads = [draw(rng, (N, H), dtype) for _ in range(k)]
        _, (states, _) = step_like_torch(cell, twin, x, states, grads)
    first = make(kind, True, dtype, np.random.default_rng(0))
    first.load_state_dict(cell.state_dict())
    first(draw(rng, (N, I), dtype))
    first.backward(*[draw(rng, (N, H), dtype) for _ in range(k)])
    assert not np.allclose(cell.weight_ih.grad, first.weight_ih.grad)


@pytest.mark.parametrize("which", ["dh only", "dc only", "both None"])
def test_lstm_cell_none_gradients_are_zero(which, rng):
    cell = make("LSTMCell", True, np.float64, rng)
    x, states = draw(rng, (N, I), np.float64), [draw(rng, (N, H), np.float64) for _ in range(2)]
    dh = draw(rng, (N, H), np.float64) if which == "dh only" else None
    dc = draw(rng, (N, H), np.float64) if which == "dc only" else None
    zeros = np.zeros((N, H))
    step_like_torch(cell, twin_of(cell), x, states, [zeros if dh is None else dh, zeros if dc is None else dc],
                    nonzero=False)
    cell.zero_grad()
    cell(x, tuple(states))
    dx, (dh0, dc0) = cell.backward(dh, dc)
    cell.zero_grad()
    cell(x, tuple(states))
    ref = cell.backward(zeros if dh is None else dh, zeros if dc is None else dc)
    np.testing.assert_array_equal(dx, ref[0])
    np.testing.assert_array_equal(dh0, ref[1][0])
    np.testing.assert_array_equal(dc0, ref[1][1])
    if which == "both None":
        assert not np.any(dx) and not np.any(dh0) and not np.any(dc0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_generator_gives_torchs_parameters_bit_for_bit(kind, bias, dtype):
    seed = 4242 + len(kind)
    cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, cls.__name__)(I, H, bias, **extra, dtype=TORCH_DTYPES[np.dtype(dtype)])
    ours = cls(I, H, bias, **extra, dtype=dtype, rng=TorchGenerator(seed))
    expected = theirs.state_dict()
    assert list(ours.state_dict()) == list(expected)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, expected[key].numpy(), err_msg=key)
    for name in ("input_size", "hidden_size", "bias"):
        assert getattr(ours, name) == getattr(theirs, name)
    assert repr(ours) == repr(theirs)


# ---- the functional pairs against torch's functional cells -----------------------------------------------------------
TORCH_CELLS = {"rnn tanh": torch.rnn_tanh_cell, "rnn relu": torch.rnn_relu_cell, "lstm": torch.lstm_cell,
               "gru": torch.gru_cell}


@pytest.mark.parametrize("biases", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["both biases", "b_ih only", "b_hh only", "no bias"])
@pytest.mark.parametrize("kind", list(TORCH_CELLS))
def test_functional_cell_pair_matches_torch(kind, biases, dtype, rng):
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    k = 2 if kind == "lstm" else 1
    x = draw(rng, (N, I), dtype)
    states = [draw(rng, (N, H), dtype) for _ in range(k)]
    w_ih, w_hh = draw(rng, (gates * H, I), dtype), draw(rng, (gates * H, H), dtype)
    b_ih, b_hh = (draw(rng, (gates * H,), dtype) if given else None for given in biases)
    grads = [draw(rng, (N, H), dtype) for _ in range(k)]
    tensors = [to_tensor(a).requires_grad_() for a in (x, *states, w_ih, w_hh)]
    bt = [None if b is None else to_tensor(b).requires_grad_() for b in (b_ih, b_hh)]
    xt, st, (wt_ih, wt_hh) = tensors[0], tensors[1:1 + k], tensors[1 + k:]
    new = TORCH_CELLS[kind](xt, tuple(st) if k == 2 else st[0], wt_ih, wt_hh, *bt)
    new = list(new) if k == 2 else [new]
    torch.autograd.backward(new, [to_tensor(g) for g in grads])
    snapshot = [a.copy() for a in (x, *states, w_ih, w_hh, *grads)]
    if kind == "lstm":
        (h1, c1), cache = R.lstm_cell_forward(x, *states, w_ih, w_hh, b_ih, b_hh)
        dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh = R.lstm_cell_backward(*grads, cache)
        ours_new, ours_d = [h1, c1], [dh, dc]
    elif kind == "gru":
        h1, cache = R.gru_cell_forward(x, states[0], w_ih, w_hh, b_ih, b_hh)
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = R.gru_cell_backward(grads[0], cache)
        ours_new, ours_d = [h1], [dh]
    else:
        h1, cache = R.rnn_cell_forward(x, states[0], w_ih, w_hh, b_ih, b_hh, nonlinearity=kind.split()[1])
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = R.rnn_cell_backward(grads[0], cache)
        ours_new, ours_d = [h1], [dh]
    for j in range(k):
        assert_close(ours_new[j], to_numpy(new[j]), name=f"new state {j}")
        assert_close(ours_d[j], to_numpy(st[j].grad), name=f"state {j} gradient")
        assert_nonzero(f"state {j} gradient", to_numpy(st[j].grad))
    for name, ours, t in (("dx", dx, xt), ("dw_ih", dw_ih, wt_ih), ("dw_hh", dw_hh, wt_hh)):
        assert_close(ours, to_numpy(t.grad), name=name)
        assert_nonzero(name, to_numpy(t.grad))
    for ours, b in zip((db_ih, db_hh), bt):
        assert (ours is None) == (b is None)
        if b is not None:
            assert_close(ours, to_numpy(b.grad), name="dbias")
    for before, after in zip(snapshot, (x, *states, w_ih, w_hh, *grads)):
        np.testing.assert_array_equal(after, before)


def test_functional_cell_zero_state_and_bad_nonlinearity(rng):
    x = draw(rng, (N, I), np.float64)
    w_ih, w_hh = draw(rng, (H, I), np.float64), draw(rng, (H, H), np.float64)
    h1, cache = R.rnn_cell_forward(x, None, w_ih, w_hh)
    np.testing.assert_array_equal(h1, R.rnn_cell_forward(x, np.zeros((N, H)), w_ih, w_hh)[0])
    dx, dh, *_ = R.rnn_cell_backward(None, cache)
    assert not np.any(dx) and not np.any(dh)
    expected = torch_error(lambda: torch.nn.RNN(I, H, nonlinearity="sigmoid"))
    with pytest.raises(type(expected), match="Unknown nonlinearity 'sigmoid'"):
        R.rnn_cell_forward(x, None, w_ih, w_hh, nonlinearity="sigmoid")


# ---- bad inputs ------------------------------------------------------------------------------------------------------
BAD = {
    # name: (kind, x shape, x dtype, state shapes (or (shape, dtype)) or None, pattern for handnn's message)
    "3-d input": ("GRUCell", (2, N, I), np.float64, None, r"GRUCell: Expected input to be 1D or 2D, got 3D"),
    "0-d input": ("RNNCell tanh", (), np.float64, None, r"RNNCell: Expected input to be 1D or 2D, got 0D"),
    "wrong input size": ("LSTMCell", (N, I + 1), np.float64, None, r"inconsistent input_size: got 4 expected 3"),
    "wrong input size unbatched": ("GRUCell", (I + 2,), np.float64, None, r"got 5 expected 3"),
    "3-d hidden": ("RNNCell relu", (N, I), np.float64, [(1, N, H)], r"Expected hidden to be 1D or 2D, got 3D"),
    "3-d lstm c": ("LSTMCell", (N, I), np.float64, [(N, H), (1, N, H)], r"Expected hx\[1\] to be 1D or 2D"),
    "hidden batch": ("GRUCell", (N, I), np.float64, [(N + 1, H)], r"Input batch size 4 doesn't match hidden0 "
                     r"batch size 5"),
    "hidden size": ("RNNCell tanh", (N, I), np.float64, [(N, H + 1)], r"hidden0 has inconsistent hidden_size: "
                    r"got 6, expected 5"),
    "lstm c size": ("LSTMCell", (N, I), np.float64, [(N, H), (N, H - 1)], r"hidden1 has inconsistent "
                    r"hidden_size: got 4, expected 5"),
    "1-d hidden, batched input": ("GRUCell", (N, I), np.float64, [(H,)], r"doesn't match hidden0 batch size 5"),
    "unbatched input, hidden of another size": ("LSTMCell", (I,), np.float64, [(H + 2,), (H,)],
                                                r"hidden0 has inconsistent hidden_size: got 7, expected 5"),
    "input dtype": ("GRUCell", (N, I), np.float32, None, r"float32"),
    "integer input": ("RNNCell tanh", (N, I), np.int64, None, r"int64"),
    "hidden dtype": ("LSTMCell", (N, I), np.float64, [((N, H), np.float32), ((N, H), np.float64)], r"float32"),
    "one lstm state": ("LSTMCell", (N, I), np.float64, [(N, H)], r"lstm_cell expects two hidden states"),
    "one lstm state unbatched": ("LSTMCell", (I,), np.float64, [(H,)], r"index out of range"),
}


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_input_raises_torchs_class(case, rng):
    kind, x_shape, x_dtype, states, pattern = case
    cell = make(kind, True, np.float64, rng)
    twin = twin_of(cell)
    x = np.asarray(rng.normal(size=x_shape) * 3).astype(x_dtype)
    arrays = None
    if states is not None:
        arrays = [rng.normal(size=s[0]).astype(s[1]) if isinstance(s[-1], type) else rng.normal(size=s)
                  for s in states]
    lstm = kind == "LSTMCell"
    hx_t = None if arrays is None else (tuple(map(to_tensor, arrays)) if lstm else to_tensor(arrays[0]))
    expected = torch_error(lambda: twin(to_tensor(x), hx_t))
    with pytest.raises(type(expected), match=pattern):
        cell(x, None if arrays is None else (tuple(arrays) if lstm else arrays[0]))
    assert cell._cache is None


def test_unknown_nonlinearity_is_refused_at_forward_like_torch(rng):
    """torch's RNNCell accepts any nonlinearity string at construction and raises RuntimeError at the forward."""
    twin = torch.nn.RNNCell(I, H, nonlinearity="sigmoid")
    expected = torch_error(lambda: twin(torch.zeros(N, I, dtype=torch.float32)))
    cell = RNNCell(I, H, nonlinearity="sigmoid", rng=rng)
    with pytest.raises(type(expected), match="Unknown nonlinearity: sigmoid"):
        cell(np.zeros((N, I)))


def test_negative_size_and_backward_errors(rng):
    expected = torch_error(lambda: torch.nn.GRUCell(I, -1))
    with pytest.raises(type(expected), match="negative dimension"):
        GRUCell(I, -1)
    cell = LSTMCell(I, H, rng=rng)
    with pytest.raises(RuntimeError, match="before forward"):
        cell.backward(np.zeros((N, H)))
    cell(np.zeros((N, I)))
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        cell.backward(np.zeros((N, H + 1)), None)
