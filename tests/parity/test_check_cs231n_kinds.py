"""reference.kinds.cs231n: CS231n's linear-classifier losses (assignment 1), loss layers and layer_utils sandwiches
(assignment 2) checked against torch.

- every kind has at least two correct implementations in different styles (loops, vectorised, composed from the
  layers or fused) that pass every check in float64 and float32;
- each planted bug fails and names its cause: the SVM counting the correct class, its gradient without the correct
  class's term, margins exactly 0 counted, reg·W for 2·reg·W, 0.5·reg·ΣW² (accepted with ``half_reg``), the
  regularisation missing from the gradient or divided by N, the loss not divided by N, a softmax without the row
  max (overflow), its gradient without the −1, a sandwich's backward in the wrong order (the relu mask from the
  input, or raising on the shapes), a relu mask from dout, the relu backward skipped;
- the kinds are found from the course's exact names (the registry comes before the built-in kinds), a user function
  that raises or returns the wrong structure is a failed check, and ``handnn-verify --user FILE.py:FUNC`` prints the
  table and returns 0 or 1.
"""
from __future__ import annotations

import inspect
import textwrap
import warnings
from typing import Callable, Dict

import numpy as np
import pytest

from reference.check import infer_kind, main_user
from reference.kinds import KINDS, Options, kind_for, load, partner_functions
from reference.kinds import cs231n as K

load()


# ---- correct implementations, as students write them (self-contained: the CLI tests copy their source) ------------
def svm_loss_naive(W, X, y, reg):
    dW = np.zeros(W.shape, dtype=W.dtype)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def svm_loss_vectorized(W, X, y, reg):
    num_train = X.shape[0]
    scores = X.dot(W)
    correct = scores[np.arange(num_train), y][:, np.newaxis]
    margins = np.maximum(0, scores - correct + 1)
    margins[np.arange(num_train), y] = 0
    loss = np.sum(margins) / num_train + reg * np.sum(W * W)
    binary = (margins > 0).astype(X.dtype)
    binary[np.arange(num_train), y] = -np.sum(binary, axis=1)
    dW = X.T.dot(binary) / num_train + 2 * reg * W
    return loss, dW


def softmax_loss_naive(W, X, y, reg):
    dW = np.zeros_like(W)
    num_train, num_classes = X.shape[0], W.shape[1]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        scores -= np.max(scores)
        probs = np.exp(scores) / np.sum(np.exp(scores))
        loss += -np.log(probs[y[i]])
        for j in range(num_classes):
            dW[:, j] += (probs[j] - (j == y[i])) * X[i]
    loss = loss / num_train + reg * np.sum(W * W)
    dW = dW / num_train + 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    num_train = X.shape[0]
    scores = X.dot(W)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(num_train), y]) / num_train + reg * np.sum(W * W)
    dscores = np.exp(log_probs)
    dscores[np.arange(num_train), y] -= 1
    dW = X.T.dot(dscores) / num_train + 2 * reg * W
    return loss, dW


def svm_loss(x, y):
    N = x.shape[0]
    correct_class_scores = x[np.arange(N), y]
    margins = np.maximum(0, x - correct_class_scores[:, np.newaxis] + 1.0)
    margins[np.arange(N), y] = 0
    loss = np.sum(margins) / N
    num_pos = np.sum(margins > 0, axis=1)
    dx = np.zeros_like(x)
    dx[margins > 0] = 1
    dx[np.arange(N), y] -= num_pos
    dx /= N
    return loss, dx


def svm_loss_loops(x, y):
    N, C = x.shape
    loss, dx = 0.0, np.zeros_like(x)
    for i in range(N):
        for j in range(C):
            margin = x[i, j] - x[i, y[i]] + 1
            if j != y[i] and margin > 0:
                loss += margin
                dx[i, j] += 1
                dx[i, y[i]] -= 1
    return loss / N, dx / N


