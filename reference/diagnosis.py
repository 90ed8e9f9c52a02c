"""Why did a comparison fail? Recompute the usual wrong formulas and name the one that fits.

A *detector* is a named alternative hypothesis: a function that recomputes, with NumPy, what a known wrong
implementation would have produced from the same inputs (the biased variance in the running statistics, eps outside
the sqrt, a gradient summed instead of averaged, ...). :func:`diagnoses` runs every detector that applies to the
failing check and keeps those whose recomputation matches ``actual`` under the tolerance table
(``reference.tolerances``) while *not* matching ``expected`` (a hypothesis indistinguishable from the right answer
proves nothing). :func:`diagnose` returns the best-fitting cause as a sentence, or None.

This module is numpy-only, so it also runs where torch is not installed (the golden fixtures).

What was compared is told by ``check``, a name such as ``'out'``, ``'dx'``, ``'dgamma'``, ``'grad weight'``,
``'running_var'``, ``'buffer running_mean'``, ``'eval out'``, ``'next_w'``; :func:`category` maps it to one of
``out``, ``grad``, ``running_mean``, ``running_var``, ``eval``, ``trajectory``. The keyword context a detector may
read (a detector whose keys are missing is skipped):

=====================  ================================================================================================
``kind``               the component: ``'batchnorm'`` (also ``'BatchNorm1d'``, ``'spatial_batchnorm'``),
                       ``'layernorm'``, ``'dropout'``, ``'affine'``, ``'relu'``, ``'sgd'``/``'sgd_momentum'``,
                       ``'rmsprop'``, ``'adam'``
``n``                  the batch size (values averaged per statistic, or per mean-reduced gradient)
``x``                  the input of the compared step; ``dout`` its upstream gradient
``gamma``, ``beta``    the affine parameters, shape (C,) (BatchNorm: broadcast on axis 1) or trailing (LayerNorm)
``eps``                the normalisation layer's eps, or the optimizer's
``batches``            BatchNorm: every training input, in order, that produced the compared running statistics
``momentum``           BatchNorm: torch's convention (``running = (1 - m)·running + m·batch``); SGD: the momentum
``running_mean0``,     BatchNorm: the initial running statistics (default 0 and 1, torch's)
``running_var0``
``running_mean``,      BatchNorm eval: the running statistics the *actual* eval output was computed from (the
``running_var``        implementation's own), so the eval formula is judged apart from the statistics
``p``, ``mask``        dropout: torch's drop probability and the keep mask (bool, x's shape) both sides applied
``param0``, ``grads``  optimizers: the initial parameter and the gradient of every step, stacked (steps, *shape);
                       ``actual``/``expected`` are then the parameters after every step (same stack) or after the last
``lr``, ``betas``,     optimizers: torch's hyper-parameters (``alpha``: RMSprop's smoothing constant)
``dampening``, ``alpha``
=====================  ================================================================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .tolerances import compare

CATEGORIES = ("out", "grad", "running_mean", "running_var", "eval", "trajectory")


class _Missing(Exception):
    """A detector needs a context key that was not given: it does not apply."""


@dataclass(frozen=True)
class Diagnosis:
    """A detector whose hypothesis reproduces ``actual``; ``max_rel`` is how closely (smaller is better)."""

    name: str
    cause: str
    max_rel: float

    def __str__(self) -> str:
        return self.cause


class Context:
    """What a detector sees: the failing check, both arrays, and the keyword context (see the module docstring)."""

    def __init__(self, check: str, actual: np.ndarray, expected: np.ndarray, values: Mapping[str, Any]) -> None:
        self.check = check
        self.category = category(check)
        self.actual = actual
        self.expected = expected
        self.values = dict(values)
        self.kind = normalize_kind(values.get("kind"))

    def need(self, *keys: str) -> Tuple[Any, ...]:
        """The values of ``keys`` (arrays as float64), or :class:`_Missing` when any is absent or None."""
        missing = [k for k in keys if self.values.get(k) is None]
        if missing:
            raise _Missing(", ".join(missing))
        return tuple(_as64(self.values[k]) for k in keys)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else _as64(value)


def _as64(value: Any) -> Any:
    """Arrays (and lists of arrays) as float64, so every hypothesis is computed in one precision."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return value.astype(np.float64)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        return [np.asarray(v, dtype=np.float64) for v in value]
    return value


