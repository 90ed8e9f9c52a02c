"""The speed helpers of handnn's functional code, each behind a name that says what it computes.

Every helper here computes exactly what its plain NumPy counterpart computes (named in its docstring) and exists
because that counterpart is slow in NumPy for a reason stated in one sentence: NumPy's SIMD loops run only for some
operand layouts, its axis reductions are slower than BLAS products with a ones vector, and broadcasting over short
rows goes through its ufunc buffer. Whether each still pays is what ``python -m benchmarks`` shows (see
benchmarks/README.md), not recorded here.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

_vecdot = getattr(np, "vecdot", None)

#: elements per block (256 KiB in float32): large enough for a small network's every call, small enough to stay
#: in cache when a large array is processed block by block
BLOCK = 65536

#: :func:`blockwise` runs arrays of up to this many bytes whole: an optimizer's arrays of that size stay in a
#: last-level cache, where blocks save no memory traffic and only add calls
WHOLE_BYTES = 2 * 1024 * 1024

_blocks: Dict[Tuple[int, np.dtype], np.ndarray] = {}

#: the unsigned integer type of each float's width, for bit-level work
UINT_OF = {np.dtype(np.float32): np.dtype(np.uint32), np.dtype(np.float64): np.dtype(np.uint64)}

#: the ufunc buffer size :func:`unbuffered` sets (elements), and the array size from which it is worth the cost
#: of setting and restoring it
SMALL_BUFFER = 256
UNBUFFERED_FROM = 65536


def blocks(n: int) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``BLOCK`` elements covering ``range(n)``: large arrays are
    processed block by block so that a kernel's several passes run in cache."""
    return ((start, min(start + BLOCK, n)) for start in range(0, n, BLOCK))


def blockwise(kernel: Callable[..., None], arrays: Tuple[np.ndarray, ...], scratch: int) -> None:
    """Run an element-wise ``kernel(*array_blocks, *scratch_blocks)`` over consecutive blocks of ``arrays``.

    ``arrays`` (the first is the one updated or defining the shape) are cut into blocks of ``BLOCK`` elements, so
    that a kernel's several passes (an optimizer step makes 10-13) run on cache-resident blocks instead of streaming
    whole arrays through memory each time; ``scratch`` buffers of one block each are handed to the kernel for its
    intermediate results. The kernel must be purely element-wise and write only into its block views. Arrays of at
    most :data:`WHOLE_BYTES`, not all C-contiguous, or differing in shape or dtype are handed whole, with whole-sized
    scratch buffers (their broadcast shape, their promoted dtype).
    """
    first = arrays[0]
    alike = all(a.shape == first.shape and a.dtype == first.dtype for a in arrays)
    if first.nbytes <= WHOLE_BYTES or not alike or not all(a.flags.c_contiguous for a in arrays):
        # cache-resident arrays (cutting would cost more than it saves), or arrays that cannot be cut alike: whole,
        # with scratch of their broadcast shape and promoted dtype (NumPy's semantics for mismatched operands)
        if alike:
            shape, dtype = first.shape, first.dtype
        else:
            shape, dtype = np.broadcast_shapes(*(a.shape for a in arrays)), np.result_type(*arrays)
        kernel(*arrays, *[np.empty(shape, dtype) for _ in range(scratch)])
        return
    n = first.size
    flat = [a.reshape(-1) for a in arrays]
    buffers = [np.empty(min(n, BLOCK), first.dtype) for _ in range(scratch)]
    for start, stop in blocks(n):
        kernel(*(a[start:stop] for a in flat), *(b[:stop - start] for b in buffers))


class ScalarOf(dict):
    """``value`` as a read-only 0-d array of each dtype asked for (``ZERO[x.dtype]``), made once per dtype.

    A ufunc takes a 0-d array of its operand's dtype with less overhead than a Python number (no weak-scalar
    promotion step), a share of every small call. The value and result dtype are the same either way.
    """

    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value

    def __missing__(self, dtype: np.dtype) -> np.ndarray:
        scalar = np.array(self.value, dtype)
        scalar.flags.writeable = False
        self[dtype] = scalar
        return scalar


ZERO, ONE = ScalarOf(0), ScalarOf(1)


