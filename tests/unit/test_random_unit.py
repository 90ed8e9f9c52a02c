"""handnn.random without torch: the engine against independent oracles, exact FMA emulation against rationals,
stream accounting, state save/restore, seeds, determinism and argument validation.

Oracles used here: NumPy's own MT19937 bit generator (seeded through ``RandomState``'s ``init_genrand``), the C++
standard's check value for mt19937, plain-Python transcriptions of torch's formulas, and exact rational arithmetic.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import List

import numpy as np
import pytest

from handnn import random as hr
from handnn.random import STATE_SIZE, TorchGenerator

SEEDS = [0, 1, 5489, 2 ** 31 + 7, 2 ** 32 - 1]
FLOATS = [np.float32, np.float64]
IDS = ["float32", "float64"]


def numpy_mt19937(seed: int) -> np.random.MT19937:
    """NumPy's MT19937 in the state ``init_genrand(seed)`` leaves (legacy ``RandomState`` seeding)."""
    key, pos = np.random.RandomState(seed).get_state()[1:3]
    bit_generator = np.random.MT19937()
    bit_generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}
    return bit_generator


def words(gen: TorchGenerator, n: int) -> np.ndarray:
    """The next ``n`` raw 32-bit outputs of ``gen`` (an independent generator in the same state)."""
    clone = TorchGenerator().set_state(gen.get_state())
    return clone._words(n)


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    signed = {4: np.int32, 8: np.int64}[a.dtype.itemsize]
    ia, ib = (np.asarray(x).view(signed).astype(np.int64) for x in (a, b))
    return np.abs(ia - ib)


# ------------------------------------------------------------------------------------------------ engine


@pytest.mark.parametrize("count", [1, 623, 624, 625, 5000])
@pytest.mark.parametrize("seed", SEEDS)
def test_engine_matches_numpys_mt19937(seed, count):
    np.testing.assert_array_equal(TorchGenerator(seed)._words(count), numpy_mt19937(seed).random_raw(count))


def test_engine_passes_the_cpp_standards_check_value():
    """[rand.predef]: the 10000th output of a default-constructed mt19937 (seed 5489) is 4123659995."""
    assert int(TorchGenerator(5489)._words(10000)[-1]) == 4123659995


def test_twist_matches_a_plain_loop():
    key = hr._mt_seed_key(12345)
    state = [int(v) for v in key]
    for i in range(624):
        y = (state[i] & 0x80000000) | (state[(i + 1) % 624] & 0x7FFFFFFF)
        state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
    np.testing.assert_array_equal(hr._mt_twist(key), np.array(state, dtype=np.uint32))


@pytest.mark.parametrize("split", [(0, 5), (1, 622), (623, 1), (624, 624), (300, 1000), (1248, 3)])
def test_words_do_not_depend_on_how_draws_are_split(split):
    whole = TorchGenerator(3)._words(sum(split))
    gen = TorchGenerator(3)
    np.testing.assert_array_equal(np.concatenate([gen._words(n) for n in split]), whole)


def test_seeds_equal_modulo_2_to_32_share_a_stream_but_not_the_initial_seed():
    a, b = TorchGenerator(5), TorchGenerator(2 ** 32 + 5)
    np.testing.assert_array_equal(a.rand(50), b.rand(50))
    assert (a.initial_seed(), b.initial_seed()) == (5, 2 ** 32 + 5)


def test_negative_seeds_wrap_modulo_2_to_64():
    gen = TorchGenerator(-1)
    assert gen.initial_seed() == 2 ** 64 - 1
    np.testing.assert_array_equal(gen.rand(9), TorchGenerator(2 ** 32 - 1).rand(9))


def test_default_seed_is_torchs_default_rng_seed_val():
    assert TorchGenerator().initial_seed() == 67280421310721


# ------------------------------------------------------------------------------------------------ transforms


