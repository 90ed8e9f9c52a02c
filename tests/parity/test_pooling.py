"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d against torch: functional pairs against ``torch.nn.functional`` with
autograd, modules against their torch twins, over kernels, strides, padding, dilation, ceil_mode, the divisor
options and adaptive sizes; ties, NaN and inf; torch's indices; bad inputs with torch's classes and messages.

handnn scans each window in torch's order, so max pooling (values, indices, and the gradient accumulated where
windows overlap), average pooling, and adaptive pooling but for its ``(1, 1)`` case (torch's ``mean``) are compared
**byte for byte** with torch: signed zeros, NaN positions and the last bit included.
"""
from __future__ import annotations

import re
import warnings
from typing import Callable, Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import handnn.functional as F
from handnn import nn
from reference import assert_close, assert_step_parity, from_torch, to_numpy, to_tensor, to_torch
from reference.harness import assert_rejected_like_torch, torch_error


# ---- helpers ---------------------------------------------------------------------------------------------------------
def assert_same(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Same dtype, shape and bytes (signed zeros included; NaN matches NaN)."""
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != torch's {theirs.dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != torch's {theirs.shape}"
    if not ours.size:
        return
    differ = np.ascontiguousarray(ours).view(np.uint8) != np.ascontiguousarray(theirs).view(np.uint8)
    if ours.dtype.kind == "f":  # a NaN's sign and payload depend on the operands' order in a commutative add
        differ = differ.reshape(ours.size, -1) & ~(np.isnan(ours) & np.isnan(theirs)).reshape(-1, 1)
    assert not differ.any(), (f"{what}: differs from torch in {differ.reshape(ours.size, -1).any(1).sum()} of "
                              f"{ours.size} elements\nhandnn {ours.ravel()[:8]}\ntorch  {theirs.ravel()[:8]}")


def torch_pool(name: str, x: np.ndarray, dout: np.ndarray, **kwargs) -> Tuple[Tuple[np.ndarray, ...], np.ndarray]:
    """torch.nn.functional.<name> with autograd: (its results, dL/dx for ``dout``)."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_()
    result = getattr(TF, name)(xt, **kwargs)
    results = result if isinstance(result, tuple) else (result,)
    results[0].backward(torch.from_numpy(np.ascontiguousarray(dout)))
    return tuple(to_numpy(r) for r in results), to_numpy(xt.grad)


def torch_out_shape(name: str, x: np.ndarray, **kwargs) -> Tuple[int, ...]:
    with torch.no_grad():
        return tuple(getattr(TF, name)(torch.from_numpy(np.ascontiguousarray(x)), **kwargs).shape)


def step_parity(module: nn.Module, x: np.ndarray, dout: np.ndarray, **kwargs) -> None:
    """A module step against its torch twin (output and dx), without RuntimeWarning, inputs left unchanged."""
    x_before, dout_before = x.copy(), dout.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert_step_parity(module, to_torch(module), x, dout, **kwargs)
    np.testing.assert_array_equal(x, x_before, err_msg="the layer modified its input")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")


def values(kind: str, shape: Tuple[int, ...], dtype, rng: np.random.Generator) -> np.ndarray:
    """'normal' data, or 'ties': small integers (0, 1, 2), so most windows hold several equal maxima."""
    if kind == "ties":
        return rng.integers(0, 3, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def max_pool_case(x: np.ndarray, dout_rng: np.random.Generator, **kwargs):
    """handnn's and torch's (out, indices, dx) for one max pooling, with a random upstream gradient."""
    dout = dout_rng.standard_normal(torch_out_shape("max_pool2d", x, **kwargs)).astype(x.dtype)
    (out, indices), cache = F.max_pool2d_forward(x, **kwargs, return_indices=True)
    dx = F.max_pool2d_backward(dout, cache)
    (t_out, t_indices), t_dx = torch_pool("max_pool2d", x, dout, **kwargs, return_indices=True)
    return (out, indices, dx), (t_out, t_indices, t_dx), dout


def has_empty_window(shape: Tuple[int, ...], kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
                     ) -> bool:
    """Whether a max-pooling window holds no input element (only padding), from torch's output size."""
    out = torch_out_shape("max_pool2d", np.zeros(shape), kernel_size=kernel_size, stride=stride, padding=padding,
                          dilation=dilation, ceil_mode=ceil_mode)[-2:]
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    kernels, paddings, dilations = pair(kernel_size), pair(padding), pair(dilation)
    strides = kernels if stride is None else pair(stride)
    for n, o, k, s, p, d in zip(shape[-2:], out, kernels, strides, paddings, dilations):
        positions = (np.arange(o) * s - p)[:, None] + np.arange(k) * d
        if not ((positions >= 0) & (positions < n)).any(axis=1).all():
            return True
    return False


def assert_max_pool_like_torch(ours, theirs) -> None:
    for what, a, b in zip(("out", "indices", "dx"), ours, theirs):
        assert_same(a, b, what)


# ---- MaxPool2d -------------------------------------------------------------------------------------------------------
#: id -> (keyword arguments, input shape); sizes odd and even, all dims different
MAX_CONFIGS: Dict[str, Tuple[dict, Tuple[int, ...]]] = {
    "k2": (dict(kernel_size=2), (3, 4, 8, 6)),
    "k2-odd-size": (dict(kernel_size=2), (3, 4, 7, 5)),
    "k3-s1-overlap": (dict(kernel_size=3, stride=1), (3, 4, 7, 6)),
    "k(3,2)-s(2,1)": (dict(kernel_size=(3, 2), stride=(2, 1)), (2, 3, 9, 7)),
    "k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1), (3, 4, 7, 6)),
    "k(2,3)-p(1,1)-ceil": (dict(kernel_size=(2, 3), padding=(1, 1), ceil_mode=True), (2, 3, 7, 8)),
    "k3-d2": (dict(kernel_size=3, stride=1, dilation=2), (2, 3, 9, 8)),
    "k3-s2-p1-d(2,1)-ceil": (dict(kernel_size=3, stride=2, padding=1, dilation=(2, 1), ceil_mode=True),
                             (2, 3, 8, 9)),
    "k4-s3-p2-ceil": (dict(kernel_size=4, stride=3, padding=2, ceil_mode=True), (2, 3, 10, 7)),
    "k2-s1-unbatched": (dict(kernel_size=2, stride=1), (4, 7, 6)),
    "k3-s2-ceil-unbatched": (dict(kernel_size=3, stride=2, ceil_mode=True), (4, 8, 5)),
    "k1-s2-batch-one": (dict(kernel_size=1, stride=2), (1, 3, 7, 6)),
    "k(1,3)-s(1,2)-p(0,1)": (dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1)), (2, 3, 5, 9)),
}


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("config", list(MAX_CONFIGS))
def test_max_pool_matches_torch(config, kind, dtype, rng):
    """Functional pair bit for bit (out, indices, dx) and the module against its twin."""
    kwargs, shape = MAX_CONFIGS[config]
    x = values(kind, shape, dtype, rng)
    ours, theirs, dout = max_pool_case(x, rng, **kwargs)
    assert_max_pool_like_torch(ours, theirs)
    assert ours[1].dtype == np.int64
    module = nn.MaxPool2d(**kwargs)
    step_parity(module, x, dout)
    assert_same(module.backward(dout), theirs[2], "module dx")


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, stride=1), dict(kernel_size=(2, 3), stride=(1, 2)),
                                    dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1,
                                                                                   dilation=2)],
                         ids=["k3-s1", "k(2,3)-s(1,2)", "k3-s2-p1", "k2-s1-d2"])
