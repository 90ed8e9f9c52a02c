"""CS231n kinds checked against torch: the linear classifiers' losses (assignment 1), the loss layers and the
``layer_utils`` sandwiches (assignment 2).

The functions, as the assignments write them::

    loss, dW = svm_loss_naive(W, X, y, reg)          # also svm_loss_vectorized; W (D, C), X (N, D), y (N,)
    loss, dW = softmax_loss_naive(W, X, y, reg)      # also softmax_loss_vectorized
    loss, dx = svm_loss(x, y)                        # x (N, C) scores, no regularisation
    loss, dx = softmax_loss(x, y)
    out, cache = affine_relu_forward(x, w, b);  dx, dw, db = affine_relu_backward(dout, cache)
    out, cache = conv_relu_forward(x, w, b, conv_param);  dx, dw, db = conv_relu_backward(dout, cache)
    out, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    dx, dw, db = conv_relu_pool_backward(dout, cache)
    out, cache = affine_bn_relu_forward(x, w, b, gamma, beta, bn_param)
    dx, dw, db, dgamma, dbeta = affine_bn_relu_backward(dout, cache)
    out, cache = conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    dx, dw, db, dgamma, dbeta = conv_bn_relu_backward(dout, cache)

The torch each is compared with:

- multiclass SVM (margin 1, the correct class excluded, mean over N): ``F.multi_margin_loss(s, y) * C`` (torch also
  divides by C); a margin exactly 0 is no violation, in torch as in the assignment (``if margin > 0``);
- softmax: ``F.cross_entropy(s, y)``;
- assignment 1 adds ``reg * ΣW²`` (the 2017+ starter code; gradient ``2·reg·W``). The 2015–2016 starter code's
  ``0.5 * reg * ΣW²`` (gradient ``reg·W``) is accepted with ``Options(extra={"half_reg": True})``, and named when
  found without it; gradients by autograd of the same loss;
- the sandwiches: the torch composition (CS231n's affine flattens x to (N, D), w is (D, M): ``F.linear(x.reshape(N,
  -1), w.T, b)``; ``F.conv2d``, ``F.relu``, ``F.max_pool2d``, ``F.batch_norm(training=True)``).

Each loss runs on three inputs with N, D, C all different: random; integer scores with ties, where margins are
exactly 0 (the SVM's kink); and integer scores offset by 1000, above ``log(finfo.max)``, where a softmax without the
row max subtracted overflows (the classes' scores differ by a few units: a stable softmax is well conditioned).
A failed check is explained, when it can be, by a hypothesis: the same computation with one known bug, recomputed
in float64, that reproduces the user's value (the fit test of ``reference.diagnosis``); the sandwiches draw twice.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..check import CheckReport, CheckRow, _UserFailure, _call, _grad, _leaf, _unpack
from ..diagnosis import diagnose
from ..tolerances import Comparison, compare
from ..twin import TORCH_DTYPES, to_numpy, to_tensor
from . import Kind, Options, register

#: (N, D, C) of the assignment-1 losses: all different
LINEAR_SHAPE = (9, 6, 4)
#: (N, C) of the assignment-2 losses
SCORES_SHAPE = (8, 5)
#: the regularisation strength given to assignment 1's losses: not 0.5 or 1, so reg·W, 2·reg·W, 0.5·reg all differ
REG = 0.3
#: the offset of the "large scores" input: above log(finfo(float64).max) ≈ 709.8, so exp overflows in both dtypes
LARGE_OFFSET = 1000.0

OVERFLOW = "softmax without subtracting the row max: exp overflows for large scores"
SVM_CORRECT_COUNTED = ("SVM counts the correct class: its margin s_y − s_y + 1 = 1 adds 1 per sample; skip j == y[i] "
                       "(or zero margins[arange(N), y])")
SVM_NO_CORRECT_GRAD = ("SVM gradient missing the correct class's term: column y[i] gets −(number of classes with "
                       "margin > 0)·X[i]")
SVM_AT_ZERO = ("margins exactly 0 counted as violations (margin >= 0): the assignment and torch count margin > 0 "
               "only")
SOFTMAX_NO_MINUS_ONE = "softmax gradient missing the −1 at the correct class: dscores = p − onehot(y)"
NOT_AVERAGED = "loss (and its gradient) summed over the N samples, not averaged: divide the data term by N"
REG_GRAD_ONCE = "regularisation gradient reg·W instead of 2·reg·W (the gradient of reg·ΣW²)"
REG_HALF = ("loss uses 0.5·reg·ΣW² (the 2015–2016 starter code's form, gradient reg·W); the assignment's is "
            "reg·ΣW², gradient 2·reg·W")
REG_MISSING_LOSS = "regularisation missing from the loss: add reg·ΣW²"
REG_MISSING_GRAD = "regularisation missing from the gradient: add 2·reg·W"
REG_AVERAGED = "regularisation divided by N with the data term: add reg·ΣW² (and 2·reg·W) after averaging"
WRONG_ORDER = ("backward in the wrong order: the relu mask applied after the {inner} backward and taken from its "
               "input x; mask the upstream gradient by the relu's input > 0 first, then the {inner} backward")
WRONG_ORDER_SHAPES = ("backward in the wrong order: the {inner} backward first, then the relu's mask (shaped as the "
                      "{inner} output) on the input's gradient; apply the relu backward to dout first")
UNMASKED = ("the {inner} backward given the unmasked upstream gradient: apply the relu backward (mask: the {inner} "
            "output > 0) first")
MASK_FROM_DOUT = "relu mask taken from the upstream gradient (dout > 0) instead of the relu's input > 0"


# ---- the table: rows, each the worst comparison over the inputs, with a cause found by hypothesis -----------------
Hypothesis = Tuple[str, Any]  # (cause, float64 array or a callable giving one)
Rule = Callable[[np.ndarray, np.ndarray], Optional[str]]


@dataclass
class _Entry:
    comparison: Comparison
    cause: Optional[str] = None
    causes: List[str] = field(default_factory=list)
    arrays: Tuple[Any, Any] = (None, None)  # the worst comparison's (actual, expected), for the grader's picture


class _Table:
    """Collects comparisons, keeps the worst per check, and names a failure's cause from the hypotheses given."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self._entries: Dict[str, _Entry] = {}

    def add(self, check: str, actual: Any, expected: Any, hypotheses: Sequence[Hypothesis] = (),
            rules: Sequence[Rule] = ()) -> None:
        expected = to_numpy(expected) if isinstance(expected, torch.Tensor) else np.asarray(expected)
        actual = _as_array(actual, expected)
        if actual is None:
            result = Comparison(check, str(expected.dtype), np.inf, np.inf, expected.size, expected.size,
                                "missing (None)")
        elif actual.dtype.kind not in "fiub":
            result = Comparison(check, str(expected.dtype), np.inf, np.inf, expected.size, expected.size,
                                f"not a numeric array ({actual.dtype})")
        else:
            result = compare(check, actual, expected)
        cause = None
        if (not result.passed and actual is not None and actual.dtype.kind in "fiub"
                and actual.shape == expected.shape):  # a hypothesis is a value of the expected shape
            cause = _explain(check, actual, expected, hypotheses, rules)
        entry = self._entries.get(check)
        if entry is None:
            self._entries[check] = entry = _Entry(result, cause, arrays=(actual, expected))
        elif _badness(result) > _badness(entry.comparison):
            entry.comparison, entry.cause, entry.arrays = result, cause, (actual, expected)
        if cause and cause not in entry.causes:
            entry.causes.append(cause)

    def fail(self, failure: _UserFailure, cause: Optional[str] = None) -> None:
        comparison = Comparison(failure.check, str(self.dtype), np.inf, np.inf, 1, 1, str(failure))
        self._entries[failure.check] = _Entry(comparison, cause)

    def rows(self) -> List[CheckRow]:
        out = []
        for entry in self._entries.values():
            cause = entry.cause or (entry.causes[0] if entry.causes else None)
            if entry.comparison.passed:
                out.append(CheckRow(entry.comparison))
            else:
                out.append(CheckRow(entry.comparison, cause, *entry.arrays))
        return out


