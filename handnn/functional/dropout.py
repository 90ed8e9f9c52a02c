"""Inverted dropout with torch's convention: ``p`` is the probability of *dropping* an element."""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as np

from .._validation import check_array, check_ndarray


class DropoutCache(NamedTuple):
    """torch's ``noise``: ``mask / (1 - p)`` in the input's dtype (None when the input passed through); for
    :func:`dropout2d_forward` one value per (sample, channel), shape ``(N, C, 1, 1)``.

    Backward is then one same-type multiplication (``dout * noise``), what torch's autograd does with the ``noise``
    it saves: a float array the input's size, where the boolean mask took a quarter (float32) but cost a buffered
    bool-to-float multiplication and a scaling pass in each direction.
    """

    noise: Optional[np.ndarray]

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The boolean keep-mask (a new array; None when the input passed through)."""
        return None if self.noise is None else np.not_equal(self.noise, 0, out=np.empty(self.noise.shape, bool))


def check_dropout_p(p: float) -> None:
    """torch's ``ValueError`` for a drop probability below 0 or above 1 (``nn.Dropout`` and ``F.dropout``).

    NaN passes, as it passes torch's Python check (``nn.Dropout(nan)`` constructs); :func:`dropout_forward`
    then rejects it with ATen's ``RuntimeError``.
    """
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def keep_threshold(p: float) -> int:
    """``round((1 - p) * 2**32)``: a uniform 32-bit word ``u`` is kept iff ``u < threshold`` (keep-rate exact to
    2^-33; 2**32 means every element is kept)."""
    return int(round((1.0 - p) * 2.0**32))


def draw_dropout_mask(shape, p: float, rng, dtype=np.float32) -> np.ndarray:
    """Boolean keep-mask, each element kept with probability ``1 - p``.

    With a :class:`handnn.random.TorchGenerator` (anything with torch's ``bernoulli_``), the mask is torch's:
    ``empty(shape, dtype).bernoulli_(1 - p) != 0``, what ``F.dropout`` draws. With a ``numpy.random.Generator``,
    ``u`` = the generator's next ``ceil(n / 2)`` raw 64-bit words (``rng.bit_generator.random_raw``), each
    split into two 32-bit halves in memory order (low half first on little-endian machines), the first ``n`` of
    them in C order; element ``i`` is kept iff ``u[i] < keep_threshold(p)``. Raw words cost half of
    ``rng.random(n, dtype=np.float32)`` (which also spends 32 bits per element) and keep 8 more bits of precision.
    """
    if rng is None:
        raise ValueError("dropout needs rng= (a numpy.random.Generator) or an explicit mask= to draw its mask")
    if hasattr(rng, "bernoulli_"):
        return rng.bernoulli_(np.empty(shape, dtype), 1.0 - p) != 0
    threshold = keep_threshold(p)
    if threshold >= 2**32:
        return np.ones(shape, dtype=bool)
    n = math.prod(shape)
    words = rng.bit_generator.random_raw((n + 1) // 2)
    return np.less(words.view(np.uint32)[:n], np.uint32(threshold)).reshape(shape)


def dropout_forward(
    x: np.ndarray,
    p: float = 0.5,
    training: bool = True,
    *,
    rng: Optional[np.random.Generator] = None,
    mask: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, DropoutCache]:
    """``y = x * mask / (1 - p)`` in training, ``y = x`` otherwise.

    Parameters
    ----------
    x : ndarray, any shape
    p : float in [0, 1]
        Drop probability (torch's convention; a course's ``keep_prob`` is ``1 - p``).
    training : bool
    rng : numpy.random.Generator, optional
        Draws the mask when ``mask`` is not given.
    mask : ndarray of bool, shape of ``x``, optional
        An explicit keep-mask (e.g. torch's, ``F.dropout(ones, p) != 0``).

    Returns
    -------
    out : ndarray, shape and dtype of ``x``. With p = 0 or in eval it is ``x`` itself, as in torch;
        with p = 1 it is ``x * 0`` (NaN and inf become NaN, as in torch).
    cache : DropoutCache
    """
    check_dropout_p(p)
    if math.isnan(p):  # it passed torch's Python check; torch's ATen check raises RuntimeError, in eval too
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {p}")
    check_ndarray(x, "dropout")
    if not training or p == 0:  # the input itself, whatever its dtype, as torch returns it
        return x, DropoutCache(None)
    if p == 1 and x.dtype.kind in "biufc":  # x * 0 in the input's dtype, as torch computes it for every dtype
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN is torch's result, not a mistake
            return x * x.dtype.type(0), DropoutCache(np.zeros(x.shape, x.dtype))
    # drawing a mask: torch has no Bernoulli kernel for complex, cannot scale an integer or bool input
    check_array(x, "dropout", refuses={"int": RuntimeError, "bool": RuntimeError, "complex": NotImplementedError})
    if mask is None:
        mask = draw_dropout_mask(x.shape, p, rng, x.dtype)
    else:
        _check_mask(mask, x.shape, "dropout", "the input's shape")
    return _apply_keep_mask(x, mask, p)


def _check_mask(mask: object, shape: Tuple[int, ...], op: str, what: str) -> None:
    """A given keep-mask must be a boolean array of ``shape`` (TypeError, ValueError naming what was given)."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(f"{op} mask must be a boolean ndarray, but got {getattr(mask, 'dtype', type(mask))}")
    if mask.shape != shape:
        raise ValueError(f"{op} mask of shape {mask.shape} does not match {what} {shape}")


def _apply_keep_mask(x: np.ndarray, mask: np.ndarray, p: float) -> Tuple[np.ndarray, DropoutCache]:
    """``x * noise`` with ``noise = mask / (1 - p)``, broadcast (Dropout2d: one value per channel).

    torch scales in the input's dtype: float32(1) / float32(1 - p) for float32 input, and multiplies the input by
    noise = mask * scale: x * scale where kept, x * 0 (-0.0 for negative x, NaN for inf) where dropped.
    """
    scale = x.dtype.type(1) / x.dtype.type(1.0 - p)
    noise = mask.astype(x.dtype)
    noise *= scale
    with np.errstate(invalid="ignore"):  # a dropped inf gives NaN (inf * 0), as in torch
        out = np.multiply(x, noise)
    return out, DropoutCache(noise)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """``dx = dout * noise``, ``noise = mask / (1 - p)`` (``dout`` itself when the input passed through)."""
    if cache.noise is None:
        return dout
    with np.errstate(invalid="ignore"):  # a dropped inf in dout gives NaN (inf * 0), as in torch
        return np.multiply(dout, cache.noise)


# ---- channel dropout -------------------------------------------------------------------------------------------------
#: torch's unsigned integer dtypes without a Bernoulli kernel ("not implemented for 'UInt16'"): NotImplementedError
_NO_BERNOULLI = (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64))


def feature_noise_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """torch's ``make_feature_noise``: one value per (sample, channel), ``(N, C, 1, ..., 1)`` for ``(N, C, *)``
    (the shape itself below 2 dims)."""
    return tuple(shape[:2]) + (1,) * (len(shape) - 2)


def _warn_dropout2d_rank(ndim: int) -> None:
    """torch's UserWarnings for an input that is not 4-d (``F.dropout2d`` warns in eval and for p = 0 too)."""
    if ndim not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {ndim}-D input to dropout2d, which is deprecated and will result in an error in "
            "a future release. To retain the behavior and silence this warning, please use dropout instead. Note "
            "that dropout2d exists to provide channel-wise dropout on inputs with 2 spatial dimensions, a channel "
            "dimension, and an optional batch dimension (i.e. 3D or 4D inputs).", UserWarning, stacklevel=3)
    if ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout behavior is "
            "desired - input is interpreted as shape (N, C, L), where C is the channel dim. This behavior will "
            "change in a future release to interpret the input as one without a batch dimension, i.e. shape "
            "(C, H, W). To maintain the 1D channel-wise dropout behavior, please switch to using dropout1d "
            "instead.", UserWarning, stacklevel=3)


