"""Parity of every loss with torch: the value and dL/d(input) for each reduction and option, the module API
(float for 'mean'/'sum', backward's default ``grad_output=1.0``), dtypes, edge values (exact ties, BCE inputs
of exactly 0 and 1, logits of +-1e4), and bad input raising torch's exception classes and messages."""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch

from handnn import functional as F
from handnn.functional import loss as L
from handnn import nn
from reference import assert_close, assert_nonzero, to_tensor

REDUCTIONS = ["none", "mean", "sum"]
SHAPE = (4, 3, 5)  # element-wise losses: all dims different, so mean-over-N and mean-over-numel differ
CLASSES = 4
CLASS_SHAPES = {  # input shape of the class losses (class dim 1, or 0 for a single sample)
    "(N, C)": (7, CLASSES),
    "(C,)": (CLASSES,),
    "(N, C, d1)": (3, CLASSES, 5),
    "(N, C, d1, d2)": (3, CLASSES, 5, 2),
}


# ---- helpers -------------------------------------------------------------------------------------------
def as_torch(value):
    """Arrays -> tensors (copies), everything else unchanged: torch-side constructor arguments."""
    return to_tensor(value) if isinstance(value, np.ndarray) else value


def upstream(rng: np.random.Generator, reduction: str, loss_shape: Tuple[int, ...], dtype) -> object:
    """A seeded random upstream gradient: shaped like the 'none' output, a random scalar otherwise."""
    if reduction == "none":
        return rng.normal(size=loss_shape).astype(dtype)
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0))


def torch_loss(name: str, kwargs: Dict[str, object], x: np.ndarray, y: np.ndarray,
               grad_output: Optional[object]) -> Tuple[np.ndarray, np.ndarray]:
    """torch's loss value and dL/d(input) for ``torch.nn.<name>(**kwargs)`` (``grad_output=None``: backward())."""
    module = getattr(torch.nn, name)(**{k: as_torch(v) for k, v in kwargs.items()})
    xt = to_tensor(x).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's own broadcast warning; handnn's is asserted
        out = module(xt, to_tensor(y))
    if grad_output is None:
        out.backward()
    else:
        out.backward(to_tensor(np.asarray(grad_output, dtype=x.dtype)))
    return out.detach().numpy(), xt.grad.numpy()


def check_loss(name: str, kwargs: Dict[str, object], x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
               *, nonzero: bool = True) -> Tuple[object, np.ndarray]:
    """``handnn.nn.<name>`` against ``torch.nn.<name>``: value, dL/dx with a random upstream gradient, the
    module API's return types and dtypes, and no argument modified. Returns handnn's (value, dx)."""
    reduction = kwargs.get("reduction", "mean")
    dtype = x.dtype
    loss_fn = getattr(nn, name)(**kwargs)
    before = {"input": x.copy(), "target": y.copy(),
              **{k: v.copy() for k, v in kwargs.items() if isinstance(v, np.ndarray)}}
    value = loss_fn(x, y)
    loss_shape = np.shape(value) if reduction == "none" else ()
    grad_output = upstream(rng, reduction, loss_shape, dtype)
    grad_before = np.array(grad_output, copy=True)
    dx = loss_fn.backward(grad_output)
    ref_value, ref_dx = torch_loss(name, kwargs, x, y, grad_output)

    if reduction == "none":
        assert isinstance(value, np.ndarray) and value.dtype == dtype, f"'none' must return a {dtype} array"
        assert_close(value, ref_value, name=f"{name} value")
    else:
        assert type(value) is float, f"{reduction!r} must return a Python float, got {type(value).__name__}"
        assert_close(np.asarray(value, dtype=dtype), ref_value, name=f"{name} value")
    assert isinstance(dx, np.ndarray) and dx.dtype == dtype, f"dx must be a {dtype} array"
    assert_close(dx, ref_dx, name=f"{name} dinput")
    if nonzero:
        assert_nonzero(f"{name} dinput", ref_dx)
    now = {"input": x, "target": y, **{k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}}
    for key, original in before.items():
        np.testing.assert_array_equal(now[key], original, err_msg=f"{name} modified its {key}")
    np.testing.assert_array_equal(grad_output, grad_before, err_msg=f"{name} modified grad_output")
    return value, dx


