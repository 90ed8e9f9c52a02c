"""Parity of ``RNN`` (tanh, relu), ``LSTM``, ``GRU`` and the functional layer pairs with torch: outputs, final
states, dx, the initial states' gradients and every parameter gradient, from random upstream gradients on the output
and on the final states, over stacked, bidirectional, batch_first, bias-free, unbatched, batch-of-one and length-one
configurations; gradient accumulation over steps; torch's initialisation and torch's own inter-layer dropout masks
bit for bit (``TorchGenerator``); injected masks against a stack of single-layer torch modules; None gradients; bad
inputs raising torch's classes; inputs left unchanged."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

from handnn.functional import rnn as R
from handnn.nn.modules.rnn import GRU, LSTM, RNN
from handnn.random import TorchGenerator
from reference import assert_close
from reference.harness import assert_nonzero, torch_error
from reference.twin import TORCH_DTYPES, to_numpy, to_tensor

T, N, I, H = 5, 3, 4, 6  # all different, so a wrong axis or reshape cannot pass

KINDS = {
    "RNN tanh": (RNN, dict(nonlinearity="tanh")),
    "RNN relu": (RNN, dict(nonlinearity="relu")),
    "LSTM": (LSTM, {}),
    "GRU": (GRU, {}),
}
CONFIGS = {
    "1 layer": dict(num_layers=1),
    "2 layers bidirectional": dict(num_layers=2, bidirectional=True),
    "3 layers no bias": dict(num_layers=3, bias=False),
    "2 layers batch_first bidirectional no bias": dict(num_layers=2, batch_first=True, bidirectional=True,
                                                       bias=False),
}
SHAPES = {  # (T, N, initial states given) of the sequence, N None: unbatched (T, I)
    "T5 N3 hx": (T, N, True),
    "T5 N3 no hx": (T, N, False),
    "length 1 no hx": (1, N, False),
    "batch of one hx": (7, 1, True),
    "unbatched hx": (T, None, True),
    "unbatched no hx": (4, None, False),
}


# ---- helpers ---------------------------------------------------------------------------------------------------------
def make(kind: str, config: dict, dtype, rng) -> RNN:
    cls, extra = KINDS[kind]
    return cls(I, H, **config, **extra, dtype=dtype, rng=rng)


def twin_of(module) -> torch.nn.Module:
    """The torch class with the same arguments, holding copies of the same parameters, in the same mode."""
    kwargs = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  dropout=module.dropout, bidirectional=module.bidirectional)
    if isinstance(module, RNN):
        kwargs["nonlinearity"] = module.nonlinearity
    dtype = TORCH_DTYPES[module.weight_ih_l0.dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer
        twin = getattr(torch.nn, type(module).__name__)(module.input_size, module.hidden_size, **kwargs, dtype=dtype)
    assert list(twin.state_dict()) == list(module.state_dict())
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in module.state_dict().items()})
    return twin.train(module.training)


def shapes_of(module, t: int, n) -> tuple:
    """(input shape, state shape, output shape) in the module's layout."""
    d = 2 if module.bidirectional else 1
    states = (module.num_layers * d, H) if n is None else (module.num_layers * d, n, H)
    if n is None:
        return (t, I), states, (t, d * H)
    if module.batch_first:
        return (n, t, I), states, (n, t, d * H)
    return (t, n, I), states, (t, n, d * H)


def n_states(module) -> int:
    return 2 if isinstance(module, LSTM) else 1


def pack(module, states):
    """forward's / backward's state argument from a list of arrays (or None)."""
    if states is None:
        return None
    return tuple(states) if isinstance(module, LSTM) else states[0]


def unpack(module, state) -> list:
    return list(state) if isinstance(module, LSTM) else [state]


def handnn_step(module, x, h0, dout, dstates):
    out, state = module(x, pack(module, h0))
    dx, dstate0 = module.backward(dout, pack(module, dstates))
    return out, unpack(module, state), dx, unpack(module, dstate0)


