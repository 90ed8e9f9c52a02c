"""Inputs large enough for the fast kernels' large-array paths (``handnn.functional._kernels``: BLAS sums in the
input's dtype, unbuffered broadcasting, blocked GELU), against torch at the table's
tolerances: outputs, every gradient and the running statistics, in training and (BatchNorm) in eval, with offset
data (mean 3 standard deviations off zero) so a mean accumulated carelessly would show."""
from __future__ import annotations

import numpy as np
import pytest

from handnn import nn
from handnn.functional import _kernels
from reference import assert_step_parity, to_torch

#: shapes of at least _kernels.UNBUFFERED_FROM elements (and beyond one GELU block)
SHAPE_1D = (160, 500)
SHAPE_2D = (6, 16, 30, 30)

LAYERS = {
    "BatchNorm1d": (lambda d: nn.BatchNorm1d(SHAPE_1D[1], dtype=d), SHAPE_1D),
    "BatchNorm1d-3d": (lambda d: nn.BatchNorm1d(16, dtype=d), (60, 16, 90)),
    "BatchNorm2d": (lambda d: nn.BatchNorm2d(16, dtype=d), SHAPE_2D),
    "BatchNorm2d-no-affine": (lambda d: nn.BatchNorm2d(16, affine=False, dtype=d), SHAPE_2D),
    "LayerNorm": (lambda d: nn.LayerNorm(SHAPE_1D[1], dtype=d), SHAPE_1D),
    "GroupNorm": (lambda d: nn.GroupNorm(4, 16, dtype=d), SHAPE_2D),
    "GroupNorm-no-affine": (lambda d: nn.GroupNorm(8, 16, affine=False, dtype=d), SHAPE_2D),
    "GELU": (lambda d: nn.GELU(), SHAPE_1D),
    "GELU-tanh": (lambda d: nn.GELU("tanh"), SHAPE_1D),
    "ReLU": (lambda d: nn.ReLU(), SHAPE_1D),
    "Softmax": (lambda d: nn.Softmax(dim=-1), SHAPE_1D),
    "LogSoftmax": (lambda d: nn.LogSoftmax(dim=-1), SHAPE_1D),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_large_input_parity(name, dtype, seed):
    _check_parity(name, dtype, seed)


def _check_parity(name, dtype, seed):
    build, shape = LAYERS[name]
    assert np.prod(shape) >= _kernels.UNBUFFERED_FROM
    rng = np.random.default_rng(seed)
    module = build(dtype)
    for m in module.modules():  # parameters off 1/0
        if getattr(m, "weight", None) is not None:
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = rng.uniform(-1, 1, m.bias.shape)
    twin = to_torch(module)
    x = (rng.normal(size=shape) * 2 + 6).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    assert_step_parity(module, twin, x, dout)
    if name.startswith("BatchNorm"):  # eval: the running statistics just updated, used as constants
        module.eval(), twin.eval()
        assert_step_parity(module, twin, x, dout)
