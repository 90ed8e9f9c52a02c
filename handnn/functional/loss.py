"""Losses as forward/backward pairs, with torch's reductions, weights and edge cases.

``value, cache = *_loss_forward(input, target, ..., reduction='mean')`` returns the reduced loss (a 0-d array for
``'mean'``/``'sum'``, the element-wise losses for ``'none'``); ``*_loss_backward(grad_output, cache)`` returns
dL/d(input), where ``grad_output`` is a scalar for ``'mean'``/``'sum'`` and shaped like the ``'none'`` output
otherwise. Every backward first spreads ``grad_output`` over the unreduced losses (:func:`_spread`), then
applies the element-wise derivative.
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple, Optional, Tuple

import numpy as np

from .._validation import NO_KERNEL, REFUSES_ALL, check_array, check_ndarray, check_same_dtype, normalize_dim
from ._kernels import ONE, against_zero, row_sums, unbuffered
from .activation import SoftmaxCache, _rows, log_softmax_backward, log_softmax_forward

REDUCTIONS = ("none", "mean", "sum")


class LossCache(NamedTuple):
    """What every loss backward needs.

    local : d(unreduced loss)/d(input) per element, with weights already applied (shape of the input),
        or, for the class losses, d(unreduced loss)/d(log-probabilities) per unit of upstream gradient
        (CrossEntropy with class targets and no smoothing keeps the log-probabilities here instead, or for
        (N, C) logits the probabilities: its backward needs nothing else, see ``CrossEntropyExtra.direct``).
    reduction : 'none' | 'mean' | 'sum'
    denom : what 'mean' divides the summed losses by
    loss_shape : shape of the unreduced loss
    input_shape : the input's shape (its gradient's)
    extra : loss-specific (NLL: the ClassTargets; CrossEntropy: a CrossEntropyExtra)
    input_dtype : the input's dtype, its gradient's (``local`` is in the loss's dtype, which torch promotes with the
        target's and weights')
    backward_error : a message when torch computes this loss but refuses its backward (HuberLoss with a target of
        another dtype)
    """

    local: np.ndarray
    reduction: str
    denom: float
    loss_shape: Tuple[int, ...]
    input_shape: Tuple[int, ...]
    extra: object = None
    input_dtype: Optional[np.dtype] = None
    backward_error: str = ""


def check_reduction(reduction: str) -> None:
    """torch's ``ValueError`` for an unknown reduction."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _reduce(loss: np.ndarray, reduction: str, denom: float) -> np.ndarray:
    """The loss for ``reduction``: always an ndarray (0-d for 'mean'/'sum'; NumPy reductions give scalars)."""
    if reduction == "none":
        return np.asarray(loss)
    total = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return np.asarray(total)
    if denom:
        return np.asarray(total / loss.dtype.type(denom), dtype=loss.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # every class target ignored: 0/0 = NaN, as torch
        return np.asarray(total / loss.dtype.type(denom), dtype=loss.dtype)


def _spread(grad_output, cache: LossCache, dtype) -> np.ndarray:
    """dL/d(unreduced loss): ``grad_output`` broadcast, divided by the mean's denominator."""
    g = _upstream(grad_output, cache, dtype)
    return g if g.shape == cache.loss_shape else np.broadcast_to(g, cache.loss_shape)


def _upstream(grad_output, cache: LossCache, dtype) -> np.ndarray:
    """:func:`_spread` before the broadcast: a 0-d value (NumPy scalar or 0-d array) for 'mean'/'sum' (multiplying
    by it broadcasts for free), the checked ``grad_output`` for 'none'."""
    if type(grad_output) is float and cache.reduction != "none":
        # the usual ``backward()`` (1.0): the same value without the array conversion and checks (a measurable
        # share of a small network's step)
        g = dtype.type(grad_output)
    else:
        g = np.asarray(grad_output, dtype=dtype)
        if cache.reduction == "none":
            if g.shape != cache.loss_shape:
                raise RuntimeError(f"grad_output of shape {g.shape} does not match the unreduced loss's shape "
                                   f"{cache.loss_shape}")
            return g
        if g.size != 1:
            raise RuntimeError(f"grad_output for reduction={cache.reduction!r} must be a scalar, got shape "
                               f"{g.shape}")
        g = g.reshape(())  # a 1-element array (torch takes only a 0-d one) as the scalar it holds
    if cache.reduction == "mean":
        if cache.denom:
            g = g / dtype.type(cache.denom)
        else:  # a mean over no element (an empty input): torch's grad_output / 0, spread over nothing
            with np.errstate(divide="ignore", invalid="ignore"):
                g = g / dtype.type(0)
    return g


def _sum_to_shape(grad: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum ``grad`` down to ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and grad.shape[i + lead] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _loss_dtype(input: np.ndarray, *others: Optional[np.ndarray]) -> np.dtype:
    """torch's result dtype of a loss: the input's float dtype promoted with every float target or weight given (an
    integer or bool target takes the input's dtype)."""
    dtype = input.dtype
    for other in others:
        if other is not None and other.dtype.kind == "f":
            dtype = np.promote_types(dtype, other.dtype)
    return dtype


def _regression_pair(input, target, op: str, refuses, promote: bool = True,
                     check_option: Optional[Callable[[], None]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Validate ``(input, target)`` in torch's order — both arrays, shapes that broadcast (torch warns when they
    differ), the loss's option (``check_option``), dtypes — and return both broadcast, in the loss's dtype:
    :func:`_loss_dtype`, or the input's without ``promote``."""
    check_ndarray(input, op)
    check_ndarray(target, op, "target")
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
            "This will likely lead to incorrect results due to broadcasting. Please ensure they have the same size.",
            UserWarning, stacklevel=4)
        try:
            input, target = np.broadcast_arrays(input, target)
        except ValueError:
            raise RuntimeError(f"The size of input {input.shape} and target {target.shape} cannot be broadcast "
                               "together") from None
    if check_option is not None:
        check_option()
    check_array(input, op, refuses=refuses)
    if target.dtype.kind not in "fiub":  # complex, object...: as torch treats such an input
        check_array(target, op, refuses=refuses, name="target")
    dtype = _loss_dtype(input, target) if promote else input.dtype
    return input.astype(dtype, copy=False), target.astype(dtype, copy=False)


def _elementwise(input, target, reduction, op, value_and_slope, refuses, promote: bool = True,
                 check_option: Optional[Callable[[], None]] = None):
    """A regression loss of ``d = input - target``: ``value_and_slope(d)`` gives the unreduced loss and its
    derivative; inf and overflowing inputs give torch's inf and NaN, without NumPy's warnings.

    Without ``promote`` (torch's HuberLoss) the loss is computed in the input's dtype, and a target of another dtype
    makes the backward raise ``RuntimeError``, as torch's does.
    """
    check_reduction(reduction)
    x, t = _regression_pair(input, target, op, refuses, promote, check_option)
    with np.errstate(over="ignore", invalid="ignore"):
        loss, local = value_and_slope(np.asarray(x - t))
        value = _reduce(loss, reduction, loss.size)
    refused = "" if promote or target.dtype == input.dtype else \
        f"Found dtype {target.dtype} but expected {input.dtype}"
    return value, LossCache(local, reduction, loss.size, loss.shape, np.shape(input), None, input.dtype, refused)


def _elementwise_backward(grad_output, cache: LossCache) -> np.ndarray:
    """dL/d(input) of a loss whose unreduced value depends on each input element alone: the spread upstream gradient
    times ``local``, summed over broadcast dims, in the input's dtype."""
    if cache.backward_error:
        raise RuntimeError(cache.backward_error)
    g = _upstream(grad_output, cache, cache.local.dtype)
    with np.errstate(invalid="ignore"):  # an inf upstream gradient times a zero slope: NaN, as in torch
        dx = _sum_to_shape(g * cache.local, cache.input_shape)
    return dx if cache.input_dtype is None or dx.dtype == cache.input_dtype else dx.astype(cache.input_dtype)


# ---- regression losses ----------------------------------------------------------------------------
def mse_loss_forward(input, target, reduction: str = "mean"):
    """``(x - y)^2``; d/dx = ``2 (x - y)``."""
    return _elementwise(input, target, reduction, "mse_loss", lambda d: (d * d, 2 * d),
                        {"complex": NotImplementedError})


def _l1(d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``|d|`` and its slope ``sign(d)``: 0 at 0, and 0 where ``d`` is NaN (torch's ``sgn`` backward)."""
    slope = np.sign(d, out=np.empty_like(d))  # an array for 0-d d too
    slope[np.isnan(slope)] = 0
    return np.abs(d), slope


def l1_loss_forward(input, target, reduction: str = "mean"):
    """``|x - y|``; d/dx = ``sign(x - y)`` (0 at 0 and where ``x - y`` is NaN, as torch)."""
    return _elementwise(input, target, reduction, "l1_loss", _l1, {"bool": RuntimeError})


def _check_option(valid: bool, message: str) -> None:
    """torch's ``RuntimeError`` for a bad beta or delta, raised at the forward as torch does (NaN is not valid)."""
    if not valid:
        raise RuntimeError(message)


def smooth_l1_loss_forward(input, target, reduction: str = "mean", beta: float = 1.0):
    """``0.5 z^2 / beta`` if ``|z| < beta`` else ``|z| - 0.5 beta`` (``z = x - y``; beta = 0 is L1)."""
    if beta == 0:
        return l1_loss_forward(input, target, reduction)

    def value_and_slope(d):
        a = np.abs(d)
        small = a < beta
        loss = np.where(small, 0.5 * d * d / beta, a - 0.5 * beta)
        return loss.astype(d.dtype, copy=False), np.where(small, d / beta, np.sign(d)).astype(d.dtype, copy=False)

    return _elementwise(input, target, reduction, "smooth_l1_loss", value_and_slope, {"complex": NotImplementedError},
                        # beta == 0 went to L1 above, so torch's beta >= 0 is beta > 0 here
                        check_option=lambda: _check_option(beta > 0, "smooth_l1_loss does not support negative "
                                                                     "values for beta."))


def huber_loss_forward(input, target, reduction: str = "mean", delta: float = 1.0):
    """``0.5 z^2`` if ``|z| < delta`` else ``delta (|z| - 0.5 delta)``; d/dx = ``clip(z, -delta, delta)``.

    As torch: computed in the input's dtype; a target of another dtype is accepted by the forward and refused by the
    backward (``RuntimeError``).
    """
    def value_and_slope(d):
        a = np.abs(d)
        loss = np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)).astype(d.dtype, copy=False)
        return loss, np.clip(d, -delta, delta).astype(d.dtype, copy=False)

    return _elementwise(input, target, reduction, "huber_loss", value_and_slope,
                        {"int": RuntimeError, "bool": RuntimeError, "complex": NotImplementedError}, promote=False,
                        check_option=lambda: _check_option(delta > 0, "huber_loss does not support non-positive "
                                                                      "values for delta."))


mse_loss_backward = l1_loss_backward = smooth_l1_loss_backward = huber_loss_backward = _elementwise_backward


# ---- binary cross-entropy -----------------------------------------------------------------------
def _binary_pair(input, target, weight, op, refuses):
    """torch's checks of a binary loss's arguments: the target's shape (``ValueError``) first, then dtypes, and a
    weight broadcastable to the input."""
    check_ndarray(input, op)
    check_ndarray(target, op, "target")
    if target.shape != input.shape:
        if op == "binary_cross_entropy":  # torch words the same ValueError differently for the two losses
            raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                             f"({input.shape}) is deprecated. Please ensure they have the same size.")
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    check_array(input, op, refuses=refuses)
    check_array(target, op, name="target")  # torch refuses an integer or bool target (RuntimeError)
    if weight is not None:
        _check_weight(weight, input, op, "weight")


def _check_weight(weight, input: np.ndarray, op: str, name: str) -> None:
    """A binary loss's weight or pos_weight as torch takes it: an array (TypeError), of a float or integer dtype
    (torch multiplies by it; it refuses bool and complex ones: RuntimeError), broadcastable to the input's shape."""
    check_ndarray(weight, op, name)
    if weight.dtype.kind in "bc":
        raise RuntimeError(f"{op}(): a {name} of dtype {weight.dtype} cannot multiply a float loss")
    _check_broadcastable(weight, input, name)


def _check_broadcastable(param: np.ndarray, input: np.ndarray, name: str) -> None:
    """torch's ``RuntimeError`` (not NumPy's ``ValueError``) for a weight that does not broadcast to the input."""
    try:
        fits = np.broadcast_shapes(param.shape, input.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise RuntimeError(f"{name} of shape {list(param.shape)} cannot be broadcast to the input's shape "
                           f"{list(input.shape)}")


# torch's clamp of the BCE gradient's denominator is the float literal 1e-12f (9.99999996e-13 as float64).
_BCE_EPSILON = float(np.float32(1e-12))


def binary_cross_entropy_forward(input, target, weight: Optional[np.ndarray] = None, reduction: str = "mean"):
    """``-w [y log x + (1 - y) log(1 - x)]`` on probabilities ``x``, each log clamped at -100 as torch does.

    d/dx = ``w (x - y) / max(x (1 - x), float32(1e-12))``. Input and target must share a dtype; a weight of another
    dtype is cast to it (torch's results); inputs and targets outside [0, 1] (or NaN) raise ``RuntimeError``.
    """
    check_reduction(reduction)
    _binary_pair(input, target, weight, "binary_cross_entropy", REFUSES_ALL)
    check_same_dtype(input, target, "binary_cross_entropy")
    for name, v in (("input", input), ("target", target)):
        if np.any((v < 0) | (v > 1)) or np.any(np.isnan(v)):
            raise RuntimeError(f"all elements of {name} should be between 0 and 1")
    x, y = input, target
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), -100)
        log_1mx = np.maximum(np.log1p(-x), -100)
    loss = -(y * log_x + (1 - y) * log_1mx)
    local = (x - y) / np.maximum((1 - x) * x, x.dtype.type(_BCE_EPSILON))
    if weight is not None:
        loss = loss * weight.astype(x.dtype, copy=False)
        local = local * weight.astype(x.dtype, copy=False)
    return _reduce(loss, reduction, loss.size), LossCache(local, reduction, loss.size, loss.shape, input.shape,
                                                          None, input.dtype)


