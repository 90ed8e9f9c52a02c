"""reference.kinds.d2l: Dive into Deep Learning's from-scratch functions against torch.

- the book's own code (the PyTorch edition) passes every check under ``--course d2l``, and so do variants in the
  styles students write (NumPy for the plain-arithmetic functions, ``torch.var``, (1, C)-shaped statistics);
- each planted bug fails the checks it should, each named with its cause; every cause of
  :data:`reference.kinds.d2l.CAUSES` is planted at least once (``test_every_cause_is_planted``);
- under the torch profile the book's conventions (biased running variance, eps inside the sqrt) fail with the cause
  "matches the d2l convention: pass --course d2l"; the book's formulas equal torch.optim where the docs say so;
- the dropout check leaves torch's and NumPy's global RNGs as it found them;
- the names infer their kinds (the optimiser names CS231n shares keep their built-in kinds; the parameters tell
  them apart), and ``handnn-verify --user FILE.py:FUNC`` returns 0 or 1.
"""
from __future__ import annotations

import textwrap

import inspect
from typing import Callable, Dict, Tuple

import numpy as np
import pytest
import torch

from reference.check import infer_kind, main_user
from reference.kinds import KINDS, Options, load, partner_functions
from reference.kinds import d2l as course
from reference.tolerances import compare

load()
D2L = Options(course="d2l")
TORCH = Options(course="torch")


def run(kind: str, fn: Callable, options: Options = D2L, **partners: Callable):
    registered = KINDS[kind]
    return registered.run(partner_functions(registered, fn, partners), options)


def failures(report) -> Dict[str, str]:
    return {row.check: row.diagnosis for row in report.failures}


# ---- the book's code (d2l-en 1.0, PyTorch edition) ------------------------------------------------------------------
def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not torch.is_grad_enabled():
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
        moving_var = (1.0 - momentum) * moving_var + momentum * var
    Y = gamma * X_hat + beta
    return Y, moving_mean.data, moving_var.data


def dropout_layer(X, dropout):
    assert 0 <= dropout <= 1
    if dropout == 1:
        return torch.zeros_like(X)
    mask = (torch.rand(X.shape) > dropout).float()
    return mask * X / (1.0 - dropout)


def l2_penalty(w):
    return (w ** 2).sum() / 2


