"""reference.diagnosis: each known wrong formula, written here on purpose, is named; noise and right answers are not.

Every case computes the right value with live torch and a deliberately wrong one with NumPy (the mistakes courses
make: biased running variance, the inverted momentum convention, eps outside the sqrt, a mean taken as a sum,
dropout scaled by p, a dampened first momentum step, Adam without bias correction, ...), checks that the wrong
value really fails the tolerance table, and asserts the diagnosis names the planted cause (as the best fit).
The same inputs with random noise instead, or with the right value, must get no diagnosis at all.
Eps is 1e-2/1e-3 where its placement is the bug, so the difference is visible in float32 too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference.diagnosis import (DETECTORS, category, diagnose, diagnoses, keep_rate_cause, normalize_kind,
                                 register)
from reference.tolerances import compare


@dataclass
class Case:
    """A failing comparison: what was compared, the wrong value, torch's value, the context, the planted cause."""

    check: str
    actual: np.ndarray
    expected: np.ndarray
    cause: str
    context: Dict[str, Any] = field(default_factory=dict)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def _batches(rng: np.random.Generator, dtype, shape=(12, 5), count: int = 3):
    c = shape[1]
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    loc, scale = rng.uniform(-2, 2, per_channel), rng.uniform(0.5, 3.0, per_channel)
    return [(rng.standard_normal(shape) * scale + loc).astype(dtype) for _ in range(count)]


# ---- BatchNorm running statistics: torch's F.batch_norm against a CS231n-style update written here ---------------
def _running_case(rng, dtype, *, stat: str, user_momentum: float, unbiased: bool, cause: str,
                  shape=(12, 5)) -> Case:
    batches = _batches(rng, dtype, shape)
    c = shape[1]
    rm, rv = torch.zeros(c, dtype=_t(batches[0]).dtype), torch.ones(c, dtype=_t(batches[0]).dtype)
    for x in batches:
        F.batch_norm(_t(x), rm, rv, training=True, momentum=0.1)
    r = np.zeros(c, dtype) if stat == "mean" else np.ones(c, dtype)
    axes = (0, *range(2, len(shape)))
    for x in batches:  # CS231n: running = momentum·running + (1 − momentum)·batch
        s = x.mean(axis=axes) if stat == "mean" else x.var(axis=axes, ddof=1 if unbiased else 0)
        r = user_momentum * r + (1 - user_momentum) * s
    expected = _np(rm if stat == "mean" else rv)
    return Case(f"running_{stat}", r.astype(dtype), expected, cause,
                {"kind": "BatchNorm1d" if len(shape) == 2 else "BatchNorm2d", "batches": batches, "momentum": 0.1})


# ---- normalisation formulas -----------------------------------------------------------------------------------------
def _bn_inputs(rng, dtype):
    (x,) = _batches(rng, dtype, count=1)
    gamma = rng.normal(1.0, 0.5, 5).astype(dtype)
    beta = rng.normal(0.0, 1.0, 5).astype(dtype)
    return x, gamma, beta


def _bn_train_case(rng, dtype, eps_at: str, cause: str) -> Case:
    x, gamma, beta = _bn_inputs(rng, dtype)
    eps = 1e-2
    expected = _np(F.batch_norm(_t(x), None, None, _t(gamma), _t(beta), training=True, eps=eps))
    mean, std = x.mean(axis=0), np.sqrt(x.var(axis=0))
    denominator = std + eps if eps_at == "outside" else std
    actual = gamma * (x - mean) / denominator + beta
    return Case("out", actual.astype(dtype), expected, cause,
                {"kind": "batchnorm", "x": x, "gamma": gamma, "beta": beta, "eps": eps, "n": x.shape[0]})