def softmax_loss(x, y):
    shifted_logits = x - np.max(x, axis=1, keepdims=True)
    Z = np.sum(np.exp(shifted_logits), axis=1, keepdims=True)
    log_probs = shifted_logits - np.log(Z)
    probs = np.exp(log_probs)
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def softmax_loss_probs(x, y):
    N = x.shape[0]
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    loss = np.mean(-np.log(p[np.arange(N), y]))
    onehot = np.zeros_like(x)
    onehot[np.arange(N), y] = 1
    return loss, (p - onehot) / N


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1).dot(w) + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout.dot(w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T.dot(dout), np.sum(dout, axis=0)


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return affine_backward(da, fc_cache)


def affine_relu_fused_forward(x, w, b):
    flat = x.reshape(len(x), -1)
    a = flat @ w + b
    return a * (a > 0), (x, flat, w, a > 0)


def affine_relu_fused_backward(dout, cache):
    x, flat, w, on = cache
    da = np.where(on, dout, 0)
    return (da @ w.T).reshape(x.shape), flat.T @ da, da.sum(0)


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F_, _, HH, WW = w.shape
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F_, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F_):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, F_, Ho, Wo = dout.shape
    _, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(N):
        for f in range(F_):
            for i in range(Ho):
                for j in range(Wo):
                    sl = (n, slice(None), slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW))
                    dxp[sl] += w[f] * dout[n, f, i, j]
                    dw[f] += xp[sl] * dout[n, f, i, j]
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def conv_relu_forward(x, w, b, conv_param):
    a, conv_cache = conv_forward_naive(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    conv_cache, relu_cache = cache
    return conv_backward_naive(relu_backward(dout, relu_cache), conv_cache)


def conv_relu_einsum_forward(x, w, b, conv_param):
    """Vectorised: the padded input's windows by stride tricks, one einsum (stride 1)."""
    pad = conv_param["pad"]
    HH, WW = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (HH, WW), axis=(2, 3))  # N, C, Ho, Wo, HH, WW
    a = np.einsum("nchwij,fcij->nfhw", win, w) + b[None, :, None, None]
    return np.maximum(a, 0), (x, w, win, a)


