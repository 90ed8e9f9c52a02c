"""Convolution (torch's cross-correlation) over 2-d and 1-d inputs by im2col, and its backward pass by col2im.

One output pixel is a dot product of the weights with the window of the zero-padded input under it::

    out[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] · x_pad[n, g·Cg + c, i·sH + p·dH, j·sW + q·dW]

(``g`` the group of output channel ``o``, ``Cg = C / groups`` its input channels). Laid out as a matrix whose
columns are the windows (*im2col*), every output of a group is one matrix product; the backward pass is the same
products transposed, and the gradient of the input scatters each window's gradient back where the window came from
(*col2im*).

``pad_forward`` / ``pad_backward`` pad with torch's non-zero modes ('reflect', 'replicate', 'circular'): the
modules pad explicitly with them, then convolve without padding, as torch's modules do.
"""
from __future__ import annotations

import operator
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .._validation import REFUSES_ALL, check_array, check_ndarray, check_same_dtype, dtype_kind
from ._kernels import col_sums, row_sums

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[str, int, Sequence[int]]


class ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs: the im2col matrix, the weight, and the geometry.

    ``cols`` is ``(C·kH·kW, N·Ho·Wo)``: row ``(c, p, q)``, column ``(n, i, j)`` holds
    ``x_pad[n, c, i·sH + p·dH, j·sW + q·dW]``.
    """

    cols: np.ndarray
    weight: np.ndarray                  # (O, C / groups, kH, kW)
    x_shape: Tuple[int, ...]            # (N, C, H, W), or (C, H, W) unbatched
    padding: Tuple[int, int, int, int]  # top, bottom, left, right
    stride: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    has_bias: bool


class Conv1dCache(NamedTuple):
    """What :func:`conv1d_backward` needs: the cache of the 2-d convolution of height 1, and the input's shape."""

    conv2d: ConvCache
    x_shape: Tuple[int, ...]  # (N, C, L), or (C, L) unbatched


# ---- arguments --------------------------------------------------------------------------------------------------
def _ints(value: IntOrTuple, name: str, dims: int, op: str) -> Tuple[int, ...]:
    """``value`` as ``dims`` ints (an int, or a tuple of 1 or ``dims``), as torch expands conv arguments."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    try:
        values = tuple(operator.index(v) for v in values)
    except TypeError:
        raise TypeError(f"{op}(): argument '{name}' must be an int or a tuple of ints, but got {value!r}") from None
    if len(values) == 1:
        return values * dims
    if len(values) != dims:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {dims} values to match the "
                           f"convolution dimensions, but got {name}={list(values)}")
    return values


def same_padding(kernel_size: Sequence[int], dilation: Sequence[int]) -> Tuple[Tuple[int, int], ...]:
    """``padding='same'`` per dim as (before, after): the total ``d·(k - 1)`` split as torch splits it, the odd one
    after (an even kernel pads one more at the bottom / right)."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel_size, dilation))


