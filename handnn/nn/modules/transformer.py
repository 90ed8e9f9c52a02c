"""``TransformerEncoderLayer``: torch's layer, built from handnn's modules with torch's child names."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from .activation import GELU, ReLU
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear, default_rng
from .module import Module
from .normalization import LayerNorm


def _activation_module(activation: Union[str, Module]) -> Module:
    """torch's ``_get_activation_fn`` for the strings 'relu' and 'gelu'; a handnn activation module is used as is."""
    if isinstance(activation, Module):
        return activation
    if activation == "relu":
        return ReLU()
    if activation == "gelu":
        return GELU()
    raise RuntimeError(f"activation should be relu/gelu, not {activation}")


class TransformerEncoderLayer(Module):
    """Self-attention then a feed-forward block, each with a residual connection and a LayerNorm::

        norm_first=False (post-norm, torch's default)      norm_first=True (pre-norm)
        x = norm1(x + sa(x))                                x = x + sa(norm1(x))
        x = norm2(x + ff(x))                                x = x + ff(norm2(x))

    with ``sa(x) = dropout1(self_attn(x, x, x, need_weights=False)[0])`` and
    ``ff(x) = dropout2(linear2(dropout(activation(linear1(x)))))``.

    Children are torch's (``self_attn``, ``linear1``, ``dropout``, ``linear2``, ``norm1``, ``norm2``, ``dropout1``,
    ``dropout2``, plus the parameter-free ``activation``), so ``state_dict()`` has torch's keys; parameters are drawn
    in torch's order from ``rng`` (``self_attn``, ``linear1``, ``linear2``), so ``rng=TorchGenerator(seed)`` gives
    ``torch.manual_seed(seed); torch.nn.TransformerEncoderLayer(...)``'s. The same ``rng`` then draws the dropout
    masks, in torch's order (attention weights, ``dropout1``, ``dropout``, ``dropout2`` for post-norm and pre-norm
    alike); each dropout takes an injected mask with ``use_mask`` (``self_attn.use_mask`` for the attention's).

    Parameters
    ----------
    d_model, nhead : int
    dim_feedforward : int
    dropout : float
    activation : 'relu', 'gelu', or a handnn activation module (e.g. ``GELU(approximate='tanh')``)
    layer_norm_eps : float
    batch_first : bool
        ``(N, L, E)`` instead of ``(L, N, E)``; an unbatched ``(L, E)`` input works too.
    norm_first : bool
    bias : bool
        The biases of every Linear, of the attention and of the LayerNorms.
    dtype : numpy dtype, keyword-only
    rng : numpy.random.Generator or handnn.random.TorchGenerator, keyword-only
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Union[str, Module] = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, *, dtype=np.float64,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        rng = default_rng(rng)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype, rng=rng)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype, rng=rng)
        self.dropout = Dropout(dropout, rng=rng)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype, rng=rng)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout, rng=rng)
        self.dropout2 = Dropout(dropout, rng=rng)
        self.activation = _activation_module(activation)

    def _sa_block(self, x: np.ndarray, src_mask, src_key_padding_mask, is_causal: bool) -> np.ndarray:
        attended, _ = self.self_attn(x, x, x, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
                                     need_weights=False, is_causal=is_causal)
        return self.dropout1(attended)

    def _sa_backward(self, dout: np.ndarray) -> np.ndarray:
        dq, dk, dv = self.self_attn.backward(self.dropout1.backward(dout))
        return dq + dk + dv  # x is query, key and value

    def _ff_block(self, x: np.ndarray) -> np.ndarray:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _ff_backward(self, dout: np.ndarray) -> np.ndarray:
        d = self.linear2.backward(self.dropout2.backward(dout))
        return self.linear1.backward(self.activation.backward(self.dropout.backward(d)))

    def forward(self, src: np.ndarray, src_mask: Optional[np.ndarray] = None,
                src_key_padding_mask: Optional[np.ndarray] = None, is_causal: bool = False) -> np.ndarray:
        """``src`` of shape (L, N, E) ((N, L, E) with batch_first, (L, E) unbatched); ``src_mask`` (L, L) or
        (N · nhead, L, L) and ``src_key_padding_mask`` (N, L) as ``MultiheadAttention``'s (bool: True = masked).
        A bool mask is turned into a float one (−inf where True) first, as torch's layer does."""
        if isinstance(src, np.ndarray) and src.dtype.kind == "f":
            weight = self.linear1.weight.dtype
            if src.dtype != weight:  # torch's first matrix product refuses it (a pre-norm LayerNorm would compute)
                raise RuntimeError(f"mat1 and mat2 must have the same dtype: expected a {weight} input like the "
                                   f"layer's parameters, but got {src.dtype}")
            canonical = self.self_attn._canonical_mask
            src_key_padding_mask = canonical(src_key_padding_mask, "src_key_padding_mask", src_mask, "src_mask",
                                             src.dtype)
            src_mask = canonical(src_mask, "src_mask", None, "", src.dtype)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            out = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            out = self.norm2(x + self._ff_block(x))
        self._cache = True
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``dsrc`` from ``dout``; every parameter gradient accumulates into its ``.grad``."""
        self._saved()
        if self.norm_first:
            dx = grad_output + self.norm2.backward(self._ff_backward(grad_output))
            return dx + self.norm1.backward(self._sa_backward(dx))
        dx = self.norm2.backward(grad_output)
        dx = self.norm1.backward(dx + self._ff_backward(dx))
        return dx + self._sa_backward(dx)
