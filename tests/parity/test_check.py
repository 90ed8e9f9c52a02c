"""reference.check: users' CS231n-style layers and update rules against torch, with the diagnosis of what differs.

- correct CS231n-style implementations written here pass every check, in float64 and float32;
- each convention flag maps correctly: an implementation passes under its own convention and fails, with the
  diagnosis naming the convention, under the other;
- the seeds' own code (examples/seeds/, transcribed faithfully) fails exactly where the seeds are wrong — seed 001's
  test-mode formula (eps outside the sqrt), seed 002's (eps and beta dropped), the biased running variance, seed
  001's p used as the keep probability — and passes where they are right;
- a user function that raises or returns the wrong structure is a failed check, not a crash;
- the command line (``handnn-verify --user MODULE:FUNC``) prints the table and returns 0, 1 or 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest

from reference.check import (check_layer, check_update, infer_kind, load_function, main_user, split_user_arg)
from reference.diagnosis import DETECTORS

SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds"


# ---- correct CS231n-style implementations ---------------------------------------------------------------------------
def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def make_batchnorm(style: str) -> Tuple[Callable, Callable]:
    """BatchNorm with the unbiased running variance; ``style`` says how bn_param['momentum'] is read."""
    def batchnorm_forward(x, gamma, beta, bn_param):
        eps, momentum = bn_param.get("eps", 1e-5), bn_param["momentum"]
        n, d = x.shape
        running_mean = bn_param.get("running_mean", np.zeros(d, x.dtype))
        running_var = bn_param.get("running_var", np.ones(d, x.dtype))
        if bn_param["mode"] == "train":
            mean, var = x.mean(axis=0), x.var(axis=0)
            std = np.sqrt(var + eps)
            x_hat = (x - mean) / std
            out, cache = gamma * x_hat + beta, (x_hat, gamma, std)
            keep = momentum if style == "cs231n" else 1 - momentum
            running_mean = keep * running_mean + (1 - keep) * mean
            running_var = keep * running_var + (1 - keep) * var * n / (n - 1)
        else:
            out, cache = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta, None
        bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
        return out, cache

    def batchnorm_backward(dout, cache):
        x_hat, gamma, std = cache
        dx_hat = dout * gamma
        dx = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std
        return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)
    return batchnorm_forward, batchnorm_backward


bn_forward, bn_backward = make_batchnorm("cs231n")


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    n, c, h, w = x.shape
    out, cache = bn_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, bn_param)
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    dx, dgamma, dbeta = bn_backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), cache)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    std = np.sqrt(x.var(axis=1, keepdims=True) + ln_param.get("eps", 1e-5))
    x_hat = (x - x.mean(axis=1, keepdims=True)) / std
    return gamma * x_hat + beta, (x_hat, gamma, std)


def layernorm_backward(dout, cache):
    x_hat, gamma, std = cache
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(axis=1, keepdims=True) - x_hat * (dx_hat * x_hat).mean(axis=1, keepdims=True)) / std
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def make_dropout(p_is_keep: bool) -> Tuple[Callable, Callable]:
    """Inverted dropout; ``p_is_keep`` says whether dropout_param['p'] is the keep or the drop probability."""
    def dropout_forward(x, dropout_param):
        p = dropout_param["p"]
        keep = p if p_is_keep else 1 - p
        if dropout_param["mode"] == "train":
            mask = np.random.default_rng(dropout_param.get("seed")).random(x.shape) < keep
            return x * mask / keep, (dropout_param, mask, keep)
        return x, (dropout_param, None, keep)

    def dropout_backward(dout, cache):
        dropout_param, mask, keep = cache
        return dout * mask / keep if dropout_param["mode"] == "train" else dout
    return dropout_forward, dropout_backward


def sgd(w, dw, config=None):
    config = {} if config is None else config
    return w - config.setdefault("learning_rate", 1e-2) * dw, config


def make_sgd_momentum(style: str) -> Callable:
    def sgd_momentum(w, dw, config=None):
        config = {} if config is None else config
        lr, mu = config.setdefault("learning_rate", 1e-2), config.setdefault("momentum", 0.9)
        v = config.get("velocity", np.zeros_like(w))
        if style == "cs231n":
            v = mu * v - lr * dw
            next_w = w + v
        else:  # deeplearning.ai
            v = mu * v + (1 - mu) * dw
            next_w = w - lr * v
        config["velocity"] = v
        return next_w, config
    return sgd_momentum


def rmsprop(w, dw, config=None):
    config = {} if config is None else config
    cache = config.get("cache", np.zeros_like(w))
    cache = config["decay_rate"] * cache + (1 - config["decay_rate"]) * dw ** 2
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"]), config


def make_adam(bias_correction: bool = True) -> Callable:
    def adam(w, dw, config=None):
        config = {} if config is None else config
        b1, b2, eps = config["beta1"], config["beta2"], config["epsilon"]
        config["t"] = t = config.get("t", 0) + 1
        m = config["m"] = b1 * config.get("m", np.zeros_like(w)) + (1 - b1) * dw
        v = config["v"] = b2 * config.get("v", np.zeros_like(w)) + (1 - b2) * dw ** 2
        if bias_correction:
            m, v = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return w - config["learning_rate"] * m / (np.sqrt(v) + eps), config
    return adam


LAYERS: Dict[str, Tuple[Callable, Callable, dict, list]] = {
    "affine": (affine_forward, affine_backward, {}, ["out", "dx", "dw", "db"]),
    "relu": (relu_forward, relu_backward, {}, ["out", "dx"]),
    "batchnorm": (bn_forward, bn_backward, {"momentum_style": "cs231n"},
                  ["out", "dx", "dgamma", "dbeta", "running_mean", "running_var", "eval out",
                   "eval out (your running stats)"]),
    "spatial_batchnorm": (spatial_batchnorm_forward, spatial_batchnorm_backward, {"momentum_style": "cs231n"},
                          ["out", "dx", "dgamma", "dbeta", "running_mean", "running_var", "eval out",
                           "eval out (your running stats)"]),
    "layernorm": (layernorm_forward, layernorm_backward, {}, ["out", "dx", "dgamma", "dbeta"]),
    "dropout": (*make_dropout(p_is_keep=False), {}, ["out", "dx", "keep rate", "mask independence", "eval out",
                                                     "eval dx"]),
}

UPDATES: Dict[str, Tuple[Callable, dict, list]] = {
    "sgd": (sgd, {}, ["next_w"]),
    "sgd_momentum": (make_sgd_momentum("cs231n"), {}, ["next_w", "config velocity"]),
    "rmsprop": (rmsprop, {}, ["next_w", "config cache"]),
    "adam": (make_adam(), {}, ["next_w", "config m", "config v", "config t"]),
}


def _failures(report) -> Dict[str, Optional[str]]:
    return {row.check: row.diagnosis for row in report.failures}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_a_correct_layer_passes_every_check(kind, dtype):
    forward, backward, flags, checks = LAYERS[kind]
    report = check_layer(kind, forward, backward, dtype=dtype, **flags)
    assert [row.check for row in report.rows] == checks
    assert report.passed, str(report)
    assert f"{len(checks)} passed, 0 failed" in str(report)


@pytest.mark.parametrize("kind", list(UPDATES))
def test_a_correct_update_rule_passes_every_check(kind, dtype):
    update, flags, checks = UPDATES[kind]
    report = check_update(kind, update, dtype=dtype, **flags)
    assert [row.check for row in report.rows] == checks
    assert report.passed, str(report)


# ---- conventions ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("style, other", [("cs231n", "torch"), ("torch", "cs231n")])
def test_batchnorm_momentum_style(style, other):
    forward, backward = make_batchnorm(style)
    assert check_layer("batchnorm", forward, backward, momentum_style=style).passed
    report = check_layer("batchnorm", forward, backward, momentum_style=other)
    failed = _failures(report)
    for check in ("running_mean", "running_var"):  # the cause, then which convention the code follows
        assert failed[check].startswith(DETECTORS["inverted_momentum"].cause), str(report)
    assert failed["eval out"] == DETECTORS["eval_from_running_stats"].cause
    assert set(failed) == {"running_mean", "running_var", "eval out"}


@pytest.mark.parametrize("keep", [True, False])
def test_dropout_keep_prob_flag(keep):
    forward, backward = make_dropout(p_is_keep=keep)
    assert check_layer("dropout", forward, backward, p_is_keep_prob=keep).passed
    report = check_layer("dropout", forward, backward, p_is_keep_prob=not keep)
    failed = _failures(report)
    assert set(failed) == {"out", "dx", "keep rate"}, str(report)
    assert failed["out"] == failed["dx"] and failed["out"].startswith(DETECTORS["dropout_over_p"].cause)
    assert ("p used as the keep probability" if keep else "p used as the drop probability") in failed["keep rate"]
    assert ("--course cs231n" if keep else "matches torch's convention") in failed["out"]


@pytest.mark.parametrize("style, other, cause", [("cs231n", "dlai", "momentum_without_ema"),
                                                 ("dlai", "cs231n", "momentum_ema")])
def test_sgd_momentum_style(style, other, cause):
    update = make_sgd_momentum(style)
    assert check_update("sgd_momentum", update, momentum_style=style).passed
    failed = _failures(check_update("sgd_momentum", update, momentum_style=other))
    assert failed["next_w"].startswith(DETECTORS[cause].cause)
    assert ("--course dlai" if style == "dlai" else "matches torch's convention") in failed["next_w"]
    assert set(failed) == {"next_w", "config velocity"}


# ---- planted bugs through the checker -------------------------------------------------------------------------------
def _affine_backward_mean(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw / dout.shape[0], db / dout.shape[0]  # the batch mean where the layer's gradient is a sum


def _dropout_times_p(x, dropout_param):
    out, cache = make_dropout(p_is_keep=False)[0](x, dropout_param)
    keep = 1 - dropout_param["p"]
    return (out * keep * dropout_param["p"] if dropout_param["mode"] == "train" else out), cache


def test_planted_bugs_are_diagnosed():
    failed = _failures(check_layer("affine", affine_forward, _affine_backward_mean))
    assert failed == {"dw": DETECTORS["grad_over_n"].cause, "db": DETECTORS["grad_over_n"].cause}
    failed = _failures(check_layer("dropout", _dropout_times_p))
    assert failed == {"out": DETECTORS["dropout_times_p"].cause}
    failed = _failures(check_update("adam", make_adam(bias_correction=False)))
    assert failed == {"next_w": DETECTORS["adam_no_bias_correction"].cause}


# ---- the seeds' own code --------------------------------------------------------------------------------------------
def _seed(module: str, name: str) -> Callable:
    return load_function(f"{SEEDS / module}:{name}")[0]


BIASED, KEEP = DETECTORS["biased_running_var"].cause, "p used as the keep probability"

SEED_CASES = {
    "seed 001 batchnorm: eval eps outside the sqrt": (
        "layer", "batchnorm", "seed001_regularization.py", "batchnorm_forward", "batchnorm_backward",
        {"momentum_style": "cs231n"},
        {"running_var": BIASED, "eval out": DETECTORS["eval_eps_outside_sqrt"].cause,
         "eval out (your running stats)": DETECTORS["eval_eps_outside_sqrt"].cause}),
    "seed 002 batchnorm: eval drops eps and beta": (
        "layer", "batchnorm", "seed002_batchnorm.py", "batchnorm_forward", "batchnorm_backward",
        {"momentum_style": "cs231n"},
        {"running_var": BIASED, "eval out": DETECTORS["eval_no_eps_no_beta"].cause,
         "eval out (your running stats)": DETECTORS["eval_no_eps_no_beta"].cause}),
    "seed 002 batchnorm, one-line backward": (
        "layer", "batchnorm", "seed002_batchnorm.py", "batchnorm_forward", "batchnorm_backward_alt",
        {"momentum_style": "cs231n"},
        {"running_var": BIASED, "eval out": DETECTORS["eval_no_eps_no_beta"].cause,
         "eval out (your running stats)": DETECTORS["eval_no_eps_no_beta"].cause}),
    "seed 000 batchnorm: only the running variance": (
        "layer", "batchnorm", "seed000_batchnorm.py", "batchnorm_forward", "batchnorm_backward",
        {"momentum_style": "cs231n"},
        {"running_var": BIASED, "eval out": DETECTORS["eval_from_running_stats"].cause}),
    "seed 000 batchnorm, simplified backward": (
        "layer", "batchnorm", "seed000_batchnorm.py", "batchnorm_forward", "batchnorm_backward_alt",
        {"momentum_style": "cs231n"},
        {"running_var": BIASED, "eval out": DETECTORS["eval_from_running_stats"].cause}),
    "seed 001 batchnorm read with torch's momentum": (
        "layer", "batchnorm", "seed001_regularization.py", "batchnorm_forward", "batchnorm_backward", {},
        {"running_mean": DETECTORS["inverted_momentum"].cause,
         "running_var": DETECTORS["inverted_momentum_biased_var"].cause,
         "eval out": DETECTORS["eval_eps_outside_sqrt"].cause,
         "eval out (your running stats)": DETECTORS["eval_eps_outside_sqrt"].cause}),
    "seed 002 layernorm is right": (
        "layer", "layernorm", "seed002_batchnorm.py", "layernorm_forward", "layernorm_backward", {}, {}),
    "seed 001 dropout, p as keep probability": (
        "layer", "dropout", "seed001_regularization.py", "dropout_forward", "dropout_backward",
        {"p_is_keep_prob": True}, {}),
    "seed 001 dropout, p as its docstring says (drop)": (
        "layer", "dropout", "seed001_regularization.py", "dropout_forward", "dropout_backward", {},
        {"out": DETECTORS["dropout_over_p"].cause, "dx": DETECTORS["dropout_over_p"].cause, "keep rate": KEEP}),
    "seed 003 gradient descent": ("update", "sgd", "seed003_optimizers.py", "sgd", None, {}, {}),
    "seed 003 momentum (deeplearning.ai)": (
        "update", "sgd_momentum", "seed003_optimizers.py", "sgd_momentum", None, {"momentum_style": "dlai"}, {}),
    "seed 003 momentum read as CS231n's": (
        "update", "sgd_momentum", "seed003_optimizers.py", "sgd_momentum", None, {"momentum_style": "cs231n"},
        {"next_w": DETECTORS["momentum_ema"].cause, "config velocity": None}),
    "seed 003 Adam": ("update", "adam", "seed003_optimizers.py", "adam", None, {}, {}),
}


@pytest.mark.parametrize("name", list(SEED_CASES))
def test_the_seeds_code(name):
    form, kind, module, forward, backward, flags, expected = SEED_CASES[name]
    if form == "layer":
        report = check_layer(kind, _seed(module, forward), _seed(module, backward), **flags)
    else:
        report = check_update(kind, _seed(module, forward), **flags)
    failed = _failures(report)
    assert set(failed) == set(expected), str(report)
    for check, cause in expected.items():
        if cause == KEEP:
            assert KEEP in failed[check]
        elif cause is None:
            assert failed[check] is None, str(report)
        else:  # the cause, and the course whose convention explains it when one does
            assert failed[check].startswith(cause), str(report)
    # every check ran: those where the seed is right passed
    checks = LAYERS[kind][3] if form == "layer" else UPDATES[kind][2]
    assert [row.check for row in report.rows] == checks


def test_seed_001_backward_promotes_float32():
    """``np.ones(N).dot(dout)`` is float64: the gradients are right but no longer float32."""
    report = check_layer("batchnorm", _seed("seed001_regularization.py", "batchnorm_forward"),
                         _seed("seed001_regularization.py", "batchnorm_backward"), momentum_style="cs231n",
                         dtype=np.float32)
    failed = _failures(report)
    assert report["out"].passed and report["running_mean"].passed
    for check in ("dx", "dgamma", "dbeta"):
        assert "only the dtype differs" in failed[check]


# ---- user functions that fail ---------------------------------------------------------------------------------------
def _raises(x):
    raise ZeroDivisionError("boom")


@pytest.mark.parametrize("kind, forward, backward, check, message", [
    ("relu", _raises, None, "out", "_raises raised ZeroDivisionError: boom"),
    ("relu", lambda x: np.maximum(x, 0), None, "out", "expected (out, cache), got ndarray"),
    ("affine", affine_forward, lambda dout, cache: (dout, dout), "dx", "expected (dx, dw, db), got a tuple of 2"),
    ("batchnorm", lambda x, g, b, p: (None, None), None, "out", "missing (None)"),
])
def test_a_broken_user_function_is_a_failed_check(kind, forward, backward, check, message):
    report = check_layer(kind, forward, backward)
    assert not report.passed
    assert message in report[check].comparison.problem


def test_an_update_returning_none_fails():
    report = check_update("sgd", lambda w, dw, config: (None, config))
    assert not report.passed and "returned next_w None" in report["next_w"].comparison.problem


@pytest.mark.parametrize("call, error, match", [
    (lambda: check_layer("conv3d", relu_forward), ValueError, "kind must be one of"),
    (lambda: check_layer("batchnorm", bn_forward, momentum_style="keras"), ValueError, "momentum_style"),
    (lambda: check_layer("relu", relu_forward, dtype=np.int64), TypeError, "float32 or float64"),
    (lambda: check_layer("dropout", relu_forward, p=1.5), ValueError, "between 0 and 1"),
    (lambda: check_update("adamw", sgd), ValueError, "kind must be one of"),
    (lambda: check_update("sgd_momentum", sgd, momentum_style="torch"), ValueError, "'cs231n' or 'dlai'"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- the command line -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kind", [
    ("batchnorm_forward", "batchnorm"), ("spatial_batchnorm_forward", "spatial_batchnorm"),
    ("layernorm_forward", "layernorm"), ("affine_forward", "affine"), ("relu_forward", "relu"),
    ("dropout_forward", "dropout"), ("sgd", "sgd"), ("sgd_momentum", "sgd_momentum"), ("rmsprop", "rmsprop"),
    ("adam", "adam"), ("my_layer", None)])
def test_infer_kind(name, kind):
    assert infer_kind(name) == kind


@pytest.mark.parametrize("argv, spec, rest", [
    (["--user", "m:f", "--keep-prob"], "m:f", ["--keep-prob"]), (["--user=m.py:f"], "m.py:f", []),
    (["--only", "x"], None, ["--only", "x"])])
def test_split_user_arg(argv, spec, rest):
    assert split_user_arg(argv) == (spec, rest)


def test_cli_reports_the_seed_002_bug(capsys):
    code = main_user(f"{SEEDS / 'seed002_batchnorm.py'}:batchnorm_forward", ["--momentum-style", "cs231n"])
    out = capsys.readouterr().out
    assert code == 1
    assert "batchnorm_forward / batchnorm_backward" in out and "5 passed, 3 failed" in out
    assert DETECTORS["eval_no_eps_no_beta"].cause in out


USER_MODULE = '''
import numpy as np

def relu_forward(x):
    return np.maximum(x, 0), x

def relu_backward(dout, x):
    return dout * (x > 0)

def my_norm(x, gamma, beta, ln_param):
    std = np.sqrt(x.var(axis=1, keepdims=True) + ln_param["eps"])
    return gamma * (x - x.mean(axis=1, keepdims=True)) / std + beta, None
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, seed):
    """A user's module file in the working directory, importable as a dotted name."""
    name = f"user_layers_{seed}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def test_cli_dotted_module_passes(user_module, capsys):
    assert main_user(f"{user_module}:relu_forward", []) == 0
    out = capsys.readouterr().out
    assert "relu_forward / relu_backward" in out and "2 passed, 0 failed" in out


