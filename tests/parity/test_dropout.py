"""Dropout against torch: shared masks in both directions, bit-exact; p = 0, p = 1, eval, bad inputs, statistics.

Dropout is element-wise, so there is no summation order to forgive: with the same keep-mask, handnn must give
torch's output and input gradient bit for bit (torch multiplies by ``float32(1) / float32(1 - p)`` for float32
input; p = 0.15 and 0.45 are values where that differs from ``float32(1 / (1 - p))``).
"""
from __future__ import annotations

import re
from typing import Tuple

import numpy as np
import pytest
import torch

import handnn.functional as F
from handnn import nn
from reference import Run, assert_nonzero, assert_step_parity, from_torch, run_handnn, run_torch, to_numpy, \
    to_tensor, to_torch
from reference.harness import assert_bit_exact, assert_nondegenerate

# 0.15 and 0.45: float32(1) / float32(1 - p) != float32(1 / (1 - p)); 0.1, 0.3, 0.8: 1 / (1 - p) is inexact.
PS = [0.1, 0.15, 0.3, 0.45, 0.5, 0.8]
STAT_PS = [0.1, 0.3, 0.5, 0.8]
SHAPES = [(9, 6), (7, 5, 4, 3)]
INVALID_PS = [-0.1, 1.5]


def draw(rng: np.random.Generator, shape: Tuple[int, ...], dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def rng_state(generator: np.random.Generator) -> dict:
    return generator.bit_generator.state


def torch_dropout(x: np.ndarray, dout: np.ndarray, p: float, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's own training dropout of ``x`` from ``torch.manual_seed(seed)``: (keep-mask, out, dx).

    The mask is ``F.dropout(ones_like(x), p) != 0`` drawn from the same seed; torch's global RNG is restored after.
    """
    with torch.random.fork_rng(devices=[]):
        xt = to_tensor(x).requires_grad_()
        torch.manual_seed(seed)
        m = torch.nn.functional.dropout(torch.ones_like(xt), p)
        torch.manual_seed(seed)
        out = torch.nn.functional.dropout(xt, p)
        out.backward(to_tensor(dout))
    m, out = to_numpy(m), to_numpy(out)
    # the recipe itself: torch's dropout of x is x times the noise it drew for ones (else the test is vacuous)
    with np.errstate(invalid="ignore"):  # inf * 0 = NaN on both sides
        np.testing.assert_array_equal(out, x * m)
    return m != 0, out, to_numpy(xt.grad)


def torch_error(fn) -> BaseException:
    """The exception torch raises for ``fn()`` (the test fails if torch raises nothing)."""
    with pytest.raises(Exception) as info:
        fn()
    return info.value


# ---- handnn -> torch: handnn's mask drives the twin ----------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", PS)
def test_handnn_mask_drives_twin_bit_exact(p, shape, dtype, rng):
    layer = nn.Dropout(p, rng=rng)
    twin = to_torch(layer)
    x, dout = draw(rng, shape, dtype), draw(rng, shape, dtype)
    ours = run_handnn(layer, x, dout)
    theirs = run_torch(twin, x, dout)
    assert_nondegenerate(layer.mask)
    assert_bit_exact(ours, theirs)
    assert_nonzero("dx", theirs.dx)
    # the twin really applied handnn's mask: dropped elements are 0, kept ones x * float(1)/float(1 - p)
    scale = dtype.type(1) / dtype.type(1 - p)
    np.testing.assert_array_equal(theirs.out, np.where(layer.mask, x * scale, dtype.type(0)))


@pytest.mark.parametrize("p", [0.15, 0.45, 0.8])
def test_sequential_with_linear_several_forwards(p, dtype, rng):
    model = nn.Sequential(nn.Linear(6, 5, dtype=dtype, rng=rng), nn.Dropout(p, rng=rng),
                          nn.Linear(5, 4, dtype=dtype, rng=rng))
    twin = to_torch(model)
    masks = []
    for _ in range(3):  # a new mask per forward; the twin must follow each one
        x, dout = draw(rng, (9, 6), dtype), draw(rng, (9, 4), dtype)
        assert_step_parity(model, twin, x, dout)
        assert_nondegenerate(model[1].mask)
        masks.append(model[1].mask.copy())
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])


# ---- torch -> handnn: torch's own mask reproduced ------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", PS)
def test_torch_mask_via_use_mask(p, shape, dtype, rng, seed):
    x, dout = draw(rng, shape, dtype), draw(rng, shape, dtype)
    mask, out, dx = torch_dropout(x, dout, p, seed)
    assert_nondegenerate(mask)
    layer = from_torch(torch.nn.Dropout(p), rng=rng)
    before = rng_state(rng)
    layer.use_mask(mask)
    ours = run_handnn(layer, x, dout)
    assert rng_state(rng) == before, "an injected mask must not draw from the generator"
    np.testing.assert_array_equal(layer.mask, mask)
    assert_bit_exact(ours, Run(out, dx))
    assert_nonzero("dx", dx)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", PS)
def test_torch_mask_via_functional(p, shape, dtype, rng, seed):
    x, dout = draw(rng, shape, dtype), draw(rng, shape, dtype)
    mask, out, dx = torch_dropout(x, dout, p, seed)
    ours_out, cache = F.dropout_forward(x, p, mask=mask)
    ours_dx = F.dropout_backward(dout, cache)
    assert_bit_exact(Run(ours_out, ours_dx), Run(out, dx))


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_nan_and_inf_like_torch(p, dtype, rng, seed):
    """A dropped inf becomes NaN (inf * 0) in out and in dx, as in torch; kept ones are scaled; no warning."""
    x, dout = draw(rng, (20, 6), dtype), draw(rng, (20, 6), dtype)
    x[:, 0], x[:, 1], x[:, 2] = np.inf, -np.inf, np.nan
    dout[:, 3], dout[:, 4] = np.inf, np.nan
    mask, out, dx = torch_dropout(x, dout, p, seed)
    for column in (0, 3):  # both a dropped and a kept inf, in x and in dout
        assert 0 < mask[:, column].sum() < mask.shape[0]
    layer = nn.Dropout(p, rng=rng)
    layer.use_mask(mask)
    assert_bit_exact(run_handnn(layer, x, dout), Run(out, dx))
    ours_out, cache = F.dropout_forward(x, p, mask=mask)
    assert_bit_exact(Run(ours_out, F.dropout_backward(dout, cache)), Run(out, dx))


def test_use_mask_waits_for_a_training_forward(dtype, rng, seed):
    """``use_mask`` applies to the next *training* forward: an eval forward in between does not consume it."""
    x, dout = draw(rng, (9, 6), dtype), draw(rng, (9, 6), dtype)
    mask, out, dx = torch_dropout(x, dout, 0.3, seed)
    layer = nn.Dropout(0.3, rng=rng)
    layer.use_mask(mask)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    layer.train()
    assert_bit_exact(run_handnn(layer, x, dout), Run(out, dx))
    layer(x)  # used once only: the next forward draws its own mask
    assert not np.array_equal(layer.mask, mask)


# ---- p = 0, p = 1, eval ----------------------------------------------------------------------------------------

def test_p0_is_identity_without_drawing(dtype, rng):
    layer = nn.Dropout(0.0, rng=rng)
    twin = to_torch(layer)
    x, dout = draw(rng, (9, 6), dtype), draw(rng, (9, 6), dtype)
    before = rng_state(rng)
    ours = run_handnn(layer, x, dout)
    assert rng_state(rng) == before, "p = 0 must not draw from the generator"
    assert layer.mask is None
    theirs = run_torch(twin, x, dout)
    assert_bit_exact(ours, theirs)
    np.testing.assert_array_equal(ours.out, x)
    np.testing.assert_array_equal(ours.dx, dout)
    # the functional core, checked against torch's real F.dropout
    out, cache = F.dropout_forward(x, 0.0, rng=rng)
    assert rng_state(rng) == before
    np.testing.assert_array_equal(out, to_numpy(torch.nn.functional.dropout(to_tensor(x), 0.0)))
    np.testing.assert_array_equal(F.dropout_backward(dout, cache), dout)


def test_p1_zeroes_and_nan_like_torch(dtype, rng):
    x, dout = draw(rng, (9, 6), dtype), draw(rng, (9, 6), dtype)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    layer = nn.Dropout(1.0, rng=rng)
    ours = run_handnn(layer, x, dout)
    theirs = run_torch(to_torch(layer), x, dout)
    assert_bit_exact(ours, theirs)
    # torch's real F.dropout (not only the twin): x * 0, so NaN/inf -> NaN and the rest 0; gradient 0
    xt = to_tensor(x).requires_grad_()
    yt = torch.nn.functional.dropout(xt, 1.0)
    yt.backward(to_tensor(dout))
    assert_bit_exact(ours, Run(to_numpy(yt), to_numpy(xt.grad)))
    assert np.isnan(ours.out[0, :3]).all() and not np.isnan(ours.out[1:]).any()
    np.testing.assert_array_equal(ours.out[1:], np.zeros_like(x[1:]))
    out, cache = F.dropout_forward(x, 1.0, rng=rng)
    assert_bit_exact(Run(out, F.dropout_backward(dout, cache)), Run(to_numpy(yt), to_numpy(xt.grad)))


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_eval_is_identity(p, dtype, rng):
    layer = nn.Dropout(p, rng=rng).eval()
    twin = to_torch(layer)
    assert not twin.training
    x, dout = draw(rng, (7, 5, 4, 3), dtype), draw(rng, (7, 5, 4, 3), dtype)
    before = rng_state(rng)
    ours = run_handnn(layer, x, dout)
    assert rng_state(rng) == before, "eval must not draw from the generator"
    assert layer.mask is None
    assert_bit_exact(ours, run_torch(twin, x, dout))
    expected = to_numpy(torch.nn.functional.dropout(to_tensor(x), p, training=False))
    np.testing.assert_array_equal(ours.out, expected)
    np.testing.assert_array_equal(ours.out, x)
    np.testing.assert_array_equal(ours.dx, dout)
    out, cache = F.dropout_forward(x, p, training=False, rng=rng)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(F.dropout_backward(dout, cache), dout)
    assert rng_state(rng) == before


def test_empty_input_like_torch(dtype, rng):
    x, dout = np.empty((0, 5), dtype), np.empty((0, 5), dtype)
    layer = nn.Dropout(0.3, rng=rng)
    ours = run_handnn(layer, x, dout)
    xt = to_tensor(x).requires_grad_()
    yt = torch.nn.functional.dropout(xt, 0.3)
    yt.backward(to_tensor(dout))
    assert_bit_exact(ours, Run(to_numpy(yt), to_numpy(xt.grad)))


# ---- invalid p -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", INVALID_PS)
def test_invalid_p_constructor(p):
    expected = torch_error(lambda: torch.nn.Dropout(p))
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        nn.Dropout(p)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("p", INVALID_PS)
def test_invalid_p_functional(p, training, dtype, rng):
    x = draw(rng, (9, 6), dtype)
    x_copy = x.copy()
    expected = torch_error(lambda: torch.nn.functional.dropout(to_tensor(x), p, training=training))
    before = rng_state(rng)
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        F.dropout_forward(x, p, training=training, rng=rng)
    assert rng_state(rng) == before
    np.testing.assert_array_equal(x, x_copy)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_nan_p_like_torch(training, dtype, rng):
    """torch's Python check lets NaN through (``nn.Dropout(nan)`` constructs); ATen's forward raises RuntimeError."""
    x = draw(rng, (9, 6), dtype)
    twin = torch.nn.Dropout(float("nan")).train(training)
    expected = torch_error(lambda: twin(to_tensor(x)))
    layer = nn.Dropout(float("nan"), rng=rng).train(training)
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        layer(x)
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        F.dropout_forward(x, float("nan"), training=training, rng=rng)
    assert layer.mask is None


# ---- the mask's statistics and determinism ---------------------------------------------------------------------

@pytest.mark.parametrize("p", STAT_PS)
def test_keep_rate_and_mean_statistics(p, dtype, seed):
    """Kept fraction within 5 sigma of 1 - p; sum(out) within 5 sigma of sum(x) (inverted dropout is unbiased).

    Var[sum(out)] = sum(x^2) * p / (1 - p). Deterministic: the generator is seeded.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, (240, 250)).astype(dtype)
    layer = nn.Dropout(p, rng=rng)
    out = layer(x)
    n = x.size
    kept = layer.mask.mean()
    assert abs(kept - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / n), f"kept {kept:.4f}, expected {1 - p}"
    x64 = x.astype(np.float64)
    bias = abs(out.astype(np.float64).sum() - x64.sum())
    assert bias <= 5 * np.sqrt((x64 ** 2).sum() * p / (1 - p)), f"sum(out) - sum(x) = {bias:.1f}"
    np.testing.assert_array_equal(out == 0, ~layer.mask)


@pytest.mark.parametrize("p", PS)
def test_mask_is_uniform_below_keep_probability(p, dtype, seed):
    """The documented draw: keep = u < round((1 - p) * 2^32), u = the 32-bit halves of the generator's next raw
    64-bit words, low half first (a formula, from the same seed; 9 x 7 = 63 elements: an odd count uses a half word)."""
    layer = nn.Dropout(p, rng=np.random.default_rng(seed))
    layer(np.ones((9, 7), dtype))
    reference = np.random.default_rng(seed)
    words = [int(w) for w in reference.bit_generator.random_raw(32)]
    u = np.array([half for w in words for half in (w & 0xFFFFFFFF, w >> 32)][:63]).reshape(9, 7)
    np.testing.assert_array_equal(layer.mask, u < round((1 - p) * 2**32))
    # exactly ceil(63 / 2) = 32 words were drawn: one more would shift every later mask
    assert layer.rng.bit_generator.state == reference.bit_generator.state


@pytest.mark.parametrize("p", STAT_PS)
def test_same_seed_same_masks_new_mask_each_forward(p, dtype, seed):
    a, b = nn.Dropout(p, rng=np.random.default_rng(seed)), nn.Dropout(p, rng=np.random.default_rng(seed))
    x = np.ones((7, 5, 4, 3), dtype)
    masks_a, masks_b = [], []
    for _ in range(3):
        a(x)
        b(x)
        masks_a.append(a.mask.copy())
        masks_b.append(b.mask.copy())
    np.testing.assert_array_equal(np.stack(masks_a), np.stack(masks_b))
    assert not np.array_equal(masks_a[0], masks_a[1]) and not np.array_equal(masks_a[1], masks_a[2])


# ---- bad inputs: mask, dtype; state unchanged ------------------------------------------------------------------

BAD_MASKS = {
    "transposed": (lambda m: m.T.copy(), ValueError, "does not match the input's shape"),
    "broadcastable": (lambda m: m[:1], ValueError, "does not match the input's shape"),
    "float": (lambda m: m.astype(np.float64), TypeError, "must be a boolean ndarray"),
    "int": (lambda m: m.astype(np.int64), TypeError, "must be a boolean ndarray"),
    "list": (lambda m: m.tolist(), TypeError, "must be a boolean ndarray"),
}


def assert_state_unchanged(layer: nn.Dropout, mask: np.ndarray, dout: np.ndarray, dx: np.ndarray, rng,
                           before: dict) -> None:
    """After a failed forward: the last mask, the cache (backward gives the same dx) and the generator are intact."""
    np.testing.assert_array_equal(layer.mask, mask)
    np.testing.assert_array_equal(layer.backward(dout), dx)
    assert rng_state(rng) == before


@pytest.mark.parametrize("bad", list(BAD_MASKS))
def test_bad_mask_raises(bad, dtype, rng):
    make, error, message = BAD_MASKS[bad]
    x, dout = draw(rng, (9, 6), dtype), draw(rng, (9, 6), dtype)
    good = rng.random((9, 6)) < 0.7
    bad_mask = make(good)
    with pytest.raises(error, match=message):
        F.dropout_forward(x, 0.3, mask=bad_mask)
    layer = nn.Dropout(0.3, rng=rng)
    layer(x)
    mask, dx = layer.mask.copy(), layer.backward(dout)
    before = rng_state(rng)
    layer.use_mask(bad_mask)
    with pytest.raises(error, match=message):
        layer(x)
    assert_state_unchanged(layer, mask, dout, dx, rng, before)


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.bool_], ids=lambda d: np.dtype(d).name)
def test_integer_input_raises_like_torch(int_dtype, rng):
    x = (rng.integers(0, 3, (9, 6))).astype(int_dtype)
    expected = torch_error(lambda: torch.nn.functional.dropout(torch.from_numpy(x), 0.3))
    assert type(expected) is RuntimeError  # the class torch raises for integer input to a training dropout
    with pytest.raises(type(expected), match="float32 or float64"):
        F.dropout_forward(x, 0.3, rng=rng)
    layer = nn.Dropout(0.3, rng=rng)
    good, dout = draw(rng, (9, 6), np.float64), draw(rng, (9, 6), np.float64)
    layer(good)
    mask, dx = layer.mask.copy(), layer.backward(dout)
    before = rng_state(rng)
    with pytest.raises(type(expected), match="float32 or float64"):
        layer(x)
    assert_state_unchanged(layer, mask, dout, dx, rng, before)