def _badness(c: Comparison) -> Tuple[int, float]:
    return (c.mismatches + (1 if c.problem else 0), c.max_rel)


def _as_array(value: Any, expected: np.ndarray) -> Optional[np.ndarray]:
    """The user's value as an array; a Python or NumPy scalar loss in the input's dtype (a scalar's precision is not
    the loss's business), a one-element array as a scalar when a scalar is expected."""
    if value is None:
        return None
    if expected.ndim == 0 and isinstance(value, (float, int, np.floating, np.integer)) \
            and not isinstance(value, (bool, np.bool_)):
        return np.asarray(value).astype(expected.dtype)
    try:
        array = np.array(value, copy=True)
    except (ValueError, TypeError):
        return np.array(None)
    if expected.ndim == 0 and array.size == 1 and array.dtype.kind == "f":
        return array.reshape(())
    return array


def _explain(check: str, actual: np.ndarray, expected: np.ndarray, hypotheses: Sequence[Hypothesis],
             rules: Sequence[Rule]) -> Optional[str]:
    """The cause of a failed comparison: a rule that recognises it, else the hypothesis reproducing ``actual`` most
    closely (one indistinguishable from torch's answer explains nothing), else reference.diagnosis's generic
    detectors (a dtype that alone differs)."""
    with np.errstate(all="ignore"):
        for rule in rules:
            cause = rule(actual, expected)
            if cause:
                return cause
        if actual.shape == expected.shape:
            best: Optional[Tuple[float, str]] = None
            for cause, hypothesis in hypotheses:
                h = hypothesis() if callable(hypothesis) else hypothesis
                if h is None or np.shape(h) != expected.shape:
                    continue
                h = np.asarray(h, dtype=np.float64).astype(expected.dtype)
                if compare("hypothesis", h, expected).passed:
                    continue
                fit = compare("fit", actual.astype(expected.dtype), h)
                if fit.passed and (best is None or fit.max_rel < best[0]):
                    best = (fit.max_rel, cause)
            if best is not None:
                return best[1]
    return diagnose(check, actual, expected)


