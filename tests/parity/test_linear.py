"""Parity of ``Linear``, ``Identity`` and ``Flatten`` with torch: forward, dx, parameter gradients,
gradient accumulation, torch's default initialisation, dtypes and bad inputs."""
from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch

import handnn.functional as F
from handnn import nn
from reference import assert_close, assert_step_parity, to_tensor, to_torch

IN, OUT = 5, 3  # in_features != out_features, so a transposed dW has the wrong shape
INPUT_SHAPES = {"(N, in)": (7, IN), "(A, B, in)": (4, 6, IN), "(in,)": (IN,)}


def step_parity(module: nn.Module, x: np.ndarray, dout: np.ndarray) -> None:
    """One forward/backward on ``module`` and its torch twin: everything equal, torch's grads not ~0, and
    neither the input nor the upstream gradient modified by handnn."""
    x_before, dout_before = x.copy(), dout.copy()
    assert_step_parity(module, to_torch(module), x, dout)
    np.testing.assert_array_equal(x, x_before, err_msg="the layer modified its input")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")


def out_shape_of(module: nn.Module, shape: tuple, dtype) -> tuple:
    """The output shape for an input of ``shape``, from a throwaway copy of the module."""
    return copy.deepcopy(module)(np.zeros(shape, dtype)).shape


# ---- Linear: forward, dx, dweight, dbias -------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("shape", list(INPUT_SHAPES.values()), ids=list(INPUT_SHAPES))
def test_linear_matches_torch(shape, bias, dtype, rng):
    layer = nn.Linear(IN, OUT, bias=bias, dtype=dtype, rng=rng)
    x = rng.normal(size=shape).astype(dtype)
    dout = rng.normal(size=shape[:-1] + (OUT,)).astype(dtype)
    step_parity(layer, x, dout)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("shape", [(7, IN), (4, 6, IN)], ids=["(N, in)", "(A, B, in)"])
def test_linear_gradients_accumulate_like_torch(shape, bias, dtype, rng):
    """Two backward calls without zero_grad: ``.grad`` holds the sum, as torch's does."""
    layer = nn.Linear(IN, OUT, bias=bias, dtype=dtype, rng=rng)
    twin = to_torch(layer)
    steps = [(rng.normal(size=shape).astype(dtype), rng.normal(size=shape[:-1] + (OUT,)).astype(dtype))
             for _ in range(2)]
    for x, dout in steps:
        layer(x)
        layer.backward(dout)
        twin(to_tensor(x)).backward(to_tensor(dout))
    theirs = dict(twin.named_parameters())
    names = ["weight", "bias"] if bias else ["weight"]
    assert [name for name, _ in layer.named_parameters()] == names
    for name, param in layer.named_parameters():
        assert_close(param.grad, theirs[name].grad.numpy(), name=f"accumulated grad {name}")
    # the accumulated value is not just the last step's gradient (the two steps differ)
    last = copy.deepcopy(layer)
    last.zero_grad()
    last(steps[1][0])
    last.backward(steps[1][1])
    assert not np.allclose(layer.weight.grad, last.weight.grad)


# ---- Linear: initialisation ------------------------------------------------------------------------
@pytest.mark.parametrize("in_features", [1, 5, 64])
def test_linear_init_within_bound(in_features, dtype, rng):
    layer = nn.Linear(in_features, 9, dtype=dtype, rng=rng)
    # U(-b, b) drawn in float64 then rounded: rounding is monotonic, so values stay within b rounded to dtype
    bound = dtype.type(1 / math.sqrt(in_features))
    assert layer.weight.shape == (9, in_features) and layer.bias.shape == (9,)
    assert np.all(np.abs(layer.weight.data) <= bound)
    assert np.all(np.abs(layer.bias.data) <= bound)


def _uniform_cdf(values: np.ndarray, b: float) -> np.ndarray:
    return np.clip((values + b) / (2 * b), 0.0, 1.0)


