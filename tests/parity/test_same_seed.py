"""rng=TorchGenerator(seed) everywhere handnn draws: the same numbers as torch seeded with the same integer.

Layers, whole Sequentials built layer by layer, the init functions, Dropout masks over a sequence of forwards,
``data.minibatches`` against a seeded ``DataLoader``, and the README's demo (``examples/same_seed_moons.py``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch.utils.data import DataLoader, TensorDataset

from handnn import data, init, nn
from handnn.random import TorchGenerator
from reference.twin import TORCH_DTYPES

SEEDS = [0, 1, 12345]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "same_seed_moons.py"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(784, 10), (3, 5), (1, 1), (17, 16)], ids=str)
def test_linear_weights_bit_for_bit(seed, shape, dtype):
    ours = nn.Linear(*shape, dtype=dtype, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    theirs = torch.nn.Linear(*shape, dtype=TORCH_DTYPES[dtype])
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    np.testing.assert_array_equal(ours.bias.data, theirs.bias.detach().numpy())


@pytest.mark.parametrize("seed", SEEDS)
def test_sequential_built_layer_by_layer(seed, dtype):
    g = TorchGenerator(seed)
    ours = nn.Sequential(nn.Linear(2, 20, dtype=dtype, rng=g), nn.BatchNorm1d(20, dtype=dtype), nn.ReLU(),
                         nn.Dropout(0.3, rng=g), nn.Linear(20, 7, bias=False, dtype=dtype, rng=g),
                         nn.LayerNorm(7, dtype=dtype), nn.Linear(7, 1, dtype=dtype, rng=g))
    torch.manual_seed(seed)
    t = TORCH_DTYPES[dtype]
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 20, dtype=t), torch.nn.BatchNorm1d(20, dtype=t),
                                 torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(20, 7, bias=False, dtype=t),
                                 torch.nn.LayerNorm(7, dtype=t), torch.nn.Linear(7, 1, dtype=t))
    state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, state[name].numpy(), err_msg=name)


INITS = [("uniform_", {"a": -0.5, "b": 2.0}), ("normal_", {"mean": 0.3, "std": 2.0}), ("xavier_uniform_", {}),
         ("xavier_normal_", {"gain": 2.0}), ("kaiming_uniform_", {"a": 5 ** 0.5}),
         ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}), ("trunc_normal_", {}),
         ("trunc_normal_", {"mean": 0.1, "std": 0.02, "a": -0.01, "b": 0.15})]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(7, 5), (30, 20, 3), (4, 3)], ids=str)  # 12 elements: the scalar normal path
@pytest.mark.parametrize("name, kwargs", INITS, ids=[f"{n}{k}" for n, k in INITS])
def test_init_functions_bit_for_bit(name, kwargs, shape, seed, dtype):
    ours = getattr(init, name)(np.empty(shape, dtype), **kwargs, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    theirs = getattr(torch.nn.init, name)(torch.empty(shape, dtype=TORCH_DTYPES[dtype]), **kwargs)
    np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("seed", SEEDS)
def test_orthogonal_within_the_qr_rounding(seed, dtype):
    """orthogonal_ draws the same normals; the QR libraries (LAPACK builds) differ by rounding only."""
    ours = init.orthogonal_(np.empty((12, 9), dtype), gain=2.0, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    theirs = torch.nn.init.orthogonal_(torch.empty((12, 9), dtype=TORCH_DTYPES[dtype]), gain=2.0).numpy()
    bound = 8 * np.finfo(dtype).eps * 2.0
    assert np.max(np.abs(ours - theirs)) <= bound


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_masks_over_a_sequence_of_forwards(seed, p, dtype):
    layer = nn.Dropout(p, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    for shape in [(64, 20), (5, 3, 4), (17,), (64, 20)]:
        layer(np.ones(shape, dtype))
        theirs = TF.dropout(torch.ones(shape, dtype=TORCH_DTYPES[dtype]), p) != 0
        np.testing.assert_array_equal(layer.mask, theirs.numpy())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n, batch_size, drop_last", [(300, 64, False), (300, 64, True), (17, 4, False),
                                                      (16, 16, False)])
def test_minibatches_follow_a_seeded_dataloader(seed, n, batch_size, drop_last):
    x = np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    y = np.arange(n)
    g = TorchGenerator(seed)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size,
                        shuffle=True, drop_last=drop_last, generator=torch.Generator().manual_seed(seed))
    for _ in range(3):  # three epochs: each draws its own order from the same generator
        ours = list(data.minibatches(x, y, batch_size, rng=g, drop_last=drop_last))
        theirs = [(xb.numpy(), yb.numpy()) for xb, yb in loader]
        assert len(ours) == len(theirs)
        for (xa, ya), (xb, yb) in zip(ours, theirs):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_a_numpy_generator_is_not_torchs_stream():
    """The torch paths are taken for a TorchGenerator only: a numpy Generator draws handnn's own stream."""
    ours = nn.Linear(784, 10, rng=np.random.default_rng(0))
    torch.manual_seed(0)
    assert not np.array_equal(ours.weight.data, torch.nn.Linear(784, 10, dtype=torch.float64).weight.detach().numpy())


def _example():
    spec = importlib.util.spec_from_file_location("same_seed_moons", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 3])
def test_the_readme_demo_same_weights_masks_batches_trajectory(seed):
    example = _example()
    ours, theirs = example.handnn_run(seed, epochs=4), example.torch_run(seed, epochs=4)
    diff = example.differences(ours, theirs)
    assert diff["initial"] == 0 and diff["masks"] == 0 and diff["orders"] == 0
    assert diff["mask elements compared"] > 1000
    assert diff["losses"] < 1e-12 and diff["final"] < 1e-12


def test_the_demo_script_exits_0(capsys):
    assert _example().main(["--epochs", "2"]) == 0
    assert "0 differing elements" in capsys.readouterr().out
