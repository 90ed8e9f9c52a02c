"""Torch twins of handnn optimizers and schedulers, and conversions of their state_dicts."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from handnn import nn, optim
from handnn.optim import lr_scheduler

from .twin import to_numpy, to_tensor

OPTIMIZERS = {optim.SGD: torch.optim.SGD, optim.Adam: torch.optim.Adam, optim.AdamW: torch.optim.AdamW,
              optim.RMSprop: torch.optim.RMSprop, optim.Adagrad: torch.optim.Adagrad}


def state_dict_to_torch(sd: Dict[str, Any]) -> Dict[str, Any]:
    """A handnn optimizer state_dict with every array as a tensor (``step`` a 0-d float32 tensor, as torch)."""
    return {"state": {i: {k: to_tensor(np.asarray(v)) for k, v in s.items()} for i, s in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def state_dict_to_numpy(sd: Dict[str, Any]) -> Dict[str, Any]:
    """A torch optimizer state_dict with every tensor as an array (what handnn's ``load_state_dict`` takes)."""
    return {"state": {i: {k: to_numpy(v) if torch.is_tensor(v) else v for k, v in s.items()}
                      for i, s in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def to_torch_optimizer(opt: optim.Optimizer, module: nn.Module, twin: torch.nn.Module) -> torch.optim.Optimizer:
    """The torch optimizer of the same class over ``twin``'s parameters (matched to ``module``'s by name), with
    the same param groups, hyper-parameters and state."""
    by_id = {id(p): name for name, p in module.named_parameters()}
    torch_params = dict(twin.named_parameters())
    groups = [{**{k: v for k, v in g.items() if k not in ("params", "initial_lr")},
               "params": [torch_params[by_id[id(p)]] for p in g["params"]]} for g in opt.param_groups]
    twin_opt = OPTIMIZERS[type(opt)](groups)
    twin_opt.load_state_dict(state_dict_to_torch(opt.state_dict()))
    return twin_opt


def to_torch_scheduler(sched: lr_scheduler.LRScheduler, twin_opt: torch.optim.Optimizer):
    """The torch scheduler of the same class and arguments, with its state copied."""
    S = torch.optim.lr_scheduler
    kind = type(sched)
    if kind is lr_scheduler.ReduceLROnPlateau:
        twin = S.ReduceLROnPlateau(twin_opt, mode=sched.mode, factor=sched.factor, patience=sched.patience,
                                   threshold=sched.threshold, threshold_mode=sched.threshold_mode,
                                   cooldown=sched.cooldown, min_lr=sched.min_lrs, eps=sched.eps)
        for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch", "_last_lr"):
            setattr(twin, key, getattr(sched, key))
        return twin
    for group, ours in zip(twin_opt.param_groups, sched.optimizer.param_groups):
        group["initial_lr"] = ours["initial_lr"]
    args = {lr_scheduler.StepLR: lambda: S.StepLR(twin_opt, sched.step_size, sched.gamma, last_epoch=0),
            lr_scheduler.MultiStepLR: lambda: S.MultiStepLR(twin_opt, list(sched.milestones.elements()),
                                                            sched.gamma, last_epoch=0),
            lr_scheduler.ExponentialLR: lambda: S.ExponentialLR(twin_opt, sched.gamma, last_epoch=0),
            lr_scheduler.CosineAnnealingLR: lambda: S.CosineAnnealingLR(twin_opt, sched.T_max, sched.eta_min,
                                                                        last_epoch=0),
            lr_scheduler.LambdaLR: lambda: S.LambdaLR(twin_opt, list(sched.lr_lambdas), last_epoch=0)}
    if kind not in args:
        raise TypeError(f"to_torch_scheduler: no torch twin for {kind.__name__}")
    lrs = [g["lr"] for g in twin_opt.param_groups]
    twin = args[kind]()
    for group, lr in zip(twin_opt.param_groups, lrs):  # constructing stepped once: put the lr back
        group["lr"] = lr
    state = sched.state_dict()
    state.pop("lr_lambdas", None)
    twin.__dict__.update({k: v for k, v in state.items() if k in twin.__dict__})
    return twin
