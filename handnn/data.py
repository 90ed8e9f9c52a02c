"""Toy datasets and mini-batching.

``make_moons`` and ``make_circles`` compute scikit-learn's point sets exactly (the same ``linspace`` grids, the same
order of operations), so with ``noise=None`` and ``shuffle=False`` they are bit-for-bit scikit-learn's. Randomness
(shuffling, noise) comes from an explicit ``np.random.Generator``: the shuffled order and the noise draws therefore
differ from scikit-learn's ``RandomState`` streams, but the shuffled *set* of points is the same.

``minibatches`` is seed 003's ``random_mini_batches`` for the row-major (N, ...) layout torch uses: shuffle once, cut
consecutive slices of ``batch_size``, keep the last partial batch unless ``drop_last`` (torch's ``DataLoader``
semantics).
"""
from __future__ import annotations

import numbers
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np

__all__ = ["make_moons", "make_circles", "minibatches"]

SampleCount = Union[int, Tuple[int, int]]


def _split_counts(n_samples: SampleCount, name: str) -> Tuple[int, int]:
    """(n_outer, n_inner): an int is split floor/ceil like scikit-learn; a pair is taken as given."""
    if isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool):
        if n_samples < 1:
            raise ValueError(f"{name}: n_samples must be an int >= 1 or a pair of ints, got {n_samples}")
        n_out = int(n_samples) // 2
        return n_out, int(n_samples) - n_out
    if not isinstance(n_samples, (tuple, list)) or len(n_samples) != 2:
        raise ValueError(f"{name}: n_samples must be an int or a two-element tuple (n_outer, n_inner), "
                         f"got {n_samples!r}")
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in n_samples):
        raise ValueError(f"{name}: a tuple n_samples must hold two ints >= 0, got {n_samples!r}")
    return int(n_samples[0]), int(n_samples[1])


def _check_noise(noise: Optional[float], name: str) -> None:
    if noise is not None and not (isinstance(noise, numbers.Real) and noise >= 0):
        raise ValueError(f"{name}: noise must be None or a float >= 0, got {noise!r}")


def _generator(rng: Optional[Any]) -> Any:
    """The caller's generator, or a fresh unseeded one (never numpy's global state)."""
    return np.random.default_rng() if rng is None else rng


