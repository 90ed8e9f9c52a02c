"""The torch side of handnn: torch twins of handnn modules, comparisons, and the parity report.

This is the only package that imports torch. ``reference.tolerances`` (the tolerance table) is numpy-only, so the
golden-fixture tests can use it where torch is not installed: the torch-facing names below are imported lazily,
on first access.
"""
from __future__ import annotations

import importlib
from typing import Any

from .tolerances import TOLERANCES, Comparison, assert_close, compare, tolerance

_LAZY = {
    "Run": "harness", "assert_nonzero": "harness", "assert_step_parity": "harness", "compare_runs": "harness",
    "failures": "harness", "run_handnn": "harness", "run_torch": "harness",
    "CheckReport": "check", "check_layer": "check", "check_update": "check", "diagnose": "diagnosis",
    "diagnoses": "diagnosis",
    "MaskedDropout": "twin", "from_torch": "twin", "to_numpy": "twin", "to_tensor": "twin", "to_torch": "twin",
}

__all__ = ["TOLERANCES", "Comparison", "assert_close", "compare", "tolerance", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the torch-facing submodule that defines ``name`` (PEP 562), so ``import reference`` needs no torch."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
