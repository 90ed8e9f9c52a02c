"""``handnn.optim``, numpy only: the pure step functions against the formulas of ``docs/torch-semantics.md``
written out here, for three steps with gradients that depend on the current parameters; the first steps in
closed form (SGD's first momentum step takes no dampening, Adam's first step is ``lr·g/(|g| + eps)``,
RMSprop's momentum buffer starts at zeros, Adagrad's first step uses the full lr); the optimizer classes wiring
the same state; validation messages (torch's, as documented); ``zero_grad``; the schedulers' closed forms.

The live comparison with torch is ``tests/parity/test_optim.py`` and ``tests/parity/test_lr_scheduler.py``.
"""
from __future__ import annotations

import math
import re
from bisect import bisect_right
from typing import Any, Dict, List

import numpy as np
import pytest

from handnn import optim
from handnn.functional import _kernels
from handnn.nn import Parameter
from handnn.optim import lr_scheduler
from handnn.optim.adagrad import adagrad_step
from handnn.optim.adam import adam_step
from handnn.optim.rmsprop import rmsprop_step
from handnn.optim.sgd import sgd_step

SHAPE = (3, 4)
STEPS = 3


def close(actual, expected) -> None:
    """The two computations differ only in the order of a few float64 operations."""
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14)


def _start(rng: np.random.Generator):
    """A parameter, the fixed positive ``a`` of ``g = a ⊙ p + noise`` and the noise of each step."""
    p = rng.standard_normal(SHAPE)
    a = rng.uniform(0.5, 1.5, SHAPE)
    noise = [rng.standard_normal(SHAPE) for _ in range(STEPS)]
    return p, a, noise


# ---- SGD ----------------------------------------------------------------------------------------------------------
SGD_CONFIGS = [dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
               dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
               dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.0, nesterov=False, maximize=False),
               dict(lr=0.1, momentum=0.9, dampening=1.0, weight_decay=0.0, nesterov=False, maximize=False),
               dict(lr=0.1, momentum=0.8, dampening=0.0, weight_decay=0.0, nesterov=True, maximize=False),
               dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.2, nesterov=False, maximize=False),
               dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=True),
               dict(lr=0.05, momentum=0.7, dampening=0.4, weight_decay=0.1, nesterov=False, maximize=True),
               dict(lr=0.05, momentum=0.7, dampening=0.0, weight_decay=0.1, nesterov=True, maximize=True)]


def _id(config: Dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items() if v not in (0.0, False) or k == "lr")


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=_id)
def test_sgd_step_formula(rng, config):
    """``g ← -grad if maximize; g ← g + wd·p; buf ← g (first) | μ·buf + (1-τ)·g; g ← g + μ·buf (nesterov) | buf;
    p ← p - lr·g`` for three steps."""
    p, a, noise = _start(rng)
    ours, buf = p.copy(), None
    want, want_buf = p.copy(), None
    lr, mu, tau, wd = config["lr"], config["momentum"], config["dampening"], config["weight_decay"]
    for k in range(STEPS):
        grad = a * ours + noise[k]
        grad_copy = grad.copy()
        buf = sgd_step(ours, grad, buf, **config)
        np.testing.assert_array_equal(grad, grad_copy)  # the caller's gradient is left alone
        g = -grad if config["maximize"] else grad
        g = g + wd * want
        if mu != 0:
            want_buf = g.copy() if want_buf is None else mu * want_buf + (1 - tau) * g
            g = g + mu * want_buf if config["nesterov"] else want_buf
        want = want - lr * g
        close(ours, want)
        if mu == 0:
            assert buf is None
        else:
            close(buf, want_buf)


def test_sgd_first_momentum_step_takes_no_dampening(rng):
    """The buffer starts as a copy of the first gradient, undamped; dampening scales the second one."""
    p = rng.standard_normal(SHAPE)
    g1, g2 = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    buf = sgd_step(p, g1, None, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0, nesterov=False,
                   maximize=False)
    np.testing.assert_array_equal(buf, g1)
    assert buf is not g1
    buf = sgd_step(p, g2, buf, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0, nesterov=False,
                   maximize=False)
    close(buf, 0.9 * g1 + 0.7 * g2)