def _quiet_call(check: str, fn: Callable, *args: Any) -> Any:
    """``_call`` with NumPy's floating-point warnings silenced: an overflow is judged by the values it gives."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _call(check, fn, *args)


def _check_dtype(options: Options) -> np.dtype:
    dt = np.dtype(options.dtype)
    if dt not in TORCH_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, but got {dt}")
    return dt


def _name(fn: Optional[Callable]) -> str:
    return getattr(fn, "__name__", repr(fn)) if fn is not None else "-"


# ---- the losses -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Case:
    """One input of a loss: the scores' factors (X, W; W None for assignment 2's scores x = X) and labels."""

    name: str
    X: np.ndarray
    W: Optional[np.ndarray]
    y: np.ndarray

    @property
    def scores(self) -> np.ndarray:
        x = self.X.astype(np.float64)
        return x if self.W is None else x @ self.W.astype(np.float64)


def _loss_cases(rng: np.random.Generator, dtype: np.dtype, linear: bool) -> List[_Case]:
    """Random, tied (integer scores: margins exactly 0) and large scores; N, D, C all different."""
    if linear:
        n, d, c = LINEAR_SHAPE
    else:
        (n, c), d = SCORES_SHAPE, None
    cases = []
    y = rng.integers(0, c, n)
    X = rng.standard_normal((n, d) if linear else (n, c))
    W = rng.normal(0.0, 0.5, (d, c)) if linear else None
    cases.append(_Case("random", X.astype(dtype), None if W is None else W.astype(dtype), y))
    for _ in range(100):  # integer scores with at least three margins exactly 0 (off the correct class)
        y = rng.integers(0, c, n)
        X = rng.integers(-2, 3, (n, d) if linear else (n, c)).astype(np.float64)
        W = rng.integers(-1, 2, (d, c)).astype(np.float64) if linear else None
        s = X if W is None else X @ W
        margins = s - s[np.arange(n), y][:, None] + 1
        margins[np.arange(n), y] = 1
        if int((margins == 0).sum()) >= 3:
            break
    cases.append(_Case("ties", X.astype(dtype), None if W is None else W.astype(dtype), y))
    # large scores, small gaps: integer scores plus LARGE_OFFSET (exact in float32 too) through a constant column
    # of X (the bias trick) whose row of W is 1; the classes' scores differ by a few units, so a stable softmax is
    # well conditioned while exp of the raw scores overflows
    y = rng.integers(0, c, n)
    if linear:
        X = rng.integers(-2, 3, (n, d)).astype(np.float64)
        W = rng.integers(-1, 2, (d, c)).astype(np.float64)
        X[:, -1], W[-1, :] = LARGE_OFFSET, 1.0
    else:
        X, W = rng.integers(-3, 4, (n, c)) + LARGE_OFFSET, None
    cases.append(_Case("large", X.astype(dtype), None if W is None else W.astype(dtype), y))
    return cases


def _svm_dscores(s: np.ndarray, y: np.ndarray, *, correct: str = "excluded", at_zero: bool = False,
                 correct_grad: bool = True) -> Tuple[float, np.ndarray]:
    """(Σ of the hinge terms, d(Σ)/ds) of the multiclass SVM, with the variants the bugs make.

    correct : 'excluded' (the assignment), 'loop' (j == y counted, its ±X[i] cancelling) or 'vectorized' (counted,
        the correct column set to −count including itself)
    """
    n = len(y)
    rows = np.arange(n)
    margins = s - s[rows, y][:, None] + 1.0
    active = margins >= 0 if at_zero else margins > 0
    if correct == "excluded":
        active[rows, y] = False
    g = active.astype(np.float64)
    total = float(np.where(active, margins, 0.0).sum())
    if correct_grad:
        if correct == "vectorized":
            g[rows, y] = -active.sum(axis=1)
        else:
            g[rows, y] -= active.sum(axis=1)
    return total, g


def _softmax_dscores(s: np.ndarray, y: np.ndarray, *, minus_one: bool = True) -> Tuple[float, np.ndarray]:
    n = len(y)
    shifted = s - s.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    g = np.exp(logp)
    if minus_one:
        g[np.arange(n), y] -= 1.0
    return float(-logp[np.arange(n), y].sum()), g


def _assemble(case: _Case, total: float, g: np.ndarray, reg: float, *, average: bool = True,
              reg_loss: float = 1.0, reg_grad: float = 2.0) -> Tuple[np.ndarray, np.ndarray]:
    """(loss, gradient) from the data term's sum and its score gradient: averaged or not, plus the penalty."""
    n = len(case.y)
    scale = 1.0 / n if average else 1.0
    if case.W is None:
        return np.float64(total * scale), g * scale
    W = case.W.astype(np.float64)
    X = case.X.astype(np.float64)
    return (np.float64(total * scale + reg_loss * reg * np.sum(W * W)),
            X.T @ (g * scale) + reg_grad * reg * W)


