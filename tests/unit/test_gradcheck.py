"""handnn.gradcheck: the seeds' relative error, central differences, and a check that passes on every handnn
component, leaves the module bit-for-bit as it found it, and fails on the seeds' bugs planted in small modules.

numpy only: the reference here is the central difference itself (and, for ``rel_error``, the formula).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

from handnn import nn
from handnn.gradcheck import (
    DEFAULT_ATOL, DEFAULT_TOL, GradcheckError, gradcheck, numerical_gradient, rel_error,
)
from handnn.random import TorchGenerator

EPS = 1e-6  # gradcheck's default step


def _randomize(module: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Random parameter values (BatchNorm's ones/zeros would let a wrong weight/bias term pass unnoticed)."""
    for param in module.parameters():
        param.data[...] = rng.uniform(-1.5, 1.5, param.shape)
    return module


def _trained(module: nn.Module, shape: Tuple[int, ...], rng: np.random.Generator, steps: int = 3) -> nn.Module:
    """A few training forwards, so BatchNorm's running statistics are not their initial zeros/ones."""
    scale = rng.uniform(0.3, 2.0, (1, shape[1]) + (1,) * (len(shape) - 2))
    for _ in range(steps):
        module(rng.normal(0.5, 1.0, shape) * scale)
    return module


# ---- rel_error -----------------------------------------------------------------------------------------------------
def _formula(g: List[float], g_hat: List[float]) -> float:
    """||g - g_hat|| / (||g|| + ||g_hat||) written out with math, 0 / 0 taken as 0."""
    num = math.sqrt(sum((a - b) ** 2 for a, b in zip(g, g_hat)))
    den = math.sqrt(sum(a * a for a in g)) + math.sqrt(sum(b * b for b in g_hat))
    return 0.0 if den == 0 else num / den


@pytest.mark.parametrize("g, g_hat", [
    ([3.0, 4.0], [3.0, 4.0]),
    ([3.0, 4.0], [0.0, 0.0]),
    ([3.0, 4.0], [-3.0, -4.0]),
    ([1.0, 2.0, 2.0], [1.0, 2.0, 3.0]),
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    ([1e-8, -2e-8], [1.1e-8, -2e-8]),
], ids=["equal", "one-zero", "opposite", "one-off", "zeros", "tiny"])
def test_rel_error_is_the_seeds_formula(g, g_hat):
    assert rel_error(np.array(g), np.array(g_hat)) == pytest.approx(_formula(g, g_hat), rel=1e-15, abs=0)


