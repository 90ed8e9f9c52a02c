"""deeplearning.ai courses 1 and 2 (Neural Networks and Deep Learning; Improving Deep Neural Networks): the course's
functions checked against torch, each in its own signature.

The course keeps a network in a dict (``parameters = {"W1": (n1, n0), "b1": (n1, 1), ...}``) and its examples in
COLUMNS (``X`` (n_x, m), ``Y`` (1, m)). Torch is given the same network: the course's W is torch's ``Linear``
weight as it is (both (out, in)), ``b[:, 0]`` its bias and ``X.T`` its input; torch's rows are transposed back to
the course's columns before comparing. Conventions every kind shares (stated in each report):

- the cost is the cross-entropy averaged over the m examples (``F.binary_cross_entropy``, reduction 'mean');
- the course's ``dZ``/``dA`` are gradients of the *summed* loss ``m·J`` (``dZ3 = A3 − Y``, ``dA_prev = W.T·dZ``,
  no 1/m), its ``dW``/``db`` those of ``J`` (``dW = dZ·A_prev.T / m``): torch's autograd gradients of ``J``
  (``retain_grad`` on every Z and A) are multiplied by m for dZ and dA;
- the L2 cost is the course's ``lambd/(2m)·ΣW²`` (biases not penalised), whose gradient ``(lambd/m)·W`` is torch
  SGD's ``weight_decay = lambd/m``;
- inverted dropout: the student's own masks ``D1``, ``D2`` are read from the cache and torch applies the same
  masks, divided by keep_prob; the keep rate of the masks is tested against keep_prob;
- momentum is the course's moving average ``v = β·v + (1 − β)·dW; W −= lr·v``, which is torch's
  ``SGD(lr·(1 − β), momentum=β)`` with ``v = (1 − β)·momentum_buffer``; Adam's ``v``, ``s`` are torch's
  ``exp_avg``, ``exp_avg_sq`` and ``t`` its step count.

Helpers the course supplies in its utility files (``sigmoid``, ``relu``, ``relu_backward``, ``sigmoid_backward``,
``compute_cost``, ``forward_propagation_n``, ``dictionary_to_vector``, ...) are lent to the student's module, for
the duration of the check, only when the module does not define them.

A failed check names its cause when a known wrong formula (recomputed here with NumPy) reproduces the student's
value: see :data:`CAUSES`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..check import CheckReport, CheckRow, _call, _Rows, _unpack, _UserFailure
from ..tolerances import Comparison, compare
from ..twin import to_numpy, to_tensor
from . import Kind, Options, register

COURSE = "dlai"

#: the causes a dlai check can name (a planted bug in tests/parity/test_check_dlai.py for each)
CAUSES = {
    "adam_t_off_by_one": "Adam's bias correction uses t + 1 (or t − 1) instead of t: the step count is off by one "
                         "(the course's loop increments t before calling update_parameters_with_adam)",
    "adam_no_pow_t": "Adam's second moment is corrected by (1 − beta2), not (1 − beta2**t)",
    "adam_first_no_pow_t": "Adam's first moment is corrected by (1 − beta1), not (1 − beta1**t)",
    "adam_no_sqrt": "Adam divides by s_corrected + epsilon, not by sqrt(s_corrected) + epsilon",
    "adam_no_correction": "Adam without the bias corrections v/(1 − beta1**t), s/(1 − beta2**t)",
    "adam_eps_inside": "Adam's epsilon is inside the sqrt: sqrt(s_corrected + epsilon)",
    "momentum_no_one_minus_beta": "momentum without (1 − beta): v = beta·v + dW (torch SGD's buffer) where the "
                                  "course's moving average is v = beta·v + (1 − beta)·dW",
    "momentum_grad_step": "the parameters are updated with the gradient, not the velocity: W −= lr·dW",
    "update_ascent": "the update adds the gradient (W += lr·dW): gradient ascent",
    "update_no_lr": "the learning rate is not applied: W −= dW",
    "l2_cost_over_m": "the L2 cost uses lambd/m instead of the course's lambd/(2m): twice the penalty",
    "l2_cost_no_m": "the L2 cost uses lambd/2 without the 1/m: m times the penalty",
    "l2_cost_with_biases": "the L2 cost also sums the biases' squares; the course penalises the weights only",
    "l2_cost_missing": "the L2 term is missing: the cost is the plain cross-entropy",
    "l2_grad_missing": "dW lacks the L2 term (lambd/m)·W",
    "l2_grad_no_m": "dW's L2 term is lambd·W, without the 1/m",
    "l2_grad_double": "dW's L2 term is 2·(lambd/m)·W: the factor 2 of the square was not cancelled by the 1/2",
    "dropout_backward_no_mask": "the dropout mask is not applied in the backward pass: dA must be multiplied by "
                                "the same D as in the forward pass",
    "dropout_backward_no_scale": "the backward pass does not divide dA by keep_prob",
    "dropout_no_scale": "the kept activations are not divided by keep_prob (inverted dropout scales them by "
                        "1/keep_prob, so nothing changes at test time)",
    "dropout_times_keep": "the kept activations are multiplied by keep_prob instead of divided",
    "dropout_over_drop": "the kept activations are divided by 1 − keep_prob: keep_prob read as the drop "
                         "probability",
    "dropout_keep_as_drop": "the mask keeps units with probability 1 − keep_prob (D > keep_prob): keep_prob was "
                            "used as the drop probability",
    "dropout_mask_all": "the mask keeps every unit: D was not thresholded against keep_prob",
    "cost_no_mean": "the cross-entropy is summed over the m examples, not averaged (the 1/m is missing)",
    "cost_sign": "the cost has the wrong sign: the course's cost is −(1/m)·Σ(Y·log AL + (1 − Y)·log(1 − AL))",
    "dal_sign": "L_model_backward starts from dAL with the wrong sign: dAL = −(Y/AL − (1 − Y)/(1 − AL))",
    "da_prev_over_m": "dA_prev is divided by m: the course's dA_prev = W.T·dZ has no 1/m (only dW and db do)",
    "dw_no_m": "dW and db lack the 1/m",
    "relu_last": "the output layer uses ReLU: the course's L_model_forward ends with a sigmoid",
    "sigmoid_hidden": "the hidden layers use sigmoid: the course's L_model_forward uses ReLU before the output",
    "activation_swapped": "'relu' and 'sigmoid' are swapped",
    "minibatch_drop_last": "the last, partial mini-batch is dropped (m is not a multiple of mini_batch_size)",
    "minibatch_repeat": "some examples appear in several mini-batches and others in none: the slices overlap",
    "minibatch_unpaired": "X and Y are shuffled with different permutations: the labels no longer match the "
                          "examples",
    "minibatch_no_shuffle": "the examples are not shuffled (np.random.permutation(m) is not applied)",
    "gradcheck_alias_plus": "thetaplus = parameters_values aliases the vector (no np.copy): each +epsilon stays, "
                            "so J_plus[i] is computed with every earlier parameter still perturbed",
    "gradcheck_alias_both": "thetaplus and thetaminus alias parameters_values: thetaminus undoes thetaplus, so "
                            "J_minus is the unperturbed cost and gradapprox is half the one-sided difference",
    "gradcheck_no_2eps": "gradapprox is divided by epsilon, not 2·epsilon",
    "gradcheck_norm": "difference is not ‖grad − gradapprox‖ / (‖grad‖ + ‖gradapprox‖)",
    "lr_decay_paren": "the decay reads learning_rate0 / (1 + decay_rate) · epoch_num: the parentheses are missing",
    "lr_decay_no_floor": "epoch_num / time_interval is not floored: the rate decays every epoch, not in steps",
    "lr_decay_no_interval": "time_interval is ignored: the rate decays every epoch as update_lr's does",
    "init_no_scale": "the weights are not scaled by 0.01 (std 1)",
    "init_he": "the weights are He-scaled (sqrt(2/n_prev)); initialize_parameters_deep's exercise uses 0.01",
    "init_sqrt_n": "the weights are scaled by 1/sqrt(n_prev) (the course's dnn_app_utils); the exercise uses 0.01",
    "init_uniform": "the weights are uniform (np.random.rand) instead of normal (np.random.randn)",
}


def _cause(key: str) -> str:
    """The sentence of a cause; ``'name#variant'`` is one more hypothesis for the same cause."""
    return CAUSES[key.split("#")[0]]


# ---- rows -----------------------------------------------------------------------------------------------------------
class _Checks:
    """The rows of one report: comparisons under the tolerance table, a failed one named by the first hypothesis
    (a known wrong formula's value) that reproduces the student's value and not torch's."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.rows = _Rows(self.dtype)

    def _compare(self, check: str, actual: Any, expected: Any) -> CheckRow:
        expected = to_numpy(expected) if isinstance(expected, torch.Tensor) else np.asarray(expected)
        # the course's code mixes float64 constants and int64 masks into float32 arrays: values are compared in the
        # check's dtype
        if actual is not None:
            try:
                arr = np.array(actual, copy=True)
            except (ValueError, TypeError):
                arr = None
            if arr is not None and arr.dtype.kind in "fiub" and expected.dtype.kind == "f":
                actual = arr.astype(expected.dtype)
        tmp = _Rows(self.dtype)
        tmp.add(check, actual, expected)
        return tmp.rows()[0]

    def add(self, check: str, actual: Any, expected: Any,
            causes: Sequence[Tuple[str, Any]] = ()) -> CheckRow:
        row = self._compare(check, actual, expected)
        if not row.passed:
            cause = _fitting(actual, expected, causes, self.dtype)
            if cause is not None:
                row = CheckRow(row.comparison, _cause(cause), row.actual, row.expected)
        self.rows.fixed(row)
        return row

    def verdict(self, check: str, passed: bool, detail: str, cause: Optional[str] = None,
                value: float = 0.0) -> CheckRow:
        """A yes/no check (a statistic, a structure): ``detail`` says what was found against what was expected."""
        comparison = Comparison(check, str(self.dtype), 0.0 if passed else abs(value), 0.0 if passed else 1.0,
                                0 if passed else 1, 1, "" if passed else detail)
        row = CheckRow(comparison, _cause(cause) if cause and not passed else None)
        self.rows.fixed(row)
        return row

    def fail(self, failure: _UserFailure) -> None:
        self.rows.fail(failure)

    def report(self, kind: str, function: Callable, options: Options, conventions: List[str]) -> CheckReport:
        return CheckReport(kind, getattr(function, "__name__", "function"), str(self.dtype), options.seed,
                           conventions, self.rows.rows())


def _fitting(actual: Any, expected: Any, causes: Sequence[Tuple[str, Any]], dtype: np.dtype) -> Optional[str]:
    """The first cause whose hypothesis reproduces ``actual`` and is distinguishable from ``expected``, both
    under the tolerance of the check's ``dtype`` (the hypotheses are computed in float64)."""
    try:
        a = np.asarray(actual, dtype=dtype)
        e = np.asarray(to_numpy(expected) if isinstance(expected, torch.Tensor) else expected, dtype=dtype)
    except (ValueError, TypeError):
        return None
    for name, hypothesis in causes:
        if hypothesis is None:
            continue
        h = np.asarray(hypothesis, dtype=np.float64).astype(dtype)
        if h.shape != a.shape:
            continue
        if h.shape == e.shape and compare("hypothesis", h, e).passed:
            continue
        with np.errstate(all="ignore"):
            if compare("fit", a, h).passed:
                return name
    return None


def _hyp(causes: Mapping[str, Mapping[str, Any]], key: str) -> List[Tuple[str, Any]]:
    """The hypotheses for one entry of a dict output: ``causes`` maps a cause to its whole hypothetical dict."""
    return [(name, values.get(key)) for name, values in causes.items() if values is not None]


def _entry(check: str, container: Any, key: Any) -> Any:
    """``container[key]`` or a failure naming what is missing."""
    try:
        return container[key]
    except (KeyError, IndexError, TypeError):
        kind = "dict" if isinstance(container, dict) else type(container).__name__
        raise _UserFailure(check, f"expected the key {key!r} in the returned {kind}, which has "
                                  f"{sorted(container) if isinstance(container, dict) else 'no such entry'}")


# ---- calling the student's code -------------------------------------------------------------------------------------
@contextmanager
def _lent(fn: Callable, helpers: Mapping[str, Callable]) -> Iterator[List[str]]:
    """The course's helper functions lent to ``fn``'s module for the check, only those it does not define; the
    global NumPy random state is restored afterwards (the course's functions seed it themselves)."""
    namespace = getattr(fn, "__globals__", {})
    added = [name for name in helpers if name not in namespace]
    for name in added:
        namespace[name] = helpers[name]
    state = np.random.get_state()
    try:
        yield added
    finally:
        np.random.set_state(state)
        for name in added:
            namespace.pop(name, None)


def _lent_note(added: List[str]) -> List[str]:
    return [f"course helpers lent to your module (it does not define them): {', '.join(added)}"] if added else []


def _dtype(options: Options) -> np.dtype:
    dt = np.dtype(options.dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, but got {options.dtype!r}")
    return dt


def _tensor(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    t = to_tensor(np.ascontiguousarray(a))
    return t.requires_grad_(True) if grad else t


def _np(t: torch.Tensor) -> np.ndarray:
    return to_numpy(t.detach())


# ---- the course's helpers (dnn_utils, reg_utils, gc_utils), lent when missing -------------------------------------
def _sigmoid_cached(Z):
    return 1 / (1 + np.exp(-Z)), Z


def _relu_cached(Z):
    return np.maximum(0, Z), Z


def _relu_backward(dA, cache):
    Z = cache
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def _sigmoid_backward(dA, cache):
    s = 1 / (1 + np.exp(-cache))
    return dA * s * (1 - s)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _relu(x):
    return np.maximum(0, x)


def _course_cost(a3, Y):
    m = Y.shape[1]
    logprobs = np.multiply(-np.log(a3), Y) + np.multiply(-np.log(1 - a3), 1 - Y)
    return 1. / m * np.nansum(logprobs)


def _course_linear_forward(A, W, b):
    return W.dot(A) + b, (A, W, b)


def _course_linear_activation_forward(A_prev, W, b, activation):
    Z, linear_cache = _course_linear_forward(A_prev, W, b)
    A, activation_cache = (_sigmoid_cached if activation == "sigmoid" else _relu_cached)(Z)
    return A, (linear_cache, activation_cache)


def _course_linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    return np.dot(W.T, dZ), 1. / m * np.dot(dZ, A_prev.T), 1. / m * np.sum(dZ, axis=1, keepdims=True)


def _course_linear_activation_backward(dA, cache, activation):
    linear_cache, activation_cache = cache
    dZ = (_sigmoid_backward if activation == "sigmoid" else _relu_backward)(dA, activation_cache)
    return _course_linear_backward(dZ, linear_cache)


DNN_HELPERS = {"sigmoid": _sigmoid_cached, "relu": _relu_cached, "relu_backward": _relu_backward,
               "sigmoid_backward": _sigmoid_backward, "linear_forward": _course_linear_forward,
               "linear_activation_forward": _course_linear_activation_forward,
               "linear_backward": _course_linear_backward,
               "linear_activation_backward": _course_linear_activation_backward}
REG_HELPERS = {"sigmoid": _sigmoid, "relu": _relu, "compute_cost": _course_cost}

#: gc_utils' fixed network: W1 (5, 4), b1 (5, 1), W2 (3, 5), b2 (3, 1), W3 (1, 3), b3 (1, 1); X (4, m)
GRADCHECK_SHAPES = (("W1", (5, 4)), ("b1", (5, 1)), ("W2", (3, 5)), ("b2", (3, 1)), ("W3", (1, 3)), ("b3", (1, 1)))


def _dictionary_to_vector(parameters):
    keys, chunks = [], []
    for key, _ in GRADCHECK_SHAPES:
        new_vector = np.reshape(parameters[key], (-1, 1))
        keys = keys + [key] * new_vector.shape[0]
        chunks.append(new_vector)
    return np.concatenate(chunks, axis=0), keys


def _vector_to_dictionary(theta):
    parameters, start = {}, 0
    for key, shape in GRADCHECK_SHAPES:
        size = int(np.prod(shape))
        parameters[key] = theta[start:start + size].reshape(shape)
        start += size
    return parameters


def _gradients_to_vector(gradients):
    return np.concatenate([np.reshape(gradients["d" + key], (-1, 1)) for key, _ in GRADCHECK_SHAPES], axis=0)


def _forward_propagation_n(X, Y, parameters):
    m = X.shape[1]
    W1, b1, W2, b2, W3, b3 = (parameters[k] for k, _ in GRADCHECK_SHAPES)
    Z1 = np.dot(W1, X) + b1
    A1 = _relu(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = _relu(Z2)
    Z3 = np.dot(W3, A2) + b3
    A3 = _sigmoid(Z3)
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1. / m * np.sum(logprobs)
    return cost, (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)


GC_HELPERS = {"relu": _relu, "sigmoid": _sigmoid, "forward_propagation_n": _forward_propagation_n,
              "dictionary_to_vector": _dictionary_to_vector, "vector_to_dictionary": _vector_to_dictionary,
              "gradients_to_vector": _gradients_to_vector}


# ---- torch's network ------------------------------------------------------------------------------------------------
def _network(rng: np.random.Generator, dims: Sequence[int], m: int, dt: np.dtype
             ) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """X (n0, m), Y (1, m) of 0/1 labels (both present), parameters W_l ~ N(0, 1/n_{l−1}), b_l ~ N(0, 0.5²)."""
    X = rng.normal(size=(dims[0], m)).astype(dt)
    Y = (rng.random((1, m)) < 0.5).astype(dt)
    Y[0, :2] = (0, 1)
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = rng.normal(0, 1 / np.sqrt(dims[l - 1]), (dims[l], dims[l - 1])).astype(dt)
        params[f"b{l}"] = rng.normal(0, 0.5, (dims[l], 1)).astype(dt)
    return X, Y, params


def _torch_net(X: np.ndarray, Y: Optional[np.ndarray], params: Mapping[str, np.ndarray], L: int, *,
               lambd: float = 0.0, masks: Optional[Mapping[int, np.ndarray]] = None, keep_prob: float = 1.0,
               hidden: str = "relu") -> Dict[str, Any]:
    """The course's network in torch (examples in rows): Linear (W as the weight, b[:, 0] as the bias) then ReLU,
    the output layer sigmoid; the cost is F.binary_cross_entropy (mean over m) + lambd/(2m)·ΣW². Returns the
    course's values in its column layout: Z{l}, A{l} (A after dropout when masks are given), AL, cost, and
    after backward the course's gradients dW{l}, db{l}, dZ{l} (×m), dA{l} (×m; before dropout's mask)."""
    m = X.shape[1]
    leaves = {k: _tensor(v, grad=True) for k, v in params.items()}
    A = _tensor(X.T, grad=True)
    out: Dict[str, Any] = {}
    acts = {0: A}
    zs = {}
    for l in range(1, L + 1):
        Z = F.linear(A, leaves[f"W{l}"], leaves[f"b{l}"][:, 0])
        Z.retain_grad()
        zs[l] = Z
        if l < L:
            A = torch.relu(Z) if hidden == "relu" else torch.sigmoid(Z)
            A.retain_grad()
            acts[l] = A
            if masks is not None:
                A = A * _tensor(masks[l].T.astype(X.dtype)) / keep_prob
            out[f"A{l}"] = _np(A).T
        else:
            A = torch.sigmoid(Z)
            acts[l] = A
        out[f"Z{l}"] = _np(Z).T
    out["AL"] = _np(A).T
    if Y is None:
        return out
    cost = F.binary_cross_entropy(A, _tensor(Y.T))
    if lambd:
        cost = cost + lambd / (2 * m) * sum((leaves[f"W{l}"] ** 2).sum() for l in range(1, L + 1))
    cost.backward()
    out["cost"] = _np(cost)
    for l in range(1, L + 1):
        out[f"dW{l}"] = to_numpy(leaves[f"W{l}"].grad)
        out[f"db{l}"] = to_numpy(leaves[f"b{l}"].grad)
        out[f"dZ{l}"] = m * to_numpy(zs[l].grad).T
    for l in range(0, L):
        out[f"dA{l}"] = m * to_numpy(acts[l].grad).T
    return out


def _course_backward(X: np.ndarray, Y: np.ndarray, params: Mapping[str, np.ndarray], L: int, *,
                     lambd: float = 0.0, l2_factor: float = 1.0, masks: Optional[Mapping[int, np.ndarray]] = None,
                     keep_prob: float = 1.0, apply_mask: bool = True, scale: Optional[float] = None,
                     forward_scale: Optional[float] = None) -> Dict[str, np.ndarray]:
    """The course's forward and backward in NumPy, float64, with the knobs of the known wrong variants: the L2
    term ``l2_factor·(lambd/m)·W``, the dropout mask applied (or not) and dA scaled by ``scale`` (1/keep_prob) in
    backward, the forward's kept units scaled by ``forward_scale`` (1/keep_prob)."""
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = X.shape[1]
    fs = 1 / keep_prob if forward_scale is None else forward_scale
    bs = 1 / keep_prob if scale is None else scale
    A = {0: X64}
    Z = {}
    for l in range(1, L + 1):
        Z[l] = p[f"W{l}"] @ A[l - 1] + p[f"b{l}"]
        if l < L:
            A[l] = np.maximum(Z[l], 0)
            if masks is not None:
                A[l] = A[l] * masks[l] * fs
        else:
            A[l] = _sigmoid(Z[l])
    grads: Dict[str, np.ndarray] = {"AL": A[L], "cost": _course_cost(A[L], Y64) + lambd / (2 * m) * sum(
        np.sum(np.square(p[f"W{l}"])) for l in range(1, L + 1))}
    for l in range(1, L):
        grads[f"A{l}"] = A[l]
        grads[f"Z{l}"] = Z[l]
    dZ = A[L] - Y64
    for l in range(L, 0, -1):
        grads[f"dZ{l}"] = dZ
        grads[f"dW{l}"] = dZ @ A[l - 1].T / m + l2_factor * lambd / m * p[f"W{l}"]
        grads[f"db{l}"] = np.sum(dZ, axis=1, keepdims=True) / m
        dA = p[f"W{l}"].T @ dZ
        if l > 1:
            if masks is not None:
                if apply_mask:
                    dA = dA * masks[l - 1]
                dA = dA * bs
            grads[f"dA{l - 1}"] = dA
            dZ = dA * (A[l - 1] > 0)
        else:
            grads["dA0"] = dA
    return grads


def _shape_of(value: Any) -> str:
    return str(np.shape(value)) if isinstance(value, np.ndarray) else type(value).__name__


# ---- C1: initialize_parameters_deep -----------------------------------------------------------------------------
INIT_DIMS = (40, 30, 25, 1)
INIT_SCALE = 0.01


def _run_initialize_deep(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["initialize"]
    checks = _Checks(np.float64)
    dims = list(INIT_DIMS)
    conventions = [f"layer_dims {dims}: W{{l}} (n_l, n_l−1) ~ N(0, {INIT_SCALE}²) (np.random.randn · 0.01), "
                   "b{l} zeros (n_l, 1); the weights' std and normality are tested (KS), not their values",
                   "the course seeds np.random inside the function; the global state is restored afterwards"]
    try:
        with _lent(fn, {}):
            params = _call("parameters", fn, list(dims))
        if not isinstance(params, dict):
            raise _UserFailure("parameters", f"expected a dict of W1, b1, ..., got {type(params).__name__}")
        weights = []
        for l in range(1, len(dims)):
            w = _entry(f"W{l} shape", params, f"W{l}")
            b = _entry(f"b{l}", params, f"b{l}")
            shape = (dims[l], dims[l - 1])
            checks.verdict(f"W{l} shape", np.shape(w) == shape, f"shape {_shape_of(w)} != expected {shape}")
            checks.add(f"b{l}", b, np.zeros((dims[l], 1)))
            if np.shape(w) == shape:
                weights.append((l, np.asarray(w, dtype=np.float64)))
        _weight_statistics(checks, weights, dims)
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("initialize_parameters_deep", fn, options, conventions)


def _weight_statistics(checks: _Checks, weights: List[Tuple[int, np.ndarray]], dims: Sequence[int]) -> None:
    from scipy import stats

    for l, w in weights:
        n = w.size
        std = float(w.std())
        # the sample std of n normal draws has relative standard error 1/sqrt(2n): 6 of them is the tolerance
        tol = 6 / np.sqrt(2 * n)
        ok_std = abs(std / INIT_SCALE - 1) <= tol
        cause = None
        if not ok_std:
            for key, scale in (("init_no_scale", 1.0), ("init_he", np.sqrt(2 / dims[l - 1])),
                               ("init_sqrt_n", 1 / np.sqrt(dims[l - 1]))):
                if abs(std / scale - 1) <= tol:
                    cause = key
                    break
        if cause is None and w.min() >= 0 and not ok_std:
            cause = "init_uniform"
        checks.verdict(f"W{l} std", ok_std, f"std {std:.4g} != expected {INIT_SCALE} (±{tol * INIT_SCALE:.2g})",
                       cause, value=std - INIT_SCALE)
        mean_tol = 6 * INIT_SCALE / np.sqrt(n)
        mean = float(w.mean())
        checks.verdict(f"W{l} mean", abs(mean) <= mean_tol, f"mean {mean:.3g} != expected 0 (±{mean_tol:.2g})",
                       "init_uniform" if w.min() >= 0 else None, value=mean)
        p_value = float(stats.kstest(w.ravel() / (std if std > 0 else 1), "norm").pvalue) if n >= 20 else 1.0
        checks.verdict(f"W{l} normal (KS)", p_value > 1e-4,
                       f"Kolmogorov–Smirnov p-value {p_value:.2g} against a normal distribution (expected > 1e-4)",
                       "init_uniform" if w.min() >= 0 or p_value <= 1e-4 else None)


# ---- C1: forward pieces ---------------------------------------------------------------------------------------------
def _run_linear_forward(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["forward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    X, _, params = _network(rng, (5, 3), 7, dt)
    conventions = ["A (5, 7) with examples in columns, W (3, 5), b (3, 1): torch F.linear(A.T, W, b[:, 0]).T",
                   "cache = (A, W, b)"]
    try:
        result = _call("Z", fn, X.copy(), params["W1"].copy(), params["b1"].copy())
        Z, cache = _unpack("Z", result, 2, "(Z, cache)")
        expected = _torch_net(X, None, params, 1)["Z1"]
        checks.add("Z", Z, expected)
        cached = _unpack("cache", cache, 3, "cache = (A, W, b)")
        for name, value, given in zip(("cache A", "cache W", "cache b"), cached, (X, params["W1"], params["b1"])):
            checks.add(name, value, given)
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("linear_forward", fn, options, conventions)


def _activation_causes(out_other: np.ndarray) -> List[Tuple[str, Any]]:
    return [("activation_swapped", out_other)]


def _run_linear_activation_forward(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["forward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    X, _, params = _network(rng, (5, 3), 7, dt)
    W, b = params["W1"], params["b1"]
    conventions = ["A_prev (5, 7) with examples in columns, W (3, 5), b (3, 1); activation 'sigmoid' and 'relu': "
                   "torch.sigmoid / torch.relu of F.linear(A_prev.T, W, b[:, 0])",
                   "cache = ((A_prev, W, b), Z)"]
    Zt = F.linear(_tensor(X.T), _tensor(W), _tensor(b[:, 0]))
    outs = {"sigmoid": _np(torch.sigmoid(Zt)).T, "relu": _np(torch.relu(Zt)).T}
    added: List[str] = []
    for activation, other in (("sigmoid", "relu"), ("relu", "sigmoid")):
        try:
            with _lent(fn, DNN_HELPERS) as added:
                result = _call(f"A ({activation})", fn, X.copy(), W.copy(), b.copy(), activation)
            A, cache = _unpack(f"A ({activation})", result, 2, "(A, cache)")
            checks.add(f"A ({activation})", A, outs[activation], _activation_causes(outs[other]))
            if isinstance(cache, tuple) and len(cache) == 2:
                checks.add(f"cache Z ({activation})", cache[1], _np(Zt).T)
            else:
                checks.verdict(f"cache Z ({activation})", False,
                               f"expected cache = (linear_cache, Z), got {_shape_of(cache)}")
        except _UserFailure as failure:
            checks.fail(failure)
    return checks.report("linear_activation_forward", fn, options, conventions + _lent_note(added))


DEEP_DIMS = (5, 4, 3, 1)
DEEP_M = 7


def _run_L_model_forward(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["forward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    X, _, params = _network(rng, DEEP_DIMS, DEEP_M, dt)
    L = len(DEEP_DIMS) - 1
    conventions = [f"layer_dims {list(DEEP_DIMS)}, m = {DEEP_M}: [Linear → ReLU] × {L - 1} → Linear → sigmoid "
                   "in torch (W as the weight, X.T as the input)",
                   "caches: one ((A_prev, W, b), Z) per layer, checked by Z"]
    expected = _torch_net(X, None, params, L)
    with torch.no_grad():
        A = _tensor(X.T)
        for l in range(1, L + 1):
            A = torch.relu(F.linear(A, _tensor(params[f"W{l}"]), _tensor(params[f"b{l}"][:, 0])))
        relu_last = _np(A).T
        A = _tensor(X.T)
        for l in range(1, L + 1):
            A = torch.sigmoid(F.linear(A, _tensor(params[f"W{l}"]), _tensor(params[f"b{l}"][:, 0])))
        all_sigmoid = _np(A).T
    added: List[str] = []
    try:
        with _lent(fn, DNN_HELPERS) as added:
            result = _call("AL", fn, X.copy(), {k: v.copy() for k, v in params.items()})
        AL, caches = _unpack("AL", result, 2, "(AL, caches)")
        checks.add("AL", AL, expected["AL"], [("relu_last", relu_last), ("sigmoid_hidden", all_sigmoid)])
        try:
            count = len(caches)
        except TypeError:
            raise _UserFailure("caches", f"expected a list of {L} caches, got {type(caches).__name__}")
        checks.verdict("caches", count == L, f"{count} caches != expected {L} (one per layer)")
        for l in range(1, min(count, L) + 1):
            cache = caches[l - 1]
            Z = cache[1] if isinstance(cache, tuple) and len(cache) == 2 else None
            checks.add(f"cache Z{l}", Z, expected[f"Z{l}"])
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("L_model_forward", fn, options, conventions + _lent_note(added))


# ---- C1: cost -------------------------------------------------------------------------------------------------------
def _scalar(value: Any) -> Any:
    """A course cost (a float, a 0-d array or a (1, 1) array, squeezed by the course) as a 0-d array."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        return value
    return arr.reshape(()) if arr.size == 1 else arr


def _run_compute_cost(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["cost"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    m = 9
    AL = rng.uniform(0.05, 0.95, (1, m)).astype(dt)
    Y = (rng.random((1, m)) < 0.5).astype(dt)
    Y[0, :2] = (0, 1)
    conventions = [f"AL (1, {m}) in (0, 1), Y (1, {m}) of 0/1: torch F.binary_cross_entropy (mean over m); a cost "
                   "of size 1 is compared as a scalar (the course squeezes it)"]
    expected = F.binary_cross_entropy(_tensor(AL), _tensor(Y))
    e = float(expected)
    try:
        cost = _call("cost", fn, AL.copy(), Y.copy())
        checks.add("cost", _scalar(cost), expected, [("cost_no_mean", m * e), ("cost_sign", -e)])
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("compute_cost", fn, options, conventions)


# ---- C1: backward pieces --------------------------------------------------------------------------------------------
GRADIENT_CONVENTION = ("dZ and dA are gradients of the summed loss m·J (the course's dA_prev = W.T·dZ, no 1/m), dW "
                       "and db those of J (1/m): torch's autograd gradients of J, dZ and dA multiplied by m")


def _run_linear_backward(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["backward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    m = 7
    X, _, params = _network(rng, (5, 3), m, dt)
    W, b = params["W1"], params["b1"]
    dZ = rng.normal(size=(3, m)).astype(dt)
    conventions = ["cache = (A_prev, W, b), A_prev (5, 7), W (3, 5), b (3, 1), dZ (3, 7)", GRADIENT_CONVENTION]
    At, Wt, bt = _tensor(X.T, True), _tensor(W, True), _tensor(b, True)
    Z = F.linear(At, Wt, bt[:, 0])
    Z.backward(_tensor(dZ.T) / m)  # J = Σ dZ ⊙ Z / m
    expected = {"dA_prev": m * to_numpy(At.grad).T, "dW": to_numpy(Wt.grad), "db": to_numpy(bt.grad)}
    try:
        result = _call("dA_prev", fn, dZ.copy(), (X.copy(), W.copy(), b.copy()))
        dA_prev, dW, db = _unpack("dA_prev", result, 3, "(dA_prev, dW, db)")
        checks.add("dA_prev", dA_prev, expected["dA_prev"], [("da_prev_over_m", expected["dA_prev"] / m)])
        checks.add("dW", dW, expected["dW"], [("dw_no_m", m * expected["dW"])])
        checks.add("db", db, expected["db"], [("dw_no_m", m * expected["db"])])
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("linear_backward", fn, options, conventions)


def _run_linear_activation_backward(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["backward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    m = 7
    X, _, params = _network(rng, (5, 3), m, dt)
    W, b = params["W1"], params["b1"]
    dA = rng.normal(size=(3, m)).astype(dt)
    conventions = ["cache = ((A_prev, W, b), Z); activation 'sigmoid' and 'relu'", GRADIENT_CONVENTION]
    added: List[str] = []
    results = {}
    for activation in ("sigmoid", "relu"):
        At, Wt, bt = _tensor(X.T, True), _tensor(W, True), _tensor(b, True)
        Z = F.linear(At, Wt, bt[:, 0])
        A = torch.sigmoid(Z) if activation == "sigmoid" else torch.relu(Z)
        A.backward(_tensor(dA.T) / m)
        results[activation] = {"dA_prev": m * to_numpy(At.grad).T, "dW": to_numpy(Wt.grad),
                               "db": to_numpy(bt.grad), "Z": _np(Z).T}
    for activation, other in (("sigmoid", "relu"), ("relu", "sigmoid")):
        expected = results[activation]
        try:
            cache = ((X.copy(), W.copy(), b.copy()), expected["Z"].copy())
            with _lent(fn, DNN_HELPERS) as added:
                result = _call(f"dA_prev ({activation})", fn, dA.copy(), cache, activation)
            grads = _unpack(f"dA_prev ({activation})", result, 3, "(dA_prev, dW, db)")
            for name, value in zip(("dA_prev", "dW", "db"), grads):
                causes = [("activation_swapped", results[other][name])]
                if name == "dA_prev":
                    causes.append(("da_prev_over_m", expected[name] / m))
                else:
                    causes.append(("dw_no_m", m * expected[name]))
                checks.add(f"{name} ({activation})", value, expected[name], causes)
        except _UserFailure as failure:
            checks.fail(failure)
    return checks.report("linear_activation_backward", fn, options, conventions + _lent_note(added))


def _grads_dA_key(grads: Mapping[str, Any], L: int) -> Tuple[Callable[[int], str], str]:
    """The course's two dA numberings: dA{l} = ∂/∂A^[l] (dA0 ... dA{L−1}, current) or the 2017 version's
    dA{l+1} = ∂/∂A^[l] (dA1 ... dA{L})."""
    if "dA0" in grads or f"dA{L}" not in grads:
        return (lambda l: f"dA{l}"), "dA{l} is the gradient of A^[l] (dA0 ... dA{L−1})"
    return (lambda l: f"dA{l + 1}"), ("dA{l+1} is the gradient of A^[l] (dA1 ... dA{L}, the 2017 numbering); "
                                      "compared by layer")


def _run_L_model_backward(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["backward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    X, Y, params = _network(rng, DEEP_DIMS, DEEP_M, dt)
    L = len(DEEP_DIMS) - 1
    expected = _torch_net(X, Y, params, L)
    conventions = [f"layer_dims {list(DEEP_DIMS)}, m = {DEEP_M}; caches built as the course's L_model_forward "
                   "builds them; torch: autograd of F.binary_cross_entropy (mean) through the same network",
                   GRADIENT_CONVENTION]
    caches = []
    A_prev = X
    for l in range(1, L + 1):
        caches.append(((A_prev.copy(), params[f"W{l}"].copy(), params[f"b{l}"].copy()), expected[f"Z{l}"].copy()))
        A_prev = expected[f"A{l}"] if l < L else expected["AL"]
    AL = expected["AL"]
    negated = {k: -v for k, v in expected.items()}
    added: List[str] = []
    try:
        with _lent(fn, DNN_HELPERS) as added:
            grads = _call("grads", fn, AL.copy(), Y.copy(), caches)
        if not isinstance(grads, dict):
            raise _UserFailure("grads", f"expected a dict of dA, dW, db, got {type(grads).__name__}")
        key_of, numbering = _grads_dA_key(grads, L)
        conventions.append(numbering)
        for l in range(L, 0, -1):
            for name in (f"dW{l}", f"db{l}"):
                checks.add(name, _entry(name, grads, name), expected[name], [("dal_sign", negated[name])])
        for l in range(L - 1, -1, -1):
            key = key_of(l)
            checks.add(f"dA{l}", _entry(f"dA{l}", grads, key), expected[f"dA{l}"],
                       [("dal_sign", negated[f"dA{l}"]), ("da_prev_over_m", expected[f"dA{l}"] / DEEP_M)])
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("L_model_backward", fn, options, conventions + _lent_note(added))


# ---- updates: update_parameters / update_parameters_with_gd, momentum, Adam --------------------------------------
UPDATE_DIMS = (4, 3, 2)
UPDATE_STEPS = 4


def _update_setup(options: Options) -> Tuple[np.dtype, Dict[str, np.ndarray], List[Dict[str, np.ndarray]], int]:
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    _, _, params = _network(rng, UPDATE_DIMS, 3, dt)
    grads = [{f"d{k}": rng.normal(size=v.shape).astype(dt) for k, v in params.items()} for _ in range(UPDATE_STEPS)]
    return dt, params, grads, len(UPDATE_DIMS) - 1


class _Trajectory:
    """Every step's returned dicts (parameters, v, s), compared at the end as one row per entry: the whole
    trajectory stacked (steps, *shape), torch's and each hypothesis' likewise."""

    def __init__(self) -> None:
        self.ours: Dict[str, List[Any]] = {}
        self.theirs: Dict[str, List[np.ndarray]] = {}

    def take(self, what: str, returned: Any, expected: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Record one step of the dict ``what`` and return it (copied) for the next call."""
        if not isinstance(returned, dict):
            raise _UserFailure(what, f"expected the dict {what}, got {type(returned).__name__}")
        prefix = "" if what == "parameters" else f"{what} "
        kept = {}
        for key, value in expected.items():
            mine = _entry(f"{prefix}{key}", returned, key)
            self.ours.setdefault(prefix + key, []).append(None if mine is None else np.array(mine, copy=True))
            self.theirs.setdefault(prefix + key, []).append(value)
            kept[key] = np.array(mine, copy=True)
        return kept

    def rows(self, checks: _Checks, hypotheses: Mapping[str, Sequence[Mapping[str, np.ndarray]]]) -> None:
        for name, ours in self.ours.items():
            theirs = np.stack(self.theirs[name])
            shape = theirs.shape[1:]
            bad = [o for o in ours if o is None or o.shape != shape or o.dtype.kind not in "fiub"]
            actual = bad[0] if bad else np.stack(ours)
            causes = []
            for cause, trajectory in hypotheses.items():
                if len(trajectory) >= len(ours) and name in trajectory[0]:
                    causes.append((cause, np.stack([step[name] for step in trajectory[:len(ours)]])))
            checks.add(name, actual, theirs, causes)


def _simulate(params: Mapping[str, np.ndarray], grads: Sequence[Mapping[str, np.ndarray]],
              step: Callable[[np.ndarray, np.ndarray, Dict[str, Any], int], np.ndarray]
              ) -> List[Dict[str, np.ndarray]]:
    """A NumPy (float64) update rule ``step(w, g, state, t)`` run over the gradients: per step, every parameter
    under its own name and the rule's state as ``'v dW1'``, ``'s dW1'`` (the names of the report's rows)."""
    current = {k: v.astype(np.float64) for k, v in params.items()}
    states: Dict[str, Dict[str, Any]] = {k: {} for k in params}
    out = []
    for t, g in enumerate(grads, start=1):
        current = {k: step(current[k], g[f"d{k}"].astype(np.float64), states[k], t) for k in current}
        record = dict(current)
        for k, state in states.items():
            record.update({f"{name} d{k}": np.array(value) for name, value in state.items()})
        out.append(record)
    return out


def _run_update_parameters(functions: Mapping[str, Callable], options: Options, name: str) -> CheckReport:
    fn = functions["update"]
    dt, params, grads, L = _update_setup(options)
    lr = 0.1
    checks = _Checks(dt)
    conventions = [f"{len(grads)} steps with random gradients, learning_rate {lr}: torch SGD(lr={lr}) on "
                   "W1, b1, ...; the parameters returned are passed to the next step; each row is the whole "
                   "trajectory"]
    leaves = {k: torch.nn.Parameter(_tensor(v)) for k, v in params.items()}
    opt = torch.optim.SGD(list(leaves.values()), lr=lr)
    hypotheses = {"update_ascent": _simulate(params, grads, lambda w, g, s, t: w + lr * g),
                  "update_no_lr": _simulate(params, grads, lambda w, g, s, t: w - g)}
    trajectory = _Trajectory()
    current = {k: v.copy() for k, v in params.items()}
    try:
        for step, g in enumerate(grads, start=1):
            returned = _call(f"parameters (step {step})", fn, current, {k: v.copy() for k, v in g.items()}, lr)
            for k, leaf in leaves.items():
                leaf.grad = _tensor(g[f"d{k}"])
            opt.step()
            current = trajectory.take("parameters", returned, {k: _np(leaf) for k, leaf in leaves.items()})
    except _UserFailure as failure:
        checks.fail(failure)
    trajectory.rows(checks, hypotheses)
    return checks.report(name, fn, options, conventions)


def _zeros_check(name: str, outputs: int) -> Callable[[Mapping[str, Callable], Options], CheckReport]:
    def run(functions: Mapping[str, Callable], options: Options) -> CheckReport:
        fn = functions["initialize"]
        dt, params, _, _ = _update_setup(options)
        checks = _Checks(dt)
        conventions = [f"parameters of layer_dims {list(UPDATE_DIMS)}: every dW{{l}}, db{{l}} a zero array of its "
                       "parameter's shape"]
        try:
            result = _call("v", fn, {k: v.copy() for k, v in params.items()})
            dicts = (result,) if outputs == 1 else _unpack("v", result, outputs, "(v, s)")
            for label, d in zip(("v", "s"), dicts):
                if not isinstance(d, dict):
                    raise _UserFailure(label, f"expected the dict {label}, got {type(d).__name__}")
                for key in params:
                    check = f"{label}['d{key}']"
                    checks.add(check, _entry(check, d, f"d{key}"), np.zeros_like(params[key]))
        except _UserFailure as failure:
            checks.fail(failure)
        return checks.report(name, fn, options, conventions)
    return run


def _run_momentum(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["update"]
    dt, params, grads, L = _update_setup(options)
    lr, beta = 0.1, 0.9
    checks = _Checks(dt)
    conventions = [f"{len(grads)} steps, beta {beta}, learning_rate {lr}; v starts at zeros; each row is the whole "
                   "trajectory",
                   "the course's moving average v = β·v + (1 − β)·dW; W −= lr·v is torch SGD(lr·(1 − β) = "
                   f"{lr * (1 - beta):g}, momentum=β) with v = (1 − β)·momentum_buffer (torch's buffer is "
                   "v = β·v + dW)"]
    leaves = {k: torch.nn.Parameter(_tensor(v)) for k, v in params.items()}
    opt = torch.optim.SGD(list(leaves.values()), lr=lr * (1 - beta), momentum=beta)

    def rule(ema: bool, use_v: bool) -> Callable:
        def step(w, g, s, t):
            s["v"] = beta * s.get("v", 0.0) + ((1 - beta) * g if ema else g)
            return w - lr * (s["v"] if use_v else g)
        return step

    hypotheses = {"momentum_no_one_minus_beta": _simulate(params, grads, rule(False, True)),
                  "momentum_grad_step": _simulate(params, grads, rule(True, False))}
    trajectory = _Trajectory()
    current = {k: v.copy() for k, v in params.items()}
    v = {f"d{k}": np.zeros_like(p) for k, p in params.items()}
    try:
        for step, g in enumerate(grads, start=1):
            label = f"parameters (step {step})"
            result = _call(label, fn, current, {k: x.copy() for k, x in g.items()}, v, beta, lr)
            returned, v_returned = _unpack(label, result, 2, "(parameters, v)")
            for k, leaf in leaves.items():
                leaf.grad = _tensor(g[f"d{k}"])
            opt.step()
            current = trajectory.take("parameters", returned, {k: _np(leaf) for k, leaf in leaves.items()})
            v = trajectory.take("v", v_returned, {f"d{k}": (1 - beta) * to_numpy(opt.state[leaf]["momentum_buffer"])
                                                  for k, leaf in leaves.items()})
    except _UserFailure as failure:
        checks.fail(failure)
    trajectory.rows(checks, hypotheses)
    return checks.report("update_parameters_with_momentum", fn, options, conventions)


ADAM = {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


def _adam_rule(variant: str, lr: float, b1: float, b2: float, eps: float) -> Callable:
    def step(w, g, s, t):
        t1 = t + 1 if variant in ("t_plus", "t_plus_v") else t
        t2 = t + 1 if variant in ("t_plus", "t_plus_s") else t
        s["v"] = b1 * s.get("v", 0.0) + (1 - b1) * g
        s["s"] = b2 * s.get("s", 0.0) + (1 - b2) * g ** 2
        v_c = s["v"] / (1 - b1 ** t1) if variant != "first_no_pow" else s["v"] / (1 - b1)
        s_c = s["s"] / (1 - b2 ** t2) if variant != "no_pow" else s["s"] / (1 - b2)
        if variant == "no_correction":
            v_c, s_c = s["v"], s["s"]
        if variant == "no_sqrt":
            return w - lr * v_c / (s_c + eps)
        if variant == "eps_inside":
            return w - lr * v_c / np.sqrt(s_c + eps)
        return w - lr * v_c / (np.sqrt(s_c) + eps)
    return step


def _run_adam(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["update"]
    dt, params, grads, L = _update_setup(options)
    lr, b1, b2, eps = (ADAM[k] for k in ("learning_rate", "beta1", "beta2", "epsilon"))
    checks = _Checks(dt)
    conventions = [f"{len(grads)} steps with t = 1, 2, ... (the course's loop increments t before the call); "
                   f"learning_rate {lr}, beta1 {b1}, beta2 {b2}, epsilon {eps}: torch Adam(lr, betas, eps); v, s "
                   "are torch's exp_avg, exp_avg_sq; each row is the whole trajectory",
                   "returns (parameters, v, s) or (parameters, v, s, v_corrected, s_corrected): both accepted"]
    leaves = {k: torch.nn.Parameter(_tensor(v)) for k, v in params.items()}
    opt = torch.optim.Adam(list(leaves.values()), lr=lr, betas=(b1, b2), eps=eps)
    hypotheses = {f"adam_{name}": _simulate(params, grads, _adam_rule(variant, lr, b1, b2, eps))
                  for name, variant in (("t_off_by_one", "t_plus"), ("t_off_by_one#v", "t_plus_v"),
                                        ("t_off_by_one#s", "t_plus_s"), ("no_pow_t", "no_pow"),
                                        ("first_no_pow_t", "first_no_pow"), ("no_sqrt", "no_sqrt"),
                                        ("no_correction", "no_correction"), ("eps_inside", "eps_inside"))}
    trajectory = _Trajectory()
    current = {k: v.copy() for k, v in params.items()}
    v = {f"d{k}": np.zeros_like(p) for k, p in params.items()}
    s = {f"d{k}": np.zeros_like(p) for k, p in params.items()}
    try:
        for step, g in enumerate(grads, start=1):
            label = f"parameters (step {step})"
            result = _call(label, fn, current, {k: x.copy() for k, x in g.items()}, v, s, step, lr, b1, b2, eps)
            if not (isinstance(result, tuple) and len(result) in (3, 5)):
                _unpack(label, result, 3, "(parameters, v, s) or (parameters, v, s, v_corrected, s_corrected)")
            returned, v_returned, s_returned = result[:3]
            for k, leaf in leaves.items():
                leaf.grad = _tensor(g[f"d{k}"])
            opt.step()
            current = trajectory.take("parameters", returned, {k: _np(leaf) for k, leaf in leaves.items()})
            v = trajectory.take("v", v_returned, {f"d{k}": to_numpy(opt.state[leaf]["exp_avg"])
                                                  for k, leaf in leaves.items()})
            s = trajectory.take("s", s_returned, {f"d{k}": to_numpy(opt.state[leaf]["exp_avg_sq"])
                                                  for k, leaf in leaves.items()})
    except _UserFailure as failure:
        checks.fail(failure)
    trajectory.rows(checks, hypotheses)
    return checks.report("update_parameters_with_adam", fn, options, conventions)


# ---- learning-rate decay --------------------------------------------------------------------------------------------
DECAY_CASES = ((0.5, 0, 1.0), (0.5, 2, 1.0), (0.1, 7, 0.3), (0.01, 10, 2.0))
SCHEDULE_CASES = ((0.5, 100, 0.3, 1000), (0.5, 1000, 0.3, 1000), (0.5, 2500, 0.3, 1000), (0.1, 7, 1.0, 3),
                  (0.1, 11, 0.5, 4))


def _torch_lr(lr0: float, epoch: int, factor: Callable[[int], float]) -> float:
    """torch LambdaLR's learning rate at ``epoch`` (the scheduler resumed there: its one step sets
    lr = initial_lr·factor(epoch))."""
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=lr0)
    opt.param_groups[0]["initial_lr"] = lr0
    torch.optim.lr_scheduler.LambdaLR(opt, factor, last_epoch=epoch - 1)
    return opt.param_groups[0]["lr"]


def _run_update_lr(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["schedule"]
    checks = _Checks(np.float64)
    conventions = ["learning_rate = learning_rate0 / (1 + decay_rate · epoch_num): torch LambdaLR with "
                   "λ(epoch) = 1 / (1 + decay_rate · epoch), at epoch epoch_num"]
    for lr0, epoch, decay in DECAY_CASES:
        label = f"lr (lr0={lr0:g}, epoch={epoch}, decay={decay:g})"
        try:
            got = _call(label, fn, lr0, epoch, decay)
            expected = _torch_lr(lr0, epoch, lambda e, d=decay: 1 / (1 + d * e))
            checks.add(label, _scalar(got), np.float64(expected), [("lr_decay_paren", lr0 / (1 + decay) * epoch)])
        except _UserFailure as failure:
            checks.fail(failure)
    return checks.report("update_lr", fn, options, conventions)


def _run_schedule_lr_decay(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["schedule"]
    checks = _Checks(np.float64)
    conventions = ["learning_rate = learning_rate0 / (1 + decay_rate · floor(epoch_num / time_interval)): torch "
                   "LambdaLR with that λ(epoch), at epoch epoch_num"]
    for lr0, epoch, decay, interval in SCHEDULE_CASES:
        label = f"lr (lr0={lr0:g}, epoch={epoch}, decay={decay:g}, interval={interval})"
        try:
            got = _call(label, fn, lr0, epoch, decay, interval)
            expected = _torch_lr(lr0, epoch, lambda e, d=decay, i=interval: 1 / (1 + d * (e // i)))
            checks.add(label, _scalar(got), np.float64(expected),
                       [("lr_decay_no_floor", lr0 / (1 + decay * epoch / interval)),
                        ("lr_decay_no_interval", lr0 / (1 + decay * epoch)),
                        ("lr_decay_paren", lr0 / (1 + decay) * (epoch // interval))])
        except _UserFailure as failure:
            checks.fail(failure)
    return checks.report("schedule_lr_decay", fn, options, conventions)


# ---- C2: L2 regularisation ------------------------------------------------------------------------------------------
REG_DIMS = (4, 5, 3, 1)
REG_M = 8
LAMBD = 0.7


def _reg_setup(options: Options):
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    X, Y, params = _network(rng, REG_DIMS, REG_M, dt)
    return dt, X, Y, params, len(REG_DIMS) - 1


def _run_cost_with_regularization(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["cost"]
    dt, X, Y, params, L = _reg_setup(options)
    checks = _Checks(dt)
    conventions = [f"layer_dims {list(REG_DIMS)}, m = {REG_M}, lambd {LAMBD}: the course's cost "
                   "cross-entropy + lambd/(2m)·ΣW² (weights only), whose gradient (lambd/m)·W is torch SGD's "
                   "weight_decay = lambd/m; torch: F.binary_cross_entropy (mean) + lambd/(2m)·Σ‖W‖²"]
    out = _torch_net(X, Y, params, L, lambd=LAMBD)
    plain = float(_torch_net(X, Y, params, L)["cost"])
    penalty = float(out["cost"]) - plain
    biases = LAMBD / (2 * REG_M) * sum(float(np.sum(params[f"b{l}"].astype(np.float64) ** 2))
                                       for l in range(1, L + 1))
    added: List[str] = []
    try:
        with _lent(fn, REG_HELPERS) as added:
            cost = _call("cost", fn, out["AL"].copy(), Y.copy(), {k: v.copy() for k, v in params.items()}, LAMBD)
        checks.add("cost", _scalar(cost), out["cost"],
                   [("l2_cost_over_m", plain + 2 * penalty), ("l2_cost_no_m", plain + REG_M * penalty),
                    ("l2_cost_with_biases", plain + penalty + biases), ("l2_cost_missing", plain)])
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("compute_cost_with_regularization", fn, options, conventions + _lent_note(added))


def _course_cache(expected: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray], L: int,
                  masks: Optional[Mapping[int, np.ndarray]] = None) -> tuple:
    """The course's flat cache (Z1, [D1,] A1, W1, b1, Z2, [D2,] A2, W2, b2, Z3, A3, W3, b3)."""
    items: List[np.ndarray] = []
    for l in range(1, L + 1):
        items.append(expected[f"Z{l}"].copy())
        if masks is not None and l < L:
            items.append(masks[l].copy())
        items.append((expected[f"A{l}"] if l < L else expected["AL"]).copy())
        items += [params[f"W{l}"].copy(), params[f"b{l}"].copy()]
    return tuple(items)


def _grads_checks(checks: _Checks, grads: Any, expected: Mapping[str, np.ndarray], L: int,
                  causes: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    if not isinstance(grads, dict):
        raise _UserFailure("gradients", f"expected the gradients dict, got {type(grads).__name__}")
    names = [n for l in range(L, 0, -1) for n in (f"dZ{l}", f"dW{l}", f"db{l}")
             + ((f"dA{l - 1}",) if l > 1 else ())]
    for name in names:
        if name.startswith("dZ") or name.startswith("dA"):
            if name not in grads:  # the course returns them, but they are not required
                continue
        checks.add(name, _entry(name, grads, name), expected[name], _hyp(causes, name))


def _run_backward_with_regularization(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["backward"]
    dt, X, Y, params, L = _reg_setup(options)
    checks = _Checks(dt)
    conventions = [f"layer_dims {list(REG_DIMS)}, m = {REG_M}, lambd {LAMBD}; cache = (Z1, A1, W1, b1, ..., Z3, "
                   "A3, W3, b3); torch: autograd of F.binary_cross_entropy (mean) + lambd/(2m)·ΣW²",
                   GRADIENT_CONVENTION]
    expected = _torch_net(X, Y, params, L, lambd=LAMBD)
    causes = {f"l2_grad_{name}": _course_backward(X, Y, params, L, lambd=LAMBD, l2_factor=factor)
              for name, factor in (("missing", 0.0), ("no_m", REG_M), ("double", 2.0))}
    try:
        grads = _call("gradients", fn, X.copy(), Y.copy(), _course_cache(expected, params, L), LAMBD)
        _grads_checks(checks, grads, expected, L, causes)
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("backward_propagation_with_regularization", fn, options, conventions)


# ---- C2: dropout ----------------------------------------------------------------------------------------------------
DROP_DIMS = (4, 30, 20, 1)
DROP_M = 40
KEEP_PROB = 0.7
KEEP_SIGMAS = 5.0


def _mask(value: Any, shape: Tuple[int, ...], label: str) -> np.ndarray:
    arr = np.asarray(value) if value is not None else None
    if arr is None or arr.shape != shape or arr.dtype.kind not in "fiub" or not np.isin(arr, (0, 1)).all():
        raise _UserFailure(label, f"expected the mask {label} of 0/1 (or bool) of shape {shape} in the cache, got "
                                  f"{_shape_of(value) if arr is None or arr.shape != shape else 'other values'}")
    return arr.astype(bool)


def _keep_rate(checks: _Checks, masks: Mapping[int, np.ndarray], keep_prob: float) -> None:
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    rate = kept / total
    sigma = math.sqrt(keep_prob * (1 - keep_prob) / total)
    ok = abs(rate - keep_prob) <= KEEP_SIGMAS * sigma
    cause = None
    if not ok:
        if abs(rate - (1 - keep_prob)) <= KEEP_SIGMAS * sigma:
            cause = "dropout_keep_as_drop"
        elif kept == total:
            cause = "dropout_mask_all"
    checks.verdict("keep rate", ok, f"{rate:.3f} of the units kept != expected keep_prob {keep_prob} "
                                    f"(±{KEEP_SIGMAS * sigma:.3f}, {KEEP_SIGMAS:g} binomial sigmas over {total})",
                   cause, value=rate - keep_prob)


def _run_forward_with_dropout(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["forward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    X, _, params = _network(rng, DROP_DIMS, DROP_M, dt)
    L = len(DROP_DIMS) - 1
    checks = _Checks(dt)
    conventions = [f"layer_dims {list(DROP_DIMS)}, m = {DROP_M}, keep_prob {KEEP_PROB}: your masks D1, D2 are read "
                   "from the cache (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3) and torch applies the "
                   "same masks, divided by keep_prob (inverted dropout); A1, A2 are compared after dropout",
                   "the keep rate of your masks is tested against keep_prob"]
    added: List[str] = []
    try:
        with _lent(fn, REG_HELPERS) as added:
            result = _call("A3", fn, X.copy(), {k: v.copy() for k, v in params.items()}, KEEP_PROB)
        A3, cache = _unpack("A3", result, 2, "(A3, cache)")
        if not isinstance(cache, tuple) or len(cache) != 14:
            raise _UserFailure("cache", f"expected the cache (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, "
                                        f"b3) of 14 items, got {_shape_of(cache)}"
                                        f"{f' of {len(cache)}' if isinstance(cache, tuple) else ''}")
        masks = {1: _mask(cache[1], (DROP_DIMS[1], DROP_M), "D1"), 2: _mask(cache[6], (DROP_DIMS[2], DROP_M), "D2")}
        _keep_rate(checks, masks, KEEP_PROB)
        expected = _torch_net(X, None, params, L, masks=masks, keep_prob=KEEP_PROB)
        causes = {"dropout_no_scale": _course_backward(X, np.zeros((1, DROP_M)), params, L, masks=masks,
                                                       forward_scale=1.0),
                  "dropout_times_keep": _course_backward(X, np.zeros((1, DROP_M)), params, L, masks=masks,
                                                         forward_scale=KEEP_PROB),
                  "dropout_over_drop": _course_backward(X, np.zeros((1, DROP_M)), params, L, masks=masks,
                                                        forward_scale=1 / (1 - KEEP_PROB))}
        checks.add("A3", A3, expected["AL"], _hyp(causes, "AL"))
        for name, index in (("Z1", 0), ("A1", 2), ("Z2", 5), ("A2", 7), ("Z3", 10)):
            checks.add(f"cache {name}", cache[index], expected[name], _hyp(causes, name))
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("forward_propagation_with_dropout", fn, options, conventions + _lent_note(added))


def _run_backward_with_dropout(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["backward"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    X, Y, params = _network(rng, DROP_DIMS, DROP_M, dt)
    L = len(DROP_DIMS) - 1
    masks = {l: rng.random((DROP_DIMS[l], DROP_M)) < KEEP_PROB for l in range(1, L)}
    checks = _Checks(dt)
    conventions = [f"layer_dims {list(DROP_DIMS)}, m = {DROP_M}, keep_prob {KEEP_PROB}; the cache holds masks drawn "
                   "here; torch: autograd through ReLU · D / keep_prob", GRADIENT_CONVENTION,
                   "dA1, dA2 are the gradients of the units before dropout (after the course's dA·D/keep_prob)"]
    expected = _torch_net(X, Y, params, L, masks=masks, keep_prob=KEEP_PROB)
    causes = {"dropout_backward_no_mask": _course_backward(X, Y, params, L, masks=masks, keep_prob=KEEP_PROB,
                                                           apply_mask=False),
              "dropout_backward_no_scale": _course_backward(X, Y, params, L, masks=masks, keep_prob=KEEP_PROB,
                                                            scale=1.0)}
    try:
        cache = _course_cache(expected, params, L, masks={l: m.astype(int) for l, m in masks.items()})
        grads = _call("gradients", fn, X.copy(), Y.copy(), cache, KEEP_PROB)
        _grads_checks(checks, grads, expected, L, causes)
    except _UserFailure as failure:
        checks.fail(failure)
    return checks.report("backward_propagation_with_dropout", fn, options, conventions)


# ---- C2: gradient checking ------------------------------------------------------------------------------------------
GRADCHECK_M = 3
GRADCHECK_EPSILON = 1e-7
#: the course's verdict: below this, "Your backward propagation works perfectly fine!"
GRADCHECK_THRESHOLD = 2e-7


def _gradcheck_reference(forward: Callable, to_vector: Callable, to_dict: Callable, grads_to_vector: Callable,
                         parameters, gradients, X, Y, epsilon: float, alias: str = "", variant: str = "") -> float:
    """The course's gradient_check_n with the student's helpers; ``alias`` 'plus' or 'both' reproduces the bug
    of perturbing parameters_values itself (no np.copy), ``variant`` 'eps' a division by epsilon alone, 'norm'
    the difference relative to ‖grad‖ alone."""
    values, _ = to_vector(parameters)
    values = np.array(values, dtype=np.float64, copy=True)
    grad = grads_to_vector(gradients)
    n = values.shape[0]
    J_plus, J_minus, approx = np.zeros((n, 1)), np.zeros((n, 1)), np.zeros((n, 1))
    for i in range(n):
        thetaplus = values if alias in ("plus", "both") else np.copy(values)
        thetaplus[i][0] = thetaplus[i][0] + epsilon
        J_plus[i], _ = forward(X, Y, to_dict(thetaplus))
        thetaminus = values if alias == "both" else np.copy(values)
        thetaminus[i][0] = thetaminus[i][0] - epsilon
        J_minus[i], _ = forward(X, Y, to_dict(thetaminus))
        approx[i] = (J_plus[i] - J_minus[i]) / (epsilon if variant == "eps" else 2 * epsilon)
    numerator = np.linalg.norm(grad - approx)
    if variant == "norm":
        return float(numerator / np.linalg.norm(grad))
    return float(numerator / (np.linalg.norm(grad) + np.linalg.norm(approx)))


def _float(value: Any) -> Optional[float]:
    """A returned scalar as a float, None when it is not one number."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    return float(arr.reshape(-1)[0]) if arr.size == 1 else None


def _run_gradient_check(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["check"]
    rng = np.random.default_rng(options.seed)
    checks = _Checks(np.float64)  # finite differences need float64
    X = rng.normal(size=(4, GRADCHECK_M))
    Y = np.array([[1.0, 0.0, 1.0]])
    params = {k: rng.normal(0, 1.0, shape) for k, shape in GRADCHECK_SHAPES}
    conventions = [f"gc_utils' network (W1 (5, 4), W2 (3, 5), W3 (1, 3)), X (4, {GRADCHECK_M}), epsilon "
                   f"{GRADCHECK_EPSILON:g}; gradients from torch's autograd, then the same with the course's planted "
                   "errors (dW2 × 2, db1 × 4)",
                   "the reference difference uses the forward_propagation_n / vector helpers your gradient_check_n "
                   "calls (forward_propagation_n's cost is checked against torch), so only the check's arithmetic "
                   "is compared; with the exact gradients, any difference below the course's "
                   f"{GRADCHECK_THRESHOLD:g} passes (it is finite-difference noise)",
                   "float64 regardless of --dtype"]
    out = _torch_net(X, Y, params, 3)
    exact = {f"d{k}": out[f"d{k}"] for k, _ in GRADCHECK_SHAPES}
    wrong = dict(exact, dW2=2 * exact["dW2"], db1=4 * exact["db1"])
    added: List[str] = []
    try:
        with _lent(fn, GC_HELPERS) as added:
            g = fn.__globals__
            helpers = (g["forward_propagation_n"], g["dictionary_to_vector"], g["vector_to_dictionary"],
                       g["gradients_to_vector"])
            cost, _ = _unpack("forward_propagation_n cost", _call("forward_propagation_n cost", helpers[0], X.copy(),
                                                                  Y.copy(), dict(params)), 2, "(cost, cache)")
            checks.add("forward_propagation_n cost", _scalar(cost), out["cost"])
            for label, gradients in (("difference (planted errors)", wrong), ("difference (exact gradients)", exact)):
                before = {k: v.copy() for k, v in params.items()}
                got = _call(label, fn, params, {k: v.copy() for k, v in gradients.items()}, X.copy(), Y.copy(),
                            GRADCHECK_EPSILON)
                if isinstance(got, tuple):  # some versions return (difference, ...) — the first is the difference
                    got = got[0]
                reference = _gradcheck_reference(*helpers, before, gradients, X, Y, GRADCHECK_EPSILON)
                hyps = [(f"gradcheck_alias_{a}", _gradcheck_reference(*helpers, before, gradients, X, Y,
                                                                      GRADCHECK_EPSILON, alias=a))
                        for a in ("plus", "both")]
                hyps += [(f"gradcheck_{name}", _gradcheck_reference(*helpers, before, gradients, X, Y,
                                                                    GRADCHECK_EPSILON, variant=variant))
                         for name, variant in (("no_2eps", "eps"), ("norm", "norm"))]
                changed = [k for k in params if not np.array_equal(params[k], before[k])]
                if changed:
                    checks.verdict("parameters unchanged", False, f"gradient_check_n changed your parameters "
                                                                  f"{changed}", "gradcheck_alias_plus")
                    params = before
                if "exact" in label:
                    value = _float(got)
                    if value is not None and 0 <= value < GRADCHECK_THRESHOLD and reference < GRADCHECK_THRESHOLD:
                        checks.verdict(label, True, "")
                        continue
                checks.add(label, _scalar(got), np.float64(reference), hyps)
    except _UserFailure as failure:
        checks.fail(failure)
    except KeyError as exc:
        checks.verdict("helpers", False, f"the helper {exc} gradient_check_n needs is missing")
    return checks.report("gradient_check_n", fn, options, conventions + _lent_note(added))


# ---- C2: mini-batches -----------------------------------------------------------------------------------------------
MINIBATCH_CASES = ((3, 148, 64, 0), (2, 128, 32, 7), (2, 10, 3, 1))


def _course_batches(X: np.ndarray, Y: np.ndarray, size: int, seed: int, *, drop_last: bool = False,
                    shuffle: bool = True) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The course's random_mini_batches, its permutation reproduced with np.random.RandomState(seed) (what
    np.random.seed(seed); np.random.permutation(m) draws), without touching the global generator."""
    m = X.shape[1]
    perm = np.random.RandomState(seed).permutation(m) if shuffle else np.arange(m)
    sx, sy = X[:, perm], Y[:, perm].reshape((1, m))
    full = m // size
    batches = [(sx[:, k * size:(k + 1) * size], sy[:, k * size:(k + 1) * size]) for k in range(full)]
    if m % size and not drop_last:
        batches.append((sx[:, full * size:], sy[:, full * size:]))
    return batches


def _run_random_mini_batches(functions: Mapping[str, Callable], options: Options) -> CheckReport:
    fn = functions["batches"]
    dt = _dtype(options)
    rng = np.random.default_rng(options.seed)
    checks = _Checks(dt)
    conventions = ["(n_x, m, mini_batch_size, seed) = " + ", ".join(str(c) for c in MINIBATCH_CASES)
                   + ": the course's np.random.seed(seed); np.random.permutation(m) is reproduced with "
                     "np.random.RandomState(seed) and compared exactly; every column must appear once, the last "
                     "batch holds the m mod mini_batch_size left"]
    for n, m, size, seed in MINIBATCH_CASES:
        tag = f"m={m}, size={size}"
        X = rng.normal(size=(n, m)).astype(dt)
        Y = (rng.random((1, m)) < 0.5).astype(dt)
        try:
            with _lent(fn, {}):
                batches = _call(f"batches ({tag})", fn, X.copy(), Y.copy(), size, seed)
            try:
                pairs = [(np.asarray(bx), np.asarray(by)) for bx, by in batches]
            except (TypeError, ValueError):
                raise _UserFailure(f"batches ({tag})", "expected a list of (mini_batch_X, mini_batch_Y) pairs, got "
                                                       f"{type(batches).__name__}")
            expected = _course_batches(X, Y, size, seed)
            sizes = [bx.shape[1] if bx.ndim == 2 else -1 for bx, _ in pairs]
            want = [bx.shape[1] for bx, _ in expected]
            # the columns taken: each student column identified by equality with one of X's
            index = {X[:, j].tobytes(): j for j in range(m)}
            taken = [index.get(np.ascontiguousarray(bx[:, j]).astype(dt).tobytes(), -1)
                     for bx, _ in pairs if bx.ndim == 2 and bx.shape[0] == n for j in range(bx.shape[1])]
            counts = np.bincount([t for t in taken if t >= 0], minlength=m)
            cause = None
            if sizes == want[:-1] and m % size:
                cause = "minibatch_drop_last"
            elif counts.max(initial=0) > 1:
                cause = "minibatch_repeat"
            checks.verdict(f"batch sizes ({tag})", sizes == want, f"sizes {sizes} != expected {want}", cause)
            missing, repeated = int((counts == 0).sum()), int((counts > 1).sum())
            covered = checks.verdict(f"every example once ({tag})", missing == 0 and repeated == 0 and -1 not in taken,
                           f"{missing} examples missing, {repeated} repeated"
                           + (", some columns are not columns of X" if -1 in taken else ""),
                           "minibatch_drop_last" if cause == "minibatch_drop_last" else
                           ("minibatch_repeat" if repeated else None))
            if sizes == want and covered.passed:  # else the batches' values cannot match: the row above says why
                ax = np.concatenate([bx for bx, _ in pairs], axis=1)
                ay = np.concatenate([by.reshape(1, -1) for _, by in pairs], axis=1)
                ex = np.concatenate([bx for bx, _ in expected], axis=1)
                ey = np.concatenate([by for _, by in expected], axis=1)
                unshuffled = np.concatenate([b for b, _ in _course_batches(X, Y, size, seed, shuffle=False)], 1)
                checks.add(f"X batches ({tag})", ax, ex, [("minibatch_no_shuffle", unshuffled)])
                paired = Y[:, [index.get(np.ascontiguousarray(ax[:, j]).astype(dt).tobytes(), 0)
                               for j in range(m)]]
                checks.add(f"Y batches ({tag})", ay, ey)
                checks.verdict(f"Y paired with X ({tag})", ay.shape == paired.shape and np.array_equal(ay, paired),
                               "the labels of the batches are not those of their examples", "minibatch_unpaired")
        except _UserFailure as failure:
            checks.fail(failure)
    return checks.report("random_mini_batches", fn, options, conventions)


# ---- registration ---------------------------------------------------------------------------------------------------
def _kind(name: str, role: str, run: Callable, summary: str) -> Kind:
    return register(Kind(name=name, course=COURSE, names=(name.lower(),), roles=(role,), run=run, summary=summary))


_kind("initialize_parameters_deep", "initialize", _run_initialize_deep,
      "C1: W{l} ~ 0.01·randn (n_l, n_l−1), b{l} zeros: shapes, zero biases, the weights' std and normality")
_kind("linear_forward", "forward", _run_linear_forward, "C1: Z = W·A + b against F.linear(A.T, W, b).T; the cache")
_kind("linear_activation_forward", "forward", _run_linear_activation_forward,
      "C1: sigmoid/relu(W·A + b) and the cache's Z")
_kind("L_model_forward", "forward", _run_L_model_forward,
      "C1: [Linear → ReLU] × (L−1) → Linear → sigmoid: AL and every cache's Z")
_kind("compute_cost", "cost", _run_compute_cost, "C1: cross-entropy averaged over m (F.binary_cross_entropy)")
_kind("linear_backward", "backward", _run_linear_backward, "C1: dA_prev, dW, db from dZ and the cache")
_kind("linear_activation_backward", "backward", _run_linear_activation_backward,
      "C1: dA_prev, dW, db through sigmoid/relu")
_kind("L_model_backward", "backward", _run_L_model_backward, "C1: every dW, db, dA against torch's autograd")
_kind("update_parameters", "update", lambda f, o: _run_update_parameters(f, o, "update_parameters"),
      "C1: W −= lr·dW against torch SGD over several steps")
_kind("update_parameters_with_gd", "update", lambda f, o: _run_update_parameters(f, o, "update_parameters_with_gd"),
      "C2: W −= lr·dW against torch SGD over several steps")
_kind("compute_cost_with_regularization", "cost", _run_cost_with_regularization,
      "C2: cross-entropy + lambd/(2m)·ΣW² (torch: weight_decay = lambd/m)")
_kind("backward_propagation_with_regularization", "backward", _run_backward_with_regularization,
      "C2: the 3-layer backward with + (lambd/m)·W against torch's autograd")
_kind("forward_propagation_with_dropout", "forward", _run_forward_with_dropout,
      "C2: inverted dropout with your masks D1, D2: outputs and the keep rate")
_kind("backward_propagation_with_dropout", "backward", _run_backward_with_dropout,
      "C2: gradients through the masks, divided by keep_prob")
_kind("gradient_check_n", "check", _run_gradient_check,
      "C2: the returned difference against the course's, with exact and with wrong gradients")
_kind("random_mini_batches", "batches", _run_random_mini_batches,
      "C2: the course's seeded permutation, batch sizes, every example exactly once")
_kind("initialize_velocity", "initialize", _zeros_check("initialize_velocity", 1),
      "C2: v['dW1'], v['db1'], ... zeros of the parameters' shapes")
_kind("update_parameters_with_momentum", "update", _run_momentum,
      "C2: v = β·v + (1 − β)·dW; W −= lr·v (torch SGD(lr·(1 − β), momentum=β))")
_kind("initialize_adam", "initialize", _zeros_check("initialize_adam", 2),
      "C2: v and s zeros of the parameters' shapes")
_kind("update_parameters_with_adam", "update", _run_adam,
      "C2: Adam with bias correction at step t against torch Adam: parameters, v, s")
_kind("update_lr", "schedule", _run_update_lr, "C2: learning_rate0 / (1 + decay_rate·epoch_num)")
_kind("schedule_lr_decay", "schedule", _run_schedule_lr_decay,
      "C2: learning_rate0 / (1 + decay_rate·floor(epoch_num / time_interval))")

__all__ = ["CAUSES", "COURSE"]
