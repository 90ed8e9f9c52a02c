"""handnn.init against torch.nn.init: same distributions (two-sample KS tests), same gains, fans and errors.

Distribution parity: torch fills a tensor from ``torch.Generator().manual_seed(seed)``, handnn the same shape from
``np.random.default_rng(seed)``; both samples (20 000 values each) go to ``reference.stats.ks_2samp``. Seeds are
fixed per test id, so every p-value is a fixed number. A case passes at p > 1e-3.

That test can fail: each ``PLANTS`` entry replays a classic mistake (fan_out for fan_in, a wrong gain, uniform for
normal, a clamp or an unweighted proposal instead of truncation, QR without the sign fix) and must be rejected at
p < 1e-6. With n = m = 20 000 the KS test resolves a CDF difference of about 0.03 at that level
(sqrt(n m / (n + m)) · D ≈ 3.0), e.g. a 15 % error in a scale.

The KS helper itself is checked first: its statistic against a brute-force ECDF comparison, its Kolmogorov tail
against published quantiles and against its own second series, and its p-values for calibration under H0.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Tuple

import numpy as np
import pytest
import torch
from torch.nn import init as tinit

from handnn import init
from reference.stats import kolmogorov_sf, ks_2samp

SHAPE = (40, 100, 5)  # 20 000 values; fan_in = 500, fan_out = 200 (different, so a swapped fan shows)
P_PASS = 1e-3
P_REJECT = 1e-6
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

TorchFill = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
HandnnFill = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def torch_sample(fill: TorchFill, shape: Tuple[int, ...], dtype, seed: int) -> np.ndarray:
    tensor = torch.empty(shape, dtype=TORCH_DTYPES[np.dtype(dtype)])
    generator = torch.Generator().manual_seed(seed)
    out = fill(tensor, generator)
    assert out is tensor
    return tensor.numpy()


def handnn_sample(fill: HandnnFill, shape: Tuple[int, ...], dtype, seed: int) -> np.ndarray:
    array = np.full(shape, np.nan, dtype=dtype)
    assert fill(array, np.random.default_rng(seed)) is array
    return array


# ------------------------------------------------------------------------------------------------ the KS helper
@pytest.mark.parametrize("a, b", [
    ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]),
    ([0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 0.0]),           # ties within and across samples
    ([3.0, 1.0, 2.0], [1.0, 2.0, 3.0]),                # same sample: D = 0, p = 1
    ([0.0, 1.0], [5.0, 6.0, 7.0]),                     # disjoint: D = 1
    (np.arange(7.0) ** 2 % 5, np.linspace(-1, 6, 11)),
])
def test_ks_statistic_is_the_largest_ecdf_gap(a, b):
    a, b = np.asarray(a), np.asarray(b)
    a_before, b_before = a.copy(), b.copy()
    points = np.concatenate([a, b])
    brute = max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in points)
    result = ks_2samp(a, b)
    assert result.statistic == pytest.approx(brute, abs=1e-15)
    effective_n = a.size * b.size / (a.size + b.size)
    assert result.pvalue == kolmogorov_sf(math.sqrt(effective_n) * brute)
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)


# Published quantiles of the Kolmogorov distribution, P(K <= x) = level (e.g. Smirnov 1948; the KS tables' "1.36/√n").
@pytest.mark.parametrize("x, level", [(0.8276, 0.50), (1.2238, 0.90), (1.3581, 0.95), (1.4802, 0.975),
                                      (1.6276, 0.99), (1.9495, 0.999)])
def test_kolmogorov_tail_at_tabulated_quantiles(x, level):
    # the tables round x to 4 decimals; K's density peaks at 1.69 (x ≈ 0.735), so the level moves by < 9e-5
    assert kolmogorov_sf(x) == pytest.approx(1 - level, abs=9e-5)


@pytest.mark.parametrize("x", [0.6, 0.8, 0.95, 1.0, 1.05, 1.2, 1.6])
def test_kolmogorov_series_agree_across_the_switch(x):
    """The two series (alternating, and the theta-transformed one used below x = 1) are the same function."""
    k = np.arange(1, 200)
    alternating = 2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k ** 2 * x * x))
    theta = 1 - math.sqrt(2 * math.pi) / x * np.sum(np.exp(-(2 * k - 1) ** 2 * math.pi ** 2 / (8 * x * x)))
    assert alternating == pytest.approx(theta, abs=1e-14)
    assert kolmogorov_sf(x) == pytest.approx(alternating, abs=1e-14)


@pytest.mark.parametrize("x", [3.0, 4.0, 6.0])
def test_kolmogorov_far_tail_keeps_relative_precision(x):
    """sf(x) = 2 e^{-2x²} (1 − e^{-6x²} + ...): the tiny p-values of the planted tests are accurate."""
    assert kolmogorov_sf(x) == pytest.approx(2 * math.exp(-2 * x * x) * (1 - math.exp(-6 * x * x)), rel=1e-12)


def test_ks_pvalues_are_calibrated_under_the_null():
    """2 000 pairs of samples from one distribution: P(p < α) ≈ α (binomial 6σ; the asymptotic p-value is
    slightly conservative at n = m = 500, which only lowers the rejection rate, by well under 6σ)."""
    rng = np.random.default_rng(12345)
    pvalues = np.array([ks_2samp(rng.normal(size=500), rng.normal(size=500)).pvalue for _ in range(2000)])
    for alpha in (0.05, 0.2, 0.5):
        assert abs(np.mean(pvalues < alpha) - alpha) < 6 * math.sqrt(alpha * (1 - alpha) / pvalues.size)


@pytest.mark.parametrize("a, b, message", [([], [1.0], "sample a is empty"),
                                           ([1.0, np.nan], [1.0], "sample a contains NaN"),
                                           ([1.0], np.zeros((2, 0)), "sample b is empty")])
def test_ks_rejects_empty_and_nan_samples(a, b, message):
    with pytest.raises(ValueError, match=message):
        ks_2samp(a, b)


# ------------------------------------------------------------------------------------------------ same distribution
def _kaiming_cases() -> Dict[str, Tuple[TorchFill, HandnnFill]]:
    cases = {}
    for a, mode, nonlinearity in [(0, "fan_in", "leaky_relu"), (0, "fan_out", "relu"), (0.2, "fan_in", "leaky_relu"),
                                  (math.sqrt(5), "fan_in", "leaky_relu"), (0, "FAN_OUT", "tanh"),
                                  (0.5, "fan_out", "selu")]:
        for kind in ("uniform", "normal"):
            name = f"kaiming_{kind}_"
            cases[f"{name}(a={a:.3g}, {mode}, {nonlinearity})"] = (
                lambda t, g, f=getattr(tinit, name), a=a, m=mode, n=nonlinearity: f(t, a, m, n, generator=g),
                lambda w, r, f=getattr(init, name), a=a, m=mode, n=nonlinearity: f(w, a, m, n, rng=r))
    return cases


def _trunc_cases() -> Dict[str, Tuple[TorchFill, HandnnFill]]:
    # P([a, b]) > 0.3: torch redraws from the normal; <= 0.3: uniform proposals with acceptance
    return {f"trunc_normal_({mean}, {std}, {a}, {b})": (
        lambda t, g, p=(mean, std, a, b): tinit.trunc_normal_(t, *p, generator=g),
        lambda w, r, p=(mean, std, a, b): init.trunc_normal_(w, *p, rng=r))
        for mean, std, a, b in [(0.0, 1.0, -2.0, 2.0), (1.0, 2.0, -1.0, 4.0), (0.0, 1.0, 1.0, 3.0),
                                (-1.0, 1.0, -0.5, 0.5), (0.0, 0.02, -0.01, 0.01)]}


CASES: Dict[str, Tuple[TorchFill, HandnnFill]] = {
    "uniform_()": (lambda t, g: tinit.uniform_(t, generator=g), lambda w, r: init.uniform_(w, rng=r)),
    "uniform_(-3, 5)": (lambda t, g: tinit.uniform_(t, -3.0, 5.0, generator=g),
                        lambda w, r: init.uniform_(w, -3.0, 5.0, rng=r)),
    "normal_()": (lambda t, g: tinit.normal_(t, generator=g), lambda w, r: init.normal_(w, rng=r)),
    "normal_(1.5, 0.7)": (lambda t, g: tinit.normal_(t, 1.5, 0.7, generator=g),
                          lambda w, r: init.normal_(w, 1.5, 0.7, rng=r)),
    "xavier_uniform_()": (lambda t, g: tinit.xavier_uniform_(t, generator=g),
                          lambda w, r: init.xavier_uniform_(w, rng=r)),
    "xavier_uniform_(gain=tanh)": (lambda t, g: tinit.xavier_uniform_(t, tinit.calculate_gain("tanh"), generator=g),
                                   lambda w, r: init.xavier_uniform_(w, init.calculate_gain("tanh"), rng=r)),
    "xavier_normal_()": (lambda t, g: tinit.xavier_normal_(t, generator=g),
                         lambda w, r: init.xavier_normal_(w, rng=r)),
    "xavier_normal_(gain=0.5)": (lambda t, g: tinit.xavier_normal_(t, 0.5, generator=g),
                                 lambda w, r: init.xavier_normal_(w, 0.5, rng=r)),
    **_kaiming_cases(),
    **_trunc_cases(),
}


@pytest.mark.parametrize("name", CASES)
def test_same_distribution_as_torch(name, dtype, seed):
    torch_fill, handnn_fill = CASES[name]
    theirs = torch_sample(torch_fill, SHAPE, dtype, seed)
    ours = handnn_sample(handnn_fill, SHAPE, dtype, seed)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    result = ks_2samp(ours, theirs)
    assert result.pvalue > P_PASS, f"{name}: KS D = {result.statistic:.4g}, p = {result.pvalue:.3g}"


# orthogonal_: entries of one matrix are dependent (fixed row norms), so the pooled test is only a marginal check;
# the corner Q[0, 0] over independent draws checks the Haar distribution (the sign fix).
ORTHOGONAL_SHAPES = [(100, 200), (200, 100), (20, 10, 10, 10)]


@pytest.mark.parametrize("shape", ORTHOGONAL_SHAPES, ids=str)
@pytest.mark.parametrize("gain", [1, 2.0])
def test_orthogonal_entries_distributed_as_torch(shape, gain, dtype, seed):
    theirs = torch_sample(lambda t, g: tinit.orthogonal_(t, gain, generator=g), shape, dtype, seed)
    ours = handnn_sample(lambda w, r: init.orthogonal_(w, gain, rng=r), shape, dtype, seed)
    assert ours.dtype == theirs.dtype
    assert ks_2samp(ours, theirs).pvalue > P_PASS


def _corners(fill: Callable, module_empty: Callable, shape, draws: int) -> np.ndarray:
    return np.array([float(fill(module_empty(shape))[0, 0]) for _ in range(draws)])


def _torch_corners(shape, seed, draws=1500) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return _corners(lambda t: tinit.orthogonal_(t, generator=generator), torch.empty, shape, draws)


def _qr_without_sign_fix(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The planted bug: orthogonal_ without Q·sign(diag R)."""
    rows = w.shape[0]
    flat = rng.normal(size=(rows, w.size // rows))
    q = np.linalg.qr(flat.T if rows < flat.shape[1] else flat)[0]
    w[...] = (q.T if rows < flat.shape[1] else q).reshape(w.shape)
    return w


@pytest.mark.parametrize("shape", [(6, 6), (6, 4), (4, 6)], ids=str)
def test_orthogonal_corner_distributed_as_torch_and_the_sign_fix_matters(shape, seed):
    theirs = _torch_corners(shape, seed)
    rng = np.random.default_rng(seed)
    ours = _corners(lambda w: init.orthogonal_(w, rng=rng), np.empty, shape, theirs.size)
    assert ks_2samp(ours, theirs).pvalue > P_PASS
    rng = np.random.default_rng(seed)
    planted = _corners(lambda w: _qr_without_sign_fix(w, rng), np.empty, shape, theirs.size)
    assert ks_2samp(planted, theirs).pvalue < P_REJECT


# ------------------------------------------------------------------------------------------------ planted mistakes
PLANTS: Dict[str, Tuple[TorchFill, HandnnFill]] = {
    "kaiming_uniform_ with fan_out for fan_in": (
        lambda t, g: tinit.kaiming_uniform_(t, generator=g),
        lambda w, r: init.kaiming_uniform_(w, mode="fan_out", rng=r)),
    "kaiming_normal_ with fan_in for fan_out": (
        lambda t, g: tinit.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g),
        lambda w, r: init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", rng=r)),
    "kaiming_uniform_ with tanh's gain for relu's": (
        lambda t, g: tinit.kaiming_uniform_(t, nonlinearity="relu", generator=g),
        lambda w, r: init.kaiming_uniform_(w, nonlinearity="tanh", rng=r)),
    "kaiming_uniform_ for kaiming_normal_ (same variance)": (
        lambda t, g: tinit.kaiming_normal_(t, generator=g),
        lambda w, r: init.kaiming_uniform_(w, rng=r)),
    "xavier_uniform_ with gain 1.2 for 1": (
        lambda t, g: tinit.xavier_uniform_(t, generator=g),
        lambda w, r: init.xavier_uniform_(w, 1.2, rng=r)),
    "xavier_normal_ with gain 1.2 for 1": (
        lambda t, g: tinit.xavier_normal_(t, generator=g),
        lambda w, r: init.xavier_normal_(w, 1.2, rng=r)),
    "trunc_normal_ as a clamped normal": (
        lambda t, g: tinit.trunc_normal_(t, 0.0, 1.0, -1.0, 1.0, generator=g),
        lambda w, r: np.clip(init.normal_(w, rng=r), -1.0, 1.0, out=w)),
    "trunc_normal_ accepting every uniform proposal": (
        lambda t, g: tinit.trunc_normal_(t, 0.0, 1.0, 1.0, 3.0, generator=g),
        lambda w, r: init.uniform_(w, 1.0, 3.0, rng=r)),
}


@pytest.mark.parametrize("name", PLANTS)
def test_ks_rejects_a_planted_mistake(name, seed):
    torch_fill, wrong_fill = PLANTS[name]
    theirs = torch_sample(torch_fill, SHAPE, np.float64, seed)
    planted = handnn_sample(wrong_fill, SHAPE, np.float64, seed)
    result = ks_2samp(planted, theirs)
    assert result.pvalue < P_REJECT, f"{name} not detected: D = {result.statistic:.4g}, p = {result.pvalue:.3g}"


# ------------------------------------------------------------------------------------------------ gains, fans, errors
GAIN_ARGS = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
             ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
             ("relu", None), ("selu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3),
             ("leaky_relu", np.float64(0.1)), ("relu", "anything")]


@pytest.mark.parametrize("nonlinearity, param", GAIN_ARGS)
def test_calculate_gain_equals_torch(nonlinearity, param):
    ours = init.calculate_gain(nonlinearity, param)
    theirs = tinit.calculate_gain(nonlinearity, param)
    assert ours == theirs and type(ours) is type(theirs)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 7), (6, 2, 3, 5), (2, 3, 4, 5, 6), (3, 0, 2)], ids=str)
