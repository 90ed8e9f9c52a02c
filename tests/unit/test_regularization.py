"""``handnn.regularization``, numpy only: penalty values and gradients against formulas written here, central
differences, accumulation into ``.grad``, dtypes, frozen parameters, bad strengths, and the seeds' mappings
(seed 000's λ/(2m), seed 001's elastic net, seed 004's decay as SGD weight decay).

The torch side of the same statements (autograd of the penalised loss, torch's optimizers) is in
``tests/parity/test_conventions.py``.
"""
from __future__ import annotations

from typing import List

import numpy as np
import pytest

from handnn import nn, optim
from handnn.regularization import (decay_parameters, elastic_net_penalty, l1_penalty, l2_penalty, penalty,
                                   penalty_backward)

SHAPES = [(4, 3), (2, 5), (6,)]


def _params(rng: np.random.Generator, dtype=np.float64) -> List[nn.Parameter]:
    return [nn.Parameter(rng.standard_normal(shape).astype(dtype)) for shape in SHAPES]


@pytest.mark.parametrize("l1,l2", [(0.0, 0.3), (0.2, 0.0), (0.05, 0.7), (0.0, 0.0)])
def test_penalty_value(rng, l1, l2):
    """``l1·Σ|w| + (l2/2)·Σw²`` over every parameter given."""
    params = _params(rng)
    expected = sum(l1 * np.abs(p.data).sum() + 0.5 * l2 * (p.data ** 2).sum() for p in params)
    assert penalty(params, l1=l1, l2=l2) == pytest.approx(expected, rel=1e-14, abs=0.0)


def test_named_penalties(rng):
    """``l1_penalty``, ``l2_penalty`` and seed 001's ``λ(β·L2 + L1)`` with L2 = ½Σw²."""
    params = _params(rng)
    lam, beta = 0.3, 1.7
    l1 = sum(np.abs(p.data).sum() for p in params)
    l2 = sum(0.5 * (p.data ** 2).sum() for p in params)
    assert l1_penalty(params, lam) == pytest.approx(lam * l1, rel=1e-14)
    assert l2_penalty(params, lam) == pytest.approx(lam * l2, rel=1e-14)
    assert elastic_net_penalty(params, lam, beta) == pytest.approx(lam * (beta * l2 + l1), rel=1e-14)
    assert penalty([], l1=1.0, l2=1.0) == 0.0


