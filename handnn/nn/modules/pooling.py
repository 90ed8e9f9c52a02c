"""``MaxPool2d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d``: thin modules over :mod:`handnn.functional.pooling`.

As in torch, the constructors store their arguments as given (``stride=None`` becomes ``kernel_size``) and check
nothing: a bad argument raises torch's exception at the first forward.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ... import functional as F
from ...functional.pooling import IntPair
from .module import Module


class MaxPool2d(Module):
    """The maximum of each ``kernel_size`` window over ``(N, C, H, W)`` or ``(C, H, W)`` inputs (padding is
    ``-inf``); see :func:`handnn.functional.max_pool2d_forward` for the windows, ties and NaN.

    ``forward`` returns ``out``, or ``(out, indices)`` with ``return_indices=True`` (torch's int64 indices, flat
    in each ``H x W`` plane); ``backward(grad_output)`` returns ``dx`` either way.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional (default: kernel_size)
    padding, dilation : int or (int, int)
    return_indices, ceil_mode : bool
    """

    def __init__(self, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0,
                 dilation: IntPair = 1, return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: np.ndarray) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        result, cache = F.max_pool2d_forward(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                             ceil_mode=self.ceil_mode, return_indices=self.return_indices)
        self._cache = cache
        return result

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.max_pool2d_backward(grad_output, self._saved())

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean of each ``kernel_size`` window over ``(N, C, H, W)`` or ``(C, H, W)`` inputs (padding is 0); see
    :func:`handnn.functional.avg_pool2d_forward` for torch's divisor rules.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional (default: kernel_size)
    padding : int or (int, int)
    ceil_mode, count_include_pad : bool
    divisor_override : int, optional
    """

    def __init__(self, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = F.avg_pool2d_forward(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                          self.count_include_pad, self.divisor_override)
        self._cache = cache
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.avg_pool2d_backward(grad_output, self._saved())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """The mean over torch's adaptive windows, giving an output of ``output_size`` whatever the input's size; see
    :func:`handnn.functional.adaptive_avg_pool2d_forward`.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        ``(Ho, Wo)``; an int ``n`` means ``(n, n)``, None keeps the input's size along that dimension.
    """

    def __init__(self, output_size: Union[int, Sequence[Optional[int]]]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, cache = F.adaptive_avg_pool2d_forward(input, self.output_size)
        self._cache = cache
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.adaptive_avg_pool2d_backward(grad_output, self._saved())

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
