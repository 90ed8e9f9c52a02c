"""reference.check's course profiles, the checker's core fixes and the diagnoses added with them.

- under ``course=`` a correct implementation of the course's own rule passes, with a note row per rule that
  differs from torch's ("course convention: <rule> (torch: <torch's rule>)"); the same code without the profile
  fails, and the diagnosis says which course explains it ("pass `--course cs231n`");
- planted bugs are named: Adam's t one ahead, Adam without the square root, Adam's bias correction with β**2, test
  mode without gamma and beta, test-time dropout x * p, one dropout mask for every row, relu_backward with x >= 0,
  softmax without the max shift;
- gradients with kept dimensions are compared by value ("values right, shape (1, 7) instead of (7,)"); a backward
  named alone is checked with its forward; layer_utils sandwiches are no built-in kind; a wrong signature is named
  as such; Python 2 and NumPy < 2 habits are named in the crash they cause.
"""
from __future__ import annotations

import textwrap
from typing import Callable, Dict, Optional

import numpy as np
import pytest

from reference.check import (COURSES, PROFILES, RULES, check_layer, check_update, course_hint, get_profile,
                             infer_builtin_kind, infer_kind, main_user)
from reference.diagnosis import ADAM_T_AHEAD, DETECTORS


def _failures(report) -> Dict[str, Optional[str]]:
    return {row.check: row.diagnosis for row in report.failures}


def _notes(report) -> Dict[str, str]:
    return {row.check: row.diagnosis for row in report.rows if (row.diagnosis or "").startswith("course convention")}


# ---- implementations following each course's rules -------------------------------------------------------------
def make_batchnorm(form: str = "cs231n", biased: bool = True, affine_in_eval: bool = True):
    """CS231n's batchnorm_forward: ``form`` 'cs231n' (m·running + (1 − m)·batch) or 'torch'; the running variance
    biased (np.var, as the course prescribes) or unbiased."""
    def batchnorm_forward(x, gamma, beta, bn_param):
        mode, eps = bn_param["mode"], bn_param.get("eps", 1e-5)
        momentum = bn_param.get("momentum", 0.9)
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        running_mean, running_var = bn_param["running_mean"], bn_param["running_var"]
        if mode == "train":
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[1]
            stat_var = var if biased else var * n / (n - 1)
            keep = momentum if form == "cs231n" else 1 - momentum
            running_mean = keep * running_mean + (1 - keep) * mean
            running_var = keep * running_var + (1 - keep) * stat_var
            std = np.sqrt(var + eps).reshape(shape)
            x_hat = (x - mean.reshape(shape)) / std
            out, cache = gamma.reshape(shape) * x_hat + beta.reshape(shape), (x_hat, gamma.reshape(shape), std, axes)
        else:
            x_hat = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + eps)
            out = gamma.reshape(shape) * x_hat + beta.reshape(shape) if affine_in_eval else x_hat
            cache = None
        bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
        return out, cache

    def batchnorm_backward(dout, cache):
        x_hat, gamma, std, axes = cache
        dx_hat = dout * gamma
        dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
              - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / std
        return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
    return batchnorm_forward, batchnorm_backward


def make_dropout(p_is_keep: bool, doc: str = "", eval_scale: str = "none", shared_mask: bool = False):
    """Inverted dropout reading p as the keep (CS231n) or drop probability; ``eval_scale`` 'p' plants test-time
    x * p; ``shared_mask`` plants one mask of shape (1, D) for every row."""
    def dropout_forward(x, dropout_param):
        p, mode = dropout_param["p"], dropout_param["mode"]
        keep = p if p_is_keep else 1 - p
        if mode == "train":
            rng = np.random.default_rng(dropout_param.get("seed"))
            mask = rng.random((1, x.shape[1]) if shared_mask else x.shape) < keep
            return x * mask / keep, (dropout_param, mask, keep)
        return (x * p if eval_scale == "p" else x), (dropout_param, None, keep)

    def dropout_backward(dout, cache):
        dropout_param, mask, keep = cache
        if dropout_param["mode"] == "train":
            return dout * mask / keep
        return dout * dropout_param["p"] if eval_scale == "p" else dout
    dropout_forward.__doc__ = doc
    return dropout_forward, dropout_backward