Hypothesis = Callable[[Context], Optional[np.ndarray]]


@dataclass(frozen=True)
class Detector:
    """A named alternative hypothesis for the checks of ``categories`` of the components in ``kinds`` (() = any)."""

    name: str
    cause: str
    categories: Tuple[str, ...]
    kinds: Tuple[str, ...]
    hypothesis: Hypothesis


#: the registry, in the order detectors are tried (ties in fit are resolved by this order)
DETECTORS: Dict[str, Detector] = {}


def register(name: str, cause: str, categories: Tuple[str, ...], kinds: Tuple[str, ...] = ()
             ) -> Callable[[Hypothesis], Hypothesis]:
    """Decorator adding a hypothesis function to :data:`DETECTORS` under ``name``."""
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown check categories {sorted(unknown)}; expected some of {CATEGORIES}")

    def add(fn: Hypothesis) -> Hypothesis:
        DETECTORS[name] = Detector(name, cause, tuple(categories), tuple(kinds), fn)
        return fn
    return add


def category(check: str) -> str:
    """The category of a check name: eval, running_var, running_mean, trajectory, grad, out (or 'other')."""
    c = check.lower().strip()
    if c.startswith("eval"):
        return "eval"
    if "running_var" in c:
        return "running_var"
    if "running_mean" in c:
        return "running_mean"
    if c.startswith(("next_w", "param", "trajectory")) or c in ("w", "weight trajectory"):
        return "trajectory"
    if c.startswith("grad") or re.match(r"^d[a-z_]", c) or c.startswith("dinput"):
        return "grad"
    if c in ("out", "output", "forward", "loss") or c.endswith(" out"):
        return "out"
    return "other"


_KIND_ALIASES = (("spatialbatchnorm", "batchnorm"), ("batchnorm", "batchnorm"), ("layernorm", "layernorm"),
                 ("dropout", "dropout"), ("adamw", "adamw"), ("adam", "adam"), ("rmsprop", "rmsprop"),
                 ("sgd", "sgd"), ("affine", "affine"), ("linear", "affine"), ("relu", "relu"))


def normalize_kind(kind: Optional[str]) -> Optional[str]:
    """'BatchNorm1d', 'spatial_batchnorm', 'batch_norm' -> 'batchnorm'; 'SGD(momentum)', 'sgd_momentum' -> 'sgd'."""
    if kind is None:
        return None
    flat = re.sub(r"[^a-z0-9]", "", str(kind).lower())
    for alias, name in _KIND_ALIASES:
        if alias in flat:
            return name
    return flat


# ---- the fit test -----------------------------------------------------------------------------------------------
def _fit(actual: np.ndarray, hypothesis: np.ndarray, expected: np.ndarray) -> Optional[float]:
    """max rel error of ``actual`` against ``hypothesis`` when it fits (and the hypothesis is not ``expected``)."""
    h = np.asarray(hypothesis, dtype=np.float64)
    if h.shape != actual.shape:
        return None
    h = h.astype(expected.dtype)
    if compare("hypothesis", h, expected).passed:
        return None  # indistinguishable from the right answer at this tolerance: it explains nothing
    result = compare("fit", actual.astype(expected.dtype), h)
    return result.max_rel if result.passed else None