def _ln_case(rng, dtype) -> Case:
    x = (rng.standard_normal((9, 13)) * rng.uniform(0.5, 3, (9, 1)) + rng.uniform(-2, 2, (9, 1))).astype(dtype)
    gamma, beta = rng.normal(1.0, 0.5, 13).astype(dtype), rng.normal(0.0, 1.0, 13).astype(dtype)
    eps = 1e-2
    expected = _np(F.layer_norm(_t(x), (13,), _t(gamma), _t(beta), eps=eps))
    mean, std = x.mean(axis=1, keepdims=True), x.std(axis=1, keepdims=True)
    actual = gamma * (x - mean) / (std + eps) + beta
    return Case("out", actual.astype(dtype), expected, "eps_outside_sqrt",
                {"kind": "LayerNorm", "x": x, "gamma": gamma, "beta": beta, "eps": eps})


def _bn_eval_case(rng, dtype, variant: str, cause: str) -> Case:
    x, gamma, beta = _bn_inputs(rng, dtype)
    eps = 1e-2
    rm = rng.normal(0.0, 1.0, 5).astype(dtype)
    rv = rng.uniform(0.5, 3.0, 5).astype(dtype)  # the implementation's own running statistics
    expected = _np(F.batch_norm(_t(x), _t(rm), _t(rv), _t(gamma), _t(beta), training=False, eps=eps))
    wrong = {
        "eps_outside": lambda: (x - rm) / (np.sqrt(rv) + eps) * gamma + beta,            # seed 001
        "no_eps_no_beta": lambda: (x - rm) * gamma / np.sqrt(rv),                        # seed 002
        "no_beta": lambda: gamma * (x - rm) / np.sqrt(rv + eps),
        "batch_stats": lambda: gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta,
    }[variant]()
    return Case("eval out", wrong.astype(dtype), expected, cause,
                {"kind": "batchnorm", "x": x, "gamma": gamma, "beta": beta, "eps": eps,
                 "running_mean": rm, "running_var": rv})


def _eval_from_stats_case(rng, dtype) -> Case:
    """Torch's eval with torch's running stats; the right formula applied to (different) running stats."""
    x, gamma, beta = _bn_inputs(rng, dtype)
    eps = 1e-5
    rm, rv = rng.normal(0.0, 1.0, 5).astype(dtype), rng.uniform(0.5, 3.0, 5).astype(dtype)
    own_var = (rv * 1.3).astype(dtype)
    expected = _np(F.batch_norm(_t(x), _t(rm), _t(rv), _t(gamma), _t(beta), training=False, eps=eps))
    actual = gamma * (x - rm) / np.sqrt(own_var + eps) + beta
    return Case("eval out", actual.astype(dtype), expected, "eval_from_running_stats",
                {"kind": "batchnorm", "x": x, "gamma": gamma, "beta": beta, "eps": eps,
                 "running_mean": rm, "running_var": own_var})


# ---- a gradient off by the batch size -------------------------------------------------------------------------------
def _ce_case(rng, dtype, reduction: str, cause: str) -> Case:
    n, c = 7, 4
    logits = rng.normal(size=(n, c)).astype(dtype)
    y = rng.integers(0, c, n)
    lt = _t(logits).requires_grad_(True)
    F.cross_entropy(lt, torch.from_numpy(y), reduction=reduction).backward()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dlogits = p - np.eye(c, dtype=dtype)[y]  # the gradient of the SUM over the batch
    actual = dlogits if reduction == "mean" else dlogits / n
    return Case("dx", actual.astype(dtype), _np(lt.grad), cause, {"kind": "CrossEntropyLoss", "n": n})


