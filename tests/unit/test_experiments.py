"""``handnn.experiments``, numpy only: small runs of every experiment — deterministic for a seed, the seeds'
conventions mapped as documented (checked against the seeds' own formulas), tables, options, progress, plots,
and the messages when matplotlib or torch is missing.

The torch side (the same experiments through torch twins, equal at the tolerance table) is in
``tests/parity/test_experiments_torch.py``.
"""
from __future__ import annotations

import contextlib
import io
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from handnn import functional as F
from handnn import nn, optim
from handnn.experiments import (EXPERIMENTS, batchnorm, charlm, cnn, initialization, main, optimizers,
                                regularization)
from handnn.experiments._common import Progress, format_table, generator, side_by_side
from handnn.experiments._plot import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[2]

#: a few iterations of every experiment, on its default setup (batchnorm: a smaller network and sweep)
SMALL = {
    "regularization": regularization.Config(iterations=25),
    "initialization": initialization.Config(iterations=25),
    "optimizers": optimizers.Config(iterations=3),
    "batchnorm": batchnorm.Config(iterations=6, scales=3, n_train=120, n_val=40, hidden=(12, 12, 12),
                                  batch_size=30, timing_shape=(9, 7), timing_repeats=1),
    "cnn": cnn.Config(iterations=30, channels=(4, 6)),
    "charlm": charlm.Config(iterations=12, seq_len=8, batch_size=4, hidden_size=8),
}
SMALL_ARGS = {
    "regularization": ["--iterations", "25"],
    "initialization": ["--iterations", "25"],
    "optimizers": ["--iterations", "3"],
    "batchnorm": ["--iterations", "6", "--scales", "3", "--train", "120", "--val", "40", "--hidden", "12", "12",
                  "12", "--batch-size", "30", "--timing-shape", "9", "7", "--timing-repeats", "1"],
    "cnn": ["--iterations", "30", "--channels", "4", "6"],
    "charlm": ["--iterations", "12", "--seq-len", "8", "--batch-size", "4", "--hidden", "8"],
}
NAMES = list(SMALL)

_cache: Dict[tuple, object] = {}


def small_run(name: str, **changes):
    """The result of a small run (memoised per worker: results are never modified by the tests)."""
    key = (name, tuple(sorted(changes.items())))
    if key not in _cache:
        module = EXPERIMENTS[name]
        config = SMALL[name]
        if changes:
            config = type(config)(**{**config.__dict__, **changes})
        _cache[key] = module.run(config)
    return _cache[key]


def assert_same_result(a, b) -> None:
    assert [r.name for r in a.runs] == [r.name for r in b.runs]
    for ra, rb in zip(a.runs, b.runs):
        np.testing.assert_array_equal(ra.losses, rb.losses)
        assert (ra.train_accuracy, ra.test_accuracy) == (rb.train_accuracy, rb.test_accuracy)
        assert ra.state.keys() == rb.state.keys()
        for key in ra.state:
            np.testing.assert_array_equal(ra.state[key], rb.state[key])


# ---- runs: shape of the results, determinism --------------------------------------------------------------------
def test_every_experiment_is_registered():
    assert set(EXPERIMENTS) == {"regularization", "initialization", "optimizers", "batchnorm", "cnn", "charlm"}


@pytest.mark.parametrize("name", NAMES)
def test_run_result_shapes(name):
    result = small_run(name)
    config = SMALL[name]
    expected_runs = 2 * config.scales if name == "batchnorm" else len(EXPERIMENTS[name].VARIANTS)
    assert len(result.runs) == expected_runs
    for run in result.runs:
        assert run.losses.shape == (config.iterations,)
        assert np.all(np.isfinite(run.losses))
        assert 0.0 <= run.train_accuracy <= 1.0 and 0.0 <= run.test_accuracy <= 1.0
        assert run.state and all(isinstance(v, np.ndarray) for v in run.state.values())
    assert result.seconds > 0


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result(name):
    """Every draw comes from generators built from the seed: a second run is bit for bit the first."""
    again = EXPERIMENTS[name].run(SMALL[name])
    assert_same_result(small_run(name), again)


