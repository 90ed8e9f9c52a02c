"""Scaled dot-product attention (torch's ``F.scaled_dot_product_attention``) and its backward pass.

Every query row is a weighted average of the value rows; the weights are a softmax over the query's similarity to
every key::

    S   = q kᵀ · scale + mask            (..., L, S)   scale = 1 / sqrt(E) unless given
    P   = softmax(S)                     along the last dim (the keys)
    P'  = P ⊙ keep / (1 - p)             dropout on the weights (training only)
    out = P' v                           (..., L, Ev)

and, for an upstream gradient ``dout`` (and optionally one on the weights ``P'``, as ``MultiheadAttention`` returns
them)::

    dv  = P'ᵀ dout
    dP' = dout vᵀ (+ dweights)
    dP  = dP' ⊙ keep / (1 - p)
    dS  = P ⊙ (dP − rowsum(dP ⊙ P))      the softmax's Jacobian
    dq  = dS k · scale
    dk  = dSᵀ q · scale

Masks follow torch's ``scaled_dot_product_attention``: a **bool** mask marks the positions that *take part*
(True = attend; False adds −inf), a **float** mask is added to ``S``; ``is_causal`` masks key ``j > i`` for query ``i``
(``ones(L, S).tril()``, top-left aligned). A query row whose every key is masked gives a zero output and zero
gradients (torch's ``_safe_softmax``), where a plain softmax would give NaN; :class:`handnn.nn.MultiheadAttention`
with ``need_weights=True`` keeps the plain softmax's NaN, as torch's does (``zero_masked_rows=False`` below).

The batch dims ``...`` broadcast as in torch (``k`` and ``v`` may have fewer or size-1 batch dims); the gradients are
summed back to each input's own shape.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import numpy as np

from .._validation import check_array, check_ndarray
from ._kernels import ones, row_dots
from .dropout import draw_dropout_mask


class AttentionCache(NamedTuple):
    """What :func:`scaled_dot_product_attention_backward` needs.

    ``q_scaled`` is ``q · scale`` (so ``dk = dSᵀ q_scaled``), ``weights`` the softmax ``P``, ``noise`` the dropout's
    ``keep / (1 - p)`` (None without dropout), ``dropped`` the weights after dropout ``P'`` (``weights`` itself
    without dropout).
    """

    q_scaled: np.ndarray   # (..., L, E)
    k: np.ndarray          # (..., S, E)
    v: np.ndarray          # (..., S, Ev)
    weights: np.ndarray    # (..., L, S)
    noise: Optional[np.ndarray]
    dropped: np.ndarray
    scale: float
    shapes: Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]  # q, k, v as given


def causal_mask(target_len: int, source_len: int) -> np.ndarray:
    """torch's ``is_causal`` mask: ``ones(L, S, bool).tril(0)`` (True = attend; query i sees keys 0..i)."""
    return np.tri(target_len, source_len, 0, dtype=bool)


def additive_mask(mask: Optional[np.ndarray], dtype: np.dtype, attend_if_true: bool = True) -> Optional[np.ndarray]:
    """A bool or float mask as the float array added to the scores (0 to attend, −inf to mask).

    ``attend_if_true``: torch's SDPA convention (True = attend). ``MultiheadAttention``'s masks use the opposite one
    (True = masked), its caller passes False. A float mask is cast to ``dtype`` and returned as is.
    """
    if mask is None:
        return None
    if mask.dtype == np.bool_:
        blocked = ~mask if attend_if_true else mask
        return np.where(blocked, dtype.type(-np.inf), dtype.type(0))
    return mask.astype(dtype, copy=False)


