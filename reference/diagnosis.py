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
                       ``'rmsprop'``, ``'adam'``, ``'conv'``, ``'max_pool'`` (→ ``'maxpool'``),
                       ``'spatial_groupnorm'`` (→ ``'groupnorm'``), ``'rnn_step'``/``'rnn'`` (→ ``'rnn'``),
                       ``'lstm_step'``/``'lstm'`` (→ ``'lstm'``), ``'word_embedding'`` (→ ``'embedding'``),
                       ``'temporal_affine'`` (→ ``'temporalaffine'``), ``'temporal_softmax_loss'``
                       (→ ``'temporalsoftmaxloss'``)
``n``                  the batch size (values averaged per statistic, or per mean-reduced gradient)
``x``                  the input of the compared step; ``dout`` its upstream gradient
``gamma``, ``beta``    the affine parameters, shape (C,) (BatchNorm: broadcast on axis 1) or trailing (LayerNorm)
``eps``                the normalisation layer's eps, or the optimizer's
``batches``            BatchNorm: every training input, in order, that produced the compared running statistics
``momentum``           BatchNorm: torch's convention (``running = (1 - m)·running + m·batch``); SGD: the momentum
``running_mean0``,     BatchNorm: the initial running statistics (default 0 and 1, torch's)
``running_var0``
``unbiased_var``       BatchNorm: whether the expected running variance is the unbiased one (default True, torch's;
                       False under a course profile prescribing the biased one, e.g. CS231n's)
``running_mean``,      BatchNorm eval: the running statistics the *actual* eval output was computed from (the
``running_var``        implementation's own), so the eval formula is judged apart from the statistics
``p``, ``mask``        dropout: torch's drop probability and the keep mask (bool, x's shape) both sides applied
``param0``, ``grads``  optimizers: the initial parameter and the gradient of every step, stacked (steps, *shape);
                       ``actual``/``expected`` are then the parameters after every step (same stack) or after the last
``lr``, ``betas``,     optimizers: torch's hyper-parameters (``alpha``: RMSprop's smoothing constant)
``dampening``, ``alpha``
``w``, ``b``,          conv (CS231n ``conv_forward_naive``): the filters (F, C, HH, WW), the bias (F,), the stride and
``stride``, ``pad``    the zero padding on every side; ``x`` (N, C, H, W) and ``dout`` as above
``pool_height``,       max_pool: the window and its stride (``x``, ``dout`` as above)
``pool_width``,
``stride``
``G``                  spatial_groupnorm: the number of groups; ``gamma``, ``beta`` shaped (1, C, 1, 1) or (C,)
``h0``, ``Wx``,        rnn_step/rnn/lstm_step/lstm (→ ``'rnn'``, ``'lstm'``; CS231n layout): the initial (previous)
``Wh``, ``b``          hidden state (N, H), Wx (D, H) or (D, 4H) with the gates i, f, o, g, Wh (H, ·), b; ``x`` is
                       (N, D) for a step, (N, T, D) for a sequence; ``dout`` the upstream gradient of next_h or h
``c0``, ``dc``         lstm: the previous cell state and the upstream gradient of next_c (zeros when absent: a
                       sequence starts with c0 = 0 and has no gradient for its last c)
``x``, ``dout``        word_embedding (→ ``'embedding'``): the word indices (N, T) and the gradient of out (N, T, D)
``x``, ``y``, ``mask`` temporal_softmax_loss (→ ``'temporalsoftmaxloss'``): scores (N, T, V), labels and mask (N, T)
``course_hints``       detector name (or ``'name@check'``) -> a sentence appended to its cause when it is the diagnosis
                       (the course whose rule the hypothesis is: "matches the cs231n convention: pass `--course X`")
=====================  ================================================================================================

Detectors marked ``reshapes`` describe a wrong output *size* (padding left out, the pooling stride taken as the
window): they are the only ones tried when ``actual`` and ``expected`` differ in shape.
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
    reshapes: bool = False  # the hypothesis may have another shape than torch's (tried on a shape mismatch too)


#: the registry, in the order detectors are tried (ties in fit are resolved by this order)
DETECTORS: Dict[str, Detector] = {}


def register(name: str, cause: str, categories: Tuple[str, ...], kinds: Tuple[str, ...] = (),
             reshapes: bool = False) -> Callable[[Hypothesis], Hypothesis]:
    """Decorator adding a hypothesis function to :data:`DETECTORS` under ``name`` (``reshapes``: see the module
    docstring)."""
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown check categories {sorted(unknown)}; expected some of {CATEGORIES}")

    def add(fn: Hypothesis) -> Hypothesis:
        DETECTORS[name] = Detector(name, cause, tuple(categories), tuple(kinds), fn, reshapes)
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
    if c in ("out", "output", "forward", "loss", "next_h", "next_c", "h") or c.endswith(" out"):
        return "out"
    return "other"


_KIND_ALIASES = (("temporalaffine", "temporalaffine"), ("spatialbatchnorm", "batchnorm"), ("batchnorm", "batchnorm"),
                 ("layernorm", "layernorm"), ("dropout", "dropout"), ("adamw", "adamw"), ("adam", "adam"),
                 ("rmsprop", "rmsprop"), ("sgd", "sgd"), ("affine", "affine"), ("linear", "affine"), ("relu", "relu"),
                 ("groupnorm", "groupnorm"), ("maxpool", "maxpool"), ("conv", "conv"),
                 ("temporalsoftmax", "temporalsoftmaxloss"), ("embedding", "embedding"), ("lstm", "lstm"),
                 ("rnn", "rnn"))


def normalize_kind(kind: Optional[str]) -> Optional[str]:
    """'BatchNorm1d', 'spatial_batchnorm', 'batch_norm' -> 'batchnorm'; 'SGD(momentum)', 'sgd_momentum' -> 'sgd';
    'rnn_step' -> 'rnn', 'lstm_step' -> 'lstm', 'word_embedding' -> 'embedding', 'temporal_affine' ->
    'temporalaffine', 'temporal_softmax_loss' -> 'temporalsoftmaxloss'."""
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
        Empty when ``actual`` already matches ``expected``, when nothing fits, or when the shapes differ and no
        ``reshapes`` detector explains the other shape.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.dtype.kind not in "fiub" or expected.dtype.kind not in "fiub":
        return []
    if actual.shape != expected.shape:
        return _reshaped_diagnoses(Context(check, actual, expected, context))
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
                found.append(Diagnosis(det.name, _with_hint(det, context, check), fit))
    return sorted(found, key=lambda d: d.max_rel)


def _with_hint(det: Detector, context: Mapping[str, Any], check: str) -> str:
    """The detector's cause, with the course hint the context gives for it (``course_hints``: keyed
    ``'name@check'`` for one check, else ``'name'``)."""
    hints = context.get("course_hints") or {}
    hint = hints.get(f"{det.name}@{check}", hints.get(det.name))
    return f"{det.cause}; {hint}" if hint else det.cause


def _reshaped_diagnoses(ctx: Context) -> List[Diagnosis]:
    """The ``reshapes`` detectors whose hypothesis has ``actual``'s (wrong) shape and its values."""
    found = []
    with np.errstate(all="ignore"):
        for det in DETECTORS.values():
            if not det.reshapes or ctx.category not in det.categories or (det.kinds and ctx.kind not in det.kinds):
                continue
            try:
                hypothesis = det.hypothesis(ctx)
            except _Missing:
                continue
            if hypothesis is None or np.shape(hypothesis) != ctx.actual.shape:
                continue
            h = np.asarray(hypothesis, dtype=np.float64).astype(ctx.expected.dtype)
            result = compare("fit", ctx.actual.astype(ctx.expected.dtype), h)
            if result.passed:
                found.append(Diagnosis(det.name, _with_hint(det, ctx.values, ctx.check), result.max_rel))
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


def _unbiased(ctx: Context) -> bool:
    """Whether the expected running variance is the unbiased one (torch's; a course profile may say biased)."""
    value = ctx.values.get("unbiased_var")
    return True if value is None else bool(value)


@register("biased_running_var",
          "running_var uses the biased variance Σ(x−μ)²/n; torch's is unbiased, Σ(x−μ)²/(n−1)",
          ("running_var",), ("batchnorm",))
def _biased_running_var(ctx: Context) -> Optional[np.ndarray]:
    return _running(ctx, "var", _torch_momentum(ctx), unbiased=False) if _unbiased(ctx) else None


@register("unbiased_running_var",
          "running_var uses the unbiased variance Σ(x−μ)²/(n−1) (torch's); the course prescribes the biased "
          "one, Σ(x−μ)²/n (np.var(x, axis=0))", ("running_var",), ("batchnorm",))
def _unbiased_running_var(ctx: Context) -> Optional[np.ndarray]:
    return None if _unbiased(ctx) else _running(ctx, "var", _torch_momentum(ctx), unbiased=True)


_INVERTED = ("inverted momentum convention: running = m·running + (1−m)·batch (CS231n 0.9 ≡ torch 0.1); "
             "set momentum_style='cs231n' or pass 1 − m")


@register("inverted_momentum", _INVERTED, ("running_mean", "running_var"), ("batchnorm",))
def _inverted_momentum(ctx: Context) -> np.ndarray:
    stat = "var" if ctx.category == "running_var" else "mean"
    return _running(ctx, stat, 1 - _torch_momentum(ctx), unbiased=_unbiased(ctx))


@register("inverted_momentum_biased_var", _INVERTED + "; and the biased variance (n/(n−1))",
          ("running_var",), ("batchnorm",))
def _inverted_momentum_biased(ctx: Context) -> Optional[np.ndarray]:
    return _running(ctx, "var", 1 - _torch_momentum(ctx), unbiased=False) if _unbiased(ctx) else None


@register("inverted_momentum_unbiased_var", _INVERTED + "; and the unbiased variance Σ(x−μ)²/(n−1) where the "
          "course prescribes the biased one", ("running_var",), ("batchnorm",))
def _inverted_momentum_unbiased(ctx: Context) -> Optional[np.ndarray]:
    return None if _unbiased(ctx) else _running(ctx, "var", 1 - _torch_momentum(ctx), unbiased=True)


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


def _normalized(ctx: Context, eps_at: str, with_beta: bool, with_gamma: bool = True) -> np.ndarray:
    """γ·(x − μ)/denominator (+ β): eps 'inside' √(σ²+eps), 'outside' √σ² + eps, or 'none'; without γ (and β)
    when ``with_gamma`` is False."""
    x, mean, var, broadcast = _stats(ctx)
    gamma, eps = ctx.need("gamma", "eps")
    denominator = {"inside": np.sqrt(var + eps), "outside": np.sqrt(var) + eps, "none": np.sqrt(var)}[eps_at]
    out = (x - mean) / denominator
    if not with_gamma:
        return out
    out = broadcast(gamma) * out
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


_NO_AFFINE = "gamma and beta missing: x̂ = (x − μ)/√(σ² + eps) returned as is, torch: γ·x̂ + β"


@register("no_gamma_beta", _NO_AFFINE, ("out",), ("batchnorm", "layernorm"))
def _no_gamma_beta(ctx: Context) -> np.ndarray:
    return _normalized(ctx, "inside", False, with_gamma=False)


@register("eval_no_gamma_beta", "test mode (μ, σ² = your running stats): " + _NO_AFFINE + " (the test-mode "
          "branch must scale and shift too)", ("eval",), ("batchnorm",))
def _eval_no_gamma_beta(ctx: Context) -> np.ndarray:
    return _normalized(ctx, "inside", False, with_gamma=False)


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


@register("dropout_eval_scaled", "test mode multiplies by the keep probability 1 − p (x * p with p the keep "
          "probability: the test-time scaling of non-inverted dropout); with inverted dropout (training divides "
          "by the keep probability) the test-mode output is x itself", ("eval",), ("dropout",))
def _dropout_eval_scaled(ctx: Context) -> np.ndarray:
    source, p = ctx.need("dout" if "dx" in ctx.check else "x", "p")
    return source * (1 - float(p))


@register("dropout_eval_times_p", "test mode multiplies by p (x * p, the test-time scaling of non-inverted "
          "dropout, here with p the drop probability); with inverted dropout the test-mode output is x itself",
          ("eval",), ("dropout",))
def _dropout_eval_times_p(ctx: Context) -> np.ndarray:
    source, p = ctx.need("dout" if "dx" in ctx.check else "x", "p")
    return source * float(p)


def keep_rate_cause(kept: int, total: int, p: float, sigmas: float = 5.0, *, p_is_keep_prob: bool = False
                    ) -> Optional[str]:
    """The cause of a wrong keep rate: kept/total consistent with p itself (the probabilities swapped), or 1.

    ``p`` is torch's drop probability; consistency is ``|rate − q| ≤ sigmas·√(q(1−q)/total)``.
    ``p_is_keep_prob``: the user's p was declared the keep probability (1 − ``p``), so a keep rate of ``p`` means
    the code dropped with the user's p.
    """
    rate = kept / total
    if kept == total and p > 0:
        return "nothing was dropped in training mode"
    if 0 < p < 1 and abs(rate - p) <= sigmas * np.sqrt(p * (1 - p) / total) and abs(p - 0.5) > 1e-12:
        if p_is_keep_prob:
            return (f"keep rate {rate:.3f} ≈ 1 − your p = {p:g}: p used as the drop probability (declared the "
                    "keep probability)")
        return (f"keep rate {rate:.3f} ≈ p = {p:g}: p used as the keep probability (torch's p drops; see "
                "p_is_keep_prob)")
    return None


#: a dropout mask whose rows (or columns, or calls) repeat this often is not drawn per element
SHARED_MASK_FRACTION = 0.5


def _repeated_fraction(rows: np.ndarray) -> float:
    """The fraction of the rows of a 2-D bool array that repeat an earlier row."""
    if rows.shape[0] < 2:
        return 0.0
    return 1.0 - len(np.unique(rows, axis=0)) / rows.shape[0]


def shared_mask_cause(masks: List[np.ndarray], keep: float) -> Optional[str]:
    """Why dropout masks (bool, (N, D), one per training call) are not independent per element, or None.

    Independent Bernoulli(``keep``) rows of D elements coincide with probability (keep² + (1 − keep)²)^D, about
    1e-12 for D = 50 and keep 0.7: a repeated fraction above :data:`SHARED_MASK_FRACTION` of rows, of columns or of
    whole calls is far above chance.
    """
    masks = [np.asarray(m, dtype=bool) for m in masks if np.ndim(m) == 2]
    if not masks or not 0 < keep < 1:
        return None
    if max(_repeated_fraction(m) for m in masks) > SHARED_MASK_FRACTION:
        return ("the same mask for every row (sample): the mask is drawn with shape (1, D) and broadcast over the "
                "batch; draw one value per element, np.random.rand(*x.shape) < keep")
    if max(_repeated_fraction(m.T) for m in masks) > SHARED_MASK_FRACTION:
        return ("the same mask for every column (feature): the mask is drawn with shape (N, 1) and broadcast; draw "
                "one value per element, np.random.rand(*x.shape) < keep")
    if len(masks) > 1 and _repeated_fraction(np.stack([m.ravel() for m in masks])) > SHARED_MASK_FRACTION:
        return ("the same mask at every call: the generator is re-seeded with a constant (dropout_param['seed'] "
                "ignored), so every minibatch drops the same units")
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


def _adam(ctx: Context, variant: str, *, t_shift: int = 0, powers: Tuple[bool, bool] = (False, False)
          ) -> Optional[np.ndarray]:
    """Adam replayed with one deviation: ``variant`` 'no_bias_correction', 'eps_inside' (√(v̂ + eps)), 'no_sqrt'
    (m̂/(v̂ + eps)) or 'torch'; ``t_shift`` added to the step count of the bias correction; ``powers``: β1, β2
    raised to the fixed power 2 instead of t in the bias correction."""
    lr, betas, eps = ctx.need("lr", "betas", "eps")
    b1, b2 = (float(b) for b in betas)

    def step(p, g, state, t):
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        if variant == "no_bias_correction":
            return p - lr * state["m"] / (np.sqrt(state["v"]) + eps)
        k = t + t_shift
        m_hat = state["m"] / (1 - b1 ** (2 if powers[0] else k))
        v_hat = state["v"] / (1 - b2 ** (2 if powers[1] else k))
        if variant == "eps_inside":
            return p - lr * m_hat / np.sqrt(v_hat + eps)
        if variant == "no_sqrt":
            return p - lr * m_hat / (v_hat + eps)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return _trajectory(ctx, step)


def _nearest(ctx: Context, variants: List[Optional[np.ndarray]]) -> Optional[np.ndarray]:
    """Of several hypotheses of one family, the one nearest ``actual`` (None when none has its shape)."""
    fits = [v for v in variants if v is not None and np.shape(v) == ctx.actual.shape]
    with np.errstate(all="ignore"):
        return min(fits, key=lambda v: float(np.nan_to_num(np.max(np.abs(v - ctx.actual)), nan=np.inf))) \
            if fits else None


@register("adam_no_bias_correction", "Adam without bias correction: m/(√v + eps), torch: m̂/(√v̂ + eps) with "
          "m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)", ("trajectory",), ("adam",))
def _adam_no_bias_correction(ctx: Context) -> Optional[np.ndarray]:
    return _adam(ctx, "no_bias_correction")


@register("adam_eps_inside_sqrt", "Adam with eps inside the sqrt: m̂/√(v̂ + eps), torch: m̂/(√v̂ + eps)",
          ("trajectory",), ("adam",))
def _adam_eps_inside(ctx: Context) -> Optional[np.ndarray]:
    return _adam(ctx, "eps_inside")


#: Adam's step counter one ahead: the cause, also given to the ``config t`` check by :mod:`reference.check`
ADAM_T_AHEAD = ("Adam's t one ahead: it starts at 1 and is incremented before use, so the first step's bias "
                "correction uses t = 2; t must be 1 at the first step (start at 0, t += 1, then use it)")


@register("adam_t_off_by_one", ADAM_T_AHEAD, ("trajectory",), ("adam",))
def _adam_t_off_by_one(ctx: Context) -> Optional[np.ndarray]:
    return _adam(ctx, "torch", t_shift=1)


@register("adam_no_sqrt", "Adam without the square root: m̂/(v̂ + eps); torch divides by √v̂ + eps "
          "(v is a mean of squared gradients)", ("trajectory",), ("adam",))
def _adam_no_sqrt(ctx: Context) -> Optional[np.ndarray]:
    return _nearest(ctx, [_adam(ctx, "no_sqrt", powers=pw) for pw in ((False, False), (False, True), (True, True))])


@register("adam_bias_power_two", "Adam's bias correction with a fixed power 2 (1 − β2**2, or 1 − β1**2) where it "
          "is 1 − β**t, t the step count", ("trajectory",), ("adam",))
def _adam_bias_power_two(ctx: Context) -> Optional[np.ndarray]:
    return _nearest(ctx, [_adam(ctx, "torch", powers=pw) for pw in ((False, True), (True, True), (True, False))])


@register("rmsprop_eps_inside_sqrt", "RMSprop with eps inside the sqrt: g/√(s + eps), torch: g/(√s + eps)",
          ("trajectory",), ("rmsprop",))
def _rmsprop_eps_inside(ctx: Context) -> Optional[np.ndarray]:
    lr, alpha, eps = ctx.need("lr", "alpha", "eps")

    def step(p, g, state, t):
        state["s"] = alpha * state.get("s", 0.0) + (1 - alpha) * g * g
        return p - lr * g / np.sqrt(state["s"] + eps)
    return _trajectory(ctx, step)


# ---- convolution (CS231n conv_forward_naive: x (N, C, H, W), w (F, C, HH, WW), b (F,), stride, pad) -------------
Pads = Tuple[int, int, int, int]  # zero padding (top, bottom, left, right)


def _conv_inputs(ctx: Context) -> Tuple[np.ndarray, np.ndarray, int, int]:
    x, w, stride, pad = ctx.need("x", "w", "stride", "pad")
    return x, w, int(stride), int(pad)


def _windows(x: np.ndarray, pads: Pads, hh: int, ww: int, step: int, out_h: int, out_w: int) -> np.ndarray:
    """(N, C, out_h, out_w, hh, ww): the padded input's windows, their corners ``step`` apart."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    view = np.lib.stride_tricks.sliding_window_view(xp, (hh, ww), axis=(2, 3))
    return view[:, :, ::step, ::step][:, :, :out_h, :out_w]


def _conv(x: np.ndarray, w: np.ndarray, stride: int, pads: Pads) -> Optional[np.ndarray]:
    """The cross-correlation torch's conv2d computes (no bias), with any padding on each side."""
    hh, ww = w.shape[2:]
    out_h = (x.shape[2] + pads[0] + pads[1] - hh) // stride + 1
    out_w = (x.shape[3] + pads[2] + pads[3] - ww) // stride + 1
    if out_h < 1 or out_w < 1:
        return None
    return np.einsum("nchwij,fcij->nfhw", _windows(x, pads, hh, ww, stride, out_h, out_w), w)


def _conv_grads(x: np.ndarray, w: np.ndarray, dout: np.ndarray, step: int, pads: Pads
                ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(dx, dw) of the cross-correlation, for windows whose corners are ``step`` apart (the stride, or not)."""
    hh, ww = w.shape[2:]
    out_h, out_w = dout.shape[2:]
    top, bottom, left, right = pads
    if (out_h - 1) * step + hh > x.shape[2] + top + bottom or (out_w - 1) * step + ww > x.shape[3] + left + right:
        return None, None
    dw = np.einsum("nchwij,nfhw->fcij", _windows(x, pads, hh, ww, step, out_h, out_w), dout)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right))
    for i in range(hh):
        for j in range(ww):
            dxp[:, :, i:i + (out_h - 1) * step + 1:step, j:j + (out_w - 1) * step + 1:step] += \
                np.einsum("nfhw,fc->nchw", dout, w[:, :, i, j])
    return dxp[:, :, top:top + x.shape[2], left:left + x.shape[3]], dw


def _conv_hypothesis(ctx: Context, w: np.ndarray, pads: Pads, step: Optional[int] = None,
                     flip_dw: bool = False) -> Optional[np.ndarray]:
    """out (with the bias), dx or dw of a convolution computed with filters ``w`` and padding ``pads``."""
    x, _, stride, _ = _conv_inputs(ctx)
    if ctx.category == "out":
        out = _conv(x, w, stride, pads)
        (b,) = ctx.need("b")
        return None if out is None else out + np.reshape(b, (1, -1, 1, 1))
    if ctx.check not in ("dx", "dw"):
        return None
    (dout,) = ctx.need("dout")
    dx, dw = _conv_grads(x, w, dout, stride if step is None else step, pads)
    if dx is None:
        return None
    if ctx.check == "dx":
        return dx
    return dw[:, :, ::-1, ::-1] if flip_dw else dw


@register("conv_flipped_kernel", "kernel flipped (a true convolution, w[:, :, ::-1, ::-1]); torch's conv2d is a "
          "cross-correlation: out = Σ x_window · w, w as given", ("out", "grad"), ("conv",))
def _conv_flipped_kernel(ctx: Context) -> Optional[np.ndarray]:
    _, w, _, pad = _conv_inputs(ctx)
    return _conv_hypothesis(ctx, w[:, :, ::-1, ::-1], (pad,) * 4, flip_dw=True)


def _conv_with_bias(ctx: Context, times: Callable[[np.ndarray, np.ndarray], float]) -> Optional[np.ndarray]:
    x, w, stride, pad = _conv_inputs(ctx)
    (b,) = ctx.need("b")
    out = _conv(x, w, stride, (pad,) * 4)
    return None if out is None else out + times(x, w) * np.reshape(b, (1, -1, 1, 1))


@register("conv_no_bias", "bias missing: out = Σ x_window · w; torch adds b[f] once at every output position",
          ("out",), ("conv",))
def _conv_no_bias(ctx: Context) -> Optional[np.ndarray]:
    return _conv_with_bias(ctx, lambda x, w: 0.0)


@register("conv_bias_twice", "bias added twice at every output position (2·b[f]); torch adds b[f] once",
          ("out",), ("conv",))
def _conv_bias_twice(ctx: Context) -> Optional[np.ndarray]:
    return _conv_with_bias(ctx, lambda x, w: 2.0)


@register("conv_bias_per_channel", "bias added once per input channel (inside the loop over C: C·b[f]); torch "
          "adds b[f] once per output position, after the sum over channels", ("out",), ("conv",))
def _conv_bias_per_channel(ctx: Context) -> Optional[np.ndarray]:
    return _conv_with_bias(ctx, lambda x, w: float(x.shape[1]))


@register("conv_pad_after_only", "padding on one side only: 2·pad zeros after (bottom/right) instead of pad on "
          "every side (np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))))", ("out", "grad"), ("conv",))
def _conv_pad_after_only(ctx: Context) -> Optional[np.ndarray]:
    _, w, _, pad = _conv_inputs(ctx)
    return _conv_hypothesis(ctx, w, (0, 2 * pad, 0, 2 * pad)) if pad else None


@register("conv_pad_before_only", "padding on one side only: 2·pad zeros before (top/left) instead of pad on "
          "every side (np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))))", ("out", "grad"), ("conv",))
def _conv_pad_before_only(ctx: Context) -> Optional[np.ndarray]:
    _, w, _, pad = _conv_inputs(ctx)
    return _conv_hypothesis(ctx, w, (2 * pad, 0, 2 * pad, 0)) if pad else None


@register("conv_no_padding", "padding not applied: the output is (H − HH)/stride + 1 high, torch's "
          "(H + 2·pad − HH)/stride + 1: pad x with pad zeros on every side first", ("out",), ("conv",),
          reshapes=True)
def _conv_no_padding(ctx: Context) -> Optional[np.ndarray]:
    _, w, _, pad = _conv_inputs(ctx)
    return _conv_hypothesis(ctx, w, (0, 0, 0, 0)) if pad else None


@register("conv_backward_stride_ignored", "stride ignored in the backward: dout[..., i, j] sent to the window at "
          "(i, j) instead of (i·stride, j·stride)", ("grad",), ("conv",))
def _conv_backward_stride_ignored(ctx: Context) -> Optional[np.ndarray]:
    _, w, stride, pad = _conv_inputs(ctx)
    return _conv_hypothesis(ctx, w, (pad,) * 4, step=1) if stride != 1 else None


def _conv_one_sample(ctx: Context, k: int) -> Optional[np.ndarray]:
    x, w, stride, pad = _conv_inputs(ctx)
    (dout,) = ctx.need("dout")
    if ctx.check == "db":
        return dout[k].sum(axis=(1, 2))
    if ctx.check != "dw":
        return None
    return _conv_grads(x[[k]], w, dout[[k]], stride, (pad,) * 4)[1]


@register("conv_grad_last_sample", "gradient of the last sample only (dw = … inside the loop over the batch "
          "overwrites it): torch sums dw and db over every sample (dw += …)", ("grad",), ("conv",))
def _conv_grad_last_sample(ctx: Context) -> Optional[np.ndarray]:
    return _conv_one_sample(ctx, -1)


@register("conv_grad_first_sample", "gradient of the first sample only: torch sums dw and db over every sample "
          "of the batch", ("grad",), ("conv",))
def _conv_grad_first_sample(ctx: Context) -> Optional[np.ndarray]:
    return _conv_one_sample(ctx, 0)


# ---- max pooling (CS231n max_pool_forward_naive: pool_height, pool_width, stride; no padding) --------------------
def _pool_params(ctx: Context) -> Tuple[np.ndarray, int, int, int]:
    x, ph, pw, stride = ctx.need("x", "pool_height", "pool_width", "stride")
    return x, int(ph), int(pw), int(stride)


def _pool_dx(ctx: Context, rule: str) -> Optional[np.ndarray]:
    """dx of max pooling when the window's gradient goes by ``rule`` (torch: 'first' maximum, row-major)."""
    if ctx.check != "dx":
        return None
    x, ph, pw, s = _pool_params(ctx)
    (dout,) = ctx.need("dout")
    n, c, out_h, out_w = dout.shape
    if (out_h - 1) * s + ph > x.shape[2] or (out_w - 1) * s + pw > x.shape[3]:
        return None
    dx = np.zeros(x.shape)
    rows, cols = np.ogrid[:n, :c]
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * s:i * s + ph, j * s:j * s + pw].reshape(n, c, ph * pw)
            ties = window == window.max(axis=-1, keepdims=True)
            g = dout[:, :, i, j]
            if rule in ("first", "last", "assign"):
                k = ties.argmax(axis=-1) if rule != "last" else ph * pw - 1 - ties[..., ::-1].argmax(axis=-1)
                if rule == "assign":
                    dx[rows, cols, i * s + k // pw, j * s + k % pw] = g
                else:
                    dx[rows, cols, i * s + k // pw, j * s + k % pw] += g
                continue
            share = ties / ties.sum(axis=-1, keepdims=True) if rule == "split" else ties
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += (share * g[..., None]).reshape(n, c, ph, pw)
    return dx


@register("pool_grad_to_all_ties", "gradient spread to every tied maximum of a window (window == max); torch "
          "sends it to the first maximal element only, in row-major order", ("grad",), ("maxpool",))
def _pool_grad_to_all_ties(ctx: Context) -> Optional[np.ndarray]:
    return _pool_dx(ctx, "all")


@register("pool_grad_to_last_max", "gradient to the last maximal element of a tied window; torch sends it to the "
          "first, in row-major order (np.argmax's choice)", ("grad",), ("maxpool",))
def _pool_grad_to_last_max(ctx: Context) -> Optional[np.ndarray]:
    return _pool_dx(ctx, "last")


@register("pool_grad_split_among_ties", "gradient split equally among the tied maxima of a window; torch sends "
          "all of it to the first maximal element, in row-major order", ("grad",), ("maxpool",))
def _pool_grad_split_among_ties(ctx: Context) -> Optional[np.ndarray]:
    return _pool_dx(ctx, "split")


@register("pool_grad_assigned", "dx assigned (=) instead of accumulated (+=): an element that is the maximum "
          "of several overlapping windows must receive the sum of their gradients", ("grad",), ("maxpool",))
def _pool_grad_assigned(ctx: Context) -> Optional[np.ndarray]:
    return _pool_dx(ctx, "assign")


@register("pool_stride_is_window", "pooling stride taken as the window size: windows pool_height × pool_width "
          "apart instead of pool_param['stride']", ("out",), ("maxpool",), reshapes=True)
def _pool_stride_is_window(ctx: Context) -> Optional[np.ndarray]:
    x, ph, pw, s = _pool_params(ctx)
    for sh, sw in ((ph, pw), (ph, ph), (pw, pw)):  # each axis its own window size, or one size for both
        if (sh, sw) == (s, s) or ph > x.shape[2] or pw > x.shape[3]:
            continue
        out_h, out_w = (x.shape[2] - ph) // sh + 1, (x.shape[3] - pw) // sw + 1
        if (out_h, out_w) == ctx.actual.shape[2:]:
            view = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(2, 3))
            return view[:, :, ::sh, ::sw][:, :, :out_h, :out_w].max(axis=(-2, -1))
    return None


# ---- spatial group normalisation (CS231n spatial_groupnorm_forward: x (N, C, H, W), G, gamma (1, C, 1, 1)) -------
def _group_ids(shape: Tuple[int, ...], grouping: str, groups: int) -> np.ndarray:
    """For each element of x (N, C, H, W), the set it is normalised over, as a flat label array."""
    n_, c_ = shape[:2]
    n = np.arange(n_).reshape(-1, 1, 1, 1)
    c = np.arange(c_).reshape(1, -1, 1, 1)
    ids = {"groups": n * groups + c // (c_ // groups), "interleaved": n * groups + c % groups,
           "channel": c + 0 * n, "sample": n + 0 * c, "instance": n * c_ + c}[grouping]
    return np.broadcast_to(ids, shape).ravel()


def _group_norm(ctx: Context, grouping: str, eps_at: str = "inside", groups: Optional[int] = None
                ) -> Optional[np.ndarray]:
    """out, dx or dgamma of a normalisation over the sets ``grouping`` names, eps ``inside`` or ``outside`` √."""
    x, gamma, beta, eps, g_count = ctx.need("x", "gamma", "beta", "eps", "G")
    groups = int(g_count) if groups is None else groups
    c = x.shape[1]
    if x.ndim != 4 or groups < 1 or c % groups or (ctx.category == "grad" and ctx.check not in ("dx", "dgamma")):
        return None
    ids = _group_ids(x.shape, grouping, groups)
    counts = np.bincount(ids)
    mean = lambda v: (np.bincount(ids, weights=v.ravel()) / counts)[ids].reshape(x.shape)  # noqa: E731
    xc = x - mean(x)
    var = mean(xc * xc)
    denominator = np.sqrt(var + eps) if eps_at == "inside" else np.sqrt(var) + eps
    x_hat = xc / denominator
    gamma, beta = np.reshape(gamma, (1, c, 1, 1)), np.reshape(beta, (1, c, 1, 1))
    if ctx.category == "out":
        return gamma * x_hat + beta
    (dout,) = ctx.need("dout")
    if ctx.check == "dgamma":
        dgamma = (dout * x_hat).sum(axis=(0, 2, 3))
        return dgamma.reshape(ctx.actual.shape) if dgamma.size == ctx.actual.size else None
    g = dout * gamma
    two_dd = 1 / np.sqrt(var + eps) if eps_at == "inside" else 1 / np.sqrt(var)  # 2·∂denominator/∂var
    return (g - mean(g)) / denominator - mean(g * xc) / denominator ** 2 * two_dd * xc


@register("groupnorm_per_channel", "statistics per channel over (N, H, W), as batch norm takes them; group norm "
          "takes them per sample and group of C/G channels: x.reshape(N, G, -1)", ("out", "grad"), ("groupnorm",))
def _groupnorm_per_channel(ctx: Context) -> Optional[np.ndarray]:
    return _group_norm(ctx, "channel")


@register("groupnorm_per_sample", "statistics over the whole sample (C, H, W), i.e. layer norm (G = 1); group norm "
          "takes them per group of C/G channels: x.reshape(N, G, -1)", ("out", "grad"), ("groupnorm",))
def _groupnorm_per_sample(ctx: Context) -> Optional[np.ndarray]:
    return _group_norm(ctx, "sample")


@register("groupnorm_per_instance", "statistics per channel of each sample over (H, W), i.e. instance norm "
          "(G = C); group norm takes them over a group of C/G channels", ("out", "grad"), ("groupnorm",))
def _groupnorm_per_instance(ctx: Context) -> Optional[np.ndarray]:
    return _group_norm(ctx, "instance")


@register("groupnorm_interleaved_groups", "groups formed from interleaved channels (channel c in group c % G, "
          "e.g. x.reshape(N, C // G, G, H, W)); torch's groups are contiguous blocks of C/G channels: "
          "x.reshape(N, G, C // G, H, W)", ("out", "grad"), ("groupnorm",))
def _groupnorm_interleaved(ctx: Context) -> Optional[np.ndarray]:
    return _group_norm(ctx, "interleaved")


@register("groupnorm_groups_swapped", "C/G groups of G channels (G and C // G swapped in the reshape); torch makes "
          "G groups of C/G channels: x.reshape(N, G, C // G, H, W)", ("out", "grad"), ("groupnorm",))
def _groupnorm_groups_swapped(ctx: Context) -> Optional[np.ndarray]:
    (x, g) = ctx.need("x", "G")
    c, g = x.shape[1], int(g)
    return _group_norm(ctx, "groups", groups=c // g) if g and c % g == 0 and c // g != g else None


@register("groupnorm_eps_outside_sqrt", _FORMULAS[("outside", True)][1], ("out", "grad"), ("groupnorm",))
def _groupnorm_eps_outside(ctx: Context) -> Optional[np.ndarray]:
    return _group_norm(ctx, "groups", eps_at="outside")


# ---- recurrent layers (CS231n rnn_layers.py: rnn_step/rnn, lstm_step/lstm; Wx (D, G·H), gates i, f, o, g) ------
#: a check's name -> the value of the recurrence it compares
_RECURRENT_VALUES = {"next_h": "h", "h": "h", "out": "h", "next_c": "c", "dx": "dx", "dprev_h": "dh0",
                     "dh0": "dh0", "dprev_c": "dc0", "dc0": "dc0", "dWx": "dWx", "dWh": "dWh", "db": "db"}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _gates_swapped(hidden: int) -> np.ndarray:
    """The column permutation between the gate orders i, f, o, g and i, f, g, o (its own inverse)."""
    return np.r_[0:2 * hidden, 3 * hidden:4 * hidden, 2 * hidden:3 * hidden]


def _recurrent(ctx: Context, *, torch_gates: bool = False, tanh_linear: str = "", carry_h: bool = True,
               carry_c: bool = True, through_forget: bool = True, c_from_h: bool = True,
               param_step: Optional[int] = None, tanh_of_input: bool = False) -> Optional[np.ndarray]:
    """The value ``ctx.check`` names of a vanilla RNN or LSTM (step or sequence) computed with one deviation.

    ``torch_gates``: the LSTM's blocks read as i, f, g, o; ``tanh_linear``: where tanh' is taken as 1 − tanh,
    'h' (the RNN's next_h), 'c' (the LSTM's tanh(next_c)), 'g' (its candidate), e.g. 'cg' for both;
    ``carry_h``/``carry_c``: the hidden/cell gradient of step t + 1 passed to step t; ``through_forget=False``:
    dprev_c = dc (not dc·f); ``c_from_h=False``: dc without the path through next_h; ``param_step``: the weight
    gradients of that one time step only (negative from the end); ``tanh_of_input``: the RNN's tanh' computed from
    its input, 1 − a² with a = x·Wx + prev_h·Wh + b, instead of from its output.
    """
    key = _RECURRENT_VALUES.get(ctx.check)
    x, h0, wx, wh, b, dout = ctx.need("x", "h0", "Wx", "Wh", "b", "dout")
    if key is None or ctx.kind not in ("rnn", "lstm") or x.ndim not in (2, 3):
        return None
    lstm, step = ctx.kind == "lstm", x.ndim == 2
    n, hidden = h0.shape
    perm = _gates_swapped(hidden) if lstm and torch_gates else None
    if perm is not None:
        if wx.shape[1] != 4 * hidden:
            return None
        wx, wh, b = wx[:, perm], wh[:, perm], b[perm]
    xs, douts = (x[:, None], dout[:, None]) if step else (x, dout)
    steps = xs.shape[1]

    def dtanh(y: np.ndarray, where: str) -> np.ndarray:
        return 1 - y if where in tanh_linear else 1 - y * y
    hs, cs, saved, pre = [h0], [ctx.get("c0", np.zeros_like(h0))], [], []
    for t in range(steps):
        a = xs[:, t] @ wx + hs[-1] @ wh + b
        pre.append(a)
        if lstm:
            i, f, o = (_sigmoid(a[:, k * hidden:(k + 1) * hidden]) for k in range(3))
            g = np.tanh(a[:, 3 * hidden:])
            cs.append(f * cs[-1] + i * g)
            saved.append((i, f, o, g, np.tanh(cs[-1])))
            hs.append(o * saved[-1][4])
        else:
            hs.append(np.tanh(a))
    if key in ("h", "c"):
        if key == "c" and not lstm:
            return None
        values = np.stack(hs[1:] if key == "h" else cs[1:], axis=1)
        return values[:, 0] if step else values
    dx, dwx, dwh, db = np.zeros(xs.shape), np.zeros(wx.shape), np.zeros(wh.shape), np.zeros(b.shape)
    dh_next, dc_next = np.zeros_like(h0), ctx.get("dc", np.zeros_like(h0))
    for t in reversed(range(steps)):
        dh = douts[:, t] + (dh_next if carry_h else 0.0)
        if lstm:
            i, f, o, g, tc = saved[t]
            dc = (dc_next if carry_c or t == steps - 1 else 0.0) + (dh * o * dtanh(tc, "c") if c_from_h else 0.0)
            da = np.concatenate([dc * g * i * (1 - i), dc * cs[t] * f * (1 - f), dh * tc * o * (1 - o),
                                 dc * i * dtanh(g, "g")], axis=1)
            dc_next = dc * f if through_forget else dc
        else:
            da = dh * (1 - pre[t] * pre[t] if tanh_of_input else dtanh(hs[t + 1], "h"))
        dx[:, t] = da @ wx.T
        dh_next = da @ wh.T
        if param_step is None or t == param_step % steps:
            dwx, dwh, db = dwx + xs[:, t].T @ da, dwh + hs[t].T @ da, db + da.sum(axis=0)
    grads = {"dx": dx[:, 0] if step else dx, "dh0": dh_next, "dc0": dc_next if lstm else None,
             "dWx": dwx, "dWh": dwh, "db": db}
    value = grads[key]
    if value is not None and perm is not None and key in ("dWx", "dWh", "db"):
        value = value[..., perm]  # back to the layout the weights were given in
    return value


@register("lstm_gate_order_torch", "gate order i, f, g, o (torch's) where the assignment's is i, f, o, g: of "
          "a = x·Wx + prev_h·Wh + b, a[:, 2H:3H] is the output gate o = σ(·) and a[:, 3H:4H] the candidate "
          "g = tanh(·)", ("out", "grad"), ("lstm",))
def _lstm_gate_order_torch(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, torch_gates=True)


@register("tanh_grad_not_squared", "tanh derivative taken as 1 − tanh; it is 1 − tanh²: d tanh(a)/da = "
          "1 − tanh(a)², e.g. da = dnext_h · (1 − next_h**2)", ("grad",), ("rnn", "lstm"))
def _tanh_grad_not_squared(ctx: Context) -> Optional[np.ndarray]:
    if ctx.kind == "rnn":
        return _recurrent(ctx, tanh_linear="h")
    # the LSTM has two tanh: wrong in both, or in one of them — the variant nearest the actual value is the hypothesis
    variants = [v for v in (_recurrent(ctx, tanh_linear=w) for w in ("cg", "c", "g")) if v is not None]
    fits = [v for v in variants if np.shape(v) == ctx.actual.shape]
    return min(fits, key=lambda v: float(np.max(np.abs(v - ctx.actual)))) if fits else None


@register("tanh_grad_of_input", "tanh' taken from the input: 1 − a² with a = x·Wx + prev_h·Wh + b; it is "
          "1 − tanh(a)², from the output: da = dnext_h · (1 − next_h**2)", ("grad",), ("rnn",))
def _tanh_grad_of_input(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, tanh_of_input=True)


@register("recurrent_no_upstream_dh", "the gradient from the next time step is missing: step t's backward must "
          "get dh[:, t] + dprev_h (the dprev_h that step t + 1 returned), not dh[:, t] alone", ("grad",),
          ("rnn", "lstm"))
def _recurrent_no_upstream_dh(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, carry_h=False)


@register("recurrent_param_grad_first_step", "weight gradients of one time step only, t = 0 (dWh = … overwritten "
          "in the backward loop over time instead of dWh += …): dWx, dWh and db sum over every time step",
          ("grad",), ("rnn", "lstm"))
def _recurrent_param_grad_first_step(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, param_step=0) if ctx.check in ("dWx", "dWh", "db") else None


@register("recurrent_param_grad_last_step", "weight gradients of one time step only, the last (t = T − 1): dWx, "
          "dWh and db sum over every time step (dWh += … in the loop over time)", ("grad",), ("rnn", "lstm"))
def _recurrent_param_grad_last_step(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, param_step=-1) if ctx.check in ("dWx", "dWh", "db") else None


@register("lstm_cell_grad_skips_forget_gate", "the cell-state gradient does not flow through the forget gate: "
          "c = f·prev_c + i·g, so dprev_c = dc · f, not dc", ("grad",), ("lstm",))
def _lstm_cell_grad_skips_forget_gate(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, through_forget=False)


@register("lstm_cell_grad_misses_h_path", "dc lacks the path through next_h = o·tanh(next_c): dc = dnext_c + "
          "dnext_h · o · (1 − tanh²(next_c)), not dnext_c alone", ("grad",), ("lstm",))
def _lstm_cell_grad_misses_h_path(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, c_from_h=False)


@register("lstm_cell_grad_not_carried", "the cell-state gradient is not carried back in time: step t's backward "
          "must get the dprev_c that step t + 1 returned as its dnext_c (0 only at t = T − 1)", ("grad",),
          ("lstm",))
def _lstm_cell_grad_not_carried(ctx: Context) -> Optional[np.ndarray]:
    return _recurrent(ctx, carry_c=False)


# ---- word embedding (CS231n word_embedding_forward: x (N, T) word indices, W (V, D)) --------------------------
@register("embedding_grad_assigned", "dW[x] = dout (or dW[x] += dout) keeps one gradient per word: a word that "
          "occurs k times must get the sum of its k gradients, np.add.at(dW, x, dout)", ("grad",), ("embedding",))
def _embedding_grad_assigned(ctx: Context) -> Optional[np.ndarray]:
    x, dout = ctx.need("x", "dout")
    if ctx.actual.ndim != 2 or dout.shape[-1] != ctx.actual.shape[1]:
        return None
    dw = np.zeros(ctx.actual.shape)
    dw[np.asarray(x, dtype=np.int64)] = dout  # numpy keeps one of the repeated rows, as the user's code did
    return dw


# ---- temporal affine (CS231n temporal_affine_forward: x (N, T, D), w (D, M), b (M,)) ------------------------------
@register("temporal_affine_db_over_n_only", "db summed over the batch axis only (dout.sum(axis=0), shape (T, M)): "
          "b is shared by every time step too, db = dout.sum(axis=(0, 1))", ("grad",), ("temporalaffine",),
          reshapes=True)
def _temporal_affine_db_over_n_only(ctx: Context) -> Optional[np.ndarray]:
    (dout,) = ctx.need("dout")
    return dout.sum(axis=0) if ctx.check == "db" and dout.ndim == 3 else None


# ---- temporal softmax loss (CS231n: Σ over the masked positions of −log softmax(x)[y], divided by N) ---------
def _temporal_softmax(ctx: Context, divisor: str = "N", masked: bool = True, shift: bool = True
                      ) -> Optional[np.ndarray]:
    """The loss or dx of the masked cross-entropy summed and divided by ``divisor``: 'N', '1', 'NT' or 'mask';
    ``shift=False``: the softmax computed as exp(x)/Σexp(x), without subtracting the row maximum (it overflows)."""
    x, y, mask = ctx.need("x", "y", "mask")
    if x.ndim != 3 or ctx.check not in ("loss", "dx"):
        return None
    n, steps, v = x.shape
    flat = x.reshape(-1, v)
    if shift:
        shifted = flat - flat.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    else:
        log_p = np.log(np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True))
    rows, labels = np.arange(n * steps), np.asarray(y, dtype=np.int64).ravel()
    weight = np.asarray(mask, dtype=np.float64).ravel() if masked else np.ones(n * steps)
    scale = {"N": n, "1": 1, "NT": n * steps, "mask": weight.sum()}[divisor]
    if ctx.check == "loss":
        return np.asarray(-(weight * log_p[rows, labels]).sum() / scale)
    dx = np.exp(log_p)
    dx[rows, labels] -= 1
    return (dx * weight[:, None] / scale).reshape(x.shape)


@register("temporal_softmax_not_over_n", "the sum over the masked positions is not divided by N: CS231n's loss "
          "is Σ mask·(−log p[y]) / N, and dx carries the same 1/N", ("out", "grad"), ("temporalsoftmaxloss",))
def _temporal_softmax_not_over_n(ctx: Context) -> Optional[np.ndarray]:
    return _temporal_softmax(ctx, "1")


@register("temporal_softmax_over_nt", "divided by N·T; CS231n divides the sum over the masked positions by N "
          "alone: Σ mask·(−log p[y]) / N", ("out", "grad"), ("temporalsoftmaxloss",))
def _temporal_softmax_over_nt(ctx: Context) -> Optional[np.ndarray]:
    return _temporal_softmax(ctx, "NT")


@register("temporal_softmax_over_mask_count", "divided by the number of unmasked positions (cross_entropy's "
          "mean with ignore_index); CS231n divides by N: Σ mask·(−log p[y]) / N", ("out", "grad"),
          ("temporalsoftmaxloss",))
def _temporal_softmax_over_mask_count(ctx: Context) -> Optional[np.ndarray]:
    return _temporal_softmax(ctx, "mask")


@register("temporal_softmax_mask_ignored", "the mask is ignored: positions with mask False (<NULL> padding) must "
          "add nothing to the loss and get dx = 0: Σ mask·(−log p[y]) / N", ("out", "grad"),
          ("temporalsoftmaxloss",))
def _temporal_softmax_mask_ignored(ctx: Context) -> Optional[np.ndarray]:
    return _temporal_softmax(ctx, masked=False)


@register("softmax_no_max_shift", "softmax without subtracting the row maximum: np.exp of a large logit overflows "
          "to inf (inf/inf = nan, or log 0 for very negative rows); subtract x.max(axis=-1, keepdims=True) "
          "before np.exp, which leaves the softmax unchanged", ("out", "grad"), ("temporalsoftmaxloss",))
def _softmax_no_max_shift(ctx: Context) -> Optional[np.ndarray]:
    return _temporal_softmax(ctx, shift=False)


# ---- ReLU (CS231n relu_forward / relu_backward) ----------------------------------------------------------------
@register("relu_grad_at_zero", "the gradient passes where x == 0 (x >= 0): ReLU's gradient at 0 is 0 in torch, "
          "dx = dout * (x > 0)", ("grad",), ("relu",))
def _relu_grad_at_zero(ctx: Context) -> Optional[np.ndarray]:
    x, dout = ctx.need("x", "dout")
    return dout * (x >= 0) if ctx.check == "dx" and x.shape == dout.shape else None
