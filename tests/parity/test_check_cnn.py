"""reference.check for CS231n's convolution, max pooling and spatial group norm: users' code against torch.

- correct implementations in the styles students write them (naive loops, im2col, stride tricks, a reshape) pass
  every check, in float64 and float32;
- each planted bug fails exactly the checks it should, and every failed check names the planted cause — every
  detector of these kinds is planted once (``test_every_cnn_detector_is_planted``);
- the max-pooling inputs hold ties, one geometry has overlapping windows, the conv geometries cover stride 1 and 2,
  pad 0 and 1, non-square kernels and inputs;
- a user function that raises or returns the wrong structure is a failed check, not a crash;
- kinds are inferred from CS231n's names (the older names still infer as before); the command line
  (``handnn-verify --user FILE.py:conv_forward_naive``) prints the table and returns 0 or 1.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest

from reference.check import (CONV_GEOMETRIES, LAYER_KINDS, POOL_GEOMETRIES, check_layer, infer_builtin_kind,
                             main_user)
from reference.diagnosis import DETECTORS, diagnoses

CONV_CHECKS = ["out", "dx", "dw", "db"]
POOL_CHECKS = ["out", "dx"]
GROUPNORM_CHECKS = ["out", "dx", "dgamma", "dbeta"]


# ---- correct implementations: naive loops, as students write them (self-contained: the CLI tests copy them) ----
def conv_forward_naive(x, w, b, conv_param):
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


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad, dw, db = np.zeros_like(x_pad), np.zeros_like(w), np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            db[f] += dout[n, f].sum()
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows, cols = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
                    dx_pad[n, :, rows, cols] += w[f] * dout[n, f, i, j]
                    dw[f] += x_pad[n, :, rows, cols] * dout[n, f, i, j]
    return dx_pad[:, :, pad:pad + H, pad:pad + W], dw, db


def max_pool_forward_naive(x, pool_param):
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out, W_out = 1 + (H - ph) // stride, 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw].max()
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    N, C, H_out, W_out = dout.shape
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    k = np.argmax(window)  # the first maximum in row-major order, as torch
                    dx[n, c, i * stride + k // pw, j * stride + k % pw] += dout[n, c, i, j]
    return dx


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N, G, C // G, H, W)
    mean = xg.mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(xg.var(axis=(2, 3, 4), keepdims=True) + eps)
    x_hat = ((xg - mean) / std).reshape(N, C, H, W)
    return gamma * x_hat + beta, (x_hat, gamma, std, G)


def spatial_groupnorm_backward(dout, cache):
    x_hat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True)
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    d = (dout * gamma).reshape(N, G, C // G, H, W)
    xh = x_hat.reshape(N, G, C // G, H, W)
    axes = (2, 3, 4)
    dx = (d - d.mean(axis=axes, keepdims=True) - xh * (d * xh).mean(axis=axes, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta


# ---- correct implementations: vectorised ------------------------------------------------------------------------
def _im2col_indices(c, h, w, hh, ww, stride, pad):
    """CS231n's im2col_indices: (k, i, j) so that x_pad[:, k, i, j] is (N, C·HH·WW, H_out·W_out)."""
    h_out, w_out = (h + 2 * pad - hh) // stride + 1, (w + 2 * pad - ww) // stride + 1
    i0 = np.tile(np.repeat(np.arange(hh), ww), c)
    j0 = np.tile(np.arange(ww), hh * c)
    i1 = stride * np.repeat(np.arange(h_out), w_out)
    j1 = stride * np.tile(np.arange(w_out), h_out)
    k = np.repeat(np.arange(c), hh * ww)[:, None]
    return k, i0[:, None] + i1[None, :], j0[:, None] + j1[None, :], h_out, w_out