@pytest.mark.parametrize("param, in_features, out_features", [
    ("weight", 400, 300),   # 120000 weights, b = 0.05
    ("bias", 9, 100000),    # 100000 biases, b = 1/3
])
def test_linear_init_is_uniform(param, in_features, out_features, dtype, rng):
    """Sample mean, second moment and empirical CDF of a large layer agree with U(-b, b), b = 1/sqrt(in).

    Bounds come from the sample size n: mean ~ N(0, b^2 / (3n)); mean(w^2) has expectation b^2 / 3 and
    standard deviation b^2 sqrt(4 / (45 n)) (Var w^2 = E w^4 - (E w^2)^2 = b^4/5 - b^4/9); 6 standard
    deviations. The Kolmogorov distance obeys the DKW inequality P(D > eps) <= 2 exp(-2 n eps^2); eps is
    chosen for a probability of 1e-9. With the fixed seed each check is deterministic.
    """
    layer = nn.Linear(in_features, out_features, dtype=dtype, rng=rng)
    w = getattr(layer, param).data.astype(np.float64).ravel()
    n, b = w.size, 1 / math.sqrt(in_features)
    assert abs(w.mean()) <= 6 * b / math.sqrt(3 * n)
    assert abs(np.mean(w * w) - b * b / 3) <= 6 * b * b * math.sqrt(4 / (45 * n))
    s = np.sort(w)
    cdf = _uniform_cdf(s, b)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks <= math.sqrt(math.log(2 / 1e-9) / (2 * n))


def test_linear_init_same_seed_same_weights(dtype, seed):
    a = nn.Linear(IN, OUT, dtype=dtype, rng=np.random.default_rng(seed))
    b = nn.Linear(IN, OUT, dtype=dtype, rng=np.random.default_rng(seed))
    c = nn.Linear(IN, OUT, dtype=dtype, rng=np.random.default_rng(seed + 1))
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(a.state_dict()[name], b.state_dict()[name])
        assert not np.array_equal(a.state_dict()[name], c.state_dict()[name])


def test_linear_float32_keeps_float32(rng):
    layer = nn.Linear(IN, OUT, dtype=np.float32, rng=rng)
    x = rng.normal(size=(7, IN)).astype(np.float32)
    out = layer(x)
    dx = layer.backward(rng.normal(size=(7, OUT)).astype(np.float32))
    dtypes = {"weight": layer.weight.dtype, "bias": layer.bias.dtype, "out": out.dtype, "dx": dx.dtype,
              "dweight": layer.weight.grad.dtype, "dbias": layer.bias.grad.dtype}
    assert dtypes == dict.fromkeys(dtypes, np.dtype(np.float32))


# ---- Linear: bad inputs -------------------------------------------------------------------------------
LINEAR_BAD = {
    "wrong features (N, in)": (lambda r: r.normal(size=(7, 4)), re.escape("mat1 and mat2 shapes cannot be multiplied (7x4 and 5x3)")),
    "wrong features (A, B, in)": (lambda r: r.normal(size=(2, 6, 4)), re.escape("(12x4 and 5x3)")),
    "wrong features (in,)": (lambda r: r.normal(size=4), re.escape("(1x4 and 5x3)")),
    "0-d": (lambda r: np.array(r.normal()), "need to be at least 1D, but they are 0D and 2D"),
    "int64": (lambda r: r.integers(-3, 3, size=(7, IN)), "expected a float32 or float64 input, but got int64"),
    "float32 into float64": (lambda r: r.normal(size=(7, IN)).astype(np.float32), "mixed dtype"),
}


@pytest.mark.parametrize("make, match", list(LINEAR_BAD.values()), ids=list(LINEAR_BAD))
def test_linear_bad_input_raises_like_torch(make, match, rng):
    layer = nn.Linear(IN, OUT, rng=rng)  # float64
    twin = to_torch(layer)
    good_x, dout = rng.normal(size=(7, IN)), rng.normal(size=(7, OUT))
    layer(good_x)
    expected = copy.deepcopy(layer)
    bad = make(rng)
    bad_before = bad.copy()
    with pytest.raises(RuntimeError):  # torch's class, checked live
        twin(to_tensor(bad))
    with pytest.raises(RuntimeError, match=match):
        layer(bad)
    np.testing.assert_array_equal(bad, bad_before)
    _assert_same_state(layer, expected, dout)


def test_linear_float64_into_float32_raises_like_torch(rng):
    layer = nn.Linear(IN, OUT, dtype=np.float32, rng=rng)
    x = rng.normal(size=(7, IN))
    with pytest.raises(RuntimeError):
        to_torch(layer)(to_tensor(x))
    with pytest.raises(RuntimeError, match="mixed dtype"):
        layer(x)