def test_cli_kind_flag_and_json(user_module, tmp_path, capsys):
    target = tmp_path / "report.json"
    assert main_user(f"{user_module}.py:my_norm", ["--kind", "layernorm", "--dtype", "float32",
                                                   "--json", str(target)]) == 0
    data = json.loads(target.read_text())
    assert data["passed"] and data["dtype"] == "float32" and [r["check"] for r in data["rows"]] == ["out"]
    assert "no backward function" in capsys.readouterr().out


def test_cli_update_rule_and_keep_prob(capsys):
    assert main_user(f"{SEEDS / 'seed003_optimizers.py'}:adam", []) == 0
    assert main_user(f"{SEEDS / 'seed001_regularization.py'}:dropout_forward", ["--keep-prob"]) == 0
    assert main_user(f"{SEEDS / 'seed001_regularization.py'}:dropout_forward", []) == 1
    assert "keep rate" in capsys.readouterr().out


@pytest.mark.parametrize("spec, argv, message", [
    ("no_such_file.py:f", [], "no such file"),
    ("relu_forward", [], "expected MODULE:FUNC"),
    ("{module}:missing", [], "has no function 'missing'"),
    ("{module}:my_norm", [], "cannot tell the kind"),
    ("{module}:relu_forward", ["--backward", "nope"], "no function 'nope'"),
    ("{module}:relu_forward", ["--momentum-style", "dlai"], "momentum_style"),
])
def test_cli_usage_errors(user_module, capsys, spec, argv, message):
    assert main_user(spec.format(module=user_module), argv) == 2
    assert message in capsys.readouterr().err


def test_a_failed_row_holds_the_arrays_of_its_worst_comparison():
    """A failed row keeps the user's and torch's arrays (for the grader's mismatch pictures); a passed row none; the
    JSON form leaves them out."""
    def relu_forward(x):
        return np.maximum(x, 0) * 2, x

    def relu_backward(dout, cache):
        return dout * (cache > 0)

    report = check_layer("relu", relu_forward, relu_backward)
    out = report["out"]
    assert not out.passed and out.actual.shape == out.expected.shape
    np.testing.assert_array_equal(out.actual, 2 * out.expected)
    assert report["dx"].passed and report["dx"].actual is None
    assert all(set(row) >= {"check", "passed"} and "actual" not in row for row in report.to_dict()["rows"])
