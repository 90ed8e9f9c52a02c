"""Module, Parameter and Sequential bookkeeping, numpy only (this file runs where torch is not installed).

Key names, key order and error messages asserted here are torch 2.13's, as ``tests/parity/test_module_api.py``
checks live against torch; gradients are checked against formulas computed in the test.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable, Dict

import numpy as np
import pytest

from handnn import nn
from handnn.nn import Parameter

N, D_IN, D_HID, D_OUT = 7, 6, 5, 4  # all different, so a wrong axis or transpose cannot pass


# ---- helpers -------------------------------------------------------------------------------------------------
def _mlp(rng: np.random.Generator) -> nn.Sequential:
    """Sequential(Linear, BatchNorm1d, ReLU, Sequential(Dropout, Linear)): parameters, buffers, nesting."""
    return nn.Sequential(nn.Linear(D_IN, D_HID, rng=rng), nn.BatchNorm1d(D_HID), nn.ReLU(),
                         nn.Sequential(nn.Dropout(0.3, rng=rng), nn.Linear(D_HID, D_OUT, rng=rng)))


def _randomize(module: nn.Module, rng: np.random.Generator) -> None:
    """Move every parameter and buffer off its initial value (a no-op load could not pass unnoticed)."""
    for _, param in module.named_parameters():
        param.data[...] = rng.normal(size=param.shape)
    for _, buf in module.named_buffers():
        if buf.dtype.kind == "f":
            buf[...] = rng.uniform(0.5, 2.0, buf.shape)
        else:
            buf[...] = rng.integers(1, 50)


def _snapshot(module: nn.Module) -> Dict[str, object]:
    """Everything ``load_state_dict`` could touch: values, dtypes, array identities, grads, modes."""
    return {
        "state": [(k, v.dtype, v.copy()) for k, v in module.state_dict().items()],
        "params": [(n, id(p), id(p.data)) for n, p in module.named_parameters()],
        "buffers": [(n, id(b)) for n, b in module.named_buffers()],
        "grads": [(n, None if p.grad is None else p.grad.copy()) for n, p in module.named_parameters()],
        "training": [(n, m.training) for n, m in module.named_modules()],
    }


def _assert_unchanged(before: Dict[str, object], module: nn.Module) -> None:
    after = _snapshot(module)
    assert [(k, d) for k, d, _ in after["state"]] == [(k, d) for k, d, _ in before["state"]]
    for (key, _, old), (_, _, new) in zip(before["state"], after["state"]):
        np.testing.assert_array_equal(new, old, err_msg=key)
    assert after["params"] == before["params"]
    assert after["buffers"] == before["buffers"]
    for (name, old), (_, new) in zip(before["grads"], after["grads"]):
        assert (old is None) == (new is None), name
        if old is not None:
            np.testing.assert_array_equal(new, old, err_msg=name)
    assert after["training"] == before["training"]


def _other_state(module: nn.Module, rng: np.random.Generator) -> "OrderedDict[str, np.ndarray]":
    """A valid state_dict for ``module`` whose every value differs from the module's."""
    state = module.state_dict()
    for key, value in state.items():
        state[key] = value + (rng.uniform(1.0, 2.0, value.shape).astype(value.dtype)
                              if value.dtype.kind == "f" else 3)
    return state


# ---- Parameter -----------------------------------------------------------------------------------------------
def test_parameter_data_and_grad_are_assignable(rng):
    values = rng.normal(size=(3, 2))
    p = Parameter(values)
    assert p.data is values and p.grad is None and p.requires_grad
    assert (p.shape, p.dtype, p.ndim, p.size) == ((3, 2), np.dtype(np.float64), 2, 6)
    assert np.asarray(p) is p.data
    new_data, new_grad = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    p.data = new_data
    p.grad = new_grad
    assert p.data is new_data and p.grad is new_grad
    assert Parameter(p).data is p.data  # wrapping a Parameter shares its array, like torch
    with pytest.raises(AttributeError):
        p.other = 1  # __slots__: a typo such as p.gard = ... must not pass silently