def class_targets(rng: np.random.Generator, shape: Tuple[int, ...], ignore_index: Optional[int] = None) -> np.ndarray:
    """Random class indices (int64) for an input of ``shape`` (0-d for a (C,) input). With ``ignore_index``
    (a valid class): about a third of the positions hit it, and never all (a 0-d target never does)."""
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = rng.integers(0, CLASSES, size=target_shape, dtype=np.int64)
    if ignore_index is not None:
        target = np.where(target == ignore_index, (ignore_index + 1) % CLASSES, target)
        if target.ndim > 0:
            hit = rng.permutation(target.size)[: max(1, target.size // 3)]
            target.reshape(-1)[hit] = ignore_index
    return target


def class_weight(rng: np.random.Generator, dtype) -> np.ndarray:
    return rng.uniform(0.3, 2.0, size=CLASSES).astype(dtype)


# ---- regression losses ---------------------------------------------------------------------------------
REGRESSION = {
    "MSELoss": ("MSELoss", {}),
    "L1Loss": ("L1Loss", {}),
    "SmoothL1Loss(beta=1)": ("SmoothL1Loss", {"beta": 1.0}),
    "SmoothL1Loss(beta=0.5)": ("SmoothL1Loss", {"beta": 0.5}),
    "SmoothL1Loss(beta=0)": ("SmoothL1Loss", {"beta": 0.0}),
    "HuberLoss(delta=1)": ("HuberLoss", {"delta": 1.0}),
    "HuberLoss(delta=2.5)": ("HuberLoss", {"delta": 2.5}),
}


def regression_pair(rng: np.random.Generator, dtype) -> Tuple[np.ndarray, np.ndarray]:
    """x, y with differences on both sides of every beta/delta used, and exact ties x == y."""
    x = rng.normal(scale=2.0, size=SHAPE).astype(dtype)
    y = (x + rng.normal(scale=2.5, size=SHAPE)).astype(dtype)
    ties = rng.random(SHAPE) < 0.2
    y[ties] = x[ties]
    return x, y


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(REGRESSION), ids=list(REGRESSION))
def test_regression_loss_matches_torch(case, reduction, dtype, rng):
    name, options = REGRESSION[case]
    x, y = regression_pair(rng, dtype)
    d = np.abs(x - y)
    threshold = options.get("beta", options.get("delta", 1.0))
    # the data must exercise both branches and the ties, or a wrong branch could hide
    inner = np.any((d > 0) & (d < threshold)) if threshold > 0 else True  # beta = 0 has no quadratic part
    assert np.any(d == 0) and inner and np.any(d > threshold)
    check_loss(name, {**options, "reduction": reduction}, x, y, rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_l1_gradient_is_zero_at_exact_ties(reduction, dtype, rng):
    """torch's sign(0) = 0: a tie contributes nothing to dL/dx (and the other elements still do)."""
    x, y = regression_pair(rng, dtype)
    _, dx = check_loss("L1Loss", {"reduction": reduction}, x, y, rng)
    ties = x == y
    assert np.all(dx[ties] == 0) and np.all(dx[~ties] != 0)


@pytest.mark.parametrize("delta", [1.0, 2.5])
def test_huber_gradient_is_clipped_at_delta(delta, dtype, rng):
    """'sum' with upstream 1 has dL/dx = clip(x - y, -delta, delta): the large differences sit at +-delta."""
    x, y = regression_pair(rng, dtype)
    loss_fn = nn.HuberLoss(reduction="sum", delta=delta)
    loss_fn(x, y)
    dx = loss_fn.backward()
    _, ref_dx = torch_loss("HuberLoss", {"reduction": "sum", "delta": delta}, x, y, None)
    assert_close(dx, ref_dx, name="huber dinput")
    far = np.abs(x - y) > delta
    assert np.any(far) and np.all(np.abs(dx[far]) == dtype.type(delta))


TARGET_BROADCAST = {  # input shape, target shape
    "target (3, 5) -> (4, 3, 5)": (SHAPE, SHAPE[1:]),
    "target (4, 1, 5) -> (4, 3, 5)": (SHAPE, (4, 1, 5)),
    "input (3, 5) -> target (4, 3, 5)": (SHAPE[1:], SHAPE),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shapes", list(TARGET_BROADCAST.values()), ids=list(TARGET_BROADCAST))
@pytest.mark.parametrize("case", ["MSELoss", "L1Loss", "HuberLoss(delta=1)"])
def test_broadcast_target_warns_and_matches_torch(case, shapes, reduction, dtype, rng):
    """A target of another (broadcastable) shape: torch's UserWarning, then torch's broadcast value and
    gradient (summed back to the input's shape)."""
    name, options = REGRESSION[case]
    x = rng.normal(size=shapes[0]).astype(dtype)
    y = rng.normal(size=shapes[1]).astype(dtype)
    with pytest.warns(UserWarning, match=r"Using a target size .* that is different to the input size .*"
                                         r"This will likely lead to incorrect results due to broadcasting"):
        check_loss(name, {**options, "reduction": reduction}, x, y, rng)


# ---- binary cross-entropy ------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
def test_bce_matches_torch(weighted, reduction, dtype, rng):
    x = rng.uniform(0.02, 0.98, size=SHAPE).astype(dtype)
    y = np.where(rng.random(SHAPE) < 0.5, rng.integers(0, 2, size=SHAPE), rng.random(SHAPE)).astype(dtype)
    kwargs = {"reduction": reduction}
    if weighted:
        kwargs["weight"] = rng.uniform(0.3, 2.0, size=SHAPE[-1]).astype(dtype)  # broadcast over the last dim
    check_loss("BCELoss", kwargs, x, y, rng)


BCE_EDGE_X = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.25]
BCE_EDGE_Y = [0.0, 1.0, 0.3, 0.0, 1.0, 0.7, 0.6]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_at_exact_zero_and_one_clamps_like_torch(reduction, dtype, rng):
    """Inputs of exactly 0 and 1: torch clamps each log at -100 (loss 100 where the target disagrees, not inf)
    and the gradient's denominator x(1 - x) at 1e-12 (gradient ~1e12, or 0 where the target agrees)."""
    x = np.tile(np.array(BCE_EDGE_X, dtype=dtype), (3, 1))  # shape (3, 7)
    y = np.tile(np.array(BCE_EDGE_Y, dtype=dtype), (3, 1))
    value, dx = check_loss("BCELoss", {"reduction": reduction}, x, y, rng)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(dx))
    per_element = nn.BCELoss(reduction="none")(x, y)
    np.testing.assert_array_equal(per_element[:, [1, 3]], dtype.type(100))
    np.testing.assert_array_equal(per_element[:, [0, 4]], dtype.type(0))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_edge_gradients_elementwise(reduction, dtype, rng):
    """The 1e12-sized gradients at x in {0, 1} and the ordinary ones, each compared on its own scale."""
    x = np.tile(np.array(BCE_EDGE_X, dtype=dtype), (3, 1))
    y = np.tile(np.array(BCE_EDGE_Y, dtype=dtype), (3, 1))
    grad_output = upstream(rng, reduction, x.shape if reduction == "none" else (), dtype)
    loss_fn = nn.BCELoss(reduction=reduction)
    loss_fn(x, y)
    dx = loss_fn.backward(grad_output)
    _, ref_dx = torch_loss("BCELoss", {"reduction": reduction}, x, y, grad_output)
    huge = np.abs(ref_dx) > 1e6
    assert np.any(huge) and np.any(~huge & (ref_dx != 0))
    assert_close(dx[huge], ref_dx[huge], name="bce dinput at x in {0, 1}")
    assert_close(dx[~huge], ref_dx[~huge], name="bce dinput elsewhere")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [False, True], ids=["no-pos_weight", "pos_weight"])
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
def test_bce_with_logits_matches_torch(weighted, pos_weight, reduction, dtype, rng):
    x = rng.normal(scale=3.0, size=SHAPE).astype(dtype)
    y = np.where(rng.random(SHAPE) < 0.5, rng.integers(0, 2, size=SHAPE), rng.random(SHAPE)).astype(dtype)
    kwargs = {"reduction": reduction}
    if weighted:
        kwargs["weight"] = rng.uniform(0.3, 2.0, size=SHAPE[1:]).astype(dtype)
    if pos_weight:
        kwargs["pos_weight"] = rng.uniform(0.3, 3.0, size=SHAPE[-1]).astype(dtype)  # one per class (last dim)
    check_loss("BCEWithLogitsLoss", kwargs, x, y, rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [False, True], ids=["no-pos_weight", "pos_weight"])