def diagnoses(check: str, actual, expected, **context: Any) -> List[Diagnosis]:
    """Every detector whose hypothesis reproduces ``actual`` for this ``check``, best fit first.

    Parameters
    ----------
    check : str
        What was compared (see :func:`category`).
    actual, expected : array_like
        The implementation's value and torch's, of the same shape.
    **context
        The inputs and hyper-parameters the detectors recompute from (module docstring).

    Returns
    -------
    list of Diagnosis
        Empty when ``actual`` already matches ``expected``, when the shapes differ, or when nothing fits.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape or actual.dtype.kind not in "fiub" or expected.dtype.kind not in "fiub":
        return []
    if compare(check, actual, expected).passed:
        return []
    if actual.dtype != expected.dtype and compare(check, actual.astype(expected.dtype), expected).passed:
        return [Diagnosis("dtype", f"values match, only the dtype differs ({actual.dtype}, torch {expected.dtype}): "
                                   "float64 arrays such as np.ones(N) promote float32", 0.0)]
    ctx = Context(check, actual, expected, context)
    found = []
    with np.errstate(all="ignore"):
        for det in DETECTORS.values():
            if ctx.category not in det.categories or (det.kinds and ctx.kind not in det.kinds):
                continue
            try:
                hypothesis = det.hypothesis(ctx)
            except _Missing:
                continue
            if hypothesis is None:
                continue
            fit = _fit(actual, hypothesis, expected)
            if fit is not None:
                found.append(Diagnosis(det.name, det.cause, fit))
    return sorted(found, key=lambda d: d.max_rel)


def diagnose(check: str, actual, expected, **context: Any) -> Optional[str]:
    """The likeliest cause of a failed comparison as one sentence, or None when no detector fits.

    See :func:`diagnoses` for the arguments.
    """
    found = diagnoses(check, actual, expected, **context)
    return found[0].cause if found else None


# ---- BatchNorm running statistics -------------------------------------------------------------------------------
def _channel_axes(x: np.ndarray) -> Tuple[int, ...]:
    """BatchNorm's statistics axes: every axis but 1 (the channel)."""
    return (0, *range(2, x.ndim))


def _running(ctx: Context, stat: str, momentum: float, unbiased: bool) -> np.ndarray:
    """Replay the running-statistic updates over ``batches``: r ← (1 − m)·r + m·batch_stat (torch's form)."""
    (batches,) = ctx.need("batches")
    channels = batches[0].shape[1]
    initial = ctx.get(f"running_{stat}0", np.zeros(channels) if stat == "mean" else np.ones(channels))
    r = np.array(initial, dtype=np.float64)
    for x in batches:
        axes = _channel_axes(x)
        value = x.mean(axis=axes) if stat == "mean" else x.var(axis=axes, ddof=1 if unbiased else 0)
        r = (1 - momentum) * r + momentum * value
    return r


def _torch_momentum(ctx: Context) -> float:
    (m,) = ctx.need("momentum")
    return float(m)


@register("biased_running_var",
          "running_var uses the biased variance Σ(x−μ)²/n; torch's is unbiased, Σ(x−μ)²/(n−1)",
          ("running_var",), ("batchnorm",))
def _biased_running_var(ctx: Context) -> np.ndarray:
    return _running(ctx, "var", _torch_momentum(ctx), unbiased=False)


_INVERTED = ("inverted momentum convention: running = m·running + (1−m)·batch (CS231n 0.9 ≡ torch 0.1); "
             "set momentum_style='cs231n' or pass 1 − m")


@register("inverted_momentum", _INVERTED, ("running_mean", "running_var"), ("batchnorm",))
def _inverted_momentum(ctx: Context) -> np.ndarray:
    stat = "var" if ctx.category == "running_var" else "mean"
    return _running(ctx, stat, 1 - _torch_momentum(ctx), unbiased=True)


@register("inverted_momentum_biased_var", _INVERTED + "; and the biased variance (n/(n−1))",
          ("running_var",), ("batchnorm",))
def _inverted_momentum_biased(ctx: Context) -> np.ndarray:
    return _running(ctx, "var", 1 - _torch_momentum(ctx), unbiased=False)


