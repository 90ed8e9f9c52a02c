"""``Conv1d`` and ``Conv2d``."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from ... import functional as F
from ... import init
from ...functional.conv import PAD_MODES, pad_backward, pad_forward, same_padding
from ..parameter import Parameter
from .linear import default_rng
from .module import Module

IntOrTuple = Union[int, Sequence[int]]


def _ntuple(value: Any, n: int) -> Tuple[Any, ...]:
    """torch's ``_pair`` / ``_single``: a sequence as a tuple, anything else repeated ``n`` times."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


class _ConvNd(Module):
    """What ``Conv1d`` and ``Conv2d`` share: torch's constructor checks, parameters, initialisation, padding modes.

    Initialised as torch does: ``weight`` (out_channels, in_channels / groups, *kernel_size) by
    ``init.kaiming_uniform_(a=sqrt(5))``, then ``bias`` ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = in_channels / groups · prod(kernel_size), so ``rng=TorchGenerator(seed)`` gives the parameters of
    ``torch.manual_seed(seed); torch.nn.Conv2d(...)``. A padding mode other than 'zeros' pads the input with that
    mode, then convolves without padding (torch's order, and its errors).
    """

    _dims: int
    _forward: Callable[..., Any]
    _backward: Callable[..., Any]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple,
                 padding: Union[str, IntOrTuple], dilation: IntOrTuple, groups: int, bias: bool, padding_mode: str,
                 *, dtype, rng: Optional[np.random.Generator]) -> None:
        super().__init__()
        n = self._dims
        kernel_size, stride, dilation = _ntuple(kernel_size, n), _ntuple(stride, n), _ntuple(dilation, n)
        # torch's checks, in its order; sizes, strides and dilations are checked at the forward, as torch does
        if groups <= 0:
            raise ValueError(f"groups must be a positive integer, but got groups={groups}")
        if in_channels % groups != 0:
            raise ValueError(f"in_channels must be divisible by groups, but got in_channels={in_channels}, "
                             f"groups={groups}")
        if out_channels % groups != 0:
            raise ValueError(f"out_channels must be divisible by groups, but got out_channels={out_channels}, "
                             f"groups={groups}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError(f"padding='same' is not supported for strided convolutions, but got "
                                 f"stride={stride}")
        if padding_mode not in ("zeros", *PAD_MODES):
            raise ValueError(f"padding_mode must be one of {{'zeros', 'reflect', 'replicate', 'circular'}}, but got "
                             f"padding_mode={padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, n)
        self.dilation = dilation
        self.groups = groups
        self.padding_mode = padding_mode
        # F.pad's argument for the other padding modes, the last dim first: (left, right, top, bottom)
        if padding == "same":
            pairs = same_padding(kernel_size, dilation)
        else:
            pairs = [(0, 0)] * n if padding == "valid" else [(p, p) for p in self.padding]
        self._reversed_padding_repeated_twice = tuple(p for pair in reversed(pairs) for p in pair)

        shape = (out_channels, in_channels // groups, *kernel_size)
        if min(shape) < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {min(shape)}: {list(shape)}")
        rng = default_rng(rng)
        # torch's reset_parameters, draw for draw: the weight first, then the bias
        self.weight = init.kaiming_uniform_(Parameter(np.empty(shape, dtype)), a=math.sqrt(5), rng=rng)
        if bias:
            fan_in = shape[1] * math.prod(kernel_size)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            self.bias = init.uniform_(Parameter(np.empty(out_channels, dtype)), -bound, bound, rng=rng)
        else:
            self.register_parameter("bias", None)

    def forward(self, input: np.ndarray) -> np.ndarray:
        weight, bias = self.weight.data, None if self.bias is None else self.bias.data
        if self.padding_mode == "zeros":
            pad_cache = None
            out, cache = self._forward(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        else:
            padded, pad_cache = pad_forward(input, self._reversed_padding_repeated_twice, self.padding_mode)
            out, cache = self._forward(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        self._cache = (cache, pad_cache)
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        cache, pad_cache = self._saved()
        dx, dweight, dbias = self._backward(grad_output, cache)
        if pad_cache is not None:
            dx = pad_backward(dx, pad_cache)
        # both are fresh results of the backward (products): .grad may take them without a copy
        self._accumulate(self.weight, dweight, owned=True)
        self._accumulate(self.bias, dbias, owned=True)
        return dx

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-d convolution over inputs (N, C_in, H, W) or (C_in, H, W): torch's ``Conv2d``.

    ``out[n, o] = bias[o] + sum_c weight[o, c] ⋆ x[n, c]`` over the channels of ``o``'s group (cross-correlation),
    shape (N, C_out, Ho, Wo) with ``Ho = (H + 2·padding - dilation·(kH - 1) - 1) // stride + 1``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, dilation : int or (int, int)
    padding : int, (int, int), 'valid' or 'same'
        'same' (stride 1 only) pads ``dilation·(k - 1)`` in all, the odd one at the bottom / right.
    groups : int, dividing in_channels and out_channels
    bias : bool
    padding_mode : 'zeros', 'reflect', 'replicate' or 'circular'
    dtype : numpy dtype, keyword-only (float64 by default)
    rng : numpy.random.Generator, keyword-only
    """

    _dims = 2
    _forward = staticmethod(F.conv2d_forward)
    _backward = staticmethod(F.conv2d_backward)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: Union[str, IntOrTuple] = 0, dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype, rng=rng)


class Conv1d(_ConvNd):
    """1-d convolution over inputs (N, C_in, L) or (C_in, L): torch's ``Conv1d``.

    ``out[n, o] = bias[o] + sum_c weight[o, c] ⋆ x[n, c]`` over the channels of ``o``'s group, shape
    (N, C_out, Lo) with ``Lo = (L + 2·padding - dilation·(k - 1) - 1) // stride + 1``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int,)
    padding : int, (int,), 'valid' or 'same'
    groups : int, dividing in_channels and out_channels
    bias : bool
    padding_mode : 'zeros', 'reflect', 'replicate' or 'circular'
    dtype : numpy dtype, keyword-only (float64 by default)
    rng : numpy.random.Generator, keyword-only
    """

    _dims = 1
    _forward = staticmethod(F.conv1d_forward)
    _backward = staticmethod(F.conv1d_backward)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: Union[str, IntOrTuple] = 0, dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype, rng=rng)
