"""The torch side of handnn: torch twins of handnn modules, comparisons, and the parity report.

This is the only package that imports torch.
"""
from .harness import Run, assert_nonzero, assert_step_parity, compare_runs, failures, run_handnn, run_torch
from .tolerances import TOLERANCES, Comparison, assert_close, compare, tolerance
from .twin import MaskedDropout, from_torch, to_numpy, to_tensor, to_torch

__all__ = ["TOLERANCES", "Comparison", "MaskedDropout", "Run", "assert_close", "assert_nonzero", "assert_step_parity", "compare", "compare_runs",
           "failures", "from_torch", "run_handnn", "run_torch", "to_numpy", "to_tensor", "to_torch", "tolerance"]