@pytest.mark.parametrize("name", NAMES)
def test_another_seed_another_result(name):
    first, other = small_run(name), small_run(name, seed=1)
    assert any(not np.array_equal(a.losses, b.losses) for a, b in zip(first.runs, other.runs))
    if name != "charlm":  # charlm's data is its fixed text (the seed draws the windows and the weights)
        assert not np.array_equal(first.data.x_train, other.data.x_train)


def test_streams_are_independent_and_seeded():
    a, b = generator(5, "data").standard_normal(4), generator(5, "init").standard_normal(4)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, generator(5, "data").standard_normal(4))
    assert not np.array_equal(a, generator(6, "data").standard_normal(4))


# ---- regularization (seed 004) ----------------------------------------------------------------------------------
def test_regularization_data_split_and_model():
    config = regularization.Config()
    data = regularization.load_data(config)
    assert data.x_train.shape == (200, 2) and data.x_test.shape == (100, 2)
    assert data.y_train.shape == (200,) and set(np.unique(data.y_train)) == {0, 1}
    model, loss_fn, opt, l2 = regularization.build(config, "none")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(20, 2), (3, 20), (1, 3)]
    assert isinstance(loss_fn, nn.BCEWithLogitsLoss) and isinstance(opt, optim.SGD) and l2 == 0.0
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["weight_decay"] == 0
    for m in linears:
        np.testing.assert_array_equal(m.bias.data, 0.0)


def test_regularization_variants_start_from_the_same_weights():
    config = regularization.Config()
    linears = [[m for m in regularization.build(config, v)[0].modules() if isinstance(m, nn.Linear)]
               for v in regularization.VARIANTS]
    for other in linears[1:]:
        for a, b in zip(other, linears[0]):
            np.testing.assert_array_equal(a.weight.data, b.weight.data)
            np.testing.assert_array_equal(a.bias.data, b.bias.data)
    # N(0, 1), the seed's initialisation (103 draws: a loose check of the scale)
    weights = np.concatenate([m.weight.data.ravel() for m in linears[0]])
    assert 0.7 < weights.std() < 1.3


def one_step_state(variant: str) -> Dict[str, np.ndarray]:
    config = regularization.Config(iterations=1)
    return regularization.run(config, variants=[variant]).runs[0]


def test_l2_is_the_seeds_lambda_over_2m_penalty():
    """Seed 004: loss + λ/(2m)·ΣW² and dW += (λ/m)·W. From the same start, one L2 step differs from one plain
    step by exactly −lr·(λ/m)·W₀ on the weights (not on the biases), and its loss by λ/(2m)·ΣW₀²."""
    config = regularization.Config()
    start = regularization.build(config, "none")[0].state_dict()
    plain, l2 = one_step_state("none"), one_step_state("L2")
    lam_over_m = config.l2_lambda / config.n_train
    weights = [k for k in start if k.endswith("weight")]
    for key in start:
        expected = plain.state[key] - (config.lr * lam_over_m * start[key] if key in weights else 0.0)
        np.testing.assert_allclose(l2.state[key], expected, rtol=1e-12, atol=1e-14)
    penalty = config.l2_lambda / (2 * config.n_train) * sum(float((start[k] ** 2).sum()) for k in weights)
    assert l2.losses[0] == pytest.approx(plain.losses[0] + penalty, rel=1e-13)


def test_weight_decay_is_the_seeds_one_minus_beta_rule():
    """Seed 004: θ ← (1 − β)θ − lr·g on every parameter: one step differs from the plain one by −β·θ₀."""
    config = regularization.Config()
    start = regularization.build(config, "none")[0].state_dict()
    plain, decayed = one_step_state("none"), one_step_state("weight decay")
    for key in start:
        np.testing.assert_allclose(decayed.state[key], plain.state[key] - config.weight_decay * start[key],
                                   rtol=1e-12, atol=1e-14)
    assert decayed.losses[0] == plain.losses[0]
    _, _, opt, _ = regularization.build(config, "weight decay")
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(config.weight_decay / config.lr, rel=1e-15)
    assert len(opt.param_groups[0]["params"]) == 6  # biases decay too, as in the seed's BatchGD