def test_rel_error_takes_norms_over_all_elements_of_any_shape():
    g = np.arange(6.0).reshape(2, 3)
    g_hat = g + np.array([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    assert rel_error(g, g_hat) == pytest.approx(_formula(g.ravel().tolist(), g_hat.ravel().tolist()), rel=1e-15)


def test_rel_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(2,\)"):
        rel_error(np.zeros(3), np.zeros(2))


# ---- numerical_gradient --------------------------------------------------------------------------------------------
def test_numerical_gradient_matches_the_derivative_and_leaves_x_alone(rng):
    x = rng.standard_normal((3, 4))
    before = x.tobytes()
    seen = []

    def f(z: np.ndarray) -> float:
        seen.append(z)
        return float(np.sum(np.sin(z) * z ** 2))

    numeric = numerical_gradient(f, x)
    exact = np.cos(x) * x ** 2 + 2 * x * np.sin(x)
    assert rel_error(exact, numeric) <= DEFAULT_TOL
    assert numeric.shape == x.shape
    assert x.tobytes() == before
    assert all(z is not x for z in seen)
    assert len(seen) == 2 * x.size


def test_numerical_gradient_warns_on_float32():
    with pytest.warns(UserWarning, match="float32"):
        numerical_gradient(lambda z: float(z.sum()), np.ones(3, dtype=np.float32))


# ---- passes on every component -------------------------------------------------------------------------------------
Case = Callable[[np.random.Generator], Tuple[nn.Module, np.ndarray, dict]]


def _bn(cls, shape, training: bool, **kwargs) -> Case:
    def build(rng):
        layer = _randomize(cls(shape[1], **kwargs), rng)
        _trained(layer, shape, rng)
        layer.train(training)
        return layer, rng.standard_normal(shape), {}
    return build


def _mlp(training: bool) -> Case:
    def build(rng):
        model = nn.Sequential(
            nn.Linear(3, 7, bias=False, rng=rng), nn.BatchNorm1d(7), nn.ReLU(), nn.Dropout(0.3, rng=rng),
            nn.Linear(7, 5, rng=rng), nn.GELU(), nn.Linear(5, 4, rng=rng), nn.LogSoftmax(dim=1),
        )
        _randomize(model, rng)
        _trained(model, (6, 3), rng)
        model.train(training)
        return model, rng.standard_normal((6, 3)), {}
    return build


def _simple(make: Callable[[np.random.Generator], nn.Module], shape, **options) -> Case:
    return lambda rng: (_randomize(make(rng), rng), rng.standard_normal(shape), options)


MODULE_CASES: Dict[str, Case] = {
    "linear": _simple(lambda rng: nn.Linear(4, 3, rng=rng), (5, 4)),
    "linear-no-bias": _simple(lambda rng: nn.Linear(4, 3, bias=False, rng=rng), (5, 4)),
    "linear-3d-input": _simple(lambda rng: nn.Linear(4, 3, rng=rng), (2, 5, 4)),
    "identity": _simple(lambda rng: nn.Identity(), (3, 4)),
    "flatten": _simple(lambda rng: nn.Flatten(), (2, 3, 4)),
    "relu": _simple(lambda rng: nn.ReLU(), (4, 5), away_from_kinks=True),
    "leaky-relu": _simple(lambda rng: nn.LeakyReLU(0.2), (4, 5), away_from_kinks=True),
    "sigmoid": _simple(lambda rng: nn.Sigmoid(), (4, 5)),
    "tanh": _simple(lambda rng: nn.Tanh(), (4, 5)),
    "gelu-none": _simple(lambda rng: nn.GELU(), (4, 5)),
    "gelu-tanh": _simple(lambda rng: nn.GELU(approximate="tanh"), (4, 5)),
    "softmax-dim1": _simple(lambda rng: nn.Softmax(dim=1), (3, 4, 2)),
    "softmax-dim0": _simple(lambda rng: nn.Softmax(dim=0), (3, 4)),
    "log-softmax": _simple(lambda rng: nn.LogSoftmax(dim=-1), (3, 5)),
    "batchnorm1d-train": _bn(nn.BatchNorm1d, (6, 4), True),
    "batchnorm1d-train-3d": _bn(nn.BatchNorm1d, (4, 3, 2), True),
    "batchnorm1d-eval": _bn(nn.BatchNorm1d, (6, 4), False),
    "batchnorm1d-cumulative-train": _bn(nn.BatchNorm1d, (6, 4), True, momentum=None),
    "batchnorm1d-no-affine-train": _bn(nn.BatchNorm1d, (6, 4), True, affine=False),
    "batchnorm1d-no-stats-eval": _bn(nn.BatchNorm1d, (6, 4), False, track_running_stats=False),
    "batchnorm2d-train": _bn(nn.BatchNorm2d, (3, 4, 2, 5), True),
    "batchnorm2d-eval": _bn(nn.BatchNorm2d, (3, 4, 2, 5), False),
    "layernorm": _simple(lambda rng: nn.LayerNorm((3, 4)), (2, 3, 4)),
    "layernorm-no-bias": _simple(lambda rng: nn.LayerNorm(5, bias=False), (3, 5)),
    "layernorm-no-affine": _simple(lambda rng: nn.LayerNorm(5, elementwise_affine=False), (3, 5)),
    "groupnorm": _simple(lambda rng: nn.GroupNorm(2, 4), (3, 4, 5)),
    "groupnorm-no-affine": _simple(lambda rng: nn.GroupNorm(3, 6, affine=False), (2, 6, 2)),
    "dropout-train": _simple(lambda rng: nn.Dropout(0.4, rng=rng), (6, 5)),
    "dropout-eval": _simple(lambda rng: nn.Dropout(0.4, rng=rng).eval(), (6, 5)),
    "mlp-train": _mlp(True),
    "mlp-eval": _mlp(False),
}


@pytest.mark.parametrize("case", MODULE_CASES.values(), ids=MODULE_CASES.keys())
def test_passes_on_every_module(case, rng):
    module, x, options = case(rng)
    report = gradcheck(module, x, rng=rng, **options)
    assert report.passed, str(report)
    assert [e.name for e in report.entries] == ["input"] + [name for name, _ in module.named_parameters()]
    assert all(e.mode == "full" and e.checked == int(np.prod(e.shape)) for e in report.entries)
    # every compared gradient is substantial: a check of zeros against zeros would prove nothing
    assert min(e.numeric_norm for e in report.entries) > 1e-3


def _class_input(rng, shape):
    return rng.standard_normal(shape)


def _class_target(rng, shape, ignore=False):
    n, c = shape[0], shape[1]
    target = rng.integers(0, c, (n,) + shape[2:])
    if ignore:
        target.reshape(-1)[::3] = -100  # ignore_index's default; every third position skipped
    return target


def _probabilities(rng, shape):
    p = rng.uniform(0.1, 1.0, shape)
    return p / p.sum(axis=1, keepdims=True)


LossCase = Callable[[np.random.Generator, str], Tuple[nn.Module, np.ndarray, np.ndarray, dict]]
KINKS = {"away_from_kinks": True}
LOSS_CASES: Dict[str, LossCase] = {
    "mse": lambda rng, r: (nn.MSELoss(reduction=r), rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), {}),
    "l1": lambda rng, r: (nn.L1Loss(reduction=r), rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), KINKS),
    "smooth-l1": lambda rng, r: (nn.SmoothL1Loss(reduction=r, beta=0.5), rng.standard_normal((5, 4)),
                                 rng.standard_normal((5, 4)), dict(KINKS, kinks=(0.0, -0.5, 0.5))),
    "huber": lambda rng, r: (nn.HuberLoss(reduction=r, delta=0.7), rng.standard_normal((5, 4)),
                             rng.standard_normal((5, 4)), dict(KINKS, kinks=(0.0, -0.7, 0.7))),
    "bce": lambda rng, r: (nn.BCELoss(reduction=r), rng.uniform(0.05, 0.95, (5, 4)), rng.uniform(0, 1, (5, 4)), {}),
    "bce-weight": lambda rng, r: (nn.BCELoss(weight=rng.uniform(0.5, 2, 4), reduction=r),
                                  rng.uniform(0.05, 0.95, (5, 4)), rng.uniform(0, 1, (5, 4)), {}),
    "bce-logits": lambda rng, r: (nn.BCEWithLogitsLoss(reduction=r), rng.standard_normal((5, 4)) * 2,
                                  rng.uniform(0, 1, (5, 4)), {}),
    "bce-logits-weights": lambda rng, r: (
        nn.BCEWithLogitsLoss(weight=rng.uniform(0.5, 2, 4), pos_weight=rng.uniform(0.5, 3, 4), reduction=r),
        rng.standard_normal((5, 4)) * 2, rng.uniform(0, 1, (5, 4)), {}),
    "nll": lambda rng, r: (nn.NLLLoss(reduction=r), _class_input(rng, (5, 4)), _class_target(rng, (5, 4)), {}),
    "nll-weight-ignore": lambda rng, r: (nn.NLLLoss(weight=rng.uniform(0.5, 2, 4), reduction=r),
                                         _class_input(rng, (6, 4)), _class_target(rng, (6, 4), ignore=True), {}),
    "nll-kdim": lambda rng, r: (nn.NLLLoss(reduction=r), _class_input(rng, (3, 4, 2)),
                                _class_target(rng, (3, 4, 2)), {}),
    "ce": lambda rng, r: (nn.CrossEntropyLoss(reduction=r), _class_input(rng, (5, 4)), _class_target(rng, (5, 4)), {}),
    "ce-weight-ignore": lambda rng, r: (nn.CrossEntropyLoss(weight=rng.uniform(0.5, 2, 4), reduction=r),
                                        _class_input(rng, (6, 4)), _class_target(rng, (6, 4), ignore=True), {}),
    "ce-smoothing": lambda rng, r: (nn.CrossEntropyLoss(weight=rng.uniform(0.5, 2, 4), label_smoothing=0.2,
                                                        reduction=r),
                                    _class_input(rng, (6, 4)), _class_target(rng, (6, 4), ignore=True), {}),
    "ce-kdim": lambda rng, r: (nn.CrossEntropyLoss(reduction=r), _class_input(rng, (3, 4, 2)),
                               _class_target(rng, (3, 4, 2)), {}),
    "ce-probabilities": lambda rng, r: (nn.CrossEntropyLoss(reduction=r), _class_input(rng, (5, 4)),
                                        _probabilities(rng, (5, 4)), {}),
    "ce-probabilities-smoothing-weight": lambda rng, r: (
        nn.CrossEntropyLoss(weight=rng.uniform(0.5, 2, 4), label_smoothing=0.3, reduction=r),
        _class_input(rng, (5, 4)), _probabilities(rng, (5, 4)), {}),
}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", LOSS_CASES.values(), ids=LOSS_CASES.keys())
def test_passes_on_every_loss(case, reduction, rng):
    loss, x, target, options = case(rng, reduction)
    report = gradcheck(loss, x, target, rng=rng, **options)
    assert report.passed, str(report)
    assert [e.name for e in report.entries] == ["input"]
    assert report["input"].numeric_norm > 1e-3


