"""Check your own layer or optimizer code (CS231n style) against torch, with a diagnosis of what differs.

The functions checked are written the way the course assignments (and the seeds) write them::

    out, cache = affine_forward(x, w, b)                  # w: (D, M), x: (N, d1, ..., dk) reshaped to (N, D)
    dx, dw, db = affine_backward(dout, cache)
    out, cache = relu_forward(x);  dx = relu_backward(dout, cache)
    out, cache = batchnorm_forward(x, gamma, beta, bn_param)          # bn_param: mode, eps, momentum,
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)               #   running_mean, running_var (updated)
    out, cache = spatial_batchnorm_forward(x, gamma, beta, bn_param)  # x: (N, C, H, W)
    out, cache = layernorm_forward(x, gamma, beta, ln_param)          # ln_param: eps
    out, cache = dropout_forward(x, dropout_param);  dx = dropout_backward(dout, cache)   # mode, p, seed
    out, cache = conv_forward_naive(x, w, b, conv_param)              # x (N, C, H, W), w (F, C, HH, WW),
    dx, dw, db = conv_backward_naive(dout, cache)                     #   b (F,); conv_param: stride, pad
    out, cache = max_pool_forward_naive(x, pool_param)                # pool_param: pool_height, pool_width,
    dx = max_pool_backward_naive(dout, cache)                         #   stride
    out, cache = spatial_groupnorm_forward(x, gamma, beta, G, gn_param)   # gamma, beta (1, C, 1, 1); eps
    dx, dgamma, dbeta = spatial_groupnorm_backward(dout, cache)           # dgamma, dbeta (1, C, 1, 1)
    next_w, config = update(w, dw, config)                            # sgd, sgd_momentum, rmsprop, adam

and CS231n assignment 3's ``rnn_layers.py`` (Wx (D, H) or (D, 4H), the LSTM's gates in the order i, f, o, g)::

    next_h, cache = rnn_step_forward(x, prev_h, Wx, Wh, b)            # x (N, D), prev_h (N, H)
    dx, dprev_h, dWx, dWh, db = rnn_step_backward(dnext_h, cache)
    h, cache = rnn_forward(x, h0, Wx, Wh, b)                          # x (N, T, D), h (N, T, H)
    dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
    out, cache = word_embedding_forward(x, W);  dW = word_embedding_backward(dout, cache)   # x (N, T) ints
    out, cache = temporal_affine_forward(x, w, b);  dx, dw, db = temporal_affine_backward(dout, cache)
    loss, dx = temporal_softmax_loss(x, y, mask)                      # Σ over mask of −log p[y], / N
    next_h, next_c, cache = lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    dx, dprev_h, dprev_c, dWx, dWh, db = lstm_step_backward(dnext_h, dnext_c, cache)
    h, cache = lstm_forward(x, h0, Wx, Wh, b);  dx, dh0, dWx, dWh, db = lstm_backward(dh, cache)   # c0 = 0

:func:`check_layer` builds the same computation in torch, runs both on seeded random inputs whose dimensions all
differ (several training steps, then test mode), maps the conventions you declare onto torch's, and compares the
output, every gradient, the running statistics after each step and the test-mode output; :func:`check_update` runs
an update rule and the matching ``torch.optim`` optimizer on the same gradients for several steps and compares the
whole parameter trajectory and the optimizer state. Convolution, max pooling and group norm run once on each of a
few geometries (:data:`CONV_GEOMETRIES`, :data:`POOL_GEOMETRIES`, :data:`GROUPNORM_GEOMETRIES`); the max-pooling
inputs hold ties, where torch's gradient goes to the first maximal element in row-major order. The recurrent kinds
are compared with torch's ``nn.RNNCell``/``nn.RNN``/``nn.LSTMCell``/``nn.LSTM`` given the course's weights
(transposed, the LSTM's gate blocks reordered to torch's i, f, g, o), the word embedding with ``F.embedding`` on
repeated words, the temporal softmax loss with ``F.cross_entropy(reduction='sum')`` over the masked positions / N.
Every comparison uses the tolerance table (``reference.tolerances``); a failed one carries the likely cause from
``reference.diagnosis``.

Course profiles (``course``, ``--course cs231n|dlai|d2l|nndl|torch``; :data:`PROFILES`): a table of each course's
prescribed rules — the running statistics' momentum form, the biased or unbiased running variance, dropout's p as
the keep or the drop probability, eps placement, the SGD-momentum form, Adam's step count, RMSprop's eps, the L2 cost
scaling. Under a profile, code following the course's rule passes and the report adds a passing note row "course
convention: <rule> (torch: <torch's rule>)" (quoting the learner's docstring when it states dropout's p); without
it, a mismatch a course's rule explains is diagnosed "... matches the cs231n convention: pass `--course cs231n`".
``momentum_style`` and ``p_is_keep_prob`` (``--momentum-style``, ``--keep-prob``) are finer switches overriding the
course's rule:

- BatchNorm ``'torch'``: ``running = (1 − m)·running + m·batch``; ``'cs231n'``:
  ``running = m·running + (1 − m)·batch`` (CS231n's 0.9 is torch's 0.1). Torch's running variance is the unbiased
  one, and it starts at 1.
- dropout: torch's ``p`` is the drop probability; ``p_is_keep_prob=True`` when yours keeps with probability p.
- SGD momentum ``'cs231n'``: ``v = μv − lr·dw; w += v`` ≡ ``SGD(lr, momentum=μ)``; ``'dlai'`` (deeplearning.ai):
  ``v = βv + (1 − β)·dw; w −= lr·v`` ≡ ``SGD(lr·(1 − β), momentum=β)``.

Gradients returned with kept dimensions ((1, D) for (D,)) are compared by value and fail as "values right, shape
(1, D) instead of (D,)"; a function whose signature cannot take the course's arguments fails as "signature: expected
f(x, gamma, beta, bn_param), got f(x, gamma)"; a crash from a Python 2 or pre-2.0 NumPy habit (``np.float``,
``np.product``, ``newshape=``, ``xrange``, ``/`` giving a float index) names it.

From the command line: ``handnn-verify --user path/to/layers.py:batchnorm_forward --course cs231n``,
``handnn-verify --user layers.py:conv_forward_naive``, ``handnn-verify --user rnn_layers.py:lstm_forward``
(:func:`main_user`; the backward is found by name: ``conv_forward_fast`` → ``conv_backward_fast``; a backward named
alone, ``layers.py:batchnorm_backward_alt``, is checked with its forward ``batchnorm_forward``).
"""
from __future__ import annotations

import argparse
import contextvars
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .diagnosis import ADAM_T_AHEAD, diagnose, keep_rate_cause, shared_mask_cause
from .tolerances import Comparison, compare
from .twin import TORCH_DTYPES, to_numpy, to_tensor

LAYER_KINDS = ("affine", "relu", "batchnorm", "spatial_batchnorm", "layernorm", "dropout", "conv", "max_pool",
               "spatial_groupnorm")
#: CS231n assignment 3 (rnn_layers.py); apart from LAYER_KINDS so that tuple keeps its order, checked as layers too
SEQUENCE_KINDS = ("rnn_step", "rnn", "word_embedding", "temporal_affine", "temporal_softmax_loss", "lstm_step",
                  "lstm")
UPDATE_KINDS = ("sgd", "sgd_momentum", "rmsprop", "adam")

#: the hyper-parameters given to a CS231n update rule (``config`` overrides them)
UPDATE_CONFIGS: Dict[str, Dict[str, float]] = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-2, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
}

#: a dropout keep rate is wrong when it is this many binomial standard deviations from 1 − p
KEEP_RATE_SIGMAS = 5.0

#: (N, C, H, W, F, HH, WW, stride, pad): every dim different, C never 2 (C·b is then not 2·b), and CS231n's own
#: assertion (H + 2·pad − HH) % stride == 0 == (W + 2·pad − WW) % stride holds
CONV_GEOMETRIES = (
    (2, 3, 5, 6, 4, 3, 2, 1, 1),   # stride 1, pad 1, 3×2 kernel: out (2, 4, 5, 7)
    (3, 4, 9, 7, 5, 3, 5, 2, 0),   # stride 2, pad 0, 3×5 kernel: out (3, 5, 4, 2)
    (2, 5, 6, 10, 3, 2, 4, 2, 1),  # stride 2, pad 1, 2×4 kernel: out (2, 3, 4, 5)
)

#: (N, C, H, W, pool_height, pool_width, stride, ties): with ties, x holds small integers {0, 1, 2}, so most
#: windows have several maxima; (H − pool_height) % stride == 0 == (W − pool_width) % stride
POOL_GEOMETRIES = (
    (2, 3, 6, 8, 2, 2, 2, True),    # CS231n's 2×2 windows, stride 2
    (3, 2, 5, 7, 3, 2, 1, True),    # overlapping 3×2 windows, stride 1: an element is the maximum of several
    (2, 4, 6, 9, 2, 3, 2, False),   # 2×3 windows, stride 2, continuous values (no ties)
)

#: (N, C, H, W, G) with 1 < G < C, so per-sample, per-channel and interleaved groups all differ from torch's
GROUPNORM_GEOMETRIES = (
    (3, 8, 5, 6, 2),
    (2, 6, 4, 7, 3),
)

#: (N, T, D, H) of rnn_step, rnn, lstm_step, lstm: every dim different (and 4H too), T > 2
RNN_SHAPE = (3, 4, 5, 6)
#: (N, T, V, D) of word_embedding: N·T = 15 words drawn from V − 1 = 6, so words repeat
EMBEDDING_SHAPE = (3, 5, 7, 4)
#: (N, T, D, M) of temporal_affine
TEMPORAL_AFFINE_SHAPE = (3, 4, 5, 7)
#: (N, T, V) of temporal_softmax_loss
SOFTMAX_SHAPE = (3, 5, 7)

# ---- course profiles ------------------------------------------------------------------------------------------------
#: each rule a profile sets: its values and what they say (the text of the report's note rows and hints)
RULES: Dict[str, Dict[str, str]] = {
    "bn_momentum": {
        "torch": "running = (1 − momentum)·running + momentum·batch, momentum 0.1",
        "ema": "running = momentum·running + (1 − momentum)·batch, momentum 0.9"},
    "running_var": {
        "unbiased": "running_var averages the unbiased batch variance Σ(x − μ)²/(n − 1)",
        "biased": "running_var averages the biased batch variance Σ(x − μ)²/n (np.var)"},
    "dropout_p": {
        "drop": "dropout p is the drop probability (keep with 1 − p)",
        "keep": "dropout p is the keep probability (keep_prob)"},
    "bn_eps": {
        "inside": "eps inside the square root: (x − μ)/√(σ² + eps)"},
    "sgd_momentum": {
        "torch": "buf = μ·buf + dw; w −= lr·buf",
        "cs231n": "v = μ·v − lr·dw; w += v (torch's steps while lr is constant)",
        "dlai": "v = β·v + (1 − β)·dw; w −= lr·v (torch SGD(lr·(1 − β), momentum=β))"},
    "adam_t": {
        "before": "t incremented before use: t = 1 at the first step",
        "after": "t starts at 1 and is incremented after the update (t = 1 at the first step, as torch's)"},
    "rmsprop_eps": {
        "outside": "RMSprop divides by √s + eps",
        "inside": "RMSprop divides by √(s + eps)"},
    "cost": {
        "lambda/2": "L2 cost (λ/2)·ΣW², dW += λ·W (torch weight_decay = λ)",
        "lambda/(2m)": "L2 cost λ/(2m)·ΣW², dW += (λ/m)·W (torch weight_decay = λ/m)"},
}