# ---- dropout --------------------------------------------------------------------------------------------------------
def _dropout_case(rng, dtype, scale: Callable[[float], float], cause: str, check: str = "out") -> Case:
    p = 0.3
    x = rng.standard_normal((30, 17)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    mask_t = torch.bernoulli(torch.full(x.shape, 1 - p, dtype=torch.float64), generator=gen).bool()
    mask = mask_t.numpy().copy()
    xt = _t(x).requires_grad_(True)
    out = xt * mask_t.to(xt.dtype).div_(1 - p)  # torch's dropout arithmetic for this mask
    out.backward(_t(dout))
    source = x if check == "out" else dout
    actual = (source * mask * scale(p)).astype(dtype)
    expected = _np(out) if check == "out" else _np(xt.grad)
    return Case(check, actual, expected, cause, {"kind": "dropout", "p": p, "mask": mask, "x": x, "dout": dout})


def _dropout_eval_case(rng, dtype) -> Case:
    p = 0.3
    x = rng.standard_normal((30, 17)).astype(dtype)
    expected = _np(F.dropout(_t(x), p, training=False))
    return Case("eval out", (x * (1 - p)).astype(dtype), expected, "dropout_eval_scaled",
                {"kind": "Dropout", "p": p, "x": x})


# ---- optimizer trajectories -----------------------------------------------------------------------------------------
def _torch_path(make: Callable, w0: np.ndarray, grads: np.ndarray) -> np.ndarray:
    param = torch.nn.Parameter(_t(w0))
    opt = make([param])
    path = []
    for g in grads:
        param.grad = _t(g)
        opt.step()
        path.append(_np(param))
    return np.stack(path)


def _optim_case(rng, dtype, make: Callable, wrong: Callable, cause: str, kind: str, last_only: bool = False,
                **hyper: Any) -> Case:
    w0 = rng.normal(size=(3, 5)).astype(dtype)
    grads = rng.normal(size=(6, 3, 5)).astype(dtype)
    expected = _torch_path(make, w0, grads)
    w, state, path = w0.copy(), {}, []
    for t, g in enumerate(grads, start=1):
        w = wrong(w, g, state, t).astype(dtype)
        path.append(w)
    actual = np.stack(path)
    if last_only:
        actual, expected = actual[-1], expected[-1]
    return Case("next_w", actual, expected, cause, {"kind": kind, "param0": w0, "grads": grads, **hyper})


def _dampened(w, g, state, t, lr=0.1, m=0.9, d=0.5):
    state["buf"] = m * state.get("buf", 0) + (1 - d) * g  # the buffer starts at zeros: the first step is damped
    return w - lr * state["buf"]


def _dlai(w, g, state, t, lr=0.1, beta=0.9):
    state["v"] = beta * state.get("v", 0) + (1 - beta) * g
    return w - lr * state["v"]


def _cs231n(w, g, state, t, lr=0.1, mu=0.9):
    state["v"] = mu * state.get("v", 0) - lr * g
    return w + state["v"]


def _adam_no_bc(w, g, state, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
    return w - lr * state["m"] / (np.sqrt(state["v"]) + eps)


def _adam_eps_inside(w, g, state, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-3):
    state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
    return w - lr * (state["m"] / (1 - b1 ** t)) / np.sqrt(state["v"] / (1 - b2 ** t) + eps)


def _rmsprop_eps_inside(w, g, state, t, lr=0.01, alpha=0.9, eps=1e-3):
    state["s"] = alpha * state.get("s", 0) + (1 - alpha) * g * g
    return w - lr * g / np.sqrt(state["s"] + eps)


SGD, Adam, RMSprop = torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop

CASES: Dict[str, Callable[[np.random.Generator, np.dtype], Case]] = {
    "biased running_var": lambda r, d: _running_case(r, d, stat="var", user_momentum=0.9, unbiased=False,
                                                     cause="biased_running_var"),
    "biased running_var, 4-D": lambda r, d: _running_case(r, d, stat="var", user_momentum=0.9, unbiased=False,
                                                          cause="biased_running_var", shape=(4, 3, 5, 2)),
    "inverted momentum, mean": lambda r, d: _running_case(r, d, stat="mean", user_momentum=0.1, unbiased=True,
                                                          cause="inverted_momentum"),
    "inverted momentum, var": lambda r, d: _running_case(r, d, stat="var", user_momentum=0.1, unbiased=True,
                                                         cause="inverted_momentum"),
    "inverted momentum, biased var": lambda r, d: _running_case(r, d, stat="var", user_momentum=0.1,
                                                                unbiased=False,
                                                                cause="inverted_momentum_biased_var"),
    "BatchNorm eps outside sqrt": lambda r, d: _bn_train_case(r, d, "outside", "eps_outside_sqrt"),
    "BatchNorm eps missing": lambda r, d: _bn_train_case(r, d, "none", "no_eps"),
    "LayerNorm eps outside sqrt": _ln_case,
    "eval eps outside sqrt (seed 001)": lambda r, d: _bn_eval_case(r, d, "eps_outside", "eval_eps_outside_sqrt"),
    "eval no eps, no beta (seed 002)": lambda r, d: _bn_eval_case(r, d, "no_eps_no_beta", "eval_no_eps_no_beta"),
    "eval no beta": lambda r, d: _bn_eval_case(r, d, "no_beta", "eval_no_beta"),
    "eval batch statistics": lambda r, d: _bn_eval_case(r, d, "batch_stats", "eval_batch_stats"),
    "eval from other running stats": _eval_from_stats_case,
    "gradient summed, torch mean": lambda r, d: _ce_case(r, d, "mean", "grad_times_n"),
    "gradient averaged, torch sum": lambda r, d: _ce_case(r, d, "sum", "grad_over_n"),
    "dropout / p": lambda r, d: _dropout_case(r, d, lambda p: 1 / p, "dropout_over_p"),
    "dropout dx / p": lambda r, d: _dropout_case(r, d, lambda p: 1 / p, "dropout_over_p", check="dx"),
    "dropout * p": lambda r, d: _dropout_case(r, d, lambda p: p, "dropout_times_p"),
    "dropout * (1 - p)": lambda r, d: _dropout_case(r, d, lambda p: 1 - p, "dropout_times_keep"),
    "dropout no rescale": lambda r, d: _dropout_case(r, d, lambda p: 1.0, "dropout_no_rescale"),
    "dropout eval scaled": _dropout_eval_case,
    "momentum dampened first step": lambda r, d: _optim_case(
        r, d, lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.5), _dampened, "momentum_dampened_first_step",
        "SGD", lr=0.1, momentum=0.9, dampening=0.5),
    "momentum EMA (deeplearning.ai) as torch momentum": lambda r, d: _optim_case(
        r, d, lambda ps: SGD(ps, lr=0.1, momentum=0.9), _dlai, "momentum_ema", "sgd_momentum", lr=0.1,
        momentum=0.9),
    "CS231n momentum where deeplearning.ai was mapped": lambda r, d: _optim_case(
        r, d, lambda ps: SGD(ps, lr=0.1 * (1 - 0.9), momentum=0.9), _cs231n, "momentum_without_ema",
        "sgd_momentum", lr=0.1 * (1 - 0.9), momentum=0.9),
    "Adam without bias correction (last step)": lambda r, d: _optim_case(
        r, d, lambda ps: Adam(ps, lr=0.01), _adam_no_bc, "adam_no_bias_correction", "Adam", last_only=True,
        lr=0.01, betas=(0.9, 0.999), eps=1e-8),
    "Adam eps inside sqrt": lambda r, d: _optim_case(
        r, d, lambda ps: Adam(ps, lr=0.01, eps=1e-3), _adam_eps_inside, "adam_eps_inside_sqrt", "adam",
        lr=0.01, betas=(0.9, 0.999), eps=1e-3),
    "RMSprop eps inside sqrt": lambda r, d: _optim_case(
        r, d, lambda ps: RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-3), _rmsprop_eps_inside,
        "rmsprop_eps_inside_sqrt", "rmsprop", lr=0.01, alpha=0.9, eps=1e-3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_planted_cause_is_named(name, rng, dtype):
    case = CASES[name](rng, dtype)
    assert case.actual.dtype == case.expected.dtype == dtype
    assert not compare(case.check, case.actual, case.expected).passed, "the planted bug must fail the comparison"
    found = diagnoses(case.check, case.actual, case.expected, **case.context)
    assert [d.name for d in found][:1] == [case.cause], found
    assert diagnose(case.check, case.actual, case.expected, **case.context) == DETECTORS[case.cause].cause


@pytest.mark.parametrize("name", list(CASES))
def test_no_diagnosis_for_random_noise(name, rng, dtype):
    case = CASES[name](rng, dtype)
    for size in (1e-3, 1e-1):
        noisy = (case.expected * (1 + size * rng.standard_normal(case.expected.shape))).astype(dtype)
        assert not compare(case.check, noisy, case.expected).passed
        assert diagnoses(case.check, noisy, case.expected, **case.context) == []


@pytest.mark.parametrize("name", list(CASES))
def test_no_diagnosis_for_the_right_answer(name, rng, dtype):
    case = CASES[name](rng, dtype)
    assert diagnose(case.check, case.expected.copy(), case.expected, **case.context) is None


@pytest.mark.parametrize("name", ["biased running_var", "BatchNorm eps outside sqrt", "dropout / p",
                                  "Adam without bias correction (last step)"])
def test_detectors_need_their_context(name, rng):
    """Without the inputs to recompute from, nothing is claimed (only the batch-size detector needs just ``n``)."""
    case = CASES[name](rng, np.dtype(np.float64))
    assert diagnose(case.check, case.actual, case.expected) is None
    assert diagnose(case.check, case.actual, case.expected, kind=case.context["kind"]) is None


def test_dtype_only_difference_is_named(rng):
    x, gamma, beta = _bn_inputs(rng, np.float32)
    expected = _np(F.batch_norm(_t(x), None, None, _t(gamma), _t(beta), training=True))
    x64 = x.astype(np.float64)  # the same formula, promoted to float64 as np.ones(N)-style code does
    actual = gamma * (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5) + beta
    assert actual.dtype == np.float64 and not compare("out", actual, expected).passed
    assert [d.name for d in diagnoses("out", actual, expected)] == ["dtype"]


@pytest.mark.parametrize("p, kept_fraction, expect", [
    (0.3, 0.3, "keep rate"), (0.3, 0.7, None), (0.2, 1.0, "nothing was dropped"), (0.5, 0.5, None)])
def test_keep_rate_cause(p, kept_fraction, expect):
    total = 6000
    cause = keep_rate_cause(int(round(kept_fraction * total)), total, p)
    assert (cause is None) if expect is None else (expect in cause)


@pytest.mark.parametrize("check, expected", [
    ("out", "out"), ("dx", "grad"), ("dgamma", "grad"), ("grad weight", "grad"), ("dinput", "grad"),
    ("running_var", "running_var"), ("buffer running_mean", "running_mean"), ("eval out", "eval"),
    ("eval out (your running stats)", "eval"), ("next_w", "trajectory"), ("param 0.weight", "trajectory"),
    ("loss", "out"), ("config velocity", "other")])
def test_category(check, expected):
    assert category(check) == expected


@pytest.mark.parametrize("kind, expected", [
    ("BatchNorm1d", "batchnorm"), ("spatial_batchnorm", "batchnorm"), ("LayerNorm", "layernorm"),
    ("SGD(momentum, dampening)", "sgd"), ("sgd_momentum", "sgd"), ("Adam(amsgrad)", "adam"), ("AdamW", "adamw"),
    ("affine", "affine"), ("Linear", "affine")])
def test_normalize_kind(kind, expected):
    assert normalize_kind(kind) == expected


def test_register_rejects_an_unknown_category():
    with pytest.raises(ValueError, match="unknown check categories"):
        register("x", "cause", ("outputs",))
