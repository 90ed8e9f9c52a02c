"""Checkpoints against torch: a run saved mid-way and resumed in fresh handnn objects keeps matching torch.

Three runs continue from the save point, step by step:

- the handnn run resumed from the ``.npz`` checkpoint (fresh model, optimizer and scheduler, other initial values);
- the torch twin that trained alongside handnn from step 0 and never stopped (the uninterrupted torch run);
- a torch twin built from the RESUMED handnn objects (``to_torch``, ``to_torch_optimizer``, ``to_torch_scheduler``):
  the checkpoint's content carried over to torch.

After every step the loss, every parameter, BatchNorm's buffers, every optimizer state entry and the lr are
compared with the tolerance table; the resumed handnn run must also be bit-identical to an uninterrupted handnn run.

Dropout: the checkpoint does not hold the Dropout's ``numpy.random.Generator`` (torch's ``state_dict`` does not hold
the RNG either). The test saves ``rng.bit_generator.state`` beside the checkpoint and restores it into the fresh
Dropout, as a training script resuming bit-identically must; ``tests/unit/test_checkpoint_unit.py`` shows that
without it the masks, and so the run, differ. Both torch twins apply the mask the resumed handnn Dropout draws.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch

from handnn import checkpoint, nn, optim
from handnn.optim import lr_scheduler
from reference import assert_close, to_tensor, to_torch
from reference.optim import to_torch_optimizer, to_torch_scheduler

D, H, K, BATCH, N_DATA = 3, 7, 2, 16, 48
STEPS, RESUME_AT = 40, 17

SETUPS: Dict[str, Tuple[Callable, Callable]] = {
    "Adam-amsgrad+StepLR": (lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=1e-3),
                            lambda o: lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    "SGD-momentum+MultiStepLR": (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1),
                                 lambda o: lr_scheduler.MultiStepLR(o, [5, 20, 20], gamma=0.5)),
    "RMSprop-centered+ReduceLROnPlateau": (lambda ps: optim.RMSprop(ps, lr=1e-2, centered=True, momentum=0.5),
                                           lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=2)),
}


class Side:
    """One training run, handnn or torch: ``step(x, y)`` does forward, backward, optimizer and scheduler steps."""

    def __init__(self, model, opt, sched, loss_fn, is_torch: bool) -> None:
        self.model, self.opt, self.sched, self.loss_fn, self.is_torch = model, opt, sched, loss_fn, is_torch
        self.plateau = isinstance(sched, (lr_scheduler.ReduceLROnPlateau, torch.optim.lr_scheduler.ReduceLROnPlateau))

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.opt.zero_grad()
        if self.is_torch:
            loss_t = self.loss_fn(self.model(to_tensor(x)), to_tensor(y))
            loss_t.backward()
            loss = loss_t.item()
        else:
            loss = self.loss_fn(self.model(x), y)
            self.model.backward(self.loss_fn.backward())
        self.opt.step()
        self.sched.step(loss) if self.plateau else self.sched.step()
        return loss

    def values(self) -> Dict[str, Any]:
        """Parameters, float buffers, optimizer state (by parameter name) and the lr, as numpy."""
        params = dict(self.model.named_parameters())
        out: Dict[str, Any] = {}
        for name, p in params.items():
            out[f"param {name}"] = p.detach().numpy() if self.is_torch else p.data
            for key, value in self.opt.state.get(p, {}).items():
                out[f"state {name} {key}"] = value.numpy() if self.is_torch else value
        for name, buf in self.model.named_buffers():
            out[f"buffer {name}"] = buf.numpy() if self.is_torch else buf
        out["lr"] = np.array([g["lr"] for g in self.opt.param_groups])
        return out


def _handnn_side(setup: str, dtype, init_seed: int) -> Side:
    make_opt, make_sched = SETUPS[setup]
    rng = np.random.default_rng(init_seed)
    model = nn.Sequential(nn.Linear(D, H, bias=False, dtype=dtype, rng=rng), nn.BatchNorm1d(H, dtype=dtype),
                          nn.ReLU(), nn.Dropout(0.25, rng=rng.spawn(1)[0]), nn.Linear(H, K, dtype=dtype, rng=rng))
    opt = make_opt(model.parameters())
    return Side(model, opt, make_sched(opt), nn.CrossEntropyLoss(), is_torch=False)


def _torch_side(ours: Side) -> Side:
    twin = to_torch(ours.model)
    twin_opt = to_torch_optimizer(ours.opt, ours.model, twin)
    return Side(twin, twin_opt, to_torch_scheduler(ours.sched, twin_opt), torch.nn.CrossEntropyLoss(), True)


def _assert_match(ours: Side, theirs: Side, label: str, losses: Optional[Tuple[float, float]] = None,
                  dtype=None) -> None:
    a, e = ours.values(), theirs.values()
    assert sorted(a) == sorted(e), f"{label}: entries differ: {sorted(set(a) ^ set(e))}"
    for key in e:
        assert_close(a[key], e[key], f"{label}: {key}")
    if losses is not None:
        assert_close(np.array(losses[0], dtype), np.array(losses[1], dtype), f"{label}: loss")


@pytest.mark.parametrize("setup", list(SETUPS))
def test_resumed_run_keeps_matching_torch(setup, dtype, seed, rng, tmp_path):
    x_all = rng.normal(0.5, 2.0, (N_DATA, D)).astype(dtype)
    y_all = rng.integers(0, K, N_DATA)
    batches = [rng.choice(N_DATA, BATCH, replace=False) for _ in range(STEPS)]

    whole = _handnn_side(setup, dtype, seed)  # the uninterrupted handnn run
    first = _handnn_side(setup, dtype, seed)
    twin = _torch_side(first)
    for t in range(RESUME_AT):
        idx = batches[t]
        whole.step(x_all[idx], y_all[idx])
        loss = first.step(x_all[idx], y_all[idx])
        _assert_match(first, twin, f"before saving, step {t + 1}", (loss, twin.step(x_all[idx], y_all[idx])), dtype)

    path = tmp_path / "run.npz"
    checkpoint.save(path, first.model, first.opt, first.sched)
    rng_state = copy.deepcopy(first.model[3].rng.bit_generator.state)  # not in the checkpoint: see the docstring

    resumed = _handnn_side(setup, dtype, seed + 1)  # fresh objects, other initial values
    checkpoint.load(path, resumed.model, resumed.opt, resumed.sched)
    resumed.model[3].rng.bit_generator.state = rng_state
    twin.model[3].source = resumed.model[3]  # the uninterrupted twin now takes its masks from the resumed run
    twin_of_resumed = _torch_side(resumed)
    _assert_match(resumed, twin, "right after loading")
    lr_at_save = first.opt.param_groups[0]["lr"]

    lrs = []
    for t in range(RESUME_AT, STEPS):
        idx = batches[t]
        expected = whole.step(x_all[idx], y_all[idx])
        loss = resumed.step(x_all[idx], y_all[idx])
        assert loss == expected, f"step {t + 1}: the resumed handnn run is not bit-identical"
        _assert_match(resumed, twin, f"uninterrupted torch, step {t + 1}",
                      (loss, twin.step(x_all[idx], y_all[idx])), dtype)
        _assert_match(resumed, twin_of_resumed, f"torch twin of the resumed run, step {t + 1}",
                      (loss, twin_of_resumed.step(x_all[idx], y_all[idx])), dtype)
        lrs.append(resumed.opt.param_groups[0]["lr"])
    for key, value in whole.values().items():
        np.testing.assert_array_equal(resumed.values()[key], value, err_msg=key)
    assert any(lr != lr_at_save for lr in lrs), "the lr must change after the resume point (the scheduler's state)"