@pytest.mark.parametrize("seed", SEEDS)
def test_rand_float32_uses_24_bits_of_one_word(seed):
    w = words(TorchGenerator(seed), 200)
    expected = np.array([(int(v) & 0xFFFFFF) / 2 ** 24 for v in w], dtype=np.float32)
    np.testing.assert_array_equal(TorchGenerator(seed).rand(200), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_rand_float64_uses_53_bits_of_random64_high_word_first(seed):
    w = [int(v) for v in words(TorchGenerator(seed), 400)]
    expected = np.array([(((hi << 32) | lo) & (2 ** 53 - 1)) / 2 ** 53 for hi, lo in zip(w[0::2], w[1::2])])
    np.testing.assert_array_equal(TorchGenerator(seed).rand(200, dtype=np.float64), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_scalar_normal_is_box_muller_with_the_cached_sine(seed):
    """Below 16 elements: ``r cos(theta)``, the sine kept for the next call; ``r = sqrt(-2 log1p(-u2))``."""
    w = [int(v) for v in words(TorchGenerator(seed), 16)]
    u = [(((hi << 32) | lo) & (2 ** 53 - 1)) / 2 ** 53 for hi, lo in zip(w[0::2], w[1::2])]
    expected = []
    for u1, u2 in zip(u[0::2], u[1::2]):
        r = math.sqrt(-2.0 * math.log1p(-u2))
        expected += [r * math.cos(2.0 * math.pi * u1), r * math.sin(2.0 * math.pi * u1)]
    gen = TorchGenerator(seed)
    got = np.concatenate([gen.randn(3, dtype=np.float64), gen.randn(1, dtype=np.float64),
                          gen.randn(4, dtype=np.float64)])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n", [16, 17, 31, 33])
def test_vectorised_normal_float64_blocks_and_tail(n):
    """From 16 elements: all uniforms, Box–Muller on blocks of 16 (u1 = 1 - x[j], u2 = x[j + 8]), and the last 16
    values recomputed from 16 fresh uniforms when ``n`` is not a multiple of 16."""
    gen = TorchGenerator(21)
    u = TorchGenerator(21).rand(n + 16, dtype=np.float64)

    def block(x: np.ndarray) -> List[float]:
        out = [0.0] * 16
        for j in range(8):
            r = math.sqrt(-2.0 * math.log(1.0 - x[j]))
            out[j], out[j + 8] = r * math.cos(2.0 * math.pi * x[j + 8]), r * math.sin(2.0 * math.pi * x[j + 8])
        return out

    expected = list(u[:n])
    for start in range(0, n - 15, 16):
        expected[start:start + 16] = block(u[start:start + 16])
    if n % 16:
        expected[n - 16:] = block(u[n:n + 16])
    np.testing.assert_array_equal(gen.randn(n, dtype=np.float64), expected)


@pytest.mark.parametrize("n", [16, 17, 100, 1000])
def test_vectorised_normal_float32_is_box_muller_to_float32_accuracy(n):
    """The AVX2 kernel's float32 log/sincos: within a few float32 eps of the exact Box–Muller of its uniforms."""
    u = TorchGenerator(4).rand(n + 16).astype(np.float64)

    def block(x: np.ndarray) -> np.ndarray:
        radius = np.sqrt(-2.0 * np.log(1.0 - x[:8]))
        theta = (np.float32(2 * np.pi) * x[8:].astype(np.float32)).astype(np.float64)
        return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)])

    exact = u[:n].copy()
    for start in range(0, n - 15, 16):
        exact[start:start + 16] = block(u[start:start + 16])
    if n % 16:
        exact[n - 16:] = block(u[n:n + 16])
    got = TorchGenerator(4).randn(n).astype(np.float64)
    assert (np.abs(got - exact) / np.maximum(np.abs(exact), 1.0)).max() < 8 * np.finfo(np.float32).eps


