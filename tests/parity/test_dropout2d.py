"""Dropout2d against torch: whole channels dropped, masks shared both ways and torch's own mask reproduced from a seed
(``TorchGenerator``), bit for bit; p = 0, p = 1, eval, invalid p, the keep rate per channel, torch's handling of
inputs that are not 4-d (3-d is (N, C, L), with its warnings), dtypes, and inputs left unchanged.

As for Dropout, the arithmetic is element-wise: with the same keep-mask, out and dx must equal torch's bit for bit
(torch multiplies by ``noise = mask / (1 - p)``, computed as ``float32(1) / float32(1 - p)`` for float32 input).
"""
from __future__ import annotations

import re
import warnings
from typing import Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import handnn.functional as F
from handnn import nn
from handnn.random import TorchGenerator
from reference import Run, assert_nonzero, assert_step_parity, from_torch, run_handnn, run_torch, to_numpy, \
    to_tensor, to_torch
from reference.harness import assert_bit_exact, assert_nondegenerate, torch_error
from reference.twin import MaskedDropout2d

PS = [0.1, 0.15, 0.3, 0.45, 0.5, 0.8]
SHAPE = (9, 7, 5, 4)  # N, C, H, W all different
NOISE = (9, 7, 1, 1)
RANK_WARNING = r"dropout2d: Received a {}-D input to dropout2d, which is deprecated"
THREE_D_WARNING = r"dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout"