CS231N_DOC = """
    Inputs:
    - x: Input data, of any shape
    - dropout_param: A dictionary with the following keys:
      - p: Dropout parameter. We keep each neuron output with probability p.
      - mode: 'test' or 'train'.
"""
DLAI_DOC = "Inverted dropout: each unit is kept with keep_prob = dropout_param['p']."


def make_sgd_momentum(form: str) -> Callable:
    def sgd_momentum(w, dw, config=None):
        config = {} if config is None else config
        lr, mu = config.setdefault("learning_rate", 1e-2), config.setdefault("momentum", 0.9)
        v = config.get("velocity", np.zeros_like(w))
        if form == "cs231n":
            v = mu * v - lr * dw
            next_w = w + v
        else:  # deeplearning.ai
            v = mu * v + (1 - mu) * dw
            next_w = w - lr * v
        config["velocity"] = v
        return next_w, config
    return sgd_momentum


def make_rmsprop(eps_inside: bool) -> Callable:
    def rmsprop(w, dw, config=None):
        config = {} if config is None else config
        cache = config["decay_rate"] * config.get("cache", np.zeros_like(w)) + (1 - config["decay_rate"]) * dw ** 2
        config["cache"] = cache
        denominator = np.sqrt(cache + config["epsilon"]) if eps_inside else np.sqrt(cache) + config["epsilon"]
        return w - config["learning_rate"] * dw / denominator, config
    return rmsprop


def make_adam(bug: Optional[str] = None) -> Callable:
    """CS231n's adam (t += 1 before use); ``bug`` 't_ahead' (t starts at 1, incremented first), 'no_sqrt',
    'beta2_squared' (the bias correction 1 − β2**2)."""
    def adam(w, dw, config=None):
        config = {} if config is None else config
        b1, b2, eps = config["beta1"], config["beta2"], config["epsilon"]
        config["t"] = t = config.get("t", 1 if bug == "t_ahead" else 0) + 1
        m = config["m"] = b1 * config.get("m", np.zeros_like(w)) + (1 - b1) * dw
        v = config["v"] = b2 * config.get("v", np.zeros_like(w)) + (1 - b2) * dw ** 2
        mt = m / (1 - b1 ** t)
        vt = v / (1 - b2 ** (2 if bug == "beta2_squared" else t))
        denominator = vt + eps if bug == "no_sqrt" else np.sqrt(vt) + eps
        return w - config["learning_rate"] * mt / denominator, config
    return adam


# ---- under the course's profile the course's rules pass, with a note row each ----------------------------------
BN_CS231N = make_batchnorm("cs231n", biased=True)

COURSE_CASES = {
    "cs231n batchnorm": ("layer", "batchnorm", *BN_CS231N, "cs231n", ["cs231n: bn_momentum", "cs231n: running_var"]),
    "cs231n spatial batchnorm": ("layer", "spatial_batchnorm", *BN_CS231N, "cs231n",
                                 ["cs231n: bn_momentum", "cs231n: running_var"]),
    "nndl batchnorm (paddle's)": ("layer", "batchnorm", *BN_CS231N, "nndl",
                                  ["nndl: bn_momentum", "nndl: running_var"]),
    "cs231n dropout (p keeps)": ("layer", "dropout", *make_dropout(True, CS231N_DOC), "cs231n",
                                 ["cs231n: dropout_p"]),
    "dlai dropout (keep_prob)": ("layer", "dropout", *make_dropout(True, DLAI_DOC), "dlai", ["dlai: dropout_p"]),
    "d2l dropout (p drops)": ("layer", "dropout", *make_dropout(False), "d2l", []),
    "cs231n sgd_momentum": ("update", "sgd_momentum", make_sgd_momentum("cs231n"), None, "cs231n",
                            ["cs231n: sgd_momentum"]),
    "dlai sgd_momentum": ("update", "sgd_momentum", make_sgd_momentum("dlai"), None, "dlai",
                          ["dlai: sgd_momentum"]),
    "d2l rmsprop, eps inside the sqrt": ("update", "rmsprop", make_rmsprop(eps_inside=True), None, "d2l",
                                         ["d2l: rmsprop_eps"]),
    "cs231n adam": ("update", "adam", make_adam(), None, "cs231n", []),
}


