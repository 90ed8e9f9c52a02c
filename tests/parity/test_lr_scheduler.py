"""``handnn.optim.lr_scheduler`` against ``torch.optim.lr_scheduler``: the lr of every param group after every
epoch, ``get_last_lr()``, ``state_dict()`` keys, resuming (``load_state_dict`` and ``last_epoch=``), a user's
own lr change mid-run (the chainable forms continue from the current lr), and the validation messages.

Both sides drive an SGD over two parameters in two groups with different lrs; each epoch calls
``optimizer.step()`` then ``scheduler.step()`` (torch's required order). The same constructor call is made on
both modules (``handnn.optim.lr_scheduler`` and ``torch.optim.lr_scheduler``), so the arguments cannot differ.
"""
from __future__ import annotations

import copy
import inspect
import re
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

from handnn import optim
from handnn.nn import Parameter
from handnn.optim import lr_scheduler as H
from reference.optim import state_dict_to_numpy
from reference.tolerances import assert_close

T = torch.optim.lr_scheduler
LRS = (0.1, 0.03)
EPOCHS = 40

# torch's ``LRScheduler`` keeps two flags in ``__dict__`` that only drive its warnings about calling
# ``get_lr()`` outside ``step()``; handnn has no such warning, so it does not keep the flag. That is the one
# deliberate difference in the state_dict keys.
TORCH_ONLY_KEYS = {"_get_lr_called_within_step"}


def _inverse(epoch: int) -> float:
    return 1.0 / (1.0 + 0.3 * epoch)


def _decay(epoch: int) -> float:
    return 0.93 ** epoch