def test_backward_before_forward_raises(dtype, rng):
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dropout(0.3, rng=rng).backward(draw(rng, (9, 6), dtype))


# ---- no mutation, dtype kept -----------------------------------------------------------------------------------

@pytest.mark.parametrize("p, training", [(0.3, True), (0.45, True), (0.0, True), (1.0, True), (0.3, False)],
                         ids=["p0.3", "p0.45", "p0", "p1", "eval"])
def test_no_mutation_and_dtype_kept(p, training, dtype, rng):
    x, dout = draw(rng, (7, 5, 4, 3), dtype), draw(rng, (7, 5, 4, 3), dtype)
    x_copy, dout_copy = x.copy(), dout.copy()
    layer = nn.Dropout(p, rng=rng).train(training)
    out = layer(x)
    dx = layer.backward(dout)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    mask = rng.random(x.shape) < 0.5
    mask_copy = mask.copy()
    out, cache = F.dropout_forward(x, p, training, mask=mask)
    dx = F.dropout_backward(dout, cache)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    np.testing.assert_array_equal(mask, mask_copy)


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_cache_keeps_torch_noise(p, dtype, rng):
    """The cache holds torch's ``noise = mask / (1 - p)`` in the input's dtype (what backward multiplies by, one
    input-sized array); ``mask`` is read from it, and the layer's ``mask`` is None before any forward."""
    layer = nn.Dropout(p, rng=rng)
    assert layer.mask is None
    x = draw(rng, (30, 7), dtype)
    layer(x)
    noise, mask = layer._cache.noise, layer.mask
    assert noise.dtype == dtype and noise.shape == x.shape and mask.dtype == np.bool_
    scale = dtype.type(1) / dtype.type(1 - p) if p < 1 else dtype.type(0)
    np.testing.assert_array_equal(noise, np.where(mask, scale, dtype.type(0)))
    if p < 1:
        assert_nondegenerate(mask)