def _run(form, kind, forward, backward, **flags):
    if form == "layer":
        return check_layer(kind, forward, backward, **flags)
    return check_update(kind, forward, **flags)


@pytest.mark.parametrize("name", list(COURSE_CASES))
def test_the_course_rule_passes_with_a_note_row(name, dtype):
    form, kind, forward, backward, course, notes = COURSE_CASES[name]
    report = _run(form, kind, forward, backward, course=course, dtype=dtype)
    assert report.passed, str(report)
    assert list(_notes(report)) == notes, str(report)
    for check, text in _notes(report).items():
        rule = check.split(": ")[1]
        assert text.startswith(f"course convention: {PROFILES[course].rule(rule)} (torch: "
                               f"{PROFILES['torch'].rule(rule)})")
        assert text in str(report)  # visible in the table
    assert f"course profile {course}" in str(report)


def test_the_note_quotes_the_learners_docstring():
    report = check_layer("dropout", *make_dropout(True, CS231N_DOC), course="cs231n")
    assert 'your docstring says so: "p: Dropout parameter. We keep each neuron output with probability p."' in \
        report["cs231n: dropout_p"].diagnosis
    report = check_layer("dropout", *make_dropout(True, DLAI_DOC), course="dlai")
    assert "your docstring says so" in report["dlai: dropout_p"].diagnosis and "keep_prob" in str(report)
    contrary = make_dropout(True, "p: Dropout parameter. We drop each neuron output with probability p.")
    note = check_layer("dropout", *contrary, course="cs231n")["cs231n: dropout_p"].diagnosis
    assert "your docstring says otherwise" in note and "your code keeps with probability p" in note


# ---- the same code without the profile: which course explains the mismatch -------------------------------------
HINT_CASES = {
    "biased running_var, CS231n's momentum declared": (
        "layer", "batchnorm", *BN_CS231N, {"momentum_style": "cs231n"},
        {"running_var": ("biased_running_var", "pass `--course cs231n`"),
         "eval out": ("eval_from_running_stats", None)}),
    "CS231n's batchnorm read as torch's": (
        "layer", "batchnorm", *BN_CS231N, {},
        {"running_mean": ("inverted_momentum", "pass `--course cs231n`"),
         "running_var": ("inverted_momentum_biased_var", "pass `--course cs231n`"),
         "eval out": ("eval_from_running_stats", None)}),
    "spatial: biased running_var": (
        "layer", "spatial_batchnorm", *BN_CS231N, {"momentum_style": "cs231n"},
        {"running_var": ("biased_running_var", "pass `--course cs231n`"),
         "eval out": ("eval_from_running_stats", None)}),
    "dropout p as the keep probability": (
        "layer", "dropout", *make_dropout(True, CS231N_DOC), {},
        {"out": ("dropout_over_p", "pass `--course cs231n`"), "dx": ("dropout_over_p", "pass `--course cs231n`"),
         "keep rate": (None, "pass `--course cs231n`")}),
    "deeplearning.ai's momentum": (
        "update", "sgd_momentum", make_sgd_momentum("dlai"), None, {},
        {"next_w": ("momentum_ema", "pass `--course dlai`"), "config velocity": (None, None)}),
    "d2l's RMSprop": (
        "update", "rmsprop", make_rmsprop(eps_inside=True), None, {},
        {"next_w": ("rmsprop_eps_inside_sqrt", "pass `--course d2l`")}),
}