binary_cross_entropy_backward = _elementwise_backward


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``, finite for every finite ``x`` (one temporary)."""
    # not np.copysign(x, -1): one pass, but without a SIMD loop (slower on large inputs); out= keeps a 0-d x an
    # array (a ufunc returns a NumPy scalar for it)
    t = np.abs(x, out=np.empty(x.shape, x.dtype))
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    out = np.asarray(against_zero(np.minimum, x))  # an array even for 0-d x (a ufunc gives a NumPy scalar there)
    out -= t
    return out


def binary_cross_entropy_with_logits_forward(input, target, weight: Optional[np.ndarray] = None,
                                             reduction: str = "mean", pos_weight: Optional[np.ndarray] = None):
    """``[(1 - y) x - (1 + (pw - 1) y) log sigmoid(x)] w`` on logits ``x`` (stable for any ``|x|``).

    d/dx = ``[(pw y + 1 - y) sigmoid(x) - pw y] w`` (``pw = 1`` without pos_weight: ``(sigmoid(x) - y) w``).
    As torch: the loss is in the target's dtype (torch computes it in place on ``1 - target``), the gradient in the
    input's; handnn computes both in the widest dtype of the input, target and weights.
    """
    check_reduction(reduction)
    op = "binary_cross_entropy_with_logits"
    _binary_pair(input, target, weight, op, NO_KERNEL)
    if pos_weight is not None:
        _check_weight(pos_weight, input, op, "pos_weight")
    dtype = _loss_dtype(input, target, weight, pos_weight)
    x, y = input.astype(dtype, copy=False), target.astype(dtype, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):  # inf logits: torch's NaN and inf, without warnings
        log_sig = log_sigmoid(x)
        local = np.exp(log_sig)  # sigmoid(x), becoming d/dx in place
        loss = np.subtract(ONE[dtype], y)  # 1 - y
        loss *= x
        if pos_weight is None:
            loss -= log_sig
            local -= y
        else:
            log_weight = (pos_weight - 1) * y + 1
            log_sig *= log_weight
            loss -= log_sig
            py = pos_weight * y
            local *= py + 1 - y
            local -= py
        if weight is not None:
            loss = loss * weight
            local = local * weight
        loss = loss.astype(target.dtype, copy=False)
        value = _reduce(loss, reduction, loss.size)
    return value, LossCache(local, reduction, loss.size, loss.shape, input.shape, None, input.dtype)


binary_cross_entropy_with_logits_backward = _elementwise_backward


# ---- NLL and cross-entropy ----------------------------------------------------------------------
class ClassTargets(NamedTuple):
    """Class-index targets resolved against the input: the index per position and its weight (0 if ignored)."""

    index: np.ndarray  # target with ignored positions replaced by 0, shape of the unreduced loss
    weight: np.ndarray  # w[target] (1 without class weights), 0 where target == ignore_index
    valid: np.ndarray  # target != ignore_index


def _class_dim(input: np.ndarray) -> int:
    return 0 if input.ndim == 1 else 1


def _check_class_target_shape(input: np.ndarray, target: np.ndarray) -> np.ndarray:
    """torch's shape checks for class-index targets, in torch's order (``nll_loss_nd``, then ``nll_loss`` for
    1-D/2-D inputs, ``nll_loss2d`` for 4-D inputs, a target-size check for 3-D and >4-D inputs), with its classes
    and messages. Returns the target, a 1-D input's target of shape (1,) viewed as 0-d (torch accepts both)."""
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if input.ndim != 1:
        # torch reads a 0-d target's batch size as 0
        batch = target.shape[0] if target.ndim > 0 else 0
        if input.shape[0] != batch:
            raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size ({batch}).")
    if input.ndim <= 2:
        if target.ndim > 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if input.ndim == 1 and target.ndim == 1:
            if target.shape[0] != 1:
                raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {target.shape[0]}")
            return target.reshape(())
        return target
    if input.ndim == 4:
        if target.ndim != 3:
            raise RuntimeError("only batches of spatial targets supported (3D tensors) but got targets of "
                               f"dimension: {target.ndim}")
        if target.shape != input.shape[:1] + input.shape[2:]:
            # torch's message, unbalanced parenthesis included
            raise RuntimeError(f"size mismatch (got input: {list(input.shape)} , target: {list(target.shape)}")
        return target
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise RuntimeError(f"Expected target size {list(expected)}, got {list(target.shape)}")
    return target


