"""Read-only arrays of zeros and ones, made once per dtype and shared, for kernels that need a constant operand.

NumPy runs its SIMD loops only when both operands are contiguous arrays (``np.maximum(x, 0)`` against a scalar is a
scalar loop, 3-4x slower), and ``np.ones(n)`` costs about a microsecond per call (a noticeable share of a small
network's step). Slices of these blocks are free.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

#: elements per block (256 KiB in float32): large enough for a small network's every call, small enough to stay
#: in cache when a large array is processed block by block
BLOCK = 65536

_blocks: Dict[Tuple[int, np.dtype], np.ndarray] = {}

#: the unsigned integer type of each float's width, for bit-level work
UINT_OF = {np.dtype(np.float32): np.dtype(np.uint32), np.dtype(np.float64): np.dtype(np.uint64)}


def constant_block(value: int, dtype: np.dtype) -> np.ndarray:
    """A read-only 1-d array of ``BLOCK`` elements equal to ``value`` (0 or 1), of ``dtype``."""
    key = (value, dtype)
    block = _blocks.get(key)
    if block is None:
        block = np.full(BLOCK, value, dtype)
        block.flags.writeable = False
        _blocks[key] = block
    return block


def ones(n: int, dtype: np.dtype) -> np.ndarray:
    """``np.ones(n, dtype)``, a read-only view of the shared block when ``n <= BLOCK``."""
    return constant_block(1, dtype)[:n] if n <= BLOCK else np.ones(n, dtype)
