"""Embedding lookup ``out = weight[indices]`` and its backward pass (torch's ``F.embedding``, dense gradient)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from .._validation import check_array, check_ndarray
from ._kernels import scatter_add_rows

#: the index dtypes torch's embedding accepts (``Long``, ``Int``); it refuses every other integer width
INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


class EmbeddingCache(NamedTuple):
    """What :func:`embedding_backward` needs: the indices, the weight's shape and dtype, the padding row."""

    indices: np.ndarray
    weight_shape: Tuple[int, int]
    dtype: np.dtype
    padding_idx: Optional[int]  # normalised to [0, num_embeddings), or None


def normalize_padding_idx(padding_idx: Optional[int], num_embeddings: int) -> Optional[int]:
    """torch's rule: a negative ``padding_idx`` counts from the end; outside ``[-num, num)`` is refused.

    Raises
    ------
    AssertionError
        ``Padding_idx must be within num_embeddings`` (torch raises this class explicitly).
    """
    if padding_idx is None:
        return None
    if padding_idx > 0 and padding_idx >= num_embeddings:
        raise AssertionError(f"Padding_idx must be within num_embeddings (got padding_idx={padding_idx}, "
                             f"num_embeddings={num_embeddings})")
    if padding_idx < 0:
        if padding_idx < -num_embeddings:
            raise AssertionError(f"Padding_idx must be within num_embeddings (got padding_idx={padding_idx}, "
                                 f"num_embeddings={num_embeddings})")
        padding_idx = num_embeddings + padding_idx
    return int(padding_idx)


def check_indices(indices: object, num_embeddings: int) -> np.ndarray:
    """``indices`` if it is an int32/int64 ndarray of values in ``[0, num_embeddings)``; torch's error otherwise."""
    check_ndarray(indices, "embedding", "indices")
    if indices.dtype not in INDEX_DTYPES:
        raise RuntimeError(
            "Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; "
            f"but got {indices.dtype} instead (while checking arguments for embedding): cast the indices with "
            ".astype(np.int64)"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= num_embeddings):
        bad = indices[(indices < 0) | (indices >= num_embeddings)].flat[0]
        raise IndexError(f"index out of range in self (index {bad}, expected 0 <= index < {num_embeddings})")
    return indices


def embedding_forward(
    indices: np.ndarray, weight: np.ndarray, padding_idx: Optional[int] = None
) -> Tuple[np.ndarray, EmbeddingCache]:
    """Rows of ``weight`` picked by ``indices``: ``out[..., :] = weight[indices[...], :]``.

    Parameters
    ----------
    indices : ndarray of int64 or int32, any shape (0-d too)
        Values in ``[0, num_embeddings)``; negative values are out of range (no wrap-around), as in torch.
    weight : ndarray, shape (num_embeddings, embedding_dim), float32 or float64
    padding_idx : int, optional
        The row whose gradient stays zero; negative counts from the end. The forward pass reads it like any other.

    Returns
    -------
    out : ndarray, shape indices.shape + (embedding_dim,), a new array (never a view of ``weight``)
    cache : EmbeddingCache

    Raises
    ------
    RuntimeError
        ``weight`` not 2-D; indices of another dtype than int32/int64 (torch's message; uint8, int16, bool and
        floating indices included).
    IndexError
        An index outside ``[0, num_embeddings)``: ``index out of range in self``.
    AssertionError
        ``padding_idx`` outside ``[-num_embeddings, num_embeddings)``.
    TypeError
        ``indices`` or ``weight`` not an ndarray, or ``weight`` not float32/float64.
    """
    check_ndarray(weight, "embedding", "weight")
    num_embeddings = weight.shape[0] if weight.ndim else 0
    padding_idx = normalize_padding_idx(padding_idx, num_embeddings)
    if weight.ndim != 2:
        raise RuntimeError(f"'weight' must be 2-D, but got a weight of shape {weight.shape}")
    check_array(weight, "embedding", refuses={}, name="weight")
    check_indices(indices, num_embeddings)
    out = np.take(weight, indices, axis=0)  # a copy, also for 0-d indices (where ``weight[i]`` is a view)
    return out, EmbeddingCache(indices, weight.shape, weight.dtype, padding_idx)


def embedding_backward(dout: np.ndarray, cache: EmbeddingCache) -> np.ndarray:
    """dL/dweight of :func:`embedding_forward`: row ``k`` is the sum of ``dout`` over the positions of index ``k``.

    Repeated indices are summed in the order they occur, starting from zero (``np.add.at``'s order, vectorised by
    :func:`scatter_add_rows`), which is the order of torch's CPU kernel (``embedding_dense_backward``): bit for bit
    equal. Positions holding ``padding_idx`` are skipped, so its row is exactly 0 (even where ``dout`` is NaN). A
    ``dout`` of the other float dtype is cast to the weight's first, as autograd casts a gradient to its output's
    dtype.

    Returns
    -------
    dweight : ndarray, shape (num_embeddings, embedding_dim), the weight's dtype

    Raises
    ------
    RuntimeError
        ``dout``'s shape is not ``indices.shape + (embedding_dim,)`` (autograd's message).
    """
    indices, (num_embeddings, dim), dtype, padding_idx = cache
    check_ndarray(dout, "embedding_backward", "grad_output")
    expected = indices.shape + (dim,)
    if dout.shape != expected:
        raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of {dout.shape} and output[0] has a "
                           f"shape of {expected}.")
    check_array(dout, "embedding_backward", refuses={}, name="grad_output")
    rows = indices.reshape(-1)
    grads = dout.reshape(-1, dim)
    if padding_idx is not None:
        keep = rows != padding_idx
        if not keep.all():
            rows, grads = rows[keep], grads[keep]
    if grads.dtype != dtype:
        grads = grads.astype(dtype)
    dweight = np.zeros((num_embeddings, dim), dtype)
    scatter_add_rows(dweight, rows, grads)
    return dweight