def _class_targets(input: np.ndarray, target: np.ndarray, weight: Optional[np.ndarray], ignore_index: int,
                   op: str) -> ClassTargets:
    """Check class-index targets as torch does — shapes, the weight's size, then dtypes (the input's: no kernel for
    integer, bool or complex input; a float16 input beside a weight is mixed; the weight's; the target's), then the
    range — and look up their weights. Integer targets of any width are accepted (torch takes int64 and uint8
    only)."""
    check_ndarray(target, op, "target")
    target = _check_class_target_shape(input, target)
    classes = input.shape[_class_dim(input)]
    if weight is not None and weight.shape != (classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes "
                           f"but got weight tensor of shape: {list(weight.shape)}")
    if input.dtype == np.float16 and weight is not None:
        raise RuntimeError(f"{op}(): mixed dtype: a float16 input beside a {weight.dtype} weight")
    check_array(input, op, refuses=NO_KERNEL)
    check_same_dtype(input, weight, op)
    if target.dtype.kind not in "iu":
        raise RuntimeError(f"expected target dtype to be an integer type (torch: Long or Byte), but got "
                           f"{target.dtype}")
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if np.any(bad):
        raise IndexError(f"Target {int(target[bad].flat[0])} is out of bounds.")
    index = np.where(valid, target, 0)
    w = weight[index] if weight is not None else np.ones(index.shape, input.dtype)
    return ClassTargets(index, np.where(valid, w, input.dtype.type(0)), valid)


