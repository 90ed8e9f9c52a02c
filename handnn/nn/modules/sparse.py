"""``Embedding``: a lookup table of trainable vectors, as ``torch.nn.Embedding``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ... import init
from ..._validation import check_array
from ...functional import sparse as F_sparse
from ..parameter import Parameter
from .module import Module


def _default_rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    """The generator to draw from: the one given, else a fresh one (never NumPy's global state)."""
    return np.random.default_rng() if rng is None else rng


class Embedding(Module):
    """``out = weight[indices]``: row ``k`` of ``weight`` for each index ``k``, over indices of any shape.

    Initialised as torch does: ``weight`` ~ N(0, 1) by ``init.normal_``, then the ``padding_idx`` row set to 0
    (so ``rng=TorchGenerator(seed)`` gives the weight of ``torch.manual_seed(seed); torch.nn.Embedding(...)``).
    ``backward(dout)`` adds dL/dweight into ``weight.grad`` (repeated indices summed, the ``padding_idx`` row
    zero) and returns None: integer indices have no gradient.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
    padding_idx : int, optional
        Its row gets no gradient (stays a fixed "pad"); negative counts from the end, as in torch.
    max_norm, norm_type, scale_grad_by_freq, sparse
        torch's options. ``norm_type`` is kept (it only acts with ``max_norm``); ``max_norm`` other than None and
        ``scale_grad_by_freq`` or ``sparse`` true are not implemented (``NotImplementedError`` naming the option).
    _weight : ndarray, optional
        The initial weight, of shape (num_embeddings, embedding_dim) (then nothing is drawn and the padding row is
        kept as given, as in torch). It is **copied**: torch's Parameter would share the caller's memory, and
        handnn never modifies a caller's array (an optimizer step would). Its dtype (float32 or float64) is kept
        and ``dtype`` ignored, as torch ignores ``dtype`` beside ``_weight``.
    _freeze : bool
        ``weight.requires_grad = not _freeze``.
    dtype : numpy dtype, keyword-only (float64 by default)
    rng : numpy.random.Generator or TorchGenerator, keyword-only
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 max_norm: Optional[float] = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Optional[np.ndarray] = None, _freeze: bool = False, *,
                 dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        for option, value, default in (("max_norm", max_norm, None), ("scale_grad_by_freq", scale_grad_by_freq, False),
                                       ("sparse", sparse, False)):
            if value is not default and value != default:
                raise NotImplementedError(f"Embedding({option}={value!r}) is not implemented by handnn "
                                          f"(only {option}={default!r})")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = F_sparse.normalize_padding_idx(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            if num_embeddings < 0 or embedding_dim < 0:
                raise RuntimeError(f"Trying to create tensor with negative dimension: num_embeddings={num_embeddings}"
                                   f", embedding_dim={embedding_dim}")
            self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype), requires_grad=not _freeze)
            self.reset_parameters(rng=rng)
        else:
            weight = _weight.data if isinstance(_weight, Parameter) else _weight
            check_array(weight, "Embedding", refuses={}, name="_weight")
            if list(weight.shape) != [num_embeddings, embedding_dim]:
                raise AssertionError(f"Shape of weight does not match num_embeddings and embedding_dim (weight "
                                     f"{weight.shape}, expected ({num_embeddings}, {embedding_dim}))")
            self.weight = Parameter(weight.copy(), requires_grad=not _freeze)

    def reset_parameters(self, rng: Optional[np.random.Generator] = None) -> None:
        """Redraw ``weight`` from N(0, 1) and zero the padding row (torch's ``reset_parameters``)."""
        init.normal_(self.weight, rng=_default_rng(rng))
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings: np.ndarray, freeze: bool = True, padding_idx: Optional[int] = None,
                        max_norm: Optional[float] = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """An Embedding holding a copy of ``embeddings`` (2-D, float32 or float64; its dtype is kept).

        ``freeze=True`` (the default) gives ``weight.requires_grad = False``: ``backward`` then leaves
        ``weight.grad`` as None. The padding row is kept as given (not zeroed), as in torch.

        Raises
        ------
        AssertionError
            ``embeddings`` is not 2-dimensional (torch's class and message).
        """
        if np.ndim(embeddings) != 2:
            raise AssertionError(f"Embeddings parameter is expected to be 2-dimensional, got shape "
                                 f"{np.shape(embeddings)}")
        rows, cols = np.shape(embeddings)
        return cls(num_embeddings=rows, embedding_dim=cols, _weight=embeddings, _freeze=freeze,
                   padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = F_sparse.embedding_forward(input, self._parameters["weight"].data, self.padding_idx)
        self._cache = cache
        return out

    def backward(self, grad_output: np.ndarray) -> None:
        """Add dL/dweight into ``weight.grad`` (unless the weight is frozen); returns None (indices are integers)."""
        cache = self._saved()
        weight = self._parameters["weight"]
        if weight.requires_grad:
            # a fresh array of backward's: .grad may take it without a copy
            self._accumulate(weight, F_sparse.embedding_backward(grad_output, cache), owned=True)
        return None

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s