@pytest.mark.parametrize("magnitude", [50.0, 1e4])
def test_bce_with_logits_large_logits_finite_and_equal(magnitude, pos_weight, reduction, dtype, rng):
    """Logits of +-50 and +-1e4 (sigmoid rounds to exactly 0 or 1): finite, and torch's values."""
    x = np.tile(np.array([magnitude, -magnitude], dtype=dtype), (3, 3))  # shape (3, 6)
    y = np.tile(np.array([0.0, 0.0, 1.0, 1.0, 0.3, 0.3], dtype=dtype).reshape(3, 2), (1, 3))
    kwargs = {"reduction": reduction}
    if pos_weight:
        kwargs["pos_weight"] = rng.uniform(0.3, 3.0, size=x.shape[-1]).astype(dtype)
    value, dx = check_loss("BCEWithLogitsLoss", kwargs, x, y, rng)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(dx))


# ---- NLL ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore", [False, True], ids=["no-ignore", "ignore_index=1"])
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("shape", list(CLASS_SHAPES.values()), ids=list(CLASS_SHAPES))
def test_nll_matches_torch(shape, weighted, ignore, reduction, dtype, rng):
    x = rng.normal(size=shape).astype(dtype)
    ignore_index = 1 if ignore else None
    y = class_targets(rng, shape, ignore_index)
    kwargs = {"reduction": reduction}
    if weighted:
        kwargs["weight"] = class_weight(rng, dtype)
    if ignore:
        kwargs["ignore_index"] = 1
    check_loss("NLLLoss", kwargs, x, y, rng)


