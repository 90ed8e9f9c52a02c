"""Parity of ``Conv1d`` / ``Conv2d`` and the functional pairs with torch: forward, dx, dweight, dbias over strides,
paddings ('same' with odd and even kernels, 'valid'), dilations, groups (depthwise too), non-square kernels, every
padding mode, batched / unbatched / batch of one / empty inputs, gradient accumulation, torch's initialisation bit for
bit, NaN/inf patterns, and bad inputs raising torch's classes."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import handnn.functional as F
from handnn import nn
from handnn.functional import conv as conv_functional
from handnn.random import TorchGenerator
from reference import assert_close, assert_step_parity, to_tensor, to_torch
from reference.harness import assert_rejected_like_torch, torch_error
from reference.twin import TORCH_DTYPES, from_torch

# torch's warning for 'same' with an even kernel (it pads a copy): about its speed, not its values
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

N, C_IN, C_OUT, H, W, L = 3, 4, 6, 9, 7, 11  # all different, so a wrong axis or reshape cannot pass


def step_parity(module: nn.Module, x: np.ndarray, dout: np.ndarray, nonzero: bool = True) -> None:
    """One forward/backward on ``module`` and its torch twin: everything equal, torch's grads not ~0, and neither
    the input nor the upstream gradient modified."""
    x_before, dout_before = x.copy(), dout.copy()
    assert_step_parity(module, to_torch(module), x, dout, nonzero=nonzero)
    np.testing.assert_array_equal(x, x_before, err_msg="the layer modified its input")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")


def out_shape(module: nn.Module, shape: tuple) -> tuple:
    """torch's output shape for an input of ``shape`` (from the twin, so the shape itself is checked too)."""
    with torch.no_grad():
        return tuple(to_torch(module)(torch.zeros(shape, dtype=TORCH_DTYPES[module.weight.dtype])).shape)


# ---- the configurations ------------------------------------------------------------------------------------------
CONV2D = {
    "k3": dict(kernel_size=3),
    "k(3,2) s2 p1": dict(kernel_size=(3, 2), stride=2, padding=1),
    "k(2,3) s(2,1) p(1,2)": dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 2)),
    "same, odd kernel": dict(kernel_size=3, padding="same"),
    "same, even kernel": dict(kernel_size=(4, 2), padding="same"),
    "same, even kernel, dilation (2,1)": dict(kernel_size=(2, 4), padding="same", dilation=(2, 1)),
    "valid": dict(kernel_size=(2, 3), padding="valid"),
    "dilation 2 p2": dict(kernel_size=3, dilation=2, padding=2),
    "groups 2": dict(kernel_size=(3, 2), groups=2, padding=1),
    "depthwise": dict(kernel_size=3, groups=C_IN, out_channels=2 * C_IN, stride=(1, 2)),
    "1x1 s3": dict(kernel_size=1, stride=3),
    "no bias": dict(kernel_size=(2, 3), bias=False, padding=(0, 1)),
    "reflect": dict(kernel_size=3, padding=1, padding_mode="reflect"),
    "reflect, same even": dict(kernel_size=4, padding="same", padding_mode="reflect"),
    "replicate": dict(kernel_size=(3, 2), padding=(2, 1), padding_mode="replicate", stride=2),
    "circular": dict(kernel_size=3, padding=(1, 3), padding_mode="circular", dilation=(1, 2)),
    "circular, groups, no bias": dict(kernel_size=2, padding=2, padding_mode="circular", groups=2, bias=False),
}
CONV1D = {
    "k3": dict(kernel_size=3),
    "k4 s2 p1": dict(kernel_size=4, stride=2, padding=1),
    "same, even kernel, dilation 3": dict(kernel_size=2, padding="same", dilation=3),
    "valid": dict(kernel_size=5, padding="valid"),
    "groups 2, no bias": dict(kernel_size=3, groups=2, bias=False, padding=2),
    "depthwise": dict(kernel_size=3, groups=C_IN, out_channels=C_IN, stride=3),
    "reflect": dict(kernel_size=3, padding=2, padding_mode="reflect"),
    "replicate, same": dict(kernel_size=4, padding="same", padding_mode="replicate"),
    "circular": dict(kernel_size=3, padding=4, padding_mode="circular", stride=2),
}
SHAPES_2D = {"batched": (N, C_IN, H, W), "batch of one": (1, C_IN, H, W), "unbatched": (C_IN, H, W)}
SHAPES_1D = {"batched": (N, C_IN, L), "batch of one": (1, C_IN, L), "unbatched": (C_IN, L)}