# ---- normalisation formulas (BatchNorm train/eval, LayerNorm) ------------------------------------------------------
def _stats(ctx: Context) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """(x, mean, biased var, broadcast) for the compared step: batch, running (eval) or per-sample (LayerNorm)."""
    (x,) = ctx.need("x")
    if ctx.kind == "layernorm":
        axes = tuple(range(x.ndim - int(ctx.get("normalized_ndim", 1)), x.ndim))
        return x, x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True), lambda v: v
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    broadcast = lambda v: np.reshape(v, shape)  # noqa: E731  (C,) onto the channel axis
    if ctx.category == "eval":
        mean, var = ctx.need("running_mean", "running_var")
        return x, broadcast(mean), broadcast(var), broadcast
    axes = _channel_axes(x)
    return x, x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True), broadcast


def _normalized(ctx: Context, eps_at: str, with_beta: bool) -> np.ndarray:
    """γ·(x − μ)/denominator (+ β): eps 'inside' √(σ²+eps), 'outside' √σ² + eps, or 'none'."""
    x, mean, var, broadcast = _stats(ctx)
    gamma, eps = ctx.need("gamma", "eps")
    denominator = {"inside": np.sqrt(var + eps), "outside": np.sqrt(var) + eps, "none": np.sqrt(var)}[eps_at]
    out = broadcast(gamma) * ((x - mean) / denominator)
    if with_beta:
        (beta,) = ctx.need("beta")
        out = out + broadcast(beta)
    return out


#: (where eps sits, whether beta is added) -> (detector name, cause); ("inside", True) is torch's formula
_FORMULAS = {
    ("outside", True): ("eps_outside_sqrt",
                        "eps outside the sqrt: (x − μ)/(√σ² + eps), torch: (x − μ)/√(σ² + eps)"),
    ("none", True): ("no_eps", "eps missing: (x − μ)/√σ², torch: (x − μ)/√(σ² + eps)"),
    ("inside", False): ("no_beta", "beta missing: γ·x̂, torch: γ·x̂ + β"),
    ("outside", False): ("eps_outside_sqrt_no_beta",
                         "eps outside the sqrt and beta missing: γ(x − μ)/(√σ² + eps), "
                         "torch: γ(x − μ)/√(σ² + eps) + β"),
    ("none", False): ("no_eps_no_beta",
                      "eps and beta missing: γ(x − μ)/√σ², torch: γ(x − μ)/√(σ² + eps) + β"),
}


def _formula_detector(eps_at: str, with_beta: bool) -> Hypothesis:
    return lambda ctx: _normalized(ctx, eps_at, with_beta)


for (_eps_at, _beta), (_name, _text) in _FORMULAS.items():
    register(_name, _text, ("out",), ("batchnorm", "layernorm"))(_formula_detector(_eps_at, _beta))
    register("eval_" + _name, "test mode (μ, σ² = your running stats): " + _text, ("eval",),
             ("batchnorm",))(_formula_detector(_eps_at, _beta))


@register("eval_batch_stats", "test mode normalises with the batch's own statistics instead of the "
          "running ones", ("eval",), ("batchnorm",))
def _eval_batch_stats(ctx: Context) -> np.ndarray:
    (x,) = ctx.need("x")
    gamma, beta, eps = ctx.need("gamma", "beta", "eps")
    axes = _channel_axes(x)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return np.reshape(gamma, shape) * x_hat + np.reshape(beta, shape)


@register("eval_from_running_stats", "the test-mode formula is right: the output differs through the running "
          "statistics only", ("eval",), ("batchnorm",))
def _eval_from_running_stats(ctx: Context) -> np.ndarray:
    return _normalized(ctx, "inside", True)


# ---- gradients off by the batch size ------------------------------------------------------------------------------
@register("grad_times_n", "off by the batch size n: a sum where torch takes the mean",
          ("grad", "out"))
def _grad_times_n(ctx: Context) -> np.ndarray:
    (n,) = ctx.need("n")
    return ctx.expected.astype(np.float64) * n


