"""``Parameter``: a trainable array with an accumulated gradient, as ``torch.nn.Parameter``."""
from __future__ import annotations

from typing import Optional

import numpy as np


class Parameter:
    """A trainable array.

    Attributes
    ----------
    data : ndarray
        The values; optimizers update it in place, so references to it stay valid.
    grad : ndarray or None
        The gradient accumulated by ``backward`` (None until the first backward, or after
        ``zero_grad(set_to_none=True)``).
    requires_grad : bool
        When False, ``backward`` leaves ``grad`` alone (a frozen parameter).
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad: bool = True) -> None:
        self.data: np.ndarray = data.data if isinstance(data, Parameter) else np.asarray(data)
        self.grad: Optional[np.ndarray] = None
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter containing:\n{self.data!r}"