def test_sgd_nesterov_steps_along_g_plus_momentum_buffer(rng):
    p0 = rng.standard_normal(SHAPE)
    g1, g2 = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    p = p0.copy()
    buf = sgd_step(p, g1, None, lr=0.1, momentum=0.9, dampening=0, weight_decay=0, nesterov=True, maximize=False)
    close(p, p0 - 0.1 * (g1 + 0.9 * g1))
    sgd_step(p, g2, buf, lr=0.1, momentum=0.9, dampening=0, weight_decay=0, nesterov=True, maximize=False)
    buf2 = 0.9 * g1 + g2
    close(p, p0 - 0.1 * 1.9 * g1 - 0.1 * (g2 + 0.9 * buf2))


# ---- Adam / AdamW -------------------------------------------------------------------------------------------------
ADAM_CONFIGS = [dict(lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False),
                dict(lr=0.05, beta1=0.9, beta2=0.999, eps=0.1, weight_decay=0.0, amsgrad=False),
                dict(lr=0.05, beta1=0.3, beta2=0.9, eps=1e-3, weight_decay=0.0, amsgrad=False),
                dict(lr=0.05, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.3, amsgrad=False),
                dict(lr=0.05, beta1=0.8, beta2=0.9, eps=1e-8, weight_decay=0.0, amsgrad=True),
                dict(lr=0.05, beta1=0.5, beta2=0.95, eps=0.01, weight_decay=0.2, amsgrad=True)]