def _loss_hypotheses(case: _Case, loss: str, reg: float, half: bool) -> Tuple[List[Hypothesis], List[Hypothesis]]:
    """The hypotheses (cause, value) of the loss row and of the gradient row."""
    s, y = case.scores, case.y
    rl, rg = (0.5, 1.0) if half else (1.0, 2.0)
    base = _svm_dscores(s, y) if loss == "svm" else _softmax_dscores(s, y)

    def variant(total: float, g: np.ndarray, **kw: Any) -> Tuple[np.ndarray, np.ndarray]:
        return _assemble(case, total, g, reg, **{"reg_loss": rl, "reg_grad": rg, **kw})

    found: List[Tuple[str, Tuple[np.ndarray, np.ndarray], str]] = []  # (cause, (loss, grad), which rows)
    if loss == "svm":
        found.append((SVM_CORRECT_COUNTED, variant(*_svm_dscores(s, y, correct="loop")), "loss"))
        found.append((SVM_CORRECT_COUNTED, variant(*_svm_dscores(s, y, correct="vectorized")), "grad"))
        found.append((SVM_NO_CORRECT_GRAD, variant(*_svm_dscores(s, y, correct_grad=False)), "grad"))
        found.append((SVM_AT_ZERO, variant(*_svm_dscores(s, y, at_zero=True)), "grad"))
    else:
        found.append((SOFTMAX_NO_MINUS_ONE, variant(*_softmax_dscores(s, y, minus_one=False)), "grad"))
    found.append((NOT_AVERAGED, variant(*base, average=False), "both"))
    if case.W is not None:
        if not half:
            found.append((REG_GRAD_ONCE, variant(*base, reg_grad=1.0), "grad"))
            found.append((REG_HALF, variant(*base, reg_loss=0.5), "loss"))
        found.append((REG_MISSING_LOSS, variant(*base, reg_loss=0.0), "loss"))
        found.append((REG_AVERAGED, variant(*base, reg_loss=rl / len(y), reg_grad=rg / len(y)), "both"))
        found.append((REG_MISSING_GRAD, variant(*base, reg_grad=0.0), "grad"))
    loss_h = [(cause, value[0]) for cause, value, rows in found if rows in ("loss", "both")]
    grad_h = [(cause, value[1]) for cause, value, rows in found if rows in ("grad", "both")]
    return loss_h, grad_h