def test_large_tensors_are_checked_along_random_directions(rng):
    layer = nn.Linear(30, 20, rng=rng)
    report = gradcheck(layer, rng.standard_normal((7, 30)), rng=rng, full_limit=100, n_directions=12)
    assert report.passed, str(report)
    assert [(e.name, e.mode, e.checked) for e in report.entries] == [
        ("input", "projection", 12), ("weight", "projection", 12), ("bias", "full", 20)]


def test_a_gradient_that_vanishes_passes_by_atol_only(rng):
    """A bias feeding a training BatchNorm has gradient 0: both sides are rounding noise, relative error ~1."""
    model = _randomize(nn.Sequential(nn.Linear(4, 3, rng=rng), nn.BatchNorm1d(3)), rng)
    x = rng.standard_normal((6, 4))
    report = gradcheck(model, x, rng=np.random.default_rng(1))
    assert report.passed, str(report)
    assert report["0.bias"].passed_by == "atol" and report["0.bias"].rel_error > DEFAULT_TOL
    assert not gradcheck(model, x, rng=np.random.default_rng(1), atol=0.0)["0.bias"].passed


# ---- state: held fixed during the check, restored bit for bit after it ----------------------------------------------
def _fingerprint(model: nn.Module) -> dict:
    """Every bit of state, and the identity of every array, that a check could disturb."""
    return {
        "params": [(name, p.data.tobytes(), id(p.data), None if p.grad is None else p.grad.tobytes(), id(p.grad))
                   for name, p in model.named_parameters()],
        "buffers": [(name, b.dtype, b.tobytes(), id(b)) for name, b in model.named_buffers()],
        "generators": [m.rng.bit_generator.state for m in model.modules() if isinstance(m, nn.Dropout)],
        "masks": [(None if m.mask is None else m.mask.tobytes(), id(m._next_mask))
                  for m in model.modules() if isinstance(m, nn.Dropout)],
        "caches": [id(m._cache) for m in model.modules()],
        "modes": [m.training for m in model.modules()],
    }