@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
@pytest.mark.parametrize("maximize", [False, True], ids=["", "maximize"])
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=_id)
def test_adam_step_formula(rng, config, maximize, decoupled):
    """``m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·g²; v̂ ← max(v̂, v) (amsgrad);
    p ← p - lr/(1-β1^t) · m / (sqrt(v̂)/sqrt(1-β2^t) + eps)``, with Adam's ``g ← g + wd·p`` or AdamW's
    ``p ← p·(1 - lr·wd)`` first."""
    p, a, noise = _start(rng)
    if maximize:
        a = -a
    ours = p.copy()
    state = {"step": np.array(0.0, np.float32), "exp_avg": np.zeros(SHAPE), "exp_avg_sq": np.zeros(SHAPE)}
    if config["amsgrad"]:
        state["max_exp_avg_sq"] = np.zeros(SHAPE)
    want, m, v, vmax = p.copy(), np.zeros(SHAPE), np.zeros(SHAPE), np.zeros(SHAPE)
    lr, b1, b2, eps, wd = (config[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay"))
    for t in range(1, STEPS + 1):
        grad = a * ours + noise[t - 1]
        grad_copy = grad.copy()
        adam_step(ours, grad, state, maximize=maximize, decoupled_weight_decay=decoupled, **config)
        np.testing.assert_array_equal(grad, grad_copy)
        g = -grad if maximize else grad
        if decoupled:
            want = want * (1 - lr * wd)
        else:
            g = g + wd * want
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        second = vmax if config["amsgrad"] else v
        want = want - lr / (1 - b1 ** t) * m / (np.sqrt(second) / math.sqrt(1 - b2 ** t) + eps)
        close(ours, want)
        assert state["step"] == t and state["step"].dtype == np.float32
        close(state["exp_avg"], m)
        close(state["exp_avg_sq"], v)
        if config["amsgrad"]:
            close(state["max_exp_avg_sq"], vmax)


@pytest.mark.parametrize("eps", [1e-8, 0.3])
def test_adam_first_step_is_lr_times_g_over_abs_g_plus_eps(rng, eps):
    """Bias correction makes the first step ``lr·g/(|g| + eps)`` whatever the betas (eps outside the sqrt)."""
    p0, g = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    p = p0.copy()
    state = {"step": np.array(0.0, np.float32), "exp_avg": np.zeros(SHAPE), "exp_avg_sq": np.zeros(SHAPE)}
    adam_step(p, g, state, lr=0.01, beta1=0.7, beta2=0.95, eps=eps, weight_decay=0.0, amsgrad=False,
              maximize=False, decoupled_weight_decay=False)
    close(p, p0 - 0.01 * g / (np.abs(g) + eps))


def test_adam_weight_decay_is_coupled_and_adamw_decoupled(rng):
    """First step with weight decay λ: Adam normalises g + λp; AdamW shrinks p by (1 - lr·λ) and normalises g."""
    p0, g = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    results = {}
    for decoupled in (False, True):
        p = p0.copy()
        state = {"step": np.array(0.0, np.float32), "exp_avg": np.zeros(SHAPE), "exp_avg_sq": np.zeros(SHAPE)}
        adam_step(p, g, state, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.5, amsgrad=False,
                  maximize=False, decoupled_weight_decay=decoupled)
        results[decoupled] = p
    coupled = g + 0.5 * p0
    close(results[False], p0 - 0.1 * coupled / (np.abs(coupled) + 1e-8))
    close(results[True], p0 * (1 - 0.1 * 0.5) - 0.1 * g / (np.abs(g) + 1e-8))


def test_amsgrad_keeps_the_largest_second_moment(rng):
    """A large then a small gradient: v falls, max_exp_avg_sq keeps v after step 1 (squares, not roots)."""
    p = rng.standard_normal(SHAPE)
    g = rng.uniform(1.0, 2.0, SHAPE)
    state = {"step": np.array(0.0, np.float32), "exp_avg": np.zeros(SHAPE), "exp_avg_sq": np.zeros(SHAPE),
             "max_exp_avg_sq": np.zeros(SHAPE)}
    kwargs = dict(lr=0.01, beta1=0.9, beta2=0.9, eps=1e-8, weight_decay=0.0, amsgrad=True, maximize=False,
                  decoupled_weight_decay=False)
    adam_step(p, 10 * g, state, **kwargs)
    v1 = 0.1 * (10 * g) ** 2
    close(state["max_exp_avg_sq"], v1)
    before = p.copy()
    adam_step(p, 0.1 * g, state, **kwargs)
    v2 = 0.9 * v1 + 0.1 * (0.1 * g) ** 2
    assert np.all(v2 < v1)
    close(state["exp_avg_sq"], v2)
    close(state["max_exp_avg_sq"], v1)
    m2 = 0.9 * (0.1 * 10 * g) + 0.1 * 0.1 * g
    close(p, before - 0.01 / (1 - 0.9 ** 2) * m2 / (np.sqrt(v1) / math.sqrt(1 - 0.9 ** 2) + 1e-8))


# ---- RMSprop ------------------------------------------------------------------------------------------------------
RMSPROP_CONFIGS = [dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
                   dict(lr=0.01, alpha=0.7, eps=0.1, weight_decay=0.0, momentum=0.0, centered=False),
                   dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=True),
                   dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.8, centered=False),
                   dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.3, momentum=0.0, centered=False),
                   dict(lr=0.01, alpha=0.8, eps=1e-3, weight_decay=0.1, momentum=0.6, centered=True)]