def _overflow_rule(case: _Case, loss: str) -> Rule:
    """A softmax's non-finite value where torch's is finite, on scores whose exp overflows in this dtype."""
    def rule(actual: np.ndarray, expected: np.ndarray) -> Optional[str]:
        if loss != "softmax" or float(case.scores.max()) <= np.log(np.finfo(expected.dtype).max):
            return None
        bad = ~np.isfinite(actual.astype(np.float64)) & np.isfinite(expected.astype(np.float64))
        return OVERFLOW if bad.any() else None
    return rule


def _torch_loss(loss: str, st: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
    if loss == "svm":
        return F.multi_margin_loss(st, yt, margin=1.0, reduction="mean") * st.shape[1]
    return F.cross_entropy(st, yt)


def _run_loss(loss: str, linear: bool, kind: str, functions: Mapping[str, Callable], options: Options
              ) -> CheckReport:
    fn = functions["loss"]
    dt = _check_dtype(options)
    half = bool(options.extra.get("half_reg", False))
    reg = REG if linear else 0.0
    rl, rg = (0.5, 1.0) if half else (1.0, 2.0)
    grad_check = "dW" if linear else "dx"
    rng = np.random.default_rng(options.seed)
    cases = _loss_cases(rng, dt, linear)
    torch_form = ("F.multi_margin_loss(s, y) * C" if loss == "svm" else "F.cross_entropy(s, y)")
    rule = (f"multiclass SVM, margin 1, the correct class excluded, a margin counted when > 0 (torch alike), mean "
            f"over N" if loss == "svm" else "softmax cross-entropy, mean over N")
    if linear:
        n, d, c = LINEAR_SHAPE
        penalty = ("0.5·reg·ΣW² (gradient reg·W; half_reg)" if half
                   else "reg·ΣW² (gradient 2·reg·W, the 2017+ assignment)")
        factor = "0.5·" if half else ""
        conventions = [f"CS231n assignment 1: {rule}, plus {penalty}: torch {torch_form} + {factor}reg·(W**2).sum() "
                       f"on s = X @ W, dW by autograd; reg {REG:g}; (N, D, C) = {LINEAR_SHAPE}"]
    else:
        n, c = SCORES_SHAPE
        conventions = [f"CS231n assignment 2 (layers.py): {rule}: torch {torch_form}, dx by autograd; (N, C) = "
                       f"{SCORES_SHAPE}"]
    why = " (exp overflows without the row max subtracted)" if loss == "softmax" else ""
    conventions.append(f"inputs: random; integer scores with ties (margins exactly 0); integer scores offset by "
                       f"{LARGE_OFFSET:g}{why}; a Python float loss is compared in the input's dtype")
    table = _Table(dt)
    try:
        for case in cases:
            args = (case.W.copy(), case.X.copy(), case.y.copy(), reg) if linear else (case.X.copy(), case.y.copy())
            value, grad = _unpack("loss", _quiet_call("loss", fn, *args), 2, f"(loss, {grad_check})")
            xt = _leaf(case.X)
            wt = _leaf(case.W) if linear else None
            yt = torch.from_numpy(case.y)
            st = xt @ wt if linear else xt
            lt = _torch_loss(loss, st, yt)
            if linear:
                lt = lt + rl * reg * (wt * wt).sum()
            lt.backward()
            loss_h, grad_h = _loss_hypotheses(case, loss, reg, half)
            rules = [_overflow_rule(case, loss)]
            table.add("loss", value, lt, loss_h, rules)
            table.add(grad_check, grad, _grad(wt if linear else xt), grad_h, rules)
    except _UserFailure as failure:
        table.fail(failure)
    return CheckReport(kind, _name(fn), str(dt), options.seed, conventions, table.rows())


# ---- the sandwiches (assignment 2's layer_utils) --------------------------------------------------------------------
@dataclass(frozen=True)
class _Sandwich:
    """A layer_utils sandwich: its inputs and torch's composition ``post(relu(pre(x, params)))``."""

    kind: str
    inner: str  # the layer(s) before the relu, for the causes
    params: Tuple[str, ...]  # the gradients returned after dx, in order
    make: Callable[[np.random.Generator, np.dtype], Tuple[np.ndarray, Tuple[np.ndarray, ...], Tuple[Any, ...]]]
    pre: Callable[..., torch.Tensor]  # pre(xt, *param_leaves, *extra) -> the relu's input
    post: Callable[..., torch.Tensor]  # post(relu_out, *extra) -> out
    convention: str


def _affine_pre(xt, wt, bt):
    return F.linear(xt.reshape(xt.shape[0], -1), wt.T, bt)


def _bn_pre(xt, wt, bt, gt, bet, bn_param):
    return F.batch_norm(_affine_pre(xt, wt, bt), None, None, gt, bet, training=True, eps=bn_param["eps"])


def _conv_pre(xt, wt, bt, conv_param, *rest):
    return F.conv2d(xt, wt, bt, stride=conv_param["stride"], padding=conv_param["pad"])


def _conv_bn_pre(xt, wt, bt, gt, bet, conv_param, bn_param):
    return F.batch_norm(_conv_pre(xt, wt, bt, conv_param), None, None, gt, bet, training=True, eps=bn_param["eps"])


def _pool_post(at, conv_param, pool_param):
    return F.max_pool2d(at, kernel_size=(pool_param["pool_height"], pool_param["pool_width"]),
                        stride=pool_param["stride"])


def _identity_post(at, *extra):
    return at


def _make_affine(rng, dt):
    x = rng.standard_normal((4, 3, 5))
    w = rng.normal(0.0, 1.0 / np.sqrt(15), (15, 6))
    b = rng.normal(0.0, 0.5, 6)
    return x.astype(dt), (w.astype(dt), b.astype(dt)), ()


def _bn_param(channels: int, dt: np.dtype) -> Dict[str, Any]:
    """A training-mode bn_param with every key CS231n's batchnorm reads (its defaults: momentum 0.9, zeros)."""
    return {"mode": "train", "eps": 1e-5, "momentum": 0.9, "running_mean": np.zeros(channels, dt),
            "running_var": np.zeros(channels, dt)}


def _gamma_beta(rng, dt, channels):
    return rng.normal(1.0, 0.3, channels).astype(dt), rng.normal(0.0, 0.5, channels).astype(dt)


def _make_affine_bn(rng, dt):
    x, (w, b), _ = _make_affine(rng, dt)
    return x, (w, b, *_gamma_beta(rng, dt, 6)), (_bn_param(6, dt),)


def _make_conv_bn(rng, dt):
    x, (w, b), (conv_param,) = _make_conv(rng, dt)
    return x, (w, b, *_gamma_beta(rng, dt, 4)), (conv_param, _bn_param(4, dt))


def _make_conv(rng, dt):
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.normal(0.0, 1.0 / np.sqrt(27), (4, 3, 3, 3))
    b = rng.normal(0.0, 0.5, 4)
    return x.astype(dt), (w.astype(dt), b.astype(dt)), ({"stride": 1, "pad": 1},)


def _make_conv_pool(rng, dt):
    x = rng.standard_normal((2, 3, 8, 6))
    w = rng.normal(0.0, 1.0 / np.sqrt(27), (5, 3, 3, 3))
    b = rng.normal(0.0, 0.5, 5)
    return (x.astype(dt), (w.astype(dt), b.astype(dt)),
            ({"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}))


SANDWICHES: Dict[str, _Sandwich] = {s.kind: s for s in (
    _Sandwich("affine_relu", "affine", ("dw", "db"), _make_affine, _affine_pre, _identity_post,
              "torch relu(F.linear(x.reshape(N, -1), w.T, b)); x (4, 3, 5) flattened to (4, 15), w (15, 6)"),
    _Sandwich("conv_relu", "conv", ("dw", "db"), _make_conv, _conv_pre, _identity_post,
              "torch relu(F.conv2d(x, w, b, stride 1, padding 1)); x (2, 3, 7, 6), w (4, 3, 3, 3)"),
    _Sandwich("conv_relu_pool", "conv", ("dw", "db"), _make_conv_pool, _conv_pre, _pool_post,
              "torch F.max_pool2d(relu(F.conv2d(x, w, b, stride 1, padding 1)), 2×2, stride 2); x (2, 3, 8, 6), "
              "w (5, 3, 3, 3)"),
    _Sandwich("affine_bn_relu", "affine and batchnorm", ("dw", "db", "dgamma", "dbeta"), _make_affine_bn, _bn_pre,
              _identity_post,
              "torch relu(F.batch_norm(F.linear(x.reshape(N, -1), w.T, b), training=True, eps 1e-5) with gamma, "
              "beta); bn_param mode 'train', eps 1e-5; the running statistics and test mode are the batchnorm "
              "kind's checks"),
    _Sandwich("conv_bn_relu", "conv and batchnorm", ("dw", "db", "dgamma", "dbeta"), _make_conv_bn, _conv_bn_pre,
              _identity_post,
              "torch relu(F.batch_norm(F.conv2d(x, w, b, stride 1, padding 1), training=True, eps 1e-5) with gamma, "
              "beta per channel); x (2, 3, 7, 6), w (4, 3, 3, 3); bn_param mode 'train', eps 1e-5; the running "
              "statistics and test mode are the spatial_batchnorm kind's checks"),
)}

#: sandwich draws per check
SANDWICH_DRAWS = 2


def _torch_sandwich(sw: _Sandwich, x: np.ndarray, params: Sequence[np.ndarray], extra: Sequence[Any],
                    dout: Optional[np.ndarray], gate: str = "relu") -> Tuple[torch.Tensor, List[np.ndarray]]:
    """torch's output and the gradients of x and the params for ``dout``. ``gate``: 'relu' (the composition),
    'none' (relu's value, its gradient passed unmasked) or 'dout' (the gradient masked by dout's sign: only for
    sandwiches without a layer after the relu)."""
    leaves = [_leaf(x), *(_leaf(p) for p in params)]
    a = sw.pre(*leaves, *extra)
    r = torch.relu(a)
    if gate != "relu":
        r = a + (r - a).detach()  # relu's value, the identity's gradient
    out = sw.post(r, *extra)
    if dout is not None:
        upstream = to_tensor(dout)
        if gate == "dout":
            upstream = upstream * (upstream > 0)
        out.backward(upstream)
    return out, [_grad(leaf) for leaf in leaves]


def _sandwich_hypotheses(sw: _Sandwich, x, params, extra, dout) -> List[List[Hypothesis]]:
    """Per gradient (dx, then the params'), the hypotheses: unmasked, wrong order (dx masked by x > 0), and the
    mask from dout."""
    as64 = lambda a: a.astype(np.float64)  # noqa: E731
    _, ungated = _torch_sandwich(sw, as64(x), [as64(p) for p in params], extra, as64(dout), gate="none")
    per: List[List[Hypothesis]] = [[(WRONG_ORDER.format(inner=sw.inner), ungated[0] * (as64(x) > 0)),
                                    (UNMASKED.format(inner=sw.inner), ungated[0])]]
    per += [[(UNMASKED.format(inner=sw.inner), g)] for g in ungated[1:]]
    if sw.post is _identity_post:
        _, by_dout = _torch_sandwich(sw, as64(x), [as64(p) for p in params], extra, as64(dout), gate="dout")
        for hyps, g in zip(per, by_dout):
            hyps.append((MASK_FROM_DOUT, g))
    return per


def _run_sandwich(sw: _Sandwich, functions: Mapping[str, Callable], options: Options) -> CheckReport:
    forward, backward = functions["forward"], functions.get("backward")
    dt = _check_dtype(options)
    rng = np.random.default_rng(options.seed)
    conventions = [f"CS231n assignment 2 (layer_utils.py): {sw.convention}; {SANDWICH_DRAWS} draws of random "
                   "inputs and upstream gradients"]
    if backward is None:
        conventions.append("no backward function: gradients not checked")
    names = ("dx",) + sw.params
    table = _Table(dt)
    try:
        for _ in range(SANDWICH_DRAWS):
            x, params, extra = sw.make(rng, dt)
            args = (x.copy(), *(p.copy() for p in params), *(dict(e) for e in extra))
            out, cache = _unpack("out", _quiet_call("out", forward, *args), 2, "(out, cache)")
            expected, _ = _torch_sandwich(sw, x, params, extra, None)
            dout = rng.standard_normal(tuple(expected.shape)).astype(dt)
            expected, grads = _torch_sandwich(sw, x, params, extra, dout)
            table.add("out", out, expected)
            if backward is None:
                continue
            try:
                result = _quiet_call("dx", backward, dout.copy(), cache)
            except _UserFailure as failure:
                cause = WRONG_ORDER_SHAPES.format(inner=sw.inner) if "broadcast" in str(failure) else None
                table.fail(failure, cause)
                break
            ours = _unpack("dx", result, len(names), f"({', '.join(names)})")
            hyps = _sandwich_hypotheses(sw, x, params, extra, dout)
            for check, mine, theirs, h in zip(names, ours, grads, hyps):
                table.add(check, mine, theirs, h)
    except _UserFailure as failure:
        table.fail(failure)
    return CheckReport(sw.kind, f"{_name(forward)} / {_name(backward)}", str(dt), options.seed, conventions,
                       table.rows())


# ---- the registry ---------------------------------------------------------------------------------------------------
def _backward_name(name: str) -> str:
    return name.replace("_forward", "_backward")


def _loss_runner(loss: str, linear: bool, kind: str) -> Callable[[Mapping[str, Callable], Options], CheckReport]:
    def run(functions: Mapping[str, Callable], options: Options) -> CheckReport:
        return _run_loss(loss, linear, kind, functions, options)
    run.__name__ = f"run_{kind}"
    return run


def _sandwich_runner(kind: str) -> Callable[[Mapping[str, Callable], Options], CheckReport]:
    def run(functions: Mapping[str, Callable], options: Options) -> CheckReport:
        return _run_sandwich(SANDWICHES[kind], functions, options)
    run.__name__ = f"run_{kind}"
    return run


LINEAR_SVM = register(Kind(
    "linear_svm", "cs231n", ("svm_loss_naive", "svm_loss_vectorized"), ("loss",),
    _loss_runner("svm", True, "linear_svm"),
    "assignment 1 linear_svm.py: (loss, dW) = svm_loss_*(W, X, y, reg), multiclass SVM + reg·ΣW²"))
LINEAR_SOFTMAX = register(Kind(
    "linear_softmax", "cs231n", ("softmax_loss_naive", "softmax_loss_vectorized"), ("loss",),
    _loss_runner("softmax", True, "linear_softmax"),
    "assignment 1 softmax.py: (loss, dW) = softmax_loss_*(W, X, y, reg), cross-entropy + reg·ΣW²"))
SVM_LOSS = register(Kind(
    "svm_loss", "cs231n", ("svm_loss",), ("loss",), _loss_runner("svm", False, "svm_loss"),
    "assignment 2 layers.py: (loss, dx) = svm_loss(x, y) on scores x (N, C)"))
SOFTMAX_LOSS = register(Kind(
    "softmax_loss", "cs231n", ("softmax_loss",), ("loss",), _loss_runner("softmax", False, "softmax_loss"),
    "assignment 2 layers.py: (loss, dx) = softmax_loss(x, y) on scores x (N, C)"))
for _kind in SANDWICHES:
    register(Kind(
        _kind, "cs231n", (f"{_kind}_forward",), ("forward", "backward"), _sandwich_runner(_kind),
        f"assignment 2 layer_utils.py: {_kind}_forward / {_kind}_backward against the torch composition",
        (_backward_name,)))

__all__ = ["LINEAR_SHAPE", "SCORES_SHAPE", "REG", "LARGE_OFFSET", "SANDWICHES", "SANDWICH_DRAWS", "OVERFLOW",
           "SVM_CORRECT_COUNTED", "SVM_NO_CORRECT_GRAD", "SVM_AT_ZERO", "SOFTMAX_NO_MINUS_ONE", "NOT_AVERAGED",
           "REG_GRAD_ONCE", "REG_HALF", "REG_MISSING_LOSS", "REG_MISSING_GRAD", "REG_AVERAGED", "WRONG_ORDER",
           "WRONG_ORDER_SHAPES", "UNMASKED", "MASK_FROM_DOUT"]