def draw(rng: np.random.Generator, shape: Tuple[int, ...], dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def rng_state(generator) -> object:
    return generator.bit_generator.state


def torch_dropout2d(x: np.ndarray, dout: np.ndarray, p: float, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's own training dropout2d of ``x`` from ``torch.manual_seed(seed)``: (keep-mask (N, C, 1, ...), out, dx).

    The mask is ``F.dropout2d(ones((N, C, 1, ...)), p) != 0`` from the same seed (torch draws its noise in that
    shape whatever the spatial size); torch's global RNG is restored after.
    """
    noise_shape = x.shape[:2] + (1,) * (x.ndim - 2)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's rank warnings (3-d, 5-d): asserted elsewhere
        xt = to_tensor(x).requires_grad_()
        torch.manual_seed(seed)
        m = TF.dropout2d(torch.ones(noise_shape, dtype=xt.dtype), p)
        torch.manual_seed(seed)
        out = TF.dropout2d(xt, p)
        out.backward(to_tensor(dout))
    m, out = to_numpy(m), to_numpy(out)
    with np.errstate(invalid="ignore"):  # the recipe itself: torch's dropout2d of x is x times that noise
        np.testing.assert_array_equal(out, x * m)
    return m != 0, out, to_numpy(xt.grad)


# ---- handnn -> torch ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", PS)
def test_handnn_mask_drives_twin_bit_exact(p, dtype, rng):
    layer = nn.Dropout2d(p, rng=rng)
    twin = to_torch(layer)
    assert isinstance(twin, MaskedDropout2d)
    x, dout = draw(rng, SHAPE, dtype), draw(rng, SHAPE, dtype)
    ours = run_handnn(layer, x, dout)
    theirs = run_torch(twin, x, dout)
    assert layer.mask.shape == NOISE and layer.mask.dtype == np.bool_
    assert_nondegenerate(layer.mask)
    assert_bit_exact(ours, theirs)
    assert_nonzero("dx", theirs.dx)
    # whole channels: each (n, c) map is all zero or all x * float(1)/float(1 - p)
    scale = dtype.type(1) / dtype.type(1 - p)
    np.testing.assert_array_equal(theirs.out, np.where(layer.mask, x * scale, dtype.type(0)))


def test_sequential_several_forwards(dtype, rng):
    """Pooling, channel dropout and a Linear over several steps: the twin follows each new mask."""
    model = nn.Sequential(nn.MaxPool2d(2), nn.Dropout2d(0.45, rng=rng), nn.Flatten(),
                          nn.Linear(7 * 2 * 2, 3, dtype=dtype, rng=rng))
    twin = to_torch(model)
    masks = []
    for _ in range(3):
        x, dout = draw(rng, SHAPE, dtype), draw(rng, (9, 3), dtype)
        assert_step_parity(model, twin, x, dout)
        assert_nondegenerate(model[1].mask)
        masks.append(model[1].mask.copy())
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])


# ---- torch -> handnn ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", PS)
def test_torch_mask_via_use_mask(p, dtype, rng, seed):
    x, dout = draw(rng, SHAPE, dtype), draw(rng, SHAPE, dtype)
    mask, out, dx = torch_dropout2d(x, dout, p, seed)
    assert_nondegenerate(mask)
    layer = from_torch(torch.nn.Dropout2d(p), rng=rng)
    assert type(layer) is nn.Dropout2d and layer.p == p
    before = rng_state(rng)
    layer.use_mask(mask)
    ours = run_handnn(layer, x, dout)
    assert rng_state(rng) == before, "an injected mask must not draw from the generator"
    np.testing.assert_array_equal(layer.mask, mask)
    assert_bit_exact(ours, Run(out, dx))
    ours_out, cache = F.dropout2d_forward(x, p, mask=mask)
    assert_bit_exact(Run(ours_out, F.dropout2d_backward(dout, cache)), Run(out, dx))


@pytest.mark.parametrize("shape", [SHAPE, (1, 30, 3, 2), (6, 5, 8), (3, 12, 2, 3, 2), (7, 6)],
                         ids=["4-d", "batch-one", "3-d (N, C, L)", "5-d", "2-d"])
@pytest.mark.parametrize("p", [0.15, 0.5, 0.8])
def test_torch_generator_draws_torchs_mask(p, shape, dtype, seed, rng):
    """``rng=TorchGenerator(seed)`` draws torch's own mask: the module's and the functional's output and dx are
    those of ``torch.manual_seed(seed); F.dropout2d(x, p)``, bit for bit (torch draws ``(N, C, 1, ...)``)."""
    x, dout = draw(rng, shape, dtype), draw(rng, shape, dtype)
    mask, out, dx = torch_dropout2d(x, dout, p, seed)
    assert_nondegenerate(mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the rank warnings: test_rank_warnings_like_torch
        layer = nn.Dropout2d(p, rng=TorchGenerator(seed))
        assert_bit_exact(run_handnn(layer, x, dout), Run(out, dx))
        np.testing.assert_array_equal(layer.mask, mask)
        ours_out, cache = F.dropout2d_forward(x, p, rng=TorchGenerator(seed))
    assert_bit_exact(Run(ours_out, F.dropout2d_backward(dout, cache)), Run(out, dx))


def test_torch_generator_stream_continues_like_torch(dtype, rng, seed):
    """Three forwards from one generator: the second and third masks are torch's second and third draws too (each
    forward consumes exactly what torch's does; an empty input and p = 0 consume nothing)."""
    x = draw(rng, SHAPE, dtype)
    layer = nn.Dropout2d(0.3, rng=TorchGenerator(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(3):
            ours = layer(x)
            layer(np.empty((0, 7, 5, 4), dtype))
            nn.Dropout2d(0.0, rng=layer.rng)(x)
            np.testing.assert_array_equal(ours, to_numpy(TF.dropout2d(to_tensor(x), 0.3)), err_msg=f"step {step}")


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_nan_and_inf_like_torch(p, dtype, rng, seed):
    """A dropped inf or NaN channel becomes NaN (x * 0) in out and dx, as in torch; kept ones are scaled."""
    x, dout = draw(rng, (20, 6, 3, 2), dtype), draw(rng, (20, 6, 3, 2), dtype)
    x[:, 0], x[:, 1, 0], x[:, 2, 1, 1] = np.inf, -np.inf, np.nan
    dout[:, 3, 0, 0], dout[:, 4] = np.inf, np.nan
    mask, out, dx = torch_dropout2d(x, dout, p, seed)
    for channel in (0, 3):
        assert 0 < mask[:, channel].sum() < mask.shape[0]
    layer = nn.Dropout2d(p, rng=rng)
    layer.use_mask(mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert_bit_exact(run_handnn(layer, x, dout), Run(out, dx))


def test_use_mask_waits_for_a_training_forward(dtype, rng, seed):
    x, dout = draw(rng, SHAPE, dtype), draw(rng, SHAPE, dtype)
    mask, out, dx = torch_dropout2d(x, dout, 0.3, seed)
    layer = nn.Dropout2d(0.3, rng=rng)
    layer.use_mask(mask)
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert_bit_exact(run_handnn(layer, x, dout), Run(out, dx))
    layer(x)  # used once only: the next forward draws its own mask
    assert not np.array_equal(layer.mask, mask)


# ---- p = 0, p = 1, eval, empty --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["p0", "eval", "empty batch", "empty plane"])
def test_identity_without_drawing(case, dtype, rng):
    """p = 0, eval, or an empty input: torch returns the input itself and draws nothing; so does handnn."""
    shape = {"empty batch": (0, 7, 5, 4), "empty plane": (9, 7, 0, 4)}.get(case, SHAPE)
    p = 0.0 if case == "p0" else 0.4
    layer = nn.Dropout2d(p, rng=rng).train(case != "eval")
    x, dout = draw(rng, shape, dtype), draw(rng, shape, dtype)
    before = rng_state(rng)
    assert layer(x) is x
    assert layer.backward(dout) is dout
    assert rng_state(rng) == before and layer.mask is None
    out, cache = F.dropout2d_forward(x, p, case != "eval", rng=rng)
    assert out is x and F.dropout2d_backward(dout, cache) is dout and rng_state(rng) == before
    xt = to_tensor(x)
    assert TF.dropout2d(xt, p, case != "eval") is xt  # what torch does
    assert_bit_exact(run_handnn(layer, x, dout), run_torch(to_torch(layer), x, dout))


def test_p1_zeroes_and_nan_like_torch(dtype, rng):
    x, dout = draw(rng, SHAPE, dtype), draw(rng, SHAPE, dtype)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    layer = nn.Dropout2d(1.0, rng=rng)
    before = rng_state(rng)
    ours = run_handnn(layer, x, dout)
    assert rng_state(rng) == before, "p = 1 must not draw from the generator"
    xt = to_tensor(x).requires_grad_()
    yt = TF.dropout2d(xt, 1.0)
    yt.backward(to_tensor(dout))
    assert_bit_exact(ours, Run(to_numpy(yt), to_numpy(xt.grad)))
    assert_bit_exact(ours, run_torch(to_torch(layer), x, dout))
    assert np.isnan(ours.out[0, 0, 0, :3]).all() and np.count_nonzero(np.nan_to_num(ours.out)) == 0
    assert layer.mask.shape == NOISE and not layer.mask.any()


# ---- ranks other than 4 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 5, 8), (7, 6), (3, 4, 2, 3, 5)], ids=["3-d", "2-d", "5-d"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_rank_warnings_like_torch(shape, training, rng):
    """torch warns for every input that is not 4-d (in eval too) and takes a 3-d input as (N, C, L); handnn gives
    the same UserWarnings, pointing at the caller of the functional."""
    x = draw(rng, shape, np.float64)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        TF.dropout2d(to_tensor(x), 0.5, training)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        F.dropout2d_forward(x, 0.5, training, rng=rng)
    assert [(w.category, str(w.message)) for w in ours] == [(w.category, str(w.message)) for w in theirs]
    assert ours and all(w.filename == __file__ for w in ours)
    pattern = THREE_D_WARNING if len(shape) == 3 else RANK_WARNING.format(len(shape))
    assert re.search(pattern, str(ours[-1].message))


@pytest.mark.parametrize("shape", [(), (6,)], ids=["0-d", "1-d"])
@pytest.mark.parametrize("p, training", [(0.5, True), (0.5, False), (1.0, True), (0.0, True)],
                         ids=["train", "eval", "p1", "p0"])
def test_fewer_than_two_dims_like_torch(shape, p, training, rng):
    """Below 2 dims torch raises in training with 0 < p < 1 (RuntimeError), and otherwise computes (x, or x * 0)."""
    x = np.asarray(draw(rng, shape, np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            expected = to_numpy(TF.dropout2d(to_tensor(x), p, training))
        except RuntimeError as error:
            with pytest.raises(RuntimeError, match="^" + re.escape(str(error)) + "$"):
                nn.Dropout2d(p, rng=rng).train(training)(x)
            return
        out = nn.Dropout2d(p, rng=rng).train(training)(x)
    np.testing.assert_array_equal(out, expected)
    assert out.shape == shape


# ---- invalid p, dtypes, bad masks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_invalid_p_like_torch(p, rng):
    expected = torch_error(lambda: torch.nn.Dropout2d(p))
    with pytest.raises(type(expected), match="^" + re.escape(str(expected)) + "$"):
        nn.Dropout2d(p)
    x = draw(rng, SHAPE, np.float64)
    expected = torch_error(lambda: TF.dropout2d(to_tensor(x), p))
    with pytest.raises(type(expected), match="^" + re.escape(str(expected)) + "$"):
        F.dropout2d_forward(x, p, rng=rng)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_nan_p_like_torch(training, rng):
    """NaN passes torch's Python check (the module constructs) and fails ATen's (RuntimeError), in eval too."""
    x = draw(rng, SHAPE, np.float64)
    expected = torch_error(lambda: torch.nn.Dropout2d(float("nan")).train(training)(to_tensor(x)))
    with pytest.raises(type(expected), match="^" + re.escape(str(expected)) + "$"):
        nn.Dropout2d(float("nan"), rng=rng).train(training)(x)


@pytest.mark.parametrize("dtype_name", ["int64", "int32", "uint8", "uint16", "bool", "float16", "complex128"])
@pytest.mark.parametrize("p", [0.5, 1.0])
def test_other_dtypes_like_torch(dtype_name, p, rng):
    """Drawing a mask: torch's class (RuntimeError for integers and bool, NotImplementedError where it has no
    Bernoulli kernel); TypeError where torch computes (float16). p = 1 is x * 0 in any dtype, as in torch."""
    x = (draw(rng, SHAPE, np.float64) * 3).astype(dtype_name)
    try:
        expected = to_numpy(TF.dropout2d(torch.from_numpy(x.copy()), p))
    except Exception as error:  # noqa: BLE001 - the class is compared
        with pytest.raises(type(error)):
            nn.Dropout2d(p, rng=rng)(x)
        return
    if p == 1.0:
        out = nn.Dropout2d(p, rng=rng)(x)
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)
    else:
        with pytest.raises(TypeError, match="float32 or float64"):
            nn.Dropout2d(p, rng=rng)(x)


BAD_MASKS = {
    "full shape": (lambda m: np.broadcast_to(m, SHAPE).copy(), ValueError, "does not match"),
    "(N, C)": (lambda m: m[:, :, 0, 0].copy(), ValueError, "does not match"),
    "transposed": (lambda m: np.swapaxes(m, 0, 1).copy(), ValueError, "does not match"),
    "float": (lambda m: m.astype(np.float64), TypeError, "must be a boolean ndarray"),
    "list": (lambda m: m.tolist(), TypeError, "must be a boolean ndarray"),
}


@pytest.mark.parametrize("bad", list(BAD_MASKS))
def test_bad_mask_raises(bad, dtype, rng):
    make, error, message = BAD_MASKS[bad]
    x, dout = draw(rng, SHAPE, dtype), draw(rng, SHAPE, dtype)
    bad_mask = make(rng.random(NOISE) < 0.7)
    with pytest.raises(error, match=message):
        F.dropout2d_forward(x, 0.3, mask=bad_mask)
    layer = nn.Dropout2d(0.3, rng=rng)
    layer(x)
    mask, dx = layer.mask.copy(), layer.backward(dout)
    before = rng_state(rng)
    layer.use_mask(bad_mask)
    with pytest.raises(error, match=message):
        layer(x)
    np.testing.assert_array_equal(layer.mask, mask)
    np.testing.assert_array_equal(layer.backward(dout), dx)
    assert rng_state(rng) == before


def test_list_input_is_a_type_error(rng):
    """torch's ``input.dim()`` on a list raises AttributeError by accident; handnn raises TypeError (the deviation
    the edge sweep lists for modules)."""
    with pytest.raises(TypeError, match="numpy.ndarray"):
        F.dropout2d_forward([[[[0.5]]]], 0.5, rng=rng)


# ---- statistics, inputs unchanged, twin ----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_keep_rate_per_channel(p, dtype, seed):
    """Over 400 x 60 (sample, channel) draws: the overall kept fraction within 5 sigma of 1 - p, each channel's
    kept fraction (over 400 samples) within 5 sigma, and every channel map all kept or all dropped."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, (400, 60, 3, 2)).astype(dtype)
    layer = nn.Dropout2d(p, rng=rng)
    out = layer(x)
    mask = layer.mask[:, :, 0, 0]
    assert abs(mask.mean() - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / mask.size)
    per_channel = mask.mean(axis=0)
    assert np.all(np.abs(per_channel - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / mask.shape[0])), per_channel
    kept_maps = (out != 0).reshape(400, 60, -1)
    assert np.array_equal(kept_maps.all(axis=2), kept_maps.any(axis=2)), "a channel map was partly dropped"
    np.testing.assert_array_equal(kept_maps[:, :, 0], mask)


@pytest.mark.parametrize("p, training", [(0.3, True), (0.45, True), (1.0, True), (0.3, False)],
                         ids=["p0.3", "p0.45", "p1", "eval"])
def test_no_mutation_and_dtype_kept(p, training, dtype, rng):
    x, dout = draw(rng, SHAPE, dtype), draw(rng, SHAPE, dtype)
    x_copy, dout_copy = x.copy(), dout.copy()
    layer = nn.Dropout2d(p, rng=rng).train(training)
    out = layer(x)
    dx = layer.backward(dout)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    if training:
        assert not np.shares_memory(out, x) and not np.shares_memory(dx, dout)


def test_constructor_repr_and_twins(rng):
    assert repr(nn.Dropout2d(0.3)) == repr(torch.nn.Dropout2d(0.3))
    with pytest.raises(NotImplementedError, match="inplace"):
        nn.Dropout2d(0.3, inplace=True)
    layer = nn.Dropout2d(0.3, rng=rng)
    twin = to_torch(layer)
    assert isinstance(twin, MaskedDropout2d) and twin.source is layer and twin.p == 0.3
    back = from_torch(twin, rng=rng)
    assert type(back) is nn.Dropout2d and back.p == 0.3 and back is not layer
    assert not isinstance(layer, nn.Dropout) and not isinstance(nn.Dropout(0.3), nn.Dropout2d)  # as in torch


def test_backward_before_forward_raises(rng):
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dropout2d(0.3, rng=rng).backward(draw(rng, SHAPE, np.float64))