@pytest.mark.parametrize("odd", ["weight", "bias"])
def test_linear_parameter_of_another_dtype_raises_like_torch(odd, rng):
    """A float64 weight or bias beside a float32 input: torch refuses (RuntimeError); handnn must not compute a
    silently promoted float64 result."""
    x = rng.normal(size=(7, IN)).astype(np.float32)
    weight = rng.normal(size=(OUT, IN)).astype(np.float64 if odd == "weight" else np.float32)
    bias = rng.normal(size=OUT).astype(np.float64 if odd == "bias" else np.float32)
    with pytest.raises(RuntimeError):
        torch.nn.functional.linear(to_tensor(x), to_tensor(weight), to_tensor(bias))
    with pytest.raises(RuntimeError, match="mixed dtype"):
        F.linear_forward(x, weight, bias)


def test_linear_object_array_raises_type_error(rng):
    layer = nn.Linear(IN, OUT, rng=rng)
    x = rng.normal(size=(7, IN)).astype(object)
    with pytest.raises(TypeError, match="dtype object"):
        layer(x)
    assert layer.weight.grad is None


def _assert_same_state(module: nn.Module, expected: nn.Module, dout: np.ndarray) -> None:
    """``module`` is unchanged w.r.t. ``expected`` (a copy taken before the failed call): same parameters,
    buffers and mode, and its backward still uses the last successful forward."""
    ours, theirs = module.state_dict(), expected.state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert module.training == expected.training
    np.testing.assert_array_equal(module.backward(dout), expected.backward(dout))
    for (name, p), (_, q) in zip(module.named_parameters(), expected.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


# ---- Identity, Flatten ---------------------------------------------------------------------------------
def test_identity_matches_torch(dtype, rng):
    x = rng.normal(size=(7, 5, 4)).astype(dtype)
    step_parity(nn.Identity(), x, rng.normal(size=x.shape).astype(dtype))


def test_identity_accepts_any_arguments_like_torch():
    torch.nn.Identity(54, unused_argument1=0.1)
    assert isinstance(nn.Identity(54, unused_argument1=0.1), nn.Identity)


FLATTEN_DIMS = [(1, -1), (0, -1), (0, 1), (1, 2), (2, 3), (0, 0), (3, 3), (-3, -2), (-2, -1), (1, -2), (-4, 2)]


@pytest.mark.parametrize("start_dim, end_dim", FLATTEN_DIMS, ids=[f"{s},{e}" for s, e in FLATTEN_DIMS])
def test_flatten_matches_torch(start_dim, end_dim, dtype, rng):
    layer = nn.Flatten(start_dim, end_dim)
    x = rng.normal(size=(7, 5, 4, 3)).astype(dtype)
    step_parity(layer, x, rng.normal(size=out_shape_of(layer, x.shape, dtype)).astype(dtype))


@pytest.mark.parametrize("start_dim, end_dim", [(0, -1), (-1, 0), (0, 0)])
def test_flatten_scalar_matches_torch(start_dim, end_dim, dtype, rng):
    layer = nn.Flatten(start_dim, end_dim)
    x = np.array(rng.normal(), dtype=dtype)
    step_parity(layer, x, rng.normal(size=(1,)).astype(dtype))


FLATTEN_BAD = {
    "start after end": ((2, 1), (7, 5, 4), RuntimeError, "start_dim cannot come after end_dim"),
    "end out of range": ((1, 5), (7, 5, 4), IndexError, re.escape("range of [-3, 2], but got 5")),
    "start out of range": ((-4, -1), (7, 5, 4), IndexError, re.escape("range of [-3, 2], but got -4")),
    "default dims on 1-d": ((1, -1), (7,), IndexError, re.escape("range of [-1, 0], but got 1")),
    "default dims on 0-d": ((1, -1), (), IndexError, re.escape("range of [-1, 0], but got 1")),
}


@pytest.mark.parametrize("dims, shape, error, match", list(FLATTEN_BAD.values()), ids=list(FLATTEN_BAD))
def test_flatten_bad_dims_raise_like_torch(dims, shape, error, match, rng):
    layer = nn.Flatten(*dims)
    x = rng.normal(size=shape)
    with pytest.raises(error, match=match):
        torch.nn.Flatten(*dims)(to_tensor(x))
    with pytest.raises(error, match=match):
        layer(x)
    with pytest.raises(RuntimeError, match="before forward"):  # no half-written cache left behind
        layer.backward(rng.normal(size=shape))


@pytest.mark.parametrize("make", [lambda: nn.Linear(IN, OUT), lambda: nn.Identity(), lambda: nn.Flatten()],
                         ids=["Linear", "Identity", "Flatten"])
def test_backward_before_forward_raises(make, rng):
    module = make()
    with pytest.raises(RuntimeError, match="backward\\(\\) was called before forward"):
        module.backward(rng.normal(size=(7, OUT)))