@pytest.mark.parametrize("maximize", [False, True], ids=["", "maximize"])
@pytest.mark.parametrize("config", RMSPROP_CONFIGS, ids=_id)
def test_rmsprop_step_formula(rng, config, maximize):
    """``sq ← α·sq + (1-α)·g²; ga ← α·ga + (1-α)·g; avg = sqrt(sq - ga²) + eps (centered) | sqrt(sq) + eps;
    buf ← μ·buf + g/avg, p ← p - lr·buf (momentum) | p ← p - lr·g/avg``."""
    p, a, noise = _start(rng)
    if maximize:
        a = -a
    ours = p.copy()
    lr, alpha, eps, wd, mu = (config[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum"))
    state = {"step": np.array(0.0, np.float32), "square_avg": np.zeros(SHAPE)}
    if mu > 0:
        state["momentum_buffer"] = np.zeros(SHAPE)
    if config["centered"]:
        state["grad_avg"] = np.zeros(SHAPE)
    want, sq, ga, buf = p.copy(), np.zeros(SHAPE), np.zeros(SHAPE), np.zeros(SHAPE)
    for t in range(1, STEPS + 1):
        grad = a * ours + noise[t - 1]
        grad_copy = grad.copy()
        rmsprop_step(ours, grad, state, maximize=maximize, **config)
        np.testing.assert_array_equal(grad, grad_copy)
        g = -grad if maximize else grad
        g = g + wd * want
        sq = alpha * sq + (1 - alpha) * g * g
        if config["centered"]:
            ga = alpha * ga + (1 - alpha) * g
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if mu > 0:
            buf = mu * buf + g / avg
            want = want - lr * buf
        else:
            want = want - lr * g / avg
        close(ours, want)
        assert state["step"] == t
        close(state["square_avg"], sq)
        if mu > 0:
            close(state["momentum_buffer"], buf)
        if config["centered"]:
            close(state["grad_avg"], ga)


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_first_step_through_the_class(rng, centered):
    """Through ``RMSprop.step``: the momentum buffer starts at zeros, so after one step it is exactly
    ``g/avg``; centered: ``sq - ga² = α(1-α)·g²`` on the first step."""
    p0, g = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    param = Parameter(p0.copy())
    opt = optim.RMSprop([param], lr=0.01, alpha=0.9, momentum=0.8, centered=centered)
    param.grad = g
    opt.step()
    state = opt.state[param]
    assert list(state) == ["step", "square_avg", "momentum_buffer"] + (["grad_avg"] if centered else [])
    avg = np.sqrt((0.9 * 0.1 if centered else 0.1) * g * g) + 1e-8
    close(state["momentum_buffer"], g / avg)
    close(param.data, p0 - 0.01 * g / avg)


# ---- Adagrad ------------------------------------------------------------------------------------------------------
ADAGRAD_CONFIGS = [dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, eps=1e-10, initial=0.0),
                   dict(lr=0.1, lr_decay=0.5, weight_decay=0.0, eps=1e-10, initial=0.0),
                   dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, eps=1e-10, initial=0.7),
                   dict(lr=0.1, lr_decay=0.0, weight_decay=0.4, eps=1e-10, initial=0.0),
                   dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, eps=0.2, initial=0.0),
                   dict(lr=0.2, lr_decay=0.3, weight_decay=0.1, eps=1e-3, initial=0.1)]


@pytest.mark.parametrize("maximize", [False, True], ids=["", "maximize"])
@pytest.mark.parametrize("config", ADAGRAD_CONFIGS, ids=_id)
def test_adagrad_step_formula(rng, config, maximize):
    """``clr = lr / (1 + (t-1)·lr_decay); sum ← sum + g²; p ← p - clr·g / (sqrt(sum) + eps)``."""
    p, a, noise = _start(rng)
    if maximize:
        a = -a
    ours = p.copy()
    lr, decay, wd, eps, initial = (config[k] for k in ("lr", "lr_decay", "weight_decay", "eps", "initial"))
    state = {"step": np.array(0.0, np.float32), "sum": np.full(SHAPE, initial)}
    want, acc = p.copy(), np.full(SHAPE, initial)
    for t in range(1, STEPS + 1):
        grad = a * ours + noise[t - 1]
        grad_copy = grad.copy()
        adagrad_step(ours, grad, state, lr=lr, lr_decay=decay, weight_decay=wd, eps=eps, maximize=maximize)
        np.testing.assert_array_equal(grad, grad_copy)
        g = -grad if maximize else grad
        g = g + wd * want
        acc = acc + g * g
        want = want - lr / (1 + (t - 1) * decay) * g / (np.sqrt(acc) + eps)
        close(ours, want)
        assert state["step"] == t
        close(state["sum"], acc)


def test_adagrad_first_step_uses_the_full_lr(rng):
    """``clr = lr`` at step 1 and ``lr / (1 + lr_decay)`` at step 2, through the class."""
    p0, g1, g2 = (rng.standard_normal(SHAPE) for _ in range(3))
    param = Parameter(p0.copy())
    opt = optim.Adagrad([param], lr=0.1, lr_decay=0.5)
    assert list(opt.state[param]) == ["step", "sum"]  # created in __init__, as torch does
    param.grad = g1
    opt.step()
    p1 = p0 - 0.1 * g1 / (np.abs(g1) + 1e-10)
    close(param.data, p1)
    param.grad = g2
    opt.step()
    close(param.data, p1 - 0.1 / 1.5 * g2 / (np.sqrt(g1 * g1 + g2 * g2) + 1e-10))


