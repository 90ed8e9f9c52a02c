"""Parity of the activations (ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Softmax, LogSoftmax) with torch:
forward and dx on ordinary and extreme inputs, every softmax dim, the implicit-dim deprecation, dtypes
and bad inputs."""
from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch

from handnn import nn
from reference import assert_step_parity, compare_runs, failures, run_handnn, run_torch, to_tensor, to_torch

SHAPE = (7, 5, 4)  # all dims different, so a reduction over the wrong dim cannot pass
DIMS = [0, 1, 2, -1, -2, -3]

ELEMENTWISE = {
    "ReLU": lambda: nn.ReLU(),
    "LeakyReLU": lambda: nn.LeakyReLU(),
    "LeakyReLU(0.2)": lambda: nn.LeakyReLU(negative_slope=0.2),
    "Sigmoid": lambda: nn.Sigmoid(),
    "Tanh": lambda: nn.Tanh(),
    "GELU": lambda: nn.GELU(),
    "GELU(tanh)": lambda: nn.GELU(approximate="tanh"),
}
SOFTMAXES = {"Softmax": nn.Softmax, "LogSoftmax": nn.LogSoftmax}
ALL = {**ELEMENTWISE, **{f"{name}(dim=1)": (lambda cls=cls: cls(dim=1)) for name, cls in SOFTMAXES.items()}}

# values where torch defines the result; 0.0 exactly is the kink of ReLU / LeakyReLU
EXTREMES = np.array([1e4, -1e4, 30.0, -30.0, 0.0, np.nan, 1.0, -1.0])


def step_parity(module: nn.Module, x: np.ndarray, dout: np.ndarray) -> None:
    """One forward/backward on ``module`` and its torch twin: output and dx equal, torch's dx not ~0, no
    RuntimeWarning (overflow, invalid) from handnn, and neither the input nor the upstream gradient modified."""
    x_before, dout_before = x.copy(), dout.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert_step_parity(module, to_torch(module), x, dout)
    np.testing.assert_array_equal(x, x_before, err_msg="the layer modified its input")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")


def with_extremes(rng: np.random.Generator, dtype, shape=SHAPE) -> np.ndarray:
    """Normal data with each extreme value planted at random distinct positions (twice each)."""
    x = rng.normal(0.0, 3.0, size=shape)
    flat = x.reshape(-1)
    positions = rng.permutation(flat.size)[: 2 * EXTREMES.size]
    flat[positions] = np.tile(EXTREMES, 2)
    return x.astype(dtype)


# ---- element-wise ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", list(ELEMENTWISE.values()), ids=list(ELEMENTWISE))
def test_elementwise_matches_torch(make, dtype, rng):
    x = rng.normal(0.0, 3.0, size=SHAPE).astype(dtype)
    step_parity(make(), x, rng.normal(size=SHAPE).astype(dtype))


@pytest.mark.parametrize("make", list(ELEMENTWISE.values()), ids=list(ELEMENTWISE))
def test_elementwise_extreme_values_match_torch(make, dtype, rng):
    """±1e4, ±30, 0.0 and NaN: no overflow (e.g. sigmoid at -1e4), torch's value at the kink, NaN propagated."""
    x = with_extremes(rng, dtype)
    step_parity(make(), x, rng.normal(size=SHAPE).astype(dtype))


# ---- Softmax / LogSoftmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_matches_torch(cls, dim, dtype, rng):
    x = rng.normal(0.0, 3.0, size=SHAPE).astype(dtype)
    step_parity(cls(dim=dim), x, rng.normal(size=SHAPE).astype(dtype))


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_extreme_logits_match_torch(cls, dim, dtype, rng):
    """Logits of ±1e4 (stable only if the max is subtracted), ±30, 0 and NaN (poisons its slice, as in torch)."""
    x = with_extremes(rng, dtype)
    step_parity(cls(dim=dim), x, rng.normal(size=SHAPE).astype(dtype))