def test_max_pool_ties_and_overlaps_bit_for_bit(kwargs, dtype, rng):
    """Overlapping windows on small integers: ties everywhere, and maxima shared by several windows, whose
    gradients accumulate (in torch's order: bit for bit)."""
    x = rng.integers(0, 3, (3, 4, 9, 8)).astype(dtype)
    ours, theirs, dout = max_pool_case(x, rng, **kwargs)
    assert_max_pool_like_torch(ours, theirs)
    indices = theirs[1].reshape(12, -1)
    shared = max(np.bincount(plane).max() for plane in indices)
    assert shared >= 3, "no input element is the maximum of 3 windows: the accumulation is not exercised"


def test_max_pool_first_of_equal_maxima_gets_the_gradient(dtype):
    """A window of equal values sends its gradient to the top-left element (the first in torch's scan)."""
    x = np.array([[[[1, 1, 0, 2], [1, 1, 2, 2]]]], dtype)
    (out, indices), cache = F.max_pool2d_forward(x, 2, return_indices=True)
    dx = F.max_pool2d_backward(np.array([[[[3, 5]]]], dtype), cache)
    np.testing.assert_array_equal(indices, [[[[0, 3]]]])
    np.testing.assert_array_equal(dx, [[[[3, 0, 0, 5], [0, 0, 0, 0]]]])
    (t_out, t_indices), _ = torch_pool("max_pool2d", x, np.ones_like(out), kernel_size=2, return_indices=True)
    np.testing.assert_array_equal(indices, t_indices)


NAN, INF = np.nan, np.inf
#: windows of 2 x 2 (row-major), each with torch's index of the result
NAN_WINDOWS = {
    "nan first": ([NAN, 1, 2, 3], 0),
    "two nans: the last": ([0, NAN, NAN, 3], 2),
    "inf then nan": ([INF, 0, NAN, 1], 2),
    "nan then inf": ([NAN, INF, 0, 1], 0),
    "two infs: the first": ([0, INF, 1, INF], 1),
    "all -inf": ([-INF, -INF, -INF, -INF], 0),
    "nan last": ([1, 2, 3, NAN], 3),
}


@pytest.mark.parametrize("window", list(NAN_WINDOWS))
def test_max_pool_nan_and_inf_rule(window, dtype, rng):
    """torch takes every NaN it meets (the last NaN wins, and the output is NaN), keeps the first of equal infs."""
    flat, expected = NAN_WINDOWS[window]
    x = np.array(flat, dtype).reshape(1, 1, 2, 2)
    ours, theirs, _ = max_pool_case(x, rng, kernel_size=2)
    assert_max_pool_like_torch(ours, theirs)
    assert ours[1].item() == expected


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=1),
                                    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                    dict(kernel_size=(2, 3), stride=1, padding=1, dilation=2)],
                         ids=["k2", "k3-s1", "k3-s2-p1-ceil", "k(2,3)-p1-d2"])