@pytest.mark.parametrize("full_limit", [1000, 4], ids=["full", "projection"])
@pytest.mark.parametrize("grads", ["none", "accumulated"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_module_is_restored_bit_for_bit(training, grads, full_limit, rng):
    model = nn.Sequential(nn.Linear(3, 6, rng=rng), nn.BatchNorm1d(6, momentum=None), nn.ReLU(),
                          nn.Dropout(0.5, rng=np.random.default_rng(7)), nn.Linear(6, 2, rng=rng))
    x = rng.standard_normal((5, 3))
    for _ in range(2):  # history: running statistics, num_batches_tracked, accumulated grads, a last mask
        out = model(x)
        model.backward(rng.standard_normal(out.shape))
    if grads == "none":
        model.zero_grad()
    model.train(training)
    model[3].use_mask(rng.random((5, 6)) < 0.5)  # a pending injected mask must still be pending afterwards
    before = _fingerprint(model)
    x_before = x.tobytes()

    report = gradcheck(model, x, rng=rng, full_limit=full_limit)

    assert report.passed, str(report)
    assert _fingerprint(model) == before
    assert x.tobytes() == x_before


def test_the_module_is_restored_when_backward_raises(rng):
    class Broken(nn.Module):
        def forward(self, input):
            return input

        def backward(self, grad_output):
            raise ZeroDivisionError("planted")

    model = nn.Sequential(nn.BatchNorm1d(3), Broken())
    _trained(model, (4, 3), rng)
    before = _fingerprint(model)
    with pytest.raises(ZeroDivisionError, match="planted"):
        gradcheck(model, rng.standard_normal((4, 3)), rng=rng)
    assert _fingerprint(model) == before


class RecordingDropout(nn.Dropout):
    """Dropout that records the mask of every training forward."""

    def __init__(self, p, *, rng):
        super().__init__(p, rng=rng)
        self.seen: List[np.ndarray] = []

    def forward(self, input):
        out = super().forward(input)
        self.seen.append(self.mask.copy())
        return out


@pytest.mark.parametrize("source", ["drawn", "injected", "shared-generator", "torch-generator"])
def test_every_evaluation_sees_the_same_dropout_mask(source, rng):
    layer_rng = {"shared-generator": rng, "torch-generator": TorchGenerator(3)}.get(source, np.random.default_rng(3))
    torch_state = layer_rng.get_state() if source == "torch-generator" else None
    drop = RecordingDropout(0.5, rng=layer_rng)
    model = nn.Sequential(nn.Linear(3, 4, rng=np.random.default_rng(4)), drop)
    injected = np.random.default_rng(5).random((4, 4)) < 0.5
    if source == "injected":
        drop.use_mask(injected)
    report = gradcheck(model, rng.standard_normal((4, 3)), rng=rng)
    assert report.passed, str(report)
    evaluations = 1 + 2 * sum(int(np.prod(e.shape)) for e in report.entries)
    assert len(drop.seen) == evaluations
    assert all(np.array_equal(mask, drop.seen[0]) for mask in drop.seen)
    assert 0 < drop.seen[0].sum() < drop.seen[0].size
    if source == "injected":
        assert np.array_equal(drop.seen[0], injected) and drop._next_mask is injected
    if source == "torch-generator":  # rewound to where it was: the next training forward draws the first mask again
        np.testing.assert_array_equal(layer_rng.get_state(), torch_state)


# ---- planted bugs --------------------------------------------------------------------------------------------------
class Seed003Net(nn.Module):
    """Seed 003's gradient-checking network, written as the seed writes it: columns are examples,
    LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID, ``cost = 1/m sum(-Y log A3 - (1 - Y) log(1 - A3))``.

    ``backward`` is the seed's ``backward_propagation_n``; with ``buggy=True`` it keeps the assignment's two
    planted mistakes, ``dW2 = 1./m * np.dot(dZ2, A1.T) * 2`` and ``db1 = 4./m * np.sum(dZ1, axis=1, keepdims=True)``,
    which the seed's gradient check found (difference 0.285 > 2e-7). ``dX = 1/m W1^T dZ1`` is added (the seed does not
    need it) so the input is checked too.
    """

    def __init__(self, rng: np.random.Generator, buggy: bool) -> None:
        super().__init__()
        self.buggy = buggy
        for i, (fan_out, fan_in) in enumerate([(5, 4), (3, 5), (1, 3)], start=1):
            setattr(self, f"W{i}", nn.Parameter(rng.standard_normal((fan_out, fan_in))))
            setattr(self, f"b{i}", nn.Parameter(rng.standard_normal((fan_out, 1))))

    def forward(self, X, Y):
        Z1 = self.W1.data @ X + self.b1.data
        A1 = np.maximum(0, Z1)
        Z2 = self.W2.data @ A1 + self.b2.data
        A2 = np.maximum(0, Z2)
        Z3 = self.W3.data @ A2 + self.b3.data
        A3 = 1 / (1 + np.exp(-Z3))
        m = X.shape[1]
        cost = 1.0 / m * np.sum(np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y))
        self._cache = (X, Y, A1, A2, A3)
        return float(cost)

    def backward(self, grad_output=1.0):
        X, Y, A1, A2, A3 = self._saved()
        m = X.shape[1]
        dZ3 = A3 - Y
        dW3 = 1.0 / m * np.dot(dZ3, A2.T)
        db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
        dA2 = np.dot(self.W3.data.T, dZ3)
        dZ2 = np.multiply(dA2, np.int64(A2 > 0))
        dW2 = 1.0 / m * np.dot(dZ2, A1.T) * (2 if self.buggy else 1)
        db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
        dA1 = np.dot(self.W2.data.T, dZ2)
        dZ1 = np.multiply(dA1, np.int64(A1 > 0))
        dW1 = 1.0 / m * np.dot(dZ1, X.T)
        db1 = (4.0 if self.buggy else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)
        for name, grad in [("W1", dW1), ("b1", db1), ("W2", dW2), ("b2", db2), ("W3", dW3), ("b3", db3)]:
            self._accumulate(getattr(self, name), grad_output * grad)
        return grad_output / m * np.dot(self.W1.data.T, dZ1)  # the dZ are per example; the cost is a mean


@pytest.mark.parametrize("buggy, failing", [(False, set()), (True, {"W2", "b1"})], ids=["fixed", "seed-003-bugs"])
def test_seed_003_wrong_dW2_and_db1_are_caught_and_named(buggy, failing, rng):
    net = Seed003Net(rng, buggy)
    X = rng.standard_normal((4, 3))
    Y = (rng.random((1, 3)) < 0.5).astype(np.float64)
    report = gradcheck(net, X, Y, rng=rng)
    assert {e.name for e in report.failures} == failing, str(report)
    assert report.passed is (not failing)


class Seed001BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose eval forward and/or eval backward use seed 001's test-time normalisation.

    Seed 001 normalises at test time with ``(x - running_mean) / (np.sqrt(running_var) + eps)``: eps is added to
    the standard deviation, where training (and torch) add it to the variance, ``sqrt(running_var + eps)``.
    A gradient check compares a backward with its own forward, so it can only see this when the two disagree;
    a forward and a backward that both use the seed's formula are consistent (the torch parity tests catch that
    case). Here ``forward_formula`` and ``backward_formula`` pick the formula on each side ('seed' or 'torch'):
    the realistic bug is the seed's forward under the textbook backward, ``dx = dout * gamma / sqrt(var + eps)``,
    which handnn's backward computes (and the converse).
    """

    def __init__(self, num_features: int, forward_formula: str, backward_formula: str) -> None:
        super().__init__(num_features)
        self.forward_formula = forward_formula
        self.backward_formula = backward_formula

    def _std(self, formula: str) -> np.ndarray:
        if formula == "seed":
            return np.sqrt(self.running_var) + self.eps
        return np.sqrt(self.running_var + self.eps)

    def forward(self, input):
        out = super().forward(input)  # handnn's cache (its x_hat is the torch formula's)
        self._input = input
        if self.training or self.forward_formula == "torch":
            return out
        return self.weight.data * (input - self.running_mean) / self._std("seed") + self.bias.data

    def backward(self, grad_output):
        if self.training or self.backward_formula == "torch":
            return super().backward(grad_output)
        x_hat = (self._input - self.running_mean) / self._std("seed")
        self._accumulate(self.weight, np.sum(grad_output * x_hat, axis=0))
        self._accumulate(self.bias, np.sum(grad_output, axis=0))
        return grad_output * self.weight.data / self._std("seed")


@pytest.mark.parametrize("forward_formula, backward_formula, failing", [
    ("torch", "torch", set()),
    ("seed", "seed", set()),
    ("seed", "torch", {"input", "weight"}),
    ("torch", "seed", {"input", "weight"}),
], ids=["consistent-torch", "consistent-seed", "seed-forward", "seed-backward"])
def test_seed_001_eval_mode_eps_is_caught_when_forward_and_backward_disagree(
        forward_formula, backward_formula, failing, rng):
    bn = _randomize(Seed001BatchNorm(4, forward_formula, backward_formula), rng)
    # honest running statistics: a few training batches whose features have standard deviations 0.2 .. 1
    _trained(bn, (8, 4), rng)
    bn.eval()
    report = gradcheck(bn, rng.standard_normal((6, 4)), rng=rng)
    assert {e.name for e in report.failures} == failing, str(report)


class NoRescaleBackwardDropout(nn.Dropout):
    """Inverted dropout forward (``x * mask / (1 - p)``) whose backward forgets the ``1 / (1 - p)``."""

    def backward(self, grad_output):
        return grad_output * self._saved().mask


class NoRescaleForwardDropout(nn.Dropout):
    """Dropout whose forward forgets the ``1 / (1 - p)`` (``x * mask``) under handnn's inverted backward."""

    def forward(self, input):
        super().forward(input)  # draws the mask and keeps handnn's cache
        return input * self.mask


