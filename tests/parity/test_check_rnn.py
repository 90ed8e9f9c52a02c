"""reference.check for CS231n assignment 3 (rnn_layers.py): users' recurrent layers against torch.

- correct implementations in the course's style (a step function and a loop over time, numerically stable sigmoid)
  pass every check, in float64 and float32;
- each planted bug fails exactly the checks it should, and every failed check names the planted cause — every
  detector of these kinds is planted once (``test_every_rnn_detector_is_planted``): the LSTM read with torch's
  gate order, tanh' as 1 − tanh, the gradient from the next time step dropped, weight gradients of one time step,
  the cell-state gradient not through the forget gate (or without the path through next_h, or not carried back),
  the embedding gradient assigned (repeated words lost), the temporal softmax loss not divided by N, divided by
  N·T or by the mask's count, or ignoring the mask;
- the LSTM is compared with torch's nn.LSTMCell/nn.LSTM given the course's weights reordered to torch's gates;
- a user function that raises or returns the wrong structure is a failed check, not a crash;
- kinds are inferred from CS231n's names; the command line (``handnn-verify --user FILE.py:rnn_step_forward``)
  prints the table and returns 0 or 1.
"""
from __future__ import annotations

import inspect
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch

from reference.check import (LAYER_KINDS, RNN_SHAPE, SEQUENCE_KINDS, check_layer, infer_builtin_kind, main_user)
from reference.diagnosis import DETECTORS, category, diagnoses, normalize_kind

RNN_STEP_CHECKS = ["next_h", "dx", "dprev_h", "dWx", "dWh", "db"]
RNN_CHECKS = ["h", "dx", "dh0", "dWx", "dWh", "db"]
LSTM_STEP_CHECKS = ["next_h", "next_c", "dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"]
GRADS = ["dx", "dh0", "dWx", "dWh", "db"]
GATE_ORDER = "gate order i, f, g, o (torch's) where the assignment's is i, f, o, g"


# ---- correct implementations, as students write them (self-contained: the CLI tests copy their source) ------------
def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    cache, prev_h = [], h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(step_cache)
    return h, cache


def rnn_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx, dWh, db = np.zeros((D, H), dh.dtype), np.zeros((H, H), dh.dtype), np.zeros(H, dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_forward(x, W):
    return W[x], (x, W.shape)


def word_embedding_backward(dout, cache):
    x, shape = cache
    dW = np.zeros(shape, dtype=dout.dtype)
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_forward(x, w, b):
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    return out, (x, w, b, out)


def temporal_affine_backward(dout, cache):
    x, w, b, out = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    N, T, V = x.shape
    x_flat, y_flat, mask_flat = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    if verbose:
        print("dx_flat: ", dx_flat.shape)
    return loss, dx_flat.reshape(N, T, V)


def sigmoid(x):
    """CS231n's numerically stable sigmoid."""
    pos_mask = x >= 0
    neg_mask = x < 0
    z = np.zeros_like(x)
    z[pos_mask] = np.exp(-x[pos_mask])
    z[neg_mask] = np.exp(x[neg_mask])
    top = np.ones_like(x)
    top[neg_mask] = z[neg_mask]
    return top / (1 + z)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)])
    return da.dot(Wx.T), da.dot(Wh.T), dc * f, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    prev_h, prev_c, cache = h0, np.zeros_like(h0), []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(step_cache)
    return h, cache


def lstm_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx, dWh, db = np.zeros((D, 4 * H), dh.dtype), np.zeros((H, 4 * H), dh.dtype), np.zeros(4 * H, dh.dtype)
    dprev_h, dprev_c = np.zeros((N, H), dh.dtype), np.zeros((N, H), dh.dtype)
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t, :] + dprev_h, dprev_c,
                                                                                cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# ---- correct implementations: vectorised variants -----------------------------------------------------------------
def word_embedding_backward_bincount(dout, cache):
    x, (V, D) = cache
    flat = dout.reshape(-1, D)
    return np.stack([np.bincount(x.ravel(), weights=flat[:, d], minlength=V) for d in range(D)], axis=1).astype(
        dout.dtype)