def test_max_pool_nonfinite_patterns_like_torch(kwargs, dtype, rng):
    """NaN, +inf and -inf planted at random (several per window, whole -inf borders next to the padding) and a
    NaN/inf upstream gradient: out, indices and dx byte for byte, no RuntimeWarning."""
    x = rng.standard_normal((2, 3, 9, 8))
    planted = rng.random(x.shape)
    x[planted < 0.06] = np.nan
    x[(planted > 0.06) & (planted < 0.12)] = np.inf
    x[(planted > 0.12) & (planted < 0.3)] = -np.inf
    x[:, :, :4, :4] = -np.inf  # a corner of -inf next to the padding: torch points at the first input element
    x = x.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ours, theirs, dout = max_pool_case(x, rng, **kwargs)
    assert_max_pool_like_torch(ours, theirs)
    assert np.isnan(theirs[0]).any() and np.isneginf(theirs[0]).any() and np.isposinf(theirs[0]).any()
    dout = dout.copy()
    dout.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
    _, cache = F.max_pool2d_forward(x, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        dx = F.max_pool2d_backward(dout, cache)
    assert_same(dx, torch_pool("max_pool2d", x, dout, **kwargs)[1], "dx with a non-finite upstream gradient")


def test_max_pool_signed_zeros_bit_for_bit(dtype, rng):
    """Windows holding -0.0 and 0.0 (equal): torch keeps the first, sign included, in out and dx."""
    x = rng.choice(np.array([-0.0, 0.0, -1.0], dtype), (2, 3, 8, 6))
    ours, theirs, _ = max_pool_case(x, rng, kernel_size=(2, 3), stride=1)
    assert_max_pool_like_torch(ours, theirs)
    assert np.signbit(theirs[0][theirs[0] == 0]).any() and not np.signbit(theirs[0][theirs[0] == 0]).all()


@pytest.mark.parametrize("case", ["past the plane", "into the next row"])
def test_max_pool_window_without_input_element(case, dtype):
    """A window of padding only: kernel 2 with padding 1 and dilation 2 reads positions -1 and 1 of a dimension of
    size 1. torch gives -inf and its index of the window's first position at or after 0 (one row past the plane, or,
    along W, the next row's element), as here; its backward sends the gradient to that element (or writes outside
    the plane), where handnn's sends it nowhere: the output does not depend on any input element."""
    if case == "past the plane":  # along H: H = 1, each window reads rows -1 and 1
        x = np.array([[[[4.0, -2.0, 7.0]]]], dtype)
        kwargs, expected = dict(kernel_size=(2, 1), padding=(1, 0), dilation=(2, 1)), [[[[3, 4, 5]]]]
    else:  # along W: W = 1, each window reads columns -1 and 1
        x = np.array([[[[4.0], [-2.0], [7.0]]]], dtype)
        kwargs, expected = dict(kernel_size=(1, 2), padding=(0, 1), dilation=(1, 2)), [[[[1], [2], [3]]]]
    assert has_empty_window(x.shape, **kwargs)
    (out, indices), cache = F.max_pool2d_forward(x, **kwargs, return_indices=True)
    with torch.no_grad():
        t_out, t_indices = TF.max_pool2d(torch.from_numpy(x), **kwargs, return_indices=True)
    assert_same(out, t_out.numpy(), "out")
    assert_same(indices, t_indices.numpy(), "indices")
    np.testing.assert_array_equal(indices, expected)
    assert np.isneginf(out).all()
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones_like(out), cache), np.zeros_like(x))


@pytest.mark.parametrize("size, kernel, stride, padding, removed", [
    (5, 2, 2, 1, 1), (7, 4, 3, 2, 1), (4, 2, 3, 1, 1), (9, 2, 4, 1, 1), (6, 3, 2, 1, 0), (8, 3, 3, 0, 0)])
def test_ceil_mode_last_window_rule(size, kernel, stride, padding, removed, dtype, rng):
    """ceil_mode keeps a last, partial window only if it starts inside the input or its left padding: the output
    sizes (``removed``: one window fewer than the rounded-up count) and values are torch's, for max and avg."""
    x = rng.standard_normal((2, 3, size + 1, size)).astype(dtype)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=True)
    ours, theirs, _ = max_pool_case(x, rng, **kwargs)
    assert_max_pool_like_torch(ours, theirs)
    assert ours[0].shape[-1] == -(-(size + 2 * padding - kernel) // stride) + 1 - removed
    out, _ = F.avg_pool2d_forward(x, **kwargs)
    assert_same(out, torch_pool("avg_pool2d", x, np.ones_like(out), **kwargs)[0][0], "avg out")


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_max_pool_return_indices_module(batched, dtype, rng):
    """``return_indices=True``: the module returns (out, indices) with torch's int64 indices, backward takes dout."""
    shape = (3, 4, 7, 6) if batched else (4, 7, 6)
    x = rng.integers(0, 4, shape).astype(dtype)
    module = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)
    twin = torch.nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)
    out, indices = module(x)
    xt = to_tensor(x).requires_grad_()
    t_out, t_indices = twin(xt)
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(to_tensor(dout))
    assert_same(out, to_numpy(t_out), "out")
    assert_same(indices, to_numpy(t_indices), "indices")
    assert_same(module.backward(dout), to_numpy(xt.grad), "dx")
    result, _ = F.max_pool2d_forward(x, 3, 2, 1)
    assert isinstance(result, np.ndarray)  # without return_indices: the output alone


def test_max_pool_several_steps_one_module(dtype, rng):
    """One module over several steps of different inputs and sizes: each step's dx is that step's."""
    module = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    twin = to_torch(module)
    for shape in [(3, 4, 9, 7), (2, 4, 6, 8), (3, 4, 9, 7)]:
        x = rng.integers(-2, 3, shape).astype(dtype)
        dout = rng.standard_normal(torch_out_shape("max_pool2d", x, kernel_size=3, stride=2, padding=1,
                                                   ceil_mode=True)).astype(dtype)
        assert_step_parity(module, twin, x, dout)