def make(cls, config: dict, dtype, rng) -> nn.Module:
    kwargs = {"in_channels": C_IN, "out_channels": C_OUT, **config}
    return cls(**kwargs, dtype=dtype, rng=rng)


@pytest.mark.parametrize("shape", list(SHAPES_2D.values()), ids=list(SHAPES_2D))
@pytest.mark.parametrize("config", list(CONV2D.values()), ids=list(CONV2D))
def test_conv2d_matches_torch(config, shape, dtype, rng):
    layer = make(nn.Conv2d, config, dtype, rng)
    x = rng.normal(size=shape).astype(dtype)
    step_parity(layer, x, rng.normal(size=out_shape(layer, shape)).astype(dtype))


@pytest.mark.parametrize("shape", list(SHAPES_1D.values()), ids=list(SHAPES_1D))
@pytest.mark.parametrize("config", list(CONV1D.values()), ids=list(CONV1D))
def test_conv1d_matches_torch(config, shape, dtype, rng):
    layer = make(nn.Conv1d, config, dtype, rng)
    x = rng.normal(size=shape).astype(dtype)
    step_parity(layer, x, rng.normal(size=out_shape(layer, shape)).astype(dtype))


@pytest.mark.parametrize("cls, config, shape", [
    (nn.Conv2d, CONV2D["k(3,2) s2 p1"], (N, C_IN, H, W)), (nn.Conv2d, CONV2D["circular"], (N, C_IN, H, W)),
    (nn.Conv1d, CONV1D["groups 2, no bias"], (N, C_IN, L)), (nn.Conv1d, CONV1D["reflect"], (N, C_IN, L)),
], ids=["Conv2d", "Conv2d circular", "Conv1d groups", "Conv1d reflect"])
def test_gradients_accumulate_over_steps_like_torch(cls, config, shape, dtype, rng):
    """Three steps on one module without zero_grad: every output equal, and .grad the sum, as torch's."""
    layer = make(cls, config, dtype, rng)
    twin = to_torch(layer)
    xs = [rng.normal(size=shape).astype(dtype) for _ in range(3)]
    douts = [rng.normal(size=out_shape(layer, shape)).astype(dtype) for _ in range(3)]
    for x, dout in zip(xs, douts):
        xt = to_tensor(x).requires_grad_()
        out = twin(xt)
        assert_close(layer(x), out.detach().numpy(), name="out")
        out.backward(to_tensor(dout))
        assert_close(layer.backward(dout), xt.grad.numpy(), name="dx")
    theirs = dict(twin.named_parameters())
    for name, param in layer.named_parameters():
        assert_close(param.grad, theirs[name].grad.numpy(), name=f"accumulated grad {name}")
    single = make(cls, config, dtype, np.random.default_rng(0))
    single.load_state_dict(layer.state_dict())
    single(xs[-1])
    single.backward(douts[-1])
    assert not np.allclose(layer.weight.grad, single.weight.grad)  # the sum is not the last step's alone


@pytest.mark.parametrize("cls, shape", [(nn.Conv2d, (N, C_IN, H, W)), (nn.Conv1d, (N, C_IN, L))],
                         ids=["Conv2d", "Conv1d"])
def test_non_contiguous_input_and_upstream_gradient(cls, shape, dtype, rng):
    """Transposed and strided views, as a layer inside a network receives them."""
    layer = make(cls, dict(kernel_size=3, padding=1, stride=2), dtype, rng)
    x = np.ascontiguousarray(rng.normal(size=shape[::-1]).astype(dtype)).T
    wide = rng.normal(size=out_shape(layer, shape)[:-1] + (2 * out_shape(layer, shape)[-1],)).astype(dtype)
    assert not x.flags.c_contiguous and not wide[..., ::2].flags.c_contiguous
    step_parity(layer, x, wide[..., ::2])


# ---- the functional pairs against torch.nn.functional with autograd -------------------------------------------------
FUNCTIONAL_2D = {
    "defaults": dict(),
    "stride (2,1), padding (1,2), dilation (1,2)": dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "same, even kernel": dict(padding="same", kernel=(2, 4)),
    "valid, groups 2": dict(padding="valid", groups=2),
    "int padding, no bias": dict(padding=2, bias=False),
}


