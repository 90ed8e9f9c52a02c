"""handnn.init without torch: gains and fans from the documented formulas, exact bounds, moments, orthogonality,
truncation, in-place semantics, dtype, determinism, errors, and the single random-draw dispatch point.

Statistical checks use one rule: an estimate must lie within 6 standard errors of the formula's value
(two-sided probability of a false alarm ≈ 2e-9 per check; the seeds are fixed, so the outcome is deterministic).
Standard errors: mean σ/√n; variance σ²·√((κ − 1)/n) with κ the kurtosis (3 normal, 9/5 uniform), or estimated
from the sample's fourth moment where κ has no simple form (truncated normal).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from handnn import _random, init
from handnn.nn import Parameter

Z = 6.0  # standard errors allowed
SHAPE = (40, 30, 30)  # 36 000 elements; fan_in = 900, fan_out = 1200
FAN_IN, FAN_OUT = 30 * 30, 40 * 30


def gain_formula(nonlinearity: str, param=None) -> float:
    """torch's documented gain table, written out independently of handnn."""
    table = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
             "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5 / 3,
             "relu": math.sqrt(2), "selu": 3 / 4}
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2 / (1 + slope * slope))
    return table[nonlinearity]


# ------------------------------------------------------------------------------------------------ calculate_gain
@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
    ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("selu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 1), ("leaky_relu", np.float64(0.3)),
    ("relu", "ignored"),
])
def test_calculate_gain_is_the_documented_table(nonlinearity, param):
    slope = param if nonlinearity == "leaky_relu" else None  # the others ignore param
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(gain_formula(nonlinearity, slope), rel=1e-15)


@pytest.mark.parametrize("nonlinearity, param, message", [
    ("softmax", None, "Unsupported nonlinearity softmax"),
    ("ReLU", None, "Unsupported nonlinearity ReLU"),
    ("leaky_relu", True, "negative_slope True not a valid number"),
    ("leaky_relu", "0.1", "negative_slope 0.1 not a valid number"),
    ("leaky_relu", np.float32(0.5), "negative_slope 0.5 not a valid number"),
])
def test_calculate_gain_errors(nonlinearity, param, message):
    with pytest.raises(ValueError) as info:
        init.calculate_gain(nonlinearity, param)
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------------ fans
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 7), (6, 2, 3, 5), (2, 3, 4, 5, 6), (1, 1), (3, 0, 2)], ids=str)
def test_fans_are_size1_and_size0_times_the_receptive_field(shape):
    receptive = int(np.prod(shape[2:]))
    expected = (shape[1] * receptive, shape[0] * receptive)
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == expected
    assert init._calculate_fan_in_and_fan_out(Parameter(np.empty(shape))) == expected
    assert init._calculate_correct_fan(np.empty(shape), "fan_in") == expected[0]
    assert init._calculate_correct_fan(np.empty(shape), "FAN_OUT") == expected[1]  # torch lower-cases the mode


@pytest.mark.parametrize("shape", [(), (7,)], ids=str)
def test_fans_need_two_dimensions(shape):
    with pytest.raises(ValueError, match="^Fan in and fan out can not be computed for tensor with fewer than "
                                         "2 dimensions$"):
        init._calculate_fan_in_and_fan_out(np.empty(shape))


def test_bad_mode_message():
    with pytest.raises(ValueError) as info:
        init._calculate_correct_fan(np.empty((3, 4)), "Fan_Avg")
    assert str(info.value) == "Mode fan_avg not supported, please use one of ['fan_in', 'fan_out']"


# ------------------------------------------------------------------------------------------------ distributions
def _kaiming_std(a, mode, nonlinearity):
    fan = FAN_IN if mode.lower() == "fan_in" else FAN_OUT
    return gain_formula(nonlinearity, a if nonlinearity == "leaky_relu" else None) / math.sqrt(fan)


def _uniform(low, high):
    return {"mean": (low + high) / 2, "std": (high - low) / math.sqrt(12), "kurtosis": 9 / 5, "bounds": (low, high)}


def _normal(mean, std):
    return {"mean": mean, "std": std, "kurtosis": 3.0, "bounds": None}