def temporal_softmax_loss_log_softmax(x, y, mask, verbose=False):
    """log-sum-exp form, one-hot labels, the mask broadcast: the same quantities."""
    N = x.shape[0]
    shifted = x - x.max(axis=2, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    onehot = np.eye(x.shape[2], dtype=x.dtype)[y]
    loss = -(mask[..., None] * onehot * log_p).sum() / N
    return loss, (np.exp(log_p) - onehot) * mask[..., None] / N


# ---- planted bugs -------------------------------------------------------------------------------------------------
def rnn_step_forward_keeps_a(x, prev_h, Wx, Wh, b):
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    return np.tanh(a), (x, prev_h, Wx, Wh, a)


def rnn_step_backward_tanh_of_input(dnext_h, cache):
    """The bug: tanh' from the pre-activation a (the input of tanh), 1 - a**2, not from the output next_h."""
    x, prev_h, Wx, Wh, a = cache
    da = dnext_h * (1 - a ** 2)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def make_rnn(bug: Optional[str] = None) -> Tuple[Callable, Callable, Callable, Callable]:
    """(rnn_step_forward, rnn_step_backward, rnn_forward, rnn_backward) with one planted ``bug`` (None: correct)."""
    def step_backward(dnext_h, cache):
        x, prev_h, Wx, Wh, next_h = cache
        da = dnext_h * ((1 - next_h) if bug == "tanh_linear" else (1 - next_h ** 2))
        return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)

    def backward(dh, cache):
        N, T, H = dh.shape
        dx = np.zeros((N, T, cache[0][0].shape[1]), dtype=dh.dtype)
        dWx, dWh, db = 0, 0, 0
        dprev_h = np.zeros((N, H), dtype=dh.dtype)
        order = range(T) if bug == "params_last_step" else reversed(range(T))
        for t in reversed(range(T)):
            upstream = dh[:, t] if bug == "no_upstream" else dh[:, t] + dprev_h
            dx[:, t], dprev_h, dWx_t, dWh_t, db_t = step_backward(upstream, cache[t])
            dWx, db = dWx + dWx_t, db + db_t
            dWh = dWh_t if bug == "dWh_overwritten" else dWh + dWh_t
        if bug == "params_last_step":  # recomputed in a second loop, forward in time, that overwrites them
            for t in order:
                _, _, dWx, dWh, db = step_backward(dh[:, t], cache[t])
        return dx, dprev_h, dWx, dWh, db
    return rnn_step_forward, step_backward, rnn_forward, backward


def make_lstm(bug: Optional[str] = None) -> Tuple[Callable, Callable, Callable, Callable]:
    """(lstm_step_forward, lstm_step_backward, lstm_forward, lstm_backward) with one planted ``bug``."""
    torch_gates = bug == "torch_gates"  # the blocks read as i, f, g, o in the forward and the backward

    def dtanh(y, where):
        return (1 - y) if bug == "tanh_linear" or bug == f"tanh_linear_{where}" else (1 - y ** 2)

    def step_forward(x, prev_h, prev_c, Wx, Wh, b):
        H = prev_h.shape[1]
        a = x.dot(Wx) + prev_h.dot(Wh) + b
        o_block, g_block = (a[:, 3 * H:], a[:, 2 * H:3 * H]) if torch_gates else (a[:, 2 * H:3 * H], a[:, 3 * H:])
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(o_block), np.tanh(g_block)
        next_c = f * prev_c + i * g
        return o * np.tanh(next_c), next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)

    def step_backward(dnext_h, dnext_c, cache):
        x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
        tanh_c = np.tanh(next_c)
        dc = dnext_c if bug == "no_h_path" else dnext_c + dnext_h * o * dtanh(tanh_c, "c")
        da_i, da_f = dc * g * i * (1 - i), dc * prev_c * f * (1 - f)
        da_o, da_g = dnext_h * tanh_c * o * (1 - o), dc * i * dtanh(g, "g")
        da = np.hstack([da_i, da_f, da_g, da_o] if torch_gates else [da_i, da_f, da_o, da_g])
        dprev_c = dc if bug == "no_forget" else dc * f
        return da.dot(Wx.T), da.dot(Wh.T), dprev_c, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)

    def forward(x, h0, Wx, Wh, b):
        N, T, D = x.shape
        h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
        prev_h, prev_c, cache = h0, np.zeros_like(h0), []
        for t in range(T):
            prev_h, prev_c, step_cache = step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
            h[:, t] = prev_h
            cache.append(step_cache)
        return h, cache

    def backward(dh, cache):
        N, T, H = dh.shape
        dx = np.zeros((N, T, cache[0][0].shape[1]), dtype=dh.dtype)
        dWx, dWh, db = 0, 0, 0
        dprev_h, dprev_c = np.zeros((N, H), dh.dtype), np.zeros((N, H), dh.dtype)
        for t in reversed(range(T)):
            upstream = dh[:, t] if bug == "no_upstream" else dh[:, t] + dprev_h
            dnext_c = np.zeros_like(dprev_c) if bug == "c_not_carried" else dprev_c
            dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step_backward(upstream, dnext_c, cache[t])
            dWx, db = dWx + dWx_t, db + db_t
            dWh = dWh_t if bug == "dWh_overwritten" else dWh + dWh_t
        return dx, dprev_h, dWx, dWh, db
    return step_forward, step_backward, forward, backward