# ---- the classes: float32, groups, skipped parameters -------------------------------------------------------------
@pytest.mark.parametrize("cls,kwargs", [(optim.SGD, dict(lr=0.1, momentum=0.9)), (optim.Adam, dict(amsgrad=True)),
                                        (optim.AdamW, dict()), (optim.RMSprop, dict(momentum=0.5, centered=True)),
                                        (optim.Adagrad, dict())])
def test_float32_stays_float32_and_parameters_update_in_place(rng, cls, kwargs):
    data = rng.standard_normal(SHAPE).astype(np.float32)
    param = Parameter(data)
    opt = cls([param], **kwargs)
    for _ in range(2):
        param.grad = rng.standard_normal(SHAPE).astype(np.float32)
        opt.step()
    assert param.data is data and data.dtype == np.float32
    for key, value in opt.state[param].items():
        assert value.dtype == np.float32, key  # ``step`` is float32 as in torch, the rest the parameter's dtype


def test_groups_take_defaults_and_their_own_options(rng):
    a, b = Parameter(rng.standard_normal(3)), Parameter(rng.standard_normal(2))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.1}], lr=0.01, nesterov=False)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    assert [g["momentum"] for g in opt.param_groups] == [0, 0.1]
    assert opt.param_groups[1]["params"] == [b]
    a0, b0 = a.data.copy(), b.data.copy()
    ga, gb = rng.standard_normal(3), rng.standard_normal(2)
    a.grad, b.grad = ga, gb
    opt.step()
    close(a.data, a0 - 0.01 * ga)
    close(b.data, b0 - 0.5 * gb)
    assert a not in opt.state and list(opt.state[b]) == ["momentum_buffer"]
    sd = opt.state_dict()
    assert list(sd["state"]) == [1] and [g["params"] for g in sd["param_groups"]] == [[0], [1]]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(rng, set_to_none):
    a, b = Parameter(rng.standard_normal(3)), Parameter(rng.standard_normal(2))
    opt = optim.Adam([a, b])
    grad = rng.standard_normal(3)
    a.grad = grad
    opt.zero_grad(set_to_none=set_to_none)
    assert b.grad is None
    if set_to_none:
        assert a.grad is None
    else:
        assert a.grad is grad
        np.testing.assert_array_equal(grad, np.zeros(3))


# ---- blocks ---------------------------------------------------------------------------------------------------------
BLOCKED = [(optim.Adam, dict(lr=0.05, betas=(0.7, 0.99), eps=1e-3, weight_decay=0.1, amsgrad=True, maximize=True)),
           (optim.Adam, dict(lr=0.05, betas=(0.3, 0.95))),  # lerp's other branch
           (optim.AdamW, dict(lr=0.05, weight_decay=0.2, amsgrad=True, maximize=True)),
           (optim.RMSprop, dict(lr=0.005, alpha=0.9, centered=True, momentum=0.7, weight_decay=0.1, maximize=True)),
           (optim.RMSprop, dict(lr=0.01, alpha=0.3, centered=True)),
           (optim.RMSprop, dict(lr=0.01, weight_decay=0.3)),
           (optim.Adagrad, dict(lr=0.2, lr_decay=0.05, initial_accumulator_value=0.2, weight_decay=0.1, eps=1e-3,
                                maximize=True))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kwargs", BLOCKED, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(BLOCKED)])
def test_blocks_change_no_bit(rng, dtype, cls, kwargs, monkeypatch):
    """A parameter of 2.3 blocks updated block by block (C-contiguous gradients) and as whole arrays (the same
    gradients in Fortran order, which blocks cannot cut alike) ends bit for bit equal, state included: the
    kernels are element-wise, so blocks may only change speed. (``WHOLE_BYTES`` set to 0: cut at any size.)"""
    shape = (300, 500)
    assert math.prod(shape) > 2 * _kernels.BLOCK
    monkeypatch.setattr(_kernels, "WHOLE_BYTES", 0)
    start = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    blocked, whole = Parameter(start.copy()), Parameter(start.copy())
    opt_blocked, opt_whole = cls([blocked], **kwargs), cls([whole], **kwargs)
    for g in grads:
        blocked.grad, whole.grad = g, np.asfortranarray(g)
        opt_blocked.step()
        opt_whole.step()
    np.testing.assert_array_equal(blocked.data, whole.data)
    assert not np.array_equal(blocked.data, start)
    for key, value in opt_whole.state[whole].items():
        np.testing.assert_array_equal(opt_blocked.state[blocked][key], value, err_msg=key)


#: the blocked optimizers and SGD's two loops (plain gradient descent has its own)
MIXED = BLOCKED + [(optim.SGD, dict(lr=0.1)), (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1))]