@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_all_large_equal_logits_is_uniform(cls, dtype, rng):
    """Every logit 1e4: softmax = 1/n exactly where a naive exp overflows to inf/inf = NaN."""
    x = np.full(SHAPE, 1e4, dtype=dtype)
    step_parity(cls(dim=1), x, rng.normal(size=SHAPE).astype(dtype))
    out = cls(dim=1)(x)
    expected = np.full(SHAPE, 1 / SHAPE[1]) if cls is nn.Softmax else np.full(SHAPE, -np.log(SHAPE[1]))
    np.testing.assert_allclose(out, expected.astype(dtype), rtol=1e-6)


@pytest.mark.parametrize("shape", [(7,), (7, 5), (7, 5, 4), (7, 5, 4, 3)], ids=["1-d", "2-d", "3-d", "4-d"])
@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_implicit_dim_warns_and_matches_torch(cls, shape, dtype, rng):
    """dim=None: both sides emit torch's deprecation warning and pick the same dim (0 for 0/1/3-d, else 1)."""
    module = cls()
    twin = to_torch(module)
    x = rng.normal(0.0, 3.0, size=shape).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    x_before, dout_before = x.copy(), dout.copy()
    pattern = f"Implicit dimension choice for {'log_softmax' if cls is nn.LogSoftmax else 'softmax'}"
    with pytest.warns(UserWarning, match=pattern):
        ours = run_handnn(module, x, dout)
    np.testing.assert_array_equal(x, x_before, err_msg="the layer modified its input")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")
    with pytest.warns(UserWarning, match=pattern):
        theirs = run_torch(twin, x, dout)
    report = failures(compare_runs(ours, theirs))
    assert not report, report
    # not a tautology: the implicit dim is a real choice (a different dim gives a different output)
    if len(shape) > 1:
        implicit = 0 if len(shape) in (1, 3) else 1
        other = run_handnn(cls(dim=1 - implicit), x, dout)
        assert not np.allclose(ours.out, other.out)


# ---- dtypes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", list(ALL.values()), ids=list(ALL))
def test_float32_stays_float32(make, rng):
    module = make()
    out = module(rng.normal(size=SHAPE).astype(np.float32))
    dx = module.backward(rng.normal(size=SHAPE).astype(np.float32))
    assert (out.dtype, dx.dtype) == (np.float32, np.float32)


# ---- bad inputs ----------------------------------------------------------------------------------------
def _torch_outcome(module: nn.Module, x: np.ndarray):
    """The exception class torch raises for ``x``, or None when torch computes a result."""
    try:
        to_torch(module)(to_tensor(x))
    except Exception as exc:  # noqa: BLE001 - the class is what is being compared
        return type(exc)
    return None


def _assert_same_state(module: nn.Module, expected: nn.Module, dout: np.ndarray) -> None:
    """After the failed call, ``module`` still back-propagates through its last successful forward."""
    assert module.training == expected.training
    np.testing.assert_array_equal(module.backward(dout), expected.backward(dout))


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8, np.bool_], ids=["int64", "int32", "uint8", "bool"])
@pytest.mark.parametrize("make", list(ALL.values()), ids=list(ALL))
def test_integer_input_raises_like_torch(make, int_dtype, rng):
    """Where torch raises for a non-float tensor, handnn raises the same class; where torch computes a
    result (relu of ints, sigmoid/tanh promoted to float32), handnn, which computes only float32/float64,
    raises TypeError. Either way the module keeps its state."""
    module = make()
    good_x, dout = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    module(good_x)
    expected = copy.deepcopy(module)
    x = rng.integers(0, 2, size=SHAPE).astype(int_dtype)
    x_before = x.copy()
    torch_error = _torch_outcome(module, x)
    if torch_error is None:
        error, match = TypeError, f"handnn computes in float32 or float64, but the input is {np.dtype(int_dtype)}"
    else:
        error, match = torch_error, "not supported|expected a float32 or float64 input"
    with pytest.raises(error, match=match):
        module(x)
    np.testing.assert_array_equal(x, x_before)
    _assert_same_state(module, expected, dout)


@pytest.mark.parametrize("make", list(ALL.values()), ids=list(ALL))
def test_object_array_raises_type_error(make, rng):
    module = make()
    with pytest.raises(TypeError, match="dtype object"):
        module(rng.normal(size=SHAPE).astype(object))
    with pytest.raises(RuntimeError, match="before forward"):
        module.backward(rng.normal(size=SHAPE))


