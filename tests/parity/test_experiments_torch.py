"""The seeds' experiments run through torch twins (``--backend torch``) agree with the handnn runs: same data,
same initial weights, same dropout masks and batch order, so every loss, accuracy, final parameter and buffer
and the decision function must match at the tolerance table (``reference/tolerances.py``).
"""
from __future__ import annotations

import sys
from typing import Dict, Tuple

import numpy as np
import pytest
import torch

from handnn.experiments import (EXPERIMENTS, Result, batchnorm, charlm, cnn, initialization, load_backend, main,
                                optimizers)
from handnn.experiments import regularization
from handnn.experiments._common import HandnnBackend
from reference.experiments import TorchBackend, TorchTrainer, compare_results

SMALL = {
    "regularization": regularization.Config(iterations=40),
    "initialization": initialization.Config(iterations=40),
    "optimizers": optimizers.Config(iterations=2),
    "batchnorm": batchnorm.Config(iterations=8, scales=3, n_train=90, n_val=30, hidden=(12, 12, 12), batch_size=30,
                                  timing_shape=(13, 6), timing_repeats=1),
    "cnn": cnn.Config(iterations=60, channels=(4, 6)),
    "charlm": charlm.Config(iterations=30, seq_len=10, batch_size=4, hidden_size=12, generate=8),
}

_cache: Dict[str, Tuple[Result, Result]] = {}


def both(name: str) -> Tuple[Result, Result]:
    """(handnn result, torch result) of the small run of ``name``, memoised per worker."""
    if name not in _cache:
        module, config = EXPERIMENTS[name], SMALL[name]
        _cache[name] = (module.run(config, HandnnBackend()), module.run(config, TorchBackend()))
    return _cache[name]


@pytest.mark.parametrize("name", list(SMALL))
def test_torch_run_equals_the_handnn_run(name):
    ours, theirs = both(name)
    assert (ours.backend, theirs.backend) == ("handnn", "torch")
    comparisons = compare_results(ours, theirs)
    failed = [str(c) for c in comparisons if not c.passed]
    assert not failed, "\n".join(failed)
    state_keys = sum(len(run.state) for run in ours.runs)
    assert len(comparisons) >= len(ours.runs) * 3 + state_keys  # losses, two accuracies, every array
    # the reference side really trained: its losses move (zeros initialisation excepted: nothing moves)
    assert all(run.losses[0] != run.losses[-1] for run in theirs.runs if run.name != "zeros")


def test_dropout_masks_are_shared_and_matter():
    """The torch dropout run equals handnn's only because it applies the same masks: without dropout (same
    weights, same data) the trajectory is different."""
    ours, theirs = both("regularization")
    assert not np.allclose(theirs.run("dropout").losses, theirs.run("none").losses)
    np.testing.assert_allclose(theirs.run("dropout").losses, ours.run("dropout").losses, rtol=1e-10, atol=0)


def test_torch_trainer_trains_torch_modules():
    model, loss_fn, opt, l2 = regularization.build(SMALL["regularization"], "L2")
    trainer = TorchBackend().trainer(model, loss_fn, opt, l2=l2)
    assert isinstance(trainer, TorchTrainer)
    assert isinstance(trainer.twin, torch.nn.Module) and isinstance(trainer.optimizer, torch.optim.SGD)
    assert [tuple(p.shape) for p in trainer.penalised] == [(20, 2), (3, 20), (1, 3)]


def test_l2_penalty_on_the_torch_side_is_the_seeds(rng):
    """The torch loss of the L2 variant is BCE + λ/(2m)·ΣW², computed here from the seed's formula."""
    config = SMALL["regularization"]
    model, loss_fn, opt, l2 = regularization.build(config, "L2")
    weights = [p.data.copy() for name, p in model.named_parameters() if name.endswith("weight")]
    x = rng.standard_normal((7, 2))
    y = (rng.random((7, 1)) < 0.5).astype(np.float64)
    loss = TorchBackend().trainer(model, loss_fn, opt, l2=l2).step(x, y)
    logits = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(
        torch.from_numpy(x), torch.from_numpy(weights[0]))), torch.from_numpy(weights[1]))), torch.from_numpy(weights[2]))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(y)).item()
    penalty = config.l2_lambda / (2 * config.n_train) * sum(float((w ** 2).sum()) for w in weights)
    assert loss == pytest.approx(bce + penalty, rel=1e-12)  # biases are 0 at the start


def test_batchnorm_backward_through_autograd_equals_the_staged_one():
    ours, theirs = both("batchnorm")
    backward = theirs.extra["backward"]
    assert backward["fused_label"].startswith("torch autograd")
    assert all(error < 1e-9 for error in backward["errors"])
    assert np.abs(backward["fused"][0]).max() > 1e-3  # a random upstream gradient: dx is not ~0


def test_cli_prints_both_tables_side_by_side(capsys):
    assert main(["regularization", "--iterations", "5", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("handnn"))
    assert lines[title].split() == ["handnn", "torch"]
    for variant, line in zip(regularization.VARIANTS, lines[title + 3:title + 7]):
        assert line.count(f"| {variant} ") == 2  # the same row on both sides
    assert "time: handnn" in out and ", torch" in out
    agreement = out[out.index("handnn vs torch"):]
    for variant in regularization.VARIANTS:
        row = next(line for line in agreement.splitlines() if line.startswith(f"| {variant} "))
        assert row.rstrip(" |").endswith("ok")


def test_cli_plots_both_backends(tmp_path, capsys):
    argv = ["batchnorm", "--iterations", "3", "--scales", "2", "--train", "40", "--val", "20", "--hidden", "6",
            "--batch-size", "20", "--timing-shape", "5", "4", "--timing-repeats", "1", "--backend", "torch",
            "--plot", str(tmp_path)]
    assert main(argv) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["batchnorm_weight_scale.png", "batchnorm_weight_scale_torch.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_backend():
    assert isinstance(load_backend("torch"), TorchBackend)
    assert isinstance(load_backend("handnn"), HandnnBackend)
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        load_backend("jax")
    assert "reference.experiments" in sys.modules
