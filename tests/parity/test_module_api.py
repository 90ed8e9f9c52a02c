"""The Module API against torch: state_dict keys, order and values, loading a torch state_dict, the
handnn -> torch -> handnn round trip, load_state_dict's error classes, and a nested model trained for several
steps next to its torch twin.

Every model has its parameters AND buffers moved off their initial values (random weights, running statistics
and a step count), so a key paired with the wrong value, or a load that copies nothing, cannot pass.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

from handnn import nn
from reference import MaskedDropout, assert_close, assert_step_parity, from_torch, to_numpy, to_tensor, to_torch

Builder = Callable[[np.random.Generator, np.dtype], nn.Module]

# (builder, input shape); every shape has its dims all different
MODELS: Dict[str, Tuple[Builder, Tuple[int, ...]]] = {
    "linear": (lambda rng, dt: nn.Linear(6, 4, dtype=dt, rng=rng), (9, 6)),
    "linear-nobias": (lambda rng, dt: nn.Linear(6, 4, bias=False, dtype=dt, rng=rng), (9, 6)),
    "batchnorm1d": (lambda rng, dt: nn.BatchNorm1d(5, dtype=dt), (9, 5)),
    "batchnorm1d-3d-cma": (lambda rng, dt: nn.BatchNorm1d(5, eps=1e-3, momentum=None, dtype=dt), (7, 5, 4)),
    "batchnorm1d-noaffine": (lambda rng, dt: nn.BatchNorm1d(5, affine=False, dtype=dt), (9, 5)),
    "batchnorm1d-nostats": (lambda rng, dt: nn.BatchNorm1d(5, track_running_stats=False, dtype=dt), (9, 5)),
    "batchnorm1d-bare": (lambda rng, dt: nn.BatchNorm1d(5, affine=False, track_running_stats=False, dtype=dt),
                         (9, 5)),
    "batchnorm2d": (lambda rng, dt: nn.BatchNorm2d(5, momentum=0.3, dtype=dt), (7, 5, 4, 3)),
    "layernorm": (lambda rng, dt: nn.LayerNorm(6, dtype=dt), (9, 6)),
    "layernorm-nobias": (lambda rng, dt: nn.LayerNorm(6, bias=False, dtype=dt), (9, 6)),
    "layernorm-2d": (lambda rng, dt: nn.LayerNorm((4, 3), eps=1e-3, dtype=dt), (7, 5, 4, 3)),
    "layernorm-noaffine": (lambda rng, dt: nn.LayerNorm(6, elementwise_affine=False, dtype=dt), (9, 6)),
    "groupnorm": (lambda rng, dt: nn.GroupNorm(2, 6, dtype=dt), (7, 6, 4)),
    "groupnorm-noaffine": (lambda rng, dt: nn.GroupNorm(3, 6, affine=False, dtype=dt), (7, 6, 4)),
    "dropout": (lambda rng, dt: nn.Dropout(0.3, rng=rng), (9, 6)),
    "identity": (lambda rng, dt: nn.Identity(), (9, 6)),
    "flatten": (lambda rng, dt: nn.Flatten(), (7, 5, 4, 3)),
    "relu": (lambda rng, dt: nn.ReLU(), (9, 6)),
    "leakyrelu": (lambda rng, dt: nn.LeakyReLU(0.2), (9, 6)),
    "sigmoid": (lambda rng, dt: nn.Sigmoid(), (9, 6)),
    "tanh": (lambda rng, dt: nn.Tanh(), (9, 6)),
    "gelu": (lambda rng, dt: nn.GELU(), (9, 6)),
    "gelu-tanh": (lambda rng, dt: nn.GELU("tanh"), (9, 6)),
    "softmax": (lambda rng, dt: nn.Softmax(dim=1), (9, 6)),
    "logsoftmax": (lambda rng, dt: nn.LogSoftmax(dim=1), (9, 6)),
    # no bias before a BatchNorm: its gradient is identically 0 there (the batch mean removes it)
    "nested": (lambda rng, dt: nn.Sequential(
        nn.Linear(6, 5, bias=False, dtype=dt, rng=rng), nn.BatchNorm1d(5, dtype=dt), nn.ReLU(),
        nn.Dropout(0.3, rng=rng),
        nn.Sequential(nn.LayerNorm(5, bias=False, dtype=dt),
                      nn.Sequential(nn.Linear(5, 4, bias=False, dtype=dt, rng=rng), nn.Tanh())),
        nn.Linear(4, 3, dtype=dt, rng=rng)), (9, 6)),
}
STATEFUL = [name for name, (build, _) in MODELS.items()
            if build(np.random.default_rng(0), np.float64).state_dict()]


# ---- helpers -------------------------------------------------------------------------------------------------
def _randomize(module: nn.Module, rng: np.random.Generator) -> None:
    """Random parameters and running statistics, a nonzero step count."""
    for _, param in module.named_parameters():
        param.data[...] = rng.uniform(0.5, 1.5, param.shape) * rng.choice([-1.0, 1.0], param.shape)
    for _, buf in module.named_buffers():
        if buf.dtype.kind == "f":
            buf[...] = rng.uniform(0.3, 2.0, buf.shape)
        else:
            buf[...] = rng.integers(1, 20)


def _model(name: str, rng: np.random.Generator, dtype) -> Tuple[nn.Module, Tuple[int, ...]]:
    build, shape = MODELS[name]
    module = build(rng, np.dtype(dtype))
    _randomize(module, rng)
    return module, shape


def _data(rng: np.random.Generator, shape, dtype) -> Tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)


def _dout(module: nn.Module, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded random upstream gradient of the output's shape (found by an eval forward: no state changes)."""
    training = [(m, m.training) for m in module.modules()]
    module.eval()
    shape = module(x).shape
    for m, flag in training:
        m.training = flag
    return rng.normal(size=shape).astype(x.dtype)