def sgd(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def init_momentum_states(feature_dim):
    v_w = torch.zeros((feature_dim, 1))
    v_b = torch.zeros(1)
    return (v_w, v_b)


def sgd_momentum(params, states, hyperparams):
    for p, v in zip(params, states):
        with torch.no_grad():
            v[:] = hyperparams['momentum'] * v + p.grad
            p[:] -= hyperparams['lr'] * v
        p.grad.data.zero_()


def init_adagrad_states(feature_dim):
    return (torch.zeros((feature_dim, 1)), torch.zeros(1))


def adagrad(params, states, hyperparams):
    eps = 1e-6
    for p, s in zip(params, states):
        with torch.no_grad():
            s[:] += torch.square(p.grad)
            p[:] -= hyperparams['lr'] * p.grad / torch.sqrt(s + eps)
        p.grad.data.zero_()


def init_rmsprop_states(feature_dim):
    return (torch.zeros((feature_dim, 1)), torch.zeros(1))


def rmsprop(params, states, hyperparams):
    gamma, eps = hyperparams['gamma'], 1e-6
    for p, s in zip(params, states):
        with torch.no_grad():
            s[:] = gamma * s + (1 - gamma) * torch.square(p.grad)
            p[:] -= hyperparams['lr'] * p.grad / torch.sqrt(s + eps)
        p.grad.data.zero_()


def init_adadelta_states(feature_dim):
    s_w, s_b = torch.zeros((feature_dim, 1)), torch.zeros(1)
    delta_w, delta_b = torch.zeros((feature_dim, 1)), torch.zeros(1)
    return ((s_w, delta_w), (s_b, delta_b))


def adadelta(params, states, hyperparams):
    rho, eps = hyperparams['rho'], 1e-5
    for p, (s, delta) in zip(params, states):
        with torch.no_grad():
            s[:] = rho * s + (1 - rho) * torch.square(p.grad)
            g = (torch.sqrt(delta + eps) / torch.sqrt(s + eps)) * p.grad
            p[:] -= g
            delta[:] = rho * delta + (1 - rho) * g * g
        p.grad.data.zero_()


def init_adam_states(feature_dim):
    v_w, v_b = torch.zeros((feature_dim, 1)), torch.zeros(1)
    s_w, s_b = torch.zeros((feature_dim, 1)), torch.zeros(1)
    return ((v_w, s_w), (v_b, s_b))


def adam(params, states, hyperparams):
    beta1, beta2, eps = 0.9, 0.999, 1e-6
    for p, (v, s) in zip(params, states):
        with torch.no_grad():
            v[:] = beta1 * v + (1 - beta1) * p.grad
            s[:] = beta2 * s + (1 - beta2) * torch.square(p.grad)
            v_bias_corr = v / (1 - beta1 ** hyperparams['t'])
            s_bias_corr = s / (1 - beta2 ** hyperparams['t'])
            p[:] -= hyperparams['lr'] * v_bias_corr / (torch.sqrt(s_bias_corr) + eps)
        p.grad.data.zero_()
    hyperparams['t'] += 1


# ---- other correct styles -------------------------------------------------------------------------------------------
def batch_norm_var(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """torch.var(unbiased=False), keepdim for 2-d too, prediction mode first."""
    dims = (0,) if X.dim() == 2 else (0, 2, 3)
    if torch.is_grad_enabled():
        mean = X.mean(dim=dims, keepdim=True)
        var = X.var(dim=dims, unbiased=False, keepdim=True)
        moving_mean = moving_mean * (1 - momentum) + mean * momentum
        moving_var = moving_var * (1 - momentum) + var * momentum
    else:
        mean, var = moving_mean, moving_var
    return gamma * (X - mean) * torch.rsqrt(var + eps) + beta, moving_mean.detach(), moving_var.detach()


def batch_norm_unbiased(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """torch's convention: the unbiased batch variance in the running variance (right under the torch profile)."""
    dims = (0,) if X.dim() == 2 else (0, 2, 3)
    if not torch.is_grad_enabled():
        return gamma * (X - moving_mean) / torch.sqrt(moving_var + eps) + beta, moving_mean, moving_var
    mean = X.mean(dim=dims, keepdim=True)
    var = X.var(dim=dims, unbiased=False, keepdim=True)
    n = X.numel() // X.shape[1]
    moving_mean = (1 - momentum) * moving_mean + momentum * mean
    moving_var = (1 - momentum) * moving_var + momentum * var * n / (n - 1)
    return gamma * (X - mean) / torch.sqrt(var + eps) + beta, moving_mean.detach(), moving_var.detach()


def dropout_layer_numpy(X, dropout):
    """The book's MXNet edition with NumPy: a NumPy array in, NumPy's global RNG."""
    X = np.asarray(X)
    if dropout == 1:
        return np.zeros_like(X)
    mask = np.random.uniform(0, 1, X.shape) > dropout
    return mask.astype(X.dtype) * X / (1.0 - dropout)


def dropout_layer_bernoulli(X, dropout):
    if dropout == 1:
        return torch.zeros_like(X)
    keep = torch.bernoulli(torch.full(X.shape, 1 - dropout, dtype=X.dtype))
    return X * keep / (1 - dropout)


def l2_penalty_numpy(w):
    w = np.asarray(w)
    return np.sum(w ** 2) / 2


def sgd_ch11(params, states, hyperparams):
    for p in params:
        p.data.sub_(hyperparams['lr'] * p.grad)
        p.grad.data.zero_()


CORRECT = {
    "batch_norm (the book)": ("d2l_batch_norm", batch_norm, D2L),
    "batch_norm (torch.var, keepdim)": ("d2l_batch_norm", batch_norm_var, D2L),
    "batch_norm (unbiased, torch profile)": ("d2l_batch_norm", batch_norm_unbiased, TORCH),
    "dropout_layer (the book)": ("d2l_dropout_layer", dropout_layer, D2L),
    "dropout_layer (NumPy)": ("d2l_dropout_layer", dropout_layer_numpy, D2L),
    "dropout_layer (bernoulli)": ("d2l_dropout_layer", dropout_layer_bernoulli, TORCH),
    "l2_penalty (the book)": ("d2l_l2_penalty", l2_penalty, D2L),
    "l2_penalty (NumPy)": ("d2l_l2_penalty", l2_penalty_numpy, TORCH),
    "sgd (params, lr, batch_size)": ("d2l_sgd", sgd, TORCH),
    "sgd (chapter 12's form)": ("d2l_sgd", sgd_ch11, D2L),
    "sgd_momentum": ("d2l_sgd_momentum", sgd_momentum, TORCH),
    "adagrad": ("d2l_adagrad", adagrad, D2L),
    "rmsprop": ("d2l_rmsprop", rmsprop, D2L),
    "adadelta": ("d2l_adadelta", adadelta, TORCH),
    "adam": ("d2l_adam", adam, D2L),
}
PARTNERS = {"init_momentum_states": init_momentum_states, "init_adagrad_states": init_adagrad_states,
            "init_rmsprop_states": init_rmsprop_states, "init_adadelta_states": init_adadelta_states,
            "init_adam_states": init_adam_states}


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_code_passes(name):
    kind, fn, options = CORRECT[name]
    report = run(kind, fn, options, **PARTNERS)
    assert report.passed, str(report)


def test_the_book_passes_in_float32():
    options = Options(dtype="float32", course="d2l")
    for kind, fn in (("d2l_batch_norm", batch_norm), ("d2l_adam", adam), ("d2l_dropout_layer", dropout_layer)):
        report = run(kind, fn, options, **PARTNERS)
        assert report.passed, str(report)


def test_init_states_are_checked_and_used():
    report = run("d2l_adam", adam, D2L, **PARTNERS)
    assert "init states" in report and report["init states"].passed
    assert "adam / init_adam_states" == report.functions
    assert report["state v"].passed and report["state s"].passed and report["hyperparams['t']"].passed


def test_course_notes_and_torch_equivalents_are_stated():
    report = run("d2l_batch_norm", batch_norm)
    assert "course convention: biased running variance (torch: unbiased)" in report.conventions
    assert report["moving_var (2-d)"].diagnosis == "course convention: biased running variance (torch: unbiased)"
    text = str(run("d2l_rmsprop", rmsprop, **PARTNERS))
    assert "eps inside the sqrt" in text and "RMSprop" in text


# ---- planted bugs ---------------------------------------------------------------------------------------------------
def make_batch_norm(form="new", var="biased", axes4=(0, 2, 3), eps_at="inside", predict=True,
                    normalise_unbiased=False, detach=False):
    def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        if predict and not torch.is_grad_enabled():
            return gamma * (X - moving_mean) / torch.sqrt(moving_var + eps) + beta, moving_mean, moving_var
        if detach:
            X = torch.from_numpy(X.detach().numpy())
        dims = (0,) if X.dim() == 2 else axes4
        mean = X.mean(dim=dims, keepdim=True)
        var_b = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
        n = X.numel() // mean.numel()
        scale = X.var(dim=dims, keepdim=True) if normalise_unbiased else var_b
        denom = torch.sqrt(scale) + eps if eps_at == "outside" else torch.sqrt(scale + eps)
        stat = var_b * n / (n - 1) if var == "unbiased" else var_b
        keep, new = (1 - momentum, momentum) if form == "new" else (momentum, 1 - momentum)
        moving_mean = keep * moving_mean + new * mean
        moving_var = keep * moving_var + new * stat
        return gamma * (X - mean) / denom + beta, moving_mean.detach(), moving_var.detach()
    return batch_norm


def make_dropout(keep=False, scale="inverse", special_one=True, mask_shape="full", seeded=False,
                 python_division=False):
    def dropout_layer(X, dropout):
        if special_one and dropout == 1:
            return torch.zeros_like(X)
        if seeded:
            torch.manual_seed(0)
        shape = {"full": X.shape, "row": X.shape[1:], "column": (X.shape[0], 1)}[mask_shape]
        u = torch.rand(shape)
        mask = (u < dropout if keep else u > dropout).float()
        if python_division:
            return mask * X * (1 / (1 - dropout))  # a Python float: ZeroDivisionError at dropout = 1
        if scale == "none":
            return mask * X
        if scale == "times":
            return mask * X * (1 - dropout)
        return mask * X / (dropout if keep else 1.0 - dropout)  # a tensor over 0.0: NaN at dropout = 1
    return dropout_layer


def l2_no_half(w):
    return (w ** 2).sum()


def l2_norm(w):
    return torch.sqrt((w ** 2).sum())


def l2_mean(w):
    return (w ** 2).mean()


def sgd_no_batch_size(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad
            param.grad.zero_()


def sgd_times_batch_size(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad * batch_size
            param.grad.zero_()


def sgd_rebinds(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param.grad.zero_()
            param = param - lr * param.grad / batch_size  # noqa: F841 — the planted bug: a new tensor, not an update


def momentum_ema(params, states, hyperparams):
    beta = hyperparams['momentum']
    for p, v in zip(params, states):
        with torch.no_grad():
            v[:] = beta * v + (1 - beta) * p.grad
            p[:] -= hyperparams['lr'] * v
        p.grad.data.zero_()


def momentum_no_zero(params, states, hyperparams):
    for p, v in zip(params, states):
        with torch.no_grad():
            v[:] = hyperparams['momentum'] * v + p.grad
            p[:] -= hyperparams['lr'] * v


def make_adagrad(eps_outside=False, accumulate=True):
    def adagrad(params, states, hyperparams):
        for p, s in zip(params, states):
            with torch.no_grad():
                if accumulate:
                    s[:] += p.grad ** 2
                else:
                    s[:] = p.grad ** 2
                denom = torch.sqrt(s) + 1e-6 if eps_outside else torch.sqrt(s + 1e-6)
                p[:] -= hyperparams['lr'] * p.grad / denom
            p.grad.data.zero_()
    return adagrad


def make_rmsprop(eps_outside=False, swapped=False):
    def rmsprop(params, states, hyperparams):
        gamma = hyperparams['gamma']
        for p, s in zip(params, states):
            with torch.no_grad():
                if swapped:
                    s[:] = (1 - gamma) * s + gamma * p.grad ** 2
                else:
                    s[:] = gamma * s + (1 - gamma) * p.grad ** 2
                denom = torch.sqrt(s) + 1e-6 if eps_outside else torch.sqrt(s + 1e-6)
                p[:] -= hyperparams['lr'] * p.grad / denom
            p.grad.data.zero_()
    return rmsprop


def make_adadelta(delta_first=False, eps_outside=False):
    def adadelta(params, states, hyperparams):
        rho, eps = hyperparams['rho'], 1e-5
        root = (lambda v: torch.sqrt(v) + eps) if eps_outside else (lambda v: torch.sqrt(v + eps))
        for p, (s, delta) in zip(params, states):
            with torch.no_grad():
                s[:] = rho * s + (1 - rho) * p.grad ** 2
                if delta_first:
                    g = root(delta) / root(s) * p.grad
                    delta[:] = rho * delta + (1 - rho) * g * g
                g = root(delta) / root(s) * p.grad
                p[:] -= g
                if not delta_first:
                    delta[:] = rho * delta + (1 - rho) * g * g
            p.grad.data.zero_()
    return adadelta


def make_adam(correct=True, increment=True, eps_inside=False):
    def adam(params, states, hyperparams):
        beta1, beta2, eps, t = 0.9, 0.999, 1e-6, hyperparams['t']
        for p, (v, s) in zip(params, states):
            with torch.no_grad():
                v[:] = beta1 * v + (1 - beta1) * p.grad
                s[:] = beta2 * s + (1 - beta2) * p.grad ** 2
                v_hat = v / (1 - beta1 ** t) if correct else v
                s_hat = s / (1 - beta2 ** t) if correct else s
                denom = torch.sqrt(s_hat + eps) if eps_inside else torch.sqrt(s_hat) + eps
                p[:] -= hyperparams['lr'] * v_hat / denom
            p.grad.data.zero_()
        if increment:
            hyperparams['t'] += 1
    return adam


def _each(shapes: Tuple[str, ...], **checks: str) -> Dict[str, str]:
    """{'Y (2-d)': cause, 'Y (4-d)': cause, ...} for the shapes given."""
    return {f"{check.replace('_eval', 'eval ')} ({shape})": cause for shape in shapes for check, cause in
            checks.items()}


BOTH = ("2-d", "4-d")
PLANTED = {
    # (kind, function, profile, {check: cause key}) — the checks listed fail, each with that cause
    "bn: the book under the torch profile": (
        "d2l_batch_norm", batch_norm, TORCH,
        _each(BOTH, moving_var="bn_biased_var_torch", _evalY="bn_biased_var_torch")),
    "bn: unbiased running variance under d2l": (
        "d2l_batch_norm", make_batch_norm(var="unbiased"), D2L,
        _each(BOTH, moving_var="bn_unbiased_var_d2l", _evalY="bn_unbiased_var_d2l")),
    "bn: momentum swapped": (
        "d2l_batch_norm", make_batch_norm(form="old"), D2L,
        _each(BOTH, moving_mean="bn_momentum_swapped", moving_var="bn_momentum_swapped",
              _evalY="bn_momentum_swapped")),
    "bn: momentum swapped, unbiased": (
        "d2l_batch_norm", make_batch_norm(form="old", var="unbiased"), D2L,
        _each(BOTH, moving_var="bn_momentum_swapped_other_var", _evalY="bn_momentum_swapped_other_var")),
    "bn: per-example statistics (4-d)": (
        "d2l_batch_norm", make_batch_norm(axes4=(1, 2, 3)), D2L,
        _each(("4-d",), Y="bn_per_example", dX="bn_per_example", dgamma="bn_per_example")),
    "bn: batch axis only (4-d)": (
        "d2l_batch_norm", make_batch_norm(axes4=(0,)), D2L,
        _each(("4-d",), Y="bn_batch_axis_only", dX="bn_batch_axis_only")),
    "bn: instance statistics (4-d)": (
        "d2l_batch_norm", make_batch_norm(axes4=(2, 3)), D2L, _each(("4-d",), Y="bn_instance", dX="bn_instance")),
    "bn: eps outside the sqrt": (
        "d2l_batch_norm", make_batch_norm(eps_at="outside"), D2L, _each(BOTH, Y="bn_eps_outside",
                                                                        dX="bn_eps_outside")),
    "bn: normalised by the unbiased variance": (
        "d2l_batch_norm", make_batch_norm(normalise_unbiased=True), D2L,
        _each(BOTH, Y="bn_unbiased_batch_var", dX="bn_unbiased_batch_var")),
    "bn: batch statistics in prediction mode": (
        "d2l_batch_norm", make_batch_norm(predict=False), D2L,
        _each(BOTH, _evalY="bn_eval_batch_stats", **{"_evalmoving stats unchanged": "bn_eval_updates"})),
    "bn: through NumPy (no autograd)": (
        "d2l_batch_norm", make_batch_norm(detach=True), D2L, _each(BOTH, dX="bn_no_autograd")),
    "dropout as the keep probability": (
        "d2l_dropout_layer", make_dropout(keep=True), D2L,
        {"Y (dropout=0.3)": "dropout_keep_prob", "dX (dropout=0.3)": "dropout_keep_prob",
         "keep rate (dropout=0.3)": "dropout_keep_rate_is_p", "keep rate (dropout=0.7)": "dropout_keep_rate_is_p",
         "dropout=0": "dropout_keep_prob"}),
    "dropout without scaling": (
        "d2l_dropout_layer", make_dropout(scale="none"), D2L,
        {"Y (dropout=0.3)": "dropout_no_scale", "dX (dropout=0.7)": "dropout_no_scale"}),
    "dropout times (1 − dropout)": (
        "d2l_dropout_layer", make_dropout(scale="times"), D2L, {"Y (dropout=0.7)": "dropout_times_keep"}),
    "dropout = 1 without its special case": (
        "d2l_dropout_layer", make_dropout(special_one=False), D2L, {"dropout=1": "dropout_one_nan"}),
    "dropout = 1, a Python division": (
        "d2l_dropout_layer", make_dropout(special_one=False, python_division=True), D2L,
        {"dropout=1": "dropout_one_nan"}),
    "dropout mask shared by the rows": (
        "d2l_dropout_layer", make_dropout(mask_shape="row"), D2L,
        {"masks independent across rows (dropout=0.3)": "dropout_shared_row_mask"}),
    "dropout mask per row": (
        "d2l_dropout_layer", make_dropout(mask_shape="column"), D2L,
        {"masks independent across rows (dropout=0.7)": "dropout_shared_column_mask"}),
    "dropout seeded inside": (
        "d2l_dropout_layer", make_dropout(seeded=True), D2L,
        {"masks differ between calls (dropout=0.3)": "dropout_same_mask"}),
    "l2 without / 2": ("d2l_l2_penalty", l2_no_half, D2L,
                       {"penalty (200, 1)": "l2_no_half", "gradient (4, 3)": "l2_no_half"}),
    "l2 as the norm": ("d2l_l2_penalty", l2_norm, TORCH, {"penalty (4, 3)": "l2_norm", "gradient (200, 1)": "l2_norm"}),
    "l2 as the mean": ("d2l_l2_penalty", l2_mean, D2L, {"penalty (4, 3)": "l2_mean", "gradient (4, 3)": "l2_mean"}),
    "sgd without / batch_size": ("d2l_sgd", sgd_no_batch_size, D2L, {"params": "sgd_no_batch_size"}),
    "sgd times batch_size": ("d2l_sgd", sgd_times_batch_size, D2L, {"params": "sgd_times_batch_size"}),
    "sgd rebinding p": ("d2l_sgd", sgd_rebinds, D2L, {"params": "not_in_place"}),
    "momentum as an average": ("d2l_sgd_momentum", momentum_ema, D2L,
                               {"params": "momentum_ema", "state v": "momentum_ema"}),
    "momentum without zeroing p.grad": ("d2l_sgd_momentum", momentum_no_zero, D2L,
                                        {"p.grad zeroed": "grad_not_zeroed"}),
    "adagrad (the book) under the torch profile": ("d2l_adagrad", adagrad, TORCH, {"params": "eps_inside_torch"}),
    "adagrad eps outside": ("d2l_adagrad", make_adagrad(eps_outside=True), D2L, {"params": "eps_outside_d2l"}),
    "adagrad not accumulated": ("d2l_adagrad", make_adagrad(accumulate=False), D2L,
                                {"params": "adagrad_no_accumulation", "state s": "adagrad_no_accumulation"}),
    "rmsprop (the book) under the torch profile": ("d2l_rmsprop", rmsprop, TORCH, {"params": "eps_inside_torch"}),
    "rmsprop eps outside": ("d2l_rmsprop", make_rmsprop(eps_outside=True), D2L, {"params": "eps_outside_d2l"}),
    "rmsprop gamma swapped": ("d2l_rmsprop", make_rmsprop(swapped=True), D2L,
                              {"params": "rmsprop_gamma_swapped", "state s": "rmsprop_gamma_swapped"}),
    "adadelta Δ first": ("d2l_adadelta", make_adadelta(delta_first=True), D2L,
                         {"params": "adadelta_delta_first"}),
    "adadelta eps outside": ("d2l_adadelta", make_adadelta(eps_outside=True), D2L,
                             {"params": "adadelta_eps_outside"}),
    "adam without bias correction": ("d2l_adam", make_adam(correct=False), D2L,
                                     {"params": "adam_no_bias_correction"}),
    "adam with t not incremented": ("d2l_adam", make_adam(increment=False), D2L,
                                    {"params": "adam_t_not_incremented", "hyperparams['t']": "t_not_incremented"}),
    "adam eps inside": ("d2l_adam", make_adam(eps_inside=True), TORCH, {"params": "adam_eps_inside"}),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_planted_bug_is_caught_and_named(name):
    kind, fn, options, expected = PLANTED[name]
    report = run(kind, fn, options, **PARTNERS)
    failed = failures(report)
    assert not report.passed
    for check, cause in expected.items():
        assert check in failed, f"{check!r} passed:\n{report}"
        assert failed[check] == course.CAUSES[cause], f"{check!r}:\n{report}"


def test_every_cause_is_planted():
    planted = {cause for *_, expected in PLANTED.values() for cause in expected.values()}
    assert planted == set(course.CAUSES)


def test_torch_profile_points_to_the_d2l_profile():
    report = run("d2l_batch_norm", batch_norm, TORCH)
    assert course.D2L_PROFILE in report["moving_var (4-d)"].diagnosis
    assert run("d2l_batch_norm", batch_norm, D2L).passed


def test_a_raising_function_is_a_failed_check():
    def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        raise ValueError("not yet")
    report = run("d2l_batch_norm", batch_norm)
    assert not report.passed and "raised ValueError: not yet" in report.rows[0].comparison.problem


def test_wrong_return_form_is_a_failed_check():
    report = run("d2l_batch_norm", lambda X, *rest: X)
    assert not report.passed and "expected (Y, moving_mean, moving_var)" in report.rows[0].comparison.problem


# ---- references and randomness --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [name for name, rule in course.RULES.items() if rule.equal])
def test_the_books_formula_equals_torch_optim(name):
    """Where the docs say the book's rule is a torch.optim, the two trajectories agree (params and state)."""
    rule = course.RULES[name]
    rng = np.random.default_rng(1)
    t = course._Tensors(np.dtype(np.float64))
    params0 = (rng.normal(size=(5, 1)), rng.normal(size=(1,)))
    grads = [[rng.normal(size=p.shape) * 10.0 ** rng.uniform(-3, 0, p.shape) for p in params0] for _ in range(6)]
    ours, our_states = course._replay(rule.step, rule, params0, grads, t)
    theirs, their_states = course._torch_run(rule, params0, grads, t)
    assert compare("params", ours, theirs).passed
    for key in rule.states:
        assert compare(key, our_states[key], their_states[key]).passed


def test_dropout_check_restores_the_global_rngs():
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    run("d2l_dropout_layer", dropout_layer)
    run("d2l_dropout_layer", dropout_layer_numpy)
    assert torch.equal(torch.rand(3), expected_torch) and np.array_equal(np.random.rand(3), expected_numpy)


def test_the_same_seed_gives_the_same_report():
    first, second = run("d2l_dropout_layer", dropout_layer), run("d2l_dropout_layer", dropout_layer)
    assert first.to_dict()["rows"] == second.to_dict()["rows"]


# ---- names and the command line -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kind", [
    ("batch_norm", "d2l_batch_norm"), ("dropout_layer", "d2l_dropout_layer"), ("l2_penalty", "d2l_l2_penalty"),
    ("adagrad", "d2l_adagrad"), ("adadelta", "d2l_adadelta"),
    # shared with CS231n's update rules: the built-in kinds keep the names
    ("sgd", "sgd"), ("sgd_momentum", "sgd_momentum"), ("rmsprop", "rmsprop"), ("adam", "adam"),
    ("batchnorm_forward", "batchnorm")])
def test_infer_kind(name, kind):
    assert infer_kind(name) == kind


def test_parameters_tell_the_shared_names_apart():
    def cs231n_sgd(w, dw, config=None):
        return w - 1e-2 * dw, config
    cs231n_sgd.__name__ = "sgd"
    assert course.kind_for_function(sgd).name == "d2l_sgd"
    assert course.kind_for_function(sgd_ch11) is None  # its name is not a d2l name
    assert course.kind_for_function(adam).name == "d2l_adam"
    assert course.kind_for_function(cs231n_sgd) is None
    assert course.kind_for_function(batch_norm).name == "d2l_batch_norm"


@pytest.fixture
def user_file(tmp_path):
    functions = (batch_norm, dropout_layer, l2_penalty, adam, init_adam_states, adagrad, init_adagrad_states,
                 l2_no_half)
    source = "import numpy as np\nimport torch\n\n\n" + "\n\n".join(inspect.getsource(f) for f in functions)
    path = tmp_path / "d2l_user.py"
    path.write_text(source)
    bad = tmp_path / "d2l_bad.py"
    bad.write_text("import torch\n\n\n" + inspect.getsource(make_batch_norm) +
                   "\n\nbatch_norm = make_batch_norm(axes4=(1, 2, 3))\n")
    return path, bad


def test_cli(user_file, capsys):
    path, bad = user_file
    assert main_user(f"{path}:batch_norm", ["--course", "d2l"]) == 0
    capsys.readouterr()
    assert main_user(f"{path}:batch_norm", []) == 1  # the torch profile: the book's biased running variance
    assert course.D2L_PROFILE in capsys.readouterr().out
    assert main_user(f"{path}:dropout_layer", []) == 0
    assert main_user(f"{path}:l2_penalty", []) == 0
    assert main_user(f"{path}:l2_no_half", ["--kind", "d2l_l2_penalty"]) == 1
    assert main_user(f"{path}:adam", ["--kind", "d2l_adam"]) == 0
    assert main_user(f"{path}:adagrad", ["--course", "d2l"]) == 0
    assert main_user(f"{path}:adagrad", []) == 1  # torch's Adagrad: eps outside the sqrt
    capsys.readouterr()
    assert main_user(f"{bad}:batch_norm", []) == 1
    out = capsys.readouterr().out
    assert "d2l_batch_norm: batch_norm" in out and course.CAUSES["bn_per_example"] in out


# ---- editions -------------------------------------------------------------------------------------------------------
def test_the_chinese_editions_moving_average():
    """d2l-zh writes momentum·moving + (1 − momentum)·batch and passes 0.9: the same average as d2l 1.0's."""
    zh = make_batch_norm(form="old")
    assert run("d2l_batch_norm", zh, Options(course="d2l", extra={"d2l_edition": "zh"})).passed
    assert not run("d2l_batch_norm", batch_norm, Options(course="d2l", extra={"d2l_edition": "zh"})).passed
    failed = failures(run("d2l_batch_norm", zh))
    assert failed["moving_mean (2-d)"] == course.CAUSES["bn_momentum_swapped"]


def test_the_momentum_style_switch_chooses_the_edition():
    zh = make_batch_norm(form="old")
    assert run("d2l_batch_norm", zh, Options(course="d2l", extra={"momentum_style": "cs231n"})).passed
    with pytest.raises(ValueError, match="momentum_style for d2l's batch_norm must be 'torch' .* but got 'dlai'"):
        run("d2l_batch_norm", zh, Options(course="d2l", extra={"momentum_style": "dlai"}))


def test_an_unknown_edition_is_refused():
    with pytest.raises(ValueError, match="d2l_edition must be one of \\['en', 'zh'\\], but got 'fr'"):
        run("d2l_batch_norm", batch_norm, Options(extra={"d2l_edition": "fr"}))


def test_without_init_states_the_books_zeros_are_given():
    report = run("d2l_adadelta", adadelta, D2L)  # no init_adadelta_states in the user's namespace
    assert report.passed and "init states" not in report and report.functions == "adadelta"


def test_init_states_in_another_layout_is_a_failed_check():
    def init_adam_states(feature_dim):
        return (torch.zeros((feature_dim, 1)), torch.zeros(1))  # one state per parameter: Adam has two
    report = run("d2l_adam", adam, D2L, init_adam_states=init_adam_states)
    assert not report.passed
    assert "init_adam_states returned another layout: states[1] holds no 's' in d2l's layout ((v_w, s_w), " \
           "(v_b, s_b))" in report["init states"].comparison.problem
    assert report["params"].passed  # the book's zeros were used instead


def test_a_name_shared_with_cs231n_is_told_apart_by_its_signature(tmp_path, capsys):
    """``sgd(params, lr, batch_size)`` is d2l's, ``sgd(w, dw, config)`` CS231n's: handnn-verify picks the kind from
    the parameters, without --kind."""
    from reference.check import infer_function_kind, main_user

    path = tmp_path / "d2l_optim.py"
    path.write_text(textwrap.dedent('''
        import torch
        def sgd(params, lr, batch_size):
            with torch.no_grad():
                for param in params:
                    param -= lr * param.grad / batch_size
                    param.grad.zero_()
    '''))
    namespace: dict = {}
    exec(path.read_text(), namespace)
    assert infer_function_kind(namespace["sgd"]) == "d2l_sgd"

    def cs231n_sgd(w, dw, config=None):
        return w, config

    cs231n_sgd.__name__ = "sgd"
    assert infer_function_kind(cs231n_sgd) == "sgd"
    assert main_user(f"{path}:sgd", ["--course", "d2l"]) == 0
    assert "d2l" in capsys.readouterr().out