@pytest.mark.parametrize("make", list(ALL.values()), ids=list(ALL))
def test_backward_before_forward_raises(make, rng):
    with pytest.raises(RuntimeError, match=re.escape(".backward() was called before forward()")):
        make().backward(rng.normal(size=SHAPE))


GELU_BAD = {  # an unknown string reaches torch's kernel (RuntimeError); a non-str fails argument parsing
    "foo": ("foo", RuntimeError, "approximate argument must be either none or tanh"),
    "Tanh": ("Tanh", RuntimeError, "approximate argument must be either none or tanh"),
    "empty": ("", RuntimeError, "approximate argument must be either none or tanh"),
    "None": (None, TypeError, "argument 'approximate' must be str, not NoneType"),
    "int": (1, TypeError, "argument 'approximate' must be str, not int"),
}


@pytest.mark.parametrize("approximate, error, match", list(GELU_BAD.values()), ids=list(GELU_BAD))
def test_gelu_bad_approximate_raises_like_torch(approximate, error, match, dtype, rng):
    module = nn.GELU(approximate=approximate)
    x = rng.normal(size=SHAPE).astype(dtype)
    x_before = x.copy()
    with pytest.raises(error, match=match):
        torch.nn.GELU(approximate=approximate)(to_tensor(x))
    with pytest.raises(error, match=match):
        module(x)
    np.testing.assert_array_equal(x, x_before)
    with pytest.raises(RuntimeError, match="before forward"):
        module.backward(rng.normal(size=SHAPE).astype(dtype))


@pytest.mark.parametrize("slope", ["0.2", None], ids=["str", "None"])
def test_leaky_relu_non_number_slope_raises_type_error_like_torch(slope, rng):
    x = rng.normal(size=SHAPE)
    match = "argument 'negative_slope' .*must be Number"
    with pytest.raises(TypeError, match=match):
        torch.nn.LeakyReLU(slope)(to_tensor(x))
    with pytest.raises(TypeError, match=match):
        nn.LeakyReLU(slope)(x)


@pytest.mark.parametrize("dim", [np.int64(-2), np.int32(1)], ids=["np.int64", "np.int32"])
@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_numpy_integer_dim_matches_torch(cls, dim, dtype, rng):
    x = rng.normal(0.0, 3.0, size=SHAPE).astype(dtype)
    step_parity(cls(dim=dim), x, rng.normal(size=SHAPE).astype(dtype))


@pytest.mark.parametrize("dim", [1.0, np.float64(1.0), True], ids=["float", "np.float64", "bool"])
@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_non_integer_dim_raises_type_error_like_torch(cls, dim, rng):
    module = cls(dim=dim)
    x = rng.normal(size=SHAPE)
    match = f"argument 'dim' .*must be int, not .*{type(dim).__name__}"
    with pytest.raises(TypeError, match=match):
        to_torch(module)(to_tensor(x))
    with pytest.raises(TypeError, match=match):
        module(x)


@pytest.mark.parametrize("dim", [3, -4, 10])
@pytest.mark.parametrize("cls", list(SOFTMAXES.values()), ids=list(SOFTMAXES))
def test_softmax_bad_dim_raises_index_error_like_torch(cls, dim, dtype, rng):
    module = cls(dim=dim)
    good = cls(dim=1)
    x = rng.normal(size=SHAPE).astype(dtype)
    dout = rng.normal(size=SHAPE).astype(dtype)
    match = re.escape(f"Dimension out of range (expected to be in range of [-3, 2], but got {dim})")
    with pytest.raises(IndexError, match=match):
        to_torch(module)(to_tensor(x))
    with pytest.raises(IndexError, match=match):
        module(x)
    with pytest.raises(RuntimeError, match="before forward"):
        module.backward(dout)
    # a failed call after a good one leaves the good one's cache in place
    good(x)
    expected = copy.deepcopy(good)
    good.dim = dim
    with pytest.raises(IndexError, match=match):
        good(x)
    _assert_same_state(good, expected, dout)
