"""Parity of ``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm`` and ``clip_grads_with_norm_`` with
``torch.nn.utils``: the returned total norm (value and dtype), the clipped gradients, every norm order, skipped
``None`` gradients, mixed dtypes, non-finite gradients, and a clipped SGD trajectory."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

import handnn.nn.utils
from handnn import optim
from handnn.nn import Linear, Parameter
from handnn.nn.modules.sparse import Embedding
from handnn.nn.utils import (
    clip_grad_norm, clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm,
)
from reference import assert_close, assert_nonzero
from reference.harness import torch_error

SHAPES = [(5, 3), (3,), (2, 3, 4)]  # several parameters of different shapes
NORM_TYPES = [2.0, 1.0, math.inf, 0.5, 3.0, "inf", 0.0, -math.inf]
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

Pair = Tuple[List[Parameter], List[torch.nn.Parameter]]


def make_params(grads: Sequence[Optional[np.ndarray]]) -> Pair:
    """handnn and torch parameters holding copies of the same gradients (None: no gradient)."""
    ours, theirs = [], []
    for grad in grads:
        shape, dtype = ((1,), np.float64) if grad is None else (grad.shape, grad.dtype)
        p = Parameter(np.zeros(shape, dtype))
        t = torch.nn.Parameter(torch.zeros(shape, dtype=TORCH_DTYPES[np.dtype(dtype)]))
        if grad is not None:
            p.grad = grad.copy()
            t.grad = torch.from_numpy(grad.copy())
        ours.append(p)
        theirs.append(t)
    return ours, theirs


def random_grads(rng: np.random.Generator, dtype, shapes=SHAPES, scale: float = 1.0) -> List[np.ndarray]:
    return [(scale * rng.normal(size=shape)).astype(dtype) for shape in shapes]


def assert_same_grads(ours: List[Parameter], theirs: List[torch.nn.Parameter], nonzero: bool = True) -> None:
    for i, (p, t) in enumerate(zip(ours, theirs)):
        if t.grad is None:
            assert p.grad is None, f"grad {i}"
            continue
        if nonzero:
            assert_nonzero(f"grad {i}", t.grad.numpy())
        assert_close(p.grad, t.grad.numpy(), name=f"grad {i}")


def assert_same_total(total, total_t: torch.Tensor) -> None:
    assert isinstance(total, np.ndarray) and total.shape == (), type(total)
    assert_close(total, total_t.numpy(), name="total norm")  # also checks the dtype


# ---- clip_grad_norm_ ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("clips", [True, False], ids=["max_norm below the norm", "max_norm above the norm"])
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=[str(n) for n in NORM_TYPES])
def test_clip_grad_norm_matches_torch(norm_type, clips, dtype, rng):
    grads = random_grads(rng, dtype)
    ours, theirs = make_params(grads)
    norm = float(torch.nn.utils.get_total_norm([t.grad for t in theirs], norm_type))
    max_norm = 0.3 * norm if clips else 2.0 * norm
    before = [p.grad for p in ours]
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert_same_total(total, total_t)
    assert_same_grads(ours, theirs)
    assert all(p.grad is g for p, g in zip(ours, before))  # clipped in place, as torch
    # the case is the intended one: every gradient scaled by ~0.3, or (nearly) left alone
    coef = min(max_norm / (norm + 1e-6), 1.0)
    assert coef == pytest.approx(0.3, rel=1e-2) if clips else coef == pytest.approx(1.0, rel=1e-2)
    for p, grad in zip(ours, grads):
        np.testing.assert_allclose(p.grad, coef * grad, rtol=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_skips_none_grads(norm_type, dtype, rng):
    grads = random_grads(rng, dtype)
    ours, theirs = make_params([grads[0], None, grads[1], None, grads[2]])
    total = clip_grad_norm_(ours, 0.5, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type)
    assert_same_total(total, total_t)
    assert_same_grads(ours, theirs)
    assert ours[1].grad is None and ours[3].grad is None


def test_clip_grad_norm_of_a_single_parameter_and_a_generator(dtype, rng):
    grad = rng.normal(size=(4, 3)).astype(dtype)
    (p,), (t,) = make_params([grad])
    assert_same_total(clip_grad_norm_(p, 0.1), torch.nn.utils.clip_grad_norm_(t, 0.1))
    assert_same_grads([p], [t])
    ours, theirs = make_params(random_grads(rng, dtype))
    total = clip_grad_norm_((q for q in ours), 0.2, 3.0)
    total_t = torch.nn.utils.clip_grad_norm_((q for q in theirs), 0.2, 3.0)
    assert_same_total(total, total_t)
    assert_same_grads(ours, theirs)


def test_clip_grad_norm_mixed_dtypes_like_torch(rng):
    """float32 and float64 gradients: the total is float64; the float32 gradient is multiplied by the coefficient
    rounded to float32 (compared bit for bit)."""
    ours, theirs = make_params([rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(7,))])
    total = clip_grad_norm_(ours, 0.7)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, 0.7)
    assert total.dtype == np.float64
    assert_same_total(total, total_t)
    assert_same_grads(ours, theirs)
    np.testing.assert_array_equal(ours[0].grad, theirs[0].grad.numpy())


def test_clip_grad_norm_coefficient_arithmetic_bit_for_bit(dtype, rng):
    """The same total norm into ``clip_grads_with_norm_`` on both sides: the coefficient is torch's
    ``(total + 1e-6).reciprocal() * max_norm``, clamped, so the clipped gradients are equal bit for bit."""
    grads = random_grads(rng, dtype, scale=3.0)
    total = torch.nn.utils.get_total_norm([torch.from_numpy(g) for g in grads]).numpy()
    shifted = total + dtype.type(1e-6)
    max_norms = [float(total) * f for f in np.linspace(0.05, 0.95, 19)] + [1e6]
    # the reciprocal-times-max_norm rounding differs from a division for some of these: the test can tell them apart
    assert any(np.reciprocal(shifted) * dtype.type(m) != dtype.type(m) / shifted for m in max_norms)
    for max_norm in max_norms:
        ours, theirs = make_params(grads)
        clip_grads_with_norm_(ours, max_norm, total.copy())
        torch.nn.utils.clip_grads_with_norm_(theirs, max_norm, torch.from_numpy(total.copy()))
        for p, t in zip(ours, theirs):
            np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
def test_get_total_norm_and_clip_grads_with_norm_match_torch(norm_type, dtype, rng):
    ours, theirs = make_params(random_grads(rng, dtype, scale=2.0))
    total = get_total_norm([p.grad for p in ours], norm_type)
    total_t = torch.nn.utils.get_total_norm([t.grad for t in theirs], norm_type)
    assert_same_total(total, total_t)
    assert_same_total(get_total_norm(ours[0].grad, norm_type),
                      torch.nn.utils.get_total_norm(theirs[0].grad, norm_type))
    assert clip_grads_with_norm_(ours, 1.5, total) is None
    torch.nn.utils.clip_grads_with_norm_(theirs, 1.5, total_t)
    assert_same_grads(ours, theirs)


def test_clip_grad_norm_with_no_gradient_returns_float32_zero_like_torch():
    ours, theirs = make_params([None, None])
    total, total_t = clip_grad_norm_(ours, 1.0), torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert total.dtype == np.float32 and total_t.dtype == torch.float32
    assert_same_total(total, total_t)
    assert_same_total(clip_grad_norm_([], 1.0), torch.nn.utils.clip_grad_norm_([], 1.0))
    assert ours[0].grad is None


def test_clip_grad_norm_warns_on_an_empty_generator_like_torch():
    with pytest.warns(UserWarning, match="empty generator") as torch_record:
        torch.nn.utils.clip_grad_norm_((p for p in []), 1.0)
    with pytest.warns(UserWarning, match="empty generator") as record:
        clip_grad_norm_((p for p in []), 1.0)
    assert str(record[0].message) == str(torch_record[0].message)


def test_clip_grad_norm_deprecated_alias_warns(rng):
    ours, theirs = make_params(random_grads(rng, np.float64))
    with pytest.warns(FutureWarning, match="deprecated"):
        total = clip_grad_norm(ours, 0.5)
    assert_same_total(total, torch.nn.utils.clip_grad_norm_(theirs, 0.5))
    assert_same_grads(ours, theirs)


# ---- non-finite gradients ---------------------------------------------------------------------------------------
NONFINITE = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf], ids=["2", "1", "inf"])
@pytest.mark.parametrize("bad", list(NONFINITE.values()), ids=list(NONFINITE))
def test_clip_grad_norm_nonfinite_without_error_matches_torch(bad, norm_type, dtype, rng):
    grads = random_grads(rng, dtype)
    grads[1][0] = bad
    ours, theirs = make_params(grads)
    total = clip_grad_norm_(ours, 1.0, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
    assert_same_total(total, total_t)
    assert not np.isfinite(total)
    for p, t in zip(ours, theirs):  # NaN where torch has NaN, zeros where torch has zeros
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=["2", "inf"])
@pytest.mark.parametrize("bad", list(NONFINITE.values()), ids=list(NONFINITE))
def test_clip_grad_norm_nonfinite_with_error_raises_like_torch(bad, norm_type, dtype, rng):
    grads = random_grads(rng, dtype)
    grads[2][1, 2, 0] = bad
    ours, theirs = make_params(grads)
    expected = torch_error(lambda: torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type, error_if_nonfinite=True))
    with pytest.raises(type(expected)) as raised:
        clip_grad_norm_(ours, 1.0, norm_type, error_if_nonfinite=True)
    assert str(raised.value) == str(expected)
    for p, grad in zip(ours, grads):  # nothing clipped
        np.testing.assert_array_equal(p.grad, grad)


def test_clip_grad_norm_error_if_nonfinite_passes_finite_grads(dtype, rng):
    ours, theirs = make_params(random_grads(rng, dtype))
    assert_same_total(clip_grad_norm_(ours, 0.5, error_if_nonfinite=True),
                      torch.nn.utils.clip_grad_norm_(theirs, 0.5, error_if_nonfinite=True))
    assert_same_grads(ours, theirs)


def test_clip_grad_norm_float32_overflow_like_torch(rng):
    """Squares of 1e20 overflow float32: an infinite total norm, the gradients scaled to 0, as torch does."""
    grads = random_grads(rng, np.float32)
    grads[0][0, 0] = 1e20
    ours, theirs = make_params(grads)
    assert_same_total(clip_grad_norm_(ours, 1.0), torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("norm_type", [math.inf, -math.inf, -1.0, 2.0, 0.0], ids=["inf", "-inf", "-1", "2", "0"])
def test_clip_grad_norm_of_an_empty_gradient_like_torch(norm_type, rng):
    """inf and negative orders have no identity on an empty tensor: torch raises; the others give 0."""
    ours, theirs = make_params([np.zeros((0, 3)), rng.normal(size=4)])
    try:
        total_t = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
    except RuntimeError as expected:
        with pytest.raises(RuntimeError) as raised:
            clip_grad_norm_(ours, 1.0, norm_type)
        assert str(raised.value) == str(expected)
    else:
        assert_same_total(clip_grad_norm_(ours, 1.0, norm_type), total_t)
        assert_same_grads(ours, theirs)


def test_clip_grad_norm_rejects_a_bare_array():
    with pytest.raises(TypeError, match="Parameter"):
        clip_grad_norm_(np.ones(3), 1.0)


# ---- clip_grad_value_ -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip_value", [0.5, 1.7, 1e-3, 0.0, -0.4])
def test_clip_grad_value_matches_torch(clip_value, dtype, rng):
    grads = random_grads(rng, dtype, scale=1.5)
    grads[0][0, 0], grads[0][1, 1] = np.nan, np.inf  # NaN stays NaN; inf is clamped
    ours, theirs = make_params([grads[0], None, grads[1], grads[2]])
    before = [p.grad for p in ours]
    assert clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for p, t in zip(ours, theirs):
        if t.grad is None:
            assert p.grad is None
            continue
        np.testing.assert_array_equal(p.grad, t.grad.numpy())  # NaN at the same places too
    assert all(p.grad is g for p, g in zip(ours, before))
    if clip_value > 0:
        assert ours[0].grad[1, 1] == np.asarray(clip_value, dtype)  # inf clamped to clip_value


def test_clip_grad_value_single_parameter(dtype, rng):
    (p,), (t,) = make_params([rng.normal(size=(6, 2)).astype(dtype)])
    clip_grad_value_(p, 0.25)
    torch.nn.utils.clip_grad_value_(t, 0.25)
    assert_same_grads([p], [t])


def test_utils_package_exports():
    assert handnn.nn.utils.clip_grad_norm_ is clip_grad_norm_
    assert set(handnn.nn.utils.__all__) >= {"clip_grad_norm_", "clip_grad_value_", "get_total_norm",
                                            "clip_grads_with_norm_"}


# ---- a clipped training trajectory -------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=["2", "inf"])
def test_clipped_sgd_trajectory_matches_torch(norm_type, dtype, rng):
    """Embedding -> Linear trained by SGD with momentum, gradients clipped every step (max_norm below the norm,
    so the clipping acts): parameters, gradients and returned norms equal torch's after every step."""
    vocab, dim, classes, steps = 13, 5, 3, 6
    emb = Embedding(vocab, dim, padding_idx=0, dtype=dtype, rng=rng)
    lin = Linear(dim, classes, dtype=dtype, rng=rng)
    emb_t = torch.nn.Embedding(vocab, dim, padding_idx=0, dtype=TORCH_DTYPES[dtype])
    lin_t = torch.nn.Linear(dim, classes, dtype=TORCH_DTYPES[dtype])
    for mod, twin in ((emb, emb_t), (lin, lin_t)):
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in mod.state_dict().items()})
    params = [emb.weight, lin.weight, lin.bias]
    params_t = [emb_t.weight, lin_t.weight, lin_t.bias]
    opt = optim.SGD(params, lr=0.5, momentum=0.9)
    opt_t = torch.optim.SGD(params_t, lr=0.5, momentum=0.9)
    clipped = 0
    for _ in range(steps):
        indices = rng.integers(0, vocab, size=(4, 6))
        dout = rng.normal(size=(4, 6, classes)).astype(dtype)
        opt.zero_grad()
        opt_t.zero_grad()
        lin(emb(indices))
        emb.backward(lin.backward(dout))
        lin_t(emb_t(torch.from_numpy(indices))).backward(torch.from_numpy(dout))
        total = clip_grad_norm_(params, 1.0, norm_type)
        total_t = torch.nn.utils.clip_grad_norm_(params_t, 1.0, norm_type)
        assert_same_total(total, total_t)
        clipped += float(total_t) > 1.0
        assert_same_grads(params, params_t)
        opt.step()
        opt_t.step()
        for name, p, t in zip(["embedding", "weight", "bias"], params, params_t):
            assert_close(p.data, t.detach().numpy(), name=name)
    assert clipped >= steps - 1  # the clipping was exercised
