"""``Dropout`` and ``Dropout2d`` with torch's drop probability ``p``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ... import functional as F
from ...functional.dropout import check_dropout_p
from .linear import default_rng
from .module import Module


class _DropoutNd(Module):
    """What torch's dropout modules share (torch's ``_DropoutNd``): ``p``, ``inplace``, the generator, an injected
    mask for the next training forward, and ``mask``, read from the last forward's cache."""

    def __init__(self, p: float = 0.5, inplace: bool = False, *,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        check_dropout_p(p)
        if inplace:
            raise NotImplementedError("inplace=True is not supported: handnn never modifies its input")
        self.p = p
        self.inplace = inplace
        self.rng = default_rng(rng)
        self._next_mask: Optional[np.ndarray] = None

    def use_mask(self, mask: np.ndarray) -> None:
        """Apply ``mask`` (boolean keep-mask) in the next training forward instead of drawing one."""
        self._next_mask = mask

    def _keep(self, cache) -> None:
        if self.training:  # an eval forward leaves the injected mask for the next training forward
            self._next_mask = None
        self._cache = cache

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The keep-mask of the last forward (a new boolean array, from the cached ``noise``), or None."""
        cache = self._cache
        return None if cache is None else cache.mask

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` in training and scale the rest by ``1 / (1 - p)``.

    Attributes
    ----------
    mask : ndarray of bool or None
        The keep-mask applied by the last training forward (None when the input passed through, or before any
        forward); read-only, computed from the cache on each access.

    Parameters
    ----------
    p : float in [0, 1]
        Drop probability (a course's ``keep_prob`` is ``1 - p``).
    inplace : bool
        Accepted for torch's signature; only False is supported.
    rng : numpy.random.Generator, keyword-only
        Draws the masks.
    """

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = F.dropout_forward(input, self.p, self.training, rng=self.rng, mask=self._next_mask)
        self._keep(cache)
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.dropout_backward(grad_output, self._saved())


class Dropout2d(_DropoutNd):
    """Zero each channel (a whole ``(H, W)`` map) with probability ``p`` in training and scale the rest by
    ``1 / (1 - p)``: torch's ``nn.Dropout2d``.

    The keep-mask has one value per (sample, channel), shape ``(N, C, 1, 1)``. As torch does, a 3-d input is taken
    as ``(N, C, L)`` (not as an unbatched ``(C, H, W)``), and an input that is not 4-d gets torch's UserWarning.

    Attributes
    ----------
    mask : ndarray of bool, shape (N, C, 1, 1), or None
        The keep-mask applied by the last training forward (None when the input passed through, or before any
        forward); ``use_mask`` takes one of that shape.

    Parameters
    ----------
    p : float in [0, 1]
        Drop probability of a channel.
    inplace : bool
        Accepted for torch's signature; only False is supported.
    rng : numpy.random.Generator or handnn.random.TorchGenerator, keyword-only
        Draws the masks (a ``TorchGenerator(seed)`` draws torch's after ``torch.manual_seed(seed)``).
    """

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = F.dropout2d_forward(input, self.p, self.training, rng=self.rng, mask=self._next_mask)
        self._keep(cache)
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.dropout2d_backward(grad_output, self._saved())