def _follow_masks(twin: torch.nn.Module, module: nn.Module) -> None:
    """Make the twin's dropouts apply ``module``'s masks (a twin built from another handnn model)."""
    ours = dict(module.named_modules())
    for name, sub in twin.named_modules():
        if isinstance(sub, MaskedDropout):
            sub.source = ours[name]


def _snapshot(module: nn.Module) -> List[Tuple[str, np.dtype, np.ndarray]]:
    return [(k, v.dtype, v.copy()) for k, v in module.state_dict().items()]


def _assert_state_equal(module: nn.Module, expected: List[Tuple[str, np.dtype, np.ndarray]]) -> None:
    """Same keys in the same order, same dtypes, bit-identical values."""
    state = module.state_dict()
    assert [(k, v.dtype) for k, v in state.items()] == [(k, d) for k, d, _ in expected]
    for key, _, value in expected:
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def _torch_state(twin: torch.nn.Module) -> List[Tuple[str, np.dtype, np.ndarray]]:
    return [(k, v.numpy().dtype, to_numpy(v)) for k, v in twin.state_dict().items()]


# ---- state_dict ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_keys_order_and_values(name, dtype, rng):
    module, _ = _model(name, rng, dtype)
    twin = to_torch(module)
    ours, theirs = module.state_dict(), twin.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert_close(ours[key], to_numpy(value), key)  # also fails on a dtype difference
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert [n for n, _ in module.named_buffers()] == [n for n, _ in twin.named_buffers()]
    assert [n for n, _ in module.named_modules()] == [n for n, _ in twin.named_modules()]


