"""GroupNorm against torch: output, dx, dweight, dbias for several (num_groups, num_channels) including G = 1
and G = C, over 2-d, 3-d and 4-d inputs, ``affine=False``, a formula check, no mutation, and the bad inputs
(torch's class and message, state unchanged).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from handnn import nn
from reference import assert_close, assert_step_parity, to_torch
from reference.harness import assert_inputs_untouched, assert_rejected_like_torch, torch_error

SHAPES = {"2d": (7, 6), "3d": (7, 6, 5), "4d": (7, 6, 4, 3)}


def _build(num_groups, num_channels, kwargs, dtype, rng) -> nn.GroupNorm:
    """A GroupNorm whose per-channel weight/bias are random (not 1/0), so per-group affine or a swap shows."""
    module = nn.GroupNorm(num_groups, num_channels, **kwargs, dtype=dtype)
    if module.weight is not None:
        module.weight.data[...] = rng.uniform(0.5, 1.5, num_channels)
        module.bias.data[...] = rng.normal(size=num_channels)
    return module


def _batch(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """A different mean and scale per (sample, channel).

    Channel 0 has a small variance (1e-4) around mean 0 (centred, so float32 keeps its deviations): with G = C it
    is a group of its own whose variance is comparable with eps. The other means stay within a few standard
    deviations: a group of 3 values clustered far from 0 loses float32 digits to cancellation on both sides.
    """
    bshape = shape[:2] + (1,) * (len(shape) - 2)
    loc = rng.normal(0.0, 1.0, bshape)
    scale = rng.uniform(0.5, 2.0, bshape)
    loc[:, 0], scale[:, 0] = 0.0, 1e-2
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


CONFIGS = [
    pytest.param(groups, 6, kwargs, ndim, id=f"G={groups}-C=6-{ndim}{'-' + tag if tag else ''}")
    for groups, kwargs, tag in [(1, {}, ""), (2, {}, ""), (3, {}, ""), (6, {}, ""),
                                (2, {"affine": False}, "affine=False"), (3, {"eps": 1e-2}, "eps=1e-2")]
    for ndim in SHAPES
    if not (groups == 6 and ndim == "2d")  # one value per group: see test_one_value_per_group
]


@pytest.mark.parametrize("num_groups, num_channels, kwargs, ndim", CONFIGS)
def test_parity_train_and_eval(num_groups, num_channels, kwargs, ndim, dtype, rng):
    """Output, dx and every parameter gradient, in training and eval (GroupNorm has no mode difference)."""
    shape = SHAPES[ndim]
    batch = _batch
    if dtype == np.float32 and math.prod(shape[1:]) // num_groups == 2:
        # two values per group: see _pair_batch for why float32 needs a well-conditioned input
        eps = kwargs.get("eps", 1e-5)
        batch = lambda rng, shape, dtype: _pair_batch(rng, shape, num_groups, eps).astype(dtype)  # noqa: E731
    module = _build(num_groups, num_channels, kwargs, dtype, rng)
    twin = to_torch(module)
    assert list(module.state_dict()) == list(twin.state_dict())
    for mode in ("train step 1", "train step 2", "eval"):
        if mode == "eval":
            module.eval()
            twin.eval()
        assert_step_parity(module, twin, batch(rng, shape, dtype), rng.normal(size=shape).astype(dtype),
                           prefix=f"{mode}: ")


def _pair_batch(rng: np.random.Generator, shape, num_groups: int, eps: float) -> np.ndarray:
    """Groups of two values m + d, m - d with |m| small and d ~ sqrt(eps): the float32-conditioned input.

    With two values per group, x_hat = +-s, s = d / sqrt(d^2 + eps), and dx = inv_std * (g_a - g_b) / 2 * (1 - s^2)
    with g = weight * dout. For d^2 >> eps the factor 1 - s^2 = eps / (d^2 + eps) is a residue of float32
    roundoff (relative error ~ 1e-7 / (1 - s^2)) in any kernel, torch's included, so the libraries would compare
    noise. With d^2 ~ eps the factor is O(1) and float32 is held to its usual tolerance.
    """
    n, c = shape
    per_group = (n, num_groups, 1)
    m = rng.normal(0.0, 0.1 * math.sqrt(eps), per_group)
    d = math.sqrt(eps) * rng.uniform(0.5, 2.0, per_group) * rng.choice([-1.0, 1.0], per_group)
    return np.concatenate([m + d, m - d], axis=2).reshape(shape)


@pytest.mark.parametrize("shape", [(7, 6), (7, 6, 1), (2, 6, 1, 1)], ids=str)
def test_one_value_per_group(shape, dtype, rng):
    """G = C on (N, C) or with trailing dims of size 1: each group is one value, so x_hat = 0, out = bias, dx = 0
    and dweight = 0 exactly.

    torch agrees in float64; its float32 kernel returns out - bias of up to ~5e-5 (noise in x - mean), so in
    float32 the exact values are checked and torch is not consulted.
    """
    module = _build(6, 6, {}, dtype, rng)
    x = _batch(rng, shape, dtype)
    dout = rng.normal(size=shape).astype(dtype)
    if dtype == np.float64:
        assert_step_parity(module, to_torch(module), x, dout, nonzero=False)
    module.zero_grad()
    bias = module.bias.data.reshape((6,) + (1,) * (len(shape) - 2))
    assert_close(module(x), np.broadcast_to(bias, shape), "out = bias")
    dx = module.backward(dout)
    assert dx.shape == shape and np.all(dx == 0), "dx = 0 exactly (x_hat is 0 whatever the input)"
    assert_close(module.weight.grad, np.zeros(6, dtype), "dweight = 0")
    assert_close(module.bias.grad, dout.reshape(shape[0], 6, -1).sum(axis=(0, 2)), "dbias = sum(dout)")


def test_affine_false_accepts_other_channel_counts_like_torch(dtype, rng):
    """Without parameters torch only needs C divisible by G, whatever num_channels says."""
    module = _build(2, 6, {"affine": False}, dtype, rng)
    twin = to_torch(module)
    assert_step_parity(module, twin, _batch(rng, (7, 4, 5), dtype), rng.normal(size=(7, 4, 5)).astype(dtype))


@pytest.mark.parametrize("num_groups", [1, 2, 3])
def test_output_formula(num_groups, dtype, rng):
    """Statistics per (sample, group of C/G consecutive channels), affine per channel (computed here)."""
    shape = (7, 6, 4, 3)
    module = _build(num_groups, 6, {"eps": 1e-3}, dtype, rng)
    x = _batch(rng, shape, dtype)
    grouped = x.astype(np.float64).reshape(7, num_groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=2, keepdims=True)
    x_hat = ((grouped - mean) / np.sqrt(var + 1e-3)).reshape(shape)
    expected = x_hat * module.weight.data.reshape(1, 6, 1, 1) + module.bias.data.reshape(1, 6, 1, 1)
    assert_close(module(x), expected.astype(dtype), "group_norm output")


@pytest.mark.parametrize("shape", [(1, 6, 4, 1), (1, 6, 1, 4), (1, 6, 5)], ids=str)
def test_one_sample_with_length_more_than_one_is_a_batch_like_torch(shape, dtype, rng):
    """One value per group per position, but several positions: torch's size check counts every trailing dim (its
    product, 4 or 5, is more than 1), so it computes."""
    module = _build(6, 6, {}, dtype, rng)
    assert_step_parity(module, to_torch(module), _batch(rng, shape, dtype), rng.normal(size=shape).astype(dtype))


@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("ndim", ["3d", "4d"])
def test_upstream_gradient_of_any_layout(layout, ndim, dtype, rng):
    """A non-contiguous upstream gradient (a transposed or strided view) gives the gradients of its contiguous copy,
    and torch's."""
    shape = SHAPES[ndim]
    module = _build(3, 6, {}, dtype, rng)
    x = _batch(rng, shape, dtype)
    base = rng.normal(size=shape[::-1] if layout == "transposed" else shape[:-1] + (2 * shape[-1],)).astype(dtype)
    dout = base.T if layout == "transposed" else base[..., ::2]
    assert not dout.flags.c_contiguous
    assert_step_parity(module, to_torch(module), x, dout)


