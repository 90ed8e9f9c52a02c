"""BatchNorm1d / BatchNorm2d against torch: outputs, every gradient, the running statistics over several
training steps, the eval pass, every option, the edge cases and the bad inputs.

Every module gets a random weight and bias (so a swapped or ignored affine term shows) before its twin is built
with ``to_torch``; inputs have a different mean and scale per channel, including a channel of small variance.
"""
from __future__ import annotations

import copy
import re
from typing import Dict

import numpy as np
import pytest
import torch

from handnn import nn
from reference import assert_close, assert_step_parity, to_tensor, to_torch
from reference.harness import assert_inputs_untouched, torch_error

TRAIN_STEPS = 4


# ---- helpers -------------------------------------------------------------------------------------------------
def _randomize_affine(module: nn.Module, rng: np.random.Generator) -> None:
    """Move weight/bias off their 1/0 initialisation."""
    if module.weight is not None:
        module.weight.data[...] = rng.uniform(0.5, 1.5, module.weight.shape)
        module.bias.data[...] = rng.normal(size=module.bias.shape)


def _batch(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Data with a different mean and scale per channel (dim 1).

    Channel 0 has a small variance (1e-4, ten times the default eps) around mean 0: small enough that where eps
    goes matters, centred so float32 does not lose the deviations to cancellation against a large mean.
    """
    channels = shape[1]
    bshape = (1, channels) + (1,) * (len(shape) - 2)
    loc = rng.normal(0.0, 2.0, channels)
    scale = rng.uniform(0.3, 3.0, channels)
    loc[0], scale[0] = 0.0, 1e-2
    return (loc.reshape(bshape) + scale.reshape(bshape) * rng.standard_normal(shape)).astype(dtype)


def _build(kind, num_features: int, kwargs: Dict, dtype, rng) -> nn.Module:
    module = kind(num_features, **kwargs, dtype=dtype)
    _randomize_affine(module, rng)
    return module


def _snapshot(module: nn.Module) -> Dict[str, np.ndarray]:
    return {k: v.copy() for k, v in module.state_dict().items()}


def _assert_same_state(before: Dict[str, np.ndarray], module: nn.Module) -> None:
    after = module.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        np.testing.assert_array_equal(after[key], value, err_msg=key)


# ---- training steps, then eval -------------------------------------------------------------------------------
CONFIGS = [
    pytest.param(nn.BatchNorm1d, (9, 5), {}, id="1d-(N,C)"),
    pytest.param(nn.BatchNorm1d, (7, 5, 4), {}, id="1d-(N,C,L)"),
    pytest.param(nn.BatchNorm2d, (7, 5, 4, 3), {}, id="2d"),
    pytest.param(nn.BatchNorm1d, (9, 5), {"momentum": None}, id="1d-(N,C)-momentum=None"),
    pytest.param(nn.BatchNorm2d, (7, 5, 4, 3), {"momentum": None}, id="2d-momentum=None"),
    pytest.param(nn.BatchNorm1d, (7, 5, 4), {"momentum": 0.3, "eps": 1e-3}, id="1d-(N,C,L)-momentum=0.3-eps=1e-3"),
    pytest.param(nn.BatchNorm2d, (7, 5, 4, 3), {"momentum": 0.7, "eps": 1e-2}, id="2d-momentum=0.7-eps=1e-2"),
    pytest.param(nn.BatchNorm1d, (9, 5), {"affine": False}, id="1d-(N,C)-affine=False"),
    pytest.param(nn.BatchNorm2d, (7, 5, 4, 3), {"affine": False}, id="2d-affine=False"),
    pytest.param(nn.BatchNorm1d, (9, 5), {"track_running_stats": False}, id="1d-(N,C)-no-running-stats"),
    pytest.param(nn.BatchNorm1d, (7, 5, 4), {"track_running_stats": False}, id="1d-(N,C,L)-no-running-stats"),
    pytest.param(nn.BatchNorm2d, (7, 5, 4, 3), {"track_running_stats": False, "affine": False},
                 id="2d-no-running-stats-affine=False"),
    pytest.param(nn.BatchNorm1d, (1, 5, 4), {}, id="1d-(1,C,L)"),
    pytest.param(nn.BatchNorm2d, (1, 5, 4, 3), {"momentum": None}, id="2d-N=1-momentum=None"),
]


@pytest.mark.parametrize("kind, shape, kwargs", CONFIGS)
def test_training_steps_then_eval(kind, shape, kwargs, dtype, rng):
    """Forward, dx, dweight, dbias and every buffer after each of several training steps; then eval steps."""
    module = _build(kind, shape[1], kwargs, dtype, rng)
    twin = to_torch(module)
    assert list(module.state_dict()) == list(twin.state_dict())
    for step in range(1, TRAIN_STEPS + 1):
        assert_step_parity(module, twin, _batch(rng, shape, dtype), rng.normal(size=shape).astype(dtype),
                           prefix=f"train step {step}: ")
        if module.track_running_stats:
            assert module.num_batches_tracked.dtype == np.int64 and int(module.num_batches_tracked) == step
    module.eval()
    twin.eval()
    for step in range(1, 3):
        assert_step_parity(module, twin, _batch(rng, shape, dtype), rng.normal(size=shape).astype(dtype),
                           prefix=f"eval step {step}: ")
    if module.track_running_stats:
        assert int(module.num_batches_tracked) == TRAIN_STEPS  # eval never counts
    else:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert getattr(module, name) is None and getattr(twin, name) is None
        assert not any(k.startswith(("running", "num_batches")) for k in module.state_dict())


def test_cumulative_average_formula(dtype, rng):
    """``momentum=None``: the running statistics are the plain averages of the batch mean / unbiased variance."""
    module = _build(nn.BatchNorm1d, 5, {"momentum": None}, dtype, rng)
    batches = [_batch(rng, (7, 5, 4), dtype) for _ in range(TRAIN_STEPS)]
    for x in batches:
        module(x)
    stats = np.stack([x.astype(np.float64).mean(axis=(0, 2)) for x in batches])
    variances = np.stack([x.astype(np.float64).var(axis=(0, 2), ddof=1) for x in batches])
    assert_close(module.running_mean, stats.mean(axis=0).astype(dtype), "running_mean")
    assert_close(module.running_var, variances.mean(axis=0).astype(dtype), "running_var")


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("kind, shape", [(nn.BatchNorm1d, (9, 5)), (nn.BatchNorm1d, (7, 5, 4)),
                                         (nn.BatchNorm2d, (7, 5, 4, 3)), (nn.BatchNorm1d, (1, 5)),
                                         (nn.BatchNorm2d, (1, 5, 1, 1))],
                         ids=["1d-(N,C)", "1d-(N,C,L)", "2d", "1d-N=1", "2d-one-value"])
def test_eval_with_given_running_stats(kind, shape, eps, dtype, rng):
    """Eval normalises with the running statistics, eps inside the sqrt; variances from 1e-4 up make an
    ``eps``-outside-the-sqrt or a batch-statistics eval visible (also in float32). N = 1 works in eval."""
    module = _build(kind, shape[1], {"eps": eps}, dtype, rng)
    module.running_mean[...] = rng.normal(0.0, 2.0, 5)
    module.running_var[...] = [1e-4, 3e-3, 0.2, 1.5, 4.0]
    module.num_batches_tracked[...] = 3
    module.eval()
    twin = to_torch(module)
    x = _batch(rng, shape, dtype)
    assert_step_parity(module, twin, x, rng.normal(size=shape).astype(dtype))
    # and a formula computed here, independently of torch
    bshape = (1, 5) + (1,) * (len(shape) - 2)
    rm, rv = (np.asarray(b, np.float64).reshape(bshape) for b in (module.running_mean, module.running_var))
    w, b = (p.data.astype(np.float64).reshape(bshape) for p in (module.weight, module.bias))
    assert_close(module(x), ((x - rm) / np.sqrt(rv + eps) * w + b).astype(dtype), "eval formula")


def test_constant_feature(dtype, rng):
    """A channel whose values are all equal: zero batch variance, x_hat = 0, running_var decays towards 0."""
    shape = (7, 5, 4)
    module = _build(nn.BatchNorm1d, 5, {}, dtype, rng)
    twin = to_torch(module)
    for step in range(1, 3):
        x = _batch(rng, shape, dtype)
        x[:, 3] = rng.normal()
        assert_step_parity(module, twin, x, rng.normal(size=shape).astype(dtype), prefix=f"step {step}: ")
        # out = bias and dweight = 0 on that channel. In float32 exactly, as torch: the mean is accumulated in
        # float64 so it rounds back to the constant, instead of leaving float32 rounding noise times
        # 1 / sqrt(eps) ~ 316 in x_hat. (A float64 mean of equal values can be off by an ulp: compared to 1e-10.)
        clone = copy.deepcopy(module)  # a copy: this extra step must not update the real statistics
        out = clone(x)
        clone.zero_grad()
        clone.backward(rng.normal(size=shape).astype(dtype))
        expected_out = np.broadcast_to(module.bias.data[3], out[:, 3].shape)
        if dtype == np.float32:
            np.testing.assert_array_equal(out[:, 3], expected_out)
            assert clone.weight.grad[3] == 0
        assert_close(out[:, 3], expected_out, "constant channel: out = bias")
        assert_close(clone.weight.grad[3], np.zeros((), dtype), "constant channel: dweight = 0")
    module.eval()
    twin.eval()
    x = _batch(rng, shape, dtype)
    x[:, 3] = rng.normal()
    assert_step_parity(module, twin, x, rng.normal(size=shape).astype(dtype), prefix="eval: ")


def test_gradients_accumulate_like_torch(dtype, rng):
    """Two backward passes without zero_grad add up, as torch's .grad does."""
    shape = (7, 5, 4, 3)
    module = _build(nn.BatchNorm2d, 5, {}, dtype, rng)
    twin = to_torch(module)
    x = _batch(rng, shape, dtype)
    xt = to_tensor(x).requires_grad_(True)
    for _ in range(2):
        dout = rng.normal(size=shape).astype(dtype)
        module(x)
        module.backward(dout)
        twin(xt).backward(to_tensor(dout))
    assert_close(module.weight.grad, twin.weight.grad.numpy(), "accumulated dweight")
    assert_close(module.bias.grad, twin.bias.grad.numpy(), "accumulated dbias")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("kind, shape", [("BatchNorm1d", (6, 5)), ("BatchNorm1d", (6, 5, 4)),
                                         ("BatchNorm2d", (6, 5, 4, 3))], ids=["1d-2d", "1d-3d", "2d-4d"])
def test_upstream_gradient_of_any_layout(kind, shape, layout, training, dtype, rng):
    """A non-contiguous upstream gradient (a transposed or strided view) gives torch's gradients."""
    module = getattr(nn, kind)(shape[1], dtype=dtype)
    module.train(training)
    x = rng.normal(size=shape).astype(dtype)
    base = rng.normal(size=shape[::-1] if layout == "transposed" else shape[:-1] + (2 * shape[-1],)).astype(dtype)
    dout = base.T if layout == "transposed" else base[..., ::2]
    assert not dout.flags.c_contiguous
    assert_step_parity(module, to_torch(module), x, dout)


# ---- no mutation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind, shape", [(nn.BatchNorm1d, (9, 5)), (nn.BatchNorm1d, (7, 5, 4)),
                                         (nn.BatchNorm2d, (7, 5, 4, 3))], ids=["1d-(N,C)", "1d-(N,C,L)", "2d"])
