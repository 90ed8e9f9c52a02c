"""``MultiheadAttention``: torch's module, with its parameters, initialisation, masks and outputs."""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as np

from ... import init
from ..._validation import check_array, check_ndarray
from ...functional._kernels import col_sums
from ...functional.attention import AttentionCache, additive_mask, attention_backward, attention_forward, causal_mask
from ..parameter import Parameter
from .linear import Linear, default_rng
from .module import Module


def _split_heads(x: np.ndarray, seq_first: bool, num_heads: int) -> np.ndarray:
    """``(T, N, E)`` (seq_first) or ``(N, T, E)`` as ``(N, heads, T, E / heads)`` (a view)."""
    if seq_first:
        x = x.swapaxes(0, 1)
    n, t, e = x.shape
    return x.reshape(n, t, num_heads, e // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x: np.ndarray, seq_first: bool) -> np.ndarray:
    """``(N, heads, T, D)`` as a new ``(T · N, heads · D)`` (seq_first) or ``(N · T, heads · D)`` array."""
    x = x.transpose(2, 0, 1, 3) if seq_first else x.transpose(0, 2, 1, 3)
    return x.reshape(x.shape[0] * x.shape[1], x.shape[2] * x.shape[3])


def _pad_last(mask: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """torch's ``pad(mask, (0, 1))``: one more key, not masked (0)."""
    if mask is None:
        return None
    return np.concatenate([mask, np.zeros(mask.shape[:-1] + (1,), mask.dtype)], axis=-1)


class MHACache(NamedTuple):
    """What ``MultiheadAttention.backward`` needs: the attention's cache, the inputs as ``(T · N, E)`` rows in their
    own layout, their shapes (batched), the layout, and how the weights were returned (None: not returned)."""

    attention: AttentionCache
    inputs: Tuple[np.ndarray, np.ndarray, np.ndarray]
    shapes: Tuple[Tuple[int, ...], ...]
    seq_first: bool
    batched: bool
    averaged: Optional[bool]


class MultiheadAttention(Module):
    """Attention over ``num_heads`` subspaces of size ``embed_dim / num_heads``, torch's ``nn.MultiheadAttention``::

        q, k, v = query W_qᵀ + b_q, key W_kᵀ + b_k, value W_vᵀ + b_v        (then split into heads)
        head_h  = dropout(softmax(q_h k_hᵀ / sqrt(head_dim) + mask)) v_h
        out     = concat(head_1, ..., head_H) W_oᵀ + b_o                     (``out_proj``, a child ``Linear``)

    Parameters and state_dict keys are torch's: ``in_proj_weight`` (3E, E) — or ``q_proj_weight`` (E, E),
    ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim) when kdim or vdim differ from E — ``in_proj_bias``
    (3E), ``bias_k`` and ``bias_v`` (1, 1, E) with ``add_bias_kv``, ``out_proj.weight``, ``out_proj.bias``.
    Initialised as torch does, draw for draw: ``out_proj`` as a ``Linear`` (weight, then bias), then
    ``xavier_uniform_`` of ``in_proj_weight`` (or of q, k, v in that order), both biases set to 0, then
    ``xavier_normal_`` of ``bias_k`` and ``bias_v`` — so ``rng=TorchGenerator(seed)`` gives the parameters of
    ``torch.manual_seed(seed); torch.nn.MultiheadAttention(...)``.

    Masks use torch's ``MultiheadAttention`` convention: a **bool** mask marks what is *masked* (True = ignore: the
    opposite of ``scaled_dot_product_attention``'s), a float mask is added to the scores.

    Parameters
    ----------
    embed_dim, num_heads : int
        ``embed_dim`` must be divisible by ``num_heads`` (torch's ``AssertionError`` otherwise).
    dropout : float
        Drop probability of the attention weights in training.
    bias : bool
        ``in_proj_bias`` and ``out_proj.bias``.
    add_bias_kv : bool
        Learnable ``bias_k``, ``bias_v`` appended to the keys and values as one more source position.
    add_zero_attn : bool
        One more source position of zeros (after ``bias_k``/``bias_v``).
    kdim, vdim : int, optional
        Feature sizes of key and value (``embed_dim`` when None).
    batch_first : bool
        ``(N, L, E)`` inputs and outputs instead of ``(L, N, E)`` (ignored for unbatched ``(L, E)`` inputs).
    dtype : numpy dtype, keyword-only
    rng : numpy.random.Generator or handnn.random.TorchGenerator, keyword-only
        Draws the initial parameters, then the dropout masks of the attention weights.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, batch_first: bool = False, *, dtype=np.float64,
                 rng: Optional[np.random.Generator] = None) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                             f"num_heads={num_heads} instead")
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError(f"embed_dim must be divisible by num_heads, but got embed_dim={embed_dim} and "
                                 f"num_heads={num_heads}")
        self.rng = default_rng(rng)
        self._next_mask: Optional[np.ndarray] = None
        # parameters registered in torch's order, so state_dict() lists torch's keys in torch's order
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(np.empty((embed_dim, embed_dim), dtype))
            self.k_proj_weight = Parameter(np.empty((embed_dim, self.kdim), dtype))
            self.v_proj_weight = Parameter(np.empty((embed_dim, self.vdim), dtype))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), dtype))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.empty(3 * embed_dim, dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, rng=self.rng)  # draws, as torch's
        if add_bias_kv:
            self.bias_k = Parameter(np.empty((1, 1, embed_dim), dtype))
            self.bias_v = Parameter(np.empty((1, 1, embed_dim), dtype))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torch's ``_reset_parameters``, draw for draw (from ``self.rng``)."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight, rng=self.rng)
        else:
            init.xavier_uniform_(self.q_proj_weight, rng=self.rng)
            init.xavier_uniform_(self.k_proj_weight, rng=self.rng)
            init.xavier_uniform_(self.v_proj_weight, rng=self.rng)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k, rng=self.rng)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v, rng=self.rng)

    def use_mask(self, mask: np.ndarray) -> None:
        """Keep-mask (bool) of the attention weights for the next training forward with dropout, instead of a draw:
        shape ``(N, num_heads, L, S')`` (``(num_heads, L, S')`` unbatched), ``S'`` counting ``bias_k`` and the zero
        position. torch draws it as ``empty((N · num_heads, L, S'), dtype).bernoulli_(1 - dropout)``."""
        self._next_mask = mask

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The keep-mask of the last forward's attention dropout (None without dropout)."""
        cache = self._cache
        if cache is None or cache.attention.noise is None:
            return None
        keep = cache.attention.noise != 0
        return keep if cache.batched else keep[0]

    # ---- the weights of q, k and v ------------------------------------------------------------------------------
    def _projections(self) -> Tuple[Tuple[np.ndarray, ...], Tuple[Optional[np.ndarray], ...]]:
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight.data
            weights = (w[:e], w[e:2 * e], w[2 * e:])
        else:
            weights = (self.q_proj_weight.data, self.k_proj_weight.data, self.v_proj_weight.data)
        b = None if self.in_proj_bias is None else self.in_proj_bias.data
        biases = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        return weights, biases

    # ---- checks, in torch's order --------------------------------------------------------------------------------
    def _canonical_mask(self, mask: Optional[np.ndarray], name: str, other: Optional[np.ndarray], other_name: str,
                        dtype: np.dtype) -> Optional[np.ndarray]:
        """torch's ``_canonical_mask``: bool or float only (AssertionError), a warning when the two masks' types
        differ; a bool mask becomes −inf where True."""
        if mask is None:
            return None
        check_ndarray(mask, "multi_head_attention_forward", name)
        if mask.dtype != np.bool_ and mask.dtype.kind != "f":
            raise AssertionError(f"only bool and floating types of {name} are supported, but got {mask.dtype}")
        if other is not None and other.dtype != mask.dtype:
            warnings.warn(f"Support for mismatched {name} and {other_name} is deprecated. Use same type for both "
                          "instead.", UserWarning, stacklevel=3)
        if mask.dtype.kind == "f" and mask.dtype != dtype:
            raise RuntimeError(f"Expected {name} of the query's dtype {dtype}, but got {mask.dtype}")
        return additive_mask(mask, dtype, attend_if_true=False)

    def _check(self, query, key, value, key_padding_mask, attn_mask, is_causal) -> bool:
        op = "multi_head_attention_forward"
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_ndarray(x, op, name)
        if query.ndim == 3:
            if key.ndim != 3 or value.ndim != 3:
                raise AssertionError("For batched (3-D) `query`, expected `key` and `value` to be 3-D but found "
                                     f"{key.ndim}-D and {value.ndim}-D tensors respectively")
            if key_padding_mask is not None and key_padding_mask.ndim != 2:
                raise AssertionError("For batched (3-D) `query`, expected `key_padding_mask` to be `None` or 2-D but "
                                     f"found {key_padding_mask.ndim}-D tensor instead")
            if attn_mask is not None and attn_mask.ndim not in (2, 3):
                raise AssertionError("For batched (3-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D but "
                                     f"found {attn_mask.ndim}-D tensor instead")
        elif query.ndim == 2:
            if key.ndim != 2 or value.ndim != 2:
                raise AssertionError("For unbatched (2-D) `query`, expected `key` and `value` to be 2-D but found "
                                     f"{key.ndim}-D and {value.ndim}-D tensors respectively")
            if key_padding_mask is not None and key_padding_mask.ndim != 1:
                raise AssertionError("For unbatched (2-D) `query`, expected `key_padding_mask` to be `None` or 1-D "
                                     f"but found {key_padding_mask.ndim}-D tensor instead")
            if attn_mask is not None:
                if attn_mask.ndim not in (2, 3):
                    raise AssertionError("For unbatched (2-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D "
                                         f"but found {attn_mask.ndim}-D tensor instead")
                expected = (self.num_heads, query.shape[0], key.shape[0])
                if attn_mask.ndim == 3 and attn_mask.shape != expected:
                    raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got {attn_mask.shape}")
        else:
            raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D "
                                 "query tensor")
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                               "method `generate_square_subsequent_mask` to create this mask.")
        if query.shape[-1] != self.embed_dim:
            raise AssertionError(f"was expecting embedding dimension of {self.embed_dim}, but got "
                                 f"{query.shape[-1]}")
        if self._qkv_same_embed_dim:
            if key.shape != value.shape:
                raise AssertionError(f"key shape {key.shape} does not match value shape {value.shape}")
        elif key.shape[:-1] != value.shape[:-1]:
            raise AssertionError(f"key's sequence and batch dims {key.shape[:-1]} do not match value's "
                                 f"{value.shape[:-1]}")
        weights, _ = self._projections()
        for name, x, w in (("query", query, weights[0]), ("key", key, weights[1]), ("value", value, weights[2])):
            check_array(x, op, name=name)
            if x.dtype != w.dtype:
                raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {x.dtype} ({name}) and "
                                   f"{w.dtype} (the weights)")
            if x.shape[-1] != w.shape[1]:
                raise AssertionError(f"expecting {name} weights shape of {(self.embed_dim, x.shape[-1])}, but got "
                                     f"{w.shape}")
        return query.ndim == 3

    # ---- forward / backward -----------------------------------------------------------------------------------------
    def forward(self, query: np.ndarray, key: np.ndarray, value: np.ndarray,
                key_padding_mask: Optional[np.ndarray] = None, need_weights: bool = True,
                attn_mask: Optional[np.ndarray] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Attend from ``query`` to ``key``/``value``; returns ``(attn_output, attn_weights)`` as torch.

        Parameters
        ----------
        query : ndarray, shape (L, N, E) — (N, L, E) with batch_first — or (L, E) unbatched
        key : ndarray, shape (S, N, kdim) — (N, S, kdim) — or (S, kdim)
        value : ndarray, shape (S, N, vdim) — (N, S, vdim) — or (S, vdim)
        key_padding_mask : ndarray of bool or float, shape (N, S) or (S,), optional
            bool: True = this key is padding (ignored); float: added to the scores.
        need_weights : bool
            Return the attention weights (after dropout). False uses torch's ``scaled_dot_product_attention``
            path: a query whose every key is masked then gives 0 instead of NaN, and ``is_causal`` without a
            ``key_padding_mask`` applies the causal mask *instead of* ``attn_mask``, as torch does.
        attn_mask : ndarray of bool or float, shape (L, S) or (N · num_heads, L, S) ((num_heads, L, S) unbatched)
            bool: True = not allowed to attend; float: added to the scores.
        average_attn_weights : bool
            The weights averaged over heads, (N, L, S'), instead of per head, (N, num_heads, L, S').
        is_causal : bool
            A hint that ``attn_mask`` is the causal mask (required with it, as torch).

        Returns
        -------
        attn_output : ndarray, the shape of ``query`` with E features
        attn_weights : ndarray or None
            ``S' = S`` (+ 1 with ``add_bias_kv``, + 1 with ``add_zero_attn``); no batch dim for unbatched input.
        """
        # torch's MultiheadAttention.forward canonicalises both masks (bool -> float) before the functional's checks
        # (a query that is not a float array is refused by those checks)
        kpm = am = None
        if isinstance(query, np.ndarray) and query.dtype.kind == "f":
            kpm = self._canonical_mask(key_padding_mask, "key_padding_mask", attn_mask, "attn_mask", query.dtype)
            am = self._canonical_mask(attn_mask, "attn_mask", None, "", query.dtype)
        batched = self._check(query, key, value, key_padding_mask, attn_mask, is_causal)
        dtype = query.dtype
        if not batched:
            query, key, value = query[:, None], key[:, None], value[:, None]  # (T, 1, E): seq first
            kpm = None if kpm is None else kpm[None]
        seq_first = not (self.batch_first and batched)
        n = query.shape[1] if seq_first else query.shape[0]
        tgt_len = query.shape[0] if seq_first else query.shape[1]
        src_len = key.shape[0] if seq_first else key.shape[1]
        heads, e = self.num_heads, self.embed_dim
        if is_causal and kpm is None and not need_weights:
            am = None  # torch hands is_causal to scaled_dot_product_attention and drops attn_mask, unchecked
        if am is not None:
            expected = (tgt_len, src_len) if am.ndim == 2 else (n * heads, tgt_len, src_len)
            if am.shape != expected:
                raise RuntimeError(f"The shape of the {am.ndim}D attn_mask is {am.shape}, but should be {expected}.")
            am = am if am.ndim == 2 else am.reshape(n, heads, tgt_len, src_len)
        dropout_p = self.dropout if self.training else 0.0
        if dropout_p > 0 and (dropout_p > 1 or math.isnan(dropout_p)):  # F.dropout's ValueError, or SDPA's
            raise (ValueError if need_weights else RuntimeError)(
                f"dropout probability has to be between 0 and 1, but got {dropout_p}")

        # in-projections, each a 2-d product over (T · N, E) rows in the input's own layout
        weights, biases = self._projections()
        inputs = tuple(x.reshape(-1, x.shape[-1]) for x in (query, key, value))
        projected = []
        for x2, w, b, like in zip(inputs, weights, biases, (query, key, value)):
            p = x2 @ w.T
            if b is not None:
                p += b
            projected.append(p.reshape(like.shape[:2] + (e,)))
        q, k, v = projected
        if self.bias_k is not None and self.bias_v is not None:  # one more source position, unmasked
            seq_axis = 0 if seq_first else 1
            shape = (1, n, e) if seq_first else (n, 1, e)
            k = np.concatenate([k, np.broadcast_to(self.bias_k.data, shape)], axis=seq_axis)
            v = np.concatenate([v, np.broadcast_to(self.bias_v.data, shape)], axis=seq_axis)
            am, kpm = _pad_last(am), _pad_last(kpm)
        q, k, v = (_split_heads(x, seq_first, heads) for x in (q, k, v))  # (N, H, T, D)
        if self.add_zero_attn:
            zeros = np.zeros((n, heads, 1, self.head_dim), dtype)
            k, v = np.concatenate([k, zeros], axis=2), np.concatenate([v, zeros], axis=2)
            am, kpm = _pad_last(am), _pad_last(kpm)
        full_src = k.shape[2]
        if kpm is not None:
            if kpm.shape[0] != n:
                raise AssertionError(f"Expected key_padded_mask.shape[0] to be {n}, but got {kpm.shape[0]}")
            if kpm.shape[1] != full_src:
                raise AssertionError(f"Expected key_padded_mask.shape[1] to be {full_src}, but got {kpm.shape[1]}")
            kpm = kpm.reshape(n, 1, 1, full_src)
            mask = kpm if am is None else am + kpm
        elif is_causal and not need_weights:  # torch passes is_causal to SDPA and drops attn_mask
            mask = additive_mask(causal_mask(tgt_len, full_src), dtype)
        else:
            mask = am
        dropout_mask = self._next_mask if dropout_p > 0 else None
        if dropout_mask is not None and not batched and isinstance(dropout_mask, np.ndarray):
            dropout_mask = dropout_mask[None]
        # need_weights: torch's bmm path (q scaled by sqrt(1 / D), a plain softmax: NaN for a fully masked row);
        # otherwise its scaled_dot_product_attention (scale 1 / sqrt(D), zeros for a fully masked row)
        scale = math.sqrt(1.0 / self.head_dim) if need_weights else 1.0 / math.sqrt(self.head_dim)
        attended, attention = attention_forward(q, k, v, mask, dropout_p, scale, zero_masked_rows=not need_weights,
                                                rng=self.rng, dropout_mask=dropout_mask)
        if self.training and dropout_p > 0:
            self._next_mask = None
        out = self.out_proj.forward(_merge_heads(attended, seq_first))
        out = out.reshape(query.shape[:2] + (e,))
        self._cache = MHACache(attention, inputs, tuple(x.shape for x in (query, key, value)), seq_first, batched,
                                average_attn_weights if need_weights else None)
        if not batched:
            out = out[:, 0]
        if not need_weights:
            return out, None
        attn_weights = attention.dropped
        if average_attn_weights:
            attn_weights = attn_weights.mean(axis=1)
        return out, (attn_weights if batched else attn_weights[0])

    def backward(self, grad_output: Optional[np.ndarray], grad_weights: Optional[np.ndarray] = None
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradients of ``query``, ``key`` and ``value`` from those of ``attn_output`` and ``attn_weights``:
        ``dquery, dkey, dvalue = mha.backward(dout, dweights)``.

        ``grad_output`` has the output's shape, ``grad_weights`` the returned weights' (None = zero, for either).
        Each input gets the gradient through its own path: for self-attention (``query is key is value``) the
        input's gradient is the **sum** of the three, which the caller adds (``sum(mha.backward(dout))``).
        Parameter gradients accumulate into ``.grad``.
        """
        cache: MHACache = self._saved()
        attention, (query2, key2, value2), shapes, seq_first, batched, averaged = cache
        if grad_weights is not None and averaged is None:
            raise RuntimeError("the last forward returned no attention weights (need_weights=False): backward takes "
                               "no gradient for them")
        heads, e = self.num_heads, self.embed_dim
        if grad_output is None:
            dtype = attention.weights.dtype
            grad_output = np.zeros(shapes[0][:2] + (e,) if batched else (shapes[0][0], e), dtype)
        if not batched:
            grad_output = grad_output[:, None]
            if grad_weights is not None:
                grad_weights = grad_weights[None]
        dweights = None
        if grad_weights is not None:
            dweights = grad_weights[:, None] / grad_weights.dtype.type(heads) if averaged else grad_weights
        dattended = self.out_proj.backward(grad_output.reshape(-1, e)).reshape(shapes[0][:2] + (e,))
        dq, dk, dv = attention_backward(_split_heads(dattended, seq_first, heads), attention, dweights)
        if self.add_zero_attn:
            dk, dv = dk[:, :, :-1], dv[:, :, :-1]
        dq, dk, dv = (_merge_heads(d, seq_first) for d in (dq, dk, dv))  # (T · N, E) rows in the input's layout
        if self.bias_k is not None and self.bias_v is not None:
            n = shapes[1][1] if seq_first else shapes[1][0]
            rows = dk.shape[0] // n  # S + 1 source positions per sample
            dk3 = dk.reshape((rows, n, e) if seq_first else (n, rows, e))
            dv3 = dv.reshape(dk3.shape)
            last = (slice(-1, None), slice(None)) if seq_first else (slice(None), slice(-1, None))
            keep = (slice(None, -1), slice(None)) if seq_first else (slice(None), slice(None, -1))
            self._accumulate(self.bias_k, dk3[last].sum(axis=(0, 1)).reshape(1, 1, e))
            self._accumulate(self.bias_v, dv3[last].sum(axis=(0, 1)).reshape(1, 1, e))
            dk, dv = dk3[keep].reshape(-1, e), dv3[keep].reshape(-1, e)
        weights, _ = self._projections()
        dweights_in = [d.T @ x for d, x in zip((dq, dk, dv), (query2, key2, value2))]
        if self._qkv_same_embed_dim:
            self._accumulate(self.in_proj_weight, np.concatenate(dweights_in), owned=True)
        else:
            for param, grad in zip((self.q_proj_weight, self.k_proj_weight, self.v_proj_weight), dweights_in):
                self._accumulate(param, grad, owned=True)
        if self.in_proj_bias is not None:
            self._accumulate(self.in_proj_bias, np.concatenate([col_sums(d) for d in (dq, dk, dv)]), owned=True)
        grads = []
        for d, w, shape in zip((dq, dk, dv), weights, shapes):
            g = (d @ w).reshape(shape)
            grads.append(g if batched else g[:, 0])
        return tuple(grads)