def word_embedding_backward_assigned(dout, cache):
    x, shape = cache
    dW = np.zeros(shape, dtype=dout.dtype)
    dW[x] = dout  # a repeated word keeps one of its gradients
    return dW


def word_embedding_backward_buffered(dout, cache):
    x, shape = cache
    dW = np.zeros(shape, dtype=dout.dtype)
    dW[x] += dout  # buffered: the same as the assignment
    return dW


def make_temporal_softmax_loss(bug: str) -> Callable:
    """temporal_softmax_loss with one planted ``bug``: 'not_over_n', 'over_nt', 'over_mask', 'mask_ignored',
    'mask_ignored_in_dx', 'no_max_shift' (np.exp of the raw logits: the checker's large logits overflow)."""
    def temporal_softmax_loss(x, y, mask, verbose=False):
        N, T, V = x.shape
        divisor = {"not_over_n": 1, "over_nt": N * T, "over_mask": mask.sum()}.get(bug, N)
        loss_mask = np.ones_like(mask) if bug == "mask_ignored" else mask
        grad_mask = np.ones_like(mask) if bug in ("mask_ignored", "mask_ignored_in_dx") else mask
        shifted = x if bug == "no_max_shift" else x - x.max(axis=2, keepdims=True)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            probs = np.exp(shifted) / np.exp(shifted).sum(axis=2, keepdims=True)
        n_idx, t_idx = np.meshgrid(np.arange(N), np.arange(T), indexing="ij")
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = -np.sum(loss_mask * np.log(probs[n_idx, t_idx, y])) / divisor
        dx = probs.copy()
        dx[n_idx, t_idx, y] -= 1
        return loss, (dx * grad_mask[..., None] / divisor).astype(x.dtype)
    return temporal_softmax_loss