def _sum_to_shape(grad: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Reduce a broadcast gradient back to ``shape`` (sum over the dims broadcasting added or expanded)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead))) if lead else grad
    expanded = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=expanded, keepdims=True) if expanded else grad


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: Optional[np.ndarray], dropout_p: float,
                      scale: float, *, zero_masked_rows: bool, rng=None,
                      dropout_mask: Optional[np.ndarray] = None) -> Tuple[np.ndarray, AttentionCache]:
    """The attention itself, on checked arrays: ``mask`` is additive (float, broadcastable to ``(..., L, S)``) or
    None. ``zero_masked_rows``: a fully masked row gives zeros (SDPA's ``_safe_softmax``) instead of NaN (a plain
    softmax, ``MultiheadAttention(need_weights=True)``). The weights after dropout are ``cache.dropped``."""
    shapes = (q.shape, k.shape, v.shape)
    q_scaled = q * q.dtype.type(scale)
    scores = q_scaled @ np.swapaxes(k, -1, -2)                              # S = q kᵀ · scale
    if mask is not None:                                                    #     + mask
        if np.broadcast_shapes(scores.shape, mask.shape) == scores.shape:
            scores += mask
        else:  # the mask (or v) brings batch dims q and k do not have
            scores = scores + mask
    with np.errstate(invalid="ignore"):                                     # P = softmax(S): a row of −inf is NaN
        row_max = scores.max(axis=-1, keepdims=True) if scores.shape[-1] else np.zeros_like(scores[..., :1])
        weights = np.subtract(scores, row_max, out=scores)
        np.exp(weights, out=weights)
        weights /= (weights @ ones(weights.shape[-1], weights.dtype))[..., None]  # row sums by BLAS
    if zero_masked_rows and mask is not None:
        masked_rows = np.isneginf(row_max)                                  # every key masked: zeros, not NaN
        if masked_rows.any():
            weights[np.broadcast_to(masked_rows, weights.shape)] = 0
    noise = None
    dropped = weights
    if dropout_p > 0:                                                       # P' = P ⊙ keep / (1 - p)
        if dropout_mask is None:  # no generator given: a fresh one (never NumPy's global state)
            rng = np.random.default_rng() if rng is None else rng
            dropout_mask = draw_dropout_mask(weights.shape, dropout_p, rng, weights.dtype)
        elif not isinstance(dropout_mask, np.ndarray) or dropout_mask.dtype != np.bool_:
            raise TypeError("attention dropout_mask must be a boolean ndarray, but got "
                            f"{getattr(dropout_mask, 'dtype', type(dropout_mask).__name__)}")
        elif dropout_mask.shape != weights.shape:
            raise ValueError(f"attention dropout_mask of shape {dropout_mask.shape} does not match the attention "
                             f"weights' shape {weights.shape}")
        if dropout_p >= 1:
            noise = np.zeros(weights.shape, weights.dtype)
        else:
            noise = dropout_mask.astype(weights.dtype)
            noise *= weights.dtype.type(1) / weights.dtype.type(1.0 - dropout_p)
        dropped = weights * noise
    out = dropped @ v                                                       # out = P' v
    return out, AttentionCache(q_scaled, k, v, weights, noise, dropped, scale, shapes)