@pytest.mark.parametrize("dtype,words_per_value", [(np.float32, 1), (np.float64, 2)], ids=IDS)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 32, 33])
def test_normal_stream_accounting(dtype, words_per_value, n):
    """Scalar path: two uniforms (each ``words_per_value`` float64 words: 2) per pair; vector path: ``n`` uniforms
    plus 16 for a tail."""
    gen = TorchGenerator(8)
    gen.randn(n, dtype=dtype)
    if n < 16:
        consumed = 4 * ((n + 1) // 2)
    else:
        consumed = words_per_value * (n + (16 if n % 16 else 0))
    reference = TorchGenerator(8)
    reference._words(consumed)
    np.testing.assert_array_equal(gen._words(5), reference._words(5))


def test_non_contiguous_arrays_are_filled_in_memory_order():
    fortran = TorchGenerator(6).uniform_(np.empty((3, 4, 5), order="F"))
    flat = TorchGenerator(6).rand(60, dtype=np.float64)
    np.testing.assert_array_equal(fortran.ravel(order="F"), flat)


def test_uniform_range_and_clamp():
    gen = TorchGenerator(1)
    values = gen.uniform_(np.empty(10000, np.float32), -3.0, 2.0)
    assert values.min() >= -3.0 and values.max() < 2.0
    np.testing.assert_array_equal(gen.uniform_(np.empty(5), 4.0, 4.0), np.full(5, 4.0))


@pytest.mark.parametrize("dtype", FLOATS, ids=IDS)
def test_draws_have_the_right_distribution(dtype):
    gen = TorchGenerator(123)
    u, z = gen.rand(100000, dtype=dtype), gen.randn(100000, dtype=dtype)
    assert u.dtype == z.dtype == dtype
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.005
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    keep = gen.bernoulli_(np.empty(100000, dtype), 0.7)
    assert set(np.unique(keep)) == {0, 1} and abs(keep.mean() - 0.7) < 0.005


@pytest.mark.parametrize("dtype", FLOATS, ids=IDS)
def test_bernoulli_keeps_strictly_below_p(dtype):
    """``u < p``: a probability equal to the element's own uniform gives 0, the next float up gives 1."""
    u = TorchGenerator(13).rand(64, dtype=dtype)
    np.testing.assert_array_equal(TorchGenerator(13).bernoulli(u), np.zeros(64, dtype))
    above = np.nextafter(u, dtype(2))
    np.testing.assert_array_equal(TorchGenerator(13).bernoulli(above), np.ones(64, dtype))
    first = float(TorchGenerator(13).rand(1, dtype=np.float64)[0])
    assert TorchGenerator(13).bernoulli_(np.empty(1), first)[0] == 0
    assert TorchGenerator(13).bernoulli_(np.empty(1), math.nextafter(first, 2))[0] == 1


@pytest.mark.parametrize("dtype", FLOATS, ids=IDS)
def test_uniform_is_one_fma_of_the_unit_draw(dtype):
    """``fma(x, to - from, from)`` rounded once in the dtype (torch's contracted ``x * (to - from) + from``)."""
    low, high = dtype(-2.5), dtype(7.3)
    x = TorchGenerator(3).rand(2000, dtype=dtype)
    span = Fraction(float(high - low))
    exact = [Fraction(float(v)) * span + Fraction(float(low)) for v in x]
    expected = np.array([_round_to_float32(q) if dtype is np.float32 else float(q) for q in exact], dtype=dtype)
    got = TorchGenerator(3).uniform_(np.empty(2000, dtype), float(low), float(high))
    np.testing.assert_array_equal(got, expected)
    assert (x * (high - low) + low != expected).any(), "a separately rounded multiply-add must differ somewhere"


def test_bernoulli_extremes_and_integers():
    gen = TorchGenerator(2)
    assert not gen.bernoulli_(np.empty(100, bool), 0.0).any()
    assert gen.bernoulli_(np.empty(100, np.int64), 1.0).sum() == 100
    values = gen.randint(-3, 17, (1000,))
    assert values.dtype == np.int64 and values.min() == -3 and values.max() == 16
    perm = gen.randperm(500)
    np.testing.assert_array_equal(np.sort(perm), np.arange(500))


def test_randperm_is_forward_fisher_yates_on_32_bit_words():
    n = 12
    w = [int(v) for v in words(TorchGenerator(30), n - 1)]
    expected = list(range(n))
    for i in range(n - 1):
        j = i + w[i] % (n - i)
        expected[i], expected[j] = expected[j], expected[i]
    np.testing.assert_array_equal(TorchGenerator(30).randperm(n), expected)


def test_randint_switches_to_random64_at_2_to_28():
    w = [int(v) for v in words(TorchGenerator(12), 4)]
    assert TorchGenerator(12).randint(0, 2 ** 28 - 1, (1,))[0] == w[0] % (2 ** 28 - 1)
    assert TorchGenerator(12).randint(0, 2 ** 28, (1,))[0] == ((w[0] << 32) | w[1]) % 2 ** 28


def test_dataloader_order_draws_a_base_seed_then_two_permutations():
    gen = TorchGenerator(17)
    order = gen.dataloader_order(10)
    manual = TorchGenerator(17)
    manual._words(2)
    np.testing.assert_array_equal(order, manual.randperm(10))
    manual.randperm(10)
    np.testing.assert_array_equal(gen.get_state(), manual.get_state())


# ------------------------------------------------------------------------------------------------ exact FMA


def _round_to_float32(q: Fraction) -> np.float32:
    """The float32 nearest to the rational ``q`` (ties to even), by exact comparison of the two neighbours."""
    guess = np.float32(float(q))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - q), int(np.array(c).view(np.uint32)) & 1))
    return np.float32(best)


