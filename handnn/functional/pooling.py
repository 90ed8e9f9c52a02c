"""2-d pooling with torch's window rules: max pooling (with torch's indices), average pooling, adaptive average pooling.

The input is ``(N, C, H, W)`` or unbatched ``(C, H, W)``; every plane ``(n, c)`` is pooled on its own. A window of
max/avg pooling starts at ``(oh * sH - pH, ow * sW - pW)`` and holds ``kH x kW`` elements ``dH`` / ``dW`` apart; the
output has ``Ho = floor((H + 2 pH - dH (kH - 1) - 1) / sH) + 1`` rows (``ceil`` instead of ``floor`` with
``ceil_mode``, minus one when that last window would start beyond the input and its left padding), likewise ``Wo``.

Each pair computes what torch's CPU kernels compute, in their order: a window is scanned row by row, so sums are
accumulated in the same order (bit-identical results; adaptive pooling to ``(1, 1)`` is torch's ``mean`` instead,
equal within rounding) and the maximum's index is the one torch's scan keeps. The
windows are strided views of a padded copy of the input, one per offset ``(i, j)`` inside the window; the loops below
run over those ``kH * kW`` offsets, never over pixels, channels or samples.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .._validation import check_array, check_ndarray, dtype_kind

IntPair = Union[int, Sequence[int]]

#: the unsigned integer dtypes torch stores but has no pooling kernel for ("not implemented for 'UInt16'")
_NO_KERNEL_UNSIGNED = (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64))


# ---- arguments and window geometry ---------------------------------------------------------------------------------
def _ints(value, op: str, name: str, position: int) -> Tuple[int, ...]:
    """An int or a sequence of ints as a tuple, else torch's argument parser's ``TypeError``."""
    items = (value,) if isinstance(value, (int, np.integer)) else value
    if isinstance(value, bool) or not isinstance(items, (tuple, list)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{op}(): argument '{name}' (position {position}) must be tuple of ints, "
                        f"not {type(value).__name__}")
    return tuple(int(v) for v in items)


def _pair(values: Tuple[int, ...], op: str, what: str,
          rule: str = "must either be a single int, or a tuple of two ints") -> Tuple[int, int]:
    """``(v, v)`` from one value, ``(a, b)`` from two; torch's RuntimeError (its wording, ``rule``) for another
    count."""
    if len(values) not in (1, 2):
        raise RuntimeError(f"{op}: {what} {rule}")
    return (values[0], values[-1])


def _sizes(shape: Tuple[int, ...]) -> str:
    """A shape as torch prints ``tensor.sizes()``: ``[2, 3, 0, 6]``."""
    return "[" + ", ".join(map(str, shape)) + "]"


def pooling_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape`` for one dimension, with its checks (``RuntimeError``).

    ``floor`` (or ``ceil``) of ``(size + 2 pad - dilation (kernel - 1) - 1) / stride``, plus one; in ``ceil_mode`` the
    last window must start inside the input or its left padding, else there is one window less.
    """
    if stride == 0:
        raise RuntimeError("stride should not be zero")
    if pad < 0:
        raise RuntimeError(f"pad must be non-negative, but got pad: {pad}")
    if pad > int(((kernel - 1) * dilation + 1) / 2):  # C++'s division: rounded toward 0 (a kernel may be < 1 here)
        raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={pad}, "
                           f"kernel_size={kernel} and dilation={dilation}")
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pool2dGeometry(NamedTuple):
    """Where the windows of a 2-d max/avg pooling lie: each field an ``(H, W)`` pair."""

    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    in_size: Tuple[int, int]
    out_size: Tuple[int, int]

    def window(self, i: int, j: int) -> Tuple[slice, slice]:
        """The slices of the padded input holding element ``(i, j)`` of every window (a strided view)."""
        (sH, sW), (dH, dW), (Ho, Wo) = self.stride, self.dilation, self.out_size
        return (slice(i * dH, i * dH + (Ho - 1) * sH + 1, sH), slice(j * dW, j * dW + (Wo - 1) * sW + 1, sW))

    def offsets(self) -> Sequence[Tuple[int, int]]:
        """The offsets ``(i, j)`` inside a window in torch's scan order (row by row)."""
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    def padded_size(self) -> Tuple[int, int]:
        """The padded input's size: the padding on both sides, and (``ceil_mode``) room for windows reaching past
        the bottom/right padding."""
        return tuple(max(n + 2 * p, (o - 1) * s + (k - 1) * d + 1) for n, p, o, s, k, d in zip(
            self.in_size, self.padding, self.out_size, self.stride, self.kernel, self.dilation))


