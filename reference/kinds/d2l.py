"""Dive into Deep Learning (d2l.ai): the book's from-scratch functions checked against torch, in the book's own
signatures (the PyTorch edition: tensors in, tensors out; plain-arithmetic functions also as NumPy)::

    Y, moving_mean, moving_var = batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    Y = dropout_layer(X, dropout)                        # dropout: the DROP probability
    penalty = l2_penalty(w)                              # (w ** 2).sum() / 2
    sgd(params, lr, batch_size)                          # param -= lr * param.grad / batch_size
    sgd(params, states, hyperparams)                     # chapter 12's form: p -= hyperparams['lr'] * p.grad
    sgd_momentum(params, states, hyperparams);  states = init_momentum_states(feature_dim)
    adagrad(params, states, hyperparams);       states = init_adagrad_states(feature_dim)
    rmsprop(params, states, hyperparams);       states = init_rmsprop_states(feature_dim)
    adadelta(params, states, hyperparams);      states = init_adadelta_states(feature_dim)
    adam(params, states, hyperparams);          states = init_adam_states(feature_dim)

The book's rules, as its code writes them (d2l-en 1.0, chapters 5.5, 5.6, 8.5, 12.4–12.10):

- ``batch_norm``: training mode when ``torch.is_grad_enabled()``, prediction mode (the moving statistics) under
  ``torch.no_grad()``; statistics over dim 0 for (N, D) inputs, over (0, 2, 3) with keepdim for (N, C, H, W);
  ``moving = (1 − momentum)·moving + momentum·batch`` with momentum 0.1 (torch's form; d2l-en before 1.0 and
  d2l-zh 2.0 write ``momentum·moving + (1 − momentum)·batch`` with 0.9, checked with
  ``--momentum-style cs231n`` or ``Options.extra['d2l_edition'] = 'zh'``) and the BIASED batch variance
  ``((X − mean)²).mean()`` in ``moving_var`` (torch: the unbiased one); gamma, beta, moving stats shaped (1, C) or
  (1, C, 1, 1); eps 1e-5. Y and the gradients of X, gamma, beta (autograd through the user's tensor code) are
  compared with ``F.batch_norm``; the moving statistics with the course's rule.
- ``dropout_layer``: ``mask = rand(X.shape) > dropout``, ``Y = mask·X / (1 − dropout)``, zeros when dropout = 1.
  Torch's global RNG (and NumPy's, for a NumPy version) is seeded around each call and restored afterwards.
- ``sgd(params, lr, batch_size)``: the gradient of the SUMMED minibatch loss divided by batch_size ≡ torch
  ``SGD(lr = lr / batch_size)``.
- ``sgd_momentum``: ``v = momentum·v + g; p −= lr·v`` ≡ ``SGD(lr, momentum)``.
- ``adagrad``: ``s += g²; p −= lr·g / √(s + 1e-6)`` — eps INSIDE the sqrt; torch ``Adagrad(lr, eps)`` puts it
  outside (``√s + eps``).
- ``rmsprop``: ``s = γ·s + (1 − γ)·g²; p −= lr·g / √(s + 1e-6)`` (``hyperparams['gamma']``) — eps INSIDE the sqrt;
  torch ``RMSprop(lr, alpha=γ, eps)`` puts it outside.
- ``adadelta``: ``s = ρ·s + (1 − ρ)·g²; g' = √(Δ + 1e-5)/√(s + 1e-5)·g; p −= g'; Δ = ρ·Δ + (1 − ρ)·g'²`` (no learning
  rate) ≡ torch ``Adadelta(lr=1, rho=ρ, eps=1e-5)``.
- ``adam``: β = (0.9, 0.999), ``p −= lr·v̂ / (√ŝ + 1e-6)`` with ``v̂ = v/(1 − β1^t)``, ``ŝ = s/(1 − β2^t)`` ≡ torch
  ``Adam(lr, betas, eps=1e-6)``; ``hyperparams['t']`` starts at 1 and the FUNCTION increments it
  (``hyperparams['t'] += 1`` ends d2l's ``adam``).
- every optimiser zeroes ``p.grad`` after its step (d2l's ``train_ch11`` never calls ``zero_grad``) and updates
  ``p`` and the states in place. ``init_*_states`` is called with torch's default dtype set to the check's (its
  ``torch.zeros`` would otherwise make float32 states for float64 parameters).

Course profile (:attr:`Options.course`): under ``'d2l'`` the book's rules above are the reference and the rows
where they differ from torch pass with a note; under any other profile (``'torch'`` when none is declared) the
reference is torch's (unbiased running variance, ``torch.optim.Adagrad``/``RMSprop`` with eps outside the sqrt),
and code following the book fails with the cause "matches the d2l convention: pass --course d2l".

A failed check names its cause when a known wrong formula (:data:`CAUSES`) reproduces the user's value and not the
reference's. The book's optimiser names ``sgd``, ``sgd_momentum``, ``rmsprop``, ``adam`` are CS231n's too, whose
``(w, dw, config)`` signature the built-in kinds check: those four d2l kinds are chosen with ``--kind d2l_sgd``
(...), or by :func:`kind_for_function`, which tells them apart by their parameters.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..check import CheckReport, CheckRow, _call, _grad, _leaf, _Rows, _unpack, _UserFailure
from ..tolerances import Comparison, compare
from ..twin import TORCH_DTYPES, to_numpy, to_tensor
from . import Kind, Options, register

COURSE = "d2l"
#: the profile note a book-following value gets when another profile is checked
D2L_PROFILE = "matches the d2l convention: pass `--course d2l`"
#: ... and the one a torch-following value gets under the d2l profile
TORCH_PROFILE = "matches torch's convention: pass `--course torch`"

#: (N, D) and (N, C, H, W) inputs of batch_norm: every dim different
BN_SHAPES = ((12, 5), (4, 3, 5, 2))
#: the book's BatchNorm module passes eps=1e-5, momentum=0.1
BN_EPS, BN_MOMENTUM = 1e-5, 0.1
#: the momentum each edition's BatchNorm passes (``Options.extra['d2l_edition']``): 'en' (d2l 1.0) writes
#: (1 − m)·moving + m·batch with 0.1, 'zh' (d2l-zh 2.0, and d2l-en before 1.0) m·moving + (1 − m)·batch with 0.9 —
#: the same average, so the reference statistics are torch's momentum 0.1 for both
EDITION_MOMENTUM = {"en": BN_MOMENTUM, "zh": 1 - BN_MOMENTUM}
#: training steps per shape before the prediction-mode step
BN_STEPS = 3
#: dropout_layer: the input's shape, the drop probabilities (two calls each; never 0.5, where keep and drop agree)
DROPOUT_SHAPE = (40, 50)
DROPOUT_PS = (0.3, 0.7)
#: a keep rate is wrong when it is this many binomial standard deviations from 1 − dropout
KEEP_RATE_SIGMAS = 5.0
#: d2l's linear-regression data (chapter 12's get_data_ch11): w (feature_dim, 1), b (1,)
FEATURE_DIM = 5
OPT_STEPS = 6

#: the causes a d2l check can name (each planted in tests/parity/test_check_d2l.py)
CAUSES = {
    "bn_biased_var_torch": f"biased running variance ((X − mean)²).mean(), torch's running_var is unbiased: "
                           f"{D2L_PROFILE}",
    "bn_unbiased_var_d2l": f"unbiased running variance (the book's moving_var averages the biased batch variance "
                           f"((X − mean)²).mean()): {TORCH_PROFILE}",
    "bn_momentum_swapped": "moving-average weights swapped: the batch is weighted 0.9 and the moving statistic 0.1 "
                           "(d2l 1.0 passes momentum 0.1 to (1 − momentum)·moving + momentum·batch; d2l-zh passes "
                           "0.9 to momentum·moving + (1 − momentum)·batch: pass `--momentum-style cs231n`)",
    "bn_momentum_swapped_other_var": "moving-average weights swapped (the batch weighted 0.9) and the other "
                                     "variance convention (biased vs unbiased)",
    "bn_per_example": "statistics over the wrong axes: per example (mean over the features of each row) "
                      "instead of per channel over the batch — d2l: X.mean(dim=(0, 2, 3), keepdim=True) or "
                      "X.mean(dim=0)",
    "bn_batch_axis_only": "statistics over dim 0 only for a 4-d input (one per channel AND position): d2l "
                          "averages over (0, 2, 3) with keepdim=True",
    "bn_instance": "statistics per example and channel (dims (2, 3)): instance norm, not batch norm",
    "bn_eps_outside": "eps outside the sqrt: (X − mean)/(√var + eps), d2l: (X − mean)/√(var + eps)",
    "bn_unbiased_batch_var": "X normalised by the unbiased batch variance: batch norm divides by the biased (÷n) "
                             "variance",
    "bn_eval_batch_stats": "prediction mode (torch.no_grad()) normalised with the batch statistics: d2l uses "
                           "moving_mean and moving_var when not torch.is_grad_enabled()",
    "bn_eval_updates": "the moving statistics change in prediction mode: under torch.no_grad() d2l returns them "
                       "unchanged",
    "bn_no_autograd": "Y is not connected to X by autograd (NumPy, .detach() or .data): gradients cannot flow",
    "dropout_keep_prob": "dropout used as the KEEP probability: d2l's dropout is the drop probability, "
                         "mask = rand > dropout and scale 1/(1 − dropout)",
    "dropout_keep_rate_is_p": "keep rate ≈ dropout: dropout used as the keep probability (d2l: mask = "
                              "torch.rand(X.shape) > dropout drops with probability dropout)",
    "dropout_no_scale": "the kept entries are not scaled: d2l divides them by 1 − dropout (inverted dropout)",
    "dropout_times_keep": "the kept entries are multiplied by 1 − dropout instead of divided",
    "dropout_one_nan": "dropout = 1 divides by 1 − dropout = 0 (NaN, or ZeroDivisionError): d2l returns "
                       "torch.zeros_like(X) first",
    "dropout_shared_row_mask": "one mask shared by every row (drawn with shape X.shape[1:] and broadcast): draw "
                               "torch.rand(X.shape)",
    "dropout_shared_column_mask": "one mask value per row (drawn with shape (N, 1)): every feature of an example "
                                  "is dropped together",
    "dropout_same_mask": "the same mask on every call (a fixed seed inside the function?)",
    "l2_no_half": "the penalty lacks the / 2: d2l's l2_penalty is Σw²/2, whose gradient is w",
    "l2_norm": "the L2 norm √Σw² instead of Σw²/2",
    "l2_mean": "the mean of w² instead of the sum (/ 2)",
    "sgd_no_batch_size": "the step is not divided by batch_size: d2l's sgd takes the gradient of the SUMMED "
                         "minibatch loss, p −= lr·grad / batch_size (≡ torch SGD(lr = lr / batch_size))",
    "sgd_times_batch_size": "the step is multiplied by batch_size instead of divided",
    "momentum_ema": "momentum as a moving average v = β·v + (1 − β)·g (deeplearning.ai's); d2l's is "
                    "v = β·v + g ≡ torch SGD(lr, momentum=β)",
    "eps_inside_torch": f"eps inside the sqrt, g/√(s + eps), where torch's optimizer has g/(√s + eps): "
                        f"{D2L_PROFILE}",
    "eps_outside_d2l": f"eps outside the sqrt, g/(√s + eps), where d2l's adagrad and rmsprop divide by "
                       f"√(s + eps): {TORCH_PROFILE}",
    "adagrad_no_accumulation": "s = g² (not accumulated): Adagrad sums the squared gradients, s += g²",
    "rmsprop_gamma_swapped": "RMSProp's weights swapped: s = (1 − γ)·s + γ·g², d2l: s = γ·s + (1 − γ)·g²",
    "adadelta_delta_first": "Δ is updated before it scales the step: d2l computes g' with the previous Δ, then "
                            "Δ = ρ·Δ + (1 − ρ)·g'²",
    "adadelta_eps_outside": "eps outside the square roots: (√Δ + eps)/(√s + eps), d2l: √(Δ + eps)/√(s + eps)",
    "adam_no_bias_correction": "Adam without bias correction: v/(√s + eps), d2l: v̂/(√ŝ + eps) with "
                               "v̂ = v/(1 − β1^t), ŝ = s/(1 − β2^t)",
    "adam_t_not_incremented": "hyperparams['t'] is not incremented: every step is bias-corrected as t = 1 (d2l's "
                              "adam ends with hyperparams['t'] += 1)",
    "adam_eps_inside": "Adam with eps inside the sqrt: v̂/√(ŝ + eps), d2l and torch: v̂/(√ŝ + eps)",
    "t_not_incremented": "hyperparams['t'] is not incremented by the function (d2l's adam ends with "
                         "hyperparams['t'] += 1; the caller does not)",
    "not_in_place": "the parameters did not change: update them in place (p[:] -= … or p -= … under "
                    "torch.no_grad()); p = p − … only rebinds the local name",
    "grad_not_zeroed": "p.grad is not zeroed after the step: d2l's train_ch11 never calls zero_grad, so the "
                       "gradients of the next minibatch would add to these",
}


# ---- rows -----------------------------------------------------------------------------------------------------------
def _array(value: Any) -> Any:
    """The user's value as a NumPy array (a tensor detached), None kept, else whatever np.array makes of it."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    try:
        return np.array(value, copy=True)
    except (ValueError, TypeError, RuntimeError):
        return np.array(None)