def _pick(lp: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``lp[n, index[n, ...], ...]`` along the class dim."""
    c = _class_dim(lp)
    return np.take_along_axis(lp, np.expand_dims(index, c), axis=c).squeeze(c)


def _scatter(values: np.ndarray, index: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Zeros shaped like ``like`` with ``values`` put at the target class of each position."""
    c = _class_dim(like)
    out = np.zeros_like(like)
    np.put_along_axis(out, np.expand_dims(index, c), np.expand_dims(values, c), axis=c)
    return out


def _nll(lp: np.ndarray, targets: ClassTargets, reduction: str):
    """Unreduced NLL ``-w[y] lp[y]``, the reduced value, and the mean's denominator ``sum w[y]``."""
    return _nll_picked(_pick(lp, targets.index), targets, reduction)


def _nll_picked(picked: np.ndarray, targets: ClassTargets, reduction: str):
    """:func:`_nll` from the log-probabilities at the targets, ``lp[y]``."""
    # 0 at ignored positions even where the input is NaN (torch skips them); an array even for a (C,) input, whose
    # product of 0-d arrays NumPy would turn into a scalar
    loss = np.asarray(np.where(targets.valid, -targets.weight * picked, picked.dtype.type(0)))
    denom = float(targets.weight.sum(dtype=picked.dtype))
    return loss, _reduce(loss, reduction, denom), denom


#: rows of logits whose largest value lies within +-SHIFT_FREE are exponentiated without subtracting it: exp
#: cannot overflow (e^30 times any realistic class count is finite in float32), and the row's largest terms stay
#: far from float32's subnormals, so only the rounding differs from ``exp(x - max)`` -- and a pass is saved
SHIFT_FREE = 30.0


def _softmax_rows_and_picked(rows: np.ndarray, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For (N, C) logits: the softmax probabilities (a new array) and the log-probabilities at ``index`` (N,),
    ``shifted[y] - log(sum(exp(shifted)))`` with ``shifted = x - max`` (or ``x`` itself when every row's max is
    within :data:`SHIFT_FREE`), the values of ``log_softmax`` up to rounding. Four or five passes, one input-sized
    array; CrossEntropy's backward then needs one multiplication instead of an exp."""
    maxes = rows.max(axis=1, keepdims=True)
    if maxes.size and -SHIFT_FREE <= maxes.min() and maxes.max() <= SHIFT_FREE:  # false for NaN and inf
        shifted = rows
    else:
        with unbuffered(rows.size):  # row-wise broadcasting, sums by BLAS (see ._kernels)
            shifted = np.subtract(rows, maxes)
    picked = shifted[np.arange(len(index)), index]  # fancy indexing: cheaper than take_along_axis on small inputs
    probs = np.exp(shifted, out=None if shifted is rows else shifted)
    sums = row_sums(probs)
    with unbuffered(rows.size):
        probs /= sums[:, None]
    return probs, picked - np.log(sums)


def _class_upstream(grad_output, cache: LossCache, valid: np.ndarray, denom: float) -> np.ndarray:
    """dL/d(unreduced loss) for the class losses, ``denom`` being the 'mean' denominator of the term.

    Ignored positions get exactly 0, even when every target is ignored and 'mean' divides by a total weight
    of 0 (torch's kernels skip them); a position that is not ignored gets ``g / 0 = inf``, so its zero class
    weight gives NaN as in torch.
    """
    with np.errstate(divide="ignore"):
        g = _spread(grad_output, cache._replace(denom=denom), cache.local.dtype)
    return np.where(valid, g, cache.local.dtype.type(0))


def _target_grad(grad_output, cache: LossCache, targets: ClassTargets) -> np.ndarray:
    """dL/d(log-probabilities) of the NLL term: ``local[y] * g`` at each target class, exactly 0 at the other
    classes (so a NaN from a zero total weight stays at the target class, as in torch's kernel)."""
    g = _class_upstream(grad_output, cache, targets.valid, cache.denom)
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN: a zero weight when the total weight is 0, as torch
        return _scatter(_pick(cache.local, targets.index) * g, targets.index, cache.local)


def nll_loss_forward(input, target, weight: Optional[np.ndarray] = None, ignore_index: int = -100,
                     reduction: str = "mean"):
    """``-w[y_n] input[n, y_n]`` over log-probabilities ``input`` of shape (N, C, d1, ...) or (C,).

    'mean' divides by ``sum_n w[y_n]`` over the positions not equal to ``ignore_index``.
    """
    check_reduction(reduction)
    check_ndarray(input, "nll_loss")
    targets = _class_targets(input, target, weight, ignore_index, "nll_loss")
    with np.errstate(invalid="ignore"):  # inf - inf in a sum of log-probabilities: NaN, as in torch
        loss, value, denom = _nll(input, targets, reduction)
    local = _scatter(-targets.weight, targets.index, input)
    return value, LossCache(local, reduction, denom, loss.shape, input.shape, targets)


def nll_loss_backward(grad_output, cache: LossCache) -> np.ndarray:
    """dL/d(input): ``-w[y] g`` at each target class, 0 elsewhere (``cache.extra``: the ClassTargets)."""
    return _target_grad(grad_output, cache, cache.extra)


class CrossEntropyExtra(NamedTuple):
    softmax_cache: object
    smooth_local: Optional[np.ndarray] = None  # d(smoothing term)/d(lp) per unit upstream, already scaled
    smooth_denom: float = 0.0
    targets: Optional[ClassTargets] = None  # None for probability targets
    direct: bool = False  # class targets without smoothing: backward from the log-probabilities alone
    probabilities: bool = False  # softmax_cache holds the softmax probabilities, not the log-probabilities


def cross_entropy_forward(input, target, weight: Optional[np.ndarray] = None, ignore_index: int = -100,
                          reduction: str = "mean", label_smoothing: float = 0.0):
    """Cross-entropy over logits of shape (N, C, d1, ...) or (C,), through ``log_softmax`` on dim 1.

    Class-index targets: ``(1 - eps) NLL + (eps / C) sum_c (-w_c lp_c)``; 'mean' divides both terms by
    ``sum w[y]`` over non-ignored positions (the smoothing term by the non-ignored count without weights).
    Probability targets (same shape as the input): ``-sum_c w_c y'_c lp_c`` with
    ``y' = (1 - eps) y + eps / C``; 'mean' divides by ``N * d1 * ...``. As in torch, ``eps < 0`` acts as 0.
    """
    check_reduction(reduction)
    op = "cross_entropy"
    check_ndarray(input, op)
    check_ndarray(target, op, "target")
    c = 0 if input.ndim == 1 else 1
    if target.shape == input.shape:  # torch takes a target shaped like the input as class probabilities
        return _cross_entropy_probabilities(input, target, weight, ignore_index, reduction, label_smoothing)
    # class indices: torch's log_softmax over the class dim first (its dim and dtype checks), then nll_loss_nd's
    if label_smoothing > 1.0:  # torch checks only the upper bound here; a negative or NaN one acts as 0
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    normalize_dim(c, input.ndim)
    if not (input.dtype == np.float16 and weight is not None):  # that one is nll_loss's mixed dtype, below
        check_array(input, op, refuses=NO_KERNEL)
    targets = _class_targets(input, target, weight, ignore_index, "cross_entropy")
    with np.errstate(invalid="ignore", over="ignore"):  # inf logits: torch's NaN and inf, without warnings
        return _cross_entropy_classes(input, targets, weight, reduction, label_smoothing, c)


def _cross_entropy_classes(input, targets: ClassTargets, weight, reduction, label_smoothing, c):
    """:func:`cross_entropy_forward` of checked class-index targets."""
    classes = input.shape[c]
    wshape = [1] * input.ndim
    wshape[c] = classes
    smoothing = label_smoothing > 0  # a negative or NaN label smoothing acts as 0, as in torch
    rows = _rows(input, c)
    if not smoothing and rows is not None and input.ndim == 2:
        # (N, C) logits: the probabilities are kept instead of the log-probabilities (backward: no exp pass)
        probs, picked = _softmax_rows_and_picked(rows, targets.index)
        loss, value, denom = _nll_picked(picked, targets, reduction)
        return value, LossCache(probs, reduction, denom, loss.shape, input.shape,
                                CrossEntropyExtra(SoftmaxCache(probs, c), targets=targets, direct=True,
                                                  probabilities=True))
    lp, sm_cache = log_softmax_forward(input, c)
    loss, value, denom = _nll(lp, targets, reduction)
    if not smoothing:
        # no input-sized scatter: backward builds dL/dx directly from the log-probabilities (see below)
        return value, LossCache(lp, reduction, denom, loss.shape, input.shape,
                                CrossEntropyExtra(sm_cache, targets=targets, direct=True))
    local = _scatter(-targets.weight, targets.index, input)
    w = weight.reshape(wshape) if weight is not None else np.ones(wshape, input.dtype)
    smooth = np.where(targets.valid, -(lp * w).sum(axis=c), input.dtype.type(0))  # 0 at ignored positions
    smooth_denom = denom if weight is not None else float(targets.valid.sum())
    eps_c = label_smoothing / classes
    value = np.asarray((1 - label_smoothing) * value + _reduce(smooth, reduction, smooth_denom) * eps_c,
                       dtype=input.dtype)
    local = local * (1 - label_smoothing)
    smooth_local = (-w * eps_c).astype(input.dtype)  # (1, C, 1...): backward's upstream is 0 at ignored positions
    return value, LossCache(local, reduction, denom, loss.shape, input.shape,
                            CrossEntropyExtra(sm_cache, smooth_local, smooth_denom, targets))


def _cross_entropy_probabilities(input, target, weight, ignore_index, reduction, label_smoothing):
    """Cross-entropy against class probabilities shaped like the input, with torch's checks in torch's order: a
    float target, no ignore_index, a class dim (``IndexError`` for 0-d input), the weight's size, a label smoothing
    of at most 1 (a negative or NaN one acts as 0), then the input's dtype. The loss is in the promoted dtype of the
    input, target and weight; the gradient in the input's."""
    op = "cross_entropy"
    if target.dtype.kind != "f":
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got {target.dtype}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    c = normalize_dim(0 if input.ndim == 1 else 1, input.ndim)
    classes = input.shape[c]
    if weight is not None and weight.shape != (classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes but got "
                           f"weight tensor of shape: {list(weight.shape)}")
    if label_smoothing > 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    check_array(input, op, refuses=NO_KERNEL)
    check_array(target, op, name="target")
    if weight is not None:
        check_array(weight, op, name="weight")
    dtype = _loss_dtype(input, target, weight)
    wshape = [1] * input.ndim
    wshape[c] = classes
    with np.errstate(invalid="ignore", over="ignore"):  # inf logits or targets: torch's NaN and inf
        lp, sm_cache = log_softmax_forward(input, c)
        probs = target.astype(dtype, copy=False)
        if label_smoothing > 0 and classes:
            probs = probs * (1 - label_smoothing) + label_smoothing / classes
        wy = probs * weight.reshape(wshape) if weight is not None else probs
        loss = -(lp * wy).sum(axis=c)
        denom = input.size / classes if input.size else 0.0  # a 'mean' over no element is NaN, as in torch
        value = _reduce(loss, reduction, denom)
    return value, LossCache(-wy, reduction, denom, loss.shape, input.shape, CrossEntropyExtra(sm_cache),
                            input.dtype)


def cross_entropy_backward(grad_output, cache: LossCache) -> np.ndarray:
    """dL/d(logits) = log_softmax backward of dL/d(lp)."""
    extra: CrossEntropyExtra = cache.extra
    dtype = cache.local.dtype
    c = _class_dim(cache.local)
    if extra.targets is None:  # probability targets: the gradient in the input's dtype
        with np.errstate(invalid="ignore"):
            dlp = cache.local * np.expand_dims(_spread(grad_output, cache, dtype), c)
            return log_softmax_backward(dlp, extra.softmax_cache).astype(cache.input_dtype, copy=False)
    if extra.direct:
        with np.errstate(invalid="ignore"):  # an inf upstream gradient: torch's NaN and inf, without warnings
            return _cross_entropy_class_backward(grad_output, cache)
    dlp = _target_grad(grad_output, cache, extra.targets)
    # 0 * inf, inf - inf = NaN: the rows of a 'mean' whose total weight is 0 are NaN, as in torch
    with np.errstate(invalid="ignore"):
        if extra.smooth_local is not None:
            # the smoothing term has its own denominator under 'mean'
            g = _class_upstream(grad_output, cache, extra.targets.valid, extra.smooth_denom)
            dlp = dlp + extra.smooth_local * np.expand_dims(g, c)
        return log_softmax_backward(dlp, extra.softmax_cache)


def _cross_entropy_class_backward(grad_output, cache: LossCache) -> np.ndarray:
    """Class targets without smoothing: ``dL/dx = softmax(x) * (w[y] g) - onehot(y) * (w[y] g)`` per position,
    ``g`` the upstream gradient of the position's loss (log_softmax's backward of ``-w[y] g`` at the target).

    One input-sized array, written in place. Ignored positions have ``w[y] g = 0`` and get 0. When 'mean' divides by
    a total weight of 0, a position that is not ignored has ``w[y] g = 0 * inf = NaN`` and its whole row is NaN, as
    in torch.
    """
    extra: CrossEntropyExtra = cache.extra
    y, c = extra.softmax_cache  # the log-probabilities, or the probabilities themselves
    targets = extra.targets
    dtype = y.dtype
    g = _class_upstream(grad_output, cache, targets.valid, cache.denom)
    wg = np.expand_dims(np.asarray(targets.weight * g, dtype=dtype), c)
    with unbuffered(y.size):  # a per-row factor: see ._kernels
        if extra.probabilities:
            dx = np.multiply(y, wg)
        else:
            dx = np.exp(y)
            dx *= wg
    if dx.ndim == 2:  # (N, C): fancy indexing, cheaper than the along-axis helpers on small inputs
        rows = np.arange(dx.shape[0])
        dx[rows, targets.index] -= wg[:, 0]
        return dx
    index = np.expand_dims(targets.index, c)
    picked = np.take_along_axis(dx, index, axis=c)
    np.put_along_axis(dx, index, picked - wg, axis=c)
    return dx