@register("grad_over_n", "off by 1/n (batch size n): a mean where torch sums",
          ("grad", "out"))
def _grad_over_n(ctx: Context) -> np.ndarray:
    (n,) = ctx.need("n")
    return ctx.expected.astype(np.float64) / n


# ---- dropout scaling ------------------------------------------------------------------------------------------------
def _dropped(ctx: Context, scale: Callable[[float], float]) -> np.ndarray:
    """source·mask·scale(p), with source = dout for a gradient, x otherwise."""
    source, p, mask = ctx.need("dout" if ctx.category == "grad" else "x", "p", "mask")
    return source * mask.astype(np.float64) * scale(float(p))


@register("dropout_over_p", "scaled by 1/p, torch by 1/(1−p): keep/drop probability confusion (torch's p "
          "drops; see p_is_keep_prob)",
          ("out", "grad"), ("dropout",))
def _dropout_over_p(ctx: Context) -> np.ndarray:
    return _dropped(ctx, lambda p: 1 / p)


@register("dropout_times_p", "scaled by p, torch by 1/(1−p)", ("out", "grad"), ("dropout",))
def _dropout_times_p(ctx: Context) -> np.ndarray:
    return _dropped(ctx, lambda p: p)


@register("dropout_times_keep", "multiplied by the keep probability 1−p; torch divides by it "
          "(inverted dropout)", ("out", "grad"), ("dropout",))
def _dropout_times_keep(ctx: Context) -> np.ndarray:
    return _dropped(ctx, lambda p: 1 - p)


@register("dropout_no_rescale", "kept values not rescaled; torch divides them by 1−p (inverted dropout)",
          ("out", "grad"), ("dropout",))
def _dropout_no_rescale(ctx: Context) -> np.ndarray:
    return _dropped(ctx, lambda p: 1.0)


@register("dropout_eval_scaled", "test mode scales by 1−p (non-inverted dropout); torch's eval dropout is "
          "the identity", ("eval",), ("dropout",))
def _dropout_eval_scaled(ctx: Context) -> np.ndarray:
    source, p = ctx.need("dout" if "dx" in ctx.check else "x", "p")
    return source * (1 - float(p))


def keep_rate_cause(kept: int, total: int, p: float, sigmas: float = 5.0) -> Optional[str]:
    """The cause of a wrong keep rate: kept/total consistent with p itself (the probabilities swapped), or 1.

    ``p`` is torch's drop probability; consistency is ``|rate − q| ≤ sigmas·√(q(1−q)/total)``.
    """
    rate = kept / total
    if kept == total and p > 0:
        return "nothing was dropped in training mode"
    if 0 < p < 1 and abs(rate - p) <= sigmas * np.sqrt(p * (1 - p) / total) and abs(p - 0.5) > 1e-12:
        return (f"keep rate {rate:.3f} ≈ p = {p:g}: p used as the keep probability (torch's p drops; see "
                "p_is_keep_prob)")
    return None


# ---- optimizer trajectories -----------------------------------------------------------------------------------------
def _trajectory(ctx: Context, step: Callable[[np.ndarray, np.ndarray, Dict[str, Any], int], np.ndarray]
                ) -> Optional[np.ndarray]:
    """Replay ``step(param, grad, state, t)`` over ``grads`` from ``param0``; shaped like ``actual`` (stack or last)."""
    param0, grads = ctx.need("param0", "grads")
    if ctx.get("weight_decay", 0.0) or ctx.values.get("nesterov") or ctx.values.get("maximize"):
        return None  # the hypotheses below are written for the plain update only
    p = np.array(param0, dtype=np.float64)
    state: Dict[str, Any] = {}
    path = []
    for t, g in enumerate(np.asarray(grads, dtype=np.float64), start=1):
        p = step(p, g, state, t)
        path.append(p)
    stack = np.stack(path)
    if ctx.actual.shape == stack.shape:
        return stack
    return stack[-1] if ctx.actual.shape == stack.shape[1:] else None


