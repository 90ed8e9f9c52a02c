"""``Dropout`` with torch's drop probability ``p``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ... import functional as F
from ...functional.dropout import check_dropout_p
from .linear import default_rng
from .module import Module


class Dropout(Module):
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

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = F.dropout_forward(input, self.p, self.training, rng=self.rng, mask=self._next_mask)
        if self.training:  # an eval forward leaves the injected mask for the next training forward
            self._next_mask = None
        self._cache = cache
        return out

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The keep-mask of the last forward (a new boolean array, from the cached ``noise``), or None."""
        cache = self._cache
        return None if cache is None else cache.mask

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.dropout_backward(grad_output, self._saved())

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