@pytest.mark.parametrize("ndim", list(SHAPES))
def test_input_and_upstream_gradient_unchanged(ndim, dtype, rng):
    shape = SHAPES[ndim]
    module = _build(3, 6, {}, dtype, rng)
    x = _batch(rng, shape, dtype)
    dout = rng.normal(size=shape).astype(dtype)
    assert_inputs_untouched(module, x, dout)


@pytest.mark.parametrize("num_groups, num_channels", [(4, 6), (7, 6), (4, 10)])
def test_constructor_rejects_indivisible_channels(num_groups, num_channels):
    expected = torch_error(lambda: torch.nn.GroupNorm(num_groups, num_channels))
    message = re.escape(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
    assert re.search(message, str(expected)), str(expected)
    with pytest.raises(type(expected), match=message):
        nn.GroupNorm(num_groups, num_channels)


def _float(dtype=np.float64):
    return lambda rng, shape: rng.normal(size=shape).astype(dtype)


def _ints(rng, shape):
    return rng.integers(-3, 4, size=shape).astype(np.int64)


def _weight_message(shape):
    return re.escape("Expected weight to be a vector of size equal to the number of channels in input, but got "
                     f"weight of shape [6] and input of shape {list(shape)}")


def _divisible_message(shape, groups):
    return re.escape("Expected number of channels in input to be divisible by num_groups, but got input of "
                     f"shape {list(shape)} and num_groups={groups}")


ONE_VALUE = re.escape("Expected more than 1 value per channel when training, got input size [1, 6]")
BAD = [
    # id, num_groups, kwargs, training, input shape, input maker, match (torch and handnn), handnn-only match
    ("wrong-channels-divisible", 2, {}, True, (3, 8, 4), _float(), _weight_message((3, 8, 4)), None),
    ("wrong-channels-indivisible", 2, {}, True, (3, 5, 4), _float(), _divisible_message((3, 5, 4), 2), None),
    ("no-affine-wrong-channels-indivisible", 3, {"affine": False}, True, (3, 4, 2), _float(),
     _divisible_message((3, 4, 2), 3), None),
    ("1d-input", 2, {}, True, (6,), _float(),
     re.escape("Expected at least 2 dimensions for input tensor but received 1"), None),
    ("one-value-per-group-train", 6, {}, True, (1, 6), _float(), ONE_VALUE, None),
    ("one-value-per-group-eval", 6, {}, False, (1, 6), _float(), ONE_VALUE, None),
    ("int64-with-affine", 2, {}, True, (3, 6, 4), _ints, "mixed dtype", None),
    ("int64-no-affine", 2, {"affine": False}, True, (3, 6, 4), _ints, None, "int64"),
    ("float32-into-float64", 3, {}, True, (3, 6, 4, 2), _float(np.float32), "mixed dtype", None),
    # two faults: torch checks values per group, then channels, then dtypes
    ("int64-and-one-value-per-group", 6, {}, True, (1, 6), _ints, ONE_VALUE, None),
    ("indivisible-and-one-value-per-group", 2, {}, True, (1, 3), _float(),
     re.escape("Expected more than 1 value per channel when training, got input size [1, 2]"), None),
    ("float32-and-wrong-channels", 2, {}, True, (3, 8), _float(np.float32), _weight_message((3, 8)), None),
]


@pytest.mark.parametrize("num_groups, kwargs, training, shape, make, match, own_match",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_bad_input_raises_like_torch_and_changes_nothing(num_groups, kwargs, training, shape, make, match,
                                                         own_match, rng):
    module = _build(num_groups, 6, kwargs, np.float64, rng).train(training)
    twin = to_torch(module)
    module(rng.normal(size=(2, 6, 3)))
    assert_rejected_like_torch(module, twin, make(rng, shape), match, own_match)
    assert module.training is training