@pytest.mark.parametrize("dropout, failing", [
    (nn.Dropout, set()),
    (NoRescaleBackwardDropout, {"input", "0.weight", "0.bias"}),
    (NoRescaleForwardDropout, {"input", "0.weight", "0.bias"}),
], ids=["inverted", "backward-missing-rescale", "forward-missing-rescale"])
def test_a_missing_dropout_rescale_is_caught_upstream_of_the_dropout(dropout, failing, rng):
    model = nn.Sequential(nn.Linear(3, 5, rng=rng), dropout(0.3, rng=rng), nn.Linear(5, 2, rng=rng))
    report = gradcheck(model, rng.standard_normal((4, 3)), rng=rng)
    assert {e.name for e in report.failures} == failing, str(report)


class IgnoresUpstreamMSE(nn.MSELoss):
    """MSE whose backward ignores ``grad_output`` (as if it were always 1)."""

    def backward(self, grad_output=1.0):
        return super().backward(np.ones_like(grad_output) if isinstance(grad_output, np.ndarray) else 1.0)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_a_loss_that_ignores_its_upstream_gradient_is_caught(reduction, rng):
    x, target = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    assert gradcheck(nn.MSELoss(reduction=reduction), x, target, rng=rng).passed
    assert not gradcheck(IgnoresUpstreamMSE(reduction=reduction), x, target, rng=rng).passed