def _fma_cases(rng: np.random.Generator, n: int, dtype) -> tuple:
    """Random operands and cancellation-heavy ones (``c`` close to ``-a * b``)."""
    a = rng.standard_normal(n).astype(dtype) * np.exp2(rng.integers(-20, 20, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    c = rng.standard_normal(n).astype(dtype)
    half = n // 2
    c[:half] = -(a[:half].astype(np.float64) * b[:half]).astype(dtype) * (1 + rng.integers(-3, 4, half) *
                                                                          np.finfo(dtype).eps).astype(dtype)
    return a, b, c


def test_fma64_is_correctly_rounded():
    a, b, c = _fma_cases(np.random.default_rng(0), 4000, np.float64)
    a = np.append(a, [1e300, 3e-200, 1.5, 2.0 ** 600])
    b = np.append(b, [1e-10, 5e-200, 2.0 ** -1074, 2.0 ** 300])
    c = np.append(c, [-1e290, 1e-300, 0.0, -1e290])
    expected = np.array([float(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                         for x, y, z in zip(a, b, c)])
    np.testing.assert_array_equal(hr._fma64(a, b, c), expected)
    with np.errstate(over="ignore"):
        naive = a * b + c
    assert (naive != expected).sum() > 100, "the cases must include ones where a separate rounding differs"


def test_fma32_is_correctly_rounded():
    a, b, c = _fma_cases(np.random.default_rng(1), 4000, np.float32)
    expected = np.array([_round_to_float32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                         for x, y, z in zip(a, b, c)], dtype=np.float32)
    np.testing.assert_array_equal(hr._fma32(a, b, c), expected)
    assert ((a * b + c) != expected).sum() > 100


def test_fma32_avoids_double_rounding():
    """``a * b + c`` lies just above the float32 midpoint 1024 + 2**-14 (by less than half a double ulp), so the
    double nearest to it is the midpoint itself, which would round (to even) down to 1024; fmaf rounds up."""
    a = np.float32(2.0 ** -7 * (1 + 2016 * 2.0 ** -23))
    b = np.float32(2.0 ** -7 * (1 - 4031 * 2.0 ** -24))
    c = np.float32(1024.0)
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    assert 0 < exact - (1024 + Fraction(2) ** -14) < Fraction(2) ** -43
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) == np.float32(1024.0)  # double rounding
    got = hr._fma32(np.array([a]), np.array([b]), np.array([c]))[0]
    assert got == _round_to_float32(exact) == np.float32(1024.0 + 2.0 ** -13)


# ------------------------------------------------------------------------------------------------ AVX2 math


def test_avx2_log_is_accurate():
    x = np.linspace(1e-7, 1.0, 100001, dtype=np.float32)
    assert ulps(hr._avx2_log(x), np.log(x.astype(np.float64)).astype(np.float32)).max() <= 4


def test_avx2_sincos_is_accurate():
    theta = np.float32(2 * np.pi) * np.linspace(0.0, 1.0, 100001, endpoint=False, dtype=np.float32)
    sine, cosine = hr._avx2_sincos(theta)
    t64 = theta.astype(np.float64)
    assert np.abs(sine - np.sin(t64)).max() < 3e-7 and np.abs(cosine - np.cos(t64)).max() < 3e-7
    assert sine.dtype == cosine.dtype == np.float32


# ------------------------------------------------------------------------------------------------ state


@pytest.mark.parametrize("warmup", ["none", "odd-randn", "float32", "many"])
def test_state_snapshot_restores_the_stream_and_the_cache(warmup):
    gen = TorchGenerator(99)
    if warmup == "odd-randn":
        gen.randn(3, dtype=np.float64)
    elif warmup == "float32":
        gen.rand(7)
    elif warmup == "many":
        gen.rand(5000)
    state = gen.get_state()
    first = [gen.randn(5, dtype=np.float64), gen.rand(700), gen.randperm(20)]
    again = TorchGenerator(1).set_state(state)
    second = [again.randn(5, dtype=np.float64), again.rand(700), again.randperm(20)]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(gen.get_state(), again.get_state())


def test_state_layout():
    gen = TorchGenerator(2 ** 40 + 3)
    state = gen.get_state()
    assert state.dtype == np.uint8 and state.shape == (STATE_SIZE,)
    assert int.from_bytes(state[:8].tobytes(), "little") == 2 ** 40 + 3
    assert state[8:16].view("<i4").tolist() == [1, 1]  # left, seeded
    assert int.from_bytes(state[16:24].tobytes(), "little") == 0  # next
    gen.randn(1, dtype=np.float64)
    state = gen.get_state()
    assert state[5040:5044].view("<i4")[0] == 1  # a cached double normal
    assert state[8:12].view("<i4")[0] == 621 and int.from_bytes(state[16:24].tobytes(), "little") == 4


def test_get_state_is_a_copy():
    gen = TorchGenerator(4)
    state = gen.get_state()
    state[:] = 0
    np.testing.assert_array_equal(gen.rand(3), TorchGenerator(4).rand(3))


def test_manual_seed_resets_the_stream_and_the_cache():
    gen = TorchGenerator(10)
    gen.randn(1, dtype=np.float64)
    assert gen.manual_seed(10) is gen
    np.testing.assert_array_equal(gen.get_state(), TorchGenerator(10).get_state())


def test_seed_reseeds_from_entropy():
    gen = TorchGenerator(0)
    value = gen.seed()
    assert gen.initial_seed() == value and 0 <= value < 2 ** 64
    np.testing.assert_array_equal(gen.rand(4), TorchGenerator(value).rand(4))


def _corrupt(field_offset: int, value: int, width: int = 4) -> np.ndarray:
    state = TorchGenerator(0).get_state()
    state[field_offset:field_offset + width] = np.frombuffer(value.to_bytes(width, "little", signed=True), np.uint8)
    return state


@pytest.mark.parametrize("state", [_corrupt(8, 0), _corrupt(8, 625), _corrupt(12, 0), _corrupt(16, 625, 8)],
                         ids=["left-0", "left-625", "not-seeded", "next-625"])
def test_invalid_states_are_rejected(state):
    with pytest.raises(RuntimeError, match="Invalid mt19937 state"):
        TorchGenerator(0).set_state(state)


def test_a_state_about_to_twist_ignores_next():
    """left == 1: the next draw twists and restarts at word 0, whatever ``next`` says (torch accepts it too)."""
    gen = TorchGenerator(0).set_state(_corrupt(16, 620, 8))
    np.testing.assert_array_equal(gen.rand(5), TorchGenerator(0).rand(5))


def test_set_state_rejects_an_overrunning_position():
    """torch would read past its 624 words (left - 1 draws from next); handnn refuses such a state."""
    state = TorchGenerator(0).get_state()
    state[8:12] = np.frombuffer((300).to_bytes(4, "little"), np.uint8)
    state[16:24] = np.frombuffer((400).to_bytes(8, "little"), np.uint8)
    with pytest.raises(RuntimeError, match="Invalid mt19937 state"):
        TorchGenerator(0).set_state(state)


@pytest.mark.parametrize("bad,error", [(np.zeros(STATE_SIZE, np.int64), TypeError),
                                       (np.zeros(10, np.uint8), RuntimeError)])
def test_set_state_checks_dtype_and_size(bad, error):
    with pytest.raises(error):
        TorchGenerator(0).set_state(bad)


# ------------------------------------------------------------------------------------------------ API


def test_size_forms_agree():
    np.testing.assert_array_equal(TorchGenerator(5).rand(2, 3), TorchGenerator(5).rand((2, 3)))
    np.testing.assert_array_equal(TorchGenerator(5).rand(6).reshape(2, 3), TorchGenerator(5).rand([2, 3]))
    assert TorchGenerator(5).randn().shape == ()


def test_numpy_named_methods_default_to_float64_and_return_scalars_without_size():
    gen = TorchGenerator(3)
    assert isinstance(gen.random(), float) and isinstance(gen.normal(), float)
    assert gen.random(4).dtype == gen.uniform(size=4).dtype == gen.standard_normal(4).dtype == np.float64
    assert gen.rand(4).dtype == gen.randn(4).dtype == np.float32
    assert isinstance(gen.integers(5), np.integer) and 0 <= gen.integers(5) < 5
    np.testing.assert_array_equal(TorchGenerator(3).random(5), TorchGenerator(3).rand(5, dtype=np.float64))


def test_numpy_named_methods_are_the_torch_calls():
    pairs = [
        (lambda g: g.uniform(-1, 2, 30), lambda g: g.uniform_(np.empty(30), -1, 2)),
        (lambda g: g.normal(3, 2, 30), lambda g: g.normal_(np.empty(30), 3, 2)),
        (lambda g: g.standard_normal(7), lambda g: g.randn(7, dtype=np.float64)),
        (lambda g: g.integers(2, 9, 30), lambda g: g.randint(2, 9, (30,))),
        (lambda g: g.integers(2, 9, 30, endpoint=True), lambda g: g.randint(2, 10, (30,))),
        (lambda g: g.permutation(40), lambda g: g.randperm(40)),
    ]
    for numpy_style, torch_style in pairs:
        np.testing.assert_array_equal(numpy_style(TorchGenerator(8)), torch_style(TorchGenerator(8)))


def test_permutation_of_an_array_is_a_shuffled_copy():
    x = np.arange(30).reshape(10, 3)
    before = x.copy()
    shuffled = TorchGenerator(1).permutation(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(shuffled, x[TorchGenerator(1).randperm(10)])


def test_in_place_methods_return_their_target_and_touch_nothing_else():
    gen = TorchGenerator(6)
    p = np.linspace(0, 1, 12).reshape(3, 4)
    p_before = p.copy()
    for method, args in [("uniform_", (0.0, 2.0)), ("normal_", ()), ("bernoulli_", (p,)), ("random_", (3, 9))]:
        target = np.zeros((3, 4))
        assert getattr(gen, method)(target, *args) is target
    np.testing.assert_array_equal(p, p_before)


def test_zero_size_draws_consume_nothing():
    gen = TorchGenerator(5)
    for draw in (lambda: gen.rand(0), lambda: gen.randn(0, 3), lambda: gen.randint(0, 5, (0,)),
                 lambda: gen.bernoulli_(np.empty(0), 0.5), lambda: gen.randperm(0), lambda: gen.randperm(1)):
        assert draw().size in (0, 1)
    np.testing.assert_array_equal(gen.get_state(), TorchGenerator(5).get_state())


@pytest.mark.parametrize("call,error,match", [
    (lambda g: g.uniform_([0.0, 1.0]), TypeError, "numpy.ndarray"),
    (lambda g: g.uniform_(np.broadcast_to(np.zeros(1), (3,))), ValueError, "read-only"),
    (lambda g: g.uniform_(np.empty(3, np.float16)), NotImplementedError, "float32 and float64"),
    (lambda g: g.normal_(np.empty(3, np.int32)), NotImplementedError, "'Int'"),
    (lambda g: g.random(3, dtype=np.int64), TypeError, "Unsupported dtype"),
    (lambda g: g.bernoulli_(np.empty(3), np.array([0.1, 0.2])), RuntimeError, "expanded size"),
    (lambda g: g.bernoulli_(np.empty(3), np.array([0.1, np.nan, 0.2])), RuntimeError, "p_in >= 0"),
    (lambda g: g.randint(0.5, 3, (2,)), TypeError, "low must be an int"),
    (lambda g: g.randint(0, 3, (2.0,)), TypeError, "size must be a sequence of ints"),
    (lambda g: g.randperm(2 ** 32 // 20), NotImplementedError, "inside-out"),
    (lambda g: g.random_(np.empty(3, np.int64), 1, 2, 3), TypeError, "at most 2 bounds"),
    (lambda g: g.manual_seed("3"), RuntimeError, "expected a long, but got str"),
    (lambda g: g.permutation(np.float64(3.0)), ValueError, "at least 1-dimensional"),
], ids=["not-an-array", "read-only", "float16", "normal-int", "random-int", "broadcast", "nan-p", "float-low",
        "float-size", "huge-randperm", "too-many-bounds", "string-seed", "scalar-permutation"])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(TorchGenerator(0))


@pytest.mark.parametrize("method", ["rand", "randn", "random", "standard_normal"])
def test_same_seed_same_numbers_different_seed_different_numbers(method):
    draw = lambda seed: getattr(TorchGenerator(seed), method)(50)  # noqa: E731
    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))