@st.composite
def pool_configs(draw, dilation: bool = True):
    """A pooling configuration torch may accept or refuse (padding up to half the kernel, sizes down to 1), and
    the seed of its data."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    kwargs = dict(kernel_size=kernel if draw(st.booleans()) else kernel[0],
                  stride=draw(st.sampled_from([None, 1, 2, 3, (2, 1), (1, 3)])),
                  padding=(draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2))),
                  ceil_mode=draw(st.booleans()))
    if isinstance(kwargs["kernel_size"], int):
        kwargs["padding"] = kwargs["padding"][0]
    if dilation:
        kwargs["dilation"] = draw(st.sampled_from([1, 2, (1, 3), (2, 1)]))
    shape = (draw(st.integers(1, 3)), 2, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    return kwargs, shape[draw(st.integers(0, 1)):], draw(st.integers(0, 2**32 - 1))


@given(pool_configs(), st.sampled_from(["ties", "normal", "nonfinite"]), st.sampled_from([np.float64, np.float32]))
def test_max_pool_random_configurations(config, kind, dtype):
    """Random kernels, strides, paddings, dilations, ceil modes and sizes (batched or not, odd, down to 1): torch's
    out, indices and dx byte for byte, or torch's exception and message."""
    kwargs, shape, seed = config
    rng = np.random.default_rng(seed)
    x = values("normal" if kind == "nonfinite" else kind, shape, dtype, rng)
    if kind == "nonfinite":
        x[rng.random(shape) < 0.3] = rng.choice([np.nan, np.inf, -np.inf])
    try:
        torch_out_shape("max_pool2d", x, **kwargs)
    except RuntimeError as expected:
        with pytest.raises(RuntimeError, match="^" + re.escape(str(expected)) + "$"):
            F.max_pool2d_forward(x, **kwargs)
        return
    if has_empty_window(x.shape, **kwargs):  # torch's backward misplaces its gradient (see
        with torch.no_grad():  # test_max_pool_window_without_input_element): the forward only
            t_out, t_indices = TF.max_pool2d(torch.from_numpy(x), **kwargs, return_indices=True)
        (out, indices), _ = F.max_pool2d_forward(x, **kwargs, return_indices=True)
        assert_same(out, t_out.numpy(), "out")
        assert_same(indices, t_indices.numpy(), "indices")
        return
    ours, theirs, _ = max_pool_case(x, rng, **kwargs)
    assert_max_pool_like_torch(ours, theirs)


@given(pool_configs(dilation=False), st.booleans(), st.sampled_from([None, 3, -2]),
       st.sampled_from([np.float64, np.float32]), st.integers(0, 2**32 - 1))
def test_avg_pool_random_configurations(config, count_include_pad, divisor_override, dtype, seed):
    """Random configurations with every divisor option: torch's out and dx byte for byte, or its exception."""
    kwargs, shape, _ = config
    kwargs.update(count_include_pad=count_include_pad, divisor_override=divisor_override)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    try:
        dout = rng.standard_normal(torch_out_shape("avg_pool2d", x, **kwargs)).astype(dtype)
    except RuntimeError as expected:
        with pytest.raises(RuntimeError, match="^" + re.escape(str(expected)) + "$"):
            F.avg_pool2d_forward(x, **kwargs)
        return
    out, cache = F.avg_pool2d_forward(x, **kwargs)
    (t_out,), t_dx = torch_pool("avg_pool2d", x, dout, **kwargs)
    assert_same(out, t_out, "out")
    assert_same(F.avg_pool2d_backward(dout, cache), t_dx, "dx")


# ---- AvgPool2d -------------------------------------------------------------------------------------------------------
AVG_CONFIGS: Dict[str, Tuple[dict, Tuple[int, ...]]] = {
    "k2": (dict(kernel_size=2), (3, 4, 8, 6)),
    "k3-s1-overlap": (dict(kernel_size=3, stride=1), (3, 4, 7, 6)),
    "k(3,2)-s(2,1)": (dict(kernel_size=(3, 2), stride=(2, 1)), (2, 3, 9, 7)),
    "k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1), (3, 4, 7, 6)),
    "k3-s2-p1-exclude-pad": (dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), (3, 4, 7, 6)),
    "k3-s2-p1-ceil": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 3, 8, 6)),
    "k3-s2-p1-ceil-exclude-pad": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                       count_include_pad=False), (2, 3, 8, 6)),
    "k4-s3-p2-ceil": (dict(kernel_size=4, stride=3, padding=2, ceil_mode=True), (2, 3, 10, 7)),
    "k(2,4)-s(3,2)-p(1,2)-ceil": (dict(kernel_size=(2, 4), stride=(3, 2), padding=(1, 2), ceil_mode=True),
                                  (2, 3, 8, 9)),
    "divisor-3": (dict(kernel_size=2, stride=1, padding=1, divisor_override=3), (2, 3, 6, 5)),
    "divisor--2-ceil": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=-2),
                        (2, 3, 8, 6)),
    "k2-s1-unbatched": (dict(kernel_size=2, stride=1), (4, 7, 6)),
    "k3-s2-p1-ceil-unbatched": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (4, 8, 5)),
    "k2-batch-one": (dict(kernel_size=2, stride=(2, 1)), (1, 3, 7, 6)),
}