class PlantedLinear(nn.Linear):
    """Linear whose backward adds ``delta`` to one element of dL/d(input) or dL/d(weight)."""

    def __init__(self, *args, tensor: str, index: Tuple[int, ...], delta: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.planted = (tensor, index, delta)

    def backward(self, grad_output):
        dx = super().backward(grad_output)
        tensor, index, delta = self.planted
        if tensor == "input":
            dx = dx.copy()
            dx[index] += delta
        else:
            self.weight.grad[index] += delta
        return dx


@pytest.mark.parametrize("tensor, index", [("weight", (2, 1)), ("weight", (0, 3)), ("input", (3, 0))])
def test_the_report_names_the_worst_element(tensor, index, rng):
    delta = 1e-3
    layer = PlantedLinear(4, 3, rng=rng, tensor=tensor, index=index, delta=delta)
    report = gradcheck(layer, rng.standard_normal((5, 4)), rng=rng)
    entry = report[tensor]
    assert not report.passed and report.worst is entry
    assert {e.name for e in report.failures} == {tensor}
    assert entry.worst_index == index
    assert abs((entry.analytic - entry.numeric) - delta) <= DEFAULT_ATOL
    where = "[" + ", ".join(map(str, index)) + "]"
    assert f"worst '{tensor}' at {where}" in str(report).splitlines()[0]
    with pytest.raises(GradcheckError, match=rf"worst '{tensor}' at \[{index[0]}, {index[1]}\]"):
        report.raise_on_failure()


def test_a_planted_error_is_caught_by_random_projections(rng):
    layer = PlantedLinear(30, 20, rng=rng, tensor="weight", index=(7, 11), delta=1e-3)
    report = gradcheck(layer, rng.standard_normal((6, 30)), rng=rng, full_limit=100)
    assert report["weight"].mode == "projection"
    assert {e.name for e in report.failures} == {"weight"}, str(report)
    assert "direction" in str(report).splitlines()[0]


def test_raise_on_failure_returns_a_passing_report(rng):
    report = gradcheck(nn.Tanh(), rng.standard_normal((2, 3)), rng=rng)
    assert report.raise_on_failure() is report


# ---- kinks, dtypes, the caller's arrays, validation ---------------------------------------------------------------
def test_away_from_kinks_moves_inputs_off_relu_s_kink_on_a_copy(rng):
    x = rng.standard_normal((4, 5))
    x.reshape(-1)[:6] = np.array([0.0, 0.3, -0.3, 0.9, -5.0, 20.0]) * EPS  # at or within 10 eps of the kink
    before = x.tobytes()
    plain = gradcheck(nn.ReLU(), x, rng=np.random.default_rng(0))
    nudged = gradcheck(nn.ReLU(), x, rng=np.random.default_rng(0), away_from_kinks=True)
    assert not plain.passed  # at x = 0 the central difference is 1/2, the derivative 0
    assert nudged.passed, str(nudged)
    assert nudged.kinks_nudged == int(np.sum(np.abs(x) < 10 * EPS)) == 5
    assert x.tobytes() == before


def test_away_from_kinks_measures_a_loss_s_kink_from_the_target(rng):
    target = rng.standard_normal((4, 3))
    x = target + 0.4 * EPS * np.where(rng.random((4, 3)) < 0.5, -1.0, 1.0)  # |x - target| < eps everywhere
    before = x.tobytes()
    assert not gradcheck(nn.L1Loss(), x, target, rng=np.random.default_rng(0)).passed
    nudged = gradcheck(nn.L1Loss(), x, target, rng=np.random.default_rng(0), away_from_kinks=True)
    assert nudged.passed and nudged.kinks_nudged == x.size, str(nudged)
    assert x.tobytes() == before


@pytest.mark.parametrize("make", [nn.Identity, lambda: nn.Dropout(0.5).eval(), nn.Sigmoid],
                         ids=["identity", "dropout-eval", "sigmoid"])
def test_the_caller_s_input_is_never_modified(make, rng):
    """Identity and eval Dropout return their input itself: the check must perturb its own copy only."""
    x = rng.standard_normal((3, 4))
    before = x.tobytes()
    report = gradcheck(make(), x, rng=rng)
    assert report.passed, str(report)
    assert x.tobytes() == before


def test_float32_warns_and_names_each_tensor(rng):
    layer = nn.Linear(3, 2, rng=rng).float()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="float32") as record:
        gradcheck(layer, x, rng=rng)
    messages = " ".join(str(w.message) for w in record)
    assert "input" in messages and "'weight'" in messages and "'bias'" in messages


