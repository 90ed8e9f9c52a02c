"""The parity report (`python -m reference`): passes on handnn, exits 1 and names the check on a planted bug."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import handnn.functional as F
from reference import report


def test_report_passes_and_writes_json(tmp_path, capsys):
    out_file = tmp_path / "report.json"
    status = report.main(["--only", "BatchNorm1d*", "--dtype", "float64", "--json", str(out_file)])
    assert status == 0
    text = capsys.readouterr().out
    assert "torch 2." in text and "0 failed" in text
    data = json.loads(out_file.read_text())
    names = {r["name"] for r in data["results"]}
    assert {"out", "dx", "grad weight", "buffer running_var", "eval out"} <= names
    assert all(r["passed"] for r in data["results"])


def test_report_covers_every_handnn_layer():
    from handnn import nn

    built = {type(m).__name__ for case in report.layer_cases()
             for m in case.build(np.dtype(np.float64), np.random.default_rng(0)).modules()}
    layers = {name for name in nn.__all__ if not name.endswith("Loss")} - {"Parameter", "Module", "RNNBase",
                                                                           "RNNCellBase"}
    assert built >= layers


def test_report_fails_on_biased_running_variance(monkeypatch, capsys):
    real = F.batch_norm_forward

    def biased(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
        # the courses' bug: track the biased variance, i.e. the unbiased one times (n - 1) / n
        before = None if running_var is None else running_var.copy()
        out, cache = real(x, running_mean, running_var, weight, bias, training, momentum, eps)
        if training and running_var is not None:
            n = x.size // x.shape[1]
            unbiased = (running_var - (1 - momentum) * before) / momentum
            running_var[...] = (1 - momentum) * before + momentum * unbiased * (n - 1) / n
        return out, cache

    monkeypatch.setattr(F, "batch_norm_forward", biased)
    status = report.main(["--only", "BatchNorm1d (N, C)", "--dtype", "float64"])
    text = capsys.readouterr().out
    assert status == 1
    assert "buffer running_var" in text and "MISMATCH" in text


def test_report_rejects_unknown_component(capsys):
    assert report.main(["--only", "NoSuchLayer"]) == 2
    assert "no component matches" in capsys.readouterr().err


def test_report_covers_every_loss_and_optimizer():
    from handnn import nn, optim

    losses = {type(case.build(np.dtype(np.float64), np.random.default_rng(0))).__name__ for case in report.loss_cases()}
    assert losses == {name for name in nn.__all__ if name.endswith("Loss")}
    optimizers = {case.optimizer.__name__ for case in report.optimizer_cases()}
    assert optimizers == set(optim.__all__) - {"Optimizer", "lr_scheduler"}


def test_report_fails_on_adam_without_bias_correction_and_names_it(monkeypatch, capsys):
    import handnn.optim.adam as adam

    def uncorrected(param, grad, state, *, lr, beta1, beta2, eps, **_):
        # the seeds' variant: m / (sqrt(v) + eps) with the raw moments
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        param -= lr * m / (np.sqrt(v) + eps)

    monkeypatch.setattr(adam, "adam_step", uncorrected)
    status = report.main(["--only", "Adam", "--dtype", "float64"])
    text = capsys.readouterr().out
    assert status == 1
    assert "param 0.weight" in text and "MISMATCH — likely cause: Adam without bias correction" in text


def test_report_names_dampening_on_the_first_momentum_step(monkeypatch, capsys):
    import handnn.optim.sgd as sgd

    real = sgd.sgd_step

    def damped_from_the_start(param, grad, momentum_buffer, **kw):
        if kw.get("momentum") and momentum_buffer is None:
            momentum_buffer = np.zeros_like(param)  # the buffer starts at 0, so step 1 is dampened; torch's is g
        return real(param, grad, momentum_buffer, **kw)

    monkeypatch.setattr(sgd, "sgd_step", damped_from_the_start)
    status = report.main(["--only", "SGD(momentum, dampening)", "--dtype", "float64"])
    text = capsys.readouterr().out
    assert status == 1
    assert "likely cause: first momentum step dampened" in text


def test_report_names_the_biased_running_variance(monkeypatch, capsys):
    import handnn.functional as HF

    real = HF.batch_norm_forward

    def biased(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
        before = None if running_var is None else running_var.copy()
        out = real(x, running_mean, running_var, weight, bias, training, momentum, eps)
        if training and running_var is not None:
            n = x.size // x.shape[1]
            running_var[...] = (1 - momentum) * before + (running_var - (1 - momentum) * before) * (n - 1) / n
        return out

    monkeypatch.setattr(HF, "batch_norm_forward", biased)
    status = report.main(["--only", "BatchNorm1d (N, C)", "--dtype", "float64"])
    text = capsys.readouterr().out
    assert status == 1
    assert "buffer running_var" in text and "likely cause: running_var uses the biased variance" in text


def test_report_fails_on_loss_mean_versus_sum(monkeypatch, capsys):
    import handnn.functional.loss as L

    real = L._elementwise_backward

    def summed(grad_output, cache):
        # 'mean' backward without the 1/denom: a gradient off by the number of elements
        return real(grad_output, cache) * cache.denom

    monkeypatch.setattr(L, "_elementwise_backward", summed)
    status = report.main(["--only", "MSELoss(mean)", "--dtype", "float64"])
    text = capsys.readouterr().out
    assert status == 1
    assert "dinput" in text and "MISMATCH — likely cause: off by the batch size n: a sum where torch takes the mean" in text


def test_report_covers_every_random_initialiser():
    from handnn import init

    random_inits = {"uniform_", "normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                    "trunc_normal_", "orthogonal_"}
    assert random_inits <= set(dir(init))
    assert {case.name for case in report.init_cases()} == random_inits


@pytest.mark.parametrize("only, planted", [
    ("init.kaiming_normal_(fan_out, relu)", "fan_in"),   # the fan rule ignored: fan_in (200) instead of fan_out (300)
    ("init.xavier_uniform_(gain=2)", "gain"),            # the gain dropped
])
def test_report_fails_on_a_wrong_initialiser(monkeypatch, capsys, only, planted):
    from handnn import init

    real = getattr(init, only.split("(")[0].split(".")[1].split(" ")[0])

    def wrong(tensor, *args, **kwargs):
        if planted == "fan_in":
            kwargs["mode"] = "fan_in"
        else:
            kwargs.pop("gain", None)
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(init, real.__name__, wrong)
    status = report.main(["--only", only, "--dtype", "float64"])
    text = capsys.readouterr().out
    assert status == 1
    assert "distribution: KS" in text and "MISMATCH" in text


def test_default_output_is_one_line_per_component_and_verbose_every_check(capsys):
    assert report.main(["--only", "Linear*", "--dtype", "float64"]) == 0
    short = capsys.readouterr().out
    components = [c.component for c in report.layer_cases() if c.component.startswith("Linear")]
    table = [line for line in short.splitlines() if line.startswith("Linear")]
    assert [line.split("  ")[0] for line in table] == components
    assert all(line.rstrip().endswith("ok") and re.search(r"\((eval )?(out|dx|grad \w+), float64\)", line)
               for line in table)  # the worst check named
    assert report.main(["--only", "Linear*", "--dtype", "float64", "--verbose"]) == 0
    long = capsys.readouterr().out
    assert sum(line.startswith("Linear") for line in long.splitlines()) > 2 * len(components)


def test_default_output_prints_the_failing_checks_in_full(monkeypatch, capsys):
    real = F.linear_forward
    monkeypatch.setattr(F, "linear_forward", lambda x, w, b=None: real(x, w, None if b is None else 2 * b))
    assert report.main(["--only", "Linear", "--dtype", "float64"]) == 1
    text = capsys.readouterr().out
    assert "MISMATCH (" in text and "failing checks:" in text
    failing = text.split("failing checks:")[1]
    assert "out" in failing and "float64" in failing