def dropout2d_forward(
    x: np.ndarray,
    p: float = 0.5,
    training: bool = True,
    *,
    rng: Optional[np.random.Generator] = None,
    mask: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, DropoutCache]:
    """``y[n, c] = x[n, c] * mask[n, c] / (1 - p)`` in training (whole channels dropped), ``y = x`` otherwise.

    torch's ``F.dropout2d``: the keep-mask has shape ``(N, C, 1, 1)`` (``feature_noise_shape``), drawn as torch
    draws ``input.new_empty((N, C, 1, 1)).bernoulli_(1 - p)``. Any input of at least 2 dims is taken as
    ``(N, C, *)``; torch warns (UserWarning) for an input that is not 4-d, and treats a 3-d input as ``(N, C, L)``,
    not as an unbatched ``(C, H, W)`` — as here.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) (or (N, C, *))
    p : float in [0, 1]
        Drop probability of a channel.
    training : bool
    rng : numpy.random.Generator or handnn.random.TorchGenerator, optional
        Draws the mask when ``mask`` is not given (a ``TorchGenerator(seed)`` gives torch's mask after
        ``torch.manual_seed(seed)``).
    mask : ndarray of bool, shape (N, C, 1, 1), optional
        An explicit keep-mask (e.g. torch's: ``F.dropout2d(ones((N, C, 1, 1)), p) != 0`` from the same seed).

    Returns
    -------
    out : ndarray, shape and dtype of ``x``. With p = 0, in eval or for an empty input it is ``x`` itself (no draw),
        as in torch; with p = 1 it is ``x * 0``.
    cache : DropoutCache (``noise`` of shape (N, C, 1, 1))
    """
    check_dropout_p(p)
    check_ndarray(x, "dropout2d")
    _warn_dropout2d_rank(x.ndim)
    if math.isnan(p):  # it passed torch's Python check; torch's ATen check raises RuntimeError, in eval too
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0 or x.size == 0:  # the input itself, whatever its dtype, as torch returns it
        return x, DropoutCache(None)
    if p == 1 and x.dtype.kind in "biufc":  # x * 0 in the input's dtype, for any rank and dtype, as torch computes
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN is torch's result, not a mistake
            return x * x.dtype.type(0), DropoutCache(np.zeros(feature_noise_shape(x.shape), x.dtype))
    if x.ndim < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    # drawing a mask: torch has no Bernoulli kernel for complex (or wide unsigned) dtypes, cannot scale an integer
    no_kernel = ("complex", "int") if x.dtype in _NO_BERNOULLI else ("complex",)
    refuses = {"int": RuntimeError, "bool": RuntimeError, **dict.fromkeys(no_kernel, NotImplementedError)}
    check_array(x, "dropout2d", refuses=refuses)
    shape = feature_noise_shape(x.shape)
    if mask is None:
        mask = draw_dropout_mask(shape, p, rng, x.dtype)
    else:
        _check_mask(mask, shape, "dropout2d", "the input's (N, C, 1, ...) noise shape")
    return _apply_keep_mask(x, mask, p)


def dropout2d_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """``dx = dout * noise``, ``noise = mask / (1 - p)`` broadcast over each channel (``dout`` itself when the input
    passed through)."""
    if cache.noise is None:
        return dout
    with np.errstate(invalid="ignore"):  # a dropped inf in dout gives NaN (inf * 0), as in torch
        return np.multiply(dout, cache.noise)