def test_fans_equal_torch(shape):
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == tinit._calculate_fan_in_and_fan_out(
        torch.empty(shape))
    for mode in ("fan_in", "fan_out", "Fan_Out"):
        assert init._calculate_correct_fan(np.empty(shape), mode) == tinit._calculate_correct_fan(
            torch.empty(shape), mode)


# Each call gets (module, empty) with empty = np.empty or torch.empty, so the two sides run the same call.
ERROR_CALLS = {
    "calculate_gain unsupported": lambda m, e: m.calculate_gain("softmax"),
    "calculate_gain bool slope": lambda m, e: m.calculate_gain("leaky_relu", True),
    "calculate_gain str slope": lambda m, e: m.calculate_gain("leaky_relu", "0.1"),
    "fans of 1-d": lambda m, e: m.xavier_uniform_(e((5,))),
    "fans of 0-d": lambda m, e: m.xavier_normal_(e(())),
    "kaiming 1-d": lambda m, e: m.kaiming_normal_(e((5,))),
    "kaiming bad mode": lambda m, e: m.kaiming_uniform_(e((3, 4)), mode="fan_avg"),
    "kaiming bad nonlinearity": lambda m, e: m.kaiming_normal_(e((3, 4)), nonlinearity="softmax"),
    "kaiming bool slope": lambda m, e: m.kaiming_uniform_(e((3, 4)), a=True),
    "kaiming non-str mode": lambda m, e: m.kaiming_uniform_(e((3, 4)), mode=3),
    "xavier 0 x 0": lambda m, e: m.xavier_uniform_(e((0, 0))),
    "xavier negative gain (uniform)": lambda m, e: m.xavier_uniform_(e((3, 4)), gain=-1),
    "xavier negative gain (normal)": lambda m, e: m.xavier_normal_(e((3, 4)), gain=-1),
    "uniform from > to": lambda m, e: m.uniform_(e((3,)), 1, 0),
    "uniform from > to (float)": lambda m, e: m.uniform_(e((3,)), 0.123456789, 0.1),
    "uniform infinite to": lambda m, e: m.uniform_(e((3,)), 0, math.inf),
    "uniform NaN from": lambda m, e: m.uniform_(e((3,)), math.nan, 1),
    "uniform range overflow": lambda m, e: m.uniform_(e((3,)), -1e308, 1e308),
    "normal negative std": lambda m, e: m.normal_(e((3,)), 0, -0.1234567891),
    "normal NaN std": lambda m, e: m.normal_(e((3,)), 0, math.nan),
    "trunc_normal std 0": lambda m, e: m.trunc_normal_(e((3,)), std=0.0),
    "trunc_normal a > b": lambda m, e: m.trunc_normal_(e((3,)), a=2.0, b=-2.0),
    "orthogonal 1-d": lambda m, e: m.orthogonal_(e((4,))),
}