_XAVIER_STD = math.sqrt(2 / (FAN_IN + FAN_OUT))
DISTRIBUTIONS = {
    "uniform_(-3, 5)": (lambda w, r: init.uniform_(w, -3.0, 5.0, rng=r), _uniform(-3.0, 5.0)),
    "uniform_()": (lambda w, r: init.uniform_(w, rng=r), _uniform(0.0, 1.0)),
    "normal_(1.5, 0.7)": (lambda w, r: init.normal_(w, 1.5, 0.7, rng=r), _normal(1.5, 0.7)),
    "normal_()": (lambda w, r: init.normal_(w, rng=r), _normal(0.0, 1.0)),
    "xavier_uniform_()": (lambda w, r: init.xavier_uniform_(w, rng=r),
                          _uniform(-math.sqrt(6 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT)))),
    "xavier_uniform_(gain=5/3)": (lambda w, r: init.xavier_uniform_(w, gain=5 / 3, rng=r),
                                  _uniform(-5 / 3 * math.sqrt(6 / (FAN_IN + FAN_OUT)),
                                           5 / 3 * math.sqrt(6 / (FAN_IN + FAN_OUT)))),
    "xavier_normal_()": (lambda w, r: init.xavier_normal_(w, rng=r), _normal(0.0, _XAVIER_STD)),
    "xavier_normal_(gain=3)": (lambda w, r: init.xavier_normal_(w, 3.0, rng=r), _normal(0.0, 3 * _XAVIER_STD)),
}
KAIMING_OPTIONS = [(0, "fan_in", "leaky_relu"), (0, "fan_out", "relu"), (0.2, "fan_in", "leaky_relu"),
                   (math.sqrt(5), "fan_in", "leaky_relu"), (0, "fan_out", "tanh"), (0.3, "FAN_OUT", "leaky_relu")]
for _a, _mode, _nl in KAIMING_OPTIONS:
    _std = _kaiming_std(_a, _mode, _nl)
    DISTRIBUTIONS[f"kaiming_uniform_({_a:.3g}, {_mode}, {_nl})"] = (
        lambda w, r, a=_a, m=_mode, n=_nl: init.kaiming_uniform_(w, a, m, n, rng=r),
        _uniform(-math.sqrt(3) * _std, math.sqrt(3) * _std))
    DISTRIBUTIONS[f"kaiming_normal_({_a:.3g}, {_mode}, {_nl})"] = (
        lambda w, r, a=_a, m=_mode, n=_nl: init.kaiming_normal_(w, a, m, n, rng=r), _normal(0.0, _std))


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_moments_and_bounds_match_the_formula(name, dtype, rng):
    fill, expected = DISTRIBUTIONS[name]
    w = fill(np.full(SHAPE, np.nan, dtype=dtype), rng)
    assert w.dtype == dtype and np.isfinite(w).all()
    x = w.astype(np.float64).ravel()
    n, sigma = x.size, expected["std"]
    assert abs(x.mean() - expected["mean"]) < Z * sigma / math.sqrt(n)
    assert abs(x.var() - sigma ** 2) < Z * sigma ** 2 * math.sqrt((expected["kurtosis"] - 1) / n)
    if expected["bounds"] is not None:
        low, high = expected["bounds"]
        slack = 4 * np.finfo(dtype).eps * max(abs(low), abs(high))  # float32 rounding of draws and bound
        assert x.min() >= low - slack and x.max() <= high + slack
        # the range is used to its ends: P(no draw in the outer 0.25 % at one end) = 0.9975^36000 ≈ 1e-39
        edge = 0.0025 * (high - low)
        assert x.min() < low + edge and x.max() > high - edge


@pytest.mark.parametrize("dtype_, width", [(np.float32, 2.0 ** -20), (np.float64, 2.0 ** -50)])
def test_uniform_is_half_open_even_when_rounding_reaches_b(dtype_, width, rng):
    """A range 8 (float32) or 4 (float64) ulps wide: rounding lands on b often; torch maps those draws to a."""
    a, b = 1.0, 1.0 + width
    w = init.uniform_(np.empty(20000, dtype=dtype_), a, b, rng=rng)
    assert w.min() == a and w.max() < b
    ulps = np.round((w.astype(np.float64) - a) / np.spacing(dtype_(1.0))).astype(int)
    counts = np.bincount(ulps, minlength=int(width / np.spacing(dtype_(1.0))))
    # rounding gives a and b half a cell each; mapping b to a makes every value equally likely (without it, a
    # would get half the others' count: ~1250 of 2500 in float32, far outside the 0.75 threshold either way)
    assert counts[0] > 0.75 * counts[1:].mean()