@pytest.mark.parametrize("l1,l2", [(0.0, 0.3), (0.2, 0.0), (0.05, 0.7)])
def test_penalty_backward_accumulates_the_gradient(rng, l1, l2):
    """``.grad += l1·sign(w) + l2·w`` into the existing array; the values are not touched."""
    params = _params(rng)
    upstream = [rng.standard_normal(p.shape) for p in params]
    grads = [g.copy() for g in upstream]
    for p, g in zip(params, grads):
        p.grad = g
    data = [p.data.copy() for p in params]
    penalty_backward(params, l1=l1, l2=l2)
    for p, g, u, w in zip(params, grads, upstream, data):
        assert p.grad is g  # accumulated in place, as torch accumulates .grad
        np.testing.assert_allclose(p.grad, u + l1 * np.sign(w) + l2 * w, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(p.data, w)


def test_penalty_backward_creates_the_gradient(rng, dtype):
    """With ``.grad`` None the gradient is created, in the parameter's dtype."""
    params = _params(rng, dtype)
    penalty_backward(params, l1=0.1, l2=0.4)
    for p in params:
        assert p.grad.dtype == dtype
        expected = 0.1 * np.sign(p.data.astype(np.float64)) + 0.4 * p.data.astype(np.float64)
        np.testing.assert_allclose(p.grad, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_penalty_backward_is_the_derivative_of_penalty(rng):
    """Central differences of ``penalty`` (weights away from 0, where |w| is differentiable)."""
    params = _params(rng)
    for p in params:
        p.data[np.abs(p.data) < 0.05] = 0.3
    l1, l2, h = 0.3, 0.8, 1e-6
    penalty_backward(params, l1=l1, l2=l2)
    for p in params:
        numeric = np.zeros_like(p.data)
        for i in np.ndindex(p.shape):
            old = p.data[i]
            p.data[i] = old + h
            plus = penalty(params, l1=l1, l2=l2)
            p.data[i] = old - h
            minus = penalty(params, l1=l1, l2=l2)
            p.data[i] = old
            numeric[i] = (plus - minus) / (2 * h)
        np.testing.assert_allclose(p.grad, numeric, rtol=1e-6, atol=1e-8)


def test_l1_subgradient_at_zero_is_zero():
    """At w = 0 nothing is added (``sign(0) = 0``, torch's ``abs`` backward)."""
    p = nn.Parameter(np.array([0.0, -2.0, 3.0]))
    p.grad = np.array([0.5, 0.5, 0.5])
    penalty_backward([p], l1=0.1)
    np.testing.assert_array_equal(p.grad, [0.5, 0.4, 0.6])


def test_frozen_parameter_gets_no_gradient(rng):
    """``requires_grad=False``: no ``.grad`` is created or changed, so an optimizer leaves it alone."""
    frozen, trained = _params(rng)[:2]
    frozen.requires_grad = False
    penalty_backward([frozen, trained], l2=0.5)
    assert frozen.grad is None and trained.grad is not None
    before = frozen.data.copy()
    optim.SGD([frozen, trained], lr=0.1).step()
    np.testing.assert_array_equal(frozen.data, before)


@pytest.mark.parametrize("kwargs", [{"l1": -0.1}, {"l2": -1e-3}])
def test_negative_strength_is_refused(rng, kwargs):
    params = _params(rng)
    for p in params:
        p.grad = rng.standard_normal(p.shape)
    before = [p.grad.copy() for p in params]
    with pytest.raises(ValueError, match="penalty strengths must be non-negative, but got l1=.*, l2="):
        penalty_backward(params, **kwargs)
    with pytest.raises(ValueError, match="penalty strengths must be non-negative"):
        penalty(params, **kwargs)
    for p, g in zip(params, before):
        np.testing.assert_array_equal(p.grad, g)


def test_decay_parameters_are_the_linear_weights(rng):
    """Every Linear's weight, nested ones included; no bias, no BatchNorm parameter."""
    inner = nn.Linear(5, 2, rng=rng)
    model = nn.Sequential(nn.Linear(3, 5, rng=rng), nn.BatchNorm1d(5), nn.ReLU(),
                          nn.Sequential(nn.Dropout(0.1, rng=rng), inner))
    assert [id(p) for p in decay_parameters(model)] == [id(model[0].weight), id(inner.weight)]


def test_seed000_cost_over_m(rng):
    """Seed 000: ``(ΣW1² + ΣW2² + ΣW3²)/m·(λ/2)`` and ``dW += (λ/m)·W`` are ``l2 = λ/m``."""
    lambd, m = 0.7, 24
    W1, W2, W3 = (nn.Parameter(rng.standard_normal(s)) for s in [(5, 2), (3, 5), (1, 3)])
    cost = (np.sum(np.square(W1.data)) + np.sum(np.square(W2.data)) + np.sum(np.square(W3.data))) / m * (lambd / 2)
    assert l2_penalty([W1, W2, W3], lambd / m) == pytest.approx(cost, rel=1e-14)
    penalty_backward([W1, W2, W3], l2=lambd / m)
    for W in (W1, W2, W3):
        np.testing.assert_allclose(W.grad, (lambd / m) * W.data, rtol=1e-15)


def test_seed004_decay_is_sgd_weight_decay_over_lr(rng):
    """Seed 004's ``x = (1 - λ)x - lr·g`` is ``SGD(lr, weight_decay=λ/lr)``, step after step (g depends on x)."""
    lr, lam = 0.2, 1e-3
    a, b = rng.standard_normal((8, 3)), rng.standard_normal(8)
    x = rng.standard_normal(3)
    p = nn.Parameter(x.copy())
    opt = optim.SGD([p], lr=lr, weight_decay=lam / lr)
    for _ in range(100):
        x = (1 - lam) * x - lr * (a.T @ (a @ x - b) / 8)
        p.grad = a.T @ (a @ p.data - b) / 8
        opt.step()
        np.testing.assert_allclose(p.data, x, rtol=1e-12, atol=1e-14)