def test_state_dict_of_shared_module_matches_torch(rng):
    """torch saves a module registered under two names twice (its traversals list it once)."""
    shared = nn.Linear(6, 4, rng=rng)
    module = nn.Sequential(shared, nn.ReLU(), nn.Linear(4, 6, rng=rng), shared)
    _randomize(module, rng)
    twin = to_torch(module)
    assert twin[0] is twin[3]
    assert list(module.state_dict()) == list(twin.state_dict()) == [
        "0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert [n for n, _ in module.named_modules()] == [n for n, _ in twin.named_modules()]
    x = rng.normal(size=(9, 6))  # forward only: a module holds ONE cache, so a shared one cannot backward
    assert_close(module(x), to_numpy(twin(to_tensor(x))), "out")


# ---- loading a torch state_dict ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_load_torch_state_dict_then_same_outputs(name, dtype, rng):
    source, shape = _model(name, rng, dtype)
    twin = to_torch(source)
    module, _ = _model(name, rng, dtype)  # different random values: the load must replace all of them
    result = module.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    _assert_state_equal(module, _torch_state(twin))
    _follow_masks(twin, module)
    x, _ = _data(rng, shape, dtype)
    dout = _dout(module, x, rng)
    x_copy, dout_copy = x.copy(), dout.copy()
    assert_step_parity(module, twin, x, dout, prefix="train: ")
    module.eval()
    twin.eval()
    assert_step_parity(module, twin, x, dout, prefix="eval: ")
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)


# ---- handnn -> torch -> handnn -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_is_identical(name, dtype, rng):
    module, shape = _model(name, rng, dtype)
    if name == "nested":
        module[1].eval()  # a mixed-mode model: each flag must survive both conversions
        module[4][1].eval()
    back = from_torch(to_torch(module), rng=np.random.default_rng(rng.integers(2 ** 32)))
    assert repr(back) == repr(module)  # types, nesting and every constructor option (eps, momentum, p, ...)
    assert [(n, type(m), m.training) for n, m in back.named_modules()] == \
        [(n, type(m), m.training) for n, m in module.named_modules()]
    _assert_state_equal(back, _snapshot(module))
    x, _ = _data(rng, shape, dtype)
    dout = _dout(module, x, rng)
    for mode in ("train", "eval"):
        module.train(mode == "train")
        back.train(mode == "train")
        out = module(x)
        for ours, theirs in zip(module.modules(), back.modules()):
            if isinstance(ours, nn.Dropout) and ours.mask is not None:
                theirs.use_mask(ours.mask)
        np.testing.assert_array_equal(back(x), out, err_msg=mode)
        np.testing.assert_array_equal(back.backward(dout), module.backward(dout), err_msg=mode)
        for (key, p), (_, q) in zip(module.named_parameters(), back.named_parameters()):
            np.testing.assert_array_equal(q.grad, p.grad, err_msg=f"{mode} {key}")
        _assert_state_equal(back, _snapshot(module))


# ---- load_state_dict errors: the class torch raises ----------------------------------------------------------
def _torch_error(twin: torch.nn.Module, state, strict: bool) -> BaseException:
    with pytest.raises(Exception) as info:  # any class: handnn must raise the same one
        twin.load_state_dict(state, strict=strict)
    return info.value