@pytest.mark.parametrize("cls, kwargs", MIXED, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(MIXED)])
def test_mismatched_gradient_dtype_is_promoted(rng, cls, kwargs):
    """A float64 gradient on a float32 parameter (0-d and 2-d): the step is computed in float64 and stored into the
    float32 parameter, as NumPy's in-place arithmetic does: the float64 run's parameter, rounded to float32."""
    for shape in ((), (3, 4)):
        start = np.asarray(rng.standard_normal(shape))
        grad = np.asarray(rng.standard_normal(shape))
        mixed, wide = Parameter(start.astype(np.float32)), Parameter(start.copy())
        opt_mixed, opt_wide = cls([mixed], **kwargs), cls([wide], **kwargs)
        mixed.grad, wide.grad = grad, grad
        opt_mixed.step()
        opt_wide.step()
        assert mixed.data.dtype == np.float32 and mixed.data.shape == shape
        np.testing.assert_allclose(mixed.data, wide.data.astype(np.float32), rtol=1e-6, atol=1e-7)


# ---- validation ---------------------------------------------------------------------------------------------------
INVALID = [
    (optim.SGD, dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (optim.SGD, dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    (optim.SGD, dict(weight_decay=-1e-3), "Invalid weight_decay value: -0.001"),
    (optim.SGD, dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.5), "Nesterov momentum requires a momentum and zero "
                                                                  "dampening"),
    (optim.RMSprop, dict(alpha=-0.1), "Invalid alpha value: -0.1"),
    (optim.RMSprop, dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    (optim.RMSprop, dict(momentum=-1), "Invalid momentum value: -1"),
    (optim.Adagrad, dict(lr_decay=-0.2), "Invalid lr_decay value: -0.2"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.5), "Invalid initial_accumulator_value value: -1.5"),
    (optim.Adagrad, dict(eps=-1e-10), "Invalid epsilon value: -1e-10"),
] + [(cls, kwargs, message) for cls in (optim.Adam, optim.AdamW) for kwargs, message in (
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (dict(betas=(-0.1, 0.999)), "Invalid beta parameter at index 0: -0.1"),
    (dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (dict(weight_decay=-0.5), "Invalid weight_decay value: -0.5"))]


@pytest.mark.parametrize("cls,kwargs,message", INVALID,
                         ids=[f"{c.__name__}-{k}" for c, k, _ in INVALID])
def test_invalid_hyper_parameters(cls, kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        cls([Parameter(np.zeros(3))], **kwargs)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_zero_learning_rate_is_valid_and_keeps_the_parameters(cls, rng):
    """torch's check is ``0.0 <= lr``: lr = 0 is accepted (a frozen run, a warm-up start), and a step moves nothing
    while the state still advances."""
    data = rng.normal(size=4)
    p = Parameter(data.copy())
    opt = cls([p], lr=0.0)
    p.grad = rng.normal(size=4)
    opt.step()
    np.testing.assert_array_equal(p.data, data)
    if cls is not optim.SGD:
        assert float(opt.state[p]["step"]) == 1.0


#: every hyper-parameter at the bound torch's check allows (``0.0 <= x``, ``0.0 <= beta < 1.0``)
BOUNDARY = [(optim.SGD, dict(lr=0.0, momentum=0.0, dampening=0.0, weight_decay=0.0)),
            (optim.Adam, dict(lr=0.0, eps=0.0, betas=(0.0, 0.0), weight_decay=0.0)),
            (optim.AdamW, dict(lr=0.0, eps=0.0, betas=(0.0, 0.0), weight_decay=0.0)),
            (optim.RMSprop, dict(lr=0.0, alpha=0.0, eps=0.0, momentum=0.0, weight_decay=0.0)),
            (optim.Adagrad, dict(lr=0.0, lr_decay=0.0, initial_accumulator_value=0.0, eps=0.0, weight_decay=0.0))]


@pytest.mark.parametrize("cls,kwargs", BOUNDARY, ids=[c.__name__ for c, _ in BOUNDARY])
def test_hyper_parameters_at_their_bounds_are_valid(cls, kwargs):
    opt = cls([Parameter(np.zeros(3))], **kwargs)
    assert all(opt.param_groups[0][k] == v for k, v in kwargs.items())


def test_a_required_hyper_parameter_must_be_given():
    """torch's ``required`` default: a group without that value is refused (a custom optimizer's contract)."""
    from handnn.optim.optimizer import Optimizer, required

    class Custom(Optimizer):
        def __init__(self, params, lr=required):
            super().__init__(params, dict(lr=lr))

    with pytest.raises(ValueError, match="^parameter group didn't specify a value of required optimization "
                                         "parameter lr$"):
        Custom([Parameter(np.zeros(3))])
    assert Custom([Parameter(np.zeros(3))], lr=0.5).param_groups[0]["lr"] == 0.5
    opt = Custom([{"params": [Parameter(np.zeros(2))], "lr": 0.1}])
    assert opt.param_groups[0]["lr"] == 0.1


def test_loaded_state_takes_the_parameters_float_dtype_and_keeps_other_dtypes(rng):
    """torch's ``load_state_dict`` casts a floating state entry to its parameter's dtype (a float32 checkpoint into a
    float64 model) and keeps the others (an integer counter); ``step`` stays a float32 scalar."""
    p = Parameter(rng.normal(size=3))
    opt = optim.Adam([p])
    state = {"state": {0: {"step": np.array(4.0), "exp_avg": np.ones(3, np.float32),
                           "exp_avg_sq": np.ones(3, np.float32), "seen": np.arange(3, dtype=np.int16)}},
             "param_groups": [dict(opt.param_groups[0], params=[0])]}
    opt.load_state_dict(state)
    loaded = opt.state[p]
    assert loaded["exp_avg"].dtype == np.float64 and loaded["exp_avg_sq"].dtype == np.float64
    assert loaded["seen"].dtype == np.int16 and loaded["step"].dtype == np.float32 and loaded["step"].shape == ()
    np.testing.assert_array_equal(loaded["seen"], [0, 1, 2])


def test_repr_lists_each_group_like_torch():
    """``Adam (`` then, per group, ``Parameter Group i`` and its sorted hyper-parameters, then ``)``."""
    opt = optim.Adam([{"params": [Parameter(np.zeros(2))]}, {"params": [Parameter(np.zeros(3))], "lr": 0.5}])
    lines = repr(opt).splitlines()
    assert lines[0] == "Adam (" and lines[-1] == ")"
    assert lines[1] == "Parameter Group 0" and "Parameter Group 1" in lines
    group1 = lines[lines.index("Parameter Group 1") + 1:-1]
    assert "    lr: 0.5" in group1 and "    betas: (0.9, 0.999)" in group1 and group1 == sorted(group1)
    assert all(not line.startswith("    params") for line in lines)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_invalid_params(cls):
    a, b = Parameter(np.zeros(3)), Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="^optimizer got an empty parameter list$"):
        cls([])
    with pytest.raises(ValueError, match="^some parameters appear in more than one parameter group$"):
        cls([{"params": [a, b]}, {"params": [a]}])
    with pytest.raises(TypeError, match="^optimizer parameters need to be organized in ordered collections"):
        cls([{"params": {a, b}}])
    with pytest.raises(TypeError, match="^optimizer can only optimize Parameters, but one of the params is "
                                        "ndarray$"):
        cls([a, np.zeros(3)])
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts, but got Parameter$"):
        cls(a)
    opt = cls([a])
    with pytest.raises(ValueError, match="^some parameters appear in more than one parameter group$"):
        opt.add_param_group({"params": [b, a]})
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == [a]


# ---- schedulers: closed forms -------------------------------------------------------------------------------------
def _sgd(lrs=(0.1, 0.02)) -> optim.SGD:
    return optim.SGD([{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs])


def _sequence(sched, opt, epochs: int) -> List[List[float]]:
    lrs = [[g["lr"] for g in opt.param_groups]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        lrs.append(sched.get_last_lr())
    return lrs


@pytest.mark.parametrize("step_size", [1, 3, 4])
def test_step_lr_closed_form(step_size):
    """``lr_e = base · γ^(e // step_size)`` at epoch e (the constructor's state is epoch 0)."""
    opt = _sgd()
    lrs = _sequence(lr_scheduler.StepLR(opt, step_size, gamma=0.5), opt, 20)
    for e, got in enumerate(lrs):
        close(got, [0.1 * 0.5 ** (e // step_size), 0.02 * 0.5 ** (e // step_size)])


def test_multistep_lr_closed_form():
    """``lr_e = base · γ^(number of milestones <= e)``, a repeated milestone counting twice."""
    milestones = [2, 5, 5, 9]
    opt = _sgd()
    lrs = _sequence(lr_scheduler.MultiStepLR(opt, milestones, gamma=0.3), opt, 15)
    for e, got in enumerate(lrs):
        close(got, [base * 0.3 ** bisect_right(milestones, e) for base in (0.1, 0.02)])


def test_exponential_lr_closed_form():
    opt = _sgd()
    lrs = _sequence(lr_scheduler.ExponentialLR(opt, gamma=0.9), opt, 15)
    for e, got in enumerate(lrs):
        close(got, [0.1 * 0.9 ** e, 0.02 * 0.9 ** e])


def test_cosine_annealing_closed_form():
    """``eta_min + (base - eta_min)(1 + cos(π e / T_max)) / 2``, periodic with period 2·T_max."""
    opt = _sgd()
    lrs = _sequence(lr_scheduler.CosineAnnealingLR(opt, T_max=5, eta_min=0.001), opt, 23)
    for e, got in enumerate(lrs):
        close(got, [0.001 + (base - 0.001) * (1 + math.cos(math.pi * e / 5)) / 2 for base in (0.1, 0.02)])


def test_lambda_lr_closed_form():
    opt = _sgd()
    lrs = _sequence(lr_scheduler.LambdaLR(opt, [lambda e: 1 / (1 + e), lambda e: 0.5 ** e]), opt, 10)
    for e, got in enumerate(lrs):
        close(got, [0.1 / (1 + e), 0.02 * 0.5 ** e])


def test_reduce_lr_on_plateau_by_hand():
    """patience 1: the lr falls on the second epoch without improvement; cooldown 1 then ignores one bad epoch;
    min_lr floors it."""
    opt = _sgd((0.1, 0.02))
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.015)
    expected = []
    for metric, lr in [(1.0, [0.1, 0.02]), (1.0, [0.1, 0.02]), (1.0, [0.05, 0.015]), (1.0, [0.05, 0.015]),
                       (1.0, [0.05, 0.015]), (1.0, [0.025, 0.015]), (0.5, [0.025, 0.015])]:
        sched.step(metric)
        expected.append(lr)
        assert sched.get_last_lr() == lr, (len(expected), sched.get_last_lr())


@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.1, momentum=0.9)], ids=["plain", "momentum"])
def test_sgd_group_of_mixed_dtypes_steps_each_as_alone(rng, kwargs):
    """One group holding float32 and float64 parameters (and gradients) steps each exactly as a group of its own:
    the plain loop's learning rate follows each gradient's dtype."""
    starts = [rng.standard_normal((3, 4)).astype(d) for d in (np.float32, np.float64, np.float32)]
    together = [Parameter(s.copy()) for s in starts]
    alone = [Parameter(s.copy()) for s in starts]
    opt_together = optim.SGD(together, **kwargs)
    opts_alone = [optim.SGD([p], **kwargs) for p in alone]
    for _ in range(3):
        for a, b in zip(together, alone):
            a.grad = b.grad = rng.standard_normal(a.shape).astype(a.dtype)
        opt_together.step()
        for opt in opts_alone:
            opt.step()
    for a, b, s in zip(together, alone, starts):
        assert a.data.dtype == s.dtype
        np.testing.assert_array_equal(a.data, b.data)
        assert not np.array_equal(a.data, s)