@pytest.mark.parametrize("config", list(AVG_CONFIGS))
def test_avg_pool_matches_torch(config, dtype, rng):
    """The functional pair byte for byte (torch's summation order and divisor) and the module against its twin."""
    kwargs, shape = AVG_CONFIGS[config]
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(torch_out_shape("avg_pool2d", x, **kwargs)).astype(dtype)
    out, cache = F.avg_pool2d_forward(x, **kwargs)
    dx = F.avg_pool2d_backward(dout, cache)
    (t_out,), t_dx = torch_pool("avg_pool2d", x, dout, **kwargs)
    assert_same(out, t_out, "out")
    assert_same(dx, t_dx, "dx")
    step_parity(nn.AvgPool2d(**kwargs), x, dout)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_avg_pool_divisor_rules(ceil_mode, count_include_pad, dtype):
    """On ones, each output is its window's count over its divisor: with count_include_pad the padding's zeros are
    counted but not a ceil_mode window's part beyond the padding; without it only the input's elements are."""
    x = np.ones((1, 1, 7, 6), dtype)
    kwargs = dict(kernel_size=3, stride=2, padding=1, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    out, _ = F.avg_pool2d_forward(x, **kwargs)
    (t_out,), _ = torch_pool("avg_pool2d", x, np.ones_like(out), **kwargs)
    assert_same(out, t_out, "out")
    if count_include_pad:  # a corner window holds 4 of the input's elements out of 9
        assert out[0, 0, 0, 0] == dtype.type(4) / dtype.type(9)
    else:
        np.testing.assert_array_equal(out, np.ones_like(out))
    if ceil_mode and count_include_pad:  # the last column's window: 3 rows x (1 input + 1 padding) counted, not
        assert out[0, 0, 1, -1] == dtype.type(3) / dtype.type(6)  # the column beyond the padding


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1, ceil_mode=True)],
                         ids=["k2", "k3-s1-p1-ceil"])
def test_avg_pool_nonfinite_like_torch(kwargs, dtype, rng):
    """inf and NaN in the input and the upstream gradient: torch's NaN/inf pattern, byte for byte, no warning."""
    x = rng.standard_normal((2, 3, 7, 6))
    x.reshape(-1)[rng.choice(x.size, 12, replace=False)] = [np.inf] * 5 + [-np.inf] * 5 + [np.nan] * 2
    x = x.astype(dtype)
    dout = rng.standard_normal(torch_out_shape("avg_pool2d", x, **kwargs)).astype(dtype)
    dout.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out, cache = F.avg_pool2d_forward(x, **kwargs)
        dx = F.avg_pool2d_backward(dout, cache)
    (t_out,), t_dx = torch_pool("avg_pool2d", x, dout, **kwargs)
    assert_same(out, t_out, "out")
    assert_same(dx, t_dx, "dx")
    assert np.isnan(t_out).any() and np.isinf(t_out).any()


# ---- AdaptiveAvgPool2d -----------------------------------------------------------------------------------------------
ADAPTIVE_SIZES = {
    "3": 3, "(3,4)": (3, 4), "(None,2)": (None, 2), "(4,None)": (4, None), "(5,7) same": (5, 7),
    "(9,11) larger": (9, 11), "(2,13) mixed": (2, 13), "(1,3)": (1, 3), "(3,1)": (3, 1), "(0,3) empty": (0, 3),
}


@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (4, 5, 7), (1, 4, 5, 7)], ids=["batched", "unbatched", "batch-one"])
@pytest.mark.parametrize("size", list(ADAPTIVE_SIZES))
def test_adaptive_avg_pool_matches_torch(size, shape, dtype, rng):
    """torch's windows ``[floor(i H / Ho), ceil((i + 1) H / Ho))`` (overlapping, uneven, or repeated when the output
    is larger): the functional pair byte for byte, the module against its twin."""
    output_size = ADAPTIVE_SIZES[size]
    x = rng.standard_normal(shape).astype(dtype)
    out, cache = F.adaptive_avg_pool2d_forward(x, output_size)
    dout = rng.standard_normal(out.shape).astype(dtype)
    xt = to_tensor(x).requires_grad_()
    t_out = TF.adaptive_avg_pool2d(xt, output_size)
    assert_same(out, to_numpy(t_out), "out")
    if 0 in out.shape[-2:]:  # torch's backward refuses the empty output its forward gave: so does handnn's
        expected = torch_error(lambda: t_out.backward(to_tensor(dout)))
        with pytest.raises(type(expected), match="^" + re.escape(str(expected)) + "$"):
            F.adaptive_avg_pool2d_backward(dout, cache)
        return
    t_out.backward(to_tensor(dout))
    assert_same(F.adaptive_avg_pool2d_backward(dout, cache), to_numpy(xt.grad), "dx")
    step_parity(nn.AdaptiveAvgPool2d(output_size), x, dout)


@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (4, 5, 7), (5, 7), (2, 3, 4, 5, 6), (3, 4, 0, 7)],
                         ids=["4-d", "3-d", "2-d", "5-d", "empty plane"])