def test_requires_grad_false_leaves_grad_alone(rng):
    layer = nn.Linear(D_IN, D_OUT, rng=rng)
    layer.weight.requires_grad = False
    x, dout = rng.normal(size=(N, D_IN)), rng.normal(size=(N, D_OUT))
    layer(x)
    dx = layer.backward(dout)
    assert layer.weight.grad is None
    np.testing.assert_allclose(layer.bias.grad, dout.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dx, dout @ layer.weight.data, rtol=1e-12)  # dx still flows through
    preset = rng.normal(size=layer.weight.shape)
    layer.weight.grad = preset.copy()
    layer.backward(dout)
    np.testing.assert_array_equal(layer.weight.grad, preset)


# ---- registration --------------------------------------------------------------------------------------------
class Block(nn.Module):
    """A custom module registering a buffer BEFORE its parameters, a None parameter and buffer, a child."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.register_buffer("scale", rng.normal(size=3))
        self.weight = Parameter(rng.normal(size=(3, 2)))
        self.register_parameter("bias", None)
        self.register_buffer("unused", None)
        self.inner = nn.Linear(2, 3, rng=rng)
        self.alpha = Parameter(rng.normal(size=()))
        self.note = "a plain attribute"


def test_registration_by_attribute_and_state_dict_order(rng):
    block = Block(rng)
    # torch: each module's parameters, then its buffers (whatever the registration order), then children
    assert list(block.state_dict()) == ["weight", "alpha", "scale", "inner.weight", "inner.bias"]
    assert [n for n, _ in block.named_parameters()] == ["weight", "alpha", "inner.weight", "inner.bias"]
    assert [n for n, _ in block.named_buffers()] == ["scale"]
    assert [n for n, _ in block.named_parameters(recurse=False)] == ["weight", "alpha"]
    assert [n for n, _ in block.named_modules()] == ["", "inner"]
    assert block.bias is None and block.unused is None and block.note == "a plain attribute"
    assert block.state_dict()["weight"] is not block.weight.data  # copies
    np.testing.assert_array_equal(block.state_dict()["scale"], block.scale)
    assert [p is q for p, q in zip(block.parameters(), [block.weight, block.alpha, block.inner.weight,
                                                        block.inner.bias])] == [True] * 4


def test_registration_reassign_and_delete(rng):
    block = Block(rng)
    with pytest.raises(TypeError, match="cannot assign 'ndarray' as 'weight'"):
        block.weight = rng.normal(size=(3, 2))  # torch: TypeError, a plain array is not a Parameter
    block.weight = None  # a registered parameter may become None: skipped in state_dict
    block.scale = rng.normal(size=3)  # a buffer may be replaced by an array
    del block.inner
    assert list(block.state_dict()) == ["alpha", "scale"]
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'inner'"):
        block.inner


@pytest.mark.parametrize("factory, keys", [
    (lambda: nn.Linear(D_IN, D_OUT, bias=False), ["weight"]),
    (lambda: nn.BatchNorm1d(D_HID), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]),
    (lambda: nn.BatchNorm1d(D_HID, affine=False), ["running_mean", "running_var", "num_batches_tracked"]),
    (lambda: nn.BatchNorm2d(D_HID, track_running_stats=False), ["weight", "bias"]),
    (lambda: nn.BatchNorm1d(D_HID, affine=False, track_running_stats=False), []),
    (lambda: nn.LayerNorm(D_HID, bias=False), ["weight"]),
    (lambda: nn.LayerNorm(D_HID, elementwise_affine=False), []),
    (lambda: nn.GroupNorm(2, 4, affine=False), []),
], ids=["linear-nobias", "bn", "bn-noaffine", "bn2d-nostats", "bn-bare", "ln-nobias", "ln-noaffine", "gn-noaffine"])
def test_none_params_and_buffers_are_skipped(factory, keys):
    module = factory()
    assert list(module.state_dict()) == keys
    assert [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()] == keys


def test_nested_state_dict_keys(rng):
    model = _mlp(rng)
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "3.1.weight", "3.1.bias"]
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2", "3", "3.0", "3.1"]
    assert [type(m).__name__ for m in model.children()] == ["Linear", "BatchNorm1d", "ReLU", "Sequential"]
    assert model.state_dict()["1.num_batches_tracked"].dtype == np.int64


def test_shared_module_is_deduplicated_in_traversal_but_not_in_state_dict(rng):
    a, act = nn.Linear(3, 2, rng=rng), nn.ReLU()
    inner = nn.Sequential(a)
    model = nn.Sequential(inner, a, act, a)
    assert len(model) == 4 and list(model) == [inner, a, act, a]
    assert [(n, m) for n, m in model.named_modules()] == [("", model), ("0", inner), ("0.0", a), ("2", act)]
    assert list(model.modules()) == [model, inner, a, act]
    assert list(model.children()) == [inner, a, act]
    assert [n for n, _ in model.named_children()] == ["0", "1", "2"]
    assert [n for n, _ in model.named_parameters()] == ["0.0.weight", "0.0.bias"]
    assert len(list(model.parameters())) == 2
    # torch's state_dict walks every registered name: the shared Linear is saved under each of them
    assert list(model.state_dict()) == ["0.0.weight", "0.0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    state = _other_state(model, rng)
    state["1.weight"] = state["3.weight"] = state["0.0.weight"]
    state["1.bias"] = state["3.bias"] = state["0.0.bias"]
    model.load_state_dict(state)
    np.testing.assert_array_equal(a.weight.data, state["0.0.weight"])


# ---- train / eval --------------------------------------------------------------------------------------------
def test_train_eval_recurse(rng):
    model = _mlp(rng)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert [m.training for m in model.modules()] == [False] * 7
    assert model.train() is model
    assert [m.training for m in model.modules()] == [True] * 7
    model.train(False)
    assert [m.training for m in model.modules()] == [False] * 7
    model[3].train()  # a child alone: only its own subtree changes
    assert [(n, m.training) for n, m in model.named_modules()] == [
        ("", False), ("0", False), ("1", False), ("2", False), ("3", True), ("3.0", True), ("3.1", True)]
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        model.train("yes")
    assert model[3].training and not model.training  # the rejected call changed nothing


# ---- gradients -----------------------------------------------------------------------------------------------
def _run(module: nn.Module, x: np.ndarray, dout: np.ndarray) -> np.ndarray:
    module(x)
    return module.backward(dout)


def test_zero_grad(rng):
    model = _mlp(rng)
    x, dout = rng.normal(size=(N, D_IN)), rng.normal(size=(N, D_OUT))
    model.zero_grad()  # nothing to reset yet
    assert all(p.grad is None for p in model.parameters())
    _run(model, x, dout)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and np.any(g != 0) for g in grads)
    model.zero_grad(set_to_none=False)
    for p, g in zip(model.parameters(), grads):
        assert p.grad is g  # reset in place: an optimizer holding the array sees zeros
        np.testing.assert_array_equal(p.grad, np.zeros_like(p.data))
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


LAYERS_WITH_PARAMS: Dict[str, Callable[[np.random.Generator], nn.Module]] = {
    "linear": lambda rng: nn.Linear(D_IN, D_OUT, rng=rng),
    "linear-nobias": lambda rng: nn.Linear(D_IN, D_OUT, bias=False, rng=rng),
    "batchnorm1d": lambda rng: nn.BatchNorm1d(D_IN),
    "batchnorm2d": lambda rng: nn.BatchNorm2d(D_IN),
    "layernorm": lambda rng: nn.LayerNorm(D_IN),
    "groupnorm": lambda rng: nn.GroupNorm(3, D_IN),
    "mlp": _mlp,
}
INPUT_SHAPES = {"batchnorm2d": (N, D_IN, 4, 3), "groupnorm": (N, D_IN, 4)}


@pytest.mark.parametrize("name", list(LAYERS_WITH_PARAMS))
def test_backward_accumulates(name, rng):
    module = LAYERS_WITH_PARAMS[name](rng)
    _randomize(module, rng)
    x = rng.normal(size=INPUT_SHAPES.get(name, (N, D_IN)))
    out = module(x)
    dout = rng.normal(size=out.shape)
    x_copy, dout_copy = x.copy(), dout.copy()
    dx1 = module.backward(dout)
    once = {n: p.grad.copy() for n, p in module.named_parameters()}
    dx2 = module.backward(dout)
    assert once and all(np.any(g != 0) for g in once.values())
    for n, p in module.named_parameters():
        np.testing.assert_array_equal(p.grad, 2 * once[n], err_msg=n)  # g + g == 2g exactly
    np.testing.assert_array_equal(dx2, dx1)  # dx is returned, never accumulated
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)


@pytest.mark.parametrize("name", ["linear", "layernorm", "mlp"])
def test_backward_accumulates_across_batches(name, rng):
    """grad after (a, then b) == grad(a) + grad(b), each computed from zeroed grads."""
    module = LAYERS_WITH_PARAMS[name](rng).eval()  # eval: batch a does not move the statistics used for b
    _randomize(module, rng)
    xa, xb = rng.normal(size=(N, D_IN)), rng.normal(size=(N + 2, D_IN))
    da, db = rng.normal(size=module(xa).shape), rng.normal(size=module(xb).shape)
    single = []
    for x, d in ((xa, da), (xb, db)):
        module.zero_grad()
        _run(module, x, d)
        single.append({n: p.grad.copy() for n, p in module.named_parameters()})
    module.zero_grad()
    _run(module, xa, da)
    _run(module, xb, db)
    for n, p in module.named_parameters():
        np.testing.assert_array_equal(p.grad, single[0][n] + single[1][n], err_msg=n)


def _all_layers() -> Dict[str, Callable[[np.random.Generator], nn.Module]]:
    return {
        "Linear": lambda rng: nn.Linear(D_IN, D_OUT, rng=rng),
        "Identity": lambda rng: nn.Identity(),
        "Flatten": lambda rng: nn.Flatten(),
        "ReLU": lambda rng: nn.ReLU(),
        "LeakyReLU": lambda rng: nn.LeakyReLU(0.2),
        "Sigmoid": lambda rng: nn.Sigmoid(),
        "Tanh": lambda rng: nn.Tanh(),
        "GELU": lambda rng: nn.GELU(),
        "Softmax": lambda rng: nn.Softmax(dim=1),
        "LogSoftmax": lambda rng: nn.LogSoftmax(dim=1),
        "BatchNorm1d": lambda rng: nn.BatchNorm1d(D_IN),
        "BatchNorm2d": lambda rng: nn.BatchNorm2d(D_IN),
        "LayerNorm": lambda rng: nn.LayerNorm(D_IN),
        "GroupNorm": lambda rng: nn.GroupNorm(3, D_IN),
        "Dropout": lambda rng: nn.Dropout(0.3, rng=rng),
        "Dropout2d": lambda rng: nn.Dropout2d(0.3, rng=rng),
        "Conv1d": lambda rng: nn.Conv1d(D_IN, D_OUT, 3, rng=rng),
        "Conv2d": lambda rng: nn.Conv2d(D_IN, D_OUT, 3, rng=rng),
        "MaxPool2d": lambda rng: nn.MaxPool2d(2),
        "AvgPool2d": lambda rng: nn.AvgPool2d(2),
        "AdaptiveAvgPool2d": lambda rng: nn.AdaptiveAvgPool2d(1),
        "Embedding": lambda rng: nn.Embedding(10, D_IN, rng=rng),
        "RNN": lambda rng: nn.RNN(D_IN, D_OUT, rng=rng),
        "LSTM": lambda rng: nn.LSTM(D_IN, D_OUT, rng=rng),
        "GRU": lambda rng: nn.GRU(D_IN, D_OUT, rng=rng),
        "RNNCell": lambda rng: nn.RNNCell(D_IN, D_OUT, rng=rng),
        "LSTMCell": lambda rng: nn.LSTMCell(D_IN, D_OUT, rng=rng),
        "GRUCell": lambda rng: nn.GRUCell(D_IN, D_OUT, rng=rng),
        "MultiheadAttention": lambda rng: nn.MultiheadAttention(D_IN, 1, rng=rng),
        "TransformerEncoderLayer": lambda rng: nn.TransformerEncoderLayer(D_IN, 1, 8, rng=rng),
        "Sequential": _mlp,
        "MSELoss": lambda rng: nn.MSELoss(),
        "L1Loss": lambda rng: nn.L1Loss(),
        "SmoothL1Loss": lambda rng: nn.SmoothL1Loss(),
        "HuberLoss": lambda rng: nn.HuberLoss(),
        "BCELoss": lambda rng: nn.BCELoss(),
        "BCEWithLogitsLoss": lambda rng: nn.BCEWithLogitsLoss(),
        "NLLLoss": lambda rng: nn.NLLLoss(),
        "CrossEntropyLoss": lambda rng: nn.CrossEntropyLoss(),
    }


def test_every_layer_type_is_covered():
    exported = {name for name in nn.__all__
                if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)}
    assert sorted(_all_layers()) == sorted(exported - {"Module", "RNNBase", "RNNCellBase"})


@pytest.mark.parametrize("name", sorted(_all_layers()))
def test_backward_before_forward_raises(name, rng):
    module = _all_layers()[name](rng)
    dout = rng.normal(size=(N, D_OUT))
    dout_copy = dout.copy()
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        module.backward(dout)
    np.testing.assert_array_equal(dout, dout_copy)
    assert all(p.grad is None for p in module.parameters())


# ---- Sequential ----------------------------------------------------------------------------------------------
def test_sequential_indexing_slicing_len_iteration(rng):
    layers = [nn.Linear(D_IN, D_HID, rng=rng), nn.Tanh(), nn.Linear(D_HID, D_OUT, rng=rng), nn.ReLU()]
    seq = nn.Sequential(*layers)
    assert len(seq) == 4 and list(seq) == layers
    assert [seq[i] for i in range(4)] == layers
    assert [seq[i] for i in range(-4, 0)] == layers
    for bad in (4, -5):
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            seq[bad]
    head = seq[1:3]
    assert type(head) is nn.Sequential and list(head) == layers[1:3]
    assert [n for n, _ in head.named_children()] == ["1", "2"]  # torch keeps the original names
    assert list(head.state_dict()) == ["2.weight", "2.bias"]
    assert list(seq[::-2]) == [layers[3], layers[1]]
    assert len(seq[10:]) == 0
    x = rng.normal(size=(N, D_IN))
    np.testing.assert_array_equal(seq[:2](x), np.tanh(x @ layers[0].weight.data.T + layers[0].bias.data))


def test_sequential_ordereddict_append_and_nesting(rng):
    fc, act = nn.Linear(D_IN, D_HID, rng=rng), nn.ReLU()
    seq = nn.Sequential(OrderedDict([("fc", fc), ("act", act)]))
    assert [n for n, _ in seq.named_children()] == ["fc", "act"]
    assert seq.fc is fc and seq[-1] is act
    inner = nn.Sequential(nn.Linear(D_HID, D_OUT, rng=rng))
    assert seq.append(inner) is seq
    assert [n for n, _ in seq.named_children()] == ["fc", "act", "2"]
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias", "2.0.weight", "2.0.bias"]
    with pytest.raises(TypeError, match="int is not a Module subclass"):
        seq.append(3)
    assert len(seq) == 3


def test_sequential_forward_and_backward_chain(rng):
    """Sequential(Linear, Tanh, Linear) against the chain rule written out in the test."""
    seq = nn.Sequential(nn.Linear(D_IN, D_HID, rng=rng), nn.Tanh(),
                        nn.Sequential(nn.Linear(D_HID, D_OUT, rng=rng)))
    (w1, b1), (w2, b2) = [(lin.weight.data, lin.bias.data) for lin in (seq[0], seq[2][0])]
    x, dout = rng.normal(size=(N, D_IN)), rng.normal(size=(N, D_OUT))
    x_copy, dout_copy = x.copy(), dout.copy()
    a = np.tanh(x @ w1.T + b1)
    out = seq(x)
    np.testing.assert_allclose(out, a @ w2.T + b2, rtol=1e-12, atol=1e-14)
    dx = seq.backward(dout)
    dh = (dout @ w2) * (1 - a ** 2)
    np.testing.assert_allclose(dx, dh @ w1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seq[2][0].weight.grad, dout.T @ a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seq[2][0].bias.grad, dout.sum(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seq[0].weight.grad, dh.T @ x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seq[0].bias.grad, dh.sum(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)


# ---- load_state_dict -----------------------------------------------------------------------------------------
def _model(rng: np.random.Generator) -> nn.Sequential:
    model = _mlp(rng)
    _randomize(model, rng)
    model(rng.normal(size=(N, D_IN)))
    model.backward(rng.normal(size=(N, D_OUT)))  # grads present: a load must not touch them either
    model[1].eval()  # mixed modes: a load must not touch them either
    return model


LAST = "3.1.bias"  # the bad entry comes last, so every valid key before it would be copied by a partial load


@pytest.mark.parametrize("strict", [True, False])
def test_load_size_mismatch(strict, rng):
    model = _model(rng)
    state = _other_state(model, rng)
    state[LAST] = rng.normal(size=(D_OUT, 2))
    before = _snapshot(model)
    expected = ("Error(s) in loading state_dict for Sequential:\n\tsize mismatch for 3.1.bias: copying a param "
                f"with shape ({D_OUT}, 2) from checkpoint, the shape in current model is ({D_OUT},).")
    with pytest.raises(RuntimeError, match=re.escape(expected)) as info:
        model.load_state_dict(state, strict=strict)
    assert str(info.value) == expected
    _assert_unchanged(before, model)


def test_load_missing_key(rng):
    model = _model(rng)
    state = _other_state(model, rng)
    del state[LAST], state["1.running_var"]
    before = _snapshot(model)
    expected = ('Error(s) in loading state_dict for Sequential:\n\tMissing key(s) in state_dict: '
                '"1.running_var", "3.1.bias". ')
    with pytest.raises(RuntimeError, match=re.escape(expected)) as info:
        model.load_state_dict(state)
    assert str(info.value) == expected
    _assert_unchanged(before, model)


def test_load_unexpected_key(rng):
    model = _model(rng)
    state = _other_state(model, rng)
    state["3.1.scale"] = rng.normal(size=3)
    before = _snapshot(model)
    expected = ('Error(s) in loading state_dict for Sequential:\n\tUnexpected key(s) in state_dict: '
                '"3.1.scale". ')
    with pytest.raises(RuntimeError, match=re.escape(expected)) as info:
        model.load_state_dict(state)
    assert str(info.value) == expected
    _assert_unchanged(before, model)


def test_load_all_errors_in_torch_order(rng):
    layer = nn.Linear(D_IN, D_OUT, rng=rng)
    before = _snapshot(layer)
    expected = ('Error(s) in loading state_dict for Linear:\n\tMissing key(s) in state_dict: "bias". \n\t'
                'Unexpected key(s) in state_dict: "extra". \n\tsize mismatch for weight: copying a param with '
                f"shape ({D_IN}, {D_OUT}) from checkpoint, the shape in current model is ({D_OUT}, {D_IN}).")
    with pytest.raises(RuntimeError) as info:
        layer.load_state_dict({"weight": rng.normal(size=(D_IN, D_OUT)), "extra": rng.normal(size=2)})
    assert str(info.value) == expected
    _assert_unchanged(before, layer)


@pytest.mark.parametrize("bad", [
    None, "abc", ["a", "b", "c", "d"], np.array(["x"] * D_OUT), np.array([object()] * D_OUT, dtype=object),
], ids=["none", "str", "str-list", "str-array-right-shape", "object-array"])
@pytest.mark.parametrize("strict", [True, False])
def test_load_non_numeric_value(bad, strict, rng):
    model = _model(rng)
    state = _other_state(model, rng)
    state[LAST] = bad
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match=re.escape(
            'Error(s) in loading state_dict for Sequential:\n\tWhile copying the parameter named "3.1.bias", '
            f"expected a numeric array from checkpoint but received {type(bad)}")):
        model.load_state_dict(state, strict=strict)
    _assert_unchanged(before, model)


def test_load_rejects_non_mapping(rng):
    model = _model(rng)
    before = _snapshot(model)
    with pytest.raises(TypeError, match=re.escape("Expected state_dict to be dict-like, got <class 'list'>.")):
        model.load_state_dict(list(model.state_dict().items()))
    _assert_unchanged(before, model)


def test_load_non_strict_returns_incompatible_keys(rng):
    model = _model(rng)
    state = _other_state(model, rng)
    del state["0.bias"], state["1.num_batches_tracked"]
    state["bogus"] = rng.normal(size=2)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["0.bias", "1.num_batches_tracked"]
    assert result.unexpected_keys == ["bogus"]
    loaded = model.state_dict()
    for key, value in state.items():
        if key != "bogus":
            np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    assert repr(model.load_state_dict(model.state_dict())) == "<All keys matched successfully>"


@pytest.mark.parametrize("model_dtype", [np.float64, np.float32])
def test_load_is_in_place_and_casts(model_dtype, rng):
    model = _model(rng).to(model_dtype)
    held = {n: p.data for n, p in model.named_parameters()}  # what an optimizer holds
    held_params = {n: p for n, p in model.named_parameters()}
    held_buffers = dict(model.named_buffers())
    state = OrderedDict((k, v.astype(np.float64) if v.dtype.kind == "f" else v)  # float64 checkpoint
                        for k, v in _other_state(model, rng).items())
    model.load_state_dict(state)
    for name, param in model.named_parameters():
        assert param is held_params[name] and param.data is held[name]
        assert param.dtype == model_dtype
        np.testing.assert_array_equal(held[name], state[name].astype(model_dtype))
    for name, buf in model.named_buffers():
        assert buf is held_buffers[name]
        assert buf.dtype == (np.int64 if name.endswith("num_batches_tracked") else model_dtype)
        np.testing.assert_array_equal(buf, state[name].astype(buf.dtype))
    state["0.weight"][...] = 0  # the module holds copies, not the checkpoint's arrays
    assert np.all(held["0.weight"] != 0)


# ---- dtype casts ---------------------------------------------------------------------------------------------
def test_to_float32_and_double(rng):
    model = _model(rng)
    before = model.state_dict()
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    assert model.to(np.float32) is model
    for key, value in model.state_dict().items():
        expected = before[key] if value.dtype == np.int64 else before[key].astype(np.float32)
        assert value.dtype == expected.dtype, key
        np.testing.assert_array_equal(value, expected)
    assert model.state_dict()["1.num_batches_tracked"].dtype == np.int64
    for name, param in model.named_parameters():
        assert param.grad.dtype == np.float32
        np.testing.assert_array_equal(param.grad, grads[name].astype(np.float32))
    model.eval()
    assert model(rng.normal(size=(N, D_IN)).astype(np.float32)).dtype == np.float32
    assert model.double() is model
    for key, value in model.state_dict().items():
        expected = before[key] if value.dtype == np.int64 else before[key].astype(np.float32).astype(np.float64)
        assert value.dtype == expected.dtype, key
        np.testing.assert_array_equal(value, expected)
    assert model.float() is model and model[0].weight.dtype == np.float32
