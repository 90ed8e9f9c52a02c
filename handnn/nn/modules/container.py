"""``Sequential``: modules applied in order; backward runs them in reverse."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Union

import numpy as np

from .module import Module


class Sequential(Module):
    """``Sequential(*modules)`` or ``Sequential(OrderedDict(name=module, ...))``, as in torch."""

    def __init__(self, *args: Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)

    def add_module(self, name: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        super().add_module(name, module)

    def _index(self, idx: int) -> int:
        size = len(self)
        if not -size <= idx < size:
            raise IndexError(f"index {idx} is out of range")
        return idx % size

    def __getitem__(self, idx: Union[int, slice]) -> Union[Module, "Sequential"]:
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[self._index(idx)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input: np.ndarray) -> np.ndarray:
        for module in self._modules.values():
            input = module(input)
        return input

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Back-propagate through the children in reverse order; returns dL/d(input)."""
        for module in reversed(self._modules.values()):
            grad_output = module.backward(grad_output)
        return grad_output