# ---- cross-entropy -------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True], ids=["no-ignore", "ignore_index=1"])
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("shape", list(CLASS_SHAPES.values()), ids=list(CLASS_SHAPES))
def test_cross_entropy_class_targets_match_torch(shape, weighted, ignore, smoothing, reduction, dtype, rng):
    x = rng.normal(scale=2.0, size=shape).astype(dtype)
    y = class_targets(rng, shape, 1 if ignore else None)
    kwargs = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        kwargs["weight"] = class_weight(rng, dtype)
    if ignore:
        kwargs["ignore_index"] = 1
    check_loss("CrossEntropyLoss", kwargs, x, y, rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("offset", [0.0, 25.0, -25.0, 40.0, -40.0, 1e4, -1e4])
def test_cross_entropy_far_logits_match_torch(offset, reduction, dtype, rng):
    """(N, C) logits, half of the rows shifted by ``offset``: while every row's max lies within
    ``loss.SHIFT_FREE`` the probabilities are exponentiated unshifted, beyond it after subtracting each row's max;
    torch's values and gradients either way, all finite."""
    shape = CLASS_SHAPES["(N, C)"]
    x = rng.normal(size=shape).astype(dtype)
    x[: shape[0] // 2] += x.dtype.type(offset)  # the other rows stay near 0
    maxes = x.max(axis=1)
    assert (np.abs(maxes).max() <= L.SHIFT_FREE) == (abs(offset) < L.SHIFT_FREE - 3)  # the path meant
    y = class_targets(rng, shape)
    value, dx = check_loss("CrossEntropyLoss", {"reduction": reduction}, x, y, rng)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("shape", list(CLASS_SHAPES.values()), ids=list(CLASS_SHAPES))
def test_cross_entropy_probability_targets_match_torch(shape, weighted, smoothing, reduction, dtype, rng):
    x = rng.normal(scale=2.0, size=shape).astype(dtype)
    c = 0 if len(shape) == 1 else 1
    z = rng.normal(size=shape)
    y = (np.exp(z) / np.exp(z).sum(axis=c, keepdims=True)).astype(dtype)
    kwargs = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        kwargs["weight"] = class_weight(rng, dtype)
    check_loss("CrossEntropyLoss", kwargs, x, y, rng)


@pytest.mark.parametrize("smoothing", [1.0, -0.3], ids=["label_smoothing=1", "label_smoothing=-0.3"])
@pytest.mark.parametrize("targets", ["class", "probability"])
def test_cross_entropy_smoothing_bounds_match_torch(targets, smoothing, dtype, rng):
    """label_smoothing = 1 (uniform targets) is allowed; a negative one is accepted by torch and acts as 0."""
    shape = CLASS_SHAPES["(N, C, d1)"]
    x = rng.normal(size=shape).astype(dtype)
    y = class_targets(rng, shape) if targets == "class" else rng.random(shape).astype(dtype)
    check_loss("CrossEntropyLoss", {"weight": class_weight(rng, dtype), "label_smoothing": smoothing}, x, y, rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [("NLLLoss", 0.0), ("CrossEntropyLoss", 0.0), ("CrossEntropyLoss", 0.2)],
                         ids=["NLLLoss", "CrossEntropyLoss", "CrossEntropyLoss(label_smoothing=0.2)"])
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("shape_id", ["(N, C)", "(N, C, d1)"])  # (N, C): CrossEntropy keeps probabilities
def test_all_targets_ignored_matches_torch(shape_id, weighted, case, reduction, dtype, rng):
    """Every target equals ignore_index: 'mean' is 0/0 = NaN as in torch, 'sum' 0, 'none' zeros."""
    name, smoothing = case
    shape = CLASS_SHAPES[shape_id]
    x = rng.normal(size=shape).astype(dtype)
    y = np.full(shape[:1] + shape[2:], 2, dtype=np.int64)
    kwargs = {"reduction": reduction, "ignore_index": 2}
    if smoothing:
        kwargs["label_smoothing"] = smoothing
    if weighted:
        kwargs["weight"] = class_weight(rng, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning for the 0/0
        value, _ = check_loss(name, kwargs, x, y, rng, nonzero=False)
    assert np.isnan(value) if reduction == "mean" else np.all(np.asarray(value) == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [("NLLLoss", 0.0), ("CrossEntropyLoss", 0.0), ("CrossEntropyLoss", 0.2)],
                         ids=["NLLLoss", "CrossEntropyLoss", "CrossEntropyLoss(label_smoothing=0.2)"])
@pytest.mark.parametrize("shape_id", ["(N, C)", "(N, C, d1)"])  # (N, C): CrossEntropy keeps probabilities
def test_zero_total_weight_matches_torch(shape_id, case, reduction, dtype, rng):
    """The targets' classes all have weight 0 and one position is ignored: 'mean' is 0/0 = NaN, and the
    gradient is NaN exactly where torch's is (the non-ignored positions), 0 at the ignored one."""
    name, smoothing = case
    shape = CLASS_SHAPES[shape_id]
    x = rng.normal(size=shape).astype(dtype)
    y = rng.choice([0, 3], size=shape[:1] + shape[2:]).astype(np.int64)
    y.flat[0] = 1  # ignored
    weight = class_weight(rng, dtype)
    weight[[0, 3]] = 0
    kwargs = {"reduction": reduction, "weight": weight, "ignore_index": 1}
    if smoothing:
        kwargs["label_smoothing"] = smoothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning for 0/0 or 0 * inf
        loss_fn = getattr(nn, name)(**kwargs)
        value = loss_fn(x, y)
        grad_output = upstream(rng, reduction, np.shape(value), dtype)
        dx = loss_fn.backward(grad_output)
    ref_value, ref_dx = torch_loss(name, kwargs, x, y, grad_output)
    assert_close(np.asarray(value, dtype=dtype), ref_value, name=f"{name} value")
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(ref_dx))
    assert_close(dx, ref_dx, name=f"{name} dinput")
    if reduction == "mean":
        assert np.isnan(value) and np.any(np.isnan(ref_dx)) and np.any(ref_dx == 0)


# ---- module API and dtypes -----------------------------------------------------------------------------
def valid_pair(name: str, rng: np.random.Generator, dtype) -> Tuple[np.ndarray, np.ndarray]:
    """A valid (input, target) for loss ``name``."""
    if name in ("NLLLoss", "CrossEntropyLoss"):
        shape = CLASS_SHAPES["(N, C)"]
        return rng.normal(size=shape).astype(dtype), class_targets(rng, shape)
    if name == "BCELoss":
        return rng.uniform(0.05, 0.95, size=SHAPE).astype(dtype), rng.random(SHAPE).astype(dtype)
    return rng.normal(size=SHAPE).astype(dtype), rng.normal(size=SHAPE).astype(dtype)


LOSS_NAMES = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss",
              "CrossEntropyLoss"]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_backward_defaults_to_grad_output_one(name, reduction, dtype, rng):
    """``loss_fn.backward()`` is ``backward(1.0)``, i.e. torch's ``loss.backward()``."""
    x, y = valid_pair(name, rng, dtype)
    loss_fn = getattr(nn, name)(reduction=reduction)
    loss_fn(x, y)
    dx = loss_fn.backward()
    _, ref_dx = torch_loss(name, {"reduction": reduction}, x, y, None)
    assert dx.dtype == dtype
    assert_close(dx, ref_dx, name=f"{name} default backward")
    assert_nonzero(f"{name} dinput", ref_dx)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_float_grad_output_equals_the_array_bit_for_bit(name, reduction, dtype, rng):
    """A Python float ``grad_output`` (the fast path of the usual ``backward()``) gives exactly what the same value
    as a 0-d array, a 1-element array or a NumPy scalar gives."""
    x, y = valid_pair(name, rng, dtype)
    loss_fn = getattr(nn, name)(reduction=reduction)
    loss_fn(x, y)
    for value in (1.0, 0.37):
        dx = loss_fn.backward(value)
        assert dx.dtype == dtype
        for same in (np.asarray(value), np.full(1, value), np.float64(value), np.asarray(value, dtype)):
            np.testing.assert_array_equal(loss_fn.backward(same), dx, err_msg=f"{type(same).__name__} {same!r}")


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_backward_before_forward_raises(name):
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        getattr(nn, name)().backward()


FUNCTIONAL = {  # name -> (forward, backward)
    "MSELoss": (F.mse_loss_forward, F.mse_loss_backward),
    "L1Loss": (F.l1_loss_forward, F.l1_loss_backward),
    "SmoothL1Loss": (F.smooth_l1_loss_forward, F.smooth_l1_loss_backward),
    "HuberLoss": (F.huber_loss_forward, F.huber_loss_backward),
    "BCELoss": (F.binary_cross_entropy_forward, F.binary_cross_entropy_backward),
    "BCEWithLogitsLoss": (F.binary_cross_entropy_with_logits_forward, F.binary_cross_entropy_with_logits_backward),
    "NLLLoss": (F.nll_loss_forward, F.nll_loss_backward),
    "CrossEntropyLoss": (F.cross_entropy_forward, F.cross_entropy_backward),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_functional_pair_matches_torch_and_keeps_dtype(name, reduction, dtype, rng):
    """The functional forms: a 0-d array ('mean'/'sum') or the element losses of the input's dtype,
    and a backward of the input's dtype, equal to torch."""
    forward, backward = FUNCTIONAL[name]
    x, y = valid_pair(name, rng, dtype)
    value, cache = forward(x, y, reduction=reduction)
    grad_output = upstream(rng, reduction, np.shape(value), dtype)
    dx = backward(grad_output, cache)
    ref_value, ref_dx = torch_loss(name, {"reduction": reduction}, x, y, grad_output)
    assert isinstance(value, np.ndarray) and value.dtype == dtype and dx.dtype == dtype
    assert_close(value, ref_value, name=f"{name} functional value")
    assert_close(dx, ref_dx, name=f"{name} functional dinput")


# ---- bad input -----------------------------------------------------------------------------------------
def _reg(shape_x=SHAPE, shape_y=SHAPE) -> Callable:
    return lambda rng, dtype: (rng.normal(size=shape_x).astype(dtype), rng.normal(size=shape_y).astype(dtype))


def _probs(values) -> Callable:
    def make(rng, dtype):
        x = rng.uniform(0.1, 0.9, size=(3, 4)).astype(dtype)
        x[1, 2] = values
        return x, rng.random((3, 4)).astype(dtype)
    return make


def _classes(shape, target) -> Callable:
    """``target``: an integer array-like or a callable (rng, dtype) -> target."""
    def make(rng, dtype):
        y = target(rng, dtype) if callable(target) else np.asarray(target, dtype=np.int64)
        return rng.normal(size=shape).astype(dtype), y
    return make


def _float_target(shape) -> Callable:
    return lambda rng, dtype: rng.random(shape).astype(dtype)


# id -> (loss, kwargs, make (input, target), exception, pattern matched against BOTH torch's and handnn's message)
BAD = {
    "MSELoss reduction='avg'": ("MSELoss", {"reduction": "avg"}, _reg(), ValueError,
                                r"avg is not a valid value for reduction"),
    "CrossEntropyLoss reduction='average'": (
        "CrossEntropyLoss", {"reduction": "average"}, _classes((7, 4), [0, 1, 2, 3, 0, 1, 2]), ValueError,
        r"average is not a valid value for reduction"),
    "BCELoss reduction='batchmean'": ("BCELoss", {"reduction": "batchmean"}, _probs(0.5), ValueError,
                                      r"batchmean is not a valid value for reduction"),
    "MSELoss target not broadcastable": ("MSELoss", {}, _reg(SHAPE, (4,)), RuntimeError, r"^The size of "),
    "BCELoss target shape": ("BCELoss", {}, lambda rng, dtype: (rng.random((3, 1)).astype(dtype),
                                                                 rng.random(3).astype(dtype)), ValueError,
                             r"Using a target size .*3.* that is different to the input size .*3, 1.* is deprecated"),
    "BCEWithLogitsLoss target shape": (
        "BCEWithLogitsLoss", {}, lambda rng, dtype: (rng.normal(size=(3, 1)).astype(dtype),
                                                     rng.random(3).astype(dtype)), ValueError,
        r"Target size .*3.* must be the same as input size .*3, 1"),
    "BCELoss input > 1": ("BCELoss", {}, _probs(1.2), RuntimeError,
                          r"all elements of input should be between 0 and 1"),
    "BCELoss input < 0": ("BCELoss", {}, _probs(-0.2), RuntimeError,
                          r"all elements of input should be between 0 and 1"),
    "BCELoss input NaN": ("BCELoss", {}, _probs(np.nan), RuntimeError,
                          r"all elements of input should be between 0 and 1"),
    "SmoothL1Loss beta=-1": ("SmoothL1Loss", {"beta": -1.0}, _reg(), RuntimeError,
                             r"smooth_l1_loss does not support negative values for beta\."),
    "HuberLoss delta=0": ("HuberLoss", {"delta": 0.0}, _reg(), RuntimeError,
                          r"huber_loss does not support non-positive values for delta\."),
    "HuberLoss delta=-1": ("HuberLoss", {"delta": -1.0}, _reg(), RuntimeError,
                           r"huber_loss does not support non-positive values for delta\."),
    "CrossEntropyLoss target 5": ("CrossEntropyLoss", {}, _classes((7, 4), [0, 1, 5, 3, 0, 1, 2]), IndexError,
                                  r"^Target 5 is out of bounds\.$"),
    "CrossEntropyLoss target -2": ("CrossEntropyLoss", {}, _classes((7, 4), [0, 1, -2, 3, 0, 1, 2]), IndexError,
                                   r"^Target -2 is out of bounds\.$"),
    "NLLLoss target 5": ("NLLLoss", {}, _classes((7, 4), [0, 1, 2, 3, 0, 5, 2]), IndexError,
                         r"^Target 5 is out of bounds\.$"),
    "NLLLoss target -1 (ignore_index=-100)": ("NLLLoss", {}, _classes((7, 4), [0, 1, 2, -1, 0, 1, 2]), IndexError,
                                              r"^Target -1 is out of bounds\.$"),
    "NLLLoss (C,) target 5": ("NLLLoss", {}, _classes((4,), 5), IndexError, r"^Target 5 is out of bounds\.$"),
    "CrossEntropyLoss (N, C, d1, d2) target 5": (
        "CrossEntropyLoss", {}, _classes((3, 4, 5, 2), lambda rng, dtype: np.full((3, 5, 2), 5, dtype=np.int64)),
        IndexError, r"^Target 5 is out of bounds\.$"),
    "CrossEntropyLoss ignore_index out of range still checks others": (
        "CrossEntropyLoss", {"ignore_index": 7}, _classes((7, 4), [7, 7, 9, 0, 1, 2, 3]), IndexError,
        r"^Target 9 is out of bounds\.$"),
    "CrossEntropyLoss batch size": ("CrossEntropyLoss", {}, _classes((7, 4), [0, 1, 2, 3, 0, 1]), ValueError,
                                    r"Expected input batch_size \(7\) to match target batch_size \(6\)\."),
    "NLLLoss batch size (N, C, d1)": ("NLLLoss", {}, _classes((3, 4, 5), np.zeros((2, 5))), ValueError,
                                      r"Expected input batch_size \(3\) to match target batch_size \(2\)\."),
    "NLLLoss (C,) with 2 targets": ("NLLLoss", {}, _classes((4,), [1, 2]), ValueError,
                                    r"For 1D input, 1D target must have size 1, but got target size: 2"),
    "NLLLoss (N, C, d1) target size": ("NLLLoss", {}, _classes((3, 4, 5), np.zeros((3, 4))), RuntimeError,
                                       r"Expected target size \[3, 5\], got \[3, 4\]"),
    "NLLLoss weight length": ("NLLLoss", {"weight": "3 classes"}, _classes((7, 4), [0, 1, 2, 3, 0, 1, 2]),
                              RuntimeError, r"weight tensor should be defined either for all 4 classes or no classes"),
    "CrossEntropyLoss float target (N, C+1)": ("CrossEntropyLoss", {}, _classes((7, 4), _float_target((7, 5))),
                                               RuntimeError,
                                               r"0D or 1D target tensor expected, multi-target not supported"),
    "CrossEntropyLoss float target (N-1,)": ("CrossEntropyLoss", {}, _classes((7, 4), _float_target((6,))),
                                             ValueError,
                                             r"Expected input batch_size \(7\) to match target batch_size \(6\)\."),
    "CrossEntropyLoss float target (N,)": ("CrossEntropyLoss", {}, _classes((7, 4), _float_target((7,))),
                                           RuntimeError, r"expected target dtype to be"),
    "CrossEntropyLoss float target (N, C, d1+1)": (
        "CrossEntropyLoss", {}, _classes((3, 4, 5), _float_target((3, 4, 6))), RuntimeError,
        r"Expected target size \[3, 5\], got \[3, 4, 6\]"),
    "CrossEntropyLoss probability target with ignore_index": (
        "CrossEntropyLoss", {"ignore_index": 1}, _classes((7, 4), _float_target((7, 4))), RuntimeError,
        r"ignore_index is not supported for floating point target"),
    "CrossEntropyLoss label_smoothing=1.5": ("CrossEntropyLoss", {"label_smoothing": 1.5},
                                             _classes((7, 4), [0, 1, 2, 3, 0, 1, 2]), RuntimeError,
                                             r"label_smoothing must be between 0\.0 and 1\.0\. Got: 1\.5"),
    "CrossEntropyLoss label_smoothing=1.5 probabilities": (
        "CrossEntropyLoss", {"label_smoothing": 1.5}, _classes((7, 4), _float_target((7, 4))), RuntimeError,
        r"label_smoothing must be between 0\.0 and 1\.0\. Got: 1\.5"),
    "CrossEntropyLoss probability target with ignore_index=0": (
        "CrossEntropyLoss", {"ignore_index": 0}, _classes((7, 4), _float_target((7, 4))), RuntimeError,
        r"ignore_index is not supported for floating point target"),
    "NLLLoss weight of the other float dtype": ("NLLLoss", {"weight": "other dtype"},
                                                _classes((7, 4), [0, 1, 2, 3, 0, 1, 2]), RuntimeError,
                                                r"(mixed dtype|expected scalar type)"),
    "CrossEntropyLoss weight of the other float dtype": ("CrossEntropyLoss", {"weight": "other dtype"},
                                                         _classes((7, 4), [0, 1, 2, 3, 0, 1, 2]), RuntimeError,
                                                         r"(mixed dtype|expected scalar type)"),
    "CrossEntropyLoss 0-d input, class target": ("CrossEntropyLoss", {}, _classes((), [1]), IndexError,
                                                 r"Dimension out of range"),
    "BCEWithLogitsLoss bool pos_weight": ("BCEWithLogitsLoss", {"pos_weight": "bool (4,)"}, _probs(0.5),
                                          RuntimeError, r"bool"),
    "CrossEntropyLoss probabilities weight length": (
        "CrossEntropyLoss", {"weight": "3 classes"}, _classes((7, 4), _float_target((7, 4))), RuntimeError,
        r"weight tensor should be defined either for all 4 classes or no classes"),
    # a weight must broadcast to the input's shape (torch words it three ways)
    "BCELoss weight (3,) on (3, 4)": ("BCELoss", {"weight": "3 classes"}, _probs(0.5), RuntimeError,
                                      r"broadcast|must match"),
    "BCEWithLogitsLoss weight (3,) on (3, 4)": ("BCEWithLogitsLoss", {"weight": "3 classes"}, _probs(0.5),
                                                RuntimeError, r"broadcast|must match"),
    "BCEWithLogitsLoss pos_weight (3,) on (3, 4)": ("BCEWithLogitsLoss", {"pos_weight": "3 classes"}, _probs(0.5),
                                                    RuntimeError, r"broadcast|must match"),
    "BCEWithLogitsLoss pos_weight (2, 3, 4) on (3, 4)": (
        "BCEWithLogitsLoss", {"pos_weight": "(2, 3, 4)"}, _probs(0.5), RuntimeError, r"broadcast|must match"),
}


#: cases whose hyper-parameters (not data) are invalid: no module of them can run a good forward
BAD_OPTIONS = {"MSELoss reduction='avg'", "CrossEntropyLoss reduction='average'", "BCELoss reduction='batchmean'",
               "SmoothL1Loss beta=-1", "HuberLoss delta=0", "HuberLoss delta=-1", "NLLLoss weight length",
               "CrossEntropyLoss label_smoothing=1.5", "CrossEntropyLoss label_smoothing=1.5 probabilities",
               "CrossEntropyLoss probabilities weight length", "BCELoss weight (3,) on (3, 4)",
               "BCEWithLogitsLoss weight (3,) on (3, 4)", "BCEWithLogitsLoss pos_weight (3,) on (3, 4)",
               "BCEWithLogitsLoss pos_weight (2, 3, 4) on (3, 4)", "NLLLoss weight of the other float dtype",
               "CrossEntropyLoss weight of the other float dtype", "BCEWithLogitsLoss bool pos_weight"}
assert BAD_OPTIONS <= set(BAD)


def _resolve(kwargs: Dict[str, object], dtype) -> Dict[str, object]:
    """Placeholders for arrays in BAD's kwargs (a weight of the wrong length or shape)."""
    arrays = {"3 classes": np.linspace(0.5, 1.5, 3, dtype=dtype),
              "(2, 3, 4)": np.linspace(0.5, 1.5, 24, dtype=dtype).reshape(2, 3, 4),
              "other dtype": np.linspace(0.5, 1.5, 4, dtype=np.float32 if dtype == np.float64 else np.float64),
              "bool (4,)": np.array([True, False, True, True])}
    return {k: arrays.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_raises_like_torch(case, dtype, rng):
    """torch raises this class with this message; handnn raises the same, modifies nothing, and a module
    that had already run keeps its last forward's cache (backward still gives that gradient)."""
    name, kwargs, make, exc, pattern = BAD[case]
    kwargs = _resolve(kwargs, dtype)
    x, y = make(rng, dtype)
    x_before, y_before = x.copy(), y.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(exc, match=pattern):
            torch_module = getattr(torch.nn, name)(**{k: as_torch(v) for k, v in kwargs.items()})
            torch_module(to_tensor(x), to_tensor(y))
        with pytest.raises(exc, match=pattern):
            getattr(nn, name)(**kwargs)(x, y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)

    if case in BAD_OPTIONS:
        return  # the module itself is invalid: there is no good forward to keep
    # bad data given to a module that has run a forward on good data: its cache (the gradient) is kept
    loss_fn = getattr(nn, name)(**kwargs)
    good_x, good_y = valid_pair(name, rng, dtype)
    loss_fn(good_x, good_y)
    expected = loss_fn.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(exc, match=pattern):
            loss_fn(x, y)
    np.testing.assert_array_equal(loss_fn.backward(), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_grad_output_of_another_shape_is_refused(name, reduction, dtype, rng):
    """torch's RuntimeError for an upstream gradient that is not shaped like the loss: a non-scalar one for 'mean'
    and 'sum', another shape for 'none'; the module's cache stays usable."""
    x, y = valid_pair(name, rng, dtype)
    loss_fn = getattr(nn, name)(reduction=reduction)
    value = loss_fn(x, y)
    wrong = np.ones(3, dtype) if reduction != "none" else np.ones(np.shape(value) + (2,), dtype)
    xt = to_tensor(x).requires_grad_(True)
    out = getattr(torch.nn, name)(reduction=reduction)(xt, to_tensor(y))
    with pytest.raises(RuntimeError):
        out.backward(to_tensor(wrong), retain_graph=True)
    with pytest.raises(RuntimeError, match="grad_output"):
        loss_fn.backward(wrong)
    right = rng.normal(size=np.shape(value)).astype(dtype)
    out.backward(to_tensor(right))
    assert_close(loss_fn.backward(right), xt.grad.numpy(), name=f"{name} dinput after the refusal")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["MSELoss", "L1Loss", "SmoothL1Loss(beta=0.5)", "HuberLoss(delta=1)"])
def test_input_broadcast_along_a_size_one_dim_sums_back(case, reduction, dtype, rng):
    """An input of shape (4, 1, 5) against a (4, 3, 5) target: the loss is over the broadcast shape and dL/dx is
    summed back over the size-1 dim, as torch's autograd does."""
    name, options = REGRESSION[case]
    x = rng.normal(size=(4, 1, 5)).astype(dtype)
    y = rng.normal(size=(4, 3, 5)).astype(dtype)
    with pytest.warns(UserWarning, match="different to the input size"):
        _, dx = check_loss(name, {**options, "reduction": reduction}, x, y, rng)
    assert dx.shape == x.shape


@pytest.mark.parametrize("name, option", [("BCELoss", "weight"), ("BCEWithLogitsLoss", "weight"),
                                          ("BCEWithLogitsLoss", "pos_weight")])
def test_integer_weights_multiply_like_torch(name, option, dtype, rng):
    """torch multiplies by a weight or pos_weight of an integer dtype (the loss keeps its float dtype)."""
    x, y = valid_pair(name, rng, dtype)
    check_loss(name, {option: rng.integers(1, 4, size=x.shape[-1])}, x, y, rng)


@pytest.mark.parametrize("option", ["weight", "pos_weight"])
def test_a_list_weight_is_a_type_error(option, dtype, rng):
    """The functional form given a Python list for a weight: TypeError, as torch's argument parser raises."""
    x, y = valid_pair("BCEWithLogitsLoss", rng, dtype)
    with pytest.raises(TypeError):
        torch.nn.functional.binary_cross_entropy_with_logits(to_tensor(x), to_tensor(y), **{option: [1.0] * 5})
    with pytest.raises(TypeError, match="numpy.ndarray"):
        F.binary_cross_entropy_with_logits_forward(x, y, **{option: [1.0] * 5})


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["MSELoss", "BCEWithLogitsLoss"])
def test_a_one_element_grad_output_of_a_0d_loss_keeps_dx_0d(name, reduction, dtype, rng):
    """A 1-element grad_output (shape (1,), accepted as the scalar it holds) of a loss over 0-d arrays gives dx of
    the input's shape, (), as the scalar does."""
    x, y = np.asarray(rng.normal(), dtype), np.asarray(rng.uniform(), dtype)
    loss_fn = getattr(nn, name)(reduction=reduction)
    loss_fn(x, y)
    dx = loss_fn.backward(np.full(1, 0.5, dtype))
    assert dx.shape == () and dx.dtype == dtype
    np.testing.assert_array_equal(dx, loss_fn.backward(0.5))


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss"])
def test_broadcast_warning_points_at_the_callers_line(name, dtype, rng):
    """The functional form's UserWarning names the line that called it (stacklevel), as torch's does."""
    x, y = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(3,)).astype(dtype)
    forward = F.mse_loss_forward if name == "MSELoss" else F.l1_loss_forward
    with pytest.warns(UserWarning, match="different to the input size") as record:
        forward(x, y)
    assert record[0].filename == __file__


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_invalid_reduction_rejected_by_every_loss(name, dtype, rng):
    """torch raises at the call, handnn already at construction; same class and message."""
    x, y = valid_pair(name, rng, dtype)
    with pytest.raises(ValueError, match=r"^sums is not a valid value for reduction$"):
        getattr(torch.nn, name)(reduction="sums")(to_tensor(x), to_tensor(y))
    with pytest.raises(ValueError, match=r"^sums is not a valid value for reduction$"):
        getattr(nn, name)(reduction="sums")(x, y)
    with pytest.raises(ValueError, match=r"^sums is not a valid value for reduction$"):
        FUNCTIONAL[name][0](x, y, reduction="sums")