@pytest.mark.parametrize("name", list(HINT_CASES))
def test_without_the_profile_the_diagnosis_names_the_course(name):
    form, kind, forward, backward, flags, expected = HINT_CASES[name]
    report = _run(form, kind, forward, backward, **flags)
    failed = _failures(report)
    assert set(failed) == set(expected), str(report)
    for check, (detector, hint) in expected.items():
        if detector is not None:
            assert failed[check].startswith(DETECTORS[detector].cause), str(report)
        if hint is not None:
            assert failed[check].endswith(hint) or f"{hint} (your docstring" in failed[check], failed[check]
        else:
            assert "--course" not in (failed[check] or "")
    assert not _notes(report)


def test_the_hint_quotes_a_docstring_that_states_the_course_rule():
    failed = _failures(check_layer("dropout", *make_dropout(True, CS231N_DOC)))
    assert failed["out"].endswith('pass `--course cs231n` (your docstring says "p: Dropout parameter. We keep each '
                                  'neuron output with probability p.")')


def test_the_course_rules_fail_code_that_follows_torchs():
    """Under cs231n the running variance is the biased one: torch's unbiased one is then the mismatch."""
    report = check_layer("batchnorm", *make_batchnorm("cs231n", biased=False), course="cs231n")
    failed = _failures(report)
    assert set(failed) == {"running_var", "eval out"}, str(report)
    assert failed["running_var"] == DETECTORS["unbiased_running_var"].cause
    report = check_layer("dropout", *make_dropout(False), course="cs231n")
    failed = _failures(report)
    assert failed["out"].endswith("matches torch's convention (also d2l, nndl): pass `--course torch`")


def test_the_finer_switches_override_the_course():
    forward, backward = make_batchnorm("torch", biased=True)
    report = check_layer("batchnorm", forward, backward, course="cs231n", momentum_style="torch")
    assert report.passed and list(_notes(report)) == ["cs231n: running_var"], str(report)
    report = check_layer("dropout", *make_dropout(False), course="cs231n", p_is_keep_prob=False)
    assert report.passed and not _notes(report)
    assert check_update("sgd_momentum", make_sgd_momentum("cs231n"), course="dlai", momentum_style="cs231n").passed


def test_the_profile_table():
    assert COURSES == ("cs231n", "dlai", "d2l", "nndl", "torch")
    for profile in PROFILES.values():
        for rule, values in RULES.items():
            assert getattr(profile, rule) in values, (profile.name, rule)
    assert get_profile(None) is PROFILES["torch"]
    assert course_hint({"running_var": "biased", "bn_momentum": "ema"}).startswith("matches the cs231n convention")
    assert course_hint({"dropout_p": "keep"}, "dlai").startswith("matches the dlai convention you chose")


@pytest.mark.parametrize("call", [lambda: check_layer("relu", make_dropout(False)[0], course="keras"),
                                  lambda: check_update("sgd", make_sgd_momentum("cs231n"), course="fastai")])
def test_an_unknown_course_is_refused(call):
    with pytest.raises(ValueError, match=r"course must be one of \['cs231n', 'dlai', 'd2l', 'nndl', 'torch'\]"):
        call()


# ---- planted bugs ------------------------------------------------------------------------------------------------
def relu_forward(x):
    return np.maximum(x, 0), x


def _relu_backward_ge(dout, x):
    return dout * (x >= 0)


def _naive_softmax_loss(x, y, mask):
    n, t, v = x.shape
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        probs = np.exp(x) / np.exp(x).sum(axis=2, keepdims=True)
        rows, cols = np.meshgrid(np.arange(n), np.arange(t), indexing="ij")
        loss = -np.sum(mask * np.log(probs[rows, cols, y])) / n
    dx = probs.copy()
    dx[rows, cols, y] -= 1
    return loss, dx * mask[..., None] / n


