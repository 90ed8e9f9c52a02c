"""``Module``: the base class, with torch's bookkeeping (parameters, buffers, children, state_dict)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from ..parameter import Parameter


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns (torch's ``_IncompatibleKeys``)."""

    missing_keys: List[str]
    unexpected_keys: List[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


class Module:
    """Base class of every layer.

    A subclass defines ``forward(input)``, which stores what backward needs in ``self._cache``, and
    ``backward(grad_output)``, which returns the gradient with respect to the input and **adds** the
    parameter gradients into each ``Parameter.grad`` (torch's accumulation semantics).
    Parameters, buffers and sub-modules assigned as attributes are registered by name, so
    ``state_dict()`` has torch's keys and order: each module's parameters, then its buffers, then its
    children's, depth first.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    # ---- attribute registration ---------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_cache":  # every forward sets it: skip the registration logic (it is never registered)
            object.__setattr__(self, name, value)
            return
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("cannot assign before Module.__init__() call")
        if isinstance(value, Parameter) or (name in params and value is None):
            self._unregister(name)
            params[name] = value
        elif isinstance(value, Module):
            self._unregister(name)
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        elif name in params or name in self._modules:
            raise TypeError(f"cannot assign '{type(value).__name__}' as '{name}' "
                            "(expected a Parameter, a Module or None)")
        else:
            object.__setattr__(self, name, value)

    def _unregister(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        if any(name in d for d in (self._parameters, self._buffers, self._modules)):
            self._unregister(name)
        else:
            object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Optional[np.ndarray]) -> None:
        """Register a non-trainable array (e.g. ``running_mean``) saved in the state_dict; None is allowed."""
        self._unregister(name)
        self._buffers[name] = tensor

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Register a Parameter (or None, e.g. ``bias`` of a layer built with ``bias=False``)."""
        self._unregister(name)
        self._parameters[name] = param

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        self._unregister(name)
        self._modules[name] = module

    # ---- forward / backward ---------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "backward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _saved(self) -> Any:
        """The cache of the last forward; a clear error when there was none."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before forward(): "
                "run a forward pass first, then backward with the gradient of its output"
            )
        return self._cache

    @staticmethod
    def _accumulate(param: Optional[Parameter], grad: Optional[np.ndarray], owned: bool = False) -> None:
        """``param.grad += grad`` (a fresh copy on the first call), as torch accumulates ``.grad``.

        ``owned``: ``grad`` is a new array nobody else holds (a matmul or reduction result of the backward), so it
        becomes ``.grad`` itself instead of being copied.
        """
        if param is None or grad is None or not param.requires_grad:
            return
        if param.grad is None:
            owned = owned and grad.dtype == param.data.dtype and grad.shape == param.data.shape
            param.grad = grad if owned else np.array(grad, dtype=param.data.dtype, copy=True)
        else:
            param.grad += grad

    # ---- traversal ------------------------------------------------------------------------------
    def named_modules(self, memo: Optional[set] = None, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, store: str, prefix: str, recurse: bool) -> Iterator[Tuple[str, Any]]:
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, store).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[Tuple[str, Parameter]]:
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[Tuple[str, np.ndarray]]:
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    # ---- modes and gradients --------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (torch's default) or to zeros in place."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad[...] = 0

    def to(self, dtype) -> "Module":
        """Cast every parameter and floating buffer to ``dtype`` (integer buffers are kept)."""
        dtype = np.dtype(dtype)
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None:
                    param.data = param.data.astype(dtype)
                    param.grad = None if param.grad is None else param.grad.astype(dtype)
            for name, buf in module._buffers.items():
                if buf is not None and buf.dtype.kind == "f":
                    module._buffers[name] = buf.astype(dtype)
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # ---- state_dict ---------------------------------------------------------------------------------
    def _state_items(self, prefix: str = "") -> Iterator[Tuple[str, "Module", str, np.ndarray]]:
        """(key, owner, attribute, array) for every saved entry, in torch's order.

        Walks ``_modules`` directly, without ``named_modules``' de-duplication: as in torch, a module
        registered under two names (``Sequential(a, b, a)``) is saved under both (``'0.weight'``, ``'2.weight'``).
        """
        for store in (self._parameters, self._buffers):
            for name, value in store.items():
                if value is not None:
                    yield prefix + name, self, name, (value.data if isinstance(value, Parameter) else value)
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_items(f"{prefix}{name}.")

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, keyed as torch keys them (``'0.weight'``, ``'1.running_var'``)."""
        return OrderedDict((key, array.copy()) for key, _, _, array in self._state_items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from ``state_dict`` into this module's parameters and buffers, in place.

        Everything is checked, and cast, before anything is copied: a missing or unexpected key (with
        ``strict``), a shape mismatch or a non-numeric value (always) raises ``RuntimeError`` in torch's
        format and leaves the module unchanged. Values are cast to each destination's dtype, as torch's
        ``copy_`` does.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        items = list(self._state_items())
        own = {key for key, *_ in items}
        missing = [key for key, *_ in items if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors: List[str] = []
        sources: Dict[str, np.ndarray] = {}
        for key, _, _, array in items:
            if key not in state_dict:
                continue
            source = np.asarray(state_dict[key])
            # bool/int/uint/float/complex cast like torch's copy_; strings, objects, dates are not numbers
            if source.dtype.kind not in "biufc":
                errors.append(f'While copying the parameter named "{key}", expected a numeric array from '
                              f"checkpoint but received {type(state_dict[key])}")
            elif source.shape != array.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape {source.shape} from "
                              f"checkpoint, the shape in current model is {array.shape}.")
            else:
                # cast now, into a new array, so a failing cast (or a warning turned into an error)
                # happens before the first copy and cannot leave the module half loaded
                sources[key] = source.astype(array.dtype, casting="unsafe", copy=True)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(type(self).__name__, "\n\t".join(errors))
            )
        for key, _, _, array in items:
            if key in sources:
                np.copyto(array, sources[key])
        return IncompatibleKeys(missing, unexpected)

    # ---- repr -----------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