CASES = ["missing", "unexpected", "size", "size-nonstrict", "non-numeric"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", STATEFUL)
def test_load_errors_match_torch(name, case, rng):
    module, _ = _model(name, rng, np.float64)
    twin = to_torch(module)
    ours = OrderedDict((k, v + 1 if v.dtype.kind == "f" else v + 2) for k, v in module.state_dict().items())
    theirs = OrderedDict((k, to_tensor(v)) for k, v in ours.items())
    first = next(iter(ours))  # a parameter or running_mean: never num_batches_tracked (torch fills that in)
    if case == "missing":
        del ours[first], theirs[first]
        message = f'Missing key(s) in state_dict: "{first}". '
    elif case == "unexpected":
        bogus = rng.normal(size=3)
        ours["bogus.weight"], theirs["bogus.weight"] = bogus, to_tensor(bogus)
        message = 'Unexpected key(s) in state_dict: "bogus.weight". '
    elif case.startswith("size"):
        wrong = rng.normal(size=ours[first].shape + (2,))
        ours[first], theirs[first] = wrong, to_tensor(wrong)
        message = (f"size mismatch for {first}: copying a param with shape {wrong.shape} from checkpoint, "
                   f"the shape in current model is {module.state_dict()[first].shape}.")
    else:
        ours[first] = theirs[first] = "not an array"
        message = f'While copying the parameter named "{first}", expected a numeric array'
    strict = case != "size-nonstrict"
    expected = _torch_error(twin, theirs, strict)
    before = _snapshot(module)
    with pytest.raises(type(expected), match=re.escape(
            f"Error(s) in loading state_dict for {type(module).__name__}:\n\t{message}")) as info:
        module.load_state_dict(ours, strict=strict)
    assert type(info.value) is type(expected)
    if case in ("missing", "unexpected"):
        assert str(info.value) == str(expected)  # the very same message
    _assert_state_equal(module, before)


@pytest.mark.parametrize("name", sorted(set(MODELS) - set(STATEFUL)))
def test_load_unexpected_key_into_stateless_module(name, rng):
    module, _ = _model(name, rng, np.float64)
    twin = to_torch(module)
    value = rng.normal(size=3)
    expected = _torch_error(twin, {"weight": to_tensor(value)}, True)
    with pytest.raises(type(expected)) as info:
        module.load_state_dict({"weight": value})
    assert type(info.value) is type(expected)
    # the same message, naming the handnn class (a Dropout's twin is a MaskedDropout)
    assert str(info.value) == str(expected).replace(type(twin).__name__, type(module).__name__, 1)
    assert module.load_state_dict({"weight": value}, strict=False).unexpected_keys == ["weight"]
    assert twin.load_state_dict({"weight": to_tensor(value)}, strict=False).unexpected_keys == ["weight"]


# ---- a model trained next to its twin ------------------------------------------------------------------------
TRAIN_STEPS = 4
LR = 0.1


def test_training_steps_then_eval(dtype, rng):
    """Nested Sequential(Linear, BatchNorm1d, ReLU, Dropout, Linear): several SGD steps, then eval.

    Each step compares output, dx, every gradient and every buffer; after each update, every parameter.
    The twin's Dropout applies the handnn layer's mask.
    """
    model = nn.Sequential(
        nn.Sequential(nn.Linear(6, 5, bias=False, dtype=dtype, rng=rng), nn.BatchNorm1d(5, dtype=dtype),
                      nn.ReLU()),
        nn.Dropout(0.4, rng=rng),
        nn.Sequential(nn.Linear(5, 3, dtype=dtype, rng=rng)))
    _randomize(model, rng)
    twin = to_torch(model)
    start = int(model[0][1].num_batches_tracked)
    for step in range(1, TRAIN_STEPS + 1):
        x, dout = rng.normal(size=(9, 6)).astype(dtype), rng.normal(size=(9, 3)).astype(dtype)
        x_copy, dout_copy = x.copy(), dout.copy()
        assert_step_parity(model, twin, x, dout, prefix=f"step {step}: ")
        assert 0 < model[1].mask.sum() < model[1].mask.size  # the mask dropped some, kept some
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_array_equal(dout, dout_copy)
        for p in model.parameters():
            p.data -= LR * p.grad
        with torch.no_grad():
            for p in twin.parameters():
                p -= LR * p.grad
        theirs = twin.state_dict()
        for key, value in model.state_dict().items():
            assert_close(value, to_numpy(theirs[key]), f"step {step}: {key}")
    assert int(model[0][1].num_batches_tracked) == start + TRAIN_STEPS
    model.eval()
    twin.eval()
    x, dout = rng.normal(size=(9, 6)).astype(dtype), rng.normal(size=(9, 3)).astype(dtype)
    assert_step_parity(model, twin, x, dout, prefix="eval: ")
    assert int(model[0][1].num_batches_tracked) == start + TRAIN_STEPS
