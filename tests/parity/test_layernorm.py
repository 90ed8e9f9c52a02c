"""LayerNorm against torch: output, dx, dweight, dbias for int and tuple ``normalized_shape`` over 2-d to 4-d
inputs, every option, a formula check, no mutation, and the bad inputs (torch's class and message, state unchanged).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from handnn import nn
from reference import assert_close, assert_step_parity, to_torch
from reference.harness import assert_inputs_untouched, assert_rejected_like_torch


def _build(normalized_shape, kwargs, dtype, rng) -> nn.LayerNorm:
    """A LayerNorm whose weight/bias are random (not 1/0), so a swapped or ignored affine term shows."""
    module = nn.LayerNorm(normalized_shape, **kwargs, dtype=dtype)
    if module.weight is not None:
        module.weight.data[...] = rng.uniform(0.5, 1.5, module.weight.shape)
    if module.bias is not None:
        module.bias.data[...] = rng.normal(size=module.bias.shape)
    return module


def _batch(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """A different mean and scale per sample (dim 0), and a per-feature offset along the last dim.

    Sample 0 has a small variance (about 1e-4) around mean 0 (centred, so float32 keeps its deviations).
    """
    lead = (shape[0],) + (1,) * (len(shape) - 1)
    loc = rng.normal(0.0, 2.0, lead)
    scale = rng.uniform(0.3, 3.0, lead)
    loc[0], scale[0] = 0.0, 1e-2
    return (loc + scale * (rng.normal(0.0, 0.5, shape[-1]) + rng.standard_normal(shape))).astype(dtype)


CONFIGS = [
    pytest.param(5, (9, 5), {}, id="int-over-2d"),
    pytest.param(4, (7, 5, 4), {}, id="int-over-3d"),
    pytest.param((5, 4), (7, 5, 4), {}, id="tuple2-over-3d"),
    pytest.param((4, 3), (7, 5, 4, 3), {}, id="tuple2-over-4d"),
    pytest.param((5, 4, 3), (7, 5, 4, 3), {}, id="tuple3-over-4d"),
    pytest.param(3, (7, 5, 4, 3), {"elementwise_affine": False}, id="int-over-4d-no-affine"),
    pytest.param((4, 3), (7, 5, 4, 3), {"elementwise_affine": False}, id="tuple2-over-4d-no-affine"),
    pytest.param(4, (7, 5, 4), {"bias": False}, id="int-over-3d-bias=False"),
    pytest.param((5, 4), (7, 5, 4), {"bias": False, "eps": 1e-3}, id="tuple2-over-3d-bias=False-eps=1e-3"),
    pytest.param((4, 3), (7, 5, 4, 3), {"eps": 1e-2}, id="tuple2-over-4d-eps=1e-2"),
    pytest.param([6], (6,), {}, id="list-over-1d"),
]


@pytest.mark.parametrize("normalized_shape, shape, kwargs", CONFIGS)
def test_parity_train_and_eval(normalized_shape, shape, kwargs, dtype, rng):
    """Output, dx and every parameter gradient, in training and eval (LayerNorm has no mode difference)."""
    module = _build(normalized_shape, kwargs, dtype, rng)
    twin = to_torch(module)
    assert list(module.state_dict()) == list(twin.state_dict())
    for mode in ("train step 1", "train step 2", "eval"):
        if mode == "eval":
            module.eval()
            twin.eval()
        assert_step_parity(module, twin, _batch(rng, shape, dtype), rng.normal(size=shape).astype(dtype),
                           prefix=f"{mode}: ")


@pytest.mark.parametrize("normalized_shape, shape", [(4, (7, 5, 4)), ((4, 3), (7, 5, 4, 3))],
                         ids=["int-over-3d", "tuple2-over-4d"])
def test_output_formula(normalized_shape, shape, dtype, rng):
    """Per sample over the trailing dims, biased variance, eps inside the sqrt (computed here in float64)."""
    module = _build(normalized_shape, {"eps": 1e-3}, dtype, rng)
    x = _batch(rng, shape, dtype)
    axes = tuple(range(len(shape) - module.weight.ndim, len(shape)))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-3) * module.weight.data + module.bias.data
    assert_close(module(x), expected.astype(dtype), "layer_norm output")


@pytest.mark.parametrize("normalized_shape, shape, kwargs",
                         [(4, (7, 5, 4), {}), ((4, 3), (7, 5, 4, 3), {}), (3, (7, 5, 4, 3), {"bias": False})],
                         ids=["int-over-3d", "tuple2-over-4d", "bias=False"])
def test_input_and_upstream_gradient_unchanged(normalized_shape, shape, kwargs, dtype, rng):
    module = _build(normalized_shape, kwargs, dtype, rng)
    x = _batch(rng, shape, dtype)
    dout = rng.normal(size=shape).astype(dtype)
    assert_inputs_untouched(module, x, dout)


def _float(dtype=np.float64):
    return lambda rng, shape: rng.normal(size=shape).astype(dtype)


def _ints(rng, shape):
    return rng.integers(-3, 4, size=shape).astype(np.int64)


def _shape_message(normalized, size):
    return re.escape(f"Given normalized_shape={normalized}, expected input with shape [*, "
                     f"{', '.join(map(str, normalized))}], but got input of size{size}")


BAD = [
    # id, normalized_shape, kwargs, input shape, input maker, match (torch and handnn), handnn-only match
    ("int-wrong-trailing", 5, {}, (3, 6), _float(), _shape_message([5], [3, 6]), None),
    ("tuple-wrong-trailing", (4, 3), {}, (7, 3, 4), _float(), _shape_message([4, 3], [7, 3, 4]), None),
    ("tuple-too-few-dims", (4, 3), {}, (3,), _float(), _shape_message([4, 3], [3]), None),
    ("no-affine-wrong-trailing", (5, 4), {"elementwise_affine": False}, (7, 4, 5), _float(),
     _shape_message([5, 4], [7, 4, 5]), None),
    ("int64-with-affine", 5, {}, (3, 5), _ints, "mixed dtype", None),
    ("int64-no-affine", 5, {"elementwise_affine": False}, (3, 5), _ints, None, "int64"),
    ("float32-into-float64", (4, 3), {}, (7, 4, 3), _float(np.float32), "mixed dtype", None),
    ("float32-into-float64-bias=False", 3, {"bias": False}, (7, 4, 3), _float(np.float32), "mixed dtype", None),
    # two faults: torch checks the parameters' dtype first, the shape before an integer input without them
    ("float32-and-wrong-trailing", 5, {}, (3, 6), _float(np.float32), "mixed dtype", None),
    ("int64-no-affine-and-wrong-trailing", 5, {"elementwise_affine": False}, (3, 6), _ints,
     _shape_message([5], [3, 6]), None),
]


@pytest.mark.parametrize("normalized_shape, kwargs, shape, make, match, own_match",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_bad_input_raises_like_torch_and_changes_nothing(normalized_shape, kwargs, shape, make, match, own_match,
                                                         rng):
    module = _build(normalized_shape, kwargs, np.float64, rng)
    twin = to_torch(module)
    good = rng.normal(size=(2,) + module.normalized_shape)
    module(good)
    assert_rejected_like_torch(module, twin, make(rng, shape), match, own_match)