def constant_block(value: int, dtype: np.dtype) -> np.ndarray:
    """A read-only 1-d array of ``BLOCK`` elements equal to ``value`` (0 or 1), of ``dtype``."""
    key = (value, dtype)
    block = _blocks.get(key)
    if block is None:
        block = np.full(BLOCK, value, dtype)
        block.flags.writeable = False
        _blocks[key] = block
    return block


#: up to this many elements a ufunc's scalar loop against a 0-d zero is cheaper than slicing the zeros block
SMALL_AGAINST_ZERO = 2048

#: :func:`against_zero`'s row length for large arrays: NumPy's ufunc buffer size, so that the broadcast zeros row
#: is read directly, not copied through the buffer, in one call over every row
ZERO_ROW = 8192


def against_zero(ufunc: np.ufunc, x: np.ndarray) -> np.ndarray:
    """``ufunc(x, 0)`` as a new array (``np.maximum``, ``np.minimum``), because NumPy runs these against a scalar
    without its SIMD loop.

    NumPy's SIMD loops for these run only for two contiguous arrays: against the scalar 0 they fall back to a
    scalar loop. A large C-contiguous ``x`` is therefore taken against the zeros block: viewed as rows of
    :data:`ZERO_ROW` elements, all against the same cache-resident row of zeros in one call (the same values, NaN
    propagated); a small one against :data:`ZERO`, where the call's overhead is the cost.
    """
    if x.size <= SMALL_AGAINST_ZERO or not x.flags.c_contiguous:
        return ufunc(x, ZERO[x.dtype])
    zeros = constant_block(0, x.dtype)
    n = x.size
    if n <= BLOCK:
        return ufunc(x, zeros[:n].reshape(x.shape))
    out = np.empty_like(x)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    whole = n - n % ZERO_ROW
    ufunc(flat_x[:whole].reshape(-1, ZERO_ROW), zeros[:ZERO_ROW], out=flat_out[:whole].reshape(-1, ZERO_ROW))
    if whole < n:
        ufunc(flat_x[whole:], zeros[:n - whole], out=flat_out[whole:])
    return out