@pytest.mark.parametrize("options", list(FUNCTIONAL_2D.values()), ids=list(FUNCTIONAL_2D))
@pytest.mark.parametrize("dims", [1, 2], ids=["conv1d", "conv2d"])
def test_functional_pair_matches_torch_autograd(dims, options, dtype, rng):
    options = dict(options)
    kernel = options.pop("kernel", (3, 2))[-dims:]
    has_bias = options.pop("bias", True)
    groups = options.get("groups", 1)
    spatial = (H, W)[-dims:]
    if isinstance(options.get("padding"), tuple) or isinstance(options.get("stride"), tuple):
        options = {k: (v[-dims:] if isinstance(v, tuple) else v) for k, v in options.items()}
    x = rng.normal(size=(N, C_IN, *spatial)).astype(dtype)
    weight = rng.normal(size=(C_OUT, C_IN // groups, *kernel)).astype(dtype)
    bias = rng.normal(size=C_OUT).astype(dtype) if has_bias else None
    forward, backward = (F.conv1d_forward, F.conv1d_backward) if dims == 1 else (F.conv2d_forward, F.conv2d_backward)
    torch_conv = torch.nn.functional.conv1d if dims == 1 else torch.nn.functional.conv2d
    xt, wt = to_tensor(x).requires_grad_(), to_tensor(weight).requires_grad_()
    bt = None if bias is None else to_tensor(bias).requires_grad_()
    expected = torch_conv(xt, wt, bt, **options)
    dout = rng.normal(size=expected.shape).astype(dtype)
    expected.backward(to_tensor(dout))
    x_before, dout_before = x.copy(), dout.copy()
    out, cache = forward(x, weight, bias, **options)
    dx, dweight, dbias = backward(dout, cache)
    assert_close(out, expected.detach().numpy(), name="out")
    assert_close(dx, xt.grad.numpy(), name="dx")
    assert_close(dweight, wt.grad.numpy(), name="dweight")
    if bias is None:
        assert dbias is None
    else:
        assert_close(dbias, bt.grad.numpy(), name="dbias")
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)
    backward(dout, cache)  # the cache is left usable: a second backward gives the same gradients
    np.testing.assert_array_equal(backward(dout, cache)[1], dweight)


def test_functional_defaults_are_torchs():
    """stride 1, padding 0, dilation 1, groups 1, no bias (torch's conv2d / conv1d are builtins: no signature)."""
    import inspect
    for forward in (F.conv2d_forward, F.conv1d_forward):
        defaults = {k: p.default for k, p in inspect.signature(forward).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        assert defaults == {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def test_float32_stays_float32(rng):
    layer = nn.Conv2d(C_IN, C_OUT, 3, padding=1, padding_mode="reflect", dtype=np.float32, rng=rng)
    x = rng.normal(size=(N, C_IN, H, W)).astype(np.float32)
    out = layer(x)
    dx = layer.backward(rng.normal(size=out.shape).astype(np.float32))
    dtypes = {"weight": layer.weight.dtype, "bias": layer.bias.dtype, "out": out.dtype, "dx": dx.dtype,
              "dweight": layer.weight.grad.dtype, "dbias": layer.bias.grad.dtype}
    assert dtypes == dict.fromkeys(dtypes, np.dtype(np.float32))


# ---- empty and degenerate inputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, shape, config", [
    (nn.Conv2d, (0, C_IN, H, W), dict(kernel_size=3, padding=1)),
    (nn.Conv2d, (0, C_IN, H, W), dict(kernel_size=3, padding=1, padding_mode="reflect")),
    (nn.Conv1d, (0, C_IN, L), dict(kernel_size=2, stride=2)),
], ids=["Conv2d", "Conv2d reflect", "Conv1d"])
def test_empty_batch_like_torch(cls, shape, config, dtype, rng):
    """N = 0: an empty output (0, C_out, *), an empty dx, and zero parameter gradients, as torch's."""
    layer = make(cls, config, dtype, rng)
    expected = out_shape(layer, shape)
    assert expected[0] == 0 and expected[1] == C_OUT
    step_parity(layer, rng.normal(size=shape).astype(dtype), np.zeros(expected, dtype), nonzero=False)
    assert np.all(layer.weight.grad == 0) and np.all(layer.bias.grad == 0)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning:torch")
def test_no_input_channels_like_torch(rng):
    """in_channels = 0: torch returns an empty (N, 0, Ho, Wo), whatever out_channels, and zero gradients."""
    with pytest.warns(UserWarning, match="zero-element"):
        layer = nn.Conv2d(0, C_OUT, 3, rng=rng)
    shape = (N, 0, H, W)
    assert out_shape(layer, shape) == (N, 0, H - 2, W - 2)
    step_parity(layer, np.zeros(shape), np.zeros((N, 0, H - 2, W - 2)), nonzero=False)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_nan_and_inf_give_torchs_pattern_without_warnings(mode, dtype, rng):
    """NaN and +-inf in the input and the upstream gradient: torch's NaN/inf pattern in the output and every
    gradient, and no NumPy warning but the BLAS products' (docs/differences.md)."""
    layer = nn.Conv2d(C_IN, C_OUT, 3, padding=1, padding_mode=mode, dtype=dtype, rng=rng)
    x = rng.normal(size=(N, C_IN, H, W)).astype(dtype)
    x[0, 1, 2, 3], x[1, 0, 4, 4], x[2, 3, 0, 0] = np.nan, np.inf, -np.inf
    dout = rng.normal(size=out_shape(layer, x.shape)).astype(dtype)
    dout[1, 2, 3, 3], dout[2, 0, 1, 1] = np.inf, -np.inf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step_parity(layer, x, dout, nonzero=False)  # NaN in every gradient: the ~0 check cannot read them
    blas = re.compile(r"(invalid value|overflow) encountered in (matmul|dot|vecdot)")
    assert [str(w.message) for w in caught if not blas.search(str(w.message))] == []


# ---- initialisation -------------------------------------------------------------------------------------------------
INITS = {
    "Conv2d(3, 8, 3)": (nn.Conv2d, torch.nn.Conv2d, (3, 8, 3), {}),
    "Conv2d(4, 6, (3, 2), groups=2)": (nn.Conv2d, torch.nn.Conv2d, (4, 6, (3, 2)), {"groups": 2}),
    "Conv2d(16, 32, 5, bias=False)": (nn.Conv2d, torch.nn.Conv2d, (16, 32, 5), {"bias": False}),
    "Conv2d(4, 4, 1, reflect)": (nn.Conv2d, torch.nn.Conv2d, (4, 4, 1), {"padding_mode": "reflect"}),
    "Conv1d(5, 7, 4)": (nn.Conv1d, torch.nn.Conv1d, (5, 7, 4), {}),
    "Conv1d(6, 6, 3, groups=6)": (nn.Conv1d, torch.nn.Conv1d, (6, 6, 3), {"groups": 6}),
}


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("ours, theirs, args, kwargs", list(INITS.values()), ids=list(INITS))
def test_init_bit_for_bit_with_torch_generator(ours, theirs, args, kwargs, seed, dtype):
    """``rng=TorchGenerator(seed)`` draws exactly what ``torch.manual_seed(seed); torch.nn.Conv2d(...)`` draws."""
    layer = ours(*args, **kwargs, dtype=dtype, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    twin = theirs(*args, **kwargs, dtype=TORCH_DTYPES[dtype])
    state = twin.state_dict()
    assert list(layer.state_dict()) == list(state)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, state[name].numpy(), err_msg=name)


@pytest.mark.parametrize("groups", [1, 2])
def test_init_within_torchs_bound(groups, dtype, rng):
    """weight and bias within 1/sqrt(fan_in), fan_in = in_channels / groups · kH · kW, and spread over it."""
    layer = nn.Conv2d(8, 12, (3, 5), groups=groups, dtype=dtype, rng=rng)
    bound = dtype.type(1 / np.sqrt(8 // groups * 15))
    for param in (layer.weight.data, layer.bias.data):
        assert np.all(np.abs(param) <= bound)
    assert np.max(np.abs(layer.weight.data)) > 0.9 * bound  # the bound itself, not a smaller one


# ---- the module's interface -----------------------------------------------------------------------------------------
REPRS = [
    (nn.Conv2d, torch.nn.Conv2d, (4, 6, (3, 2)), dict(stride=(2, 1), padding=(1, 0), dilation=2, groups=2, bias=False,
                                                      padding_mode="reflect")),
    (nn.Conv2d, torch.nn.Conv2d, (4, 6, 3), {}),
    (nn.Conv2d, torch.nn.Conv2d, (4, 6, 3), dict(padding="same")),
    (nn.Conv1d, torch.nn.Conv1d, (4, 6, 3), dict(padding="valid", padding_mode="circular")),
    (nn.Conv1d, torch.nn.Conv1d, (4, 6, 3), dict(padding=2, stride=3)),
]


@pytest.mark.parametrize("ours, theirs, args, kwargs", REPRS, ids=[repr(r[2:]) for r in REPRS])
def test_repr_attributes_and_state_dict_like_torch(ours, theirs, args, kwargs):
    layer, twin = ours(*args, **kwargs), theirs(*args, **kwargs)
    assert repr(layer) == repr(twin)
    for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                 "padding_mode", "_reversed_padding_repeated_twice"):
        assert tuple(np.atleast_1d(getattr(layer, name))) == tuple(np.atleast_1d(getattr(twin, name))), name
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: tuple(v.shape) for k, v in twin.state_dict().items()}


def test_from_torch_copies_a_torch_conv(rng):
    twin = torch.nn.Conv2d(C_IN, C_OUT, (3, 2), stride=2, padding="valid", groups=2, padding_mode="replicate",
                           dtype=torch.float32)
    layer = from_torch(twin)
    assert layer.weight.dtype == np.float32 and repr(layer) == repr(twin)
    x = rng.normal(size=(N, C_IN, H, W)).astype(np.float32)
    assert_close(layer(x), twin(to_tensor(x)).detach().numpy(), name="out")


def test_backward_before_forward_raises(rng):
    with pytest.raises(RuntimeError, match=re.escape("Conv2d.backward() was called before forward()")):
        nn.Conv2d(C_IN, C_OUT, 3).backward(rng.normal(size=(N, C_OUT, H - 2, W - 2)))


# ---- bad constructor arguments --------------------------------------------------------------------------------------
BAD_CONSTRUCTION = {
    "groups 0": ((4, 6, 3), dict(groups=0), "groups must be a positive integer"),
    "in_channels not divisible": ((3, 6, 3), dict(groups=2), "in_channels must be divisible by groups"),
    "out_channels not divisible": ((4, 5, 3), dict(groups=2), "out_channels must be divisible by groups"),
    "padding string": ((4, 6, 3), dict(padding="full"), "Invalid padding string 'full'"),
    "same, stride 2": ((4, 6, 3), dict(padding="same", stride=2), "padding='same' is not supported for strided"),
    "same, stride (1, 2)": ((4, 6, 3), dict(padding="same", stride=(1, 2)), "not supported for strided"),
    "padding_mode": ((4, 6, 3), dict(padding_mode="wrap"), "padding_mode must be one of"),
    "negative in_channels": ((-1, 6, 3), {}, "negative dimension -1"),
    "negative kernel": ((4, 6, -2), {}, "negative dimension -2"),
}


@pytest.mark.parametrize("cls", ["Conv2d", "Conv1d"])
@pytest.mark.parametrize("args, kwargs, match", list(BAD_CONSTRUCTION.values()), ids=list(BAD_CONSTRUCTION))
def test_bad_construction_raises_like_torch(args, kwargs, match, cls):
    expected = torch_error(lambda: getattr(torch.nn, cls)(*args, **kwargs))
    assert match in str(expected)
    with pytest.raises(type(expected), match=re.escape(match)):
        getattr(nn, cls)(*args, **kwargs)


# ---- bad inputs at the forward --------------------------------------------------------------------------------------
def _x(shape, dtype=np.float64):
    return lambda r: (r.normal(size=shape) * 3).astype(dtype)


BAD_INPUTS_2D = {
    "wrong channels": ({}, _x((N, 5, H, W)), "expected input\\[3, 5, 9, 7\\] to have 4 channels, but got 5"),
    "wrong channels, unbatched": ({}, _x((5, H, W)), "expected input\\[1, 5, 9, 7\\] to have 4 channels"),
    "wrong channels, groups": (dict(groups=2), _x((N, 6, H, W)), "to have 4 channels, but got 6"),
    "kernel larger than the input": (dict(kernel_size=(4, 8)), _x((N, C_IN, H, W)),
                                     "Kernel size: \\(4 x 8\\). Kernel size can't be greater"),
    "dilated kernel larger": (dict(dilation=(1, 4)), _x((N, C_IN, H, W)), "Kernel size: \\(3 x 9\\)"),
    "empty height": ({}, _x((N, C_IN, 0, W)), "Kernel size can't be greater"),
    "empty height, padded": (dict(padding=2), _x((N, C_IN, 0, W)), "Only zero batch or zero channel inputs"),
    "stride 0": (dict(stride=0), _x((N, C_IN, H, W)), "non-positive stride is not supported"),
    "negative stride": (dict(stride=(1, -1)), _x((N, C_IN, H, W)), "non-positive stride is not supported"),
    "negative padding": (dict(padding=-1), _x((N, C_IN, H, W)), "negative padding is not supported"),
    "dilation 0": (dict(dilation=0), _x((N, C_IN, H, W)), "dilation should be greater than zero"),
    "kernel 0": (dict(kernel_size=(0, 2)), _x((N, C_IN, H, W)), "kernel size should be greater than zero"),
    "1-tuple kernel": (dict(kernel_size=(3,)), _x((N, C_IN, H, W)), None),
    "2-d": ({}, _x((H, W)), re.escape("input to conv2d, but got input of size: [9, 7]")),
    "5-d": ({}, _x((2, N, C_IN, H, W)), re.escape("Expected 3D (unbatched) or 4D (batched) input to conv2d")),
    "1-d": ({}, _x((W,)), "input to conv2d"),
    "0-d": ({}, lambda r: np.array(r.normal()), re.escape("but got input of size: []")),
    "int64": ({}, _x((N, C_IN, H, W), np.int64), None),
    "uint8": ({}, _x((N, C_IN, H, W), np.uint8), None),
    "bool": ({}, _x((N, C_IN, H, W), np.bool_), None),
    "bool, no bias": (dict(bias=False), _x((N, C_IN, H, W), np.bool_), None),
    "uint8, no bias, dilated": (dict(bias=False, dilation=2), _x((N, C_IN, H, W), np.uint8), None),
    "int32, no bias, dilated": (dict(bias=False, dilation=2), _x((N, C_IN, H, W), np.int32), None),
    "int8, no bias, dilated": (dict(bias=False, dilation=(1, 2)), _x((N, C_IN, H, W), np.int8), None),
    "int64, no bias, dilated": (dict(bias=False, dilation=2), _x((N, C_IN, H, W), np.int64), None),
    "int32, no bias": (dict(bias=False), _x((N, C_IN, H, W), np.int32), None),
    "uint16, no bias": (dict(bias=False), _x((N, C_IN, H, W), np.uint16), None),
    "uint32": ({}, _x((N, C_IN, H, W), np.uint32), None),
    "int32, 'same', dilated": (dict(padding="same", dilation=2), _x((N, C_IN, H, W), np.int32), None),
    "uint8, 'valid'": (dict(padding="valid"), _x((N, C_IN, H, W), np.uint8), None),
    "bool, 'same'": (dict(padding="same"), _x((N, C_IN, H, W), np.bool_), None),
    "bool, 'valid', dilated": (dict(padding="valid", dilation=2), _x((N, C_IN, H, W), np.bool_), None),
    "int64, no bias": (dict(bias=False), _x((N, C_IN, H, W), np.int64), None),
    "float16": ({}, _x((N, C_IN, H, W), np.float16), None),
    "complex": ({}, _x((N, C_IN, H, W), np.complex128), None),
    "int64 of the wrong rank": ({}, _x((H, W), np.int64), None),
    "float32 into float64": ({}, _x((N, C_IN, H, W), np.float32), None),
    "list": ({}, lambda r: r.normal(size=(1, C_IN, 3, 3)).tolist(), None),
    "reflect, padding = size": (dict(padding=(1, W), padding_mode="reflect"), _x((N, C_IN, H, W)),
                                "Padding size should be less than the corresponding input dimension"),
    "reflect, unbatched, padding = size": (dict(padding=(H, 1), padding_mode="reflect"), _x((C_IN, H, W)),
                                           "Padding size should be less than"),
    "reflect, empty height": (dict(padding=1, padding_mode="reflect"), _x((N, C_IN, 0, W)),
                              "possibly 0 batch size and other non-zero dimensions"),
    "replicate, empty channels": (dict(padding=1, padding_mode="replicate"), _x((N, 0, H, W)), "non-zero dimensions"),
    "circular, padding > size": (dict(padding=(H + 1, 1), padding_mode="circular"), _x((N, C_IN, H, W)),
                                 "Padding value causes wrapping around more than once"),
    "reflect, 2-d": (dict(padding_mode="reflect"), _x((H, W)), "Padding size 4 is not supported for 2D input"),
    "replicate, 5-d": (dict(padding=1, padding_mode="replicate"), _x((1, N, C_IN, H, W)), "Padding size 4"),
    "circular, 1-d": (dict(padding=1, padding_mode="circular"), _x((W,)), "Padding length should be less than"),
    "reflect, bool": (dict(padding=1, padding_mode="reflect"), _x((N, C_IN, H, W), np.bool_), None),
    "circular, bool": (dict(padding=1, padding_mode="circular"), _x((N, C_IN, H, W), np.bool_), None),
    "reflect, int64": (dict(padding=1, padding_mode="reflect"), _x((N, C_IN, H, W), np.int64), None),
    "reflect, cropped below the kernel": (dict(padding=-3, padding_mode="reflect"), _x((N, C_IN, H, W)),
                                          "Kernel size can't be greater"),
    "replicate, cropped to a negative size": (dict(padding=-4, padding_mode="replicate"), _x((N, C_IN, H, W)), None),
    "replicate, wrong channels": (dict(padding=1, padding_mode="replicate"), _x((N, 5, H, W)),
                                  re.escape("expected input[3, 5, 11, 9] to have 4 channels")),
}


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning")
@pytest.mark.parametrize("config, make_x, match", list(BAD_INPUTS_2D.values()), ids=list(BAD_INPUTS_2D))
def test_conv2d_bad_input_raises_like_torch(config, make_x, match, rng):
    """torch's exception class (``match`` in both messages), and nothing changed: parameters, and the cache of the
    last good forward."""
    layer = make(nn.Conv2d, {"kernel_size": 3, **config}, np.float64, rng)
    if "kernel_size" not in config and "padding" not in config or config.get("padding", 0) in (0, 1, 2):
        try:  # a good forward first, so a failed one must leave its cache in place
            layer(rng.normal(size=(N, C_IN, H, W)))
        except RuntimeError:  # the configuration itself is refused at every forward (stride 0...)
            pass
    bad = make_x(rng)
    before = None if isinstance(bad, list) else bad.copy()
    assert_rejected_like_torch(layer, to_torch(layer), bad, match=match)
    if before is not None:
        np.testing.assert_array_equal(bad, before)


BAD_INPUTS_1D = {
    "wrong channels": ({}, _x((N, 5, L)), re.escape("weight of size [6, 4, 3], expected input[3, 5, 11] to have 4")),
    "kernel larger": (dict(kernel_size=12), _x((N, C_IN, L)), re.escape("Kernel size: (12)")),
    "3-d unbatched is 2-d": ({}, _x((L,)), re.escape("Expected 2D (unbatched) or 3D (batched) input to conv1d")),
    "4-d": ({}, _x((1, N, C_IN, L)), "input to conv1d, but got input of size"),
    "empty length, padded": (dict(padding=2), _x((N, C_IN, 0)), "Only zero batch or zero channel inputs"),
    "bool, no bias": (dict(bias=False), _x((N, C_IN, L), np.bool_), None),
    "float16": ({}, _x((N, C_IN, L), np.float16), None),
    "reflect, 1-d": (dict(padding=1, padding_mode="reflect"), _x((L,)), "Padding size 2 is not supported for 1D"),
    "reflect, 4-d": (dict(padding=1, padding_mode="reflect"), _x((1, N, C_IN, L)), "Padding size 2"),
    "replicate, 0-d": (dict(padding=1, padding_mode="replicate"), lambda r: np.array(1.0), "Padding length"),
    "reflect, padding = size": (dict(padding=L, padding_mode="reflect"), _x((N, C_IN, L)), "should be less than"),
}


@pytest.mark.parametrize("config, make_x, match", list(BAD_INPUTS_1D.values()), ids=list(BAD_INPUTS_1D))
def test_conv1d_bad_input_raises_like_torch(config, make_x, match, rng):
    layer = make(nn.Conv1d, {"kernel_size": 3, **config}, np.float64, rng)
    assert_rejected_like_torch(layer, to_torch(layer), make_x(rng), match=match)


def _functional_args(rng, **changes):
    args = dict(x=rng.normal(size=(N, C_IN, H, W)), weight=rng.normal(size=(C_OUT, C_IN, 3, 2)),
                bias=rng.normal(size=C_OUT))
    args.update(changes)
    return args


BAD_FUNCTIONAL = {
    "same with stride 2": (dict(padding="same", stride=2), "padding='same' is not supported for strided convolutions"),
    "padding string": (dict(padding="full"), "Invalid padding string: 'full'"),
    "groups 0": (dict(groups=0), "non-positive groups is not supported"),
    "groups not dividing the weight": (dict(groups=4, weight=np.ones((C_OUT, 1, 3, 2))),
                                       "Given groups=4, expected weight to be divisible by 4"),
    "bias of the wrong size": (dict(bias=np.ones(C_OUT + 1)), "expected bias to be 1-dimensional with 6 elements"),
    "3-d weight": (dict(weight=np.ones((C_OUT, C_IN, 3))), None),
    "stride of 3 values": (dict(stride=(1, 1, 1)), "expected stride to be a single integer value or a list of 2"),
    "float32 weight": (dict(weight=np.ones((C_OUT, C_IN, 3, 2), np.float32)), None),
    "float32 bias": (dict(bias=np.ones(C_OUT, np.float32)), None),
    "int64 weight": (dict(weight=np.ones((C_OUT, C_IN, 3, 2), np.int64)), None),
}


@pytest.mark.parametrize("changes, match", list(BAD_FUNCTIONAL.values()), ids=list(BAD_FUNCTIONAL))
def test_functional_bad_arguments_raise_like_torch(changes, match, rng):
    args = _functional_args(rng, **changes)
    options = {k: v for k, v in args.items() if k not in ("x", "weight", "bias")}
    tensors = [to_tensor(args[k]) for k in ("x", "weight", "bias")]
    expected = torch_error(lambda: torch.nn.functional.conv2d(*tensors, **options))
    if match is not None:
        assert match in str(expected)
    with pytest.raises(type(expected), match=None if match is None else re.escape(match)):
        F.conv2d_forward(args["x"], args["weight"], args["bias"], **options)


@pytest.mark.parametrize("kind", ["int64", "float16", "complex128", "bool"])
def test_functional_with_weight_of_the_input_dtype(kind, rng):
    """torch computes an integer, float16 or complex convolution (handnn: TypeError naming the dtype) and has no bool
    kernel (NotImplementedError)."""
    x, weight = (rng.normal(size=(N, C_IN, H, W)) * 3).astype(kind), np.ones((C_OUT, C_IN, 3, 3), kind)
    error = None
    try:
        torch.nn.functional.conv2d(to_tensor(x), to_tensor(weight))
    except Exception as exc:  # noqa: BLE001 - the class is compared
        error = type(exc)
    with pytest.raises(error or TypeError, match=None if error else "handnn computes in float32 or float64"):
        F.conv2d_forward(x, weight)


# ---- the padding modes' pair against torch.nn.functional.pad --------------------------------------------------------
PADS = [((2, 3, 7, 6), (1, 2, 3, 0)), ((2, 3, 7, 6), (5, 5, 6, 6)), ((3, 7, 6), (2, 1, 1, 2)), ((2, 3, 7), (3, 2)),
        ((3, 7), (6, 6)), ((3, 7), (7, 7)), ((2, 3, 7, 6), (-1, -1, -2, -2)), ((2, 3, 7, 6), (-1, 2, 0, -3)),
        ((2, 3, 7), (1, -6)), ((2, 3, 7), (-2, 5)), ((1, 1, 7), (4, -6))]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape, pad", PADS, ids=[f"{s}-{p}" for s, p in PADS])
def test_pad_pair_matches_torch(shape, pad, mode, rng):
    """Forward exactly torch's F.pad (values are copied), backward its gradient folded back, crops included."""
    x = rng.normal(size=shape)
    xt = to_tensor(x).requires_grad_()
    try:
        out_t = torch.nn.functional.pad(xt, pad, mode=mode)
    except RuntimeError:  # reflect: padding >= size; circular: padding > what is left after cropping
        with pytest.raises(RuntimeError, match="Padding"):
            conv_functional.pad_forward(x, pad, mode)
        return
    dout = rng.normal(size=out_t.shape)
    out_t.backward(to_tensor(dout))
    out, cache = conv_functional.pad_forward(x, pad, mode)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    assert_close(conv_functional.pad_backward(dout, cache), xt.grad.numpy(), name="dx")


def test_circular_padding_beyond_what_cropping_keeps_is_refused(rng):
    """Padding 4 around the 1 position a crop of 6 keeps of 7: torch raises on some shapes (RuntimeError, memory
    overlap, as for (1, 1, 7)) and returns uninitialised memory on others ((2, 3, 7)); handnn refuses both."""
    for shape in [(1, 1, 7), (2, 3, 7)]:
        with pytest.raises(RuntimeError, match="wrapping around more than once"):
            conv_functional.pad_forward(rng.normal(size=shape), (4, -6), "circular")


# ---- randomized configurations --------------------------------------------------------------------------------------
@st.composite
def conv_configs(draw):
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2, 3]))
    in_channels, out_channels = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    padding_mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.tuples(*[st.integers(0, 3)] * dims)))
    stride = (1,) * dims if padding == "same" else tuple(draw(st.integers(1, 3)) for _ in range(dims))
    batch = draw(st.sampled_from([None, 1, 2, 3]))  # None: unbatched
    spatial = tuple(draw(st.integers(1, 9)) for _ in range(dims))
    return dict(dims=dims, in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                padding_mode=padding_mode), (() if batch is None else (batch,)) + (in_channels,) + spatial


@given(config=conv_configs(), dtype=st.sampled_from([np.float64, np.float32]).map(np.dtype),
       seed=st.integers(0, 2**32 - 1))
def test_random_configurations_match_torch(config, dtype, seed):
    """Any valid configuration torch computes, handnn computes the same; the ones torch refuses, handnn refuses with
    its class."""
    kwargs, shape = config
    cls = nn.Conv1d if kwargs.pop("dims") == 1 else nn.Conv2d
    rng = np.random.default_rng(seed)
    layer = cls(**kwargs, dtype=dtype, rng=rng)
    x = rng.normal(size=shape).astype(dtype)
    twin = to_torch(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            with torch.no_grad():
                expected = twin(to_tensor(x)).shape
        except Exception:  # noqa: BLE001 - torch refuses: handnn must refuse with the same class
            assert_rejected_like_torch(layer, twin, x)
            return
    assume(np.prod(expected) > 0)
    step_parity(layer, x, rng.normal(size=expected).astype(dtype), nonzero=False)