def _fits(actual: Any, hypothesis: Any, expected: np.ndarray) -> bool:
    """``actual`` matches ``hypothesis`` (same shape, tolerance table) while the hypothesis is not ``expected``."""
    if actual is None or hypothesis is None:
        return False
    actual, h = np.asarray(actual), _array(hypothesis)
    if actual.dtype.kind not in "fiub" or h.shape != actual.shape or h.dtype.kind not in "fiub":
        return False
    h = h.astype(expected.dtype)
    if h.shape == expected.shape and compare("hypothesis", h, expected).passed:
        return False
    return compare("fit", actual.astype(expected.dtype), h).passed


class _Checks(_Rows):
    """:class:`reference.check._Rows` whose failed rows are named by the course's hypotheses: ``judge(check,
    actual, expected, causes)`` with ``causes`` a sequence of (key of :data:`CAUSES`, hypothesis value), tried in
    order; a passed row may carry a note (a course convention it followed)."""

    def __init__(self, dtype: np.dtype) -> None:
        super().__init__(dtype)
        self._causes: Dict[str, str] = {}
        self._notes: Dict[str, str] = {}

    def judge(self, check: str, actual: Any, expected: Any, causes: Sequence[Tuple[str, Any]] = (),
              note: Optional[str] = None) -> None:
        actual, expected = _array(actual), _array(expected)
        self.add(check, actual, expected)
        if note:
            self._notes[check] = note
        if actual is None or np.asarray(actual).dtype.kind not in "fiub" or \
                compare(check, np.asarray(actual), expected).passed:
            return
        for key, hypothesis in causes:
            if _fits(actual, hypothesis, expected):
                self._causes[check] = CAUSES[key]
                return

    def problem(self, check: str, message: str, cause: Optional[str] = None) -> None:
        """A failed row without values (the user's function could not give them)."""
        comparison = Comparison(check, str(self.dtype), np.inf, np.inf, 1, 1, message)
        self.fixed(CheckRow(comparison, CAUSES[cause] if cause else None))

    def rows(self) -> List[CheckRow]:
        out = []
        for row in super().rows():
            if not row.passed and row.check in self._causes:
                row = CheckRow(row.comparison, self._causes[row.check], row.actual, row.expected)
            elif row.passed and row.check in self._notes:
                row = CheckRow(row.comparison, self._notes[row.check])
            out.append(row)
        return out