@dataclass(frozen=True)
class Profile:
    """A course's prescribed rules (:data:`RULES` gives each value's meaning); ``source`` says where they are
    written. Under ``--course NAME`` code following these rules passes, with a note row per rule that differs from
    torch's."""

    name: str
    source: str
    bn_momentum: str = "torch"
    bn_momentum_value: float = 0.1
    running_var: str = "unbiased"
    dropout_p: str = "drop"
    bn_eps: str = "inside"
    sgd_momentum: str = "torch"
    adam_t: str = "before"
    rmsprop_eps: str = "outside"
    cost: str = "lambda/2"

    def rule(self, name: str) -> str:
        return RULES[name][getattr(self, name)]


#: the course profiles of ``--course``; 'torch' (no course) is the default
PROFILES: Dict[str, Profile] = {p.name: p for p in (
    Profile("cs231n", "CS231n assignment 2 (layers.py docstrings: batchnorm_forward's running averages with "
            "momentum 0.9 and np.var; dropout_forward \"We keep each neuron output with probability p\"; optim.py "
            "sgd_momentum v = mu*v - lr*dw, adam's t += 1 before use)",
            bn_momentum="ema", bn_momentum_value=0.9, running_var="biased", dropout_p="keep",
            sgd_momentum="cs231n"),
    Profile("dlai", "deeplearning.ai course 2 (keep_prob dropout; momentum v = βv + (1 − β)dW; Adam with t counted "
            "from 1 by the training loop; L2 cost λ/(2m)·ΣW²; batch norm's exponentially weighted averages, β 0.9)",
            bn_momentum="ema", bn_momentum_value=0.9, running_var="biased", dropout_p="keep",
            sgd_momentum="dlai", cost="lambda/(2m)"),
    Profile("d2l", "Dive into Deep Learning (zh.d2l.ai 7.5 batch_norm: momentum 0.9, var = ((X − mean)**2).mean(); "
            "dropout_layer's dropout drops; sgd_momentum v = momentum·v + grad; adam's t used, then t += 1; "
            "rmsprop divides by √(s + eps))",
            bn_momentum="ema", bn_momentum_value=0.9, running_var="biased", adam_t="after", rmsprop_eps="inside"),
    Profile("nndl", "Neural Networks and Deep Learning (nndl, 邱锡鹏) and its Paddle casebook: BatchNorm as paddle's "
            "(momentum 0.9, biased running variance); Dropout(drop_rate); momentum Δθ = ρΔθ − αg; RMSprop "
            "√(G + ε); L2 cost λ/(2·data_size)·ΣW²",
            bn_momentum="ema", bn_momentum_value=0.9, running_var="biased", sgd_momentum="cs231n",
            rmsprop_eps="inside", cost="lambda/(2m)"),
    Profile("torch", "PyTorch (docs/torch-semantics.md)"),
)}
COURSES = tuple(PROFILES)

#: rules with the same effect on the checks (CS231n's momentum form is torch's at a constant learning rate)
_EQUIVALENT = {("sgd_momentum", "cs231n"): "torch"}