def test_l2_and_weight_decay_keep_the_weights_small():
    """Both penalties pull every weight towards 0: after 100 steps from the same start, ΣW² is clearly smaller
    than without them (by ~10 % here; the train/test effect needs the full 50 000 iterations)."""
    result = regularization.run(regularization.Config(iterations=100), variants=["none", "L2", "weight decay"])
    norms = {r.name: sum(float((v ** 2).sum()) for k, v in r.state.items() if k.endswith("weight"))
             for r in result.runs}
    assert norms["L2"] < 0.95 * norms["none"]
    assert norms["weight decay"] < 0.95 * norms["none"]


def test_dropout_variant_uses_the_drop_probability():
    model = regularization.build(regularization.Config(drop_prob=0.3), "dropout")[0]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.3, 0.3]
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]


def test_dropout_masks_are_drawn_and_accuracies_are_in_eval_mode():
    result = small_run("regularization")
    assert not np.array_equal(result.run("dropout").losses, result.run("none").losses)
    model = regularization.build(SMALL["regularization"], "dropout")[0]
    model.load_state_dict(result.run("dropout").state)
    model.eval()
    logits = model(result.data.x_test)
    assert result.run("dropout").test_accuracy == np.mean((logits[:, 0] > 0) == (result.data.y_test == 1))


@pytest.mark.parametrize("argv,expected", [([], 0.3), (["--drop-prob", "0.4"], 0.4), (["--keep-prob", "0.86"], 1 - 0.86)])
def test_keep_prob_maps_to_the_drop_probability(argv, expected):
    from handnn.experiments import build_parser

    args = build_parser().parse_args(["regularization", *argv])
    assert regularization.config_from_args(args).drop_prob == expected


@pytest.mark.parametrize("changes", [{"n_train": 300}, {"n_train": 0}, {"drop_prob": 1.0}, {"drop_prob": -0.1}])
def test_regularization_config_is_validated(changes):
    with pytest.raises(ValueError, match="n_train|drop probability"):
        regularization.Config(**changes)


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'L3'"):
        regularization.build(regularization.Config(), "L3")


# ---- initialization (seed 003) ----------------------------------------------------------------------------------
def test_initializations_are_the_courses():
    """zeros; randn·10; randn·sqrt(2/fan_in) — the same underlying draws, so He/√(2/fan_in) = large/10."""
    config = initialization.Config()
    models = {v: initialization.build(config, v)[0] for v in initialization.VARIANTS}
    linears = {v: [m for m in model.modules() if isinstance(m, nn.Linear)] for v, model in models.items()}
    assert [tuple(m.weight.shape) for m in linears["He"]] == [(10, 2), (5, 10), (1, 5)]
    for zero, large, he in zip(linears["zeros"], linears["large random"], linears["He"]):
        np.testing.assert_array_equal(zero.weight.data, 0.0)
        fan_in = he.weight.shape[1]
        np.testing.assert_allclose(he.weight.data / math.sqrt(2.0 / fan_in), large.weight.data / 10.0, rtol=1e-14)
        for layer in (zero, large, he):
            np.testing.assert_array_equal(layer.bias.data, 0.0)


def test_zeros_never_break_the_symmetry():
    """Seed 003: with zeros every hidden unit stays at zero: one class everywhere (accuracy = class share)."""
    result = small_run("initialization")
    zeros = result.run("zeros")
    hidden = [k for k in zeros.state if k.endswith("weight")][:-1]
    for key in hidden:
        np.testing.assert_array_equal(zeros.state[key], 0.0)
    assert np.ptp(zeros.grid_logits) == 0.0  # the same output everywhere
    shares = (np.mean(result.data.y_train == 0), np.mean(result.data.y_train == 1))
    assert zeros.train_accuracy in shares


def test_circles_train_and_test_are_separate_draws():
    data = initialization.load_data(initialization.Config())
    assert data.x_train.shape == (300, 2) and data.x_test.shape == (100, 2)
    radii = np.hypot(*data.x_train.T)
    assert np.mean(radii[data.y_train == 0]) > np.mean(radii[data.y_train == 1])  # class 0 is the outer circle