class Warmup:
    """A callable object (not a function): LambdaLR saves its ``__dict__`` in the state_dict."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.steps)


SCHEDULERS: Dict[str, Callable[[Any, Any], Any]] = {
    "StepLR(3, 0.5)": lambda m, o, **kw: m.StepLR(o, step_size=3, gamma=0.5, **kw),
    "StepLR(1, 0.9)": lambda m, o, **kw: m.StepLR(o, 1, 0.9, **kw),
    "MultiStepLR([3, 7, 7, 12], 0.3)": lambda m, o, **kw: m.MultiStepLR(o, milestones=[3, 7, 7, 12], gamma=0.3, **kw),
    "MultiStepLR([12, 2])": lambda m, o, **kw: m.MultiStepLR(o, [12, 2], **kw),
    "ExponentialLR(0.93)": lambda m, o, **kw: m.ExponentialLR(o, gamma=0.93, **kw),
    "CosineAnnealingLR(7, 0.005)": lambda m, o, **kw: m.CosineAnnealingLR(o, T_max=7, eta_min=0.005, **kw),
    "CosineAnnealingLR(4)": lambda m, o, **kw: m.CosineAnnealingLR(o, 4, **kw),
    "LambdaLR(one)": lambda m, o, **kw: m.LambdaLR(o, _decay, **kw),
    "LambdaLR(per group)": lambda m, o, **kw: m.LambdaLR(o, [_inverse, lambda e: 0.9 ** (e // 2)], **kw),
    "LambdaLR(callable object)": lambda m, o, **kw: m.LambdaLR(o, [Warmup(5), _decay], **kw),
}


def _optimizers(lrs=LRS) -> Tuple[optim.SGD, torch.optim.SGD]:
    hopt = optim.SGD([{"params": [Parameter(np.zeros(3))], "lr": lr} for lr in lrs], lr=1.0, momentum=0.9)
    topt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": lr} for lr in lrs], lr=1.0,
                           momentum=0.9)
    return hopt, topt


def _lrs(opt) -> List[float]:
    return [g["lr"] for g in opt.param_groups]


def _assert_lrs(hsched, tsched, hopt, topt, where: str) -> None:
    assert_close(np.array(_lrs(hopt)), np.array(_lrs(topt)), f"{where}: group lrs")
    assert_close(np.array(hsched.get_last_lr()), np.array(tsched.get_last_lr()), f"{where}: get_last_lr")
    assert hsched.get_last_lr() == _lrs(hopt)
    assert hsched.last_epoch == tsched.last_epoch


def _epoch(opt, sched, *args) -> None:
    opt.step()
    sched.step(*args)


@pytest.mark.parametrize("lr_change", [False, True], ids=["", "lr changed at epoch 15"])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_lr_sequence_equals_torch(name, lr_change):
    """40 epochs (more than 2·T_max for the cosine ones, past every milestone); with ``lr_change`` the user
    scales every group's lr at epoch 15, and the chainable forms continue from it as torch's do."""
    hopt, topt = _optimizers()
    hsched, tsched = SCHEDULERS[name](H, hopt), SCHEDULERS[name](T, topt)
    _assert_lrs(hsched, tsched, hopt, topt, "after construction")
    seen = []
    for epoch in range(EPOCHS):
        if lr_change and epoch == 15:
            for hg, tg, factor in zip(hopt.param_groups, topt.param_groups, (0.5, 3.0)):
                hg["lr"] *= factor
                tg["lr"] *= factor
        _epoch(hopt, hsched)
        _epoch(topt, tsched)
        _assert_lrs(hsched, tsched, hopt, topt, f"epoch {epoch}")
        seen.append(tuple(_lrs(hopt)))
    assert len(set(seen)) >= 3  # the schedule did change the lr, more than once


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_state_dict_keys_equal_torch(name):
    hopt, topt = _optimizers()
    hsched, tsched = SCHEDULERS[name](H, hopt), SCHEDULERS[name](T, topt)
    for _ in range(5):
        _epoch(hopt, hsched)
        _epoch(topt, tsched)
    hsd, tsd = hsched.state_dict(), tsched.state_dict()
    assert set(hsd) == set(tsd) - TORCH_ONLY_KEYS
    for key in hsd:
        assert hsd[key] == tsd[key], key


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_load_state_dict_resumes_identically(name):
    """Stop after 17 epochs, save both state_dicts (deep copies, as a checkpoint would), build a fresh optimizer
    and scheduler, load the optimizer's then the scheduler's state (torch's documented order) and continue:
    the lrs equal the uninterrupted run's exactly, and torch's resumed the same way."""
    hopt, topt = _optimizers()
    hsched, tsched = SCHEDULERS[name](H, hopt), SCHEDULERS[name](T, topt)
    for _ in range(17):
        _epoch(hopt, hsched)
        _epoch(topt, tsched)
    saved_h = copy.deepcopy((hopt.state_dict(), hsched.state_dict()))
    saved_t = (copy.deepcopy(topt.state_dict()), tsched.state_dict())
    hopt2, topt2 = _optimizers(lrs=(0.7, 0.6))
    hsched2, tsched2 = SCHEDULERS[name](H, hopt2), SCHEDULERS[name](T, topt2)
    hopt2.load_state_dict(saved_h[0])
    hsched2.load_state_dict(saved_h[1])
    topt2.load_state_dict(saved_t[0])
    tsched2.load_state_dict(saved_t[1])
    _assert_lrs(hsched2, tsched2, hopt2, topt2, "after loading")
    for epoch in range(17, EPOCHS):
        _epoch(hopt, hsched)
        _epoch(hopt2, hsched2)
        _epoch(topt2, tsched2)
        assert _lrs(hopt2) == _lrs(hopt) and hsched2.get_last_lr() == hsched.get_last_lr(), f"epoch {epoch}"
        _assert_lrs(hsched2, tsched2, hopt2, topt2, f"resumed epoch {epoch}")


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_torch_scheduler_state_loads_into_handnn(name):
    """torch's optimizer and scheduler state_dicts loaded into handnn's: both continue identically."""
    hopt, _ = _optimizers()
    _, topt = _optimizers()
    hsched, tsched = SCHEDULERS[name](H, hopt), SCHEDULERS[name](T, topt)
    for _ in range(11):
        _epoch(topt, tsched)
    hopt.load_state_dict(state_dict_to_numpy(topt.state_dict()))
    hsched.load_state_dict(dict(tsched.state_dict()))
    for epoch in range(11, EPOCHS):
        _epoch(hopt, hsched)
        _epoch(topt, tsched)
        _assert_lrs(hsched, tsched, hopt, topt, f"epoch {epoch}")


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_resume_with_last_epoch_argument(name):
    """The other resume path: an optimizer whose groups hold ``initial_lr`` (loaded from a checkpoint), and a
    scheduler constructed with ``last_epoch=k``. torch's constructor then steps once without changing the lr."""
    hopt, topt = _optimizers()
    hsched, tsched = SCHEDULERS[name](H, hopt), SCHEDULERS[name](T, topt)
    for _ in range(9):
        _epoch(hopt, hsched)
        _epoch(topt, tsched)
    hopt2, topt2 = _optimizers()
    hopt2.load_state_dict(hopt.state_dict())
    topt2.load_state_dict(topt.state_dict())
    hsched2 = SCHEDULERS[name](H, hopt2, last_epoch=9)
    tsched2 = SCHEDULERS[name](T, topt2, last_epoch=9)
    _assert_lrs(hsched2, tsched2, hopt2, topt2, "after construction")
    for epoch in range(10, EPOCHS):
        _epoch(hopt2, hsched2)
        _epoch(topt2, tsched2)
        _assert_lrs(hsched2, tsched2, hopt2, topt2, f"epoch {epoch}")


@pytest.mark.parametrize("name", ["CosineAnnealingLR(7, 0.005)", "CosineAnnealingLR(4)"])
def test_cosine_closed_form_after_a_state_that_never_stepped(name):
    """A state whose step count is 0 (a scheduler saved before its first step) loaded at epoch k: torch's cosine
    schedule then takes its closed form for the first step, and its recursive form after."""
    hopt, topt = _optimizers()
    hsched, tsched = SCHEDULERS[name](H, hopt), SCHEDULERS[name](T, topt)
    state = dict(tsched.state_dict(), last_epoch=5, _step_count=0)
    hsched.load_state_dict(dict(state))
    tsched.load_state_dict(dict(state))
    for epoch in range(6, 20):
        _epoch(hopt, hsched)
        _epoch(topt, tsched)
        _assert_lrs(hsched, tsched, hopt, topt, f"epoch {epoch}")


# ---- ReduceLROnPlateau --------------------------------------------------------------------------------------------
PLATEAU = {
    "min rel": dict(mode="min", factor=0.5, patience=2),
    "max rel, min_lr": dict(mode="max", factor=0.3, patience=1, min_lr=0.004),
    "min abs, cooldown": dict(mode="min", threshold_mode="abs", threshold=0.05, patience=1, cooldown=3),
    "max abs, min_lr list, cooldown": dict(mode="max", threshold_mode="abs", threshold=0.02, patience=0, cooldown=2,
                                           factor=0.6, min_lr=[0.01, 0.001]),
    "eps stops tiny reductions": dict(factor=0.5, patience=0, eps=0.01),
    "defaults": dict(),
}


def _metrics(rng: np.random.Generator, n: int) -> np.ndarray:
    """A noisy metric with exact plateaus (repeated values sit on the ``is_better`` boundary)."""
    values = 1.0 + 0.3 * rng.standard_normal(n) + np.linspace(0.0, 0.2, n)
    values[20:26] = values[19]
    values[40:44] = values[39]
    return values


@pytest.mark.parametrize("name", sorted(PLATEAU))
def test_reduce_lr_on_plateau_equals_torch(rng, name):
    """The lrs, best, bad-epoch and cooldown counters after every one of 60 epochs."""
    kwargs = PLATEAU[name]
    hopt, topt = _optimizers()
    hsched, tsched = H.ReduceLROnPlateau(hopt, **kwargs), T.ReduceLROnPlateau(topt, **kwargs)
    _assert_lrs(hsched, tsched, hopt, topt, "after construction")
    assert (hsched.best, hsched.num_bad_epochs, hsched.cooldown_counter) == \
        (tsched.best, tsched.num_bad_epochs, tsched.cooldown_counter), "after construction"
    seen = []
    for epoch, metric in enumerate(_metrics(rng, 60)):
        _epoch(hopt, hsched, metric)
        _epoch(topt, tsched, metric)
        _assert_lrs(hsched, tsched, hopt, topt, f"epoch {epoch}")
        assert (hsched.best, hsched.num_bad_epochs, hsched.cooldown_counter) == \
            (tsched.best, tsched.num_bad_epochs, tsched.cooldown_counter), f"epoch {epoch}"
        seen.append(tuple(_lrs(hopt)))
    assert len(set(seen)) >= 3  # reduced at least twice
    if "min_lr" in kwargs:  # the floor was reached
        floor = kwargs["min_lr"] if isinstance(kwargs["min_lr"], list) else [kwargs["min_lr"]] * 2
        assert _lrs(hopt) == floor


#: metrics on the edges of ``is_better``: repeats of the best, and steps of exactly, just under and just over the
#: threshold (0.25 and its neighbours are exact in binary, so ``best - threshold`` and ``best * (1 - threshold)`` are
#: exact too), and a NaN (never better)
BOUNDARY_METRICS = [4.0, 4.0, 3.75, 3.75, 3.5, 3.5 - 0.25, 3.25, 3.0, 3.0 + 0.125, 3.0 - 0.125, float("nan"), 2.0,
                    2.0, 2.5, 1.5, 1.5, 1.5, 1.75]


@pytest.mark.parametrize("first", ["as listed", "NaN first"])
@pytest.mark.parametrize("threshold_mode, threshold", [("abs", 0.25), ("abs", 0.0), ("rel", 0.0), ("rel", 0.125)])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_reduce_lr_on_plateau_at_the_threshold_edges(mode, threshold_mode, threshold, first):
    """Ties with the best, steps of exactly the threshold, and NaN metrics (a NaN first epoch meets the initial
    cooldown and best), epoch by epoch against torch."""
    metrics = [float("nan")] + BOUNDARY_METRICS if first == "NaN first" else BOUNDARY_METRICS
    metrics = metrics if mode == "min" else [-m for m in metrics]
    kwargs = dict(mode=mode, threshold_mode=threshold_mode, threshold=threshold, patience=1, cooldown=1,
                  factor=0.5)
    hopt, topt = _optimizers()
    hsched, tsched = H.ReduceLROnPlateau(hopt, **kwargs), T.ReduceLROnPlateau(topt, **kwargs)
    for epoch, metric in enumerate(metrics):
        _epoch(hopt, hsched, metric)
        _epoch(topt, tsched, metric)
        _assert_lrs(hsched, tsched, hopt, topt, f"epoch {epoch}")
        assert (hsched.best, hsched.num_bad_epochs, hsched.cooldown_counter) == \
            (tsched.best, tsched.num_bad_epochs, tsched.cooldown_counter), f"epoch {epoch}"


@pytest.mark.parametrize("name", sorted(PLATEAU))
def test_reduce_lr_on_plateau_state_dict_and_resume(rng, name):
    """Same state_dict keys and values as torch; a fresh scheduler loading it continues identically."""
    kwargs = PLATEAU[name]
    metrics = _metrics(rng, 60)
    hopt, topt = _optimizers()
    hsched, tsched = H.ReduceLROnPlateau(hopt, **kwargs), T.ReduceLROnPlateau(topt, **kwargs)
    for metric in metrics[:25]:
        _epoch(hopt, hsched, metric)
        _epoch(topt, tsched, metric)
    hsd, tsd = hsched.state_dict(), tsched.state_dict()
    assert set(hsd) == set(tsd)
    assert hsd == tsd
    hopt2, _ = _optimizers()
    hsched2 = H.ReduceLROnPlateau(hopt2, mode="max" if kwargs.get("mode") == "min" else "min", patience=50)
    hopt2.load_state_dict(copy.deepcopy(hopt.state_dict()))
    hsched2.load_state_dict(copy.deepcopy(hsd))
    for epoch, metric in enumerate(metrics[25:], 25):
        _epoch(hopt, hsched, metric)
        _epoch(hopt2, hsched2, metric)
        _epoch(topt, tsched, metric)
        assert _lrs(hopt2) == _lrs(hopt), f"epoch {epoch}"
        _assert_lrs(hsched2, tsched, hopt2, topt, f"epoch {epoch}")


@pytest.mark.parametrize("min_lr", [0.02, [0.02, 0.001]], ids=["scalar min_lr", "list min_lr"])
def test_reduce_lr_on_plateau_after_add_param_group(min_lr):
    """A group added after construction: with a scalar min_lr torch extends its floors to the new group; with a
    list it raises RuntimeError at the first reduction, leaving every lr as it was."""
    hopt, topt = _optimizers()
    hsched = H.ReduceLROnPlateau(hopt, patience=0, factor=0.5, min_lr=min_lr)
    tsched = T.ReduceLROnPlateau(topt, patience=0, factor=0.5, min_lr=min_lr)
    hopt.add_param_group({"params": [Parameter(np.zeros(2))], "lr": 0.05})
    topt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.05})
    for epoch, metric in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]):
        try:
            _epoch(topt, tsched, metric)
        except RuntimeError as error:
            before = _lrs(hopt)
            with pytest.raises(RuntimeError, match="^" + re.escape(str(error)) + "$"):
                _epoch(hopt, hsched, metric)
            assert _lrs(hopt) == before == _lrs(topt)
            assert isinstance(min_lr, list)
            return
        _epoch(hopt, hsched, metric)
        _assert_lrs(hsched, tsched, hopt, topt, f"epoch {epoch}")
    assert not isinstance(min_lr, list)
    assert hsched.min_lrs == tsched.min_lrs == [0.02] * 3
    assert _lrs(hopt)[2] == 0.02