def test_linear_default_is_uniform_within_one_over_sqrt_fan_in(rng):
    """nn.Linear's weight init, kaiming_uniform_(a=sqrt(5)), is U(±1/sqrt(in_features))."""
    w = init.kaiming_uniform_(np.empty((500, 64)), a=math.sqrt(5), rng=rng)
    bound = 1 / math.sqrt(64)
    assert np.abs(w).max() <= bound * (1 + 1e-15)
    assert np.abs(w).max() > 0.999 * bound


# ------------------------------------------------------------------------------------------------ trunc_normal_
def _truncated_normal_moments(mean, std, a, b):
    """Mean and variance of N(mean, std²) truncated to [a, b] (standard closed forms)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    mass = cdf(beta) - cdf(alpha)
    shift = (pdf(alpha) - pdf(beta)) / mass
    variance = std ** 2 * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / mass - shift ** 2)
    return mean + std * shift, variance


TRUNC_CASES = [  # P([a, b]) > 0.3 uses normal rejection, <= 0.3 uniform proposals (torch's two branches)
    pytest.param(0.0, 1.0, -2.0, 2.0, id="default-rejection"),
    pytest.param(1.0, 2.0, -1.0, 4.0, id="shifted-rejection"),
    pytest.param(0.0, 1.0, 1.0, 3.0, id="one-sided-uniform-proposals"),
    pytest.param(-1.0, 1.0, -0.5, 0.5, id="mean-outside-uniform-proposals"),
    pytest.param(0.0, 0.02, -0.01, 0.01, id="narrow-rejection"),
]


@pytest.mark.parametrize("mean, std, a, b", TRUNC_CASES)
def test_trunc_normal_within_bounds_with_the_truncated_moments(mean, std, a, b, dtype, rng):
    w = init.trunc_normal_(np.full(SHAPE, np.nan, dtype=dtype), mean, std, a, b, rng=rng)
    assert w.dtype == dtype
    assert w.min() >= dtype.type(a) and w.max() <= dtype.type(b)
    x = w.astype(np.float64).ravel()
    expected_mean, expected_var = _truncated_normal_moments(mean, std, a, b)
    n = x.size
    assert abs(x.mean() - expected_mean) < Z * math.sqrt(expected_var / n)
    fourth = np.mean((x - x.mean()) ** 4)
    assert abs(x.var() - expected_var) < Z * math.sqrt((fourth - x.var() ** 2) / n)


def test_trunc_normal_warns_when_mean_is_far_from_the_interval(rng):
    with pytest.warns(UserWarning, match=r"^mean is more than 2 std from \[a, b\] in nn.init.trunc_normal_. "
                                         r"The distribution of values may be incorrect.$"):
        w = init.trunc_normal_(np.empty(1000), 0.0, 0.5, 1.5, 2.5, rng=rng)
    assert w.min() >= 1.5 and w.max() <= 2.5


# ------------------------------------------------------------------------------------------------ orthogonal_
@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (5, 5), (6, 4, 3), (12, 2, 3), (1, 7), (7, 1)], ids=str)
@pytest.mark.parametrize("gain", [1, 2.5])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain, dtype, rng):
    w = init.orthogonal_(np.empty(shape, dtype=dtype), gain, rng=rng)
    assert w.shape == shape and w.dtype == dtype
    flat = w.reshape(shape[0], -1).astype(np.float64)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    tol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(gram.shape[0]), rtol=0, atol=tol * gain ** 2 * 10)


def test_orthogonal_is_haar_thanks_to_the_sign_fix():
    """Without Q·sign(diag R), Householder QR gives Q[0, 0] < 0 always; Haar Q has E[Q00] = 0, Var = 1/n."""
    rng = np.random.default_rng(2024)
    corner = np.array([init.orthogonal_(np.empty((5, 5)), rng=rng)[0, 0] for _ in range(400)])
    assert abs(corner.mean()) < Z * math.sqrt(1 / 5 / corner.size)
    assert abs(np.mean(corner > 0) - 0.5) < Z * math.sqrt(0.25 / corner.size)


def test_orthogonal_errors_and_empty(rng):
    with pytest.raises(ValueError, match="^Only tensors with 2 or more dimensions are supported$"):
        init.orthogonal_(np.empty(4), rng=rng)
    empty = np.empty((0, 3))
    assert init.orthogonal_(empty, rng=rng) is empty


# ------------------------------------------------------------------------------------------------ in place
RANDOM_FILLS = {
    "uniform_": lambda w, r: init.uniform_(w, -1.0, 2.0, rng=r),
    "normal_": lambda w, r: init.normal_(w, 0.5, 2.0, rng=r),
    "trunc_normal_": lambda w, r: init.trunc_normal_(w, rng=r),
    "trunc_normal_(uniform proposals)": lambda w, r: init.trunc_normal_(w, 0.0, 1.0, 1.0, 3.0, rng=r),
    "xavier_uniform_": lambda w, r: init.xavier_uniform_(w, rng=r),
    "xavier_normal_": lambda w, r: init.xavier_normal_(w, rng=r),
    "kaiming_uniform_": lambda w, r: init.kaiming_uniform_(w, rng=r),
    "kaiming_normal_": lambda w, r: init.kaiming_normal_(w, rng=r),
    "orthogonal_": lambda w, r: init.orthogonal_(w, rng=r),
}
CONSTANT_FILLS = {
    "constant_": (lambda w, r: init.constant_(w, 0.25), 0.25),
    "zeros_": (lambda w, r: init.zeros_(w), 0.0),
    "ones_": (lambda w, r: init.ones_(w), 1.0),
}
ALL_FILLS = {**RANDOM_FILLS, **{k: v[0] for k, v in CONSTANT_FILLS.items()}}


@pytest.mark.parametrize("name", ALL_FILLS)
def test_fills_a_parameter_in_place_and_returns_it(name, dtype, rng):
    data = np.full((6, 4, 5), np.nan, dtype=dtype)
    param = Parameter(data)
    assert ALL_FILLS[name](param, rng) is param
    assert param.data is data and data.dtype == dtype and data.shape == (6, 4, 5)
    assert np.isfinite(data).all()
    if name in CONSTANT_FILLS:
        np.testing.assert_array_equal(data, np.full_like(data, CONSTANT_FILLS[name][1]))
    else:
        assert np.unique(data).size == data.size  # 120 distinct random values


@pytest.mark.parametrize("name", ALL_FILLS)
def test_fills_an_array_in_place_and_only_the_viewed_elements(name, dtype, rng):
    base = np.full((9, 12), -7.0, dtype=dtype)
    view = base[1:7, 2:10:2]  # non-contiguous (6, 4)
    assert ALL_FILLS[name](view, rng) is view
    outside = np.ones(base.shape, dtype=bool)
    outside[1:7, 2:10:2] = False
    assert (base[outside] == -7.0).all()
    assert not (view == -7.0).any()


def test_transposed_view_uses_the_transposed_fans(rng):
    """A CS231n weight (D_in, D_out) = (100, 10) initialised through its transpose gets fan_in = 100."""
    w = np.zeros((100, 10))
    init.kaiming_uniform_(w.T, nonlinearity="relu", rng=rng)
    bound = math.sqrt(3) * math.sqrt(2) / math.sqrt(100)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


@pytest.mark.parametrize("name", RANDOM_FILLS)
def test_same_seed_same_values_other_seed_other_values(name, seed):
    fill = RANDOM_FILLS[name]
    first = fill(np.empty((8, 6)), np.random.default_rng(seed))
    again = fill(np.empty((8, 6)), np.random.default_rng(seed))
    other = fill(np.empty((8, 6)), np.random.default_rng(seed + 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", RANDOM_FILLS)
def test_float32_holds_the_float64_draws_rounded(name, seed):
    """Draws are made in float64 and rounded once (orthogonal_: from the rounded normals, so ~1 ulp)."""
    w64 = RANDOM_FILLS[name](np.empty((8, 6)), np.random.default_rng(seed))
    w32 = RANDOM_FILLS[name](np.empty((8, 6), dtype=np.float32), np.random.default_rng(seed))
    assert w32.dtype == np.float32
    np.testing.assert_allclose(w32, w64, rtol=4e-7 if name != "orthogonal_" else 1e-5, atol=1e-6)


@pytest.mark.parametrize("name", RANDOM_FILLS)
def test_rng_none_is_fresh_entropy_never_the_global_state(name):
    state = np.random.get_state()
    first = RANDOM_FILLS[name](np.empty((8, 6)), None)
    second = RANDOM_FILLS[name](np.empty((8, 6)), None)
    assert not np.array_equal(first, second)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


@pytest.mark.parametrize("bad", [0, np.random.RandomState(0), "seed"], ids=["int", "RandomState", "str"])
def test_rng_must_be_a_generator(bad):
    with pytest.raises(TypeError, match=f"^rng must be a numpy.random.Generator \\(or None\\), not "
                                        f"{type(bad).__name__}$"):
        init.normal_(np.empty(3), rng=bad)


class RecordingGenerator:
    """A torch-style generator: fills ``out`` in place and records each call."""

    def __init__(self) -> None:
        self.calls = []

    def uniform_(self, out, low, high):
        self.calls.append(("uniform_", out.shape, out.dtype, low, high))
        out[...] = np.linspace(low, high, out.size, endpoint=False).reshape(out.shape)

    def normal_(self, out, mean, std):
        self.calls.append(("normal_", out.shape, out.dtype, mean, std))
        out[...] = mean + std * np.linspace(-1, 1, out.size).reshape(out.shape)


def test_torch_style_generators_are_dispatched_in_one_place(dtype):
    gen = RecordingGenerator()
    w = init.kaiming_uniform_(np.empty((3, 4), dtype=dtype), a=math.sqrt(5), rng=gen)
    (op, shape, out_dtype, low, high), = gen.calls
    assert (op, shape, out_dtype) == ("uniform_", (3, 4), dtype)
    assert -low == high == pytest.approx(1 / math.sqrt(4), rel=1e-15)  # Linear's bound, 1/sqrt(fan_in)
    np.testing.assert_array_equal(w.ravel(), np.linspace(low, high, 12, endpoint=False).astype(dtype))
    init.normal_(np.empty((2, 3), dtype=dtype), 1.0, 3.0, rng=gen)
    init.orthogonal_(np.empty((2, 5), dtype=dtype), rng=gen)
    assert gen.calls[1:] == [("normal_", (2, 3), dtype, 1.0, 3.0), ("normal_", (2, 5), dtype, 0.0, 1.0)]


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("call, error, message", [
    (lambda: init.uniform_(np.empty(3), 1, 0), RuntimeError,
     "uniform_ expects to return a [from, to) range, but found from=1 > to=0"),
    (lambda: init.uniform_(np.empty(3), 0.123456789, 0.1), RuntimeError,
     "uniform_ expects to return a [from, to) range, but found from=0.123457 > to=0.1"),
    (lambda: init.uniform_(np.empty(3), 0, math.inf), RuntimeError, "to is out of bounds for double"),
    (lambda: init.uniform_(np.empty(3, np.float32), -1e39, 0), RuntimeError, "from is out of bounds for float"),
    (lambda: init.uniform_(np.empty(3), math.nan, 1), RuntimeError, "from is out of bounds for double"),
    (lambda: init.uniform_(np.empty(3, np.float32), -3e38, 3e38), RuntimeError,
     "uniform_ expects to-from <= std::numeric_limits<Float>::max(), but found to=3e+38 and from=-3e+38 which "
     "result in to-from to exceed the limit"),
    (lambda: init.normal_(np.empty(3), 0, -0.1234567891), RuntimeError,
     "normal expects std >= 0.0, but found std -0.123457"),
    (lambda: init.normal_(np.empty(3), 0, math.nan), RuntimeError, "normal expects std >= 0.0, but found std nan"),
    (lambda: init.xavier_uniform_(np.empty((3, 4)), gain=-1), RuntimeError,
     "uniform_ expects to return a [from, to) range, but found from=0.92582 > to=-0.92582"),
    (lambda: init.xavier_normal_(np.empty((3, 4)), gain=-1), RuntimeError,
     "normal expects std >= 0.0, but found std -0.534522"),
    (lambda: init.xavier_uniform_(np.empty((0, 0))), ZeroDivisionError, "float division by zero"),
    (lambda: init.xavier_normal_(np.empty(5)), ValueError,
     "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"),
    (lambda: init.kaiming_uniform_(np.empty(5)), ValueError,
     "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"),
    (lambda: init.kaiming_normal_(np.empty((3, 4)), mode="fan_avg"), ValueError,
     "Mode fan_avg not supported, please use one of ['fan_in', 'fan_out']"),
    (lambda: init.kaiming_uniform_(np.empty((3, 4)), nonlinearity="softmax"), ValueError,
     "Unsupported nonlinearity softmax"),
    (lambda: init.kaiming_normal_(np.empty((3, 4)), a=True), ValueError, "negative_slope True not a valid number"),
    (lambda: init.trunc_normal_(np.empty(3), std=0.0), ZeroDivisionError, "float division by zero"),
    (lambda: init.trunc_normal_(np.empty(3), a=2.0, b=-2.0), RuntimeError,
     "uniform_ expects to return a [from, to) range, but found from=2 > to=-2"),
    (lambda: init.uniform_(np.empty(3, np.int64)), NotImplementedError,
     "uniform_(): expected a float32 or float64 array, but got int64"),
    (lambda: init.kaiming_normal_(np.empty((3, 4), np.int32)), NotImplementedError,
     "normal_(): expected a float32 or float64 array, but got int32"),
    (lambda: init.normal_([1.0, 2.0]), TypeError,
     "normal_(): argument 'tensor' must be a Parameter or numpy.ndarray, not list"),
    (lambda: init.constant_(np.empty(3), "a"), TypeError,
     "constant_(): argument 'val' must be a number, not str"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_errors_have_torch_classes_and_messages(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert str(info.value) == message


@pytest.mark.parametrize("fill", [init.kaiming_uniform_, init.kaiming_normal_])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0, 2)], ids=str)
def test_kaiming_on_zero_element_tensors_warns_and_does_nothing(fill, shape, rng):
    w = np.empty(shape)
    with pytest.warns(UserWarning, match="^Initializing zero-element tensors is a no-op$") as record:
        assert fill(w, rng=rng) is w
    assert record[0].filename == __file__  # the warning points at the caller, as torch's stacklevel=2


def test_other_fills_on_zero_element_tensors_are_silent(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fill in (init.uniform_, init.normal_, init.trunc_normal_, init.zeros_):
            assert fill(np.empty((0, 3)), **({} if fill is init.zeros_ else {"rng": rng})).shape == (0, 3)
        assert init.xavier_uniform_(np.empty((0, 4)), rng=rng).shape == (0, 4)


def test_constant_on_an_integer_array_converts_like_numpy():
    w = np.zeros(4, dtype=np.int64)
    assert init.constant_(w, 2.7) is w
    np.testing.assert_array_equal(w, np.full(4, int(2.7)))


def test_random_module_draws_float64_then_rounds(seed):
    """The documented contract of handnn._random: the float32 draw is the float64 draw rounded."""
    u64 = _random.uniform(np.random.default_rng(seed), -2.0, 3.0, (50,), np.float64)
    u32 = _random.uniform(np.random.default_rng(seed), -2.0, 3.0, (50,), np.float32)
    n64 = _random.normal(np.random.default_rng(seed), 1.0, 2.0, (50,), np.float64)
    n32 = _random.normal(np.random.default_rng(seed), 1.0, 2.0, (50,), np.float32)
    np.testing.assert_array_equal(u32, u64.astype(np.float32))
    np.testing.assert_array_equal(n32, n64.astype(np.float32))
    np.testing.assert_array_equal(u64, -2.0 + 5.0 * np.random.default_rng(seed).random(50))