@pytest.mark.parametrize("size", [1, (1, 1), (1, None)], ids=["1", "(1,1)", "(1,None)"])
def test_adaptive_avg_pool_one_by_one_is_torchs_mean(size, shape, dtype, rng):
    """torch computes an output of (1, 1) as ``mean((-1, -2), keepdim=True)``: any rank from 2 (an int size), an
    empty plane gives NaN; the sum's order is torch's reduction's, so the values are compared within the tolerance
    table. A tuple size on a 2-d input is torch's ValueError; (1, None) on a plane wider than 1 is not the mean."""
    x = rng.standard_normal(shape).astype(dtype)
    xt = to_tensor(x).requires_grad_()
    try:
        t_out = TF.adaptive_avg_pool2d(xt, size)
    except Exception as expected:  # noqa: BLE001 - any class: handnn must raise the same, with the same message
        with pytest.raises(type(expected), match="^" + re.escape(str(expected)) + "$"):
            F.adaptive_avg_pool2d_forward(x, size)
        return
    out, cache = F.adaptive_avg_pool2d_forward(x, size)
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(to_tensor(dout))
    assert out.dtype == dtype and out.shape == tuple(t_out.shape)
    assert_close(out, to_numpy(t_out), name="out")
    assert_close(F.adaptive_avg_pool2d_backward(dout, cache), to_numpy(xt.grad), name="dx")
    if 0 in shape:
        assert np.isnan(out).all()


def test_adaptive_avg_pool_nonfinite_like_torch(dtype, rng):
    """inf and NaN in overlapping windows, and in the upstream gradient: torch's pattern byte for byte."""
    x = rng.standard_normal((2, 3, 7, 5))
    x.reshape(-1)[rng.choice(x.size, 12, replace=False)] = [np.inf] * 5 + [-np.inf] * 5 + [np.nan] * 2
    x = x.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out, cache = F.adaptive_avg_pool2d_forward(x, (4, 3))
        dout = rng.standard_normal(out.shape).astype(dtype)
        dout.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
        dx = F.adaptive_avg_pool2d_backward(dout, cache)
    xt = to_tensor(x).requires_grad_()
    t_out = TF.adaptive_avg_pool2d(xt, (4, 3))
    t_out.backward(to_tensor(dout))
    assert_same(out, to_numpy(t_out), "out")
    assert_same(dx, to_numpy(xt.grad), "dx")


# ---- all three: layouts, empty batch, dtypes, bad inputs, twins ------------------------------------------------------
MODULES: Dict[str, Tuple[Callable[[], nn.Module], str, dict]] = {
    "MaxPool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1), "max_pool2d",
                  dict(kernel_size=3, stride=2, padding=1)),
    "AvgPool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1), "avg_pool2d",
                  dict(kernel_size=3, stride=2, padding=1)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), "adaptive_avg_pool2d", dict(output_size=(3, 2))),
}


@pytest.mark.parametrize("layout", ["transposed", "reversed", "strided"])
@pytest.mark.parametrize("name", list(MODULES))
def test_non_contiguous_input(name, layout, dtype, rng):
    """Views of any layout: the same values as for a contiguous copy, byte for byte."""
    make, function, kwargs = MODULES[name]
    base = rng.standard_normal((3, 4, 8, 7)).astype(dtype)
    x = {"transposed": np.swapaxes(np.ascontiguousarray(np.swapaxes(base, -1, -2)), -1, -2),
         "reversed": np.ascontiguousarray(base[..., ::-1, ::-1])[..., ::-1, ::-1],
         "strided": np.repeat(base, 2, axis=-1)[..., ::2]}[layout]
    assert not x.flags.c_contiguous
    module = make()
    out = module(x)
    dout = rng.standard_normal(out.shape).astype(dtype)
    (t_out, *_), t_dx = torch_pool(function, base, dout, **kwargs)
    assert_same(out, t_out, "out")
    assert_same(module.backward(dout), t_dx, "dx")


@pytest.mark.parametrize("shape", [(1, 1, 8, 7), (1, 8, 7)], ids=["one plane", "one plane unbatched"])
@pytest.mark.parametrize("name", list(MODULES))
def test_one_plane_like_torch(name, shape, dtype, rng):
    """A single plane (where a transposed copy is no copy at all): torch's values, inputs left unchanged, and
    outputs that share no memory with them."""
    make, function, kwargs = MODULES[name]
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(torch_out_shape(function, x, **kwargs)).astype(dtype)
    step_parity(make(), x, dout)
    module = make()
    out = module(x)
    dx = module.backward(dout)
    assert not np.shares_memory(out, x) and not np.shares_memory(dx, dout)


@pytest.mark.parametrize("name", list(MODULES))
def test_empty_batch_like_torch(name, dtype, rng):
    module, function, kwargs = MODULES[name]
    x = np.empty((0, 4, 8, 7), dtype)
    out_shape = torch_out_shape(function, x, **kwargs)
    assert out_shape[0] == 0
    step_parity(module(), x, np.empty(out_shape, dtype), nonzero=False)