def conv_forward_im2col(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    assert (H + 2 * pad - HH) % stride == 0 and (W + 2 * pad - WW) % stride == 0, "invalid geometry"  # CS231n's
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k, i, j, h_out, w_out = _im2col_indices(C, H, W, HH, WW, stride, pad)
    cols = x_pad[:, k, i, j]  # (N, C·HH·WW, H_out·W_out)
    out = w.reshape(F, -1) @ cols + b[:, None]
    return out.reshape(N, F, h_out, w_out), (x.shape, w, cols, (k, i, j), pad)


def conv_backward_im2col(dout, cache):
    (N, C, H, W), w, cols, (k, i, j), pad = cache
    F = w.shape[0]
    dout_cols = dout.reshape(N, F, -1)
    dw = (dout_cols @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    np.add.at(dx_pad, (slice(None), k, i, j), w.reshape(F, -1).T @ dout_cols)  # col2im
    return dx_pad[:, :, pad:pad + H, pad:pad + W], dw, dout.sum(axis=(0, 2, 3))


def _conv_windows(x, pad, hh, ww, stride):
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return np.lib.stride_tricks.sliding_window_view(x_pad, (hh, ww), axis=(2, 3))[:, :, ::stride, ::stride]


def conv_forward_strides(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    windows = _conv_windows(x, pad, w.shape[2], w.shape[3], stride)  # (N, C, H_out, W_out, HH, WW)
    out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + b[None, :, None, None]
    return np.ascontiguousarray(out), (x, w, conv_param)


def conv_backward_strides(dout, cache):
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    _, _, h_out, w_out = dout.shape
    windows = _conv_windows(x, pad, HH, WW, stride)
    dw = np.tensordot(dout, windows, axes=([0, 2, 3], [0, 2, 3]))
    dx_pad = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), dtype=dout.dtype)
    for a in range(HH):
        for c in range(WW):
            dx_pad[:, :, a:a + stride * h_out:stride, c:c + stride * w_out:stride] += \
                np.tensordot(dout, w[:, :, a, c], axes=([1], [0])).transpose(0, 3, 1, 2)
    return dx_pad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, dout.sum(axis=(0, 2, 3))


def max_pool_forward_vectorized(x, pool_param):
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    windows = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::stride, ::stride]
    flat = windows.reshape(*windows.shape[:4], ph * pw)
    return flat.max(axis=-1), (x.shape, flat.argmax(axis=-1), pool_param)


def max_pool_backward_vectorized(dout, cache):
    shape, arg, pool_param = cache
    pw, stride = pool_param["pool_width"], pool_param["stride"]
    N, C, h_out, w_out = dout.shape
    rows = (np.arange(h_out) * stride)[:, None] + arg // pw
    cols = np.arange(w_out) * stride + arg % pw
    dx = np.zeros(shape, dtype=dout.dtype)
    np.add.at(dx, (np.arange(N)[:, None, None, None], np.arange(C)[None, :, None, None], rows, cols), dout)
    return dx


def spatial_groupnorm_forward_loops(x, gamma, beta, G, gn_param):
    eps = gn_param["eps"]
    N, C, H, W = x.shape
    size = C // G
    x_hat, std = np.empty_like(x), np.empty((N, G), dtype=x.dtype)
    for n in range(N):
        for g in range(G):
            block = x[n, g * size:(g + 1) * size]
            std[n, g] = np.sqrt(block.var() + eps)
            x_hat[n, g * size:(g + 1) * size] = (block - block.mean()) / std[n, g]
    return gamma * x_hat + beta, (x_hat, gamma, std)