def _damped_momentum(ctx: Context, lr: float, momentum: float, dampening: float) -> Optional[np.ndarray]:
    """SGD with the buffer starting at zeros: buf = m·buf + (1 − d)·g from the first step."""
    def step(p, g, state, t):
        state["buf"] = momentum * state.get("buf", 0.0) + (1 - dampening) * g
        return p - lr * state["buf"]
    return _trajectory(ctx, step)


@register("momentum_dampened_first_step", "first momentum step dampened: buffer (1−dampening)·g, torch starts it "
          "at g", ("trajectory",), ("sgd",))
def _momentum_dampened_first_step(ctx: Context) -> Optional[np.ndarray]:
    lr, m = ctx.need("lr", "momentum")
    d = float(ctx.get("dampening", 0.0))
    return _damped_momentum(ctx, lr, m, d) if d else None


@register("momentum_ema", "momentum as an average v = βv + (1−β)g (deeplearning.ai) ≡ torch "
          "SGD(lr·(1−β), momentum=β): set momentum_style='dlai'",
          ("trajectory",), ("sgd",))
def _momentum_ema(ctx: Context) -> Optional[np.ndarray]:
    lr, m = ctx.need("lr", "momentum")
    return _damped_momentum(ctx, lr, m, m) if m and not ctx.get("dampening", 0.0) else None


@register("momentum_without_ema", "momentum v = μv − lr·g (CS231n ≡ torch SGD(lr, momentum=μ)) where "
          "v = βv + (1−β)g was expected: set momentum_style='cs231n'",
          ("trajectory",), ("sgd",))
def _momentum_without_ema(ctx: Context) -> Optional[np.ndarray]:
    lr, m = ctx.need("lr", "momentum")
    if not m or ctx.get("dampening", 0.0):
        return None

    def step(p, g, state, t):
        state["buf"] = m * state["buf"] + g if "buf" in state else g
        return p - lr / (1 - m) * state["buf"]
    return _trajectory(ctx, step)


def _adam(ctx: Context, variant: str) -> Optional[np.ndarray]:
    lr, betas, eps = ctx.need("lr", "betas", "eps")
    b1, b2 = (float(b) for b in betas)

    def step(p, g, state, t):
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        if variant == "no_bias_correction":
            return p - lr * state["m"] / (np.sqrt(state["v"]) + eps)
        m_hat, v_hat = state["m"] / (1 - b1 ** t), state["v"] / (1 - b2 ** t)
        return p - lr * m_hat / np.sqrt(v_hat + eps)  # eps inside the sqrt
    return _trajectory(ctx, step)


@register("adam_no_bias_correction", "Adam without bias correction: m/(√v + eps), torch: m̂/(√v̂ + eps) with "
          "m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)", ("trajectory",), ("adam",))
def _adam_no_bias_correction(ctx: Context) -> Optional[np.ndarray]:
    return _adam(ctx, "no_bias_correction")


@register("adam_eps_inside_sqrt", "Adam with eps inside the sqrt: m̂/√(v̂ + eps), torch: m̂/(√v̂ + eps)",
          ("trajectory",), ("adam",))
def _adam_eps_inside(ctx: Context) -> Optional[np.ndarray]:
    return _adam(ctx, "eps_inside")


@register("rmsprop_eps_inside_sqrt", "RMSprop with eps inside the sqrt: g/√(s + eps), torch: g/(√s + eps)",
          ("trajectory",), ("rmsprop",))
def _rmsprop_eps_inside(ctx: Context) -> Optional[np.ndarray]:
    lr, alpha, eps = ctx.need("lr", "alpha", "eps")

    def step(p, g, state, t):
        state["s"] = alpha * state.get("s", 0.0) + (1 - alpha) * g * g
        return p - lr * g / np.sqrt(state["s"] + eps)
    return _trajectory(ctx, step)
