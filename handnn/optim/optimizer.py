"""``Optimizer``: torch's base class — param groups, per-parameter state, ``state_dict`` layout."""
from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from ..nn.parameter import Parameter

ParamsT = Union[Iterable[Parameter], Iterable[Dict[str, Any]]]


class _Required:
    """Marks a hyper-parameter every group must give (torch's ``required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def new_step() -> np.ndarray:
    """The ``step`` counter torch keeps per parameter: a 0-d float32 array (a float32 tensor in torch)."""
    return np.array(0.0, dtype=np.float32)


class Optimizer:
    """Base class of every optimizer.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts with a ``'params'`` entry (param groups)
    defaults : dict
        Hyper-parameter defaults, used for any group that does not set them.

    Attributes
    ----------
    param_groups : list of dict
        Each holds ``'params'`` (a list of Parameter) and every hyper-parameter.
    state : dict
        Per-parameter state, keyed by the Parameter object itself (e.g. ``{'step', 'exp_avg', ...}``).
    """

    def __init__(self, params: ParamsT, defaults: Dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: Dict[Parameter, Dict[str, Any]] = {}
        self.param_groups: List[Dict[str, Any]] = []
        if isinstance(params, Parameter):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got Parameter")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group; its missing hyper-parameters take the defaults. A parameter may be in one group only."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, but one of the params is {type(p).__name__}")
        group = dict(param_group, params=params)
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error", UserWarning, stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """One update of every parameter that has a gradient (those without one are skipped, as in torch)."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: Dict[str, Any]) -> None:
        """Update every parameter of ``group`` that has a gradient."""
        for p in group["params"]:
            if p.grad is not None:
                state = self.state.get(p, {})
                self._update(p, p.grad, state, group)
                if state:  # torch keeps no entry for a parameter without state (SGD without momentum)
                    self.state.setdefault(p, state)

    def _update(self, p: Parameter, grad: np.ndarray, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- state_dict --------------------------------------------------------------------------------
    def _indices(self) -> Dict[int, int]:
        """id(param) -> its index, counted across groups in order (torch's packing)."""
        order = (p for g in self.param_groups for p in g["params"])
        index: Dict[int, int] = {}
        for p in order:
            index.setdefault(id(p), len(index))
        return index

    def state_dict(self) -> Dict[str, Any]:
        """``{'state': {index: {key: array}}, 'param_groups': [{hyper-parameters..., 'params': [indices]}]}``,
        copies throughout."""
        index = self._indices()
        groups = [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        state = {index[id(p)]: {k: np.array(v, copy=True) for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load a ``state_dict`` (handnn's, or a torch optimizer's with tensors converted to arrays).

        Checked before anything changes: the number of groups and their sizes must match, every state
        entry must have its parameter's shape. Floating state is cast to the parameter's dtype; ``step``
        stays float32, as in torch. Hyper-parameters are taken from the saved groups.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        id_map = {saved: p for g, s in zip(self.param_groups, saved_groups)
                  for saved, p in zip(s["params"], g["params"])}
        new_state: Dict[Parameter, Dict[str, Any]] = {}
        for key, entries in state_dict["state"].items():
            p = id_map.get(int(key))
            if p is None:
                continue
            new_state[p] = {name: self._cast_state(name, value, p) for name, value in entries.items()}
        new_groups = [{**{k: v for k, v in s.items() if k != "params"}, "params": g["params"]}
                      for g, s in zip(self.param_groups, saved_groups)]
        for group in new_groups:
            for name, default in self.defaults.items():
                group.setdefault(name, default)
        self.state = new_state
        self.param_groups = new_groups

    @staticmethod
    def _cast_state(name: str, value: Any, p: Parameter) -> np.ndarray:
        array = np.asarray(value)
        if name == "step":
            if array.size != 1:
                raise ValueError(f"state 'step' must be a scalar, but got shape {array.shape}")
            return np.array(array.reshape(()), dtype=np.float32)
        if array.shape != p.shape:
            raise ValueError(f"state '{name}' of shape {array.shape} does not match its parameter's shape {p.shape}")
        return np.array(array, dtype=p.dtype if array.dtype.kind == "f" else array.dtype, copy=True)


def check_hyper(condition: bool, message: str) -> None:
    """Raise torch's ``ValueError`` for an invalid hyper-parameter."""
    if not condition:
        raise ValueError(message)


def lerp_(a: np.ndarray, b: np.ndarray, weight: float, scratch: Optional[np.ndarray] = None) -> None:
    """``a <- a + weight (b - a)`` in place, with torch's two-branch formula for rounding parity; ``scratch``
    (``a``'s shape, or None to allocate) holds ``b - a``."""
    diff = np.subtract(b, a, out=scratch)
    if abs(weight) < 0.5:
        diff *= weight
        a += diff
    else:
        diff *= 1 - weight
        np.subtract(b, diff, out=a)


def effective_grad(param: np.ndarray, grad: np.ndarray, weight_decay: float, maximize: bool,
                   out: Optional[np.ndarray], scratch: Optional[np.ndarray]) -> np.ndarray:
    """``g = -grad if maximize else grad``, then ``g = g + weight_decay * param`` (torch's L2 term) when
    ``weight_decay != 0``; ``grad`` itself when neither applies (never written to). ``out`` receives a new ``g``
    and ``scratch`` the decay term (either None to allocate)."""
    g = np.negative(grad, out=out) if maximize else grad
    if weight_decay != 0:
        decay = np.multiply(param, weight_decay, out=scratch)
        g = np.add(g, decay, out=out)
    return g