def where_kept(keep: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``np.where(keep, a, 0)`` as a new array (+0.0 where not kept, a NaN or inf there dropped too), computed on
    the bits because ``np.where`` on a random mask has no SIMD loop and ``a * keep`` would turn a dropped NaN or
    inf into NaN.

    ``keep`` cast to 0/1 integers of ``a``'s width, times ``a`` viewed as unsigned integers, is ``a``'s bit pattern
    or 0 (exact: x * 1 = x, x * 0 = 0); casting first keeps the multiply a same-type one, whose loop is unbuffered.
    """
    bits = UINT_OF[a.dtype]
    a_bits = a.view(bits)  # the same item size: a view of any layout
    mask = np.asarray(keep).astype(bits, order="C")
    np.multiply(mask, a_bits, out=mask)
    return mask.view(a.dtype)


def ones(n: int, dtype: np.dtype) -> np.ndarray:
    """``np.ones(n, dtype)``, a read-only view of the shared block when ``n <= BLOCK``."""
    return constant_block(1, dtype)[:n] if n <= BLOCK else np.ones(n, dtype)


@contextmanager
def unbuffered(size: int) -> Iterator[None]:
    """Run the enclosed element-wise work with a small ufunc buffer when it touches ``size >= UNBUFFERED_FROM``
    elements, because NumPy copies a broadcast operand whose rows are shorter than its buffer (``x - mean`` per row)
    through that buffer; a no-op below. Values are unchanged: the buffer size only changes how a loop is chunked."""
    if size < UNBUFFERED_FROM:
        yield
        return
    old = np.setbufsize(SMALL_BUFFER)
    try:
        yield
    finally:
        np.setbufsize(old)


def row_sums(a: np.ndarray) -> np.ndarray:
    """Sums of the rows of a 2-d ``a`` (M, K): shape (M,), in ``a``'s dtype, as a BLAS matrix-vector product with
    a ones vector, which ``a.sum(axis=1)`` takes longer than."""
    return a @ ones(a.shape[1], a.dtype)


def row_dots(a: np.ndarray, b: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Row-wise dot products ``sum(a * b, axis=1)`` of two (M, K) arrays: shape (M,), in their dtype.

    ``np.vecdot`` (NumPy >= 2.0) runs a BLAS dot per row: one pass and no product array, where a multiply
    followed by :func:`row_sums` makes two; older NumPy takes that multiply and matrix-vector product.
    """
    if _vecdot is not None:
        return _vecdot(a, b, out=out)
    return np.matmul(np.multiply(a, b), ones(a.shape[1], a.dtype), out=out)


def col_sums(a: np.ndarray) -> np.ndarray:
    """Sums of the columns of a 2-d ``a`` (M, K): shape (K,), in ``a``'s dtype, as a BLAS vector-matrix product,
    which ``a.sum(axis=0)`` (one row at a time) takes longer than."""
    return ones(a.shape[0], a.dtype) @ a


def axis_sums(a: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
    """``a.sum(axis=axes, keepdims=True)``, in ``a``'s dtype, as BLAS matrix-vector products with a ones vector,
    which NumPy's reductions over several or non-contiguous axes take several times longer than.

    The BLAS path takes a C-contiguous ``a`` summed over a block of leading axes and/or a block of trailing ones
    (every normalisation's statistics and parameter gradients); anything else is NumPy's sum.
    """
    ndim = a.ndim
    axes = tuple(sorted(axis % ndim for axis in axes))
    lead = next((i for i in range(ndim + 1) if i not in axes), ndim)  # axes 0 .. lead-1 are summed
    trail = len(axes) - lead  # and the last ``trail`` axes
    if axes[lead:] != tuple(range(ndim - trail, ndim)) or not a.flags.c_contiguous:
        return np.add.reduce(a, axis=axes, keepdims=True)
    keep = [1 if axis in axes else size for axis, size in enumerate(a.shape)]
    outer = math.prod(a.shape[:lead])
    inner = math.prod(a.shape[ndim - trail:])
    middle = math.prod(a.shape[lead:ndim - trail])
    sums = a.reshape(outer * middle, inner) @ ones(inner, a.dtype) if trail else a.reshape(-1)
    if lead:
        sums = ones(outer, a.dtype) @ sums.reshape(outer, middle)
    return sums.reshape(keep)


def axis_dots(a: np.ndarray, b: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
    """``(a * b).sum(axis=axes, keepdims=True)``: over trailing axes of two C-contiguous arrays of one shape, a
    BLAS dot per row (``np.vecdot``), which reads both once and writes no product array; else
    :func:`axis_sums` of the product."""
    ndim = a.ndim
    axes = tuple(sorted(axis % ndim for axis in axes))
    lead = next((i for i in range(ndim + 1) if i not in axes), ndim)
    trail = len(axes) - lead
    if (_vecdot is None or not trail or a.shape != b.shape or a.dtype != b.dtype
            or not (a.flags.c_contiguous and b.flags.c_contiguous) or axes[lead:] != tuple(range(ndim - trail, ndim))):
        return axis_sums(np.multiply(a, b), axes)
    inner = math.prod(a.shape[ndim - trail:])
    outer = math.prod(a.shape[:ndim - trail])
    rows = _vecdot(a.reshape(outer, inner), b.reshape(outer, inner)).reshape(a.shape[:ndim - trail])
    sums = axis_sums(rows, tuple(range(lead))) if lead else rows
    return sums.reshape([1 if axis in axes else size for axis, size in enumerate(a.shape)])


# ---- scatter-adding rows (Embedding's backward) ----------------------------------------------------------------------
#: occurrence passes run vectorised before the remaining repeats go to ``np.add.at``
_SCATTER_PASSES = 8


def scatter_add_rows(out: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``np.add.at(out, rows, values)`` bit for bit (each row receives its values in occurrence order), made of
    vectorised passes — pass ``k`` adds every row's ``k``-th occurrence, whose rows are distinct — because
    ``np.add.at``'s one-row-at-a-time loop dominates Embedding's backward."""
    n = rows.size
    if n == 0:
        return
    order = np.argsort(rows, kind="stable")  # by row, each row's positions in occurrence order
    sorted_rows = rows[order]
    position = np.arange(n)
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(sorted_rows[1:], sorted_rows[:-1], out=starts[1:])
    rank = position - np.maximum.accumulate(np.where(starts, position, 0))  # occurrence number of each value
    top = int(rank.max())
    for k in range(min(top + 1, _SCATTER_PASSES)):
        chosen = order if top == 0 else order[rank == k]
        out[rows[chosen]] += values[chosen]
    if top >= _SCATTER_PASSES:
        rest = order[rank >= _SCATTER_PASSES]
        np.add.at(out, rows[rest], values[rest])