# ---- optimizers (seed 003) ----------------------------------------------------------------------------------------
def course_updates(variant: str, config: optimizers.Config, theta: np.ndarray, grads) -> np.ndarray:
    """deeplearning.ai's update rules, written as the course writes them."""
    theta = theta.copy()
    v = np.zeros_like(theta)
    s = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if variant == "mini-batch GD":
            theta = theta - config.lr * g
        elif variant == "momentum":
            v = config.beta * v + (1 - config.beta) * g
            theta = theta - config.lr * v
        else:
            v = config.beta1 * v + (1 - config.beta1) * g
            s = config.beta2 * s + (1 - config.beta2) * g ** 2
            v_hat, s_hat = v / (1 - config.beta1 ** t), s / (1 - config.beta2 ** t)
            theta = theta - config.lr * v_hat / (np.sqrt(s_hat) + config.eps)
    return theta


@pytest.mark.parametrize("variant", optimizers.VARIANTS)
def test_optimizers_equal_the_course_update_rules(rng, variant):
    """The torch optimizer each variant maps to follows the course's rule over several steps."""
    config = optimizers.Config(lr=0.05)
    theta = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(6)]
    param = nn.Parameter(theta.copy())
    opt = optimizers.make_optimizer(config, variant, [param])
    for g in grads:
        param.grad = g.copy()
        opt.step()
    np.testing.assert_allclose(param.data, course_updates(variant, config, theta, grads), rtol=1e-12, atol=1e-14)


def test_optimizers_share_weights_and_batches():
    config = SMALL["optimizers"]
    states = [optimizers.build(config, v)[0].state_dict() for v in optimizers.VARIANTS]
    for state in states[1:]:
        for key in state:
            np.testing.assert_array_equal(state[key], states[0][key])
    fan_in_std = [states[0][k].std() * math.sqrt(states[0][k].shape[1] / 2) for k in states[0] if k.endswith("weight")]
    assert all(0.2 < s < 3 for s in fan_in_std)  # He scale, loosely (few draws)


# ---- batchnorm (seeds 000/002) --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7, 5), (64, 33)])
def test_staged_forward_and_backward_equal_the_fused_ones(rng, shape):
    x = 3.0 * rng.standard_normal(shape) + 2.0
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    dout = rng.standard_normal(shape)
    out, cache = batchnorm.staged_forward(x, gamma, beta, 1e-5)
    fused_out, fused_cache = F.batch_norm_forward(x, None, None, gamma, beta, training=True, eps=1e-5)
    np.testing.assert_allclose(out, fused_out, rtol=1e-12, atol=1e-12)
    staged = batchnorm.staged_backward(dout, cache)
    fused = F.batch_norm_backward(dout, fused_cache)
    assert np.abs(fused[0]).max() > 1e-3  # a random upstream gradient: dx is not ~0
    for a, b in zip(staged, fused):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_staged_backward_is_the_gradient(rng):
    """Central differences of ⟨dout, y(x)⟩ against the staged dx (independent of the fused formula)."""
    x, gamma, beta = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    _, cache = batchnorm.staged_forward(x, gamma, beta, 1e-5)
    dx = batchnorm.staged_backward(dout, cache)[0]
    numeric = np.zeros_like(x)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (np.sum(dout * batchnorm.staged_forward(plus, gamma, beta, 1e-5)[0])
                        - np.sum(dout * batchnorm.staged_forward(minus, gamma, beta, 1e-5)[0])) / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-7)


def test_backward_comparison_in_the_result():
    backward = small_run("batchnorm").extra["backward"]
    assert backward["shape"] == (9, 7)
    assert all(e < 1e-9 for e in backward["errors"])
    assert backward["forward_max_abs"] < 1e-12
    assert backward["staged_seconds"] > 0 and backward["fused_seconds"] > 0


def test_max_rel_error_is_cs231ns():
    a, b = np.array([1.0, 2.0, 0.0]), np.array([1.0, 2.5, 0.0])
    assert batchnorm.max_rel_error(a, b) == pytest.approx(0.5 / 4.5)