def test_input_and_upstream_gradient_unchanged(kind, shape, training, dtype, rng):
    module = _build(kind, 5, {}, dtype, rng).train(training)
    x = _batch(rng, shape, dtype)
    dout = rng.normal(size=shape).astype(dtype)
    assert_inputs_untouched(module, x, dout)


# ---- bad inputs ---------------------------------------------------------------------------------------------------
def _float(dtype=np.float64):
    return lambda rng, shape: rng.normal(size=shape).astype(dtype)


def _ints(rng, shape):
    return rng.integers(-3, 4, size=shape).astype(np.int64)


BATCH_OF_ONE = re.escape("Expected more than 1 value per channel when training, got input size")
BAD = [
    # id, kind, constructor kwargs, training, input shape, input maker, match (torch and handnn), handnn-only match
    ("train-batch-of-1-(1,C)", nn.BatchNorm1d, {}, True, (1, 5), _float(), BATCH_OF_ONE, None),
    ("train-batch-of-1-(1,C,1)", nn.BatchNorm1d, {}, True, (1, 5, 1), _float(), BATCH_OF_ONE, None),
    ("train-batch-of-1-2d", nn.BatchNorm2d, {}, True, (1, 5, 1, 1), _float(), BATCH_OF_ONE, None),
    ("eval-batch-of-1-no-running-stats", nn.BatchNorm1d, {"track_running_stats": False}, False, (1, 5),
     _float(), BATCH_OF_ONE, None),
    ("1d-got-1D", nn.BatchNorm1d, {}, True, (5,), _float(), re.escape("expected 2D or 3D input (got 1D input)"), None),
    ("1d-got-4D", nn.BatchNorm1d, {}, True, (3, 5, 4, 2), _float(),
     re.escape("expected 2D or 3D input (got 4D input)"), None),
    ("2d-got-3D", nn.BatchNorm2d, {}, True, (3, 5, 4), _float(), re.escape("expected 4D input (got 3D input)"), None),
    ("2d-got-5D", nn.BatchNorm2d, {}, False, (3, 5, 4, 2, 2), _float(),
     re.escape("expected 4D input (got 5D input)"), None),
    ("train-wrong-channels", nn.BatchNorm1d, {}, True, (4, 6), _float(),
     re.escape("running_mean should contain 6 elements not 5"), None),
    ("eval-wrong-channels", nn.BatchNorm2d, {}, False, (4, 3, 2, 2), _float(),
     re.escape("running_mean should contain 3 elements not 5"), None),
    ("no-running-stats-wrong-channels", nn.BatchNorm1d, {"track_running_stats": False}, True, (4, 6, 3), _float(),
     re.escape("weight should contain 6 elements not 5"), None),
    ("train-eps=0.0", nn.BatchNorm1d, {"eps": 0.0}, True, (4, 5), _float(),
     re.escape("batch_norm eps must be positive during training, but got 0.0"), None),
    ("train-eps=0", nn.BatchNorm2d, {"eps": 0}, True, (4, 5, 2, 3), _float(),
     re.escape("batch_norm eps must be positive during training, but got 0") + "$", None),
    ("eval-eps<0", nn.BatchNorm1d, {"eps": -1e-5}, False, (4, 5), _float(),
     re.escape("batch_norm eps must be non-negative, but got -1e-05"), None),
    ("train-int64", nn.BatchNorm1d, {}, True, (4, 5), _ints, None, "int64"),
    ("eval-int64", nn.BatchNorm2d, {}, False, (4, 5, 2, 3), _ints, None, "int64"),
    ("train-float32-into-float64", nn.BatchNorm1d, {}, True, (4, 5, 3), _float(np.float32), "mixed dtype", None),
    ("eval-float32-into-float64", nn.BatchNorm2d, {}, False, (4, 5, 2, 3), _float(np.float32), "mixed dtype", None),
    # two faults at once: torch's order of checks decides which one is reported
    ("int64-and-batch-of-1", nn.BatchNorm1d, {}, True, (1, 5), _ints, BATCH_OF_ONE, None),
    ("int64-and-2d-got-3D", nn.BatchNorm2d, {}, True, (3, 5, 4), _ints,
     re.escape("expected 4D input (got 3D input)"), None),
    ("int64-and-wrong-channels", nn.BatchNorm1d, {}, True, (4, 6), _ints,
     re.escape("running_mean should contain 6 elements not 5"), None),
    ("float32-and-wrong-channels", nn.BatchNorm1d, {}, False, (4, 6), _float(np.float32),
     re.escape("running_mean should contain 6 elements not 5"), None),
    ("wrong-channels-and-batch-of-1", nn.BatchNorm1d, {}, True, (1, 6), _float(), BATCH_OF_ONE, None),
    ("eps=0-and-int64", nn.BatchNorm1d, {"eps": 0.0}, True, (4, 5), _ints,
     re.escape("batch_norm eps must be positive during training, but got 0.0"), None),
]


@pytest.mark.parametrize("kind, kwargs, training, shape, make, match, own_match",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_bad_input_raises_like_torch_and_changes_nothing(kind, kwargs, training, shape, make, match, own_match, rng):
    module = _build(kind, 5, kwargs, np.float64, rng).train(training)
    if module.track_running_stats:  # non-initial state, so a partial update would show
        module.num_batches_tracked[...] = 2
        module.running_mean[...] = rng.normal(size=5)
        module.running_var[...] = rng.uniform(0.5, 2.0, 5)
    twin = to_torch(module)
    x = make(rng, shape)
    expected = torch_error(lambda: twin(torch.from_numpy(x.copy())))
    if match is not None:  # the message fragment is checked against torch's own message too
        assert re.search(match, str(expected)), str(expected)
    before = _snapshot(module)
    with pytest.raises(type(expected), match=match or own_match) as info:
        module(x)
    assert type(info.value) is type(expected)
    _assert_same_state(before, module)
    assert module.training is training


def test_backward_before_forward_raises(rng):
    module = nn.BatchNorm1d(5)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        module.backward(rng.normal(size=(9, 5)))
