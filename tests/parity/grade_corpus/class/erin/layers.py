"""Planted bugs: dropout not rescaled, relu passing the negative side. Otherwise a correct layers.py, vectorised (momentum read CS231n's way, p the keep probability, the
unbiased running variance torch keeps)."""
import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    return dout * (cache < 0)


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.ones(D, dtype=x.dtype))
    cache = None
    if mode == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        std = np.sqrt(var + eps)
        xhat = (x - mu) / std
        out = gamma * xhat + beta
        cache = (xhat, gamma, std)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var * N / (N - 1)
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = None
    out = x
    if mode == "train":
        mask = (np.random.rand(*x.shape) < p) * 1.0
        out = (x * mask).astype(x.dtype, copy=False)
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    dropout_param, mask = cache
    return dout * mask if dropout_param["mode"] == "train" else dout


def _windows(xp, hh, ww, stride, ho, wo):
    """(N, C, Ho, Wo, HH, WW) view of every window."""
    n, c, _, _ = xp.shape
    s = xp.strides
    return np.lib.stride_tricks.as_strided(xp, (n, c, ho, wo, hh, ww),
                                           (s[0], s[1], s[2] * stride, s[3] * stride, s[2], s[3]))


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.einsum("ncijhw,fchw->nfij", _windows(xp, HH, WW, stride, Ho, Wo), w) + b[None, :, None, None]
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    F, C, HH, WW = w.shape
    N, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dw = np.einsum("ncijhw,nfij->fchw", _windows(xp, HH, WW, stride, Ho, Wo), dout)
    dxp = np.zeros_like(xp)
    for a in range(HH):
        for c in range(WW):
            dxp[:, :, a:a + stride * Ho:stride, c:c + stride * Wo:stride] += np.einsum("nfij,fc->ncij", dout,
                                                                                      w[:, :, a, c])
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, db


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    win = _windows(x, ph, pw, s, Ho, Wo).reshape(N, C, Ho, Wo, ph * pw)
    return win.max(axis=-1), (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, Ho, Wo = dout.shape
    win = _windows(x, ph, pw, s, Ho, Wo).reshape(N, C, Ho, Wo, ph * pw)
    arg = win.argmax(axis=-1)
    dx = np.zeros_like(x)
    n, c, i, j = np.indices(arg.shape)
    np.add.at(dx, (n, c, i * s + arg // pw, j * s + arg % pw), dout)
    return dx