def test_weight_scales_and_networks():
    config = SMALL["batchnorm"]
    np.testing.assert_allclose(batchnorm.Config().weight_scales, np.logspace(-4, 0, 20), rtol=1e-14)
    base, _, opt = batchnorm.build(config, False, 0.01)
    bn, _, _ = batchnorm.build(config, True, 0.01)
    assert [type(m).__name__ for m in bn][:3] == ["Linear", "BatchNorm1d", "ReLU"]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in base.modules())
    assert isinstance(opt, optim.Adam) and opt.param_groups[0]["lr"] == 1e-3
    # the same weights for both networks of one scale, W = scale·randn
    base_w = [m.weight.data for m in base.modules() if isinstance(m, nn.Linear)]
    bn_w = [m.weight.data for m in bn.modules() if isinstance(m, nn.Linear)]
    for a, b in zip(base_w, bn_w):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(batchnorm.build(config, False, 0.1)[0][0].weight.data, 10 * base_w[0], rtol=1e-14)


def test_batchnorm_rescues_a_tiny_weight_scale():
    """CS231n's conclusion at one point of the sweep: at weight scale 1e-4 the plain deep network's signal
    vanishes (chance accuracy) while the BatchNorm network learns."""
    config = batchnorm.Config(iterations=60, scales=1, scale_min=1e-4, scale_max=1e-4, n_train=300, n_val=100,
                              hidden=(20,) * 5, timing_shape=(4, 3), timing_repeats=1, lr=1e-2)
    result = batchnorm.run(config)
    base, bn = result.runs
    assert base.train_accuracy < 0.6
    assert bn.train_accuracy > 0.75


# ---- tables -------------------------------------------------------------------------------------------------------
def test_format_table_aligns_every_column():
    text = format_table(["name", "value"], [["a", "1.5"], ["longer name", "22.25"]])
    lines = text.splitlines()
    assert lines == ["| name        | value |",
                     "|:------------|------:|",
                     "| a           |   1.5 |",
                     "| longer name | 22.25 |"]


def test_side_by_side_pairs_lines():
    text = side_by_side("a\nbb", "x\ny\nz", titles=("L", "R"), gap=2)
    assert text.splitlines() == ["L   R", "a   x", "bb  y", "    z"]


@pytest.mark.parametrize("name", NAMES)
def test_table_rows_show_the_results(name):
    module = EXPERIMENTS[name]
    result = small_run(name)
    text = module.table(result)
    blocks = text.split("\n\n")
    for block in blocks:
        lines = block.splitlines()
        assert len({len(line) for line in lines}) == 1  # aligned
        assert all(line.startswith("|") and line.endswith("|") for line in lines)
    body = blocks[-1].splitlines()[2:]
    if name == "batchnorm":
        assert len(body) == SMALL[name].scales
        for line, scale in zip(body, result.extra["weight_scales"]):
            cells = [c.strip() for c in line.strip("|").split("|")]
            base = result.run(batchnorm.run_name("baseline", scale))
            assert cells[0] == f"{scale:.2e}" and cells[1] == f"{100 * base.train_accuracy:.1f} %"
    else:
        assert len(body) == len(result.runs)
        for line, run in zip(body, result.runs):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[0] == run.name
            assert f"{100 * run.train_accuracy:.1f} %" in cells and f"{100 * run.test_accuracy:.1f} %" in cells


def test_regularization_table_shows_the_seeds_numbers():
    text = regularization.table(small_run("regularization"))
    assert "seed 004 (train / test)" in text and "91.0 % / 71.0 %" in text and "86.0 % / 77.0 %" in text
    assert "seed 004" not in regularization.table(small_run("regularization"), reported=False)


# ---- command line -------------------------------------------------------------------------------------------------
def test_list(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(EXPERIMENTS)


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["regularization", "--iterations", "0"],
                                  ["regularization", "--backend", "jax"], ["optimizers", "--seed", "x"]])
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_invalid_configuration_exits_2(capsys):
    assert main(["regularization", "--train", "300"]) == 2
    assert "n_train must be between 1 and n_samples - 1 = 299, but got 300" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_cli_prints_the_table_of_run(capsys, name):
    """``handnn-experiment NAME --seed S`` prints exactly the table of ``run(Config(seed=S))``: deterministic."""
    assert main([name, "--seed", "0", *SMALL_ARGS[name]]) == 0
    out, err = capsys.readouterr()
    module = EXPERIMENTS[name]
    expected = module.table(small_run(name))
    if name == "batchnorm":  # the timings differ between runs: compare the weight-scale table only
        expected = expected.split("\n\n")[1]
    assert expected in out
    assert out.startswith(module.describe(SMALL[name]))
    assert module.notes(SMALL[name]) in out and "time: handnn" in out
    assert err == ""  # no progress when stderr is not a terminal