def _dtype(options: Options) -> np.dtype:
    dt = np.dtype(options.dtype)
    if dt not in TORCH_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, but got {dt}")
    return dt


def _d2l_rules(options: Options) -> bool:
    return options.course == COURSE


def _profile_line(options: Options) -> str:
    if _d2l_rules(options):
        return "course profile d2l: the book's rules are the reference"
    return (f"course profile {options.course!r}: torch's rules are the reference; where the book differs "
            f"the cause says so (pass --course d2l to check the book's rules)")


def _name(fn: Optional[Callable]) -> str:
    return getattr(fn, "__name__", "-") if fn is not None else "-"


@dataclass(frozen=True)
class _Tensors:
    dtype: np.dtype

    @property
    def torch(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    def leaf(self, array: np.ndarray) -> torch.Tensor:
        return _leaf(np.asarray(array, dtype=self.dtype))

    def plain(self, array: np.ndarray) -> torch.Tensor:
        return to_tensor(np.asarray(array, dtype=self.dtype))


# ---- batch_norm -----------------------------------------------------------------------------------------------------
def _bn_reference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, axes: Tuple[int, ...],
                  eps_at: str = "inside", unbiased: bool = False) -> torch.Tensor:
    """Batch norm written out with torch ops over ``axes`` (keepdim): the right formula and its wrong variants."""
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, keepdim=True, unbiased=unbiased)
    if eps_at == "outside":
        x_hat = (x - mean) / (torch.sqrt(var) + BN_EPS)
    else:
        x_hat = (x - mean) / torch.sqrt(var + BN_EPS)
    return gamma * x_hat + beta


def _bn_variants(ndim: int) -> List[Tuple[str, Dict[str, Any]]]:
    """(cause, keyword arguments of :func:`_bn_reference`) of the wrong training-mode formulas."""
    if ndim == 2:
        wrong_axes = [("bn_per_example", {"axes": (1,)})]
    else:
        wrong_axes = [("bn_per_example", {"axes": (1, 2, 3)}), ("bn_batch_axis_only", {"axes": (0,)}),
                      ("bn_instance", {"axes": (2, 3)})]
    right = (0,) if ndim == 2 else (0, 2, 3)
    return wrong_axes + [("bn_eps_outside", {"axes": right, "eps_at": "outside"}),
                         ("bn_unbiased_batch_var", {"axes": right, "unbiased": True})]


def _autograd(y: torch.Tensor, dout: np.ndarray, leaves: Sequence[torch.Tensor]) -> List[np.ndarray]:
    y.backward(to_tensor(dout.astype(to_numpy(y).dtype)))
    return [_grad(leaf) for leaf in leaves]


class _MovingStats:
    """The four moving-average trajectories (new/old weighting × biased/unbiased variance) from the same batches."""

    FORMS = (("new", False), ("new", True), ("old", False), ("old", True))

    def __init__(self, shape: Tuple[int, ...]) -> None:
        self.mean = {form: np.zeros(shape) for form in ("new", "old")}
        self.var = {form: np.ones(shape) for form in self.FORMS}

    def update(self, x: np.ndarray, axes: Tuple[int, ...], m: float) -> None:
        n = int(np.prod([x.shape[a] for a in axes]))
        mean = x.mean(axis=axes, keepdims=True).reshape(self.mean["new"].shape)
        biased = x.var(axis=axes, keepdims=True).reshape(mean.shape)
        for form in ("new", "old"):
            keep, new = (1 - m, m) if form == "new" else (m, 1 - m)
            self.mean[form] = keep * self.mean[form] + new * mean
            for unbiased in (False, True):
                batch = biased * n / (n - 1) if unbiased else biased
                self.var[form, unbiased] = keep * self.var[form, unbiased] + new * batch


def _as_shape(expected: np.ndarray, actual: Any) -> np.ndarray:
    """The reference in the user's layout ((C,), (1, C) or (1, C, 1, 1)) when only the layout differs."""
    shape = np.shape(actual) if isinstance(actual, np.ndarray) else None
    return expected.reshape(shape) if shape is not None and np.prod(shape) == expected.size else expected


def _stack(values: List[Any]) -> Any:
    """The per-step values stacked, or the first one of another shape (its comparison then names the shape)."""
    arrays = [_array(v) for v in values]
    if any(a is None for a in arrays):
        return None
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) == 1 and all(np.asarray(a).dtype.kind in "fiub" for a in arrays):
        return np.stack(arrays)
    return arrays[0]