def _bn_no_affine_in_train(x, gamma, beta, bn_param):
    out, cache = BN_CS231N[0](x, gamma, beta, bn_param)
    return ((out - beta) / gamma if bn_param["mode"] == "train" else out), cache


PLANTED = {
    "Adam's t one ahead": ("update", "adam", make_adam("t_ahead"), None, {},
                           {"next_w": DETECTORS["adam_t_off_by_one"].cause, "config t": ADAM_T_AHEAD}),
    "Adam without the square root": ("update", "adam", make_adam("no_sqrt"), None, {},
                                     {"next_w": DETECTORS["adam_no_sqrt"].cause}),
    "Adam's bias correction with beta2**2": ("update", "adam", make_adam("beta2_squared"), None, {},
                                             {"next_w": DETECTORS["adam_bias_power_two"].cause}),
    "BatchNorm test mode without gamma and beta": (
        "layer", "batchnorm", *make_batchnorm(affine_in_eval=False), {"course": "cs231n"},
        {"eval out": DETECTORS["eval_no_gamma_beta"].cause,
         "eval out (your running stats)": DETECTORS["eval_no_gamma_beta"].cause}),
    "BatchNorm training without gamma and beta": (
        "layer", "batchnorm", _bn_no_affine_in_train, None, {"course": "cs231n"},
        {"out": DETECTORS["no_gamma_beta"].cause}),
    "test-time dropout x * p (p drops)": (
        "layer", "dropout", *make_dropout(False, eval_scale="p"), {},
        {"eval out": DETECTORS["dropout_eval_times_p"].cause, "eval dx": DETECTORS["dropout_eval_times_p"].cause}),
    "test-time dropout x * p (p keeps, CS231n)": (
        "layer", "dropout", *make_dropout(True, eval_scale="p"), {"course": "cs231n"},
        {"eval out": DETECTORS["dropout_eval_scaled"].cause, "eval dx": DETECTORS["dropout_eval_scaled"].cause}),
    "relu_backward with x >= 0": ("layer", "relu", relu_forward, _relu_backward_ge, {},
                                  {"dx": DETECTORS["relu_grad_at_zero"].cause}),
    "softmax without the max shift": ("layer", "temporal_softmax_loss", _naive_softmax_loss, None, {},
                                      {"loss": DETECTORS["softmax_no_max_shift"].cause,
                                       "dx": DETECTORS["softmax_no_max_shift"].cause}),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_planted_bug_fails_and_is_named(name, dtype):
    form, kind, forward, backward, flags, expected = PLANTED[name]
    report = _run(form, kind, forward, backward, dtype=dtype, **flags)
    assert _failures(report) == expected, str(report)


def test_one_dropout_mask_for_every_row_fails():
    """A (1, D) mask gives the right output for that mask and can keep 1 − p overall: the rows must differ."""
    report = check_layer("dropout", *make_dropout(True, shared_mask=True), course="cs231n")
    row = report["mask independence"]
    assert not row.passed and row.diagnosis.startswith("the same mask for every row (sample)"), str(report)
    assert report["out"].passed and report["dx"].passed


@pytest.mark.parametrize("name", ["adam_t_off_by_one", "adam_no_sqrt", "adam_bias_power_two", "eval_no_gamma_beta",
                                  "no_gamma_beta", "dropout_eval_times_p", "relu_grad_at_zero",
                                  "softmax_no_max_shift", "unbiased_running_var"])
def test_the_new_detectors_are_planted(name):
    planted = {cause for *_, expected in PLANTED.values() for cause in expected.values()}
    assert DETECTORS[name].cause in planted | {DETECTORS["unbiased_running_var"].cause}


# ---- gradients with kept dimensions ----------------------------------------------------------------------------
def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w)