def conv_relu_einsum_backward(dout, cache):
    x, w, win, a = cache
    da = dout * (a > 0)
    HH, WW = w.shape[2:]
    pad = (win.shape[2] + HH - 1 - x.shape[2]) // 2
    dw = np.einsum("nchwij,nfhw->fcij", win, da)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), dtype=x.dtype)
    for i in range(HH):
        for j in range(WW):
            dxp[:, :, i:i + da.shape[2], j:j + da.shape[3]] += np.einsum("nfhw,fc->nchw", da, w[:, :, i, j])
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, da.sum(axis=(0, 2, 3))


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                    k = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * s + k[0], j * s + k[1]] += dout[n, c, i, j]
    return dx


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    a, conv_cache = conv_forward_naive(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_naive(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_naive(dout, pool_cache)
    da = relu_backward(ds, relu_cache)
    return conv_backward_naive(da, conv_cache)


def conv_relu_pool_reshape_forward(x, w, b, conv_param, pool_param):
    """conv + relu vectorised, 2×2/stride-2 pooling by reshape (the fast layers' trick)."""
    r, conv_cache = conv_relu_einsum_forward(x, w, b, conv_param)
    N, F_, H, W = r.shape
    blocks = r.reshape(N, F_, H // 2, 2, W // 2, 2)
    out = blocks.max(axis=(3, 5))
    return out, (conv_cache, r, out)


def conv_relu_pool_reshape_backward(dout, cache):
    conv_cache, r, out = cache
    N, F_, H, W = r.shape
    blocks = r.reshape(N, F_, H // 2, 2, W // 2, 2)
    mask = blocks == out[:, :, :, None, :, None]
    mask = mask / mask.sum(axis=(3, 5), keepdims=True)  # no ties off zero (random inputs); zeros are relu-killed
    dr = (mask * dout[:, :, :, None, :, None]).reshape(r.shape).astype(dout.dtype)
    return conv_relu_einsum_backward(dr, conv_cache)


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc ** 2).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    return gamma * xhat + beta, (xhat, gamma, std)


def batchnorm_backward_alt(dout, cache):
    xhat, gamma, std = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * std)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param):
    a, fc_cache = affine_forward(x, w, b)
    h, bn_cache = batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(h)
    return out, (fc_cache, bn_cache, relu_cache)


def affine_bn_relu_backward(dout, cache):
    fc_cache, bn_cache, relu_cache = cache
    dh = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = batchnorm_backward_alt(dh, bn_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


def affine_bn_relu_graph_forward(x, w, b, gamma, beta, bn_param):
    """The computational graph written out, staged backward (CS231n's batchnorm_backward)."""
    flat = x.reshape(x.shape[0], -1)
    a = flat @ w + b
    mu = np.mean(a, axis=0)
    xmu = a - mu
    var = np.mean(xmu ** 2, axis=0)
    ivar = 1.0 / np.sqrt(var + bn_param["eps"])
    xhat = xmu * ivar
    h = gamma * xhat + beta
    return np.maximum(h, 0), (x, flat, w, xmu, ivar, xhat, gamma, h)


def affine_bn_relu_graph_backward(dout, cache):
    x, flat, w, xmu, ivar, xhat, gamma, h = cache
    N = dout.shape[0]
    dh = dout * (h > 0)
    dbeta, dgamma = dh.sum(axis=0), (dh * xhat).sum(axis=0)
    dxhat = dh * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -divar * ivar ** 2
    dvar = 0.5 * ivar * dsqrtvar
    dxmu2 = 2 * xmu * np.ones_like(dout) * dvar / N
    dx1 = dxmu1 + dxmu2
    da = dx1 - np.sum(dx1, axis=0) / N
    return (da @ w.T).reshape(x.shape), flat.T @ da, da.sum(axis=0), dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    flat, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, C), gamma, beta, bn_param)
    return flat.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = batchnorm_backward_alt(dout.transpose(0, 2, 3, 1).reshape(-1, C), cache)
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    a, conv_cache = conv_forward_naive(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache):
    conv_cache, bn_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = spatial_batchnorm_backward(dan, bn_cache)
    dx, dw, db = conv_backward_naive(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_bn_relu_inline_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """Vectorised conv, batch statistics over (N, H, W) inline, the relu by a boolean mask."""
    r, conv_cache = conv_relu_einsum_forward(x, w, b, conv_param)
    a = conv_cache[3]
    mu = a.mean(axis=(0, 2, 3), keepdims=True)
    var = a.var(axis=(0, 2, 3), keepdims=True)
    xhat = (a - mu) / np.sqrt(var + bn_param["eps"])
    h = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    on = h > 0
    return h * on, (conv_cache, xhat, var + bn_param["eps"], gamma, on)


def conv_bn_relu_inline_backward(dout, cache):
    conv_cache, xhat, v, gamma, on = cache
    dh = dout * on
    m = dh.shape[0] * dh.shape[2] * dh.shape[3]
    dgamma, dbeta = (dh * xhat).sum(axis=(0, 2, 3)), dh.sum(axis=(0, 2, 3))
    dxhat = dh * gamma[None, :, None, None]
    da = (dxhat - dxhat.mean(axis=(0, 2, 3), keepdims=True)
          - xhat * (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(v)
    x, w, win, a = conv_cache
    # conv_relu_einsum_backward masks by a > 0: the mask is already applied, so give it a cache whose a is all positive
    dx, dw, db = conv_relu_einsum_backward(da, (x, w, win, np.ones_like(a)))
    return dx, dw, db, dgamma, dbeta


CORRECT: Dict[str, tuple] = {
    "linear_svm": (svm_loss_naive, svm_loss_vectorized),
    "linear_softmax": (softmax_loss_naive, softmax_loss_vectorized),
    "svm_loss": (svm_loss, svm_loss_loops),
    "softmax_loss": (softmax_loss, softmax_loss_probs),
    "affine_relu": ((affine_relu_forward, affine_relu_backward),
                    (affine_relu_fused_forward, affine_relu_fused_backward)),
    "conv_relu": ((conv_relu_forward, conv_relu_backward), (conv_relu_einsum_forward, conv_relu_einsum_backward)),
    "conv_relu_pool": ((conv_relu_pool_forward, conv_relu_pool_backward),
                       (conv_relu_pool_reshape_forward, conv_relu_pool_reshape_backward)),
    "affine_bn_relu": ((affine_bn_relu_forward, affine_bn_relu_backward),
                       (affine_bn_relu_graph_forward, affine_bn_relu_graph_backward)),
    "conv_bn_relu": ((conv_bn_relu_forward, conv_bn_relu_backward),
                     (conv_bn_relu_inline_forward, conv_bn_relu_inline_backward)),
}
LOSS_KINDS = ("linear_svm", "linear_softmax", "svm_loss", "softmax_loss")
SANDWICH_KINDS = ("affine_relu", "conv_relu", "conv_relu_pool", "affine_bn_relu", "conv_bn_relu")


def _run(kind: str, impl, dtype="float64", **extra):
    functions = {"loss": impl} if kind in LOSS_KINDS else dict(zip(("forward", "backward"), impl))
    return KINDS[kind].run(functions, Options(dtype=dtype, extra=extra))


def _variants():
    return [(kind, i, impl) for kind, impls in CORRECT.items() for i, impl in enumerate(impls)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind, index, impl", _variants(), ids=[f"{k}-{i}" for k, i, _ in _variants()])
def test_correct_implementations_pass(kind, index, impl, dtype):
    report = _run(kind, impl, dtype)
    assert report.passed, str(report)
    expected = ["loss", "dW" if kind.startswith("linear") else "dx"] if kind in LOSS_KINDS else \
        ["out", "dx", *K.SANDWICHES[kind].params]
    assert [row.check for row in report.rows] == expected


def test_every_kind_has_two_correct_styles():
    assert set(CORRECT) == {k for k, kind in KINDS.items() if kind.course == "cs231n"}
    assert all(len(impls) >= 2 for impls in CORRECT.values())


# ---- planted bugs ---------------------------------------------------------------------------------------------------
def _edit(fn: Callable, *edits) -> Callable:
    """``fn`` with its source edited (each edit must apply), defined in this module's namespace."""
    source = textwrap.dedent(inspect.getsource(fn))
    for old, new in edits:
        if old not in source:
            raise ValueError(f"edit {old!r} does not apply to {fn.__name__}")
        source = source.replace(old, new)
    namespace = dict(globals())
    exec(compile(source, f"<planted {fn.__name__}>", "exec"), namespace)
    return namespace[fn.__name__]


def _bad_affine_relu_wrong_order(dout, cache):
    fc_cache, relu_cache = cache
    dx, dw, db = affine_backward(dout, fc_cache)
    return relu_backward(dx, relu_cache), dw, db  # relu's cache is the affine output (N, M): shapes clash


def _bad_affine_relu_mask_from_input(dout, cache):
    (x, w, b), relu_cache = cache
    dx, dw, db = affine_backward(dout, (x, w, b))
    return relu_backward(dx, x), dw, db


def _bad_conv_relu_mask_from_input(dout, cache):
    conv_cache, relu_cache = cache
    dx, dw, db = conv_backward_naive(dout, conv_cache)
    return relu_backward(dx, conv_cache[0]), dw, db


def _bad_affine_bn_relu_mask_from_dout(dout, cache):
    fc_cache, bn_cache, relu_cache = cache
    da, dgamma, dbeta = batchnorm_backward_alt(relu_backward(dout, dout), bn_cache)
    return (*affine_backward(da, fc_cache), dgamma, dbeta)


def _bad_conv_bn_relu_wrong_order(dout, cache):
    conv_cache, bn_cache, relu_cache = cache
    da, dgamma, dbeta = spatial_batchnorm_backward(dout, bn_cache)
    dx, dw, db = conv_backward_naive(da, conv_cache)
    return relu_backward(dx, conv_cache[0]), dw, db, dgamma, dbeta


def _bad_conv_relu_pool_no_relu(dout, cache):
    conv_cache, relu_cache, pool_cache = cache
    return conv_backward_naive(max_pool_backward_naive(dout, pool_cache), conv_cache)


PLANTED = {
    # name: (kind, implementation, {check: cause}, extra options)
    "svm counts the correct class (loop)": (
        "linear_svm", _edit(svm_loss_naive, ("            if j == y[i]:\n                continue\n", "")),
        {"loss": K.SVM_CORRECT_COUNTED}),
    "svm counts the correct class (vectorised)": (
        "svm_loss", _edit(svm_loss, ("    margins[np.arange(N), y] = 0\n", ""),
                          ("dx[np.arange(N), y] -= num_pos", "dx[np.arange(N), y] = -num_pos")),
        {"loss": K.SVM_CORRECT_COUNTED, "dx": K.SVM_CORRECT_COUNTED}),
    "svm gradient without the correct class's term": (
        "linear_svm", _edit(svm_loss_naive, ("                dW[:, y[i]] -= X[i]\n", "")),
        {"dW": K.SVM_NO_CORRECT_GRAD}),
    "svm gradient without the correct class's term (A2)": (
        "svm_loss", _edit(svm_loss, ("    dx[np.arange(N), y] -= num_pos\n", "")), {"dx": K.SVM_NO_CORRECT_GRAD}),
    "svm margins >= 0 counted": (
        "svm_loss", _edit(svm_loss_loops, ("margin > 0", "margin >= 0")), {"dx": K.SVM_AT_ZERO}),
    "reg gradient reg*W": (
        "linear_svm", _edit(svm_loss_vectorized, ("+ 2 * reg * W", "+ reg * W")), {"dW": K.REG_GRAD_ONCE}),
    "0.5 reg loss": (
        "linear_softmax", _edit(softmax_loss_naive, ("+ reg * np.sum", "+ 0.5 * reg * np.sum"),
                                ("+ 2 * reg * W", "+ reg * W")),
        {"loss": K.REG_HALF, "dW": K.REG_GRAD_ONCE}),
    "reg missing from the gradient": (
        "linear_softmax", _edit(softmax_loss_vectorized, (" + 2 * reg * W", "")), {"dW": K.REG_MISSING_GRAD}),
    "regularisation divided by N": (
        "linear_svm", _edit(svm_loss_naive, ("    loss /= num_train\n    dW /= num_train\n", ""),
                            ("    dW += 2 * reg * W\n",
                             "    dW += 2 * reg * W\n    loss /= num_train\n    dW /= num_train\n")),
        {"loss": K.REG_AVERAGED, "dW": K.REG_AVERAGED}),
    "loss not divided by N": (
        "linear_svm", _edit(svm_loss_naive, ("    loss /= num_train\n    dW /= num_train\n", "")),
        {"loss": K.NOT_AVERAGED, "dW": K.NOT_AVERAGED}),
    "loss not divided by N (A2 softmax)": (
        "softmax_loss", _edit(softmax_loss, (") / N\n", ")\n"), ("    dx /= N\n", "")),
        {"loss": K.NOT_AVERAGED, "dx": K.NOT_AVERAGED}),
    "softmax without the row max": (
        "linear_softmax", _edit(softmax_loss_naive, ("        scores -= np.max(scores)\n", "")),
        {"loss": K.OVERFLOW, "dW": K.OVERFLOW}),
    "softmax without the row max (A2)": (
        "softmax_loss", _edit(softmax_loss_probs, ("np.exp(x - x.max(axis=1, keepdims=True))", "np.exp(x)")),
        {"loss": K.OVERFLOW, "dx": K.OVERFLOW}),
    "softmax gradient without the -1": (
        "linear_softmax", _edit(softmax_loss_vectorized, ("    dscores[np.arange(num_train), y] -= 1\n", "")),
        {"dW": K.SOFTMAX_NO_MINUS_ONE}),
    "softmax gradient without the -1 (A2)": (
        "softmax_loss", _edit(softmax_loss, ("    dx[np.arange(N), y] -= 1\n", "")),
        {"dx": K.SOFTMAX_NO_MINUS_ONE}),
    "affine_relu backward in the wrong order (shapes clash)": (
        "affine_relu", (affine_relu_forward, _bad_affine_relu_wrong_order),
        {"dx": K.WRONG_ORDER_SHAPES.format(inner="affine")}),
    "affine_relu relu mask from the affine input": (
        "affine_relu", (affine_relu_forward, _bad_affine_relu_mask_from_input),
        {"dx": K.WRONG_ORDER.format(inner="affine"), "dw": K.UNMASKED.format(inner="affine"),
         "db": K.UNMASKED.format(inner="affine")}),
    "conv_relu relu mask from the conv input": (
        "conv_relu", (conv_relu_forward, _bad_conv_relu_mask_from_input),
        {"dx": K.WRONG_ORDER.format(inner="conv"), "dw": K.UNMASKED.format(inner="conv"),
         "db": K.UNMASKED.format(inner="conv")}),
    "conv_relu_pool relu backward skipped": (
        "conv_relu_pool", (conv_relu_pool_forward, _bad_conv_relu_pool_no_relu),
        {"dx": K.UNMASKED.format(inner="conv"), "dw": K.UNMASKED.format(inner="conv"),
         "db": K.UNMASKED.format(inner="conv")}),
    "conv_bn_relu relu mask from the conv input, applied last": (
        "conv_bn_relu", (conv_bn_relu_forward, _bad_conv_bn_relu_wrong_order),
        {"dx": K.WRONG_ORDER.format(inner="conv and batchnorm"),
         **{check: K.UNMASKED.format(inner="conv and batchnorm") for check in ("dw", "dgamma", "dbeta")}}),
    "affine_bn_relu relu mask from dout": (
        "affine_bn_relu", (affine_bn_relu_forward, _bad_affine_bn_relu_mask_from_dout),
        # db is 0 either way: batchnorm removes the affine bias
        {check: K.MASK_FROM_DOUT for check in ("dx", "dw", "dgamma", "dbeta")}),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(PLANTED))
def test_planted_bug_fails_with_its_cause(name, dtype):
    kind, impl, causes = PLANTED[name]
    report = _run(kind, impl, dtype)
    failed = {row.check: row.diagnosis for row in report.failures}
    assert failed == causes, str(report)


def test_every_cause_is_planted():
    planted = {cause for _, _, causes in PLANTED.values() for cause in causes.values()}
    texts = {K.OVERFLOW, K.SVM_CORRECT_COUNTED, K.SVM_NO_CORRECT_GRAD, K.SVM_AT_ZERO, K.SOFTMAX_NO_MINUS_ONE,
             K.NOT_AVERAGED, K.REG_GRAD_ONCE, K.REG_HALF, K.REG_MISSING_GRAD, K.REG_AVERAGED,
             K.MASK_FROM_DOUT}
    texts |= {K.WRONG_ORDER.format(inner=i) for i in ("affine", "conv", "conv and batchnorm")}
    texts |= {K.UNMASKED.format(inner=i) for i in ("affine", "conv", "conv and batchnorm")}
    texts.add(K.WRONG_ORDER_SHAPES.format(inner="affine"))
    assert texts <= planted


def test_half_reg_is_accepted_when_declared():
    _, impl, _ = PLANTED["0.5 reg loss"]
    report = _run("linear_softmax", impl, half_reg=True)
    assert report.passed, str(report)
    assert any("0.5·reg·ΣW²" in note for note in report.conventions)
    assert not _run("linear_softmax", softmax_loss_naive, half_reg=True).passed


def test_the_ties_case_holds_margins_exactly_zero():
    cases = K._loss_cases(np.random.default_rng(0), np.dtype(np.float64), linear=True)
    ties = next(c for c in cases if c.name == "ties")
    s = ties.scores
    margins = s - s[np.arange(len(ties.y)), ties.y][:, None] + 1
    assert (margins == 0).sum() >= 3
    assert len(set(K.LINEAR_SHAPE)) == 3


def test_a_failing_user_function_is_a_failed_check():
    def raises(W, X, y, reg):
        raise IndexError("index 4 is out of bounds")
    report = _run("linear_svm", raises)
    assert not report.passed and "raised IndexError" in report["loss"].comparison.problem
    report = _run("softmax_loss", lambda x, y: 1.0)
    assert "expected (loss, dx), got float" in report["loss"].comparison.problem
    report = _run("affine_relu", (affine_relu_forward, lambda dout, cache: (dout,)))
    assert "expected (dx, dw, db), got a tuple of 1" in report["dx"].comparison.problem


def test_an_overflow_is_judged_by_its_values_even_when_warnings_are_errors():
    _, impl, causes = PLANTED["softmax without the row max (A2)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = _run("softmax_loss", impl)
    assert {row.check: row.diagnosis for row in report.failures} == causes


def test_a_dtype_other_than_float32_or_float64_is_refused():
    with pytest.raises(ValueError, match="dtype must be float32 or float64, but got float16"):
        _run("svm_loss", svm_loss, "float16")


def test_forward_alone_checks_out():
    report = _run("conv_relu", (conv_relu_forward,))
    assert report.passed and [r.check for r in report.rows] == ["out"]
    assert any("no backward function" in note for note in report.conventions)


# ---- names and the command line -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kind", [
    ("svm_loss_naive", "linear_svm"), ("svm_loss_vectorized", "linear_svm"),
    ("softmax_loss_naive", "linear_softmax"), ("softmax_loss_vectorized", "linear_softmax"),
    ("svm_loss", "svm_loss"), ("softmax_loss", "softmax_loss"), ("affine_relu_forward", "affine_relu"),
    ("conv_relu_forward", "conv_relu"), ("conv_relu_pool_forward", "conv_relu_pool"),
    ("affine_bn_relu_forward", "affine_bn_relu"), ("conv_bn_relu_forward", "conv_bn_relu"),
    ("temporal_softmax_loss", "temporal_softmax_loss"),
    ("affine_forward", "affine"), ("conv_forward_naive", "conv")])
def test_kinds_from_names(name, kind):
    assert infer_kind(name) == kind


def test_partners_found_by_name():
    namespace = {"conv_relu_pool_backward": conv_relu_pool_backward}
    found = partner_functions(kind_for("conv_relu_pool_forward"), conv_relu_pool_forward, namespace)
    assert found == {"forward": conv_relu_pool_forward, "backward": conv_relu_pool_backward}


def _user_file(tmp_path, name, *functions, edit=None):
    source = "import numpy as np\n\n\n" + "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in functions)
    if edit:
        if edit[0] not in source:
            raise ValueError(f"edit {edit[0]!r} does not apply")
        source = source.replace(*edit)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


def test_cli_passes_a_correct_file(tmp_path, capsys):
    path = _user_file(tmp_path, "softmax", softmax_loss_naive, softmax_loss_vectorized)
    assert main_user(f"{path}:softmax_loss_naive", []) == 0
    out = capsys.readouterr().out
    assert "linear_softmax: softmax_loss_naive against torch" in out and "2 passed, 0 failed" in out
    assert "max abs err  max rel err  mismatches  verdict" in out
    assert main_user(f"{path}:softmax_loss_vectorized", ["--dtype", "float32"]) == 0


def test_cli_names_the_overflow(tmp_path, capsys):
    path = _user_file(tmp_path, "softmax_unstable", softmax_loss_naive,
                      edit=("        scores -= np.max(scores)\n", ""))
    assert main_user(f"{path}:softmax_loss_naive", []) == 1
    out = capsys.readouterr().out
    assert "0 passed, 2 failed" in out and K.OVERFLOW in out


def test_cli_finds_the_sandwich_backward(tmp_path, capsys):
    path = _user_file(tmp_path, "layer_utils", affine_forward, affine_backward, relu_forward, relu_backward,
                      affine_relu_forward, affine_relu_backward)
    assert main_user(f"{path}:affine_relu_forward", []) == 0
    out = capsys.readouterr().out
    assert "affine_relu_forward / affine_relu_backward" in out and "4 passed, 0 failed" in out


@pytest.mark.parametrize("kind", ["linear_svm", "linear_softmax", "svm_loss", "softmax_loss"])
@pytest.mark.parametrize("returned", ["arrays of other shapes", "NaN"])
def test_a_loss_returning_arrays_of_other_shapes_fails_without_crashing(kind, returned):
    """A gradient of another shape is a failed row (no hypothesis of the expected shape is tried on it)."""
    from reference.kinds import KINDS, Options, load

    load()

    def student(*args):
        if returned == "NaN":
            return np.nan, np.full((8, 5), np.nan)
        return np.ones(3), np.ones((2, 2))

    report = KINDS[kind].run({KINDS[kind].roles[0]: student}, Options())
    assert not report.passed
    if returned != "NaN":
        assert any("shape" in row.comparison.problem for row in report.rows)