def torch_step(twin, x, h0, dout, dstates, state_shape):
    """The same step through torch's autograd; without initial states, torch's gradients of explicit zeros."""
    k = 2 if isinstance(twin, torch.nn.LSTM) else 1
    xt = to_tensor(x).requires_grad_()
    h0 = h0 if h0 is not None else [np.zeros(state_shape, x.dtype)] * k
    h0t = [to_tensor(h).requires_grad_() for h in h0]
    out, state = twin(xt, tuple(h0t) if k == 2 else h0t[0])
    states = list(state) if k == 2 else [state]
    pairs = [(out, dout)] + [(s, g) for s, g in zip(states, dstates or [None] * k) if g is not None]
    pairs = [(o, to_tensor(g)) for o, g in pairs if g is not None]
    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    return to_numpy(out), [to_numpy(s) for s in states], to_numpy(xt.grad), [
        to_numpy(h.grad) if h.grad is not None else np.zeros(h.shape, x.dtype) for h in h0t]


def assert_step_like_torch(module, twin, x, h0, dout, dstates, *, nonzero=True):
    """One forward/backward on both sides: every output and gradient equal, torch's gradients not ~0."""
    t, n = (x.shape[0], None) if x.ndim == 2 else ((x.shape[1], x.shape[0]) if module.batch_first else x.shape[:2])
    state_shape = shapes_of(module, t, n)[1]
    ours = handnn_step(module, x, h0, dout, dstates)
    theirs = torch_step(twin, x, h0, dout, dstates, state_shape)
    for name, a, b in [("out", ours[0], theirs[0]), ("dx", ours[2], theirs[2])]:
        assert_close(a, b, name=name)
    for k in range(n_states(module)):
        assert_close(ours[1][k], theirs[1][k], name=f"final state {k}")
        assert_close(ours[3][k], theirs[3][k], name=f"initial state {k} gradient")
    for name, p in twin.named_parameters():
        assert_close(getattr(module, name).grad, to_numpy(p.grad), name=f"grad {name}")
        # W_hh's gradient can be exactly zero on both sides: after one step from zero states (W_hh multiplied only
        # zeros), and with relu on a single sample, whose few units can all be dead at every other step
        relu_single = getattr(module, "nonlinearity", "") == "relu" and (n or 1) == 1
        if nonzero and not (name.startswith("weight_hh") and ((t == 1 and h0 is None) or relu_single)):
            assert_nonzero(name, to_numpy(p.grad))
    if nonzero:
        assert_nonzero("dx", theirs[2])
        for k, g in enumerate(theirs[3]):
            assert_nonzero(f"initial state {k} gradient", g)
    return ours