@pytest.mark.parametrize("name,iterations", [("regularization", 50_000), ("initialization", 15_000),
                                             ("optimizers", 10_000), ("batchnorm", 200)])
def test_defaults_are_the_seeds(name, iterations):
    from handnn.experiments import build_parser

    config = EXPERIMENTS[name].config_from_args(build_parser().parse_args([name]))
    assert config == type(config)()  # the command line's defaults are the Config's
    assert config.iterations == iterations and config.seed == 0


def test_progress_on_request(capsys):
    assert main(["initialization", "--iterations", "5", "--progress"]) == 0
    err = capsys.readouterr().err
    for variant in initialization.VARIANTS:
        assert f"initialization [handnn] {variant}: 5/5 (100%)" in err


class FakeStream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("flag,tty,ci,expected", [(False, True, None, True), (False, False, None, False),
                                                  (False, True, "true", False), (True, False, "true", True)])
def test_progress_shown_on_a_terminal_only_and_never_on_ci(monkeypatch, flag, tty, ci, expected):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert Progress.wanted(flag, FakeStream(tty)) is expected


def test_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "handnn.experiments", "--list"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "regularization" in result.stdout and "batchnorm" in result.stdout


def test_experiments_run_with_torch_blocked():
    """handnn.experiments never imports torch, not even lazily on the default backend."""
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        from handnn.experiments import main
        assert main(["batchnorm", "--iterations", "2", "--scales", "1", "--train", "20", "--val", "10",
                     "--hidden", "4", "--batch-size", "10", "--timing-shape", "4", "3", "--timing-repeats", "1"]) == 0
        assert main(["regularization", "--iterations", "3"]) == 0
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_torch_backend_missing_is_a_clear_error(monkeypatch, capsys):
    """Without torch/reference, ``--backend torch`` fails at once with exit status 2 and says what to install."""
    for name in ("reference.experiments", "handnn_reference.experiments"):  # the checkout's and the installed name
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(regularization, "run", lambda *a, **k: pytest.fail("trained before checking the backend"))
    assert main(["regularization", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "--backend torch needs torch and the reference package" in err and "handnn[reference]" in err


# ---- plots ----------------------------------------------------------------------------------------------------------
def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    """matplotlib cannot be imported: exit status 2, the install hint, nothing trained, nothing written."""
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.colors"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(regularization, "run", lambda *a, **k: pytest.fail("trained before checking matplotlib"))
    assert main(["regularization", "--plot", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib is required for --plot" in err and "pip install 'handnn[plot]'" in err
    assert INSTALL_HINT in err
    assert not (tmp_path / "plots").exists()


PLOTS = {"regularization": ["regularization_loss.png", "regularization_boundaries.png"],
         "initialization": ["initialization_loss.png", "initialization_boundaries.png"],
         "optimizers": ["optimizers_loss.png", "optimizers_boundaries.png"],
         "batchnorm": ["batchnorm_weight_scale.png"], "cnn": ["cnn_loss.png", "cnn_accuracy.png"],
         "charlm": ["charlm_loss.png", "charlm_accuracy.png"]}


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """``handnn-experiment NAME ... --plot DIR`` for each experiment, once per module (rendering is the slow
    part): returns ``name -> (DIR, stdout)``."""
    done: Dict[str, tuple] = {}

    def plot(name: str):
        if name not in done:
            directory = tmp_path_factory.mktemp(name) / "new" / "dir"  # created by --plot
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main([name, *SMALL_ARGS[name], "--plot", str(directory)])
            assert status == 0
            done[name] = (directory, out.getvalue())
        return done[name]

    return plot


#: the seeds' region colours (light grey, pink) and point colours (black, magenta) of the boundary plots
BOUNDARY_COLOURS = ("#f5f5f5", "#f19ec2", "#000000", "#e4007f")


@pytest.mark.parametrize("name", NAMES)
def test_cli_writes_pngs_with_content(plotted, name):
    """PNG files, each with real content; the decision-boundary panels show both predicted regions and both
    classes of points (for the small runs that already predict both classes somewhere)."""
    import matplotlib.colors
    import matplotlib.image  # a test dependency (the "test" extra)

    directory, out = plotted(name)
    assert sorted(p.name for p in directory.iterdir()) == sorted(PLOTS[name])
    for file in PLOTS[name]:
        path = directory / file
        assert f"wrote {path}" in out
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(path)[..., :3]
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        colours = np.unique(pixels.reshape(-1, 3).round(2), axis=0)
        assert len(colours) > 20  # curves, regions and points, not a blank canvas
        if file.endswith("boundaries.png") and name != "initialization":
            for colour in BOUNDARY_COLOURS:
                target = np.array(matplotlib.colors.to_rgb(colour))
                assert np.any(np.all(np.abs(pixels - target) < 0.02, axis=-1)), colour


# ---- cnn ------------------------------------------------------------------------------------------------------------
def test_cnn_split_and_accuracy_curves():
    """The digits split into disjoint train and held-out images; an accuracy every 25 steps and at the end, the
    last one the run's test accuracy; both variants start from the same weights."""
    config = SMALL["cnn"]
    data = cnn.load_data(config)
    assert data.x_train.shape == (1797 - config.n_test, 1, 8, 8) and data.x_test.shape == (config.n_test, 1, 8, 8)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    train, test = {row.tobytes() for row in data.x_train}, {row.tobytes() for row in data.x_test}
    assert len(test - train) > 0.9 * len(test)  # a few digits repeat exactly in the data set itself
    result = small_run("cnn")
    for run in result.runs:
        steps, accuracies = result.extra["accuracy"][run.name]
        assert list(steps) == [25, 30] and accuracies[-1] == run.test_accuracy
    first = [cnn.model(config).state_dict() for _ in range(2)]
    for key in first[0]:
        np.testing.assert_array_equal(first[0][key], first[1][key])


def test_cnn_learns_the_digits():
    """A few hundred steps take both optimizers far above chance (10 %) on held-out digits."""
    result = cnn.run(cnn.Config(iterations=300))
    assert all(run.test_accuracy > 0.6 for run in result.runs), [r.test_accuracy for r in result.runs]


# ---- charlm -----------------------------------------------------------------------------------------------------
def test_charlm_text_windows_and_split():
    """Windows are consecutive characters and their targets the next ones; the held-out part is the text's last
    10 %, and every character maps to a class and back."""
    vocab = charlm.vocabulary()
    tokens = charlm.encode(charlm.TEXT, vocab)
    assert "".join(vocab[t] for t in tokens) == charlm.TEXT and len(set(vocab)) == len(vocab)
    x, y = charlm.windows(tokens, 7, 5, np.random.default_rng(0))
    assert x.shape == (5, 7) and y.shape == (35,)
    for row, targets in zip(x, y.reshape(5, 7)):
        start = next(i for i in range(len(tokens) - 7) if np.array_equal(tokens[i:i + 7], row))
        assert np.array_equal(tokens[start + 1:start + 8], targets)
    data = charlm.load_data(SMALL["charlm"])
    assert data.x_train.shape[1] == int(0.9 * len(tokens)) and data.x_test.shape[1] == SMALL["charlm"].seq_len


def test_charlm_runs_record_a_sample_and_accuracy_curves():
    result = small_run("charlm")
    config = SMALL["charlm"]
    for run in result.runs:
        sample = result.extra["sample"][run.name]
        assert sample.startswith(config.prompt) and len(sample) == len(config.prompt) + config.generate
        steps, accuracies = result.extra["accuracy"][run.name]
        assert list(steps) == [12] and accuracies[-1] == run.test_accuracy


def test_charlm_model_backward_reaches_every_parameter():
    model = charlm.CharLM(len(charlm.vocabulary()), 4, 5, 2, "GRU", rng=np.random.default_rng(0))
    tokens = charlm.encode(charlm.TEXT[:24], charlm.vocabulary()).reshape(3, 8)
    logits = model(tokens)
    assert logits.shape == (24, len(charlm.vocabulary()))
    assert model.backward(np.random.default_rng(1).normal(size=logits.shape)) is None
    assert all(p.grad is not None and np.abs(p.grad).max() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="cell must be"):
        charlm.CharLM(10, 4, 5, 1, "Transformer")
