"""Plain course code, written for the benchmark as students write it: what handnn's speed is compared with.

``conv_forward_naive`` / ``conv_backward_naive`` follow CS231n assignment 2's ``layers.py`` (the signatures, the
``conv_param`` dict with ``stride`` and ``pad``, the cache ``(x, w, b, conv_param)``): four nested loops over samples,
filters and output positions, one window product each.

``batchnorm_forward`` / ``batchnorm_backward_alt`` and ``layernorm_forward`` / ``layernorm_backward`` follow
assignment 2's vectorised solutions (the ``bn_param`` / ``ln_param`` dicts, training mode, ``x_hat`` in the cache and
the simplified one-line backward): plain NumPy, one expression per formula line, the way a student writes them.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


def conv_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: Dict[str, int]
                       ) -> Tuple[np.ndarray, tuple]:
    """x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W'), cache."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    out = np.zeros((N, F, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout: np.ndarray, cache: tuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (N, F, H', W') -> dx, dw, db."""
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.sum(dout, axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    window = x_pad[n, :, hs:hs + HH, ws:ws + WW]
                    dw[f] += window * dout[n, f, i, j]
                    dx_pad[n, :, hs:hs + HH, ws:ws + WW] += w[f] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: Dict[str, object]
                      ) -> Tuple[np.ndarray, tuple]:
    """x (N, D) -> out (N, D), cache; training mode, running averages updated in ``bn_param``."""
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    sample_mean = x.mean(axis=0)
    sample_var = x.var(axis=0)
    std = np.sqrt(sample_var + eps)
    x_hat = (x - sample_mean) / std
    out = gamma * x_hat + beta
    bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * sample_mean
    bn_param["running_var"] = momentum * running_var + (1 - momentum) * sample_var
    return out, (x_hat, gamma, std)


def batchnorm_backward_alt(dout: np.ndarray, cache: tuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (N, D) -> dx, dgamma, dbeta (the simplified formula)."""
    x_hat, gamma, std = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dx = (1.0 / N) / std * (N * dx_hat - dx_hat.sum(axis=0) - x_hat * np.sum(dx_hat * x_hat, axis=0))
    return dx, dgamma, dbeta


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, ln_param: Dict[str, object]
                      ) -> Tuple[np.ndarray, tuple]:
    """x (N, D) -> out (N, D), cache; statistics per row."""
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = (x - mu) / std
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, std)


def layernorm_backward(dout: np.ndarray, cache: tuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (N, D) -> dx, dgamma, dbeta."""
    x_hat, gamma, std = cache
    D = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dx = (1.0 / D) / std * (D * dx_hat - dx_hat.sum(axis=1, keepdims=True)
                            - x_hat * np.sum(dx_hat * x_hat, axis=1, keepdims=True))
    return dx, dgamma, dbeta