def pool2d_geometry(op: str, x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair], padding: IntPair,
                    dilation: Optional[IntPair], ceil_mode: bool, divisor_override: Optional[int] = None
                    ) -> Pool2dGeometry:
    """Check the arguments in torch's order and with its messages; the windows' geometry.

    torch's order: the arguments' types, the number of values of each (then average pooling's divisor, not 0), the
    input's rank (max pooling; average pooling reads ``size(-3)``, an ``IndexError`` below 3 dims), the output size
    per dimension (stride not 0, padding not negative and at most half the effective kernel), then the shape check
    (kernel, stride and dilation positive, no empty dimension but the batch, padding at most half the kernel, an
    output of at least one element). ``dilation`` None: average pooling, which has none.
    """
    check_ndarray(x, op)
    kernel = _ints(kernel_size, op, "kernel_size", 2)
    strides = () if stride is None else _ints(stride, op, "stride", 3)
    pads = _ints(padding, op, "padding", 4)
    dilations = None if dilation is None else _ints(dilation, op, "dilation", 5)
    if divisor_override is not None and (isinstance(divisor_override, bool)
                                         or not isinstance(divisor_override, (int, np.integer))):
        raise TypeError(f"{op}(): argument 'divisor_override' (position 7) must be int, not "
                        f"{type(divisor_override).__name__}")
    kH, kW = _pair(kernel, op, "kernel_size")
    sH, sW = (kH, kW) if not strides else _pair(
        strides, op, "stride", "must either be omitted, a single int, or a tuple of two ints")
    pH, pW = _pair(pads, op, "padding")
    if divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    if dilations is not None:
        dH, dW = _pair(dilations, op, "dilation", "must be either a single int, or a tuple of two ints")
        if x.ndim not in (3, 4):
            raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
    else:
        dH, dW = 1, 1
        if x.ndim < 3:
            raise IndexError("Dimension specified as -3 but tensor has no dimensions" if x.ndim == 0 else
                             f"Dimension out of range (expected to be in range of [{-x.ndim}, {x.ndim - 1}], "
                             "but got -3)")
    H, W = x.shape[-2:]
    Ho = pooling_output_size(H, kH, pH, sH, dH, ceil_mode)
    Wo = pooling_output_size(W, kW, pW, sW, dW, ceil_mode)
    if kH <= 0 or kW <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {kH} kW: {kW}")
    if sH <= 0 or sW <= 0:
        raise RuntimeError(f"stride should be greater than zero, but got dH: {sH} dW: {sW}")
    if dH <= 0 or dW <= 0:
        raise RuntimeError(f"dilation should be greater than zero, but got dilationH: {dH} dilationW: {dW}")
    if x.ndim not in (3, 4) or 0 in x.shape[-3:]:
        raise RuntimeError("Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, "
                           f"but got:{_sizes(x.shape)}")
    if pW > kW // 2 or pH > kH // 2:
        raise RuntimeError("pad should be smaller than or equal to half of kernel size, but got "
                           f"padW = {pW}, padH = {pH}, kW = {kW}, kH = {kH}")
    if Ho < 1 or Wo < 1:
        raise RuntimeError(f"Given input size: ({x.shape[-3]}x{H}x{W}). Calculated output size: "
                           f"({x.shape[-3]}x{Ho}x{Wo}). Output size is too small")
    return Pool2dGeometry((kH, kW), (sH, sW), (pH, pW), (dH, dW), (H, W), (Ho, Wo))