#: (module, input) -> torch raises; handnn must raise the same class with the same message
BAD_INPUTS: Dict[str, Tuple[Callable[[], nn.Module], Tuple[int, ...]]] = {
    "max 2-d input": (lambda: nn.MaxPool2d(2), (5, 6)),
    "max 5-d input": (lambda: nn.MaxPool2d(2), (1, 2, 3, 5, 6)),
    "max 0-d input": (lambda: nn.MaxPool2d(1), ()),
    "max kernel larger than input": (lambda: nn.MaxPool2d(7), (2, 3, 5, 6)),
    "max kernel larger in H": (lambda: nn.MaxPool2d((6, 2)), (2, 3, 5, 6)),
    "max dilated kernel larger": (lambda: nn.MaxPool2d(3, dilation=3), (2, 3, 5, 6)),
    "max stride 0": (lambda: nn.MaxPool2d(2, stride=0), (2, 3, 5, 6)),
    "max kernel 0": (lambda: nn.MaxPool2d(0), (2, 3, 5, 6)),
    "max kernel -1": (lambda: nn.MaxPool2d(-1), (2, 3, 5, 6)),
    "max kernel (2, -1)": (lambda: nn.MaxPool2d((2, -1)), (2, 3, 5, 6)),
    "max kernel -1 padding 1": (lambda: nn.MaxPool2d(-1, padding=1), (2, 3, 5, 6)),
    "max kernel (2, 0)": (lambda: nn.MaxPool2d((2, 0), stride=1), (2, 3, 5, 6)),
    "max stride -1": (lambda: nn.MaxPool2d(2, stride=-1), (2, 3, 5, 6)),
    "max stride (2, -1)": (lambda: nn.MaxPool2d(2, stride=(2, -1)), (2, 3, 5, 6)),
    "max dilation 0": (lambda: nn.MaxPool2d(2, dilation=0), (2, 3, 5, 6)),
    "max dilation (0, 1)": (lambda: nn.MaxPool2d(2, dilation=(0, 1)), (2, 3, 5, 6)),
    "max dilation (1, 0)": (lambda: nn.MaxPool2d(2, dilation=(1, 0)), (2, 3, 5, 6)),
    "max float dilation": (lambda: nn.MaxPool2d(2, dilation=1.5), (2, 3, 5, 6)),
    "max dilation 0 padding 1": (lambda: nn.MaxPool2d(2, padding=1, dilation=0), (2, 3, 5, 6)),
    "max negative padding": (lambda: nn.MaxPool2d(2, padding=-1), (2, 3, 5, 6)),
    "max padding over half": (lambda: nn.MaxPool2d(2, padding=2), (2, 3, 5, 6)),
    "max padding over half in W": (lambda: nn.MaxPool2d((3, 2), padding=(1, 2)), (2, 3, 5, 6)),
    "max padding over half of dilated": (lambda: nn.MaxPool2d(3, padding=2, dilation=2), (2, 3, 9, 9)),
    "max padding over half of dilated in H": (lambda: nn.MaxPool2d(3, padding=(2, 0), dilation=2), (2, 3, 9, 9)),
    "max empty channels": (lambda: nn.MaxPool2d(2), (2, 0, 5, 6)),
    "max empty height": (lambda: nn.MaxPool2d(2), (2, 3, 0, 6)),
    "max empty width unbatched": (lambda: nn.MaxPool2d(2), (3, 5, 0)),
    "max empty channels unbatched": (lambda: nn.MaxPool2d(2), (0, 5, 6)),
    "max three kernel values": (lambda: nn.MaxPool2d((2, 2, 2)), (2, 3, 5, 6)),
    "max three strides": (lambda: nn.MaxPool2d(2, stride=(1, 1, 1)), (2, 3, 5, 6)),
    "max three paddings": (lambda: nn.MaxPool2d(2, padding=(1, 1, 1)), (2, 3, 5, 6)),
    "max three dilations": (lambda: nn.MaxPool2d(2, dilation=(1, 1, 1)), (2, 3, 5, 6)),
    "max float kernel": (lambda: nn.MaxPool2d(2.0), (2, 3, 5, 6)),
    "max none padding": (lambda: nn.MaxPool2d(2, padding=None), (2, 3, 5, 6)),
    "avg 2-d input": (lambda: nn.AvgPool2d(2), (5, 6)),
    "avg 1-d input": (lambda: nn.AvgPool2d(1), (6,)),
    "avg 0-d input": (lambda: nn.AvgPool2d(1), ()),
    "avg 5-d input": (lambda: nn.AvgPool2d(2), (1, 2, 3, 5, 6)),
    "avg kernel larger than input": (lambda: nn.AvgPool2d(7), (2, 3, 5, 6)),
    "avg stride 0": (lambda: nn.AvgPool2d(2, stride=0), (2, 3, 5, 6)),
    "avg negative padding": (lambda: nn.AvgPool2d(2, padding=-1), (2, 3, 5, 6)),
    "avg padding over half": (lambda: nn.AvgPool2d((2, 3), padding=(2, 1)), (2, 3, 5, 6)),
    "avg divisor 0": (lambda: nn.AvgPool2d(2, divisor_override=0), (2, 3, 5, 6)),
    "avg float divisor": (lambda: nn.AvgPool2d(2, divisor_override=2.5), (2, 3, 5, 6)),
    "avg empty height": (lambda: nn.AvgPool2d(2), (2, 3, 0, 6)),
    "avg three kernel values": (lambda: nn.AvgPool2d((2, 2, 2)), (2, 3, 5, 6)),
    "adaptive 2-d input": (lambda: nn.AdaptiveAvgPool2d(2), (5, 6)),
    "adaptive 2-d input, tuple size": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (5, 6)),
    "adaptive 3-d input, 3 sizes": (lambda: nn.AdaptiveAvgPool2d((1, 2, 3)), (4, 5, 6)),
    "adaptive 5-d input": (lambda: nn.AdaptiveAvgPool2d(2), (1, 2, 3, 5, 6)),
    "adaptive 1-d input, size 1": (lambda: nn.AdaptiveAvgPool2d(1), (6,)),
    "adaptive negative width": (lambda: nn.AdaptiveAvgPool2d((2, -1)), (2, 3, 5, 6)),
    "adaptive negative height": (lambda: nn.AdaptiveAvgPool2d((-1, 2)), (2, 3, 5, 6)),
    "adaptive float": (lambda: nn.AdaptiveAvgPool2d(2.5), (2, 3, 5, 6)),
    "adaptive None": (lambda: nn.AdaptiveAvgPool2d(None), (2, 3, 5, 6)),
    "adaptive 3 sizes": (lambda: nn.AdaptiveAvgPool2d((2, 3, 4)), (2, 3, 5, 6)),
    "adaptive empty height": (lambda: nn.AdaptiveAvgPool2d(2), (2, 3, 0, 6)),
    "adaptive empty width unbatched": (lambda: nn.AdaptiveAvgPool2d((2, 2)), (3, 5, 0)),
    "adaptive float size": (lambda: nn.AdaptiveAvgPool2d((2.5, 3)), (2, 3, 5, 6)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_like_torch(case, rng):
    """torch's class and exact message; the module keeps the cache of its last good forward."""
    make, shape = BAD_INPUTS[case]
    module = make()
    x = rng.standard_normal(shape)
    expected = torch_error(lambda: to_torch(module)(to_tensor(x)))
    assert_rejected_like_torch(module, to_torch(module), x, match="^" + re.escape(str(expected)) + "$")


def test_bad_input_keeps_the_last_good_forward(rng):
    module = nn.MaxPool2d(2)
    x, dout = rng.standard_normal((2, 3, 4, 6)), rng.standard_normal((2, 3, 2, 3))
    module(x)
    dx = module.backward(dout)
    assert_rejected_like_torch(module, to_torch(module), rng.standard_normal((2, 3, 1, 1)),
                               match=re.escape("Output size is too small"))
    np.testing.assert_array_equal(module.backward(dout), dx)


DTYPES = ["int64", "int32", "int8", "uint8", "uint16", "bool", "float16", "complex128"]


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("name", [*MODULES, "AdaptiveAvgPool2d(1)"])
def test_other_dtypes_like_torch(name, dtype_name, rng):
    """torch's class where torch has no kernel (max: bool, complex, wide unsigned; avg: every integer but int64;
    adaptive: integers; its (1, 1) mean refuses integers with RuntimeError); TypeError where torch would compute
    (handnn computes in float32 and float64 only)."""
    make = MODULES[name][0] if name in MODULES else (lambda: nn.AdaptiveAvgPool2d(1))
    x = (rng.standard_normal((2, 3, 6, 5)) * 3).astype(dtype_name)
    try:
        to_torch(make())(torch.from_numpy(x.copy()))
    except Exception as exc:  # noqa: BLE001 - the class is compared
        with pytest.raises(type(exc)):
            make()(x)
    else:
        with pytest.raises(TypeError, match="float32 or float64"):
            make()(x)


@pytest.mark.parametrize("name", ["max_pool2d_forward", "avg_pool2d_forward", "adaptive_avg_pool2d_forward"])
def test_functional_refuses_a_list(name):
    with pytest.raises(TypeError, match="numpy.ndarray"):
        getattr(F, name)([[[0.5, 0.25], [1.0, 2.0]]], 1)


@pytest.mark.parametrize("make, torch_make", [
    (lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
    (lambda: nn.MaxPool2d((3, 2), (2, 1), 1, 2, True, True),
     lambda: torch.nn.MaxPool2d((3, 2), (2, 1), 1, 2, True, True)),
    (lambda: nn.AvgPool2d(3, 2, 1, True, False, 4), lambda: torch.nn.AvgPool2d(3, 2, 1, True, False, 4)),
    (lambda: nn.AdaptiveAvgPool2d((None, 3)), lambda: torch.nn.AdaptiveAvgPool2d((None, 3))),
], ids=["max", "max-all-options", "avg-all-options", "adaptive"])
def test_constructor_and_repr_like_torch(make, torch_make):
    """torch's attributes (``stride=None`` becomes the kernel size) and repr; from_torch gives the same module."""
    ours, theirs = make(), torch_make()
    assert repr(ours) == repr(theirs)
    names = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode", "count_include_pad",
             "divisor_override", "output_size")
    for attribute in names:
        assert getattr(ours, attribute, None) == getattr(theirs, attribute, None), attribute
    back = from_torch(theirs)
    assert type(back) is type(ours) and repr(back) == repr(ours)
    assert type(to_torch(ours)) is type(theirs) and repr(to_torch(ours)) == repr(theirs)


@pytest.mark.parametrize("make", [lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(2), lambda: nn.AdaptiveAvgPool2d(2)],
                         ids=["max", "avg", "adaptive"])
def test_backward_before_forward_raises(make, rng):
    with pytest.raises(RuntimeError, match="before forward"):
        make().backward(rng.standard_normal((2, 3, 2, 2)))


def test_pooling_network_several_steps(dtype, rng):
    """A small CNN head of pooling layers between Linear layers, several steps against its twin: every parameter
    gradient flows through the pooling backward passes."""
    model = nn.Sequential(nn.MaxPool2d(2, stride=1, padding=1), nn.AvgPool2d(3, stride=2, ceil_mode=True),
                          nn.AdaptiveAvgPool2d((2, None)), nn.Flatten(), nn.Linear(2 * 2 * 3, 5, dtype=dtype, rng=rng))
    twin = to_torch(model)
    for _ in range(3):
        x = rng.standard_normal((6, 2, 7, 5)).astype(dtype)
        assert_step_parity(model, twin, x, rng.standard_normal((6, 5)).astype(dtype))