def _checked(x: object, weight: object, bias: Optional[np.ndarray], stride: IntOrTuple, padding: Padding,
             dilation: IntOrTuple, groups: int, dims: int, op: str):
    """Check a convolution's arguments as torch does (its exception classes, expected vs given in the messages) and
    return ``(stride, pads, dilation)``: ``pads`` is (before, after) per spatial dim."""
    check_ndarray(x, op)
    check_ndarray(weight, op, "weight")
    if bias is not None:
        check_ndarray(bias, op, "bias")
    stride = _ints(stride, "stride", dims, op)
    dilation = _ints(dilation, "dilation", dims, op)
    # dtypes: beside float parameters torch refuses every other input dtype (RuntimeError), but without a bias, or
    # with a padding string (torch's path for those checks the bias later), its kernel lookup comes first
    # (NotImplementedError): no bool kernel, no unsigned one wider than uint8, and a dilated convolution has an
    # integer kernel for int64 only. When the input and weight share an integer, float16 or complex dtype torch
    # computes (handnn: TypeError).
    if dtype_kind(weight.dtype) != "float" and weight.dtype == x.dtype:
        refuses = {"bool": NotImplementedError}
    elif bias is None or isinstance(padding, str):
        no_kernel = x.dtype in (np.uint16, np.uint32, np.uint64) or (
            dtype_kind(x.dtype) == "int" and x.dtype != np.int64 and any(d != 1 for d in dilation))
        if no_kernel:
            raise NotImplementedError(f"{op}(): no {x.dtype} kernel for this convolution: expected a float32 or "
                                      f"float64 input, but got {x.dtype}")
        refuses = {**REFUSES_ALL, "bool": NotImplementedError}
    else:
        refuses = REFUSES_ALL
    check_array(x, op, refuses=refuses)
    check_array(weight, op, name="weight")  # the input is float32/float64 here: another weight dtype is mixed
    check_same_dtype(x, weight, op)
    check_same_dtype(x, bias, op)
    if x.ndim not in (dims + 1, dims + 2):
        raise RuntimeError(f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to {op}, but got input "
                           f"of size: {list(x.shape)}")
    if weight.ndim != dims + 2:
        raise RuntimeError(f"{op}(): expected a {dims + 2}-d weight (out_channels, in_channels / groups, *kernel), "
                           f"but got weight of size {list(weight.shape)}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise RuntimeError(f"Invalid padding string: {padding!r} (expected 'same' or 'valid')")
        if padding == "same" and any(s != 1 for s in stride):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        pads = same_padding(weight.shape[2:], dilation) if padding == "same" else ((0, 0),) * dims
    else:
        pads = tuple((p, p) for p in _ints(padding, "padding", dims, op))
    groups = operator.index(groups)
    if groups <= 0:
        raise RuntimeError(f"non-positive groups is not supported, but got groups={groups}")
    if any(p < 0 for pair in pads for p in pair):
        raise RuntimeError(f"negative padding is not supported, but got padding={[p for p, _ in pads]}")
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"non-positive stride is not supported, but got stride={list(stride)}")
    if any(d < 0 for d in dilation):
        raise RuntimeError(f"dilation should be greater than zero, but got dilation={list(dilation)}")
    out_channels, group_channels = weight.shape[:2]
    if out_channels < groups or out_channels % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} (and at least "
                           f"{groups}) at dimension 0, but got weight of size {list(weight.shape)} instead")
    channels = x.shape[-dims - 1]
    if channels != group_channels * groups:
        batched = x.shape if x.ndim == dims + 2 else (1, *x.shape)
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                           f"{list(batched)} to have {group_channels * groups} channels, but got {channels} "
                           "channels instead")
    if bias is not None and bias.shape != (out_channels,):
        raise RuntimeError(f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
                           f"{out_channels} elements, but got bias of size {list(bias.shape)} instead")
    padded = [size + before + after for size, (before, after) in zip(x.shape[-dims:], pads)]
    extent = [d * (k - 1) + 1 for k, d in zip(weight.shape[2:], dilation)]
    if any(p < e for p, e in zip(padded, extent)):
        raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel "
                           f"size: ({' x '.join(map(str, extent))}). Kernel size can't be greater than actual input "
                           "size")
    if any(k <= 0 for k in weight.shape[2:]):
        raise RuntimeError(f"kernel size should be greater than zero, but got {list(weight.shape[2:])}")
    if any(d == 0 for d in dilation):
        raise RuntimeError(f"dilation should be greater than zero, but got {list(dilation)}")
    if x.size == 0 and x.ndim == dims + 2 and x.shape[0] and x.shape[1]:
        raise RuntimeError(f"Only zero batch or zero channel inputs are supported, but got input shape: "
                           f"{list(x.shape)}")
    return stride, pads, dilation