def _batched(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` as it is, ``(C, H, W)`` as a batch of one (a view)."""
    return x if x.ndim == 4 else x[None]


def _padded(x4: np.ndarray, geo: Pool2dGeometry, fill: float) -> np.ndarray:
    """``x4`` inside a border of ``fill`` (``geo.padded_size()``); ``x4`` itself when no window leaves the input."""
    (H, W), (pH, pW), (Hp, Wp) = geo.in_size, geo.padding, geo.padded_size()
    if (Hp, Wp) == (H, W):
        return x4
    xp = np.full(x4.shape[:2] + (Hp, Wp), fill, x4.dtype)
    xp[:, :, pH:pH + H, pW:pW + W] = x4
    return xp


# ---- max pooling ----------------------------------------------------------------------------------------------------
class MaxPool2dCache(NamedTuple):
    """torch's indices (``(N, C, Ho, Wo)``, flat into each ``H x W`` plane), the input's shape, and the windows that
    hold no input element at all (None when there are none; see :func:`max_pool2d_forward`)."""

    indices: np.ndarray
    input_shape: Tuple[int, ...]
    empty: Optional[np.ndarray]


def _first_inside(out: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """Per output position along one dimension, the window's first element at or after the input's start (torch
    steps a window starting in the padding forward by the dilation): ``start + dilation * ceil(-start / dilation)``.
    """
    start = np.arange(out) * stride - pad
    return start + dilation * np.maximum(0, -(start // dilation))


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tuple[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]], MaxPool2dCache]:
    """``out[n, c, oh, ow] = max`` of the window at ``(oh, ow)`` of plane ``(n, c)``; padding counts as ``-inf``.

    The index is the one torch's scan keeps: it reads the window row by row and replaces its maximum by a *greater*
    element, or by a NaN. So among equal maxima the first wins (a 2 x 2 window of equal values sends its gradient
    to the top-left), and a window holding NaN gives NaN with the index of its *last* NaN. A window whose input
    elements are all ``-inf`` points at its first input element.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W), float32 or float64
    kernel_size, stride, padding, dilation : int or (int, int)
        ``stride=None`` (or ``()``) means ``stride = kernel_size``; ``padding <= kernel_size / 2``.
    ceil_mode : bool
        Round the output size up: a last, partial window, as long as it starts inside the input or its left padding.
    return_indices : bool
        Return ``(out, indices)`` instead of ``out``, as ``torch.nn.functional.max_pool2d`` does.

    Returns
    -------
    result : ndarray (N, C, Ho, Wo) or (C, Ho, Wo) in x's dtype; or ``(out, indices)`` with ``return_indices``,
        ``indices`` int64 of out's shape, each the flat position ``h * W + w`` of the maximum in its plane.
    cache : MaxPool2dCache (it holds the indices in any case)

    A window can hold no input element at all (e.g. ``H = 1``, kernel 2, padding 1, dilation 2: it reads rows -1 and
    1). torch gives ``-inf`` there, and the index of the window's first position at or after 0 — outside the
    window: past the plane, or (along W) in the next row — as here. torch's backward then adds the window's gradient
    to that element (or writes outside the plane, corrupting memory); :func:`max_pool2d_backward` sends it nowhere,
    since the output depends on no input element.
    """
    geo = pool2d_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    refuses = dict.fromkeys(("bool", "complex") + (("int",) if x.dtype in _NO_KERNEL_UNSIGNED else ()),
                            NotImplementedError)
    check_array(x, "max_pool2d", refuses=refuses)
    (H, W), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo) = geo.in_size, geo.stride, geo.padding, geo.dilation, geo.out_size
    xp = _padded(_batched(x), geo, -np.inf)
    # windows[k]: the k-th element (in scan order) of every window; steps[k]: its flat distance from the window's
    # top-left corner in an input plane
    windows = [xp[(Ellipsis, *geo.window(i, j))] for i, j in geo.offsets()]
    steps = [i * dH * W + j * dW for i, j in geo.offsets()]
    out = windows[0].copy()
    for window in windows[1:]:
        # NaN wins, as in torch's scan; between equal values (-0.0 and 0.0) np.maximum returns its second argument:
        # the earlier one, which torch's scan keeps
        np.maximum(window, out, out=out)
    # the first element equal to the maximum: scanned backwards, each equal element overwrites a later one
    step = np.full(out.shape, steps[-1], np.int64)
    for window, k_step in zip(windows[-2::-1], steps[-2::-1]):
        np.copyto(step, k_step, where=window == out)
    nan = np.isnan(out)
    if nan.any():  # NaN equals nothing: the last NaN of the window, as torch's scan takes every NaN it meets
        for window, k_step in zip(windows, steps):
            np.copyto(step, k_step, where=nan & np.isnan(window))
    corner = (np.arange(Ho) * sH - pH)[:, None] * W + (np.arange(Wo) * sW - pW)
    indices = corner + step
    empty = None
    lowest = out == -np.inf
    if lowest.any():  # an all -inf window may have matched the padding first: torch points at its first input element
        rows, cols = _first_inside(Ho, sH, pH, dH), _first_inside(Wo, sW, pW, dW)
        indices = np.where(lowest, rows[:, None] * W + cols, indices)
        outside = (rows >= H)[:, None] | (cols >= W)
        empty = outside if outside.any() else None
    if x.ndim == 3:
        out, indices = out[0], indices[0]
    cache = MaxPool2dCache(indices, x.shape, empty)
    return ((out, indices) if return_indices else out), cache


def max_pool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """``dx[n, c, i] = sum of dout[n, c, oh, ow]`` over the windows whose maximum is element ``i``.

    One scatter with accumulation (``np.add.at``) in output order, as torch adds them: overlapping windows
    (stride < kernel) that share a maximum add their gradients into it.
    """
    indices, shape, empty = cache
    H, W = shape[-2:]
    planes, windows = int(np.prod(shape[:-2])), int(np.prod(indices.shape[-2:]))
    where = indices.reshape(planes, windows) + np.arange(planes)[:, None] * (H * W)
    grads = dout.reshape(planes, windows)
    if empty is not None:  # a window without input element has nowhere to send its gradient
        keep = ~np.broadcast_to(empty, indices.shape[-2:]).ravel()
        where, grads = where[:, keep], grads[:, keep]
    dx = np.zeros(planes * H * W, dout.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf = NaN, as in torch
        np.add.at(dx, where.ravel(), grads.ravel())
    return dx.reshape(shape)


# ---- average pooling -------------------------------------------------------------------------------------------------
class AvgPool2dCache(NamedTuple):
    """The windows' geometry, each output's divisor ``(Ho, Wo)`` (in the input's dtype) and the input's shape."""

    geometry: Pool2dGeometry
    divisor: np.ndarray
    input_shape: Tuple[int, ...]


def _avg_divisor(geo: Pool2dGeometry, count_include_pad: bool, divisor_override: Optional[int],
                 dtype: np.dtype) -> np.ndarray:
    """torch's divisor of each window: ``divisor_override``; else the number of its elements inside the padded input
    (``count_include_pad``: the padding's zeros count, a ``ceil_mode`` window's part beyond the padding does not),
    or inside the input only."""
    (Ho, Wo) = geo.out_size
    if divisor_override is not None:
        return np.full((Ho, Wo), divisor_override, dtype)
    counts = []
    for n, k, s, p, o in zip(geo.in_size, geo.kernel, geo.stride, geo.padding, geo.out_size):
        start = np.arange(o) * s - p
        if count_include_pad:
            counts.append(np.minimum(start + k, n + p) - start)
        else:
            counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
    return (counts[0][:, None] * counts[1]).astype(dtype)


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> Tuple[np.ndarray, AvgPool2dCache]:
    """``out[n, c, oh, ow] = (sum of the window at (oh, ow)) / divisor[oh, ow]``; padding counts as 0.

    The divisor is ``divisor_override`` when given; else, with ``count_include_pad``, the window's size clipped to
    the padded input (the padding's zeros count; a ``ceil_mode`` window's part beyond the padding does not), and
    without it the number of the window's elements inside the input. Each window is summed row by row from 0, as
    torch sums it.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W), float32 or float64
    kernel_size, stride, padding : int or (int, int)
        ``stride=None`` (or ``()``) means ``stride = kernel_size``; ``padding <= kernel_size / 2``.
    ceil_mode, count_include_pad : bool
    divisor_override : int, optional (not 0)

    Returns
    -------
    out : ndarray (N, C, Ho, Wo) or (C, Ho, Wo), x's dtype
    cache : AvgPool2dCache
    """
    geo = pool2d_geometry("avg_pool2d", x, kernel_size, stride, padding, None, ceil_mode, divisor_override)
    # torch averages int64 (which handnn does not compute in) but has no kernel for the other integer dtypes
    refuses = dict.fromkeys(("bool", "complex") + (("int",) if x.dtype != np.int64 else ()), NotImplementedError)
    check_array(x, "avg_pool2d", refuses=refuses)
    xp = _padded(_batched(x), geo, 0.0)
    divisor = _avg_divisor(geo, count_include_pad, divisor_override, x.dtype)
    total = np.zeros(xp.shape[:2] + geo.out_size, x.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and overflow: torch's NaN and inf
        for i, j in geo.offsets():
            total += xp[(Ellipsis, *geo.window(i, j))]
        out = total / divisor
    return (out if x.ndim == 4 else out[0]), AvgPool2dCache(geo, divisor, x.shape)


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPool2dCache) -> np.ndarray:
    """``dx`` = the sum, over the windows holding an element, of ``dout / divisor`` of each window.

    ``dout / divisor`` is added to every element of its window: one strided slice-add per offset ``(i, j)``, the
    offsets taken backwards so that each element receives its windows' shares in output order, as torch adds them.
    """
    geo, divisor, shape = cache
    (H, W), (pH, pW), (Hp, Wp) = geo.in_size, geo.padding, geo.padded_size()
    d4 = _batched(dout)
    dxp = np.zeros(d4.shape[:2] + (Hp, Wp), dout.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and overflow: torch's NaN and inf
        share = d4 / divisor
        for i, j in reversed(geo.offsets()):
            dxp[(Ellipsis, *geo.window(i, j))] += share
    dx = dxp[:, :, pH:pH + H, pW:pW + W]
    return np.ascontiguousarray(dx if dout.ndim == 4 else dx[0])


# ---- adaptive average pooling ---------------------------------------------------------------------------------------
class AdaptiveAvgPool2dCache(NamedTuple):
    """The input's shape and the output's size (the mean path keeps only these too)."""

    input_shape: Tuple[int, ...]
    out_size: Tuple[int, int]


def adaptive_output_size(x: np.ndarray, output_size) -> Tuple[int, int]:
    """torch's reading of ``output_size``: an int ``n`` is ``(n, n)``; a None entry keeps that input size.

    torch's classes: a sequence on an input of too few dims ``ValueError`` (its Python helper), a count other than 2
    or a negative size ``RuntimeError``, a non-integer ``TypeError``.
    """
    op = "adaptive_avg_pool2d"
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        sizes: Tuple = (int(output_size),) * 2
    elif isinstance(output_size, (tuple, list)):
        if x.ndim <= len(output_size):
            raise ValueError(f"Input dimension should be at least {len(output_size) + 1}")
        sizes = tuple(d if v is None else v for v, d in zip(output_size, x.shape[-len(output_size):]))
        wrong = [i for i, v in enumerate(sizes) if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
        if wrong:
            raise TypeError(f"{op}(): argument 'output_size' (position 2) must be tuple of ints, but found "
                            f"element of type {type(sizes[wrong[0]]).__name__} at pos {wrong[0]}")
    else:  # torch's Python helper takes len() of it
        raise TypeError(f"object of type '{type(output_size).__name__}' has no len()")
    if len(sizes) != 2:
        raise RuntimeError(f"{op}: output_size must be 2")
    if sizes[0] < 0 or sizes[1] < 0:
        raise RuntimeError(f"{op}: elements of output_size must be greater than or equal to 0 but received "
                           f"{{{sizes[0]}, {sizes[1]}}}")
    return sizes


def adaptive_windows(size: int, out: int) -> Tuple[np.ndarray, np.ndarray]:
    """Output ``i``'s window along one dimension: ``start = floor(i * size / out)``, ``end = ceil((i + 1) * size /
    out)``; returns (starts, lengths). Windows overlap when ``size`` is not a multiple of ``out``."""
    i = np.arange(out)
    start = i * size // out
    end = ((i + 1) * size + out - 1) // out
    return start, end - start


def covering_windows(starts: np.ndarray, lengths: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """For each input position along one dimension, the windows holding it: consecutive ones (starts and ends never
    decrease), returned as (first window, number of windows)."""
    i = np.arange(size)
    first = np.searchsorted(starts + lengths, i, side="right")
    last = np.searchsorted(starts, i, side="right") - 1
    return first, last - first + 1


def _planes_last(a: np.ndarray) -> np.ndarray:
    """``(*, H, W)`` as a contiguous ``(H, W, planes)``: a pixel's values over all planes side by side, so that
    gathering pixels by index copies whole rows."""
    return np.ascontiguousarray(a.reshape((-1,) + a.shape[-2:]).transpose(1, 2, 0))


def _planes_first(a: np.ndarray, batch: Tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`_planes_last`: ``(H, W, planes)`` back to a contiguous ``(*batch, H, W)``."""
    return np.ascontiguousarray(a.transpose(2, 0, 1)).reshape(batch + a.shape[:2])


def adaptive_avg_pool2d_forward(x: np.ndarray, output_size) -> Tuple[np.ndarray, AdaptiveAvgPool2dCache]:
    """``out[n, c, oh, ow]`` = the mean of rows ``[floor(oh H / Ho), ceil((oh + 1) H / Ho))`` and columns
    ``[floor(ow W / Wo), ceil((ow + 1) W / Wo))`` of plane ``(n, c)``.

    Each window is summed row by row, then divided by its height and then by its width, as torch computes it. An
    output size of ``(1, 1)`` is ``x.mean((-2, -1), keepdims=True)``, as torch computes that case: any input of at
    least 2 dims, and an empty plane gives NaN.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W), float32 or float64
    output_size : int or (int or None, int or None)
        ``(Ho, Wo)``; an int ``n`` means ``(n, n)``, None keeps the input's size. Larger than the input is allowed
        (windows of one or two elements, repeated).

    Returns
    -------
    out : ndarray (N, C, Ho, Wo) or (C, Ho, Wo), x's dtype
    cache : AdaptiveAvgPool2dCache
    """
    op = "adaptive_avg_pool2d"
    check_ndarray(x, op)
    Ho, Wo = adaptive_output_size(x, output_size)
    if (Ho, Wo) == (1, 1):
        return _global_mean(x)
    if x.ndim not in (3, 4):
        raise RuntimeError(f"{op}(): Expected 3D or 4D tensor, but got {_sizes(x.shape)}")
    for dim in (x.ndim - 2, x.ndim - 1):
        if x.shape[dim] == 0:
            raise RuntimeError(f"{op}(): Expected input to have non-zero size for non-batch dimensions, but input "
                               f"has sizes {_sizes(x.shape)} with dimension {dim} being empty")
    check_array(x, op, refuses=dict.fromkeys(("int", "bool", "complex"), NotImplementedError))
    (rows, kh), (cols, kw) = adaptive_windows(x.shape[-2], Ho), adaptive_windows(x.shape[-1], Wo)
    pixels = _planes_last(x)
    total = np.zeros((Ho, Wo, pixels.shape[2]), x.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and overflow: torch's NaN and inf
        # element (dh, dw) of every window at least that large, added row by row, as torch sums a window
        for dh in range(kh.max(initial=0)):
            oh = np.flatnonzero(kh > dh)
            for dw in range(kw.max(initial=0)):
                ow = np.flatnonzero(kw > dw)
                total[oh[:, None], ow] += pixels[rows[oh, None] + dh, cols[ow] + dw]
        total /= kh[:, None, None].astype(x.dtype)
        total /= kw[:, None].astype(x.dtype)
    return _planes_first(total, x.shape[:-2]), AdaptiveAvgPool2dCache(x.shape, (Ho, Wo))


#: torch's names of the integer dtypes, as its messages print them
_TORCH_NAMES = {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
                "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64"}


def _global_mean(x: np.ndarray) -> Tuple[np.ndarray, AdaptiveAvgPool2dCache]:
    """torch's ``adaptive_avg_pool2d(x, 1)``: ``x.mean((-1, -2), keepdim=True)``, with mean's checks."""
    if dtype_kind(x.dtype) in ("int", "bool"):
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point or "
                           f"complex dtype. Got: {_TORCH_NAMES.get(x.dtype.name, x.dtype.name)}")
    if x.ndim < 2:
        raise IndexError("Dimension out of range (expected to be in range of [-1, 0], but got -2)")
    check_array(x, "adaptive_avg_pool2d", refuses={})
    count = x.shape[-2] * x.shape[-1]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # an empty plane: 0 / 0 = NaN, as torch's
        out = x.sum(axis=(-2, -1), keepdims=True) / x.dtype.type(count)
    return out, AdaptiveAvgPool2dCache(x.shape, (1, 1))


def adaptive_avg_pool2d_backward(dout: np.ndarray, cache: AdaptiveAvgPool2dCache) -> np.ndarray:
    """``dx`` = the sum, over the windows holding an element, of ``dout / height / width`` of each window.

    Each input element gathers the shares of the windows covering it (consecutive along each dimension: a few
    offsets ``(a, b)`` from the first one), in output order (``oh``, then ``ow``), as torch adds them.
    """
    shape, (Ho, Wo) = cache
    H, W = shape[-2:]
    if (Ho, Wo) == (1, 1):  # the mean's gradient: dout / (H W) everywhere
        share = dout / dout.dtype.type(max(H * W, 1))
        return np.ascontiguousarray(np.broadcast_to(share, shape))
    for dim in range(1, dout.ndim):  # torch's backward refuses an empty output (or channel dim), which its forward gave
        if dout.shape[dim] == 0:
            raise RuntimeError("adaptive_avg_pool2d_backward(): Expected grad_output to have non-zero size for "
                               f"non-batch dimensions, but grad_output has sizes {_sizes(dout.shape)} with dimension "
                               f"{dim} being empty")
    (rows, kh), (cols, kw) = adaptive_windows(H, Ho), adaptive_windows(W, Wo)
    (first_h, count_h), (first_w, count_w) = covering_windows(rows, kh, H), covering_windows(cols, kw, W)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and overflow: torch's NaN and inf
        share = _planes_last(dout) / kh[:, None, None].astype(dout.dtype) / kw[:, None].astype(dout.dtype)
        dx = np.zeros((H, W, share.shape[2]), dout.dtype)
        for a in range(count_h.max(initial=0)):
            ih = np.flatnonzero(count_h > a)
            for b in range(count_w.max(initial=0)):
                iw = np.flatnonzero(count_w > b)
                dx[ih[:, None], iw] += share[first_h[ih, None] + a, first_w[iw] + b]
    return _planes_first(dx, shape[:-2])
