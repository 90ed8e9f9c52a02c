"""handnn.data: the toy datasets against scikit-learn, and minibatches against seed 003's random_mini_batches."""
from __future__ import annotations

import numpy as np
import pytest

from handnn import data

SIZES = [1, 2, 7, 100, 301, (3, 5), (0, 4), (6, 0)]
MAKERS = {"moons": data.make_moons, "circles": data.make_circles}


def sklearn_maker(name: str):
    """scikit-learn's function of the same name (imported when a test needs it, not at collection)."""
    from sklearn import datasets

    return getattr(datasets, f"make_{name}")


def _sorted_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows (x1, x2, label) in lexicographic order: a shuffle-independent view of the dataset."""
    rows = np.column_stack([x, y])
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("n_samples", SIZES, ids=str)
@pytest.mark.parametrize("name", MAKERS)
def test_noiseless_unshuffled_equals_sklearn_bit_for_bit(name, n_samples):
    ours, theirs = MAKERS[name], sklearn_maker(name)
    x, y = ours(n_samples, shuffle=False)
    x_ref, y_ref = theirs(n_samples, shuffle=False)
    assert x.dtype == x_ref.dtype == np.float64 and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("factor", [0.0, 0.3, 0.8, 0.99])
def test_circles_factor_equals_sklearn(factor):
    x, y = data.make_circles(50, shuffle=False, factor=factor)
    x_ref, y_ref = sklearn_maker("circles")(50, shuffle=False, factor=factor)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("name", MAKERS)
def test_shuffled_is_a_permutation_of_sklearn(name, rng):
    ours, theirs = MAKERS[name], sklearn_maker(name)
    x, y = ours(101, shuffle=True, rng=rng)
    x_ref, y_ref = theirs(101, shuffle=True, random_state=0)
    np.testing.assert_array_equal(_sorted_rows(x, y), _sorted_rows(x_ref, y_ref))
    assert not np.array_equal(y, np.sort(y)), "a shuffle of 101 labels left them sorted"


@pytest.mark.parametrize("name", MAKERS)
def test_noise_is_gaussian_with_the_given_scale(name):
    """Noise = x − noiseless x (same permutation from the same seed): mean 0, std `noise` within 6 standard errors."""
    ours = MAKERS[name]
    n, noise = 20000, 0.3
    x, y = ours(n, shuffle=True, noise=noise, rng=np.random.default_rng(5))
    x0, y0 = ours(n, shuffle=True, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(y, y0)
    residual = (x - x0).ravel()
    standard_error = noise / np.sqrt(residual.size)
    assert abs(residual.mean()) < 6 * standard_error
    assert abs(residual.std() - noise) < 6 * noise / np.sqrt(2 * residual.size)


@pytest.mark.parametrize("name", MAKERS)
def test_deterministic_for_a_seed_and_dtype(name):
    ours = MAKERS[name]
    a = ours(64, noise=0.2, rng=np.random.default_rng(3))
    b = ours(64, noise=0.2, rng=np.random.default_rng(3))
    c = ours(64, noise=0.2, rng=np.random.default_rng(3), dtype=np.float32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert c[0].dtype == np.float32
    np.testing.assert_array_equal(c[0], a[0].astype(np.float32))


@pytest.mark.parametrize("kwargs, message", [
    ({"n_samples": 0}, "n_samples must be an int >= 1"),
    ({"n_samples": (1, 2, 3)}, "two-element tuple"),
    ({"n_samples": (1, -2)}, "two ints >= 0"),
    ({"n_samples": 2.5}, "two-element tuple"),
    ({"noise": -0.1}, "noise must be None or a float >= 0"),
])
@pytest.mark.parametrize("name", MAKERS)
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MAKERS[name](**kwargs)


@pytest.mark.parametrize("factor", [1.0, -0.1, 2])
def test_circles_bad_factor(factor):
    with pytest.raises(ValueError, match=r"factor must be a float in the range \[0.0, 1.0\), got"):
        data.make_circles(10, factor=factor)


# ---- minibatches --------------------------------------------------------------------------------------------------
def random_mini_batches(X, Y, mini_batch_size, permutation):
    """Seed 003's random_mini_batches (columns are samples), transcribed with its permutation passed in."""
    m = X.shape[1]
    shuffled_X, shuffled_Y = X[:, permutation], Y[:, permutation].reshape((1, m))
    batches = []
    num_complete_minibatches = m // mini_batch_size
    for k in range(num_complete_minibatches):
        batches.append((shuffled_X[:, k * mini_batch_size:(k + 1) * mini_batch_size],
                        shuffled_Y[:, k * mini_batch_size:(k + 1) * mini_batch_size]))
    if m % mini_batch_size != 0:
        batches.append((shuffled_X[:, num_complete_minibatches * mini_batch_size:m],
                        shuffled_Y[:, num_complete_minibatches * mini_batch_size:m]))
    return batches


@pytest.mark.parametrize("n, batch_size", [(148, 64), (128, 64), (5, 8), (1, 1), (10, 3)])
def test_minibatches_equal_seed_003(n, batch_size, rng):
    x, y = rng.normal(size=(n, 3)), rng.integers(0, 2, n)
    ours = list(data.minibatches(x, y, batch_size, rng=np.random.default_rng(11)))
    permutation = np.random.default_rng(11).permutation(n)
    theirs = random_mini_batches(x.T, y[None, :], batch_size, permutation)
    assert len(ours) == len(theirs) == -(-n // batch_size)
    for (xb, yb), (xs, ys) in zip(ours, theirs):
        np.testing.assert_array_equal(xb, xs.T)
        np.testing.assert_array_equal(yb, ys.ravel())


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (2, 5)])
def test_minibatches_cover_the_epoch(n, batch_size, shuffle, drop_last, rng):
    x = np.arange(n * 2, dtype=float).reshape(n, 2)
    y = np.arange(n)
    batches = list(data.minibatches(x, y, batch_size, shuffle=shuffle, rng=rng, drop_last=drop_last))
    sizes = [len(yb) for _, yb in batches]
    full, rest = divmod(n, batch_size)
    assert sizes == [batch_size] * full + ([] if drop_last or rest == 0 else [rest])
    seen = np.concatenate([yb for _, yb in batches]) if batches else np.array([], dtype=int)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))
    assert len(set(seen.tolist())) == len(seen)
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), y)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])


def test_minibatches_without_targets_and_caller_untouched(rng):
    x = rng.normal(size=(7, 2))
    before = x.copy()
    batches = list(data.minibatches(x, None, 4, rng=rng))
    assert [b[1] for b in batches] == [None, None]
    np.testing.assert_array_equal(np.sort(np.concatenate([b[0] for b in batches]), axis=0), np.sort(x, axis=0))
    batches[0][0][...] = 0  # a shuffled batch is a copy: writing to it leaves the caller's data alone
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("args, error, message", [
    ((np.zeros((4, 2)), np.zeros(3), 2), ValueError, "same number of samples"),
    ((np.zeros((4, 2)), np.zeros(4), 0), ValueError, "batch_size should be a positive integer value"),
    ((np.zeros((4, 2)), np.zeros(4), 1.5), ValueError, "batch_size should be a positive integer value"),
    ((np.float64(1.0), None, 1), ValueError, "leading sample axis"),
])
def test_minibatches_bad_arguments_raise_before_iterating(args, error, message):
    with pytest.raises(error, match=message):
        data.minibatches(*args)