# ---- 2-d ----------------------------------------------------------------------------------------------------------
def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, stride: IntOrTuple = 1,
                   padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1
                   ) -> Tuple[np.ndarray, ConvCache]:
    """2-d convolution, torch's ``conv2d``: ``out[n, o] = b[o] + sum_c W[o, c] ⋆ x_pad[n, c]`` within each group.

    With ``Ho = (H + pt + pb - dH·(kH - 1) - 1) // sH + 1`` (``Wo`` alike), the padded input's windows become the
    columns of ``cols`` (C·kH·kW, N·Ho·Wo) — *im2col* — and each group's output is one (batched) product
    ``W_g (O/G, C/G·kH·kW) @ cols_g`` per sample, plus the bias.

    Workspace: ``cols`` is the one im2col copy, ``C·kH·kW·N·Ho·Wo·itemsize`` bytes, kept in the cache for the
    backward pass; besides it only the zero-padded input (``N·C·(H+pt+pb)·(W+pl+pr)·itemsize``, when padding) and
    the output.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
    weight : ndarray, shape (O, C / groups, kH, kW)
    bias : ndarray, shape (O,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), 'valid' or 'same'
        Zeros added on both sides; 'same' (stride 1 only) pads ``d·(k - 1)`` in all, the odd one at the bottom /
        right.
    groups : int
        Input and output channels split into ``groups`` independent convolutions.

    Returns
    -------
    out : ndarray, shape (N, O, Ho, Wo) or (O, Ho, Wo)
    cache : ConvCache
    """
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = _checked(x, weight, bias, stride, padding, dilation, groups, 2,
                                                        "conv2d")
    n, c, h, w = x.shape if x.ndim == 4 else (1, *x.shape)
    o, cg, kh, kw = weight.shape
    ho, wo = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    # 1. zero padding
    x_pad = x.reshape(n, c, h, w)  # a view (unbatched: a batch of one)
    if pt or pb or pl or pr:
        x_pad = np.zeros((n, c, h + pt + pb, w + pl + pr), x.dtype)
        x_pad[:, :, pt:pt + h, pl:pl + w] = x
    # 2. the windows, a strided view (no copy): windows[n, c, i, j, p, q] = x_pad[n, c, i·sH + p·dH, j·sW + q·dW]
    extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    windows = np.lib.stride_tricks.sliding_window_view(x_pad, extent, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    # 3. im2col, the one copy: rows (c, p, q), columns (n, i, j); a group's rows are one block
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * ho * wo)
    # 4. per sample, one matrix product per group: out_g = W_g (O/G, C/G·kH·kW) @ cols_g, (O/G, Ho·Wo)
    og, rows = o // groups, cg * kh * kw
    per_sample = cols.reshape(c * kh * kw, n, ho * wo).transpose(1, 0, 2)  # a view (N, C·kH·kW, Ho·Wo)
    out = np.empty((n, o, ho * wo), x.dtype)
    for g in range(groups):
        np.matmul(weight[g * og:(g + 1) * og].reshape(og, rows), per_sample[:, g * rows:(g + 1) * rows],
                  out=out[:, g * og:(g + 1) * og])
    # 5. the bias of each output channel
    if bias is not None:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is inf, inf + -inf NaN, as in torch
            out += bias[:, None]
    if c == 0:  # an input without channels: torch's empty output (N, 0, Ho, Wo), whatever out_channels
        out = out[:, :0]
    out = out.reshape(n, out.shape[1], ho, wo)
    cache = ConvCache(cols, weight, x.shape, (pt, pb, pl, pr), (sh, sw), (dh, dw), groups, bias is not None)
    return (out if x.ndim == 4 else out[0]), cache