def _empty(module, dtype=np.float64):
    """An uninitialised-array factory on one side: np.empty for handnn, torch.empty for torch."""
    if module is init:
        return lambda shape: np.empty(shape, dtype=dtype)
    return lambda shape: torch.empty(shape, dtype=TORCH_DTYPES[np.dtype(dtype)])


def _outcome(call, module, dtype=np.float64):
    try:
        call(module, _empty(module, dtype))
    except Exception as error:  # noqa: BLE001 -- the exception is the outcome under comparison
        return type(error), str(error)
    return None, None


@pytest.mark.parametrize("name", ERROR_CALLS)
def test_errors_equal_torch(name):
    theirs = _outcome(ERROR_CALLS[name], tinit)
    assert theirs[0] is not None, "torch raised nothing: the case is mis-specified"
    assert _outcome(ERROR_CALLS[name], init) == theirs


FLOAT32_ERROR_CALLS = {
    "from below float32's range": lambda m, e: m.uniform_(e((3, 4)), -1e39, 0),
    "to - from above float32's max": lambda m, e: m.uniform_(e((3, 4)), -3e38, 3e38),
    "xavier negative gain": lambda m, e: m.xavier_normal_(e((3, 4)), gain=-0.3),
}


@pytest.mark.parametrize("name", FLOAT32_ERROR_CALLS)
def test_float32_errors_equal_torch(name):
    theirs = _outcome(FLOAT32_ERROR_CALLS[name], tinit, np.float32)
    assert theirs[0] is RuntimeError
    assert _outcome(FLOAT32_ERROR_CALLS[name], init, np.float32) == theirs