def test_float64_does_not_warn(rng, recwarn):
    gradcheck(nn.Linear(3, 2, rng=rng), rng.standard_normal((4, 3)), rng=rng)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("call, error, match", [
    (lambda rng: gradcheck(np.tanh, np.ones(3), rng=rng), TypeError, "handnn Module"),
    (lambda rng: gradcheck(nn.Tanh(), [1.0, 2.0], rng=rng), TypeError, "numpy.ndarray, not list"),
    (lambda rng: gradcheck(nn.Tanh(), np.ones(3, dtype=np.int64), rng=rng), TypeError, "int64"),
    (lambda rng: gradcheck(nn.Tanh(), np.ones(3), rng=None), TypeError, "Generator, not NoneType"),
    (lambda rng: gradcheck(nn.Tanh(), np.ones(3), rng=rng, eps=0.0), ValueError, "eps must be positive"),
    (lambda rng: gradcheck(nn.Tanh(), np.ones(3), rng=rng, n_directions=0), ValueError, "n_directions"),
    (lambda rng: gradcheck(nn.Tanh(), np.ones(3), rng=rng, tol=-1.0), ValueError, "tol=-1.0"),
    (lambda rng: gradcheck(nn.MSELoss(), np.ones(3), rng=rng), TypeError, "MSELoss is a loss and needs its target"),
], ids=["not-a-module", "list-input", "int-input", "no-rng", "eps-zero", "no-directions", "negative-tol",
        "loss-without-target"])
def test_bad_arguments_are_refused(call, error, match, rng):
    with pytest.raises(error, match=match):
        call(rng)


def test_report_lookup_of_an_unchecked_name_raises(rng):
    report = gradcheck(nn.Tanh(), np.ones((2, 2)), rng=rng)
    with pytest.raises(KeyError, match="'weight'"):
        report["weight"]