def profiles_table() -> str:
    """The course profiles as a Markdown table, one row per rule, torch's first (docs/checker.md holds it; a test
    keeps the two equal)."""
    names = ["torch"] + [name for name in PROFILES if name != "torch"]
    lines = ["| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for rule in RULES:
        cells = []
        for name in names:
            value = PROFILES[name].rule(rule)
            if rule == "bn_momentum":
                value = value.rsplit(", momentum", 1)[0] + f", momentum {PROFILES[name].bn_momentum_value:g}"
            same = name != "torch" and getattr(PROFILES[name], rule) == getattr(PROFILES["torch"], rule) and (
                rule != "bn_momentum" or PROFILES[name].bn_momentum_value == PROFILES["torch"].bn_momentum_value)
            cells.append("= torch" if same else value)
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def get_profile(course: Optional[str]) -> Profile:
    """The profile of ``course`` (None: torch's), or a ValueError naming the courses."""
    name = "torch" if course is None else str(course).lower()
    if name not in PROFILES:
        raise ValueError(f"course must be one of {list(COURSES)}, but got {course!r}")
    return PROFILES[name]


def _rule_key(name: str, value: str) -> str:
    return _EQUIVALENT.get((name, value), value)


def courses_with(rules: Mapping[str, str]) -> List[str]:
    """The courses whose profile prescribes every rule of ``rules`` (rule name -> value), in PROFILES order."""
    return [p.name for p in PROFILES.values()
            if all(_rule_key(k, getattr(p, k)) == _rule_key(k, v) for k, v in rules.items())]


def course_hint(rules: Mapping[str, str], current: str = "torch") -> Optional[str]:
    """"matches the cs231n convention (also d2l, nndl): pass `--course cs231n`" for the courses (other than
    ``current``) prescribing ``rules``; None when none does."""
    names = courses_with(rules)
    if current in names:
        if current == "torch":
            return "matches torch's convention: leave out --momentum-style / --keep-prob"
        return (f"matches the {current} convention you chose: leave out the finer switches (--momentum-style, "
                "--keep-prob) that override it")
    if not names:
        return None
    if "torch" in names:  # no course at all is the simplest advice
        names.remove("torch")
        names.insert(0, "torch")
    also = f" (also {', '.join(names[1:])})" if len(names) > 1 else ""
    if names[0] == "torch":
        return f"matches torch's convention{also}: pass `--course torch`"
    return f"matches the {names[0]} convention{also}: pass `--course {names[0]}`"


def convention_row(name: str, course: str, detail: str = "") -> Optional["CheckRow"]:
    """The note row of rule ``name`` under ``course`` — "course convention: <rule> (torch: <torch's rule>)", a
    passing row — or None when the course's rule is torch's."""
    prof, torch_prof = get_profile(course), PROFILES["torch"]
    if getattr(prof, name) == getattr(torch_prof, name):
        return None
    text = f"course convention: {prof.rule(name)} (torch: {torch_prof.rule(name)})"
    return CheckRow(Comparison(f"{prof.name}: {name}", "-", 0.0, 0.0, 0, 0), text + (f"; {detail}" if detail else ""))


#: the rules each built-in kind follows (their note rows, in this order)
KIND_RULES: Dict[str, Tuple[str, ...]] = {
    "batchnorm": ("bn_momentum", "running_var"), "spatial_batchnorm": ("bn_momentum", "running_var"),
    "dropout": ("dropout_p",), "sgd_momentum": ("sgd_momentum",), "rmsprop": ("rmsprop_eps",),
}

#: what a learner's docstring may say about dropout's p: (pattern, reading)
_DOC_RULES = ((re.compile(r"\bkeep\w*\s+each\s+neuron\s+output\s+with\s+probability\s+p\b", re.I), "keep"),
              (re.compile(r"\bdrop\w*\s+each\s+neuron\s+output\s+with\s+probability\s+p\b", re.I), "drop"),
              (re.compile(r"\bkeep_prob\b"), "keep"),
              (re.compile(r"\bprobability\s+of\s+keeping\b", re.I), "keep"),
              (re.compile(r"\bprobability\s+of\s+(dropping|an\s+element\s+to\s+be\s+zeroed)\b", re.I), "drop"))


def docstring_dropout_rule(fn: Optional[Callable]) -> Optional[Tuple[str, str]]:
    """(``'keep'`` or ``'drop'``, the sentence) when ``fn``'s docstring states what dropout's p is, else None."""
    doc = getattr(fn, "__doc__", None) or ""
    for pattern, reading in _DOC_RULES:
        found = pattern.search(doc)
        if found:
            start = doc.rfind("\n", 0, found.start()) + 1
            end = doc.find("\n", found.end())
            sentence = " ".join(doc[start:end if end >= 0 else len(doc)].split()).lstrip("-: ")
            return reading, sentence
    return None


# ---- the report -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckRow:
    """One check: its comparison with torch (worst over the steps) and, when it failed, the likely cause; a failed
    row of a built-in kind also holds the two arrays of that worst comparison (``actual``: the user's, ``expected``:
    torch's), for a picture of where they differ (not in ``to_dict``)."""

    comparison: Comparison
    diagnosis: Optional[str] = None
    actual: Any = field(default=None, repr=False, compare=False)
    expected: Any = field(default=None, repr=False, compare=False)

    @property
    def check(self) -> str:
        return self.comparison.name

    @property
    def passed(self) -> bool:
        return self.comparison.passed


@dataclass
class CheckReport:
    """Every check of one user function against torch; ``str()`` is a table, ``passed`` the verdict."""

    kind: str
    functions: str
    dtype: str
    seed: int
    conventions: List[str]
    rows: List[CheckRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    @property
    def failures(self) -> List[CheckRow]:
        return [row for row in self.rows if not row.passed]

    def __getitem__(self, check: str) -> CheckRow:
        for row in self.rows:
            if row.check == check:
                return row
        raise KeyError(f"no check named {check!r}; the checks are {[r.check for r in self.rows]}")

    def __contains__(self, check: str) -> bool:
        return any(row.check == check for row in self.rows)

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "functions": self.functions, "dtype": self.dtype, "seed": self.seed,
                "torch": torch.__version__, "conventions": self.conventions, "passed": self.passed,
                "rows": [{"check": r.check, "max_abs": r.comparison.max_abs, "max_rel": r.comparison.max_rel,
                          "mismatches": r.comparison.mismatches, "total": r.comparison.total,
                          "problem": r.comparison.problem, "passed": r.passed, "diagnosis": r.diagnosis}
                         for r in self.rows]}

    def __str__(self) -> str:
        head = [f"{self.kind}: {self.functions} against torch {torch.__version__} ({self.dtype}, seed {self.seed})"]
        head += [f"  {note}" for note in self.conventions]
        cells = [[r.check, f"{r.comparison.max_abs:.2e}", f"{r.comparison.max_rel:.2e}",
                  f"{r.comparison.mismatches}/{r.comparison.total}",
                  "ok" if r.passed else "MISMATCH", _detail(r)] for r in self.rows]
        header = ["check", "max abs err", "max rel err", "mismatches", "verdict", "diagnosis"]
        widths = [max(len(c) for c in col) for col in zip(header, *cells)]
        line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        failed = len(self.failures)
        return "\n".join([*head, line(header), line(["-" * w for w in widths]), *map(line, cells),
                          f"{len(self.rows) - failed} passed, {failed} failed"])


def _detail(row: CheckRow) -> str:
    parts = [row.comparison.problem] if row.comparison.problem else []
    if row.diagnosis:
        parts.append(row.diagnosis)
    elif not row.passed and not row.comparison.problem:
        parts.append("no known cause recognised")
    return "; ".join(parts)


class _UserFailure(Exception):
    """A user function raised or returned something of the wrong form: the check ``check`` fails with ``message``."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


class _Rows:
    """Collects comparisons; keeps the worst per check (with its context) and diagnoses the failed ones."""

    def __init__(self, dtype: np.dtype, hints: Optional[Mapping[str, str]] = None) -> None:
        self.dtype = np.dtype(dtype)
        self.hints = dict(hints or {})  # detector name -> course hint (see reference.diagnosis: course_hints)
        self._kept: Dict[str, Tuple[Comparison, Any, Any, Dict[str, Any]]] = {}
        self._fixed: Dict[str, CheckRow] = {}
        self._order: List[str] = []

    def add(self, check: str, actual: Any, expected: Any, **context: Any) -> None:
        """Compare ``actual`` (the user's) with ``expected`` (torch's, tensor or array) under the tolerance table."""
        expected = to_numpy(expected) if isinstance(expected, torch.Tensor) else np.asarray(expected)
        if actual is None:
            result = Comparison(check, str(expected.dtype), np.inf, np.inf, expected.size, expected.size,
                                "missing (None)")
        else:
            try:
                actual = np.array(actual, copy=True)
            except (ValueError, TypeError):  # ragged or otherwise not an array
                actual = np.array(None)
            if actual.dtype.kind not in "fiub":
                result = Comparison(check, str(expected.dtype), np.inf, np.inf, expected.size, expected.size,
                                    f"not a numeric array ({type(actual).__name__} of {actual.dtype})")
            elif actual.shape != expected.shape and _kept_dims(actual.shape, expected.shape):
                # the same values with dimensions of size 1 kept (np.sum(..., keepdims=True)): compared by value
                shape = f"shape {actual.shape} instead of {expected.shape}"
                actual = actual.reshape(expected.shape)
                values = compare(check, actual, expected)
                problem = f"values right, {shape}" if values.passed else \
                    "; ".join(filter(None, (shape, values.problem)))
                result = Comparison(check, values.dtype, values.max_abs, values.max_rel, values.mismatches,
                                    values.total, problem)
            else:
                result = compare(check, actual, expected)
        previous = self._kept.get(check)
        if previous is None or _badness(result) > _badness(previous[0]):
            if check not in self._kept and check not in self._fixed:
                self._order.append(check)
            self._kept[check] = (result, actual, expected, context)

    def fixed(self, row: CheckRow) -> None:
        """A row computed by the caller (the keep rate, a user function's failure)."""
        if row.check not in self._kept and row.check not in self._fixed:
            self._order.append(row.check)
        self._kept.pop(row.check, None)
        self._fixed[row.check] = row

    def fail(self, failure: _UserFailure) -> None:
        self.fixed(CheckRow(Comparison(failure.check, str(self.dtype), np.inf, np.inf, 1, 1, str(failure))))

    def rows(self) -> List[CheckRow]:
        out = []
        for check in self._order:
            if check in self._fixed:
                out.append(self._fixed[check])
                continue
            result, actual, expected, context = self._kept[check]
            if result.passed:
                out.append(CheckRow(result))
                continue
            cause = None
            if actual is not None and np.asarray(actual).dtype.kind in "fiub":
                if self.hints and "course_hints" not in context:
                    context = {**context, "course_hints": self.hints}
                cause = diagnose(check, actual, expected, **context)
            out.append(CheckRow(result, cause, actual, expected))
        return out


def _kept_dims(actual: Tuple[int, ...], expected: Tuple[int, ...]) -> bool:
    """Whether ``actual`` is ``expected`` with dimensions of size 1 added or dropped ((1, D) for (D,), (1, C, 1, 1)
    for (C,)): the same values in another shape."""
    return int(np.prod(actual)) == int(np.prod(expected)) and \
        [d for d in actual if d != 1] == [d for d in expected if d != 1]


def _badness(c: Comparison) -> Tuple[int, float]:
    return (c.mismatches + (1 if c.problem else 0), c.max_rel)


# ---- calling user code ----------------------------------------------------------------------------------------------
#: the call each user function is checked with: id(function) -> "name(params)" (set by check_layer/check_update)
_SIGNATURES: contextvars.ContextVar[Dict[int, str]] = contextvars.ContextVar("handnn_signatures", default={})

#: the parameters of each built-in kind's functions as the course names them: (forward, backward)
KIND_SIGNATURES: Dict[str, Tuple[str, Optional[str]]] = {
    "affine": ("x, w, b", "dout, cache"), "relu": ("x", "dout, cache"),
    "batchnorm": ("x, gamma, beta, bn_param", "dout, cache"),
    "spatial_batchnorm": ("x, gamma, beta, bn_param", "dout, cache"),
    "layernorm": ("x, gamma, beta, ln_param", "dout, cache"), "dropout": ("x, dropout_param", "dout, cache"),
    "conv": ("x, w, b, conv_param", "dout, cache"), "max_pool": ("x, pool_param", "dout, cache"),
    "spatial_groupnorm": ("x, gamma, beta, G, gn_param", "dout, cache"),
    "rnn_step": ("x, prev_h, Wx, Wh, b", "dnext_h, cache"), "rnn": ("x, h0, Wx, Wh, b", "dh, cache"),
    "word_embedding": ("x, W", "dout, cache"), "temporal_affine": ("x, w, b", "dout, cache"),
    "temporal_softmax_loss": ("x, y, mask", None),
    "lstm_step": ("x, prev_h, prev_c, Wx, Wh, b", "dnext_h, dnext_c, cache"),
    "lstm": ("x, h0, Wx, Wh, b", "dh, cache"),
    "sgd": ("w, dw, config", None), "sgd_momentum": ("w, dw, config", None), "rmsprop": ("w, dw, config", None),
    "adam": ("w, dw, config", None),
}


def _expect_signatures(kind: str, forward: Optional[Callable], backward: Optional[Callable] = None
                       ) -> contextvars.Token:
    """Tell :func:`_call` the parameters ``forward``/``backward`` are called with (reset with the token)."""
    params = KIND_SIGNATURES.get(kind, (None, None))
    known = {id(fn): f"{_name(fn)}({names})" for fn, names in zip((forward, backward), params)
             if fn is not None and names is not None}
    return _SIGNATURES.set(known)


def _signature_problem(fn: Callable, args: Sequence[Any], expected: Optional[str]) -> Optional[str]:
    """"signature: expected f(x, gamma, beta, bn_param), got f(x, gamma)" when ``fn`` cannot take ``args``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or an object without a signature: let the call tell
        return None
    try:
        signature.bind(*args)
    except TypeError as exc:
        name = _name(fn)
        wanted = expected or _SIGNATURES.get().get(id(fn)) or f"{name}(<{len(args)} positional arguments>)"
        if "(" in wanted and not wanted.startswith(name + "("):
            wanted = name + wanted[wanted.index("("):]
        return f"signature: expected {wanted}, got {name}{signature} ({exc})"
    return None


#: errors from code written for Python 2 or for NumPy before 2.x: (exception type, message pattern, advice)
_ALIASES = {"float": "float (or np.float64)", "int": "int (or np.int64)", "bool": "bool (or np.bool_)",
            "object": "object", "str": "str", "complex": "complex (or np.complex128)", "long": "int",
            "unicode": "str"}
_REMOVED = {"product": "np.prod", "cumproduct": "np.cumprod", "alltrue": "np.all", "sometrue": "np.any",
            "asscalar": "a.item()", "in1d": "np.isin", "trapz": "np.trapezoid", "rank": "np.ndim",
            "msort": "np.sort(a, axis=0)", "round_": "np.round", "float_": "np.float64", "NaN": "np.nan",
            "Inf": "np.inf", "asfarray": "np.asarray(a, dtype=float)", "row_stack": "np.vstack"}
_PYTHON2_NAMES = {"xrange": "Python 2's xrange: use range", "raw_input": "Python 2's raw_input: use input",
                  "unicode": "Python 2's unicode: use str", "basestring": "Python 2's basestring: use str",
                  "long": "Python 2's long: use int", "unichr": "Python 2's unichr: use chr",
                  "reduce": "Python 2's builtin reduce: from functools import reduce",
                  "cPickle": "Python 2's cPickle: import pickle"}
_FLOAT_INDEX = "Python 3's / is float division: use // for indices, sizes and ranges (H // stride, N // 2)"
_INCOMPATIBLE: Tuple[Tuple[type, "re.Pattern[str]", Callable[["re.Match[str]"], str]], ...] = (
    (TypeError, re.compile(r"unexpected keyword argument 'newshape'"),
     lambda m: "np.reshape(..., newshape=...) is gone in NumPy 2.1+: use shape=... (or pass the shape "
               "positionally)"),
    (AttributeError, re.compile(r"module 'numpy' has no attribute '(\w+)'|`np\.(\w+)` was removed"),
     lambda m: _numpy_name_advice(m.group(1) or m.group(2))),
    (NameError, re.compile(r"name '(xrange|raw_input|unicode|basestring|long|unichr|reduce|cPickle)' is not "
                           r"defined"),
     lambda m: _PYTHON2_NAMES[m.group(1)]),
    (AttributeError, re.compile(r"'dict' object has no attribute '(iteritems|itervalues|iterkeys|has_key)'"),
     lambda m: f"Python 2's dict.{m.group(1)}: use " + (".items()/.values()/.keys()" if m.group(1) != "has_key"
                                                         else "key in d")),
    (TypeError, re.compile(r"slice indices must be integers"), lambda m: _FLOAT_INDEX),
    (IndexError, re.compile(r"only integers, slices"), lambda m: _FLOAT_INDEX),
    (TypeError, re.compile(r"'float' object cannot be interpreted as an integer"), lambda m: _FLOAT_INDEX),
)


def _numpy_name_advice(name: str) -> str:
    if name in _ALIASES:
        return f"np.{name} was an alias of the builtin, removed in NumPy 1.24: use {_ALIASES[name]}"
    if name in _REMOVED:
        return f"np.{name} was removed in NumPy 2: use {_REMOVED[name]}"
    return f"np.{name} does not exist in NumPy {np.__version__}: a name from an older NumPy"


def incompatibility(exc: BaseException) -> Optional[str]:
    """The Python 2 / old-NumPy habit behind ``exc`` (np.float, np.product, newshape=, xrange, / as an index), as
    advice, or None."""
    text = str(exc)
    for kind, pattern, advice in _INCOMPATIBLE:
        if isinstance(exc, kind):
            found = pattern.search(text)
            if found:
                return advice(found)
    return None


def _call(check: str, fn: Callable, *args: Any, expected: Optional[str] = None) -> Any:
    """``fn(*args)``; a :class:`_UserFailure` of ``check`` when the signature does not take ``args`` ("signature:
    expected f(x, gamma, beta, bn_param), got f(x, gamma)"; ``expected`` overrides the signature registered for
    ``fn``) or when ``fn`` raises (naming a Python 2 / NumPy 2 incompatibility when one explains it)."""
    problem = _signature_problem(fn, args, expected)
    if problem:
        raise _UserFailure(check, problem)
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 — any error in user code becomes a failed check, not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        advice = incompatibility(exc)
        message = f"{_name(fn) if fn is not None else 'function'} raised {type(exc).__name__}: {first}"
        raise _UserFailure(check, message + (f" — {advice}" if advice else "")) from exc


def _unpack(check: str, value: Any, count: int, what: str) -> Tuple[Any, ...]:
    """``value`` as a tuple of ``count`` items, else a failure naming what was expected."""
    if isinstance(value, tuple) and len(value) == count:
        return value
    got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
    raise _UserFailure(check, f"expected {what}, got {got}")


def _leaf(array: np.ndarray) -> torch.Tensor:
    return to_tensor(array).requires_grad_(True)


def _grad(t: torch.Tensor) -> np.ndarray:
    return to_numpy(t.grad) if t.grad is not None else np.zeros(tuple(t.shape), to_numpy(t.detach()).dtype)


@dataclass(frozen=True)
class _Settings:
    """What one check run needs: generator, dtype, steps, and the conventions mapped to torch's values."""

    rng: np.random.Generator
    dtype: np.dtype
    steps: int
    eps: float
    user_momentum: float
    torch_momentum: float
    user_p: float
    torch_p: float
    biased_var: bool = False  # the expected running variance is the biased one (a course profile's rule)
    p_is_keep_prob: bool = False
    hints: Mapping[str, str] = field(default_factory=dict)  # detector name -> course hint

    @property
    def tdtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]


# ---- layers ---------------------------------------------------------------------------------------------------------
def _run_affine(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    n, d_shape, m = 6, (3, 5), 7  # x (6, 3, 5) is flattened to (6, 15); w is (15, 7) in CS231n's layout
    d = int(np.prod(d_shape))
    w = s.rng.normal(0.0, 1.0 / np.sqrt(d), (d, m)).astype(s.dtype)
    b = s.rng.normal(size=m).astype(s.dtype)
    for _ in range(s.steps):
        x = s.rng.normal(size=(n, *d_shape)).astype(s.dtype)
        dout = s.rng.normal(size=(n, m)).astype(s.dtype)
        out, cache = _unpack("out", _call("out", forward, x.copy(), w.copy(), b.copy()), 2, "(out, cache)")
        xt, wt, bt = _leaf(x), _leaf(w), _leaf(b)
        yt = F.linear(xt.reshape(n, d), wt.T, bt)
        yt.backward(to_tensor(dout))
        rows.add("out", out, yt, kind="affine", n=n)
        if backward is not None:
            dx, dw, db = _unpack("dx", _call("dx", backward, dout.copy(), cache), 3, "(dx, dw, db)")
            for name, ours, leaf in (("dx", dx, xt), ("dw", dw, wt), ("db", db, bt)):
                rows.add(name, ours, _grad(leaf), kind="affine", n=n)


def _run_relu(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    for _ in range(s.steps):
        x = s.rng.normal(size=(8, 9)).astype(s.dtype)
        x.flat[::5] = 0  # exact zeros at the kink: torch's gradient there is 0 (x > 0, not x >= 0)
        dout = s.rng.normal(size=x.shape).astype(s.dtype)
        out, cache = _unpack("out", _call("out", forward, x.copy()), 2, "(out, cache)")
        xt = _leaf(x)
        yt = torch.relu(xt)
        yt.backward(to_tensor(dout))
        rows.add("out", out, yt, kind="relu", x=x)
        if backward is not None:
            rows.add("dx", _call("dx", backward, dout.copy(), cache), _grad(xt), kind="relu", n=x.shape[0], x=x,
                     dout=dout)


def _norm_step(forward: Callable, backward: Optional[Callable], rows: _Rows, x: np.ndarray,
               dout: np.ndarray, gamma: np.ndarray, beta: np.ndarray, param: Dict[str, Any],
               torch_forward: Callable[..., torch.Tensor], context: Dict[str, Any]) -> None:
    """One training step of a normalisation layer: out, dx, dgamma, dbeta against torch."""
    out, cache = _unpack("out", _call("out", forward, x.copy(), gamma.copy(), beta.copy(), param), 2,
                         "(out, cache)")
    xt, wt, bt = _leaf(x), _leaf(gamma), _leaf(beta)
    yt = torch_forward(xt, wt, bt)
    yt.backward(to_tensor(dout))
    rows.add("out", out, yt, x=x, **context)
    if backward is not None:
        grads = _unpack("dx", _call("dx", backward, dout.copy(), cache), 3, "(dx, dgamma, dbeta)")
        for check, ours, leaf in zip(("dx", "dgamma", "dbeta"), grads, (xt, wt, bt)):
            rows.add(check, ours, _grad(leaf), x=x, dout=dout, **context)


def _stat(param: Dict[str, Any], key: str) -> Optional[np.ndarray]:
    value = param.get(key)
    return None if value is None else np.array(value, copy=True)


def _run_batchnorm(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings,
                   spatial: bool = False) -> None:
    shape = (4, 3, 5, 2) if spatial else (12, 5)  # N, C(, H, W): all different
    c = shape[1]
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    gamma = s.rng.normal(1.0, 0.5, c).astype(s.dtype)
    beta = s.rng.normal(0.0, 1.0, c).astype(s.dtype)
    loc, scale = s.rng.uniform(-2.0, 2.0, per_channel), s.rng.uniform(0.5, 3.0, per_channel)
    bn_param: Dict[str, Any] = {"mode": "train", "eps": s.eps, "momentum": s.user_momentum,
                                "running_mean": np.zeros(c, s.dtype), "running_var": np.ones(c, s.dtype)}
    rm, rv = torch.zeros(c, dtype=s.tdtype), torch.ones(c, dtype=s.tdtype)
    rv_biased = torch.ones(c, dtype=s.tdtype)  # the course's running variance (profile: biased), torch's update form
    context = {"kind": "batchnorm", "gamma": gamma, "beta": beta, "eps": s.eps}
    n = int(np.prod(shape)) // c
    axes = (0, *range(2, len(shape)))
    batches: List[np.ndarray] = []
    for _ in range(s.steps):
        x = (s.rng.standard_normal(shape) * scale + loc).astype(s.dtype)
        batches.append(x)
        dout = s.rng.standard_normal(shape).astype(s.dtype)
        train = lambda xt, wt, bt: F.batch_norm(xt, rm, rv, wt, bt, training=True,  # noqa: E731
                                                momentum=s.torch_momentum, eps=s.eps)
        _norm_step(forward, backward, rows, x, dout, gamma, beta, bn_param, train, {**context, "n": n})
        m = s.torch_momentum
        rv_biased = (1 - m) * rv_biased + m * to_tensor(x).var(dim=axes, unbiased=False)
        stats = {**context, "batches": list(batches), "momentum": m, "n": n, "unbiased_var": not s.biased_var}
        rows.add("running_mean", _stat(bn_param, "running_mean"), rm, **stats)
        rows.add("running_var", _stat(bn_param, "running_var"), rv_biased if s.biased_var else rv, **stats)
    if s.biased_var:
        rv = rv_biased  # test mode normalises with the course's running variance
    # test mode: torch with its own running statistics, then torch with the user's (the formula alone)
    x = (s.rng.standard_normal(shape) * scale + loc).astype(s.dtype)
    user_mean, user_var = _stat(bn_param, "running_mean"), _stat(bn_param, "running_var")
    bn_param["mode"] = "test"
    out, _ = _unpack("eval out", _call("eval out", forward, x.copy(), gamma.copy(), beta.copy(), bn_param), 2,
                     "(out, cache)")
    w, b = to_tensor(gamma), to_tensor(beta)
    expected = F.batch_norm(to_tensor(x), rm, rv, w, b, training=False, eps=s.eps)
    eval_context = {**context, "x": x, "running_mean": user_mean, "running_var": user_var, "n": n}
    rows.add("eval out", out, expected, **eval_context)
    if all(v is not None and v.shape == (c,) and v.dtype.kind == "f" for v in (user_mean, user_var)):
        expected = F.batch_norm(to_tensor(x), to_tensor(user_mean.astype(s.dtype)),
                                to_tensor(user_var.astype(s.dtype)), w, b, training=False, eps=s.eps)
        rows.add("eval out (your running stats)", out, expected, **eval_context)


def _run_spatial_batchnorm(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    _run_batchnorm(forward, backward, rows, s, spatial=True)


def _run_layernorm(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    n, d = 9, 13
    gamma = s.rng.normal(1.0, 0.5, d).astype(s.dtype)
    beta = s.rng.normal(0.0, 1.0, d).astype(s.dtype)
    context = {"kind": "layernorm", "gamma": gamma, "beta": beta, "eps": s.eps, "n": n}
    for _ in range(s.steps):
        x = (s.rng.standard_normal((n, d)) * s.rng.uniform(0.5, 3.0, (n, 1)) + s.rng.uniform(-2, 2, (n, 1)))
        x = x.astype(s.dtype)
        dout = s.rng.standard_normal((n, d)).astype(s.dtype)
        layer = lambda xt, wt, bt: F.layer_norm(xt, (d,), wt, bt, eps=s.eps)  # noqa: E731
        _norm_step(forward, backward, rows, x, dout, gamma, beta, {"eps": s.eps}, layer, context)


def _run_dropout(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    shape = (40, 50)
    p = s.torch_p
    param: Dict[str, Any] = {"mode": "train", "p": s.user_p}
    kept = total = 0
    masks: List[np.ndarray] = []
    for _ in range(s.steps):
        x = s.rng.standard_normal(shape).astype(s.dtype)
        x[x == 0] = 1  # no zero inputs: a zero in the output then means "dropped"
        dout = s.rng.standard_normal(shape).astype(s.dtype)
        param["seed"] = int(s.rng.integers(2 ** 31 - 1))
        out, cache = _unpack("out", _call("out", forward, x.copy(), param), 2, "(out, cache)")
        out_array = np.asarray(out) if out is not None else None
        if out_array is None or out_array.shape != shape:
            rows.add("out", out, x)  # fails with the shape problem; the mask cannot be recovered
            continue
        # the user's mask, recovered from its output (x has no zeros): torch applies the same one
        mask = out_array != 0
        masks.append(mask)
        kept, total = kept + int(mask.sum()), total + mask.size
        xt = _leaf(x)
        noise = torch.from_numpy(mask).to(s.tdtype)
        yt = xt * (noise.div_(1 - p) if p < 1 else noise.mul_(0))  # torch's dropout arithmetic for a given mask
        yt.backward(to_tensor(dout))
        context = {"kind": "dropout", "p": p, "mask": mask, "x": x, "dout": dout}
        rows.add("out", out, yt, **context)
        if backward is not None:
            rows.add("dx", _call("dx", backward, dout.copy(), cache), _grad(xt), **context)
    if total:
        rows.fixed(_keep_rate_row(kept, total, p, s))
        rows.fixed(_mask_row(masks, 1 - p))
    param["mode"] = "test"
    x = s.rng.standard_normal(shape).astype(s.dtype)
    dout = s.rng.standard_normal(shape).astype(s.dtype)
    out, cache = _unpack("eval out", _call("eval out", forward, x.copy(), param), 2, "(out, cache)")
    xt = _leaf(x)
    yt = F.dropout(xt, p, training=False)
    yt.backward(to_tensor(dout))
    context = {"kind": "dropout", "p": p, "x": x, "dout": dout}
    rows.add("eval out", out, yt, **context)
    if backward is not None:
        rows.add("eval dx", _call("eval dx", backward, dout.copy(), cache), _grad(xt), **context)


def _run_conv(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    for n, c, h, w_, f, hh, ww, stride, pad in CONV_GEOMETRIES:
        x = s.rng.standard_normal((n, c, h, w_)).astype(s.dtype)
        w = s.rng.normal(0.0, 1.0 / np.sqrt(c * hh * ww), (f, c, hh, ww)).astype(s.dtype)
        b = s.rng.normal(size=f).astype(s.dtype)
        conv_param = {"stride": stride, "pad": pad}
        out, cache = _unpack("out", _call("out", forward, x.copy(), w.copy(), b.copy(), dict(conv_param)), 2,
                             "(out, cache)")
        xt, wt, bt = _leaf(x), _leaf(w), _leaf(b)
        yt = F.conv2d(xt, wt, bt, stride=stride, padding=pad)
        dout = s.rng.standard_normal(tuple(yt.shape)).astype(s.dtype)
        yt.backward(to_tensor(dout))
        context = {"kind": "conv", "x": x, "w": w, "b": b, "dout": dout, "n": n, **conv_param}
        rows.add("out", out, yt, **context)
        if backward is not None:
            grads = _unpack("dx", _call("dx", backward, dout.copy(), cache), 3, "(dx, dw, db)")
            for check, ours, leaf in zip(("dx", "dw", "db"), grads, (xt, wt, bt)):
                rows.add(check, ours, _grad(leaf), **context)


def _run_max_pool(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    for n, c, h, w, ph, pw, stride, ties in POOL_GEOMETRIES:
        shape = (n, c, h, w)
        x = (s.rng.integers(0, 3, shape) if ties else s.rng.standard_normal(shape)).astype(s.dtype)
        pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
        out, cache = _unpack("out", _call("out", forward, x.copy(), dict(pool_param)), 2, "(out, cache)")
        xt = _leaf(x)
        yt = F.max_pool2d(xt, kernel_size=(ph, pw), stride=stride)
        dout = s.rng.standard_normal(tuple(yt.shape)).astype(s.dtype)
        yt.backward(to_tensor(dout))
        context = {"kind": "max_pool", "x": x, "dout": dout, **pool_param}
        rows.add("out", out, yt, **context)
        if backward is not None:
            rows.add("dx", _call("dx", backward, dout.copy(), cache), _grad(xt), **context)


def _course_shape(expected: np.ndarray, ours: Any) -> np.ndarray:
    """torch's per-channel gradient (1, C, 1, 1) as (C,) when that is the shape the user's code returned."""
    shape = np.shape(ours) if isinstance(ours, np.ndarray) else None
    return expected.reshape(shape) if shape == (expected.size,) else expected


def _run_spatial_groupnorm(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    for n, c, h, w, groups in GROUPNORM_GEOMETRIES:
        per = (n, c, 1, 1)  # a different mean and scale per (sample, channel): groups, channels, samples differ
        x = (s.rng.standard_normal((n, c, h, w)) * s.rng.uniform(0.5, 2.0, per) + s.rng.normal(0.0, 1.0, per))
        x = x.astype(s.dtype)
        gamma = s.rng.normal(1.0, 0.5, (1, c, 1, 1)).astype(s.dtype)
        beta = s.rng.normal(0.0, 1.0, (1, c, 1, 1)).astype(s.dtype)
        out, cache = _unpack("out", _call("out", forward, x.copy(), gamma.copy(), beta.copy(), groups,
                                          {"eps": s.eps}), 2, "(out, cache)")
        xt, wt, bt = _leaf(x), _leaf(gamma), _leaf(beta)
        yt = F.group_norm(xt, groups, wt.reshape(c), bt.reshape(c), eps=s.eps)
        dout = s.rng.standard_normal((n, c, h, w)).astype(s.dtype)
        yt.backward(to_tensor(dout))
        context = {"kind": "spatial_groupnorm", "x": x, "dout": dout, "gamma": gamma, "beta": beta,
                   "eps": s.eps, "G": groups, "n": n}
        rows.add("out", out, yt, **context)
        if backward is not None:
            grads = _unpack("dx", _call("dx", backward, dout.copy(), cache), 3, "(dx, dgamma, dbeta)")
            for check, ours, leaf in zip(("dx", "dgamma", "dbeta"), grads, (xt, wt, bt)):
                expected = _grad(leaf)
                rows.add(check, ours, expected if check == "dx" else _course_shape(expected, ours), **context)


# ---- recurrent layers (CS231n assignment 3, rnn_layers.py) ---------------------------------------------------------
def _torch_gate_order(hidden: int) -> torch.Tensor:
    """Columns of a CS231n (·, 4H) weight (gates i, f, o, g) in torch's order i, f, g, o."""
    return torch.from_numpy(np.r_[0:2 * hidden, 3 * hidden:4 * hidden, 2 * hidden:3 * hidden])


def _torch_recurrent(cell: str, step: bool, xt: torch.Tensor, h0t: torch.Tensor, c0t: Optional[torch.Tensor],
                     wxt: torch.Tensor, wht: torch.Tensor, bt: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """torch's RNNCell/RNN (tanh) or LSTMCell/LSTM run with CS231n's weights: weight_ih = Wx.T, weight_hh = Wh.T,
    bias_ih = b, bias_hh = 0 (the LSTM's columns reordered to torch's gates). Autograd reaches the leaves.
    Returns (next_h,) or (next_h, next_c) for a step, (h,) for a sequence (N, T, H)."""
    d, hidden = xt.shape[-1], h0t.shape[1]
    order = _torch_gate_order(hidden) if cell == "lstm" else torch.arange(hidden)
    weights = {"weight_ih": wxt[:, order].T, "weight_hh": wht[:, order].T, "bias_ih": bt[order],
               "bias_hh": torch.zeros(len(order), dtype=bt.dtype)}
    lstm = cell == "lstm"
    if step:  # modules on the meta device: no parameters allocated, torch's random stream untouched
        module = (torch.nn.LSTMCell if lstm else torch.nn.RNNCell)(d, hidden, device="meta")
        out = torch.func.functional_call(module, weights, (xt, (h0t, c0t) if lstm else h0t))
        return tuple(out) if lstm else (out,)
    module = (torch.nn.LSTM if lstm else torch.nn.RNN)(d, hidden, batch_first=True, device="meta")
    weights = {f"{name}_l0": value for name, value in weights.items()}
    out, _ = torch.func.functional_call(module, weights, (xt, (h0t[None], c0t[None]) if lstm else h0t[None]))
    return (out,)


def _run_recurrent(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings, cell: str,
                   step: bool) -> None:
    n, steps, d, hidden = RNN_SHAPE
    lstm = cell == "lstm"
    width = 4 * hidden if lstm else hidden
    kind = f"{cell}_step" if step else cell
    out_check = "next_h" if step else "h"
    for _ in range(s.steps):
        x = s.rng.standard_normal((n, d) if step else (n, steps, d)).astype(s.dtype)
        h0 = s.rng.standard_normal((n, hidden)).astype(s.dtype)
        wx = s.rng.normal(0.0, 1.0 / np.sqrt(d), (d, width)).astype(s.dtype)
        wh = s.rng.normal(0.0, 1.0 / np.sqrt(hidden), (hidden, width)).astype(s.dtype)
        b = s.rng.normal(0.0, 0.5, width).astype(s.dtype)
        dout = s.rng.standard_normal((n, hidden) if step else (n, steps, hidden)).astype(s.dtype)
        with_c = lstm and step  # lstm_step_forward takes prev_c and returns next_c; lstm_forward starts at c0 = 0
        c0 = s.rng.standard_normal((n, hidden)).astype(s.dtype) if with_c else np.zeros((n, hidden), s.dtype)
        dc = s.rng.standard_normal((n, hidden)).astype(s.dtype) if with_c else None
        params = (wx.copy(), wh.copy(), b.copy())
        if with_c:
            next_h, next_c, cache = _unpack(out_check, _call(out_check, forward, x.copy(), h0.copy(), c0.copy(),
                                                             *params), 3, "(next_h, next_c, cache)")
        else:
            next_h, cache = _unpack(out_check, _call(out_check, forward, x.copy(), h0.copy(), *params), 2,
                                    f"({out_check}, cache)")
        xt, h0t, wxt, wht, bt = _leaf(x), _leaf(h0), _leaf(wx), _leaf(wh), _leaf(b)
        c0t = _leaf(c0) if with_c else to_tensor(c0)
        outs = _torch_recurrent(cell, step, xt, h0t, c0t, wxt, wht, bt)
        uppers = (to_tensor(dout), to_tensor(dc)) if with_c else (to_tensor(dout),)
        torch.autograd.backward(outs, uppers)
        context = {"kind": kind, "x": x, "h0": h0, "c0": c0, "Wx": wx, "Wh": wh, "b": b, "dout": dout, "dc": dc}
        rows.add(out_check, next_h, outs[0], **context)
        if with_c:
            rows.add("next_c", next_c, outs[1], **context)
        if backward is None:
            continue
        names = ["dx", "dprev_h" if step else "dh0", "dWx", "dWh", "db"]
        leaves = [xt, h0t, wxt, wht, bt]
        if with_c:
            names.insert(2, "dprev_c")
            leaves.insert(2, c0t)
            result = _call("dx", backward, dout.copy(), dc.copy(), cache)
        else:
            result = _call("dx", backward, dout.copy(), cache)
        grads = _unpack("dx", result, len(names), f"({', '.join(names)})")
        for check, ours, leaf in zip(names, grads, leaves):
            rows.add(check, ours, _grad(leaf), **context)


def _run_rnn_step(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    _run_recurrent(forward, backward, rows, s, "rnn", step=True)


def _run_rnn(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    _run_recurrent(forward, backward, rows, s, "rnn", step=False)


def _run_lstm_step(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    _run_recurrent(forward, backward, rows, s, "lstm", step=True)


def _run_lstm(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    _run_recurrent(forward, backward, rows, s, "lstm", step=False)


def _run_word_embedding(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    n, steps, vocab, d = EMBEDDING_SHAPE
    w = s.rng.standard_normal((vocab, d)).astype(s.dtype)
    for _ in range(s.steps):
        # N·T words drawn from V − 1: words repeat (pigeonhole) and the last word never occurs (its dW row is 0)
        x = s.rng.integers(0, vocab - 1, (n, steps))
        out, cache = _unpack("out", _call("out", forward, x.copy(), w.copy()), 2, "(out, cache)")
        wt = _leaf(w)
        yt = F.embedding(torch.from_numpy(x), wt)
        dout = s.rng.standard_normal((n, steps, d)).astype(s.dtype)
        yt.backward(to_tensor(dout))
        context = {"kind": "word_embedding", "x": x, "dout": dout}
        rows.add("out", out, yt, **context)
        if backward is not None:
            rows.add("dW", _call("dW", backward, dout.copy(), cache), _grad(wt), **context)


def _run_temporal_affine(forward: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    n, steps, d, m = TEMPORAL_AFFINE_SHAPE
    w = s.rng.normal(0.0, 1.0 / np.sqrt(d), (d, m)).astype(s.dtype)
    b = s.rng.normal(size=m).astype(s.dtype)
    for _ in range(s.steps):
        x = s.rng.standard_normal((n, steps, d)).astype(s.dtype)
        out, cache = _unpack("out", _call("out", forward, x.copy(), w.copy(), b.copy()), 2, "(out, cache)")
        xt, wt, bt = _leaf(x), _leaf(w), _leaf(b)
        yt = F.linear(xt, wt.T, bt)
        dout = s.rng.standard_normal((n, steps, m)).astype(s.dtype)
        yt.backward(to_tensor(dout))
        context = {"kind": "temporal_affine", "x": x, "dout": dout}
        rows.add("out", out, yt, **context)
        if backward is not None:
            grads = _unpack("dx", _call("dx", backward, dout.copy(), cache), 3, "(dx, dw, db)")
            for check, ours, leaf in zip(("dx", "dw", "db"), grads, (xt, wt, bt)):
                rows.add(check, ours, _grad(leaf), **context)


def _run_temporal_softmax_loss(loss_fn: Callable, backward: Optional[Callable], rows: _Rows, s: _Settings) -> None:
    n, steps, vocab = SOFTMAX_SHAPE
    for _ in range(s.steps):
        x = (2.0 * s.rng.standard_normal((n, steps, vocab))).astype(s.dtype)
        # large logits at two positions (softmax is unchanged by a shift): exp without the max shift overflows
        x[0, 1] += 1000
        x[-1, 0] -= 1000
        y = s.rng.integers(0, vocab, (n, steps))
        mask = s.rng.random((n, steps)) < 0.6
        mask[0, 0], mask[-1, -1] = True, False  # both kinds of position; the count is neither N, T nor N·T:
        while int(mask.sum()) in (0, n, steps, n * steps):  # dividing by it is told apart from each
            mask[s.rng.integers(n), s.rng.integers(steps)] ^= True
        loss, dx = _unpack("loss", _call("loss", loss_fn, x.copy(), y.copy(), mask.copy()), 2, "(loss, dx)")
        if isinstance(loss, (float, np.floating)) and not isinstance(loss, np.dtype(s.dtype).type):
            loss = np.asarray(loss).astype(s.dtype)  # a scalar's precision is not the loss's business
        xt = _leaf(x)
        keep = torch.from_numpy(mask.reshape(-1))
        lt = F.cross_entropy(xt.reshape(-1, vocab)[keep], torch.from_numpy(y.reshape(-1))[keep],
                             reduction="sum") / n
        lt.backward()
        context = {"kind": "temporal_softmax_loss", "x": x, "y": y, "mask": mask}
        rows.add("loss", loss, lt, **context)
        rows.add("dx", dx, _grad(xt), **context)


def _keep_rate_row(kept: int, total: int, p: float, s: Optional[_Settings] = None) -> CheckRow:
    """The fraction kept against 1 − p: a mismatch beyond KEEP_RATE_SIGMAS binomial standard deviations (with the
    course hint of ``s`` when p was read the other way)."""
    q = 1.0 - p
    rate = kept / total
    error = abs(rate - q)
    bound = KEEP_RATE_SIGMAS * np.sqrt(q * (1 - q) / total)
    bad = error > bound
    row = Comparison("keep rate", "-", error, error / q if q else np.inf, int(bad), 1)
    cause = keep_rate_cause(kept, total, p, KEEP_RATE_SIGMAS, p_is_keep_prob=bool(s and s.p_is_keep_prob)) \
        if bad else None
    hint = s.hints.get("dropout_over_p") if s is not None else None
    if cause and hint and "probability" in cause and "nothing" not in cause:
        cause = f"{cause}; {hint}"
    return CheckRow(row, cause)


def _mask_row(masks: List[np.ndarray], keep: float) -> CheckRow:
    """Whether the training masks are drawn per element: rows, columns and calls must not repeat far above chance
    (:func:`reference.diagnosis.shared_mask_cause`)."""
    cause = shared_mask_cause(masks, keep)
    return CheckRow(Comparison("mask independence", "-", 0.0, 0.0, int(cause is not None), 1,
                               "masks repeat" if cause else ""), cause)


_LAYER_RUNNERS: Dict[str, Callable[..., None]] = {
    "affine": _run_affine, "relu": _run_relu, "batchnorm": _run_batchnorm,
    "spatial_batchnorm": _run_spatial_batchnorm, "layernorm": _run_layernorm, "dropout": _run_dropout,
    "conv": _run_conv, "max_pool": _run_max_pool, "spatial_groupnorm": _run_spatial_groupnorm,
    "rnn_step": _run_rnn_step, "rnn": _run_rnn, "word_embedding": _run_word_embedding,
    "temporal_affine": _run_temporal_affine, "temporal_softmax_loss": _run_temporal_softmax_loss,
    "lstm_step": _run_lstm_step, "lstm": _run_lstm,
}


def _check_kind(kind: str, kinds: Sequence[str]) -> str:
    if kind not in kinds:
        raise ValueError(f"kind must be one of {list(kinds)}, but got {kind!r}")
    return kind


def _check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in TORCH_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, but got {dt}")
    return dt


def _name(fn: Optional[Callable]) -> str:
    return getattr(fn, "__name__", repr(fn)) if fn is not None else "-"


def _sequence_conventions(kind: str, steps: int) -> List[str]:
    """What the check of an assignment-3 kind assumes and what torch computes, for the report's head."""
    repeats = f"{steps} runs on fresh random inputs"
    if kind in ("rnn_step", "rnn"):
        module = "nn.RNNCell" if kind == "rnn_step" else "nn.RNN(batch_first=True)"
        return [f"CS231n layout Wx (D, H), Wh (H, H), b (H,), tanh: torch {module} with weight_ih = Wx.T, "
                f"weight_hh = Wh.T, bias_ih = b, bias_hh = 0; (N, T, D, H) = {RNN_SHAPE}; {repeats}"]
    if kind in ("lstm_step", "lstm"):
        module = "nn.LSTMCell" if kind == "lstm_step" else "nn.LSTM(batch_first=True)"
        start = "" if kind == "lstm_step" else ", c0 = 0"
        return [f"CS231n gates i, f, o, g in Wx (D, 4H), Wh (H, 4H), b (4H,){start}: torch {module} (gates i, f, g, "
                f"o) with the columns reordered, weight_ih = Wx[:, i f g o].T, bias_hh = 0; (N, T, D, H) = "
                f"{RNN_SHAPE}; {repeats}"]
    if kind == "word_embedding":
        return [f"torch F.embedding; x (N, T) = {EMBEDDING_SHAPE[:2]} int64 words of V = {EMBEDDING_SHAPE[2]}, "
                f"with repeats, one word never used; {repeats}"]
    if kind == "temporal_affine":
        return [f"torch F.linear(x, w.T, b) on x (N, T, D), w (D, M): (N, T, D, M) = {TEMPORAL_AFFINE_SHAPE}; "
                f"{repeats}"]
    if kind == "temporal_softmax_loss":
        return ["CS231n: loss = Σ over the positions with mask True of −log softmax(x)[y], divided by N: torch "
                "F.cross_entropy(reduction='sum') on the masked positions / N; dx by autograd; a Python float "
                f"loss is compared in the input's dtype; (N, T, V) = {SOFTMAX_SHAPE}; {repeats}"]
    return []


def check_layer(kind: str, forward: Callable, backward: Optional[Callable] = None, *,
                momentum_style: Optional[str] = None, p_is_keep_prob: Optional[bool] = None,
                dtype: Any = np.float64, seed: int = 0, steps: int = 3, eps: float = 1e-5,
                momentum: Optional[float] = None, p: Optional[float] = None, course: str = "torch") -> CheckReport:
    """Check a CS231n-style layer (``forward`` and optionally ``backward``) against torch.

    Parameters
    ----------
    kind : {'affine', 'relu', 'batchnorm', 'spatial_batchnorm', 'layernorm', 'dropout', 'conv', 'max_pool',
            'spatial_groupnorm', 'rnn_step', 'rnn', 'word_embedding', 'temporal_affine', 'temporal_softmax_loss',
            'lstm_step', 'lstm'}
        Which layer the functions implement (signatures in the module docstring).
    forward, backward : callable
        ``forward(...) -> (out, cache)`` (lstm_step: ``(next_h, next_c, cache)``); ``backward(dout, cache)``
        returns the gradients (dx alone for relu, dropout and max_pool, dW alone for word_embedding;
        lstm_step: ``backward(dnext_h, dnext_c, cache)``). Without ``backward`` only the forward checks run.
        temporal_softmax_loss has no backward: ``forward(x, y, mask) -> (loss, dx)``.
    momentum_style : {'torch', 'cs231n'}, optional
        BatchNorm: how your ``bn_param['momentum']`` is used (module docstring); a finer switch than ``course``
        (default: the course's form). ``momentum`` (the value given to your code) defaults to 0.1 for 'torch' and
        0.9 for 'cs231n' — the same torch momentum 0.1.
    p_is_keep_prob : bool, optional
        Dropout: your ``dropout_param['p']`` is the keep probability; a finer switch than ``course`` (default: the
        course's reading). ``p`` (the value given to your code) defaults to a drop probability of 0.3 (keep 0.7):
        never 0.5, where the two readings coincide.
    dtype : float64 or float32
        The dtype of every input; outputs must keep it.
    seed : int
        Seeds the inputs, parameters and upstream gradients (``np.random.default_rng(seed)``).
    steps : int
        Training steps before the test-mode check (BatchNorm's running statistics are compared after each).
        conv, max_pool and spatial_groupnorm run once per geometry instead; the assignment-3 kinds run
        ``steps`` times on fresh inputs.
    eps : float
        BatchNorm/LayerNorm/GroupNorm eps, given to both sides.
    course : {'torch', 'cs231n', 'dlai', 'd2l', 'nndl'}
        The course profile (:data:`PROFILES`): its rules replace torch's where they differ (CS231n: running
        statistics ``m·running + (1 − m)·batch`` with m 0.9, the biased running variance, p the keep probability),
        and each such rule adds a passing note row "course convention: <rule> (torch: <torch's rule>)". Without a
        course, a mismatch a course's rule explains is diagnosed "matches the <course> convention: pass
        `--course <course>`".

    Returns
    -------
    CheckReport
        One row per check (out, dx, parameter gradients, running_mean, running_var, eval out, keep rate,
        mask independence, ...), then the course's note rows.
    """
    kind = _check_kind(kind, LAYER_KINDS + SEQUENCE_KINDS)
    dt = _check_dtype(dtype)
    prof = get_profile(course)
    if momentum_style is None:
        momentum_style = "cs231n" if prof.bn_momentum == "ema" else "torch"
    if momentum_style not in ("torch", "cs231n"):
        raise ValueError(f"momentum_style must be 'torch' or 'cs231n', but got {momentum_style!r}")
    if p_is_keep_prob is None:
        p_is_keep_prob = prof.dropout_p == "keep"
    user_m = momentum if momentum is not None else (0.9 if momentum_style == "cs231n" else 0.1)
    torch_m = 1 - user_m if momentum_style == "cs231n" else user_m
    user_p = p if p is not None else (0.7 if p_is_keep_prob else 0.3)
    if not 0 <= user_p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {user_p}")
    torch_p = 1 - user_p if p_is_keep_prob else user_p
    biased = prof.running_var == "biased"
    effective = {"bn_momentum": "ema" if momentum_style == "cs231n" else "torch",
                 "running_var": "biased" if biased else "unbiased", "dropout_p": "keep" if p_is_keep_prob else "drop"}
    doc_rule = docstring_dropout_rule(forward) if kind == "dropout" else None
    hints = _layer_hints(effective, prof.name, doc_rule)
    settings = _Settings(np.random.default_rng(seed), dt, steps, eps, user_m, torch_m, user_p, torch_p,
                         biased_var=biased, p_is_keep_prob=p_is_keep_prob, hints=hints)
    conventions = [f"course profile {prof.name}: {prof.source}"] if prof.name != "torch" else []
    if kind in ("batchnorm", "spatial_batchnorm"):
        conventions.append(f"momentum_style={momentum_style!r}: your momentum {user_m:g} = torch momentum "
                           f"{torch_m:g}; running_var {effective['running_var']}; eps {eps:g}; {steps} training "
                           "steps, then test mode")
    if kind == "dropout":
        reading = "keep" if p_is_keep_prob else "drop"
        conventions.append(f"p_is_keep_prob={p_is_keep_prob}: your p {user_p:g} ({reading} probability) = torch "
                           f"p {torch_p:g}; the mask is recovered from your output and given to torch")
    if kind == "relu":
        conventions.append("inputs hold exact zeros: torch's gradient at x = 0 is 0")
    if kind == "conv":
        conventions.append(f"{len(CONV_GEOMETRIES)} geometries (stride 1 and 2, pad 0 and 1, non-square kernels): "
                           "torch F.conv2d, a cross-correlation; random upstream gradients")
    if kind == "max_pool":
        conventions.append(f"{len(POOL_GEOMETRIES)} geometries, one with overlapping windows; inputs in {{0, 1, 2}} "
                           "(ties): torch's gradient goes to the first maximum of a window, in row-major order")
    if kind == "spatial_groupnorm":
        conventions.append(f"G = {', '.join(str(g[-1]) for g in GROUPNORM_GEOMETRIES)} on C = "
                           f"{', '.join(str(g[1]) for g in GROUPNORM_GEOMETRIES)}; eps {eps:g}; gamma, beta, "
                           "dgamma, dbeta shaped (1, C, 1, 1) as CS231n's, compared by value with torch's (C,)")
    conventions += _sequence_conventions(kind, steps)
    if backward is None and kind != "temporal_softmax_loss":
        conventions.append("no backward function: gradients not checked")
    rows = _Rows(dt, hints)
    token = _expect_signatures(kind, forward, backward)
    try:
        _LAYER_RUNNERS[kind](forward, backward, rows, settings)
    except _UserFailure as failure:
        rows.fail(failure)
    finally:
        _SIGNATURES.reset(token)
    checked = rows.rows()
    followed = all(r.passed for r in checked if r.check in ("out", "keep rate"))
    for rule in KIND_RULES.get(kind, ()):
        if effective.get(rule) == getattr(prof, rule):  # a finer switch may have overridden the course's rule
            detail = _docstring_detail(doc_rule, getattr(prof, rule), followed) if rule == "dropout_p" else ""
            note = convention_row(rule, prof.name, detail)
            if note is not None:
                checked.append(note)
    return CheckReport(kind, f"{_name(forward)} / {_name(backward)}", str(dt), seed, conventions, checked)


def _layer_hints(effective: Mapping[str, str], current: str, doc_rule: Optional[Tuple[str, str]] = None
                 ) -> Dict[str, str]:
    """For each convention detector, the course whose rule its hypothesis is (given the rules in effect)."""
    flip = {"torch": "ema", "ema": "torch", "biased": "unbiased", "unbiased": "biased", "keep": "drop",
            "drop": "keep"}
    form, var, reading = effective["bn_momentum"], effective["running_var"], effective["dropout_p"]
    wanted = {
        "biased_running_var": {"bn_momentum": form, "running_var": "biased"},
        "unbiased_running_var": {"bn_momentum": form, "running_var": "unbiased"},
        "inverted_momentum": {"bn_momentum": flip[form], "running_var": var},
        "inverted_momentum@running_mean": {"bn_momentum": flip[form]},
        "inverted_momentum_biased_var": {"bn_momentum": flip[form], "running_var": "biased"},
        "inverted_momentum_unbiased_var": {"bn_momentum": flip[form], "running_var": "unbiased"},
        "dropout_over_p": {"dropout_p": flip[reading]},
    }
    hints = {name: hint for name, rules in wanted.items() if (hint := course_hint(rules, current))}
    if doc_rule is not None and doc_rule[0] == flip[reading] and "dropout_over_p" in hints:
        hints["dropout_over_p"] += f' (your docstring says "{doc_rule[1]}")'
    return hints


def _docstring_detail(doc_rule: Optional[Tuple[str, str]], rule: str, followed: bool) -> str:
    """What the learner's docstring says about dropout's p, next to the course's ``rule`` the code was checked by."""
    if doc_rule is None:
        return ""
    reading, sentence = doc_rule
    if reading == rule:
        return f'your docstring says so: "{sentence}"'
    code = f"; your code {'keeps' if rule == 'keep' else 'drops'} with probability p" if followed else ""
    return f'your docstring says otherwise: "{sentence}"{code}'



# ---- optimizers -----------------------------------------------------------------------------------------------------
def _torch_optimizer(kind: str, param: torch.nn.Parameter, config: Dict[str, float], momentum_style: str
                     ) -> Tuple[torch.optim.Optimizer, Dict[str, Any]]:
    """The torch optimizer equal to the update rule, and torch's hyper-parameters (for the diagnosis)."""
    lr = config["learning_rate"]
    if kind == "sgd":
        return torch.optim.SGD([param], lr=lr), {"lr": lr}
    if kind == "sgd_momentum":
        m = config["momentum"]
        torch_lr = lr * (1 - m) if momentum_style == "dlai" else lr
        return torch.optim.SGD([param], lr=torch_lr, momentum=m), {"lr": torch_lr, "momentum": m, "dampening": 0.0}
    if kind == "rmsprop":
        alpha, eps = config["decay_rate"], config["epsilon"]
        return torch.optim.RMSprop([param], lr=lr, alpha=alpha, eps=eps), {"lr": lr, "alpha": alpha, "eps": eps}
    betas, eps = (config["beta1"], config["beta2"]), config["epsilon"]
    return torch.optim.Adam([param], lr=lr, betas=betas, eps=eps), {"lr": lr, "betas": betas, "eps": eps}


def _torch_state(kind: str, state: Dict[str, Any], config: Dict[str, float], momentum_style: str
                 ) -> Dict[str, np.ndarray]:
    """torch's optimizer state in the update rule's terms: config key -> expected value."""
    if kind == "sgd_momentum" and "momentum_buffer" in state:  # no buffer when config momentum is 0
        buf = to_numpy(state["momentum_buffer"])
        m, lr = config["momentum"], config["learning_rate"]
        return {"velocity": (1 - m) * buf if momentum_style == "dlai" else -lr * buf}
    if kind == "rmsprop":
        return {"cache": to_numpy(state["square_avg"])}
    if kind == "adam":
        return {"m": to_numpy(state["exp_avg"]), "v": to_numpy(state["exp_avg_sq"]),
                "t": np.float64(to_numpy(state["step"]))}
    return {}


class _RMSpropEpsInside:
    """RMSprop with eps inside the square root, w −= lr·g/√(s + eps) (d2l's and nndl's rule), in torch's arithmetic:
    torch has no such optimizer, so this replays it on the parameter."""

    def __init__(self, param: torch.nn.Parameter, lr: float, alpha: float, eps: float) -> None:
        self.param, self.lr, self.alpha, self.eps = param, lr, alpha, eps
        self.state: Dict[torch.nn.Parameter, Dict[str, torch.Tensor]] = {param: {}}

    @torch.no_grad()
    def step(self) -> None:
        g, state = self.param.grad, self.state[self.param]
        square_avg = state.setdefault("square_avg", torch.zeros_like(self.param))
        square_avg.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        self.param.sub_(self.lr * g / torch.sqrt(square_avg + self.eps))


def check_update(kind: str, update: Callable, *, momentum_style: Optional[str] = None, dtype: Any = np.float64,
                 seed: int = 0, steps: int = 5, config: Optional[Dict[str, float]] = None,
                 course: str = "torch") -> CheckReport:
    """Check a CS231n update rule ``update(w, dw, config) -> (next_w, config)`` against ``torch.optim``.

    Parameters
    ----------
    kind : {'sgd', 'sgd_momentum', 'rmsprop', 'adam'}
        The rule; the config keys are CS231n's (:data:`UPDATE_CONFIGS`), state in ``velocity``, ``cache``,
        ``m``/``v``/``t``.
    update : callable
        Called ``steps`` times with the config dict it returned last (the same dict if it returned None).
    momentum_style : {'cs231n', 'dlai'}, optional
        sgd_momentum: ``v = μv − lr·dw; w += v`` (CS231n, torch's steps) or ``v = βv + (1 − β)·dw; w −= lr·v``
        (deeplearning.ai); a finer switch than ``course`` (default: the course's form, 'cs231n' without one).
    dtype, seed : see :func:`check_layer`.
    steps : int
        Update steps, each with a fresh random gradient; the whole trajectory is compared.
    config : dict, optional
        Overrides of the hyper-parameters.
    course : {'torch', 'cs231n', 'dlai', 'd2l', 'nndl'}
        The course profile (:data:`PROFILES`): dlai's momentum form; d2l's and nndl's RMSprop √(s + eps). A rule
        that differs from torch's adds a note row.

    Returns
    -------
    CheckReport
        Rows: ``next_w`` (every step's parameters) and ``config <key>`` (the state after every step), then the
        course's note rows.
    """
    kind = _check_kind(kind, UPDATE_KINDS)
    dt = _check_dtype(dtype)
    prof = get_profile(course)
    if momentum_style is None:
        momentum_style = "dlai" if prof.sgd_momentum == "dlai" else "cs231n"
    if momentum_style not in ("cs231n", "dlai"):
        raise ValueError(f"momentum_style must be 'cs231n' or 'dlai', but got {momentum_style!r}")
    hyper = {**UPDATE_CONFIGS[kind], **(config or {})}
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(4, 6)).astype(dt)
    grads = rng.normal(size=(steps, 4, 6)).astype(dt)
    param = torch.nn.Parameter(to_tensor(w0))
    opt, torch_hyper = _torch_optimizer(kind, param, hyper, momentum_style)
    eps_inside = kind == "rmsprop" and prof.rmsprop_eps == "inside"
    if eps_inside:
        opt = _RMSpropEpsInside(param, hyper["learning_rate"], hyper["decay_rate"], hyper["epsilon"])
    conventions = [f"course profile {prof.name}: {prof.source}"] if prof.name != "torch" else []
    conventions.append(f"config {hyper}; {steps} steps with random gradients; w {w0.shape}")
    if kind == "sgd_momentum":
        conventions.append(f"momentum_style={momentum_style!r}: torch SGD(lr={torch_hyper['lr']:g}, "
                           f"momentum={torch_hyper['momentum']:g})")
    if eps_inside:
        conventions.append("RMSprop with eps inside the square root, replayed in torch: w −= lr·g/√(s + eps)")
    effective = {"sgd_momentum": momentum_style, "rmsprop_eps": "inside" if eps_inside else "outside"}
    hints = {name: hint for name, rules in (("momentum_ema", {"sgd_momentum": "dlai"}),
                                            ("momentum_without_ema", {"sgd_momentum": "cs231n"}),
                                            ("rmsprop_eps_inside_sqrt", {"rmsprop_eps": "inside"}))
             if (hint := course_hint(rules, prof.name))}
    rows = _Rows(dt, hints)
    user_config: Dict[str, Any] = dict(hyper)
    ours: List[Any] = []
    theirs: List[np.ndarray] = []
    states: Dict[str, Tuple[List[Any], List[np.ndarray]]] = {}
    w = w0.copy()
    token = _expect_signatures(kind, update)
    try:
        for step in range(steps):
            result = _call("next_w", update, w.copy(), grads[step].copy(), user_config)
            next_w, returned = _unpack("next_w", result, 2, "(next_w, config)")
            if next_w is None:
                raise _UserFailure("next_w", f"{_name(update)} returned next_w None")
            user_config = returned if returned is not None else user_config
            param.grad = to_tensor(grads[step])
            opt.step()
            ours.append(next_w)
            theirs.append(to_numpy(param.detach()))
            for key, value in _torch_state(kind, opt.state[param], hyper, momentum_style).items():
                mine = user_config.get(key) if isinstance(user_config, dict) else None
                mine = None if mine is None else (np.float64(mine) if key == "t" else np.array(mine, copy=True))
                states.setdefault(key, ([], []))[0].append(mine)
                states[key][1].append(value)
            w = np.array(next_w, copy=True)
    except _UserFailure as failure:
        rows.fail(failure)
    finally:
        _SIGNATURES.reset(token)
    if ours:
        stack = None if any(o is None or np.shape(o) != w0.shape for o in ours) else np.stack(ours)
        rows.add("next_w", stack, np.stack(theirs), kind=kind, param0=w0, grads=grads[:len(ours)], **torch_hyper)
        for key, (mine, expected) in states.items():
            ok = all(v is not None and np.shape(v) == np.shape(expected[0]) for v in mine)
            rows.add(f"config {key}", np.stack(mine) if ok else None, np.stack(expected))
            if key == "t" and ok and np.array_equal(np.stack(mine), np.stack(expected) + 1):
                rows.fixed(CheckRow(compare("config t", np.stack(mine), np.stack(expected)), ADAM_T_AHEAD))
    for rule in KIND_RULES.get(kind, ()):
        if _rule_key(rule, effective[rule]) == _rule_key(rule, getattr(prof, rule)):
            note = convention_row(rule, prof.name)
            if note is not None:
                rows.fixed(note)
    return CheckReport(kind, _name(update), str(dt), seed, conventions, rows.rows())


# ---- the command line -----------------------------------------------------------------------------------------------
#: (what a function name contains, once underscores are dropped; the kind it implies), tried in order: the
#: later kinds come last, so a name that implied a kind before they existed still implies it
_NAME_KINDS = tuple((kind.replace("_", ""), kind) for kind in (
    "spatial_batchnorm", "batchnorm", "layernorm", "affine", "relu", "dropout",
    "sgd_momentum", "rmsprop", "adam", "sgd")) + (
    ("groupnorm", "spatial_groupnorm"), ("maxpool", "max_pool"), ("conv", "conv"),
    ("temporalsoftmaxloss", "temporal_softmax_loss"), ("wordembedding", "word_embedding"),
    ("rnnstep", "rnn_step"), ("lstmstep", "lstm_step"), ("lstm", "lstm"), ("rnn", "rnn"))
#: 'temporal_affine_forward' holds 'affine': its own kind is tried first
_NAME_KINDS = (("temporalaffine", "temporal_affine"),) + _NAME_KINDS


def infer_function_kind(fn: Callable) -> Optional[str]:
    """The kind of a user function from its name AND signature: names shared between courses (d2l's
    ``sgd(params, lr, batch_size)`` / ``adam(params, states, hyperparams)`` against CS231n's ``sgd(w, dw, config)``)
    are told apart by their parameters; any other name as :func:`infer_kind`."""
    from .kinds.d2l import kind_for_function

    d2l = kind_for_function(fn)
    return d2l.name if d2l is not None else infer_kind(getattr(fn, "__name__", ""))


def infer_kind(name: str) -> Optional[str]:
    """The kind a function name implies: a registered course kind (:mod:`reference.kinds`) naming it exactly,
    else a built-in kind by :func:`infer_builtin_kind`."""
    from .kinds import kind_for

    registered = kind_for(name)
    return registered.name if registered is not None else infer_builtin_kind(name)


#: the layers a CS231n layer_utils "sandwich" chains (affine_relu_forward, affine_bn_relu_forward, conv_relu_forward,
#: conv_relu_pool_forward): a name with two of them is none of the single built-in kinds
_SANDWICH_PARTS = {"affine", "relu", "conv", "pool", "bn", "batchnorm", "ln", "layernorm", "norm", "dropout"}


def _is_sandwich(name: str) -> bool:
    return len(set(name.lower().split("_")) & _SANDWICH_PARTS) > 1


def infer_builtin_kind(name: str) -> Optional[str]:
    """The kind a function name implies: 'batchnorm_forward' -> 'batchnorm', 'sgd_momentum' -> 'sgd_momentum',
    'conv_forward_naive' / 'conv_forward_im2col' -> 'conv', 'max_pool_forward_naive' -> 'max_pool',
    'spatial_groupnorm_forward' -> 'spatial_groupnorm', 'rnn_step_forward' -> 'rnn_step', 'lstm_forward' ->
    'lstm', 'word_embedding_forward' -> 'word_embedding', 'temporal_affine_forward' -> 'temporal_affine',
    'temporal_softmax_loss' -> 'temporal_softmax_loss'; None for a layer_utils sandwich ('affine_relu_forward',
    'conv_relu_pool_forward', 'affine_bn_relu_forward'), whose kinds :mod:`reference.kinds` registers."""
    if _is_sandwich(name):
        return None
    flat = name.lower().replace("_", "")
    for pattern, kind in _NAME_KINDS:
        if pattern in flat:
            return kind
    return None


def forward_names(backward_name: str) -> List[str]:
    """The forward functions a backward's name points to, in order: 'conv_backward_naive' -> 'conv_forward_naive';
    'batchnorm_backward_alt' -> 'batchnorm_forward_alt', 'batchnorm_forward'."""
    names = [backward_name.replace("_backward", "_forward"), re.sub(r"_backward\w*$", "_forward", backward_name)]
    return list(dict.fromkeys(n for n in names if n != backward_name))


def load_function(spec: str) -> Tuple[Callable, Any]:
    """``MODULE:FUNC`` -> (function, module); MODULE is a file path or a dotted module importable from the cwd."""
    module_part, sep, func = spec.rpartition(":")
    if not sep or not module_part or not func:
        raise ValueError(f"expected MODULE:FUNC (a file path or dotted module, a colon, a function name), "
                         f"but got {spec!r}")
    path = Path(module_part)
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part or path.is_file():
        if not path.is_file():
            raise ImportError(f"no such file: {module_part}")
        name = "handnn_user_" + re.sub(r"\W", "_", path.stem)
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        added = os.getcwd() not in sys.path
        if added:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_part)
        finally:
            if added:
                sys.path.remove(os.getcwd())
    fn = getattr(module, func, None)
    if not callable(fn):
        raise AttributeError(f"{module_part} has no function {func!r}")
    return fn, module


def split_user_arg(argv: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """(``SPEC`` of ``--user SPEC`` / ``--user=SPEC``, the other arguments) — None when ``--user`` is absent."""
    rest = list(argv)
    for i, arg in enumerate(rest):
        if arg == "--user" and i + 1 < len(rest):
            return rest[i + 1], rest[:i] + rest[i + 2:]
        if arg.startswith("--user="):
            return arg.split("=", 1)[1], rest[:i] + rest[i + 1:]
    return None, rest


def main_user(spec: str, argv: Optional[Sequence[str]] = None) -> int:
    """``handnn-verify --user MODULE:FUNC [options]``: print the check table; 0 when everything matches, 1 on a
    mismatch, 2 when the function cannot be loaded or its kind not told. A FILE (.py or .ipynb) without ``:FUNC``
    or a DIR (a class of submissions) is graded whole by :func:`reference.grade.main_grade`."""
    if Path(spec).is_dir() or (":" not in Path(spec).name and Path(spec).suffix in (".py", ".ipynb")):
        from .grade import main_grade

        return main_grade(spec, argv)
    parser = argparse.ArgumentParser(
        prog=f"handnn-verify --user {spec}",
        description="Check your own CS231n-style forward function (its *_backward found by name), "
                    "temporal_softmax_loss or update rule against torch.")
    from .kinds import KINDS, Options, load, partner_functions

    load()
    parser.add_argument("--kind", choices=LAYER_KINDS + SEQUENCE_KINDS + UPDATE_KINDS + tuple(KINDS),
                        help="default: inferred from FUNC's name")
    parser.add_argument("--backward", metavar="FUNC", help="the backward function (default: FUNC with "
                        "_forward replaced by _backward, when it exists)")
    parser.add_argument("--course", choices=COURSES, default="torch",
                        help="the course whose prescribed rules your code follows (running statistics, running "
                             "variance, dropout p, momentum form; default torch's): conventions the course "
                             "prescribes pass, with a note row each")
    parser.add_argument("--momentum-style", choices=("torch", "cs231n", "dlai"),
                        help="finer switch, overriding the course's: BatchNorm torch or cs231n "
                             "(m·running + (1 − m)·batch); sgd_momentum cs231n or dlai")
    parser.add_argument("--keep-prob", action="store_true", default=None,
                        help="finer switch, overriding the course's: your dropout p is the keep probability")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    try:
        forward, module = load_function(spec)
    except Exception as exc:  # noqa: BLE001 — the user's module failing at import is a usage error, not a crash
        advice = incompatibility(exc)
        plain = isinstance(exc, (ImportError, AttributeError, ValueError, SyntaxError))
        text = str(exc) if plain else f"{spec} raised {type(exc).__name__} at import: {exc}"
        print(f"handnn-verify --user: {text}" + (f" — {advice}" if advice else ""), file=sys.stderr)
        return 2
    kind = args.kind or infer_function_kind(forward)
    if kind is None:
        print(f"handnn-verify --user: cannot tell the kind of {forward.__name__!r} from its name; pass --kind "
              f"(one of {', '.join(LAYER_KINDS + SEQUENCE_KINDS + UPDATE_KINDS)})", file=sys.stderr)
        return 2
    backward: Optional[Callable] = None
    if kind in LAYER_KINDS + SEQUENCE_KINDS and kind not in KINDS and "_backward" in forward.__name__:
        # a backward named alone (batchnorm_backward_alt): checked as the backward of its forward
        tried = forward_names(forward.__name__)
        partner = next((getattr(module, n) for n in tried if callable(getattr(module, n, None))), None)
        if partner is None:
            print(f"handnn-verify --user: {forward.__name__!r} is a backward function and {spec} has no forward "
                  f"for it (tried {', '.join(tried)}); pass the forward: --user FILE:FORWARD --backward "
                  f"{forward.__name__}", file=sys.stderr)
            return 2
        forward, backward = partner, forward
    try:
        if kind in KINDS:
            registered = KINDS[kind]
            extra = {k: v for k, v in (("momentum_style", args.momentum_style), ("keep_prob", args.keep_prob))
                     if v is not None}
            report = registered.run(partner_functions(registered, forward, vars(module)),
                                    Options(dtype=args.dtype, seed=args.seed, course=args.course, extra=extra))
        elif kind in UPDATE_KINDS:
            report = check_update(kind, forward, momentum_style=args.momentum_style, dtype=args.dtype,
                                  seed=args.seed, course=args.course)
        else:
            if backward is None:
                backward_name = args.backward or forward.__name__.replace("_forward", "_backward")
                backward = getattr(module, backward_name, None) if backward_name != forward.__name__ else None
                if args.backward and not callable(backward):
                    print(f"handnn-verify --user: no function {args.backward!r} in {spec}", file=sys.stderr)
                    return 2
            report = check_layer(kind, forward, backward if callable(backward) else None,
                                 momentum_style=args.momentum_style, p_is_keep_prob=args.keep_prob,
                                 dtype=args.dtype, seed=args.seed, course=args.course)
    except ValueError as exc:  # a convention that does not apply to this kind
        print(f"handnn-verify --user: {exc}", file=sys.stderr)
        return 2
    print(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, indent=1)
    return 0 if report.passed else 1