def spatial_groupnorm_backward_loops(dout, cache):
    x_hat, gamma, std = cache
    N, G = std.shape
    size = x_hat.shape[1] // G
    dx_hat = dout * gamma
    dx = np.empty_like(dout)
    for n in range(N):
        for g in range(G):
            block = slice(g * size, (g + 1) * size)
            d, xh = dx_hat[n, block], x_hat[n, block]
            dx[n, block] = (d - d.mean() - xh * (d * xh).mean()) / std[n, g]
    # (C,) gradients: the same values as CS231n's (1, C, 1, 1)
    return dx, (dout * x_hat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


# ---- planted bugs -------------------------------------------------------------------------------------------------
def make_conv(bug: Optional[str] = None) -> Tuple[Callable, Callable]:
    """Naive-loop convolution with one planted ``bug`` (None: correct)."""
    def padding(pad):
        return {"pad_after": ((0, 2 * pad), (0, 2 * pad)), "pad_before": ((2 * pad, 0), (2 * pad, 0)),
                "no_pad": ((0, 0), (0, 0))}.get(bug, ((pad, pad), (pad, pad)))

    def conv_forward(x, w, b, conv_param):
        stride, pad = conv_param["stride"], conv_param["pad"]
        x_pad = np.pad(x, ((0, 0), (0, 0), *padding(pad)))
        N, C, Hp, Wp = x_pad.shape
        F, _, HH, WW = w.shape
        kernel = w[:, :, ::-1, ::-1] if bug == "flipped" else w
        out = np.zeros((N, F, 1 + (Hp - HH) // stride, 1 + (Wp - WW) // stride), dtype=x.dtype)
        for n in range(N):
            for f in range(F):
                for i in range(out.shape[2]):
                    for j in range(out.shape[3]):
                        window = x_pad[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                        if bug == "bias_per_channel":
                            out[n, f, i, j] = sum(np.sum(window[c] * kernel[f, c]) + b[f] for c in range(C))
                        elif bug == "no_bias":
                            out[n, f, i, j] = np.sum(window * kernel[f])
                        else:
                            out[n, f, i, j] = np.sum(window * kernel[f]) + b[f]
        if bug == "bias_twice":
            out += b[None, :, None, None]
        return out, (x, w, conv_param)

    def conv_backward(dout, cache):
        x, w, conv_param = cache
        stride, pad = conv_param["stride"], conv_param["pad"]
        step = 1 if bug == "stride_ignored" else stride
        (top, _), (left, _) = padding(pad)
        x_pad = np.pad(x, ((0, 0), (0, 0), *padding(pad)))
        N, C, H, W = x.shape
        F, _, HH, WW = w.shape
        kernel = w[:, :, ::-1, ::-1] if bug == "flipped" else w
        dx_pad, dw, db = np.zeros_like(x_pad), np.zeros_like(w), np.zeros(F, dtype=dout.dtype)
        for n in range(N):
            dw_n, db_n = np.zeros_like(w), np.zeros(F, dtype=dout.dtype)
            for f in range(F):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        rows, cols = slice(i * step, i * step + HH), slice(j * step, j * step + WW)
                        dx_pad[n, :, rows, cols] += kernel[f] * dout[n, f, i, j]
                        dw_n[f] += x_pad[n, :, rows, cols] * dout[n, f, i, j]
                        db_n[f] += dout[n, f, i, j]
            if bug == "dw_last":  # dw = … in the batch loop: the last sample's gradient survives
                dw, db = dw_n, db_n
            elif bug == "dw_first":
                dw, db = (dw_n if n == 0 else dw), db + db_n
            else:
                dw, db = dw + dw_n, db + db_n
        if bug == "flipped":
            dw = dw[:, :, ::-1, ::-1]
        if bug == "dw_mean":
            dw, db = dw / N, db / N
        return dx_pad[:, :, top:top + H, left:left + W], dw, db
    return conv_forward, conv_backward


def make_max_pool(bug: Optional[str] = None) -> Tuple[Callable, Callable]:
    """Naive-loop max pooling with one planted ``bug`` (None: correct)."""
    def max_pool_forward(x, pool_param):
        ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
        sh, sw = (ph, pw) if bug == "stride_is_window" else (stride, stride)
        N, C, H, W = x.shape
        out = np.zeros((N, C, 1 + (H - ph) // sh, 1 + (W - pw) // sw), dtype=x.dtype)
        for n in range(N):
            for c in range(C):
                for i in range(out.shape[2]):
                    for j in range(out.shape[3]):
                        out[n, c, i, j] = x[n, c, i * sh:i * sh + ph, j * sw:j * sw + pw].max()
        return out, (x, pool_param)

    def max_pool_backward(dout, cache):
        x, pool_param = cache
        ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
        dx = np.zeros_like(x)
        N, C, H_out, W_out = dout.shape
        for n in range(N):
            for c in range(C):
                for i in range(H_out):
                    for j in range(W_out):
                        rows, cols = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
                        window = x[n, c, rows, cols]
                        is_max = window == window.max()
                        if bug == "all_ties":
                            dx[n, c, rows, cols] += is_max * dout[n, c, i, j]
                        elif bug == "split":
                            dx[n, c, rows, cols] += is_max * dout[n, c, i, j] / is_max.sum()
                        else:
                            k = np.flatnonzero(is_max)[-1] if bug == "last_max" else np.argmax(window)
                            if bug == "assign":
                                dx[n, c, i * s + k // pw, j * s + k % pw] = dout[n, c, i, j]
                            else:
                                dx[n, c, i * s + k // pw, j * s + k % pw] += dout[n, c, i, j]
        return dx
    return max_pool_forward, max_pool_backward


def make_groupnorm(bug: Optional[str] = None) -> Tuple[Callable, Callable]:
    """CS231n-style spatial group norm (a reshape) with one planted ``bug`` (None: correct)."""
    def grouped(x, G):
        """x as 5-d, and the axes one normalisation set spans."""
        N, C, H, W = x.shape
        if bug == "interleaved":  # channel c lands in group c % G
            return x.reshape(N, C // G, G, H, W), (1, 3, 4)
        if bug == "swapped":  # C // G groups of G channels
            return x.reshape(N, C // G, G, H, W), (2, 3, 4)
        axes = {"per_channel": (0, 3, 4), "per_sample": (1, 2, 3, 4), "per_instance": (3, 4)}.get(bug)
        return (x.reshape(N, G, C // G, H, W), (2, 3, 4)) if axes is None else (x.reshape(N, 1, C, H, W), axes)

    def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
        eps = gn_param["eps"]
        xg, axes = grouped(x, G)
        xc = xg - xg.mean(axis=axes, keepdims=True)
        var = (xc * xc).mean(axis=axes, keepdims=True)
        std = np.sqrt(var) + eps if bug == "eps_outside" else np.sqrt(var + eps)
        x_hat = (xc / std).reshape(x.shape)
        return gamma * x_hat + beta, (x_hat, xc, var, std, gamma, G, eps)

    def spatial_groupnorm_backward(dout, cache):
        x_hat, xc, var, std, gamma, G, eps = cache
        dgamma = (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True)
        dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
        d, axes = grouped(dout * gamma, G)
        mean = lambda v: v.mean(axis=axes, keepdims=True)  # noqa: E731
        dstd_dvar2 = 1 / np.sqrt(var) if bug == "eps_outside" else 1 / std  # 2·∂std/∂var
        dx = (d - mean(d)) / std - mean(d * xc) / std ** 2 * dstd_dvar2 * xc
        return dx.reshape(dout.shape), dgamma, dbeta
    return spatial_groupnorm_forward, spatial_groupnorm_backward


# ---- correct implementations pass ---------------------------------------------------------------------------------
CORRECT: Dict[str, Tuple[str, Callable, Callable, list]] = {
    "conv naive": ("conv", conv_forward_naive, conv_backward_naive, CONV_CHECKS),
    "conv im2col": ("conv", conv_forward_im2col, conv_backward_im2col, CONV_CHECKS),
    "conv strides": ("conv", conv_forward_strides, conv_backward_strides, CONV_CHECKS),
    "conv planted-bug template": ("conv", *make_conv(), CONV_CHECKS),
    "max_pool naive": ("max_pool", max_pool_forward_naive, max_pool_backward_naive, POOL_CHECKS),
    "max_pool vectorised": ("max_pool", max_pool_forward_vectorized, max_pool_backward_vectorized, POOL_CHECKS),
    "max_pool planted-bug template": ("max_pool", *make_max_pool(), POOL_CHECKS),
    "groupnorm reshape": ("spatial_groupnorm", spatial_groupnorm_forward, spatial_groupnorm_backward,
                          GROUPNORM_CHECKS),
    "groupnorm loops, (C,) gradients": ("spatial_groupnorm", spatial_groupnorm_forward_loops,
                                        spatial_groupnorm_backward_loops, GROUPNORM_CHECKS),
    "groupnorm planted-bug template": ("spatial_groupnorm", *make_groupnorm(), GROUPNORM_CHECKS),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_implementation_passes(name, dtype, seed):
    kind, forward, backward, checks = CORRECT[name]
    report = check_layer(kind, forward, backward, dtype=dtype, seed=seed)
    assert [row.check for row in report.rows] == checks
    assert report.passed, str(report)
    assert f"{len(checks)} passed, 0 failed" in str(report)
    assert all(row.comparison.total > 0 and row.diagnosis is None for row in report.rows)


def test_the_geometries_cover_what_the_tie_and_stride_rules_need():
    strides = {g[7] for g in CONV_GEOMETRIES}
    pads = {g[8] for g in CONV_GEOMETRIES}
    assert strides == {1, 2} and pads == {0, 1}
    for n, c, h, w, f, hh, ww, stride, pad in CONV_GEOMETRIES:
        assert (h + 2 * pad - hh) % stride == 0 and (w + 2 * pad - ww) % stride == 0  # CS231n's assertion
        assert len({n, c, h, w, f}) == 5 and hh != ww and c != 2
    assert any(ties and stride < min(ph, pw) for *_, ph, pw, stride, ties in POOL_GEOMETRIES)  # overlapping, ties
    assert any(ties and stride == ph == pw for *_, ph, pw, stride, ties in POOL_GEOMETRIES)


# ---- planted bugs: each fails where it should and is named -------------------------------------------------------
PLANTED: Dict[str, Tuple[str, Callable, Optional[Callable], Dict[str, str]]] = {
    "conv: kernel flipped": ("conv", *make_conv("flipped"), dict.fromkeys(["out", "dx", "dw"], "conv_flipped_kernel")),
    "conv: bias missing": ("conv", *make_conv("no_bias"), {"out": "conv_no_bias"}),
    "conv: bias added twice": ("conv", *make_conv("bias_twice"), {"out": "conv_bias_twice"}),
    "conv: bias added per input channel": ("conv", *make_conv("bias_per_channel"), {"out": "conv_bias_per_channel"}),
    "conv: padding after only": ("conv", *make_conv("pad_after"),
                                 dict.fromkeys(["out", "dx", "dw"], "conv_pad_after_only")),
    "conv: padding before only": ("conv", *make_conv("pad_before"),
                                  dict.fromkeys(["out", "dx", "dw"], "conv_pad_before_only")),
    "conv: no padding": ("conv", make_conv("no_pad")[0], None, {"out": "conv_no_padding"}),
    "conv: stride ignored in the backward": ("conv", *make_conv("stride_ignored"),
                                             dict.fromkeys(["dx", "dw"], "conv_backward_stride_ignored")),
    "conv: dw of the last sample": ("conv", *make_conv("dw_last"),
                                    dict.fromkeys(["dw", "db"], "conv_grad_last_sample")),
    "conv: dw of the first sample": ("conv", *make_conv("dw_first"), {"dw": "conv_grad_first_sample"}),
    "conv: dw averaged over the batch": ("conv", *make_conv("dw_mean"), dict.fromkeys(["dw", "db"], "grad_over_n")),
    "max_pool: gradient to every tie": ("max_pool", *make_max_pool("all_ties"), {"dx": "pool_grad_to_all_ties"}),
    "max_pool: gradient to the last maximum": ("max_pool", *make_max_pool("last_max"),
                                               {"dx": "pool_grad_to_last_max"}),
    "max_pool: gradient split among ties": ("max_pool", *make_max_pool("split"), {"dx": "pool_grad_split_among_ties"}),
    "max_pool: dx assigned, not accumulated": ("max_pool", *make_max_pool("assign"), {"dx": "pool_grad_assigned"}),
    "max_pool: stride taken as the window": ("max_pool", make_max_pool("stride_is_window")[0], None,
                                             {"out": "pool_stride_is_window"}),
    **{f"groupnorm: {bug}": ("spatial_groupnorm", *make_groupnorm(bug),
                             dict.fromkeys(["out", "dx", "dgamma"], detector))
       for bug, detector in [("per_channel", "groupnorm_per_channel"), ("per_sample", "groupnorm_per_sample"),
                             ("per_instance", "groupnorm_per_instance"),
                             ("interleaved", "groupnorm_interleaved_groups"),
                             ("swapped", "groupnorm_groups_swapped"), ("eps_outside", "groupnorm_eps_outside_sqrt")]},
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_planted_bug_fails_and_is_named(name, dtype, seed):
    kind, forward, backward, expected = PLANTED[name]
    eps = 1e-2 if "eps" in name else 1e-5  # eps's placement is below float32's resolution at 1e-5
    report = check_layer(kind, forward, backward, dtype=dtype, seed=seed, eps=eps)
    failed = {row.check: row.diagnosis for row in report.failures}
    assert failed == {check: DETECTORS[detector].cause for check, detector in expected.items()}, str(report)
    assert not report.passed and "MISMATCH" in str(report)
    for check, detector in expected.items():
        assert DETECTORS[detector].cause in str(report)
        assert report[check].diagnosis == DETECTORS[detector].cause


def test_every_cnn_detector_is_planted():
    mine = {name for name, det in DETECTORS.items() if set(det.kinds) & {"conv", "maxpool", "groupnorm"}}
    planted = {detector for *_, expected in PLANTED.values() for detector in expected.values()}
    assert len(mine) >= 19 and mine <= planted, sorted(mine - planted)


def test_a_near_miss_is_not_given_a_cause(seed):
    """Noise in a correct result fails but matches no hypothesis: "no known cause recognised"."""
    def noisy_conv(x, w, b, conv_param):
        out, cache = conv_forward_naive(x, w, b, conv_param)
        return out * (1 + 1e-3 * np.random.default_rng(0).standard_normal(out.shape)), cache

    def noisy_pool_backward(dout, cache):
        dx = max_pool_backward_naive(dout, cache)
        return dx + (dx != 0) * 1e-3

    for report, check in [(check_layer("conv", noisy_conv, conv_backward_naive, seed=seed), "out"),
                          (check_layer("max_pool", max_pool_forward_naive, noisy_pool_backward, seed=seed), "dx")]:
        assert [row.check for row in report.failures] == [check]
        assert report[check].diagnosis is None and "no known cause recognised" in str(report)


def test_a_shape_mismatch_of_the_older_kinds_still_gets_no_diagnosis():
    x = np.ones((4, 3))
    assert diagnoses("out", np.zeros((3, 4)), x, kind="batchnorm", x=x, gamma=np.ones(3), beta=np.zeros(3),
                     eps=1e-5) == []
    # and a shape no reshaping hypothesis explains is not diagnosed either
    assert check_layer("conv", lambda x, w, b, p: (np.zeros((1, 1)), None))["out"].diagnosis is None


# ---- broken user functions ----------------------------------------------------------------------------------------
def _raises(*args):
    raise IndexError("index 7 is out of bounds")


def _groupnorm_without_g(x, gamma, beta, gn_param):  # the course's G argument forgotten
    return spatial_groupnorm_forward(x, gamma, beta, 2, gn_param)


@pytest.mark.parametrize("kind, forward, backward, check, message", [
    ("conv", _raises, None, "out", "_raises raised IndexError: index 7 is out of bounds"),
    ("conv", lambda x, w, b, p: conv_forward_naive(x, w, b, p)[0], None, "out", "expected (out, cache), got ndarray"),
    ("conv", conv_forward_naive, lambda dout, cache: conv_backward_naive(dout, cache)[:2], "dx",
     "expected (dx, dw, db), got a tuple of 2"),
    ("conv", conv_forward_naive, _raises, "dx", "_raises raised IndexError"),
    ("max_pool", max_pool_forward_naive, lambda dout, cache: (max_pool_backward_naive(dout, cache), None), "dx",
     "not a numeric array"),
    ("max_pool", lambda x, p: ([[1.0]], None), None, "out", "shape (1, 1) != expected"),
    ("spatial_groupnorm", _groupnorm_without_g, None, "out",
     "signature: expected _groupnorm_without_g(x, gamma, beta, G, gn_param), got _groupnorm_without_g(x, gamma, "
     "beta, gn_param)"),
    ("spatial_groupnorm", spatial_groupnorm_forward,
     lambda dout, cache: (*spatial_groupnorm_backward(dout, cache)[:2], None), "dbeta", "missing (None)"),
    ("spatial_groupnorm", spatial_groupnorm_forward,
     lambda dout, cache: (spatial_groupnorm_backward(dout, cache)[0], np.ones((1, 1)), np.ones((1, 1))),
     "dgamma", "shape (1, 1) != expected (1,"),
])
def test_a_broken_user_function_is_a_failed_check(kind, forward, backward, check, message):
    report = check_layer(kind, forward, backward)
    assert not report.passed
    assert message in report[check].comparison.problem, str(report)
    assert "MISMATCH" in str(report)


# ---- kinds from names, and the command line ----------------------------------------------------------------------
@pytest.mark.parametrize("name, kind", [
    ("conv_forward_naive", "conv"), ("conv_forward_fast", "conv"), ("conv_forward_im2col", "conv"),
    ("conv_forward_strides", "conv"), ("max_pool_forward_naive", "max_pool"), ("max_pool_forward_fast", "max_pool"),
    ("max_pool_forward_reshape", "max_pool"), ("spatial_groupnorm_forward", "spatial_groupnorm"),
    ("spatial_groupnorm_quick_forward", "spatial_groupnorm"),
    # the older names infer as before
    ("spatial_batchnorm_forward", "spatial_batchnorm"), ("batchnorm_forward", "batchnorm"),
    ("layernorm_forward", "layernorm"), ("affine_forward", "affine"), ("relu_forward", "relu"),
    ("dropout_forward", "dropout"), ("sgd", "sgd"), ("sgd_momentum", "sgd_momentum"), ("rmsprop", "rmsprop"),
    ("adam", "adam"), ("affine_relu_forward", None), ("my_layer", None)])
def test_infer_kind(name, kind):
    """The built-in kinds a name implies (a layer_utils sandwich is none of them; reference.kinds may register
    names of its own, which infer_kind consults first)."""
    assert infer_builtin_kind(name) == kind


def test_the_new_kinds_are_layer_kinds():
    assert LAYER_KINDS[-3:] == ("conv", "max_pool", "spatial_groupnorm")


def _user_file(tmp_path, name: str, *functions: Callable, edit: Tuple[str, str] = ("", "")) -> str:
    """A user's layers.py holding the source of ``functions`` (with one ``edit`` applied, which must apply)."""
    source = "import numpy as np\n\n\n" + "\n\n".join(inspect.getsource(fn) for fn in functions)
    if edit[0]:
        assert source.count(edit[0]) == 1
        source = source.replace(*edit)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return str(path)


@pytest.mark.parametrize("forward, backward, checks", [
    (conv_forward_naive, conv_backward_naive, 4), (max_pool_forward_naive, max_pool_backward_naive, 2),
    (spatial_groupnorm_forward, spatial_groupnorm_backward, 4)])
def test_cli_passes_a_correct_file(tmp_path, capsys, forward, backward, checks):
    path = _user_file(tmp_path, "layers", forward, backward)
    assert main_user(f"{path}:{forward.__name__}", []) == 0
    out = capsys.readouterr().out
    assert f"{forward.__name__} / {backward.__name__}" in out and f"{checks} passed, 0 failed" in out
    assert "max abs err  max rel err  mismatches  verdict" in out


def test_cli_names_the_bug(tmp_path, capsys):
    path = _user_file(tmp_path, "layers_bad", conv_forward_naive, conv_backward_naive,
                      edit=("np.sum(window * w[f]) + b[f]", "np.sum(window * w[f, :, ::-1, ::-1]) + b[f]"))
    assert main_user(f"{path}:conv_forward_naive", ["--dtype", "float32"]) == 1
    out = capsys.readouterr().out
    assert "conv: conv_forward_naive / conv_backward_naive" in out and "(float32, seed 0)" in out
    assert "3 passed, 1 failed" in out and DETECTORS["conv_flipped_kernel"].cause in out


def test_cli_pairs_the_fast_names_and_takes_kind(tmp_path, capsys):
    path = _user_file(tmp_path, "fast_layers", _im2col_indices, conv_forward_im2col, conv_backward_im2col,
                      edit=("def conv_backward_im2col(", "def conv_backward_fast("))
    source = Path(path).read_text().replace("def conv_forward_im2col(", "def conv_forward_fast(")
    Path(path).write_text(source + "\n\ndef layer_two(x, w, b, conv_param):\n    return conv_forward_fast(x, w, b, "
                                   "conv_param)\n")
    assert main_user(f"{path}:conv_forward_fast", []) == 0
    assert "conv_forward_fast / conv_backward_fast" in capsys.readouterr().out
    assert main_user(f"{path}:layer_two", []) == 2  # no kind in the name
    assert "cannot tell the kind" in capsys.readouterr().err
    assert main_user(f"{path}:layer_two", ["--kind", "conv", "--backward", "conv_backward_fast"]) == 0
    assert "layer_two / conv_backward_fast" in capsys.readouterr().out