# ---- signatures and validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR",
                                  "ReduceLROnPlateau"])
def test_signature_equals_torch(name):
    ours = [(n, p.kind, p.default) for n, p in inspect.signature(getattr(H, name)).parameters.items()]
    theirs = [(n, p.kind, p.default) for n, p in inspect.signature(getattr(T, name)).parameters.items()]
    assert ours == theirs


BAD = {
    "LambdaLR with too many lambdas": lambda m, o: m.LambdaLR(o, [_decay, _decay, _decay]),
    "ReduceLROnPlateau factor 1": lambda m, o: m.ReduceLROnPlateau(o, factor=1.0),
    "ReduceLROnPlateau bad mode": lambda m, o: m.ReduceLROnPlateau(o, mode="avg"),
    "ReduceLROnPlateau bad threshold_mode": lambda m, o: m.ReduceLROnPlateau(o, threshold_mode="relative"),
    "ReduceLROnPlateau min_lr list length": lambda m, o: m.ReduceLROnPlateau(o, min_lr=[0.1, 0.2, 0.3]),
    "StepLR resumed without initial_lr": lambda m, o: m.StepLR(o, 3, last_epoch=4),
    "CosineAnnealingLR resumed without initial_lr": lambda m, o: m.CosineAnnealingLR(o, 3, last_epoch=0),
    "StepLR on a non-optimizer": lambda m, o: m.StepLR(object(), 3),
    "ReduceLROnPlateau on a non-optimizer": lambda m, o: m.ReduceLROnPlateau([1, 2]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validation_equals_torch(case):
    """torch's exception class and exact message; the optimizer's lrs are untouched."""
    hopt, topt = _optimizers()
    with pytest.raises(Exception) as expected:
        BAD[case](T, topt)
    with pytest.raises(type(expected.value)) as info:
        BAD[case](H, hopt)
    assert type(info.value) is type(expected.value)
    assert str(info.value) == str(expected.value)
    assert _lrs(hopt) == list(LRS)