def _affine_backward(keepdims: bool, over_n: bool = False):
    def affine_backward(dout, cache):
        x, w = cache
        db = dout.sum(axis=0, keepdims=keepdims) / (dout.shape[0] if over_n else 1)
        return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, db
    return affine_backward


def test_kept_dims_with_the_right_values_are_named_as_such():
    report = check_layer("affine", affine_forward, _affine_backward(keepdims=True))
    assert [row.check for row in report.failures] == ["db"]
    row = report["db"]
    assert row.comparison.problem == "values right, shape (1, 7) instead of (7,)"
    assert row.comparison.max_abs < 1e-12 and np.isfinite(row.comparison.max_rel)
    assert "values right, shape (1, 7) instead of (7,)" in str(report)


def test_kept_dims_with_wrong_values_are_compared_and_diagnosed():
    row = check_layer("affine", affine_forward, _affine_backward(keepdims=True, over_n=True))["db"]
    assert row.comparison.problem == "shape (1, 7) instead of (7,)"
    assert row.comparison.mismatches == 7 and row.diagnosis == DETECTORS["grad_over_n"].cause


def test_spatial_per_channel_gradients_with_kept_dims():
    forward, backward = BN_CS231N

    def backward_kept(dout, cache):
        dx, dgamma, dbeta = backward(dout, cache)
        return dx, dgamma.reshape(1, -1, 1, 1), dbeta.reshape(1, -1, 1, 1)
    report = check_layer("spatial_batchnorm", forward, backward_kept, course="cs231n")
    assert {row.check: row.comparison.problem for row in report.failures} == {
        "dgamma": "values right, shape (1, 3, 1, 1) instead of (3,)",
        "dbeta": "values right, shape (1, 3, 1, 1) instead of (3,)"}


# ---- the command line: a backward alone, sandwiches, --course ---------------------------------------------------
LAYERS_PY = '''
import numpy as np

def batchnorm_forward(x, gamma, beta, bn_param):
    momentum = bn_param.get("momentum", 0.9)
    if bn_param["mode"] == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        x_hat = (x - mu) / np.sqrt(var + bn_param["eps"])
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mu
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
        return gamma * x_hat + beta, (x_hat, gamma, np.sqrt(var + bn_param["eps"]))
    x_hat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + bn_param["eps"])
    return gamma * x_hat + beta, None

def batchnorm_backward_alt(dout, cache):
    x_hat, gamma, std = cache
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)

def layernorm_backward(dout, cache):
    return dout, None, None

def affine_relu_forward(x, w, b):
    return np.maximum(x.reshape(x.shape[0], -1) @ w + b, 0), None
'''


@pytest.fixture
def layers_py(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(LAYERS_PY)
    return path


def test_cli_course_passes_a_correct_cs231n_batchnorm(layers_py, capsys):
    assert main_user(f"{layers_py}:batchnorm_forward", ["--course", "cs231n", "--backward",
                                                         "batchnorm_backward_alt"]) == 0
    out = capsys.readouterr().out
    assert "course convention: running_var averages the biased batch variance" in out
    assert "10 passed, 0 failed" in out
    assert main_user(f"{layers_py}:batchnorm_forward", ["--momentum-style", "cs231n"]) == 1
    assert "pass `--course cs231n`" in capsys.readouterr().out


def test_cli_a_backward_named_alone_runs_with_its_forward(layers_py, capsys):
    assert main_user(f"{layers_py}:batchnorm_backward_alt", ["--course", "cs231n"]) == 0
    out = capsys.readouterr().out
    assert "batchnorm_forward / batchnorm_backward_alt" in out and "dgamma" in out
    assert main_user(f"{layers_py}:layernorm_backward", []) == 2
    assert "has no forward for it (tried layernorm_forward)" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["affine_relu_forward", "affine_relu_backward", "affine_bn_relu_forward",
                                  "conv_relu_forward", "conv_relu_pool_forward", "conv_relu_pool_backward"])
