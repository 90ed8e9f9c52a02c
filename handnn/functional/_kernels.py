"""Building blocks of the fast kernels: shared constant arrays, BLAS reductions, and unbuffered broadcasting.

Four measured facts about NumPy (2.x, one thread, this project's benchmark machine) shape them:

* ``np.maximum(x, 0)`` (and ``np.minimum``) against a scalar runs a scalar loop; against a contiguous zeros array,
  the SIMD loop (3-4x faster): :func:`against_zero`. ``np.ones(n)`` costs about a microsecond per call. Hence
  read-only constant blocks, made once.
* Sums along an axis (``x.sum(axis=1)``, ``np.einsum('mk,mk->m', ...)``) run 3-8x slower than the same sums as a
  matrix-vector product with a ones vector (BLAS ``gemv``): :func:`row_sums`, :func:`col_sums`, :func:`channel_sums`;
  sums of products per row, as ``np.vecdot`` (a BLAS dot per row): :func:`row_dots`.
* A ufunc with a Python number operand (``x - 1``) spends about 0.3 microseconds more than with a 0-d array of
  ``x``'s dtype: :data:`ZERO`, :data:`ONE` for small arrays.
* A broadcast operation whose rows are shorter than NumPy's ufunc buffer (8192 elements), such as ``x * weight``
  over (512, 1024) or ``x - mean`` per row, is copied through that buffer: 1.7-2.3x slower than with a small buffer
  size. :func:`unbuffered` sets a small one for the element-wise work of large arrays (values are unchanged: the
  buffer size only changes how an element-wise loop is chunked; ufunc reductions such as ``sum`` are kept outside
  it, since their summation order could change; BLAS products do not use the buffer).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

_vecdot = getattr(np, "vecdot", None)

#: elements per block (256 KiB in float32): large enough for a small network's every call, small enough to stay
#: in cache when a large array is processed block by block
BLOCK = 65536

#: :func:`blockwise` runs arrays of up to this many bytes whole: an optimizer's six arrays of 2 MiB stay in this
#: machine's 32 MiB L3 cache, where blocks saved nothing and cost their calls (8 blocks x 13 ufunc calls): a float32
#: 512 x 1024 Adam step took 0.89 ms whole and 1.0 ms in blocks; at 4 MiB (float64) blocks took 2.4 ms against 4.0
WHOLE_BYTES = 2 * 1024 * 1024

_blocks: Dict[Tuple[int, np.dtype], np.ndarray] = {}

#: the unsigned integer type of each float's width, for bit-level work
UINT_OF = {np.dtype(np.float32): np.dtype(np.uint32), np.dtype(np.float64): np.dtype(np.uint64)}

#: the ufunc buffer size :func:`unbuffered` sets (elements), and the array size from which it is worth its cost
#: (about 2 microseconds to set and restore)
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

    A ufunc takes a 0-d array of its operand's dtype about 0.3 microseconds faster than the Python number (NumPy
    2's weak-scalar promotion): a share of every small call. The value and result dtype are the same either way.
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
#: is read directly, not copied through the buffer. One call over every row measured 10-15 % faster at 512 x 1024
#: (float32 95 against 110 us, float64 141 against 163) than one call per block of ``BLOCK`` elements
ZERO_ROW = 8192


def against_zero(ufunc: np.ufunc, x: np.ndarray) -> np.ndarray:
    """``ufunc(x, 0)`` as a new array (``np.maximum``, ``np.minimum``), 3-4x faster on large inputs.

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


def ones(n: int, dtype: np.dtype) -> np.ndarray:
    """``np.ones(n, dtype)``, a read-only view of the shared block when ``n <= BLOCK``."""
    return constant_block(1, dtype)[:n] if n <= BLOCK else np.ones(n, dtype)


@contextmanager
def unbuffered(size: int) -> Iterator[None]:
    """Run the enclosed element-wise work with a small ufunc buffer when it touches ``size >= UNBUFFERED_FROM``
    elements (see the module docstring); a no-op below."""
    if size < UNBUFFERED_FROM:
        yield
        return
    old = np.setbufsize(SMALL_BUFFER)
    try:
        yield
    finally:
        np.setbufsize(old)


def row_sums(a: np.ndarray) -> np.ndarray:
    """Sums of the rows of a 2-d ``a`` (M, K): shape (M,), in ``a``'s dtype (BLAS accumulation)."""
    return a @ ones(a.shape[1], a.dtype)


def row_dots(a: np.ndarray, b: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Row-wise dot products ``sum(a * b, axis=1)`` of two (M, K) arrays: shape (M,), in their dtype.

    ``np.vecdot`` (NumPy >= 2.0) runs a BLAS dot per row: one pass, no product array, 2-4x faster than a multiply
    followed by :func:`row_sums` on large rows; older NumPy takes that multiply and matrix-vector product.
    """
    if _vecdot is not None:
        return _vecdot(a, b, out=out)
    return np.matmul(np.multiply(a, b), ones(a.shape[1], a.dtype), out=out)


def col_sums(a: np.ndarray) -> np.ndarray:
    """Sums of the columns of a 2-d ``a`` (M, K): shape (K,), in ``a``'s dtype (BLAS accumulation)."""
    return ones(a.shape[0], a.dtype) @ a


def channel_sums(a: np.ndarray) -> np.ndarray:
    """Sum over every dim but 1 of an (N, C, *) array: shape (C,), in ``a``'s dtype (BLAS accumulation)."""
    n, c = a.shape[:2]
    if a.ndim == 2:
        return col_sums(a)
    return col_sums(row_sums(a.reshape(n * c, -1)).reshape(n, c))


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