def _finish(outer: Tuple[np.ndarray, np.ndarray], inner: Tuple[np.ndarray, np.ndarray], shuffle: bool,
            noise: Optional[float], rng: Optional[Any], dtype: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Stack the two classes (outer label 0, inner label 1), then shuffle, then add noise: scikit-learn's order."""
    x = np.vstack([np.append(outer[0], inner[0]), np.append(outer[1], inner[1])]).T
    y = np.hstack([np.zeros(len(outer[0]), dtype=np.intp), np.ones(len(inner[0]), dtype=np.intp)])
    if shuffle or noise is not None:
        rng = _generator(rng)
    if shuffle:
        order = np.asarray(rng.permutation(len(y)))
        x, y = x[order], y[order]
    if noise is not None:
        x = x + np.asarray(rng.normal(scale=noise, size=x.shape), dtype=np.float64)
    return np.ascontiguousarray(x, dtype=dtype), y


def make_moons(n_samples: SampleCount = 100, *, shuffle: bool = True, noise: Optional[float] = None,
               rng: Optional[np.random.Generator] = None, dtype: Any = np.float64) -> Tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's ``make_moons``).

    Outer moon, label 0: ``(cos t, sin t)`` for ``t = linspace(0, π, n_outer)``; inner moon, label 1:
    ``(1 − cos t, 1 − sin t − 0.5)`` for ``t = linspace(0, π, n_inner)``. Then an optional shuffle and Gaussian noise
    of standard deviation ``noise`` on every coordinate.

    Parameters
    ----------
    n_samples : int or (int, int)
        Total count (split ``n // 2`` outer, the rest inner) or the two counts.
    shuffle : bool
        Permute the samples with ``rng.permutation``.
    noise : float or None
        Standard deviation of the added noise.
    rng : np.random.Generator, optional
        Source of the permutation and noise; a fresh unseeded generator when omitted.
    dtype : numpy dtype
        dtype of ``X`` (computed in float64, then cast).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,), dtype intp, values 0 and 1
    """
    n_out, n_in = _split_counts(n_samples, "make_moons")
    _check_noise(noise, "make_moons")
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    outer = (np.cos(t_out), np.sin(t_out))
    inner = (1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5)
    return _finish(outer, inner, shuffle, noise, rng, dtype)


def make_circles(n_samples: SampleCount = 100, *, shuffle: bool = True, noise: Optional[float] = None,
                 rng: Optional[np.random.Generator] = None, factor: float = 0.8,
                 dtype: Any = np.float64) -> Tuple[np.ndarray, np.ndarray]:
    """A large circle (label 0) around a smaller one (label 1) (scikit-learn's ``make_circles``).

    Outer: ``(cos t, sin t)``, inner: ``factor · (cos t, sin t)``, each for ``t = linspace(0, 2π, n, endpoint=False)``;
    then an optional shuffle and Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    n_samples, shuffle, noise, rng, dtype
        As in :func:`make_moons`.
    factor : float in [0, 1)
        Scale of the inner circle relative to the outer one.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,), dtype intp
    """
    n_out, n_in = _split_counts(n_samples, "make_circles")
    _check_noise(noise, "make_circles")
    if not (isinstance(factor, numbers.Real) and 0 <= factor < 1):
        raise ValueError(f"make_circles: factor must be a float in the range [0.0, 1.0), got {factor!r}")
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    outer = (np.cos(t_out), np.sin(t_out))
    inner = (np.cos(t_in) * factor, np.sin(t_in) * factor)
    return _finish(outer, inner, shuffle, noise, rng, dtype)


def minibatches(X: np.ndarray, y: Optional[np.ndarray], batch_size: int, *, shuffle: bool = True,
                rng: Optional[np.random.Generator] = None, drop_last: bool = False,
                ) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Yield ``(X_batch, y_batch)`` pairs covering one epoch (seed 003's ``random_mini_batches``, rows as samples).

    The order is ``rng.permutation(N)`` when ``shuffle`` (drawn once, when iteration starts), else ``0 … N−1``;
    with a :class:`handnn.random.TorchGenerator` it is the order of one epoch of torch's
    ``DataLoader(dataset, batch_size, shuffle=True, generator=g)`` (``rng.dataloader_order(N)``).
    batch ``k`` holds the samples ``order[k·batch_size : (k+1)·batch_size]``. The last batch has ``N mod batch_size``
    samples and is kept unless ``drop_last`` — torch's ``DataLoader(batch_size=..., shuffle=..., drop_last=...)``.

    Parameters
    ----------
    X : ndarray of shape (N, ...)
    y : ndarray of shape (N, ...) or None
        Targets, indexed with ``X``; ``None`` yields ``None`` in their place.
    batch_size : int >= 1
    shuffle : bool
    rng : np.random.Generator or TorchGenerator, optional
        Source of the permutation; a fresh unseeded generator when omitted.
    drop_last : bool

    Yields
    ------
    (X_batch, y_batch) : copies (fancy-indexed) when shuffled, views of the caller's arrays otherwise.
    """
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError("minibatches: X must have a leading sample axis, got a 0-d array")
    n = X.shape[0]
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"minibatches: X and y must hold the same number of samples, got X of shape "
                             f"{X.shape} and y of shape {y.shape}")
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size!r}")
    return _batches(X, y, int(batch_size), shuffle, rng, drop_last)


def _batches(X: np.ndarray, y: Optional[np.ndarray], batch_size: int, shuffle: bool, rng: Optional[Any],
             drop_last: bool) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
    n = X.shape[0]
    stop = n - n % batch_size if drop_last else n
    if not shuffle:
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            yield X[start:end], (None if y is None else y[start:end])
        return
    rng = _generator(rng)
    # a TorchGenerator draws the epoch exactly as DataLoader(shuffle=True, generator=g) does (a base seed, then
    # randperm(n), then the randperm its RandomSampler throws away); a numpy Generator draws permutation(n)
    order = np.asarray(rng.dataloader_order(n) if hasattr(rng, "dataloader_order") else rng.permutation(n))
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], (None if y is None else y[idx])