def test_a_layer_utils_sandwich_is_no_builtin_kind(name):
    assert infer_builtin_kind(name) is None
    assert infer_kind(name) not in ("affine", "relu", "conv", "max_pool", "batchnorm")


def test_cli_does_not_check_a_sandwich_as_an_affine(layers_py, capsys):
    """Either a registered sandwich kind checks it, or the kind cannot be told: never the plain affine."""
    code = main_user(f"{layers_py}:affine_relu_forward", [])
    captured = capsys.readouterr()
    assert not captured.out.startswith("affine:")
    assert code in (0, 1) or "cannot tell the kind of 'affine_relu_forward'" in captured.err


# ---- wrong signatures and Python 2 / old NumPy habits -----------------------------------------------------------
def _bn_two_args(x, gamma):
    return x, None


def test_a_wrong_signature_is_named():
    report = check_layer("batchnorm", _bn_two_args)
    assert report["out"].comparison.problem.startswith(
        "signature: expected _bn_two_args(x, gamma, beta, bn_param), got _bn_two_args(x, gamma)")
    report = check_update("sgd", lambda w, dw: (w, None))
    assert report["next_w"].comparison.problem.startswith("signature: expected <lambda>(w, dw, config), got "
                                                          "<lambda>(w, dw)")


def _raiser(code: str) -> Callable:
    namespace = {"np": np}
    exec(textwrap.dedent(f"""
        def relu_forward(x):
            {code}
            return np.maximum(x, 0), x
    """), namespace)
    return namespace["relu_forward"]


@pytest.mark.parametrize("code, advice", [
    ("np.reshape(x, newshape=x.shape)", "np.reshape(..., newshape=...) is gone in NumPy 2.1+: use shape="),
    ("x = x.astype(np.float)", "np.float was an alias of the builtin, removed in NumPy 1.24: use float"),
    ("n = np.int(x.shape[0])", "np.int was an alias of the builtin, removed in NumPy 1.24: use int"),
    ("n = np.product(x.shape)", "np.product was removed in NumPy 2: use np.prod"),
    ("ok = np.alltrue(x == x)", "np.alltrue was removed in NumPy 2: use np.all"),
    ("for i in xrange(2): pass", "Python 2's xrange: use range"),
    ("half = x[:x.shape[0] / 2]", "Python 3's / is float division: use //"),
    ("half = x[x.shape[0] / 2]", "Python 3's / is float division: use //"),
    ("z = np.zeros((x.shape[0] / 2, 3))", "Python 3's / is float division: use //"),
])
def test_a_python2_or_old_numpy_habit_is_named(code, advice):
    problem = check_layer("relu", _raiser(code))["out"].comparison.problem
    assert problem.startswith("relu_forward raised ") and advice in problem, problem


def test_cli_names_an_old_numpy_name_at_import(tmp_path, capsys):
    path = tmp_path / "old.py"
    path.write_text("import numpy as np\nDTYPE = np.float\n\ndef relu_forward(x):\n    return x, x\n")
    assert main_user(f"{path}:relu_forward", []) == 2
    assert "np.float was an alias of the builtin, removed in NumPy 1.24" in capsys.readouterr().err


def test_cli_names_python2_code_at_import(tmp_path, capsys):
    path = tmp_path / "py2.py"
    path.write_text("ROWS = list(xrange(3))\n\ndef relu_forward(x):\n    return x, x\n")
    assert main_user(f"{path}:relu_forward", []) == 2
    err = capsys.readouterr().err
    assert "raised NameError at import" in err and "Python 2's xrange: use range" in err


def test_docs_show_every_profiles_rules_next_to_torchs():
    """docs/checker.md holds the profile table generated from reference.check.PROFILES (kept equal here)."""
    from pathlib import Path

    from reference.check import profiles_table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "checker.md").read_text(encoding="utf-8")
    assert profiles_table() in docs