def draw(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


# ---- the configurations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch(kind, config, shape, dtype, rng):
    t, n, initial = shape
    module = make(kind, config, dtype, rng)
    twin = twin_of(module)
    x_shape, state_shape, out_shape = shapes_of(module, t, n)
    x = draw(rng, x_shape, dtype)
    h0 = [draw(rng, state_shape, dtype) for _ in range(n_states(module))] if initial else None
    dout = draw(rng, out_shape, dtype)
    dstates = [draw(rng, state_shape, dtype) for _ in range(n_states(module))]
    snapshot = [a.copy() for a in [x, dout, *dstates, *(h0 or [])]]
    out, states, dx, dstates0 = assert_step_like_torch(module, twin, x, h0, dout, dstates)
    for before, after in zip(snapshot, [x, dout, *dstates, *(h0 or [])]):
        np.testing.assert_array_equal(after, before, err_msg="an input or upstream gradient was modified")
    arrays = [out, dx, *states, *dstates0]
    assert {a.dtype for a in arrays} == {np.dtype(dtype)}
    assert {p.grad.dtype for p in module.parameters()} == {np.dtype(dtype)}
    for a in arrays:
        for given in [x, dout, *dstates, *(h0 or [])]:
            assert not np.shares_memory(a, given)


@pytest.mark.parametrize("kind", list(KINDS))
def test_long_sequence_float32(kind, rng):
    """30 steps through two bidirectional layers in float32: the recurrence's rounding stays within the table."""
    module = make(kind, dict(num_layers=2, bidirectional=True), np.float32, rng)
    x_shape, state_shape, out_shape = shapes_of(module, 30, 4)
    assert_step_like_torch(module, twin_of(module), draw(rng, x_shape, np.float32), None,
                           draw(rng, out_shape, np.float32),
                           [draw(rng, state_shape, np.float32) for _ in range(n_states(module))])


@pytest.mark.parametrize("which", ["output only", "states only", "dh_n only", "all None"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_none_gradients_are_zero(kind, which, rng):
    """A None upstream gradient (of the output, of a state, of both states) is zero, as torch's."""
    module = make(kind, dict(num_layers=2, bidirectional=True), np.float64, rng)
    x_shape, state_shape, out_shape = shapes_of(module, T, N)
    x = draw(rng, x_shape, np.float64)
    k = n_states(module)
    dout = None if which in ("states only", "all None") else draw(rng, out_shape, np.float64)
    dstates = None
    if which == "states only":
        dstates = [draw(rng, state_shape, np.float64) for _ in range(k)]
    if which == "dh_n only":
        dstates = [draw(rng, state_shape, np.float64)] + [None] * (k - 1)
    out, state = module(x)
    if kind == "LSTM":
        dx, (dh0, dc0) = module.backward(dout, None if dstates is None else tuple(dstates))
        d0 = [dh0, dc0]
    else:
        dx, dh0 = module.backward(dout, None if dstates is None else dstates[0])
        d0 = [dh0]
    zeros = np.zeros
    ref = torch_step(twin_of(module), x, None, zeros(out_shape) if dout is None else dout,
                     [zeros(state_shape) if dstates is None or g is None else g
                      for g in (dstates or [None] * k)], state_shape)
    assert_close(dx, ref[2], name="dx")
    for a, b in zip(d0, ref[3]):
        assert_close(a, b, name="initial state gradient")
    if which == "all None":
        assert not np.any(dx) and all(not np.any(a) for a in d0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_accumulate_over_steps_like_torch(kind, dtype, rng):
    """Three steps on one module without zero_grad, different inputs and lengths: every output equal, .grad the sum
    of the three, as torch's."""
    module = make(kind, dict(num_layers=2, bidirectional=True), dtype, rng)
    twin = twin_of(module)
    for t in (4, 1, 6):
        x_shape, state_shape, out_shape = shapes_of(module, t, N)
        h0 = [draw(rng, state_shape, dtype) for _ in range(n_states(module))]
        assert_step_like_torch(module, twin, draw(rng, x_shape, dtype), h0, draw(rng, out_shape, dtype),
                               [draw(rng, state_shape, dtype) for _ in range(n_states(module))])
    single = make(kind, dict(num_layers=2, bidirectional=True), dtype, np.random.default_rng(0))
    single.load_state_dict(module.state_dict())
    single(draw(rng, shapes_of(module, 6, N)[0], dtype))
    single.backward(draw(rng, shapes_of(module, 6, N)[2], dtype))
    assert not np.allclose(module.weight_hh_l0.grad, single.weight_hh_l0.grad)  # the sum, not the last step's


# ---- initialisation, parameters, attributes --------------------------------------------------------------------------
@pytest.mark.parametrize("config", [dict(num_layers=1), dict(num_layers=3, bidirectional=True),
                                    dict(num_layers=2, bias=False)], ids=["1 layer", "3 bidir", "2 no bias"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_generator_gives_torchs_parameters_bit_for_bit(kind, config, dtype):
    seed = 20240 + len(kind)
    cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, cls.__name__)(I, H, **config, **extra, dtype=TORCH_DTYPES[np.dtype(dtype)])
    ours = cls(I, H, **config, **extra, dtype=dtype, rng=TorchGenerator(seed))
    expected = theirs.state_dict()
    assert list(ours.state_dict()) == list(expected)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, expected[key].numpy(), err_msg=key)
        assert value.dtype == np.dtype(dtype)
    bound = 1 / np.sqrt(H)
    assert all(np.all(np.abs(p.data) <= bound) for p in ours.parameters())


@pytest.mark.parametrize("kind", list(KINDS))
def test_attributes_and_parameter_names_are_torchs(kind, rng):
    config = dict(num_layers=2, bias=True, batch_first=True, dropout=0.25, bidirectional=True)
    module = make(kind, config, np.float64, rng)
    twin = twin_of(module)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"):
        assert getattr(module, name) == getattr(twin, name), name
    if kind.startswith("RNN"):
        assert module.nonlinearity == twin.nonlinearity
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in twin.named_parameters()]
    for name, p in twin.named_parameters():
        assert getattr(module, name).shape == tuple(p.shape)
    assert [[id(p) for p in ps] for ps in module.all_weights] == [
        [id(getattr(module, n)) for n in names] for names in module._all_weights]
    assert repr(module) == repr(twin)


def test_backward_before_forward_raises(rng):
    with pytest.raises(RuntimeError, match="before forward"):
        LSTM(I, H, rng=rng).backward(np.zeros((T, N, H)))


# ---- dropout between layers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch_first"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_generator_draws_torchs_own_dropout_masks(kind, batch_first, dtype):
    """``rng=TorchGenerator(seed)`` draws the parameters, then the inter-layer masks, exactly as torch's global
    generator after ``torch.manual_seed(seed)``: the outputs and every gradient of torch's own dropout RNN."""
    seed = 777
    config = dict(num_layers=3, bidirectional=True, dropout=0.4, batch_first=batch_first)
    cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, cls.__name__)(I, H, **config, **extra, dtype=TORCH_DTYPES[np.dtype(dtype)])
    ours = cls(I, H, **config, **extra, dtype=dtype, rng=TorchGenerator(seed))
    rng = np.random.default_rng(seed)
    for _ in range(2):  # two training steps: the second draws the generator's next masks on both sides
        x_shape, state_shape, out_shape = shapes_of(ours, T, N)
        assert_step_like_torch(ours, theirs, draw(rng, x_shape, dtype), None, draw(rng, out_shape, dtype),
                               [draw(rng, state_shape, dtype) for _ in range(n_states(ours))])
    masks = ours.masks
    assert len(masks) == 2 and all(m.shape == out_shape and m.dtype == np.bool_ for m in masks)
    keep = np.mean(np.concatenate([m.ravel() for m in masks]))
    assert 0.4 < keep < 0.8  # the keep rate is 1 - p (loosely: 2 × 180 draws)


def torch_stack(module, masks):
    """The module as torch single-layer modules, one per layer, with ``x * mask / (1 - p)`` between them."""
    cls = getattr(torch.nn, type(module).__name__)
    extra = dict(nonlinearity=module.nonlinearity) if isinstance(module, RNN) else {}
    layers = []
    d = 2 if module.bidirectional else 1
    for layer in range(module.num_layers):
        size = module.input_size if layer == 0 else d * H
        t = cls(size, H, 1, bias=module.bias, batch_first=module.batch_first, bidirectional=module.bidirectional,
                dtype=TORCH_DTYPES[module.weight_ih_l0.dtype], **extra)
        t.load_state_dict({k.replace(f"_l{layer}", "_l0"): torch.from_numpy(v.copy())
                           for k, v in module.state_dict().items() if re.search(rf"_l{layer}(_reverse)?$", k)})
        layers.append(t)

    def run(x, h0):
        finals = [[] for _ in h0]
        for layer, t in enumerate(layers):
            state = [h[layer * d:(layer + 1) * d] for h in h0]
            x, final = t(x, tuple(state) if len(state) == 2 else state[0])
            for store, f in zip(finals, final if len(state) == 2 else [final]):
                store.append(f)
            if layer < len(layers) - 1:
                x = x * torch.from_numpy(masks[layer]).to(x.dtype) / (1 - module.dropout)
        states = [torch.cat(f) for f in finals]
        return x, (tuple(states) if len(states) == 2 else states[0])
    return layers, run


@pytest.mark.parametrize("source", ["drawn by handnn (numpy rng)", "injected with use_masks"])
@pytest.mark.parametrize("config", [dict(num_layers=3, bidirectional=True), dict(num_layers=2, batch_first=True)],
                         ids=["3 bidir", "2 batch_first"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_masks_against_a_stack_of_single_layer_torch_modules(kind, config, source, dtype, rng):
    module = make(kind, dict(config, dropout=0.3), dtype, rng)
    x_shape, state_shape, out_shape = shapes_of(module, T, N)
    x, dout = draw(rng, x_shape, dtype), draw(rng, out_shape, dtype)
    h0 = [draw(rng, state_shape, dtype) for _ in range(n_states(module))]
    dstates = [draw(rng, state_shape, dtype) for _ in range(n_states(module))]
    if source == "injected with use_masks":
        injected = [rng.random(out_shape) > 0.3 for _ in range(module.num_layers - 1)]
        module.use_masks(injected)
    out, state = module(x, pack(module, h0))
    masks = module.masks
    if source == "injected with use_masks":
        for m, given in zip(masks, injected):
            np.testing.assert_array_equal(m, given)
    dx, dstate0 = module.backward(dout, pack(module, dstates))
    layers, run = torch_stack(module, masks)
    xt = to_tensor(x).requires_grad_()
    h0t = [to_tensor(h).requires_grad_() for h in h0]
    out_t, state_t = run(xt, h0t)
    states_t = list(state_t) if isinstance(state_t, tuple) else [state_t]
    torch.autograd.backward([out_t, *states_t], [to_tensor(dout), *map(to_tensor, dstates)])
    assert_close(out, to_numpy(out_t), name="out")
    assert_close(dx, to_numpy(xt.grad), name="dx")
    for a, b in zip(unpack(module, state) + unpack(module, dstate0),
                    [to_numpy(s) for s in states_t] + [to_numpy(h.grad) for h in h0t]):
        assert_close(a, b, name="state")
    for layer, t in enumerate(layers):
        for name, p in t.named_parameters():
            ours = getattr(module, name.replace("_l0", f"_l{layer}")).grad
            assert_close(ours, to_numpy(p.grad), name=name)
    assert module.masks is masks or all(np.array_equal(a, b) for a, b in zip(module.masks, masks))
    module(x)  # a training forward without injected masks draws new ones
    assert not all(np.array_equal(a, b) for a, b in zip(module.masks, masks))


def test_dropout_eval_p0_p1_and_one_layer(rng):
    """No dropout in eval, with p = 0 or with one layer (torch's warning); p = 1 zeroes every layer's output."""
    x = draw(rng, (T, N, I), np.float64)
    module = LSTM(I, H, 2, dropout=0.5, rng=rng).eval()
    twin = twin_of(module)
    assert_close(module(x)[0], to_numpy(twin(to_tensor(x))[0]), name="eval out")
    assert module.masks is None
    module.use_masks([np.zeros((T, N, H), bool)])
    module(x)
    assert module.masks is None  # eval leaves the injected masks for the next training forward
    module.train()
    module(x)
    assert not np.any(module.masks[0])
    assert LSTM(I, H, 2, dropout=0.0, rng=rng)(x) is not None
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        one = GRU(I, H, 1, dropout=0.5, rng=rng)
    one(x)
    assert one.masks is None
    full = RNN(I, H, 2, dropout=1.0, rng=rng)
    out, h_n = full(x)
    assert not np.any(full.masks[0])
    twin = twin_of(full)
    out_t, h_t = twin(to_tensor(x))
    assert_close(out, to_numpy(out_t), name="p=1 out")  # the second layer sees zeros: its bias only
    assert_close(h_n, to_numpy(h_t), name="p=1 h_n")


def test_use_masks_is_checked(rng):
    module = GRU(I, H, 3, dropout=0.5, rng=rng)
    with pytest.raises(ValueError, match="expected 2 masks"):
        module.use_masks([np.ones((T, N, H), bool)])
    module.use_masks([np.ones((T, N, H), bool), np.ones((T, N, H + 1), bool)])
    with pytest.raises(ValueError, match=r"\(5, 3, 7\) does not match .* \(5, 3, 6\)"):
        module(draw(rng, (T, N, I), np.float64))
    module.use_masks([np.ones((T, N, H)), np.ones((T, N, H))])
    with pytest.raises(TypeError, match="boolean"):
        module(draw(rng, (T, N, I), np.float64))


# ---- the functional layer pairs against torch's cells unrolled by autograd -------------------------------------------
TORCH_CELLS = {"rnn tanh": torch.rnn_tanh_cell, "rnn relu": torch.rnn_relu_cell, "lstm": torch.lstm_cell,
               "gru": torch.gru_cell}


@pytest.mark.parametrize("reverse", [False, True], ids=["left to right", "right to left"])
@pytest.mark.parametrize("biases", [(True, True), (True, False), (False, True), (False, False)],
                         ids=["both biases", "b_ih only", "b_hh only", "no bias"])
@pytest.mark.parametrize("kind", list(TORCH_CELLS))
def test_functional_layer_pair_matches_torch_cells_unrolled(kind, biases, reverse, dtype, rng):
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    x = draw(rng, (T, N, I), dtype)
    w_ih, w_hh = draw(rng, (gates * H, I), dtype) / 2, draw(rng, (gates * H, H), dtype) / 2
    b_ih, b_hh = (draw(rng, (gates * H,), dtype) if given else None for given in biases)
    k = 2 if kind == "lstm" else 1
    h0 = [draw(rng, (N, H), dtype) for _ in range(k)]
    dout, dstates = draw(rng, (T, N, H), dtype), [draw(rng, (N, H), dtype) for _ in range(k)]
    # torch: the cell at every step, in the direction's order, autograd through all of them
    ts = {name: to_tensor(a).requires_grad_() for name, a in
          dict(x=x, w_ih=w_ih, w_hh=w_hh, **{f"h{j}": h for j, h in enumerate(h0)}).items()}
    bt = [None if b is None else to_tensor(b).requires_grad_() for b in (b_ih, b_hh)]
    state = [ts[f"h{j}"] for j in range(k)]
    outs = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        new = TORCH_CELLS[kind](ts["x"][t], tuple(state) if k == 2 else state[0], ts["w_ih"], ts["w_hh"], *bt)
        state = list(new) if k == 2 else [new]
        outs[t] = state[0]
    out_t = torch.stack(outs)
    torch.autograd.backward([out_t, *state], [to_tensor(dout), *map(to_tensor, dstates)])
    # handnn
    snapshot = [a.copy() for a in (x, w_ih, w_hh, dout, *h0, *dstates)]
    if kind == "lstm":
        (out, (h_n, c_n)), cache = R.lstm_layer_forward(x, *h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = R.lstm_layer_backward(dout, *dstates, cache)
        finals, d0 = [h_n, c_n], [dh0, dc0]
    else:
        forward, backward = {"gru": (R.gru_layer_forward, R.gru_layer_backward)}.get(
            kind, (R.rnn_layer_forward, R.rnn_layer_backward))
        extra = {} if kind == "gru" else dict(nonlinearity=kind.split()[1])
        (out, h_n), cache = forward(x, h0[0], w_ih, w_hh, b_ih, b_hh, **extra, reverse=reverse)
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward(dout, dstates[0], cache)
        finals, d0 = [h_n], [dh0]
    assert_close(out, to_numpy(out_t), name="out")
    for j in range(k):
        assert_close(finals[j], to_numpy(state[j]), name=f"final state {j}")
        assert_close(d0[j], to_numpy(ts[f"h{j}"].grad), name=f"initial state {j} gradient")
    for name, ours in (("x", dx), ("w_ih", dw_ih), ("w_hh", dw_hh)):
        assert_close(ours, to_numpy(ts[name].grad), name=f"d{name}")
        assert_nonzero(name, to_numpy(ts[name].grad))
    for ours, b in zip((db_ih, db_hh), bt):
        assert (ours is None) == (b is None)
        if b is not None:
            assert_close(ours, to_numpy(b.grad), name="dbias")
    for before, after in zip(snapshot, (x, w_ih, w_hh, dout, *h0, *dstates)):
        np.testing.assert_array_equal(after, before)
    # the cache is left usable: a second backward gives the same gradients
    again = (R.lstm_layer_backward(dout, *dstates, cache) if kind == "lstm" else backward(dout, dstates[0], cache))
    np.testing.assert_array_equal(again[0], dx)


def test_functional_layer_none_states_and_gradients(rng):
    """h0 None is zeros (and gets its gradient); a None dout / dh_n is zero."""
    x = draw(rng, (T, N, I), np.float64)
    w_ih, w_hh = draw(rng, (3 * H, I), np.float64), draw(rng, (3 * H, H), np.float64)
    (out, h_n), cache = R.gru_layer_forward(x, None, w_ih, w_hh)
    (out0, h_n0), cache0 = R.gru_layer_forward(x, np.zeros((N, H)), w_ih, w_hh)
    np.testing.assert_array_equal(out, out0)
    dout = draw(rng, (T, N, H), np.float64)
    for a, b in zip(R.gru_layer_backward(dout, None, cache), R.gru_layer_backward(dout, np.zeros((N, H)), cache0)):
        np.testing.assert_array_equal(a, b)  # the biases' None on both sides
    dx, dh0, *_ = R.gru_layer_backward(None, None, cache)
    assert not np.any(dx) and not np.any(dh0)


# ---- bad inputs ------------------------------------------------------------------------------------------------------
BAD_FORWARD = {
    # name: (kind, config, x shape, x dtype, state shapes or None, handnn message pattern)
    "4-d input": ("LSTM", {}, (T, N, I, 1), np.float64, None, r"LSTM: Expected input to be 2D or 3D, got 4D"),
    "1-d input": ("RNN tanh", {}, (I,), np.float64, None, r"RNN: Expected input to be 2D or 3D, got 1D"),
    "wrong input size": ("GRU", {}, (T, N, I + 2), np.float64, None, r"Expected 4, got 6"),
    "wrong input size unbatched": ("LSTM", {}, (T, I + 1), np.float64, None, r"Expected 4, got 5"),
    "input dtype": ("LSTM", {}, (T, N, I), np.float32, None, r"input dtype \(float32\) does not match weight "
                    r"dtype \(float64\)"),
    "integer input": ("RNN tanh", {}, (T, N, I), np.int64, None, r"int64"),
    "empty sequence": ("GRU", {}, (0, N, I), np.float64, None, "sequence length"),
    "hidden batch": ("GRU", dict(num_layers=2), (T, N, I), np.float64, [(2, N + 1, H)],
                     r"Expected hidden size \(2, 3, 6\), got \[2, 4, 6\]"),
    "hidden layers": ("RNN relu", dict(bidirectional=True), (T, N, I), np.float64, [(1, N, H)],
                      r"Expected hidden size \(2, 3, 6\), got \[1, 3, 6\]"),
    "hidden rank batched": ("GRU", {}, (T, N, I), np.float64, [(1, H)], r"should also be 3-D but got 2-D"),
    "hidden rank unbatched": ("RNN tanh", {}, (T, I), np.float64, [(1, 1, H)], r"should also be 2-D but got 3-D"),
    "hidden size unbatched": ("RNN tanh", {}, (T, I), np.float64, [(1, H + 1)],
                              r"Expected hidden size \(1, 1, 6\), got \[1, 1, 7\]"),
    "lstm h wrong": ("LSTM", {}, (T, N, I), np.float64, [(1, N, H + 1), (1, N, H)],
                     r"Expected hidden\[0\] size \(1, 3, 6\), got \[1, 3, 7\]"),
    "lstm c wrong": ("LSTM", {}, (T, N, I), np.float64, [(1, N, H), (2, N, H)],
                     r"Expected hidden\[1\] size \(1, 3, 6\), got \[2, 3, 6\]"),
    "lstm ranks": ("LSTM", {}, (T, N, I), np.float64, [(N, H), (1, N, H)], r"got \(2-D, 3-D\)"),
    "lstm ranks unbatched": ("LSTM", {}, (T, I), np.float64, [(1, 1, H), (1, 1, H)], r"got \(3-D, 3-D\)"),
    "hidden dtype": ("GRU", {}, (T, N, I), np.float64, [((1, N, H), np.float32)], r"float32"),
}


@pytest.mark.parametrize("case", list(BAD_FORWARD.values()), ids=list(BAD_FORWARD))
def test_bad_input_raises_torchs_class(case, rng):
    kind, config, x_shape, x_dtype, states, pattern = case
    module = make(kind, config, np.float64, rng)
    twin = twin_of(module)
    x = np.asarray(rng.normal(size=x_shape) * 3).astype(x_dtype)
    arrays = None
    if states is not None:
        arrays = [rng.normal(size=s[0]).astype(s[1]) if isinstance(s[-1], type) else rng.normal(size=s)
                  for s in states]
    hx_t = None if arrays is None else (tuple(map(to_tensor, arrays)) if kind == "LSTM" else to_tensor(arrays[0]))
    expected = torch_error(lambda: twin(to_tensor(x), hx_t))
    before = module.state_dict()
    with pytest.raises(type(expected), match=pattern):
        module(x, pack(module, arrays))
    assert module._cache is None
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


BAD_CONSTRUCTOR = {
    "nonlinearity": (RNN, (I, H), dict(nonlinearity="sigmoid"), "Unknown nonlinearity 'sigmoid'"),
    "dropout > 1": (LSTM, (I, H, 2), dict(dropout=1.5), "dropout should be a number in range"),
    "dropout < 0": (GRU, (I, H, 2), dict(dropout=-0.1), "dropout should be a number in range"),
    "dropout bool": (RNN, (I, H, 2), dict(dropout=True), "dropout should be a number in range"),
    "dropout string": (RNN, (I, H, 2), dict(dropout="a"), "could not convert"),
    "hidden 0": (LSTM, (I, 0), {}, "hidden_size must be greater than zero"),
    "input 0": (GRU, (0, H), {}, "input_size must be greater than zero"),
    "layers 0": (RNN, (I, H, 0), {}, "num_layers must be greater than zero"),
    "layers float": (LSTM, (I, H, 2.0), {}, "cannot be interpreted as an integer"),
    "hidden float": (GRU, (I, 3.0), {}, "hidden_size should be of type int, got: float"),
    "input float": (RNN, (2.0, H), {}, "input_size should be of type int, got: float"),
    "bias int": (LSTM, (I, H), dict(bias=1), "bias should be of type bool, got: int"),
    "batch_first None": (GRU, (I, H), dict(batch_first=None), "batch_first should be of type bool"),
    "proj_size negative": (LSTM, (I, H), dict(proj_size=-1), "proj_size should be a positive integer or zero"),
    "proj_size too large": (LSTM, (I, H), dict(proj_size=H), "proj_size has to be smaller than hidden_size"),
}


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTOR.values()), ids=list(BAD_CONSTRUCTOR))
def test_bad_constructor_arguments_raise_torchs_class(case):
    cls, args, kwargs, pattern = case
    expected = torch_error(lambda: getattr(torch.nn, cls.__name__)(*args, **kwargs))
    assert re.search(pattern, str(expected)), str(expected)
    with pytest.raises(type(expected), match=pattern):
        cls(*args, **kwargs, rng=np.random.default_rng(0))


def test_proj_size_is_not_supported():
    """torch accepts a valid proj_size; handnn refuses it with NotImplementedError naming the option."""
    torch.nn.LSTM(I, H, proj_size=2)
    with pytest.raises(NotImplementedError, match="proj_size"):
        LSTM(I, H, proj_size=2)


@pytest.mark.parametrize("which", ["dout", "dh_n"])
def test_wrong_gradient_shape_raises(which, rng):
    module = GRU(I, H, rng=rng)
    module(draw(rng, (T, N, I), np.float64))
    dout, dh = np.zeros((T, N, H)), np.zeros((1, N, H))
    if which == "dout":
        dout = np.zeros((T, N, H + 1))
    else:
        dh = np.zeros((1, N + 1, H))
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        module.backward(dout, dh)


def test_upstream_gradients_of_another_dtype_are_cast_like_torch(rng):
    """float64 upstream gradients into a float32 module: cast to float32, as autograd casts them."""
    module = make("LSTM", dict(num_layers=2), np.float32, rng)
    x = draw(rng, (T, N, I), np.float32)
    out, _ = module(x)
    dout = draw(rng, out.shape, np.float64)
    dx, (dh0, dc0) = module.backward(dout, (draw(rng, (2, N, H), np.float64), None))
    assert {dx.dtype, dh0.dtype, dc0.dtype} == {np.dtype(np.float32)}
    assert {p.grad.dtype for p in module.parameters()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_non_contiguous_input_state_and_gradients(kind, rng):
    """Strided and transposed views, as a layer inside a network receives them."""
    module = make(kind, dict(num_layers=2, bidirectional=True), np.float64, rng)
    x = draw(rng, (2 * T, N, I), np.float64)[::2]
    h0 = [np.ascontiguousarray(draw(rng, (N, 4, H), np.float64)).transpose(1, 0, 2)
          for _ in range(n_states(module))]
    dout = draw(rng, (T, N, 4 * H), np.float64)[..., ::2]
    dstates = [draw(rng, (4, N, 2 * H), np.float64)[..., 1::2] for _ in range(n_states(module))]
    assert not x.flags.c_contiguous and not h0[0].flags.c_contiguous and not dout.flags.c_contiguous
    assert_step_like_torch(module, twin_of(module), x, h0, dout, dstates)