def _run_batch_norm(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["batch_norm"]
    dt = _dtype(options)
    t = _Tensors(dt)
    rng = np.random.default_rng(options.seed)
    d2l = _d2l_rules(options)
    edition = _edition(options)
    momentum = EDITION_MOMENTUM[edition]
    rule = ("(1 − momentum)·moving + momentum·batch, momentum 0.1 (d2l 1.0's BatchNorm, torch's form)"
            if edition == "en" else
            "momentum·moving + (1 − momentum)·batch, momentum 0.9 (d2l-zh 2.0's BatchNorm; torch's momentum 0.1)")
    conventions = [
        _profile_line(options),
        f"edition {edition!r}: moving = {rule}; eps {BN_EPS:g}; moving_mean 0 and moving_var 1 to start, shaped "
        "like gamma",
        "course convention: biased running variance (torch: unbiased)" + ("" if d2l else
                                                                           " — the torch profile expects unbiased"),
        "training mode when torch.is_grad_enabled() (gradients of X, gamma, beta by autograd through your code), "
        "prediction mode under torch.no_grad() (the moving statistics)",
        f"inputs {' and '.join(str(s) for s in BN_SHAPES)}: {BN_STEPS} training steps each, then prediction",
    ]
    rows = _Checks(dt)
    for shape in BN_SHAPES:
        try:
            _batch_norm_shape(fn, shape, rows, t, rng, d2l, momentum)
        except _UserFailure as failure:
            rows.fail(failure)
    return CheckReport("d2l_batch_norm", _name(fn), str(dt), options.seed, conventions, rows.rows())


def _edition(options: Options) -> str:
    """'en' or 'zh': ``extra['d2l_edition']``, else ``extra['momentum_style']`` (``--momentum-style``: 'torch' is
    d2l 1.0's form, 'cs231n' the m·moving + (1 − m)·batch of d2l-zh), else 'en'."""
    if "d2l_edition" in options.extra:
        edition = options.extra["d2l_edition"]
        if edition not in EDITION_MOMENTUM:
            raise ValueError(f"d2l_edition must be one of {sorted(EDITION_MOMENTUM)}, but got {edition!r}")
        return edition
    style = options.extra.get("momentum_style", "torch")
    if style not in ("torch", "cs231n"):
        raise ValueError(f"momentum_style for d2l's batch_norm must be 'torch' (d2l 1.0: (1 − m)·moving + m·batch, "
                         f"m = 0.1) or 'cs231n' (d2l-zh: m·moving + (1 − m)·batch, m = 0.9), but got {style!r}")
    return "en" if style == "torch" else "zh"


def _batch_norm_shape(fn: Callable, shape: Tuple[int, ...], rows: _Checks, t: _Tensors, rng: np.random.Generator,
                      d2l: bool, momentum: float) -> None:
    """Training steps then a prediction step on one input shape; ``momentum`` is what the user's function is
    passed (the reference statistics always average with weight 0.1 on the batch)."""
    ndim, c = len(shape), shape[1]
    tag = f" ({ndim}-d)"
    axes = (0,) if ndim == 2 else (0, 2, 3)
    pshape = (1, c) + (1,) * (ndim - 2)
    gamma = rng.normal(1.0, 0.5, pshape).astype(t.dtype)
    beta = rng.normal(0.0, 1.0, pshape).astype(t.dtype)
    loc, scale = rng.uniform(-2.0, 2.0, pshape), rng.uniform(0.5, 3.0, pshape)
    moving_mean, moving_var = t.plain(np.zeros(pshape)), t.plain(np.ones(pshape))
    stats = _MovingStats(pshape)
    outs: Dict[str, List[Any]] = {name: [] for name in ("Y", "dX", "dgamma", "dbeta")}
    refs: Dict[str, List[np.ndarray]] = {name: [] for name in outs}
    variants: Dict[str, Dict[str, List[np.ndarray]]] = {}
    user_stats: Dict[str, List[Any]] = {"moving_mean": [], "moving_var": []}
    ref_stats: Dict[str, List[np.ndarray]] = {"moving_mean": [], "moving_var": []}
    alt_means: List[np.ndarray] = []  # weights swapped
    alt_vars: Dict[Tuple[str, bool], List[np.ndarray]] = {form: [] for form in _MovingStats.FORMS}
    grads_ok = True
    for _ in range(BN_STEPS):
        x = (rng.standard_normal(shape) * scale + loc).astype(t.dtype)
        dout = rng.standard_normal(shape).astype(t.dtype)
        xt, gt, bt = t.leaf(x), t.leaf(gamma), t.leaf(beta)
        with torch.enable_grad():
            result = _call("Y" + tag, fn, xt, gt, bt, moving_mean, moving_var, BN_EPS, momentum)
        y, new_mean, new_var = _unpack("Y" + tag, result, 3, "(Y, moving_mean, moving_var)")
        outs["Y"].append(y)
        if grads_ok and isinstance(y, torch.Tensor) and y.requires_grad and tuple(y.shape) == shape:
            try:
                for name, g in zip(("dX", "dgamma", "dbeta"), _autograd(y, dout, (xt, gt, bt))):
                    outs[name].append(g)
            except RuntimeError as exc:
                rows.problem("dX" + tag, f"Y.backward raised RuntimeError: {exc}")
                grads_ok = False
        else:
            grads_ok = False
        # torch: F.batch_norm with the batch statistics; autograd gives the reference gradients
        xr, gr, br = t.leaf(x), t.leaf(gamma), t.leaf(beta)
        yr = F.batch_norm(xr, None, None, gr.reshape(c), br.reshape(c), training=True, eps=BN_EPS)
        refs["Y"].append(to_numpy(yr))
        for name, g in zip(("dX", "dgamma", "dbeta"), _autograd(yr, dout, (xr, gr, br))):
            refs[name].append(g)
        for cause, kwargs in _bn_variants(ndim):
            xv, gv, bv = t.leaf(x), t.leaf(gamma), t.leaf(beta)
            yv = _bn_reference(xv, gv, bv, **kwargs)
            found = variants.setdefault(cause, {name: [] for name in outs})
            found["Y"].append(to_numpy(yv))
            for name, g in zip(("dX", "dgamma", "dbeta"), _autograd(yv, dout, (xv, gv, bv))):
                found[name].append(g)
        # the moving statistics: the user's own are passed on, as d2l's BatchNorm module does
        stats.update(x.astype(np.float64), axes, BN_MOMENTUM)
        user_stats["moving_mean"].append(new_mean)
        user_stats["moving_var"].append(new_var)
        ref_stats["moving_mean"].append(stats.mean["new"].copy())
        ref_stats["moving_var"].append(stats.var["new", not d2l].copy())
        for form in _MovingStats.FORMS:
            alt_vars[form].append(stats.var[form].copy())
        alt_means.append(stats.mean["old"].copy())
        moving_mean = _passed_on(new_mean, t)
        moving_var = _passed_on(new_var, t)

    for name in outs:
        if name != "Y" and not grads_ok:
            if name == "dX" and ("dX" + tag) not in rows:
                rows.problem("dX" + tag, "no gradients: " + CAUSES["bn_no_autograd"], "bn_no_autograd")
            continue
        causes = [(cause, np.stack(found[name])) for cause, found in variants.items()]
        if name != "Y":  # a leaf cut off from Y (X.detach(), NumPy in between) gets a zero gradient
            causes.append(("bn_no_autograd", np.zeros_like(np.stack(refs[name]))))
        rows.judge(name + tag, _stack(outs[name]), np.stack(refs[name]), causes)

    mean_actual = _stack(user_stats["moving_mean"])
    mean_expected = _as_shape(np.stack(ref_stats["moving_mean"]).astype(t.dtype), mean_actual)
    rows.judge("moving_mean" + tag, mean_actual, mean_expected,
               [("bn_momentum_swapped", _as_shape(np.stack(alt_means), mean_actual))])
    var_actual = _stack(user_stats["moving_var"])
    var_expected = _as_shape(np.stack(ref_stats["moving_var"]).astype(t.dtype), var_actual)
    alt = {form: _as_shape(np.stack(v), var_actual) for form, v in alt_vars.items()}
    other_var = "bn_unbiased_var_d2l" if d2l else "bn_biased_var_torch"  # the course's variance is unbiased = not d2l
    rows.judge("moving_var" + tag, var_actual, var_expected,
               [(other_var, alt["new", d2l]), ("bn_momentum_swapped", alt["old", not d2l]),
                ("bn_momentum_swapped_other_var", alt["old", d2l])],
               note="course convention: biased running variance (torch: unbiased)" if d2l else None)

    # prediction mode: the user's moving statistics, under torch.no_grad()
    x = (rng.standard_normal(shape) * scale + loc).astype(t.dtype)
    with torch.no_grad():
        result = _call("eval Y" + tag, fn, t.plain(x), t.plain(gamma), t.plain(beta), moving_mean.clone(),
                       moving_var.clone(), BN_EPS, momentum)
    y, kept_mean, kept_var = _unpack("eval Y" + tag, result, 3, "(Y, moving_mean, moving_var)")
    w, b = t.plain(gamma).reshape(c), t.plain(beta).reshape(c)
    batch_stats = F.batch_norm(t.plain(x), None, None, w, b, training=True, eps=BN_EPS)
    ref_mean = t.plain(stats.mean["new"]).reshape(c)
    ref_var = t.plain(stats.var["new", not d2l]).reshape(c)
    expected = F.batch_norm(t.plain(x), ref_mean, ref_var, w, b, training=False, eps=BN_EPS)
    eval_causes = [("bn_eval_batch_stats", batch_stats)]
    for cause, form, unbiased in ((other_var, "new", d2l), ("bn_momentum_swapped", "old", not d2l),
                                  ("bn_momentum_swapped_other_var", "old", d2l)):
        eval_causes.append((cause, F.batch_norm(t.plain(x), t.plain(stats.mean[form]).reshape(c),
                                                t.plain(stats.var[form, unbiased]).reshape(c), w, b,
                                                training=False, eps=BN_EPS)))
    rows.judge("eval Y" + tag, y, expected, eval_causes)
    if moving_mean.numel() == c and moving_var.numel() == c:
        own = F.batch_norm(t.plain(x), moving_mean.reshape(c), moving_var.reshape(c), w, b, training=False,
                           eps=BN_EPS)
        rows.judge("eval Y, your moving stats" + tag, y, own, [("bn_eval_batch_stats", batch_stats)])
    given = torch.cat([moving_mean.reshape(-1), moving_var.reshape(-1)])
    kept = [_array(kept_mean), _array(kept_var)]
    if all(k is not None and np.asarray(k).dtype.kind == "f" for k in kept):
        rows.judge("eval moving stats unchanged" + tag, np.concatenate([np.ravel(k) for k in kept]), given,
                   [("bn_eval_updates", np.concatenate([np.ravel(k) for k in kept]))])
    else:
        rows.judge("eval moving stats unchanged" + tag, None, given)


def _passed_on(value: Any, t: _Tensors) -> torch.Tensor:
    """The moving statistic the user returned, given back at the next call (d2l's module stores it)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    array = _array(value)
    if array is None or np.asarray(array).dtype.kind not in "fiub":
        raise _UserFailure("moving_mean", f"batch_norm returned a moving statistic of type {type(value).__name__}, "
                                          "expected a tensor")
    return t.plain(np.asarray(array))


# ---- dropout_layer --------------------------------------------------------------------------------------------------
def _seeded_call(check: str, fn: Callable, x: Any, dropout: float, seed: int) -> Any:
    """``fn(x, dropout)`` with torch's and NumPy's global RNGs seeded by ``seed`` and restored afterwards."""
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    try:
        torch.manual_seed(seed)
        np.random.seed(seed % 2 ** 32)
        return _call(check, fn, x, dropout)
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


#: errors of a tensor call that a NumPy version of the function would raise (it is then called with arrays)
_NOT_FOR_TENSORS = (TypeError, AttributeError, RuntimeError, ValueError)


def _tensor_first(call: Callable[[Any], Any], tensor: torch.Tensor, array: np.ndarray) -> Tuple[Any, bool]:
    """(``call(tensor)``, True), or (``call(array)``, False) when the tensor call raised one of
    :data:`_NOT_FOR_TENSORS` and the array call does not; otherwise the tensor call's failure."""
    try:
        with torch.enable_grad():
            return call(tensor), True
    except _UserFailure as tensor_failure:
        if not isinstance(tensor_failure.__cause__, _NOT_FOR_TENSORS):
            raise
        try:
            return call(array), False
        except _UserFailure:
            raise tensor_failure  # noqa: B904 — the tensor call's error (its __cause__ kept) is the one to report


def _dropout_call(check: str, fn: Callable, x: np.ndarray, dropout: float, seed: int, t: _Tensors
                  ) -> Tuple[Any, Optional[torch.Tensor]]:
    """(Y, the leaf X when Y came from a tensor call): tensors first, then a NumPy array."""
    xt = t.leaf(x)
    y, from_tensor = _tensor_first(lambda v: _seeded_call(check, fn, v, dropout, seed), xt, x.copy())
    return y, xt if from_tensor else None


def _run_dropout_layer(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["dropout_layer"]
    dt = _dtype(options)
    t = _Tensors(dt)
    rng = np.random.default_rng(options.seed)
    conventions = [
        "d2l's dropout is the DROP probability: mask = rand(X.shape) > dropout, Y = mask·X / (1 − dropout); "
        "dropout = 1 gives zeros, 0 gives X",
        f"dropout {', '.join(f'{p:g}' for p in DROPOUT_PS)} on X {DROPOUT_SHAPE} (two calls each, the mask "
        f"recovered from Y: X has no zeros); keep rate within {KEEP_RATE_SIGMAS:g} binomial σ of 1 − dropout",
        "torch's global RNG (and NumPy's) seeded around each call and restored afterwards; a tensor X first, a "
        "NumPy array when the tensor call raises",
    ]
    rows = _Checks(dt)
    try:
        _dropout_checks(fn, rows, t, rng)
    except _UserFailure as failure:
        rows.fail(failure)
    return CheckReport("d2l_dropout_layer", _name(fn), str(dt), options.seed, conventions, rows.rows())


def _dropout_checks(fn: Callable, rows: _Checks, t: _Tensors, rng: np.random.Generator) -> None:
    for p in DROPOUT_PS:
        tag = f" (dropout={p:g})"
        kept = total = 0
        masks = []
        for _ in range(2):
            x = rng.standard_normal(DROPOUT_SHAPE).astype(t.dtype)
            x[x == 0] = 1.0
            dout = rng.standard_normal(DROPOUT_SHAPE).astype(t.dtype)
            y, xt = _dropout_call("Y" + tag, fn, x, p, int(rng.integers(2 ** 31 - 1)), t)
            out = _array(y)
            if out is None or out.shape != DROPOUT_SHAPE or out.dtype.kind not in "fiub":
                rows.judge("Y" + tag, out, x)  # fails with the shape or type; the mask cannot be recovered
                return
            mask = out != 0
            masks.append(mask)
            kept, total = kept + int(mask.sum()), total + mask.size
            causes = [("dropout_keep_prob", mask * x / p), ("dropout_no_scale", mask * x),
                      ("dropout_times_keep", mask * x * (1 - p))]
            rows.judge("Y" + tag, out, mask * x / (1 - p), causes)
            if xt is not None and isinstance(y, torch.Tensor) and y.requires_grad:
                y.backward(to_tensor(dout))
                causes = [("dropout_keep_prob", mask * dout / p), ("dropout_no_scale", mask * dout),
                          ("dropout_times_keep", mask * dout * (1 - p))]
                rows.judge("dX" + tag, _grad(xt), mask * dout / (1 - p), causes)
        rows.fixed(_keep_rate_row("keep rate" + tag, kept, total, p))
        rows.fixed(_independence_row("masks independent across rows" + tag, masks[0], p))
        same = int(np.array_equal(masks[0], masks[1]))
        rows.fixed(CheckRow(Comparison("masks differ between calls" + tag, "bool", float(same), float(same), same, 1),
                            CAUSES["dropout_same_mask"] if same else None))
    # the edge cases: 0 keeps everything unscaled, 1 drops everything (zeros, not NaN)
    x = rng.standard_normal(DROPOUT_SHAPE).astype(t.dtype)
    y, _ = _dropout_call("dropout=0", fn, x, 0.0, int(rng.integers(2 ** 31 - 1)), t)
    # dropout read as the keep probability keeps nothing at 0: zeros, or 0/0
    rows.judge("dropout=0", y, x, [("dropout_keep_prob", np.zeros_like(x)),
                                   ("dropout_keep_prob", np.full(x.shape, np.nan))])
    try:
        y, _ = _dropout_call("dropout=1", fn, x, 1.0, int(rng.integers(2 ** 31 - 1)), t)
    except _UserFailure as failure:
        divided = isinstance(failure.__cause__, ZeroDivisionError)
        rows.problem("dropout=1", str(failure), "dropout_one_nan" if divided else None)
        return
    rows.judge("dropout=1", y, np.zeros_like(x), [("dropout_one_nan", np.full(x.shape, np.nan))])


def _keep_rate_row(check: str, kept: int, total: int, p: float) -> CheckRow:
    rate, keep = kept / total, 1 - p
    sigma = np.sqrt(keep * (1 - keep) / total)
    off = abs(rate - keep) > KEEP_RATE_SIGMAS * sigma
    cause = None
    if off and abs(rate - p) <= KEEP_RATE_SIGMAS * sigma:
        cause = CAUSES["dropout_keep_rate_is_p"]
    comparison = Comparison(check, "rate", abs(rate - keep), abs(rate - keep) / keep, int(off), 1,
                            f"kept {rate:.3f} of the entries, expected 1 − dropout = {keep:g} "
                            f"(± {KEEP_RATE_SIGMAS * sigma:.3f})" if off else "")
    return CheckRow(comparison, cause)


def _independence_row(check: str, mask: np.ndarray, p: float) -> CheckRow:
    """Repeated rows (a mask broadcast over the batch) or constant rows (a mask per example) in one call's mask."""
    rows_repeated = len(mask) - len({row.tobytes() for row in mask})
    constant_rows = int(np.sum(mask.all(axis=1) | ~mask.any(axis=1)))
    bad = max(rows_repeated, constant_rows)
    cause = None
    if constant_rows >= len(mask) // 2:  # rows all kept or all dropped also repeat each other: tried first
        cause = CAUSES["dropout_shared_column_mask"]
    elif rows_repeated >= len(mask) // 2:
        cause = CAUSES["dropout_shared_row_mask"]
    problem = (f"{rows_repeated} rows repeat another row's mask, {constant_rows} rows are all kept or all "
               f"dropped, of {len(mask)}") if bad else ""
    return CheckRow(Comparison(check, "bool", float(bad), float(bad) / len(mask), bad, len(mask), problem), cause)


# ---- l2_penalty -----------------------------------------------------------------------------------------------------
def _run_l2_penalty(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["l2_penalty"]
    dt = _dtype(options)
    t = _Tensors(dt)
    rng = np.random.default_rng(options.seed)
    conventions = ["l2_penalty(w) = Σw² / 2 (d2l 3.7), its gradient w; w (200, 1) as in d2l's weight-decay "
                   "example, and a (4, 3) matrix; a tensor first, a NumPy array when the tensor call raises"]
    rows = _Checks(dt)
    for shape in ((200, 1), (4, 3)):
        tag = f" {shape}"
        w = rng.normal(size=shape).astype(t.dtype)
        causes = [("l2_no_half", np.sum(w.astype(np.float64) ** 2)),
                  ("l2_norm", np.sqrt(np.sum(w.astype(np.float64) ** 2))),
                  ("l2_mean", np.mean(w.astype(np.float64) ** 2))]
        grad_causes = [("l2_no_half", 2 * w), ("l2_norm", w / np.sqrt(np.sum(w.astype(np.float64) ** 2))),
                       ("l2_mean", 2 * w / w.size)]
        wt = t.leaf(w)
        try:
            value, from_tensor = _tensor_first(lambda v: _call("penalty" + tag, fn, v), wt, w.copy())
        except _UserFailure as failure:
            rows.fail(failure)
            continue
        wt = wt if from_tensor else None
        expected = np.asarray(np.sum(w.astype(np.float64) ** 2) / 2, dtype=t.dtype)
        actual = _array(value)
        if actual is not None and actual.shape != () and actual.size == 1:
            actual = actual.reshape(())  # a (1,)- or (1, 1)-shaped sum is the same number
        rows.judge("penalty" + tag, actual, expected, causes)
        if wt is not None and isinstance(value, torch.Tensor) and value.requires_grad and value.numel() == 1:
            value.sum().backward()
            rows.judge("gradient" + tag, _grad(wt), w, grad_causes)
    return CheckReport("d2l_l2_penalty", _name(fn), str(dt), options.seed, conventions, rows.rows())


# ---- optimisers -----------------------------------------------------------------------------------------------------
#: step(p, g, state, hyper, t) -> p: the book's update of one parameter, in torch ops; ``state`` maps the names of
#: :attr:`_Rule.states` (zeros to start) to tensors and is updated in place
Step = Callable[[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor], Dict[str, float], int], torch.Tensor]


@dataclass(frozen=True)
class _Rule:
    """One of the book's optimisers: its hyper-parameters, state names (in d2l's tuple order), the book's step,
    the equal (or nearest) torch.optim, and the wrong steps a cause names."""

    name: str
    hyperparams: Dict[str, float]
    states: Tuple[str, ...]
    step: Step
    torch_optim: Callable[[List[torch.Tensor], Dict[str, float]], torch.optim.Optimizer]
    torch_states: Tuple[str, ...]  # torch's state keys for the names of ``states``
    equal: bool  # torch.optim computes the book's rule
    torch_note: str
    wrong: Tuple[Tuple[str, Step], ...] = ()
    d2l_only: Tuple[str, ...] = ()  # causes naming the book's rule, tried under another profile


def _sgd_step(p, g, st, h, t):
    return p - h["lr"] * g / h["batch_size"]


def _sgd_ch11_step(p, g, st, h, t):
    return p - h["lr"] * g


def _momentum_step(p, g, st, h, t, ema=False):
    st["v"] = h["momentum"] * st["v"] + ((1 - h["momentum"]) * g if ema else g)
    return p - h["lr"] * st["v"]


ADAGRAD_EPS, RMSPROP_EPS, ADADELTA_EPS, ADAM_EPS = 1e-6, 1e-6, 1e-5, 1e-6
ADAM_BETAS = (0.9, 0.999)


def _adagrad_step(p, g, st, h, t, eps_at="inside", accumulate=True):
    st["s"] = (st["s"] if accumulate else 0 * st["s"]) + g * g
    denom = torch.sqrt(st["s"] + ADAGRAD_EPS) if eps_at == "inside" else torch.sqrt(st["s"]) + ADAGRAD_EPS
    return p - h["lr"] * g / denom


def _rmsprop_step(p, g, st, h, t, eps_at="inside", swapped=False):
    gamma = 1 - h["gamma"] if swapped else h["gamma"]
    st["s"] = gamma * st["s"] + (1 - gamma) * g * g
    denom = torch.sqrt(st["s"] + RMSPROP_EPS) if eps_at == "inside" else torch.sqrt(st["s"]) + RMSPROP_EPS
    return p - h["lr"] * g / denom


def _adadelta_step(p, g, st, h, t, delta_first=False, eps_at="inside"):
    rho = h["rho"]
    st["s"] = rho * st["s"] + (1 - rho) * g * g
    root = (lambda v: torch.sqrt(v + ADADELTA_EPS)) if eps_at == "inside" else (
        lambda v: torch.sqrt(v) + ADADELTA_EPS)
    if delta_first:
        guess = root(st["delta"]) / root(st["s"]) * g
        st["delta"] = rho * st["delta"] + (1 - rho) * guess * guess
    step = root(st["delta"]) / root(st["s"]) * g
    if not delta_first:
        st["delta"] = rho * st["delta"] + (1 - rho) * step * step
    return p - step


def _adam_step(p, g, st, h, t, correct=True, eps_at="outside", fixed_t=None):
    b1, b2 = ADAM_BETAS
    t = fixed_t or t
    st["v"] = b1 * st["v"] + (1 - b1) * g
    st["s"] = b2 * st["s"] + (1 - b2) * g * g
    v_hat, s_hat = (st["v"] / (1 - b1 ** t), st["s"] / (1 - b2 ** t)) if correct else (st["v"], st["s"])
    denom = torch.sqrt(s_hat) + ADAM_EPS if eps_at == "outside" else torch.sqrt(s_hat + ADAM_EPS)
    return p - h["lr"] * v_hat / denom


RULES: Dict[str, _Rule] = {rule.name: rule for rule in (
    _Rule("sgd", {"lr": 0.03, "batch_size": 10}, (), _sgd_step,
          lambda ps, h: torch.optim.SGD(ps, lr=h["lr"] / h["batch_size"]), (), True,
          "≡ torch SGD(lr = lr / batch_size): the book's loss is summed over the minibatch",
          (("sgd_no_batch_size", _sgd_ch11_step),
           ("sgd_times_batch_size", lambda p, g, st, h, t: p - h["lr"] * g * h["batch_size"]))),
    _Rule("sgd_ch11", {"lr": 0.01}, (), _sgd_ch11_step, lambda ps, h: torch.optim.SGD(ps, lr=h["lr"]), (), True,
          "chapter 12's sgd(params, states, hyperparams): p −= lr·grad ≡ torch SGD(lr)"),
    _Rule("sgd_momentum", {"lr": 0.01, "momentum": 0.9}, ("v",), _momentum_step,
          lambda ps, h: torch.optim.SGD(ps, lr=h["lr"], momentum=h["momentum"]), ("momentum_buffer",), True,
          "v = momentum·v + g; p −= lr·v ≡ torch SGD(lr, momentum); v is torch's momentum_buffer",
          (("momentum_ema", lambda p, g, st, h, t: _momentum_step(p, g, st, h, t, ema=True)),)),
    _Rule("adagrad", {"lr": 0.1}, ("s",), _adagrad_step,
          lambda ps, h: torch.optim.Adagrad(ps, lr=h["lr"], eps=ADAGRAD_EPS), ("sum",), False,
          f"s += g²; p −= lr·g/√(s + {ADAGRAD_EPS:g}): torch Adagrad(lr, eps={ADAGRAD_EPS:g}) has g/(√s + eps) "
          "— the course convention is eps inside the sqrt",
          (("eps_outside_d2l", lambda p, g, st, h, t: _adagrad_step(p, g, st, h, t, eps_at="outside")),
           ("adagrad_no_accumulation", lambda p, g, st, h, t: _adagrad_step(p, g, st, h, t, accumulate=False))),
          ("eps_inside_torch",)),
    _Rule("rmsprop", {"lr": 0.01, "gamma": 0.9}, ("s",), _rmsprop_step,
          lambda ps, h: torch.optim.RMSprop(ps, lr=h["lr"], alpha=h["gamma"], eps=RMSPROP_EPS), ("square_avg",),
          False,
          f"s = γ·s + (1 − γ)·g²; p −= lr·g/√(s + {RMSPROP_EPS:g}): torch RMSprop(lr, alpha=γ, "
          f"eps={RMSPROP_EPS:g}) has g/(√s + eps) — the course convention is eps inside the sqrt",
          (("eps_outside_d2l", lambda p, g, st, h, t: _rmsprop_step(p, g, st, h, t, eps_at="outside")),
           ("rmsprop_gamma_swapped", lambda p, g, st, h, t: _rmsprop_step(p, g, st, h, t, swapped=True))),
          ("eps_inside_torch",)),
    _Rule("adadelta", {"rho": 0.9}, ("s", "delta"), _adadelta_step,
          lambda ps, h: torch.optim.Adadelta(ps, lr=1.0, rho=h["rho"], eps=ADADELTA_EPS),
          ("square_avg", "acc_delta"), True,
          f"no learning rate; eps {ADADELTA_EPS:g} inside both square roots ≡ torch Adadelta(lr=1, rho, "
          f"eps={ADADELTA_EPS:g}); s, Δ are torch's square_avg, acc_delta",
          (("adadelta_delta_first", lambda p, g, st, h, t: _adadelta_step(p, g, st, h, t, delta_first=True)),
           ("adadelta_eps_outside", lambda p, g, st, h, t: _adadelta_step(p, g, st, h, t, eps_at="outside")))),
    _Rule("adam", {"lr": 0.01, "t": 1}, ("v", "s"), _adam_step,
          lambda ps, h: torch.optim.Adam(ps, lr=h["lr"], betas=ADAM_BETAS, eps=ADAM_EPS), ("exp_avg", "exp_avg_sq"),
          True,
          f"betas {ADAM_BETAS}, eps {ADAM_EPS:g} outside the sqrt of the bias-corrected s ≡ torch Adam(lr, betas, "
          f"eps={ADAM_EPS:g}) (torch's default eps is 1e-8); v, s are torch's exp_avg, exp_avg_sq; "
          "hyperparams['t'] starts at 1 and the function increments it",
          (("adam_no_bias_correction", lambda p, g, st, h, t: _adam_step(p, g, st, h, t, correct=False)),
           ("adam_t_not_incremented", lambda p, g, st, h, t: _adam_step(p, g, st, h, t, fixed_t=1)),
           ("adam_eps_inside", lambda p, g, st, h, t: _adam_step(p, g, st, h, t, eps_at="inside")))),
)}


def _replay(step: Step, rule: _Rule, params0: Sequence[np.ndarray], grads: Sequence[Sequence[np.ndarray]],
            t: _Tensors) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The parameters (steps, Σ sizes) and every state (same layout) after each step of ``step``."""
    ps = [t.plain(p) for p in params0]
    states = [{name: torch.zeros_like(p) for name in rule.states} for p in ps]
    hyper = dict(rule.hyperparams)
    path, state_path = [], {name: [] for name in rule.states}
    for i, step_grads in enumerate(grads, start=1):
        ps = [step(p, t.plain(g), st, hyper, i) for p, g, st in zip(ps, step_grads, states)]
        path.append(torch.cat([p.reshape(-1) for p in ps]).numpy())
        for name in rule.states:
            state_path[name].append(torch.cat([st[name].reshape(-1) for st in states]).numpy())
    return np.stack(path), {name: np.stack(v) for name, v in state_path.items()}


def _torch_run(rule: _Rule, params0: Sequence[np.ndarray], grads: Sequence[Sequence[np.ndarray]], t: _Tensors
               ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    ps = [torch.nn.Parameter(t.plain(p)) for p in params0]
    opt = rule.torch_optim(ps, rule.hyperparams)
    path, state_path = [], {name: [] for name in rule.states}
    for step_grads in grads:
        for p, g in zip(ps, step_grads):
            p.grad = t.plain(g)
        opt.step()
        path.append(torch.cat([p.detach().reshape(-1) for p in ps]).numpy().copy())
        for name, key in zip(rule.states, rule.torch_states):
            state_path[name].append(torch.cat([opt.state[p][key].reshape(-1) for p in ps]).numpy().copy())
    return np.stack(path), {name: np.stack(v) for name, v in state_path.items()}


def _signature(fn: Callable) -> Tuple[str, ...]:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def _rule_for(kind: str, fn: Callable) -> _Rule:
    if kind == "sgd" and len(_signature(fn)) >= 2 and _signature(fn)[1] == "states":
        return RULES["sgd_ch11"]
    return RULES[kind]


def _user_states(init: Optional[Callable], rule: _Rule, t: _Tensors, rows: _Checks) -> Any:
    """The states the update is given: ``init_*_states(FEATURE_DIM)`` when the user wrote it (checked to be
    zeros shaped like the parameters), else d2l's own."""
    if not rule.states:
        return None  # d2l's train_ch11(sgd, None, {'lr': lr}, ...)
    shapes = ((FEATURE_DIM, 1), (1,))

    def zeros(shape):
        return t.plain(np.zeros(shape))
    if len(rule.states) == 1:
        ours = tuple(zeros(s) for s in shapes)
    else:
        ours = tuple(tuple(zeros(s) for _ in rule.states) for s in shapes)
    if init is None:
        return ours
    default = torch.get_default_dtype()
    torch.set_default_dtype(t.torch)  # d2l.zeros / torch.zeros then make the check's dtype, as the params have
    try:
        states = _call("init states", init, FEATURE_DIM)
    finally:
        torch.set_default_dtype(default)
    try:
        flat = [_state(states, i, name, rule) for i in range(2) for name in rule.states]
    except _UserFailure as failure:
        rows.problem("init states", f"{_name(init)} returned another layout: {failure}")
        return ours
    wanted = [s for s in shapes for _ in rule.states]
    if not all(isinstance(v, torch.Tensor) and tuple(v.shape) == s for v, s in zip(flat, wanted)):
        rows.problem("init states", f"expected zero tensors shaped {shapes} per state ({', '.join(rule.states)}), "
                                    f"got {[tuple(np.shape(_array(v))) for v in flat]}")
        return ours
    actual = np.concatenate([_array(v).ravel() for v in flat])
    rows.judge("init states", actual, np.zeros(actual.shape, t.dtype))
    return states


def _state(states: Any, i: int, name: str, rule: _Rule) -> Any:
    """State ``name`` of parameter ``i`` in d2l's layout: (v_w, v_b) or ((s_w, delta_w), (s_b, delta_b))."""
    try:
        entry = states[i]
        return entry if len(rule.states) == 1 else entry[rule.states.index(name)]
    except (TypeError, IndexError, KeyError) as exc:
        raise _UserFailure("states", f"states[{i}] holds no {name!r} in d2l's layout {_layout(rule)}: {exc}"
                           ) from exc


def _layout(rule: _Rule) -> str:
    """d2l's states for [w, b]: '(s_w, s_b)' or '((v_w, s_w), (v_b, s_b))'."""
    if len(rule.states) == 1:
        return f"({rule.states[0]}_w, {rule.states[0]}_b)"
    return "(" + ", ".join("(" + ", ".join(f"{n}_{p}" for n in rule.states) + ")" for p in "wb") + ")"


def _run_optimizer(kind: str) -> Callable[[Mapping[str, Callable], Options], CheckReport]:
    def run(functions: Mapping[str, Callable], options: Options) -> CheckReport:
        fn = functions["update"]
        rule = _rule_for(kind, fn)
        dt = _dtype(options)
        t = _Tensors(dt)
        rng = np.random.default_rng(options.seed)
        book = _d2l_rules(options) or rule.equal  # the book's formula is the reference (torch.optim's, if equal)
        hyper = dict(rule.hyperparams)
        conventions = [_profile_line(options),
                       f"{rule.name}: hyperparams {hyper}; {rule.torch_note}",
                       f"params [w ({FEATURE_DIM}, 1), b (1,)]; {OPT_STEPS} steps, each with p.grad set to a fresh "
                       "gradient whose entries range from 1e-3 to 1 in magnitude (where eps matters)",
                       "reference: the book's formula in torch ops" if book else
                       "reference: torch.optim (the book's rule differs: eps placement)"]
        rows = _Checks(dt)
        w0 = rng.normal(size=(FEATURE_DIM, 1)).astype(dt)
        b0 = rng.normal(size=(1,)).astype(dt)
        grads = [[(rng.standard_normal(p.shape) * 10.0 ** rng.uniform(-3, 0, p.shape)).astype(dt) for p in (w0, b0)]
                 for _ in range(OPT_STEPS)]
        expected, expected_states = (_replay(rule.step, rule, (w0, b0), grads, t) if book
                                     else _torch_run(rule, (w0, b0), grads, t))
        causes = list(rule.wrong)
        if not book:  # torch's rule is the reference: the book's own is a cause, torch's placement is not
            causes = [(key, rule.step) for key in rule.d2l_only] + [
                (key, step) for key, step in rule.wrong if key != "eps_outside_d2l"]
        replays = [(key, _replay(step, rule, (w0, b0), grads, t)) for key, step in causes]
        replays.append(("not_in_place", (np.broadcast_to(np.concatenate([w0.ravel(), b0.ravel()]),
                                                         expected.shape), {})))
        try:
            _optimizer_steps(fn, functions.get("init_states"), rule, (w0, b0), grads, t, rows, expected,
                             expected_states, replays)
        except _UserFailure as failure:
            rows.fail(failure)
        return CheckReport(f"d2l_{kind}", " / ".join(_name(f) for f in functions.values()), str(dt), options.seed,
                           conventions, rows.rows())
    return run


def _optimizer_steps(fn: Callable, init: Optional[Callable], rule: _Rule, params0: Sequence[np.ndarray],
                     grads: Sequence[Sequence[np.ndarray]], t: _Tensors, rows: _Checks, expected: np.ndarray,
                     expected_states: Dict[str, np.ndarray], replays: Sequence[Tuple[str, Any]]) -> None:
    params = [t.leaf(p) for p in params0]
    states = _user_states(init, rule, t, rows)
    hyper: Dict[str, Any] = dict(rule.hyperparams)
    path: List[np.ndarray] = []
    state_path: Dict[str, List[np.ndarray]] = {name: [] for name in rule.states}
    t_path: List[float] = []
    zeroed = 0
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = t.plain(g)
        if rule.name == "sgd":
            _call("params", fn, params, hyper["lr"], hyper["batch_size"])
        else:
            _call("params", fn, params, states, hyper)
        path.append(np.concatenate([_array(p).ravel() for p in params]))
        for name in rule.states:
            values = [_array(_state(states, i, name, rule)) for i in range(len(params))]
            state_path[name].append(np.concatenate([np.ravel(v) for v in values]))
        if "t" in hyper:
            t_path.append(float(hyper["t"]))
        zeroed += all(p.grad is None or not bool(p.grad.any()) for p in params)
    rows.judge("params", np.stack(path), expected,
               [(key, replay[0]) for key, replay in replays])
    for name in rule.states:
        rows.judge(f"state {name}", np.stack(state_path[name]), expected_states[name],
                   [(key, replay[1][name]) for key, replay in replays if name in replay[1]])
    if "t" in rule.hyperparams:
        start = rule.hyperparams["t"]
        expected_t = np.arange(start + 1, start + 1 + len(grads), dtype=np.float64)
        rows.judge("hyperparams['t']", np.array(t_path), expected_t,
                   [("t_not_incremented", np.full(len(grads), float(start)))])
    missed = len(grads) - zeroed
    rows.fixed(CheckRow(Comparison("p.grad zeroed", "bool", float(missed), float(missed) / len(grads), missed,
                                   len(grads)), CAUSES["grad_not_zeroed"] if missed else None))


# ---- the registry ---------------------------------------------------------------------------------------------------
#: the book's optimiser names that are also CS231n update rules (built-in kinds): chosen by --kind or signature
SHARED_NAMES = ("sgd", "sgd_momentum", "rmsprop", "adam")


def _init_name(name: str) -> str:
    return "init_" + ("momentum" if name == "sgd_momentum" else name) + "_states"


def _optimizer_kind(name: str) -> Kind:
    rule = RULES[name]
    partners = (_init_name,) if rule.states else ()
    roles = ("update", "init_states") if rule.states else ("update",)
    names = () if name in SHARED_NAMES else (name,)
    return Kind(name=f"d2l_{name}", course=COURSE, names=names, roles=roles, run=_run_optimizer(name),
                summary=f"d2l's {name}({'params, lr, batch_size' if name == 'sgd' else 'params, states, hyperparams'})"
                        f" against the book's rule and torch.optim", partners=partners)


KINDS = [
    register(Kind(name="d2l_batch_norm", course=COURSE, names=("batch_norm",), roles=("batch_norm",),
                  run=_run_batch_norm, summary="d2l's batch_norm(X, gamma, beta, moving_mean, moving_var, eps, "
                                               "momentum): Y, gradients, moving statistics, prediction mode")),
    register(Kind(name="d2l_dropout_layer", course=COURSE, names=("dropout_layer",), roles=("dropout_layer",),
                  run=_run_dropout_layer, summary="d2l's dropout_layer(X, dropout): keep rate, scaling, edge "
                                                  "cases, independent masks")),
    register(Kind(name="d2l_l2_penalty", course=COURSE, names=("l2_penalty",), roles=("l2_penalty",),
                  run=_run_l2_penalty, summary="d2l's l2_penalty(w) = Σw²/2 and its gradient")),
    *(register(_optimizer_kind(name)) for name in ("sgd", "sgd_momentum", "adagrad", "rmsprop", "adadelta",
                                                    "adam")),
]


def kind_for_function(fn: Callable) -> Optional[Kind]:
    """The d2l kind of ``fn`` told by its name AND parameters: ``sgd(params, lr, batch_size)`` or ``sgd(params,
    states, hyperparams)`` and ``adam(params, states, hyperparams)`` are d2l's, ``sgd(w, dw, config)`` CS231n's
    (None here). For a caller that has the function, not only its name."""
    name = getattr(fn, "__name__", "").lower()
    found = next((kind for kind in KINDS if name in kind.names or (name in SHARED_NAMES
                                                                    and kind.name == f"d2l_{name}")), None)
    if found is None:
        return None
    if name in SHARED_NAMES:  # d2l: (params, lr, batch_size) or (params, states, hyperparams); CS231n: (w, dw, config)
        params = _signature(fn)
        if len(params) != 3 or not (params[1] in ("lr", "states") or params[2] in ("batch_size", "hyperparams")):
            return None
    return found


__all__ = ["CAUSES", "KINDS", "RULES", "SHARED_NAMES", "kind_for_function"]