# ---- correct implementations pass ---------------------------------------------------------------------------------
_RNN_OK, _LSTM_OK = make_rnn(), make_lstm()
CORRECT: Dict[str, Tuple[str, Callable, Optional[Callable], list]] = {
    "rnn_step": ("rnn_step", rnn_step_forward, rnn_step_backward, RNN_STEP_CHECKS),
    "rnn": ("rnn", rnn_forward, rnn_backward, RNN_CHECKS),
    "rnn planted-bug template": ("rnn", _RNN_OK[2], _RNN_OK[3], RNN_CHECKS),
    "word_embedding np.add.at": ("word_embedding", word_embedding_forward, word_embedding_backward, ["out", "dW"]),
    "word_embedding bincount": ("word_embedding", word_embedding_forward, word_embedding_backward_bincount,
                                ["out", "dW"]),
    "temporal_affine": ("temporal_affine", temporal_affine_forward, temporal_affine_backward,
                        ["out", "dx", "dw", "db"]),
    "temporal_softmax_loss": ("temporal_softmax_loss", temporal_softmax_loss, None, ["loss", "dx"]),
    "temporal_softmax_loss log-softmax": ("temporal_softmax_loss", temporal_softmax_loss_log_softmax, None,
                                          ["loss", "dx"]),
    "lstm_step": ("lstm_step", lstm_step_forward, lstm_step_backward, LSTM_STEP_CHECKS),
    "lstm_step planted-bug template": ("lstm_step", _LSTM_OK[0], _LSTM_OK[1], LSTM_STEP_CHECKS),
    "lstm": ("lstm", lstm_forward, lstm_backward, RNN_CHECKS),
    "lstm planted-bug template": ("lstm", _LSTM_OK[2], _LSTM_OK[3], RNN_CHECKS),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_implementation_passes(name, dtype, seed):
    kind, forward, backward, checks = CORRECT[name]
    report = check_layer(kind, forward, backward, dtype=dtype, seed=seed)
    assert [row.check for row in report.rows] == checks
    assert report.passed, str(report)
    assert f"{len(checks)} passed, 0 failed" in str(report)
    assert all(row.comparison.total > 0 and row.diagnosis is None for row in report.rows)


def test_a_forward_alone_is_checked():
    report = check_layer("lstm", lstm_forward)
    assert [row.check for row in report.rows] == ["h"] and report.passed
    assert "no backward function: gradients not checked" in str(report)
    assert "no backward function" not in str(check_layer("temporal_softmax_loss", temporal_softmax_loss))


def test_the_torch_random_stream_is_left_alone():
    """The torch modules the check builds live on the meta device: no initialisation draws from torch's RNG."""
    state = torch.random.get_rng_state()
    assert check_layer("lstm", lstm_forward, lstm_backward).passed
    assert torch.equal(state, torch.random.get_rng_state())


# ---- planted bugs: each fails where it should and is named -------------------------------------------------------
def _rnn(bug, step=False):
    fns = make_rnn(bug)
    return fns[:2] if step else fns[2:]


def _lstm(bug, step=False):
    fns = make_lstm(bug)
    return fns[:2] if step else fns[2:]


PLANTED: Dict[str, Tuple[str, Callable, Optional[Callable], Dict[str, str]]] = {
    "rnn_step: tanh' = 1 − tanh": ("rnn_step", *_rnn("tanh_linear", step=True),
                                   dict.fromkeys(RNN_STEP_CHECKS[1:], "tanh_grad_not_squared")),
    "rnn: tanh' = 1 − tanh": ("rnn", *_rnn("tanh_linear"), dict.fromkeys(GRADS, "tanh_grad_not_squared")),
    "rnn_step: tanh' from the input": ("rnn_step", rnn_step_forward_keeps_a, rnn_step_backward_tanh_of_input,
                                       dict.fromkeys(RNN_STEP_CHECKS[1:], "tanh_grad_of_input")),
    "rnn: dh[t] only": ("rnn", *_rnn("no_upstream"), dict.fromkeys(GRADS, "recurrent_no_upstream_dh")),
    "rnn: dWh overwritten": ("rnn", *_rnn("dWh_overwritten"), {"dWh": "recurrent_param_grad_first_step"}),
    "rnn: weight gradients of the last step": ("rnn", *_rnn("params_last_step"),
                                               dict.fromkeys(["dWx", "dWh", "db"], "recurrent_param_grad_last_step")),
    "lstm_step: torch's gate order": ("lstm_step", *_lstm("torch_gates", step=True),
                                      dict.fromkeys(LSTM_STEP_CHECKS, "lstm_gate_order_torch")),
    "lstm_step: tanh' = 1 − tanh": ("lstm_step", *_lstm("tanh_linear", step=True),
                                    dict.fromkeys(LSTM_STEP_CHECKS[2:], "tanh_grad_not_squared")),
    "lstm_step: tanh' = 1 − tanh for g only": ("lstm_step", *_lstm("tanh_linear_g", step=True),  # dprev_c = dc·f
                                                dict.fromkeys(["dx", "dprev_h", "dWx", "dWh", "db"],
                                                              "tanh_grad_not_squared")),
    "lstm: tanh' = 1 − tanh for tanh(c) only": ("lstm", *_lstm("tanh_linear_c"),
                                                dict.fromkeys(GRADS, "tanh_grad_not_squared")),
    "lstm_step: dprev_c without the forget gate": ("lstm_step", *_lstm("no_forget", step=True),
                                                   {"dprev_c": "lstm_cell_grad_skips_forget_gate"}),
    "lstm_step: dc without the path through next_h": ("lstm_step", *_lstm("no_h_path", step=True),
                                                      dict.fromkeys(LSTM_STEP_CHECKS[2:],
                                                                    "lstm_cell_grad_misses_h_path")),
    "lstm: torch's gate order": ("lstm", *_lstm("torch_gates"), dict.fromkeys(RNN_CHECKS, "lstm_gate_order_torch")),
    "lstm: tanh' = 1 − tanh": ("lstm", *_lstm("tanh_linear"), dict.fromkeys(GRADS, "tanh_grad_not_squared")),
    "lstm: dh[t] only": ("lstm", *_lstm("no_upstream"), dict.fromkeys(GRADS, "recurrent_no_upstream_dh")),
    "lstm: dWh overwritten": ("lstm", *_lstm("dWh_overwritten"), {"dWh": "recurrent_param_grad_first_step"}),
    "lstm: dprev_c without the forget gate": ("lstm", *_lstm("no_forget"),
                                              dict.fromkeys(GRADS, "lstm_cell_grad_skips_forget_gate")),
    "lstm: cell gradient not carried back": ("lstm", *_lstm("c_not_carried"),
                                             dict.fromkeys(GRADS, "lstm_cell_grad_not_carried")),
    "word_embedding: dW[x] = dout": ("word_embedding", word_embedding_forward, word_embedding_backward_assigned,
                                     {"dW": "embedding_grad_assigned"}),
    "word_embedding: dW[x] += dout": ("word_embedding", word_embedding_forward, word_embedding_backward_buffered,
                                      {"dW": "embedding_grad_assigned"}),
    "temporal_affine: db over N only": ("temporal_affine", temporal_affine_forward,
                                        lambda dout, cache: (*temporal_affine_backward(dout, cache)[:2],
                                                             dout.sum(axis=0)),
                                        {"db": "temporal_affine_db_over_n_only"}),
    **{f"temporal_softmax_loss: {bug}": ("temporal_softmax_loss", make_temporal_softmax_loss(bug), None,
                                         dict.fromkeys(checks, detector))
       for bug, checks, detector in [
           ("not_over_n", ["loss", "dx"], "temporal_softmax_not_over_n"),
           ("over_nt", ["loss", "dx"], "temporal_softmax_over_nt"),
           ("over_mask", ["loss", "dx"], "temporal_softmax_over_mask_count"),
           ("mask_ignored", ["loss", "dx"], "temporal_softmax_mask_ignored"),
           ("mask_ignored_in_dx", ["dx"], "temporal_softmax_mask_ignored"),
           ("no_max_shift", ["loss", "dx"], "softmax_no_max_shift")]},
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_planted_bug_fails_and_is_named(name, dtype, seed):
    kind, forward, backward, expected = PLANTED[name]
    report = check_layer(kind, forward, backward, dtype=dtype, seed=seed)
    failed = {row.check: row.diagnosis for row in report.failures}
    assert failed == {check: DETECTORS[detector].cause for check, detector in expected.items()}, str(report)
    assert not report.passed and "MISMATCH" in str(report)
    for check, detector in expected.items():
        assert report[check].diagnosis == DETECTORS[detector].cause


def test_every_rnn_detector_is_planted():
    mine = {name for name, det in DETECTORS.items()
            if set(det.kinds) & {"rnn", "lstm", "embedding", "temporalaffine", "temporalsoftmaxloss"}}
    planted = {detector for *_, expected in PLANTED.values() for detector in expected.values()}
    assert len(mine) >= 14 and mine <= planted, sorted(mine - planted)


def test_the_gate_order_diagnosis_says_so():
    report = check_layer("lstm_step", *_lstm("torch_gates", step=True))
    assert GATE_ORDER in report["next_h"].diagnosis and GATE_ORDER in str(report)


def test_a_near_miss_is_not_given_a_cause(seed):
    """Noise in a correct gradient fails but matches no hypothesis: "no known cause recognised"."""
    def noisy_backward(dh, cache):
        dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
        return dx, dh0, dWx, dWh * (1 + 1e-3 * np.random.default_rng(0).standard_normal(dWh.shape)), db

    report = check_layer("rnn", rnn_forward, noisy_backward, seed=seed)
    assert [row.check for row in report.failures] == ["dWh"]
    assert report["dWh"].diagnosis is None and "no known cause recognised" in str(report)


def test_the_hypotheses_reproduce_torch_when_nothing_is_wrong(rng):
    """The detectors' own recurrence (numpy) is the right one: with no deviation it is torch's, so it explains
    nothing — and a deviation it encodes is told apart from the right answer on the checker's shapes."""
    from reference.diagnosis import Context, _recurrent
    n, steps, d, h = RNN_SHAPE
    values = {"kind": "lstm", "x": rng.standard_normal((n, steps, d)), "h0": rng.standard_normal((n, h)),
              "Wx": rng.normal(0, d ** -0.5, (d, 4 * h)), "Wh": rng.normal(0, h ** -0.5, (h, 4 * h)),
              "b": rng.normal(0, 0.5, 4 * h), "dout": rng.standard_normal((n, steps, h))}
    expected = lstm_backward(values["dout"], lstm_forward(*(values[k] for k in ("x", "h0", "Wx", "Wh", "b")))[1])
    for check, value in zip(GRADS, expected):
        ctx = Context(check, value, value, values)
        np.testing.assert_allclose(_recurrent(ctx), value, rtol=1e-12, atol=1e-12)
        assert not np.allclose(_recurrent(ctx, torch_gates=True), value)
    assert diagnoses("dx", expected[0], expected[0], **values) == []


# ---- broken user functions ----------------------------------------------------------------------------------------
def _raises(*args):
    raise IndexError("index 7 is out of bounds")


@pytest.mark.parametrize("kind, forward, backward, check, message", [
    ("rnn_step", _raises, None, "next_h", "_raises raised IndexError: index 7 is out of bounds"),
    ("rnn_step", lambda *a: rnn_step_forward(*a)[0], None, "next_h", "expected (next_h, cache), got ndarray"),
    ("lstm_step", lambda *a: lstm_step_forward(*a)[::2], None, "next_h",
     "expected (next_h, next_c, cache), got a tuple of 2"),
    ("lstm_step", lstm_step_forward, lambda dh, cache: lstm_step_backward(dh, np.zeros_like(dh), cache), "dx",
     "signature: expected <lambda>(dnext_h, dnext_c, cache), got <lambda>(dh, cache)"),
    ("lstm", lstm_forward, lambda dh, cache: lstm_backward(dh, cache)[:4], "dx",
     "expected (dx, dh0, dWx, dWh, db), got a tuple of 4"),
    ("rnn", rnn_forward, lambda dh, cache: (*rnn_backward(dh, cache)[:4], None), "db", "missing (None)"),
    ("word_embedding", word_embedding_forward, lambda dout, cache: (word_embedding_backward(dout, cache), None),
     "dW", "not a numeric array"),
    ("temporal_affine", temporal_affine_forward,
     lambda dout, cache: (*temporal_affine_backward(dout, cache)[:2], dout.sum(axis=(0, 1))[:-1]), "db",
     "shape (6,) != expected (7,)"),
    ("temporal_softmax_loss", lambda x, y, mask: temporal_softmax_loss(x, y, mask)[0], None, "loss",
     "expected (loss, dx), got float"),
])
def test_a_broken_user_function_is_a_failed_check(kind, forward, backward, check, message):
    report = check_layer(kind, forward, backward)
    assert not report.passed
    assert message in report[check].comparison.problem, str(report)
    assert "MISMATCH" in str(report)


def test_a_float64_loss_scalar_passes_in_float32():
    def python_float_loss(x, y, mask, verbose=False):
        loss, dx = temporal_softmax_loss(x, y, mask)
        return float(loss), dx

    assert check_layer("temporal_softmax_loss", python_float_loss, dtype=np.float32).passed


# ---- kinds from names, and the command line ----------------------------------------------------------------------
@pytest.mark.parametrize("name, kind", [
    ("rnn_step_forward", "rnn_step"), ("rnn_forward", "rnn"), ("lstm_step_forward", "lstm_step"),
    ("lstm_forward", "lstm"), ("word_embedding_forward", "word_embedding"),
    ("temporal_affine_forward", "temporal_affine"), ("temporal_softmax_loss", "temporal_softmax_loss"),
    ("affine_forward", "affine"), ("affine_relu_forward", None), ("conv_forward_naive", "conv"),
    ("softmax_loss", None)])
def test_infer_kind(name, kind):
    """The built-in kinds a name implies (a layer_utils sandwich is none of them; reference.kinds may register
    names of its own, which infer_kind consults first)."""
    assert infer_builtin_kind(name) == kind


@pytest.mark.parametrize("kind, normalized", [
    ("rnn_step", "rnn"), ("rnn", "rnn"), ("lstm_step", "lstm"), ("lstm", "lstm"), ("word_embedding", "embedding"),
    ("temporal_affine", "temporalaffine"), ("temporal_softmax_loss", "temporalsoftmaxloss"), ("affine", "affine"),
    ("BatchNorm1d", "batchnorm")])
def test_normalize_kind(kind, normalized):
    assert normalize_kind(kind) == normalized


def test_the_check_names_have_categories():
    assert [category(c) for c in ("next_h", "next_c", "h", "loss", "dprev_c", "dWx", "dh0", "dW")] == \
        ["out"] * 4 + ["grad"] * 4


def test_the_older_layer_kinds_keep_their_order():
    assert LAYER_KINDS[-3:] == ("conv", "max_pool", "spatial_groupnorm")
    assert SEQUENCE_KINDS == ("rnn_step", "rnn", "word_embedding", "temporal_affine", "temporal_softmax_loss",
                              "lstm_step", "lstm")


def _user_file(tmp_path, name: str, *functions: Callable, edit: Tuple[str, str] = ("", "")) -> str:
    """A user's rnn_layers.py holding the source of ``functions`` (with one ``edit`` applied, which must apply)."""
    source = "import numpy as np\n\n\n" + "\n\n".join(inspect.getsource(fn) for fn in functions)
    if edit[0]:
        assert source.count(edit[0]) == 1
        source = source.replace(*edit)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return str(path)


RNN_LAYERS = (rnn_step_forward, rnn_step_backward, rnn_forward, rnn_backward, word_embedding_forward,
              word_embedding_backward, temporal_affine_forward, temporal_affine_backward, temporal_softmax_loss,
              sigmoid, lstm_step_forward, lstm_step_backward, lstm_forward, lstm_backward)


@pytest.mark.parametrize("function, pair, checks", [
    ("rnn_step_forward", "rnn_step_forward / rnn_step_backward", 6), ("rnn_forward", "rnn_forward / rnn_backward", 6),
    ("word_embedding_forward", "word_embedding_forward / word_embedding_backward", 2),
    ("temporal_affine_forward", "temporal_affine_forward / temporal_affine_backward", 4),
    ("temporal_softmax_loss", "temporal_softmax_loss / -", 2),
    ("lstm_step_forward", "lstm_step_forward / lstm_step_backward", 8),
    ("lstm_forward", "lstm_forward / lstm_backward", 6)])
def test_cli_passes_a_correct_file(tmp_path, capsys, function, pair, checks):
    path = _user_file(tmp_path, "rnn_layers", *RNN_LAYERS)
    assert main_user(f"{path}:{function}", []) == 0
    out = capsys.readouterr().out
    assert pair in out and f"{checks} passed, 0 failed" in out
    assert "max abs err  max rel err  mismatches  verdict" in out


def test_cli_names_the_gate_order(tmp_path, capsys):
    """A student who reads the blocks in torch's order i, f, g, o (forward and backward) is told so."""
    path = _user_file(tmp_path, "rnn_layers_bad", *RNN_LAYERS)
    source = open(path).read()
    for old, new in [("sigmoid(a[:, 2 * H:3 * H])\n", "sigmoid(a[:, 3 * H:])\n"),
                     ("g = np.tanh(a[:, 3 * H:])", "g = np.tanh(a[:, 2 * H:3 * H])"),
                     ("do * o * (1 - o), dg * (1 - g ** 2)]", "dg * (1 - g ** 2), do * o * (1 - o)]")]:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    open(path, "w").write(source)
    assert main_user(f"{path}:lstm_forward", ["--dtype", "float32"]) == 1
    out = capsys.readouterr().out
    assert "lstm: lstm_forward / lstm_backward" in out and "(float32, seed 0)" in out
    assert "0 passed, 6 failed" in out and GATE_ORDER in out


def test_cli_names_the_tanh_derivative(tmp_path, capsys):
    path = _user_file(tmp_path, "rnn_layers_tanh", *RNN_LAYERS,
                      edit=("da = dnext_h * (1 - next_h ** 2)", "da = dnext_h * (1 - next_h)"))
    assert main_user(f"{path}:rnn_step_forward", []) == 1
    out = capsys.readouterr().out
    assert "1 passed, 5 failed" in out and DETECTORS["tanh_grad_not_squared"].cause in out


def test_cli_takes_the_kind(tmp_path, capsys):
    path = _user_file(tmp_path, "my_rnn", rnn_step_forward, rnn_step_backward)
    with open(path, "a") as fh:
        fh.write("\n\ndef my_cell(x, prev_h, Wx, Wh, b):\n    return rnn_step_forward(x, prev_h, Wx, Wh, b)\n")
    assert main_user(f"{path}:my_cell", []) == 2
    assert "cannot tell the kind" in capsys.readouterr().err
    assert main_user(f"{path}:my_cell", ["--kind", "rnn_step", "--backward", "rnn_step_backward"]) == 0
    assert "my_cell / rnn_step_backward" in capsys.readouterr().out