def conv2d_backward(dout: np.ndarray, cache: ConvCache) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of :func:`conv2d_forward`.

    With ``dY_n`` sample n's upstream gradient as (O, Ho·Wo): ``db`` = the sums of ``dY`` over samples and
    positions, ``dW_g = sum_n dY_n,g @ cols_n,gᵀ``, and the input gradient by *col2im*, one strided slice-add per
    kernel offset (p, q)::

        dx_pad[n, c, i·sH + p·dH, j·sW + q·dW] += sum_o W[o, c, p, q] · dY_n[o, (i, j)]   (o in c's group)

    then the padding cropped off.

    Workspace: the per-sample products of ``dW`` (``N·O/G·C/G·kH·kW·itemsize``), one offset's contribution
    (``N·C/G·Ho·Wo·itemsize``), the padded input gradient (``N·C·(H+pt+pb)·(W+pl+pr)·itemsize``) and, when
    padded, the cropped copy returned.

    Returns
    -------
    dx : ndarray, the input's shape
    dweight : ndarray, shape (O, C / groups, kH, kW)
    dbias : ndarray, shape (O,), or None without bias
    """
    cols, weight, x_shape, (pt, pb, pl, pr), (sh, sw), (dh, dw), groups, has_bias = cache
    n, c, h, w = x_shape if len(x_shape) == 4 else (1, *x_shape)
    o, cg, kh, kw = weight.shape
    if c == 0:  # torch's empty output (N, 0, Ho, Wo): nothing flows back
        return np.zeros(x_shape, weight.dtype), np.zeros_like(weight), (np.zeros(o, weight.dtype) if has_bias
                                                                          else None)
    ho, wo = dout.shape[-2:]
    dy = dout.reshape(n, o, ho * wo)  # dY_n = dout[n] as (O, Ho·Wo), per sample
    # db = the sums of dY over samples and positions
    dbias = col_sums(row_sums(dy.reshape(n * o, ho * wo)).reshape(n, o)) if has_bias else None
    og, rows = o // groups, cg * kh * kw
    per_sample = cols.reshape(c * kh * kw, n, ho * wo).transpose(1, 0, 2)  # a view (N, C·kH·kW, Ho·Wo)
    dweight = np.empty((o, rows), weight.dtype)
    dx_pad = np.zeros((n, c, h + pt + pb, w + pl + pr), weight.dtype)
    contribution = np.empty((n, cg, ho * wo), weight.dtype)
    for g in range(groups):
        dy_g, w_g = dy[:, g * og:(g + 1) * og], weight[g * og:(g + 1) * og]
        # dW_g = sum over samples of dY_g @ cols_gᵀ
        products = np.matmul(dy_g, per_sample[:, g * rows:(g + 1) * rows].transpose(0, 2, 1))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is inf, inf + -inf NaN, as in torch
            np.sum(products, axis=0, out=dweight[g * og:(g + 1) * og])
        # col2im: each kernel offset (p, q) scatters W[:, :, p, q]ᵀ @ dY back, one strided slice-add, into the
        # positions of the padded input its windows read
        for p in range(kh):
            for q in range(kw):
                np.matmul(w_g[:, :, p, q].T, dy_g, out=contribution)
                read = dx_pad[:, g * cg:(g + 1) * cg, p * dh:p * dh + sh * (ho - 1) + 1:sh,
                              q * dw:q * dw + sw * (wo - 1) + 1:sw]
                with np.errstate(over="ignore", invalid="ignore"):  # overflow is inf, inf + -inf NaN, as in torch
                    read += contribution.reshape(n, cg, ho, wo)
    # crop the padding off
    dx = dx_pad[:, :, pt:pt + h, pl:pl + w].copy() if (pt or pb or pl or pr) else dx_pad
    return dx.reshape(x_shape), dweight.reshape(weight.shape), dbias


# ---- 1-d: the 2-d convolution of height 1 ---------------------------------------------------------------------------
def conv1d_forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, stride: IntOrTuple = 1,
                   padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1
                   ) -> Tuple[np.ndarray, Conv1dCache]:
    """1-d convolution, torch's ``conv1d``: :func:`conv2d_forward` of the input seen as height 1 with a kernel of
    height 1, ``Lo = (L + pl + pr - d·(k - 1) - 1) // s + 1``. The workspace is the 2-d one with H = kH = 1.

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or (C, L)
    weight : ndarray, shape (O, C / groups, k)
    bias : ndarray, shape (O,), optional
    stride, dilation : int or (int,)
    padding : int, (int,), 'valid' or 'same'
    groups : int

    Returns
    -------
    out : ndarray, shape (N, O, Lo) or (O, Lo)
    cache : Conv1dCache
    """
    (s,), ((p, _),), (d,) = _checked(x, weight, bias, stride, padding, dilation, groups, 1, "conv1d")
    x4 = (x if x.ndim == 3 else x[None])[:, :, None, :]  # views: (N, C, 1, L), and the weight (O, C/G, 1, k)
    padding4 = padding if isinstance(padding, str) else (0, p)
    out, cache = conv2d_forward(x4, weight[:, :, None, :], bias, (1, s), padding4, (1, d), groups)
    out = out[:, :, 0, :]
    return (out if x.ndim == 3 else out[0]), Conv1dCache(cache, x.shape)


def conv1d_backward(dout: np.ndarray, cache: Conv1dCache) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of :func:`conv1d_forward`: :func:`conv2d_backward`'s, of height 1.

    Returns
    -------
    dx : ndarray, the input's shape
    dweight : ndarray, shape (O, C / groups, k)
    dbias : ndarray, shape (O,), or None without bias
    """
    conv2d, x_shape = cache
    dout4 = (dout if len(x_shape) == 3 else dout[None])[:, :, None, :]
    dx, dweight, dbias = conv2d_backward(dout4, conv2d)
    return dx.reshape(x_shape), dweight[:, :, 0, :], dbias


# ---- padding by the modes other than zeros ---------------------------------------------------------------------------
class PadCache(NamedTuple):
    """What :func:`pad_backward` needs: where each padded position was read from, per padded dim, and the input's
    shape."""

    sources: Tuple[np.ndarray, ...]  # for the last len(sources) dims, in order
    befores: Tuple[int, ...]         # the padding before each of those dims (negative: cropped)
    x_shape: Tuple[int, ...]


PAD_MODES = ("reflect", "replicate", "circular")


def pad_source(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """The input position each of the ``size + before + after`` padded positions of one dim reads from.

    Position ``j = i - before`` of the input, wrapped into ``[0, size)``: mirrored without repeating the edge
    ('reflect': -1 -> 1), clamped to the edge ('replicate'), or periodic ('circular'). A negative ``before`` /
    ``after`` crops, as torch's ``F.pad`` does (a circular padding wraps around what is left after cropping).
    """
    j = np.arange(-before, size + after)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j >= size, 2 * (size - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, size - 1)
    start, stop = max(-before, 0), size - max(-after, 0)  # the part kept after cropping, [start, stop)
    return start + (j - start) % (stop - start) if stop > start else j


def pad_forward(x: np.ndarray, pad: Sequence[int], mode: str) -> Tuple[np.ndarray, PadCache]:
    """Pad the last ``len(pad) // 2`` dims with a non-zero mode of torch's ``F.pad``: 'reflect', 'replicate' or
    'circular'.

    ``pad`` is in ``F.pad``'s order, the last dim first: ``(left, right)`` or ``(left, right, top, bottom)``.
    ``out = x[..., source_H, source_W]``, a gather along each dim (the sources from :func:`pad_source`); checks and
    exception classes as torch's. Workspace: the output, and one intermediate of its size for 2 dims.
    """
    check_ndarray(x, "pad")
    dims = len(pad) // 2
    if len(pad) > 2 * x.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {x.ndim}")
    if x.ndim not in (dims + 1, dims + 2):
        raise NotImplementedError(f"Padding size {len(pad)} is not supported for {x.ndim}D input tensor (a "
                                  f"{mode} padding of {dims} dims takes {dims + 1}D or {dims + 2}D inputs)")
    sizes = x.shape[-dims:]
    pairs = [(pad[2 * (dims - 1 - k)], pad[2 * (dims - 1 - k) + 1]) for k in range(dims)]  # per dim, in order
    if mode != "circular" and 0 in x.shape[1:]:
        raise RuntimeError(f"Expected {dims + 1}D or {dims + 2}D (batch mode) tensor with possibly 0 batch size and "
                           f"other non-zero dimensions for input, but got: {list(x.shape)}")
    for k in reversed(range(dims)):  # torch checks the last dim first
        (before, after), size = pairs[k], sizes[k]
        if mode == "reflect" and (before >= size or after >= size):
            raise RuntimeError(f"Padding size should be less than the corresponding input dimension, but got: "
                               f"padding ({before}, {after}) at dimension {x.ndim - dims + k} of input "
                               f"{list(x.shape)}")
        kept = size + min(before, 0) + min(after, 0)  # what is left after cropping, where circular wraps
        if mode == "circular" and (before > kept or after > kept):
            raise RuntimeError(f"Padding value causes wrapping around more than once: padding ({before}, {after}) "
                               f"at dimension {x.ndim - dims + k} of input {list(x.shape)} wraps around {kept} "
                               "positions")
        if size + before + after < 0:
            raise RuntimeError(f"The padded size of dimension {x.ndim - dims + k} is negative: padding ({before}, "
                               f"{after}) of input {list(x.shape)}")
    if mode != "circular" and x.dtype == np.bool_:
        raise NotImplementedError(f'"{mode}_pad{dims}d" not implemented for bool: expected a numeric input')
    sources = tuple(pad_source(size, before, after, mode) for size, (before, after) in zip(sizes, pairs))
    out = x
    for axis, source in zip(range(x.ndim - dims, x.ndim), sources):
        out = out.take(source, axis=axis)
    return out, PadCache(sources, tuple(before for before, _ in pairs), x.shape)


def pad_backward(dout: np.ndarray, cache: PadCache) -> np.ndarray:
    """Gradient of :func:`pad_forward`: each padded position's gradient added into the input position it was read
    from, one dim at a time.

    Along a dim, the padded positions ``before .. before + size - 1`` read their own input position: one slice copy;
    each other one (the margins, as many as the padding) is one slice-add at its source.
    """
    sources, befores, x_shape = cache
    dx = dout
    for axis, source, before in zip(range(len(x_shape) - len(sources), len(x_shape)), sources, befores):
        lo = min(max(before, 0), len(source))  # positions lo .. hi - 1 read their own input position
        hi = max(min(len(source), before + x_shape[axis]), lo)
        folded = np.zeros(dx.shape[:axis] + (x_shape[axis],) + dx.shape[axis + 1:], dout.dtype)
        at = (slice(None),) * axis
        folded[at + (slice(lo - before, hi - before),)] = dx[at + (slice(lo, hi),)]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is inf, inf + -inf NaN, as in torch
            for i in [*range(lo), *range(hi, len(source))]:
                folded[at + (source[i],)] += dx[at + (i,)]
        dx = folded
    return dx