def attention_backward(dout: np.ndarray, cache: AttentionCache, dweights: Optional[np.ndarray] = None
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`attention_forward`; ``dweights`` is a gradient on the weights after dropout (``P'``),
    broadcastable to ``(..., L, S)``, or None."""
    q_scaled, k, v, weights, noise, dropped, scale, (q_shape, k_shape, v_shape) = cache
    dv = np.swapaxes(dropped, -1, -2) @ dout                                # dv = P'ᵀ dout
    dprobs = dout @ np.swapaxes(v, -1, -2)                                  # dP' = dout vᵀ
    if dweights is not None:
        dprobs += dweights
    if noise is not None:                                                   # dP = dP' ⊙ keep / (1 - p)
        dprobs *= noise
    with np.errstate(invalid="ignore"):                                     # NaN rows stay NaN, as in torch
        if dprobs.shape == weights.shape:  # row dot products by BLAS
            rows = (math.prod(dprobs.shape[:-1]), dprobs.shape[-1])
            row_dot = row_dots(dprobs.reshape(rows), weights.reshape(rows)).reshape(dprobs.shape[:-1] + (1,))
        else:  # the weights broadcast against v's extra batch dims
            row_dot = np.einsum("...ij,...ij->...i", dprobs, weights)[..., None]
        dscores = np.subtract(dprobs, row_dot, out=dprobs)                  # dS = P ⊙ (dP − rowsum(dP ⊙ P))
        dscores *= weights
    dq = dscores @ k                                                        # dq = dS k · scale
    dq *= dq.dtype.type(scale)
    dk = np.swapaxes(dscores, -1, -2) @ q_scaled                            # dk = dSᵀ q · scale
    return _sum_to_shape(dq, q_shape), _sum_to_shape(dk, k_shape), _sum_to_shape(dv, v_shape)


# ---- torch's F.scaled_dot_product_attention ----------------------------------------------------------------------
def _check(q: object, k: object, v: object, attn_mask: object, dropout_p: float, is_causal: bool) -> None:
    """torch's checks of ``scaled_dot_product_attention`` (its classes; expected vs given in the messages)."""
    op = "scaled_dot_product_attention"
    for name, x in (("query", q), ("key", k), ("value", v)):
        check_ndarray(x, op, name)
    if not (q.dtype == k.dtype == v.dtype):
        raise RuntimeError(f"Expected query, key, and value to have the same dtype, but got query.dtype: {q.dtype} "
                           f"key.dtype: {k.dtype} and value.dtype: {v.dtype} instead.")
    for name, x in (("query", q), ("key", k), ("value", v)):
        check_array(x, op, name=name)
    if min(q.ndim, k.ndim, v.ndim) < 2:
        raise RuntimeError(f"Expected query, key, and value to all be at least 2 dimensional, but got query.dim: "
                           f"{q.ndim} key.dim: {k.ndim} and value.dim: {v.ndim} instead.")
    if k.shape[-1] != q.shape[-1]:
        raise RuntimeError(f"Expected key's last dim (the embedding) to equal query's, {q.shape[-1]}, but got key "
                           f"of shape {list(k.shape)}")
    if v.shape[-2] != k.shape[-2]:
        raise RuntimeError(f"Expected value's sequence length to equal key's, {k.shape[-2]}, but got value of shape "
                           f"{list(v.shape)}")
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise RuntimeError(f"The batch dims of query {list(q.shape[:-2])}, key {list(k.shape[:-2])} and value "
                           f"{list(v.shape[:-2])} must be broadcastable") from None
    if not (dropout_p <= 1):  # NaN too; a negative p means no dropout, as torch reads it
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    if attn_mask is None:
        return
    check_ndarray(attn_mask, op, "attn_mask")
    if attn_mask.dtype != np.bool_ and attn_mask.dtype.kind != "f":
        raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                           f"attn_mask.dtype: {attn_mask.dtype} and query.dtype: {q.dtype} instead.")
    if is_causal:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    scores = (*batch, q.shape[-2], k.shape[-2])
    try:
        if np.broadcast_shapes(attn_mask.shape, scores) != scores:
            raise ValueError
    except ValueError:
        raise RuntimeError(f"attn_mask of shape {list(attn_mask.shape)} does not broadcast to the attention "
                           f"weights' shape {list(scores)}") from None


def scaled_dot_product_attention_forward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: Optional[np.ndarray] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: Optional[float] = None,
    *,
    rng=None,
    dropout_mask: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, AttentionCache]:
    """``out = dropout(softmax(q kᵀ · scale + mask)) v``, torch's ``F.scaled_dot_product_attention``.

    Parameters
    ----------
    q : ndarray, shape (..., L, E)
    k : ndarray, shape (..., S, E)
    v : ndarray, shape (..., S, Ev)
        The batch dims ``...`` broadcast against each other.
    attn_mask : ndarray of bool or float, broadcastable to (..., L, S), optional
        bool: True = take part in attention (False adds −inf); float: added to the scores.
    dropout_p : float
        Drop probability of each attention weight (no dropout at p <= 0, as torch).
    is_causal : bool
        Query ``i`` attends to keys ``0..i`` only (``tril`` of an ``(L, S)`` mask); not together with ``attn_mask``.
    scale : float, optional
        ``1 / sqrt(E)`` when None.
    rng : numpy.random.Generator or handnn.random.TorchGenerator, keyword-only
        Draws the dropout mask when ``dropout_mask`` is not given (a ``TorchGenerator(seed)`` draws torch's, after
        ``torch.manual_seed(seed)``); None: a fresh ``np.random.default_rng()``.
    dropout_mask : ndarray of bool, shape (..., L, S), keyword-only
        An explicit keep-mask for the attention weights.

    Returns
    -------
    out : ndarray, shape (..., L, Ev)
        A row whose every key is masked is 0 (torch's safe softmax), with zero gradients.
    cache : AttentionCache
    """
    _check(q, k, v, attn_mask, dropout_p, is_causal)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    mask = causal_mask(q.shape[-2], k.shape[-2]) if is_causal else attn_mask
    return attention_forward(q, k, v, additive_mask(mask, q.dtype), dropout_p, scale, zero_masked_rows=True,
                             rng=rng, dropout_mask=dropout_mask)


def scaled_dot_product_attention_backward(dout: np.ndarray, cache: AttentionCache
                                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`scaled_dot_product_attention_forward`.

    ``dv = P'ᵀ dout``, ``dP = (dout vᵀ) ⊙ keep / (1 - p)``, ``dS = P ⊙ (dP − rowsum(dP ⊙ P))``,
    ``dq = dS k · scale``, ``dk = dSᵀ q · scale``.

    Returns
    -------
    dq, dk, dv : ndarrays, the shapes of q, k and v (summed over the batch dims they were broadcast along)
    """
    return attention_backward(dout, cache)