@pytest.mark.parametrize("fill", ["uniform_", "normal_", "kaiming_uniform_", "orthogonal_"])
def test_integer_arrays_raise_torchs_class(fill):
    with pytest.raises(NotImplementedError):
        getattr(tinit, fill)(torch.empty((3, 4), dtype=torch.int64))
    with pytest.raises(NotImplementedError, match="expected a float32 or float64 array, but got int64"):
        getattr(init, fill)(np.empty((3, 4), dtype=np.int64))


WARNING_CALLS = {
    "kaiming_uniform_ on (0,)": lambda m, e: m.kaiming_uniform_(e((0,))),
    "kaiming_normal_ on (4, 0, 2)": lambda m, e: m.kaiming_normal_(e((4, 0, 2))),
    "trunc_normal_ with a far mean": lambda m, e: m.trunc_normal_(e((10,)), 0.0, 0.5, 1.5, 2.5),
}


@pytest.mark.parametrize("name", WARNING_CALLS)
def test_warnings_equal_torch(name):
    def record(module):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            WARNING_CALLS[name](module, _empty(module))
        return [(w.category, str(w.message)) for w in caught]

    theirs = record(tinit)
    assert len(theirs) == 1
    assert record(init) == theirs


@pytest.mark.parametrize("fill", ["xavier_uniform_", "xavier_normal_", "orthogonal_", "uniform_", "normal_",
                                  "trunc_normal_", "zeros_"])
@pytest.mark.parametrize("shape", [(0, 4), (0, 3), (2, 0, 3)], ids=str)
def test_zero_element_fills_are_silent_no_ops_like_torch(fill, shape):
    """Only kaiming_* warn on empty tensors; the others (xavier_* with one zero fan) do nothing, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(tinit, fill)(torch.empty(shape, dtype=torch.float64)).shape == shape
        assert getattr(init, fill)(np.empty(shape)).shape == shape
