"""``BatchNorm1d``, ``BatchNorm2d``, ``LayerNorm`` and ``GroupNorm``."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ... import functional as F
from ..._validation import check_array
from ..parameter import Parameter
from .module import Module


class _BatchNorm(Module):
    """Shared logic of torch's ``_BatchNorm``: parameters, buffers, and the momentum rule.

    Parameters
    ----------
    num_features : int
        C, the size of dim 1.
    eps : float
        Added to the variance inside the square root.
    momentum : float or None
        ``running <- (1 - momentum) * running + momentum * batch_stat``; None gives the cumulative
        average (momentum ``1 / num_batches_tracked``). Note: a course's "momentum 0.9" is torch's 0.1.
    affine : bool
        Learnable ``weight`` (ones) and ``bias`` (zeros).
    track_running_stats : bool
        Keep ``running_mean`` (zeros), ``running_var`` (ones, the *unbiased* batch variance is tracked)
        and ``num_batches_tracked`` (int64); without them batch statistics are used in eval too.
    dtype : numpy dtype, keyword-only
    """

    _expected_ndim: Sequence[int] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype=np.float64) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def _check_input_dim(self, input: np.ndarray) -> None:
        raise NotImplementedError

    def forward(self, input: np.ndarray) -> np.ndarray:
        if not isinstance(input, np.ndarray):
            check_array(input, type(self).__name__.lower())  # TypeError for anything but an ndarray
        # the rank first, as torch: the dtype is checked by the functional after the shape checks
        self._check_input_dim(input)
        updating = self.training and self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if updating and self.momentum is None:
            # cumulative moving average over the batches seen, this one included
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        use_batch_stats = self.training or self.running_mean is None
        out, self._cache = F.batch_norm_forward(
            input,
            self.running_mean if updating or not self.training else None,
            self.running_var if updating or not self.training else None,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            use_batch_stats, momentum, self.eps,
        )
        if updating:  # only once the forward succeeded: bad input changes nothing
            self.num_batches_tracked += 1
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.batch_norm_backward(grad_output, self._saved())
        self._accumulate(self.weight, dweight)
        self._accumulate(self.bias, dbias)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` inputs, statistics per channel C."""

    def _check_input_dim(self, input: np.ndarray) -> None:
        if input.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.ndim}D input)")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` inputs, statistics per channel C."""

    def _check_input_dim(self, input: np.ndarray) -> None:
        if input.ndim != 4:
            raise ValueError(f"expected 4D input (got {input.ndim}D input)")


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims of each sample.

    Parameters
    ----------
    normalized_shape : int or sequence of int
    eps : float
    elementwise_affine : bool
        Learnable ``weight`` (ones) of shape ``normalized_shape`` ...
    bias : bool
        ... and ``bias`` (zeros), when also ``elementwise_affine``.
    dtype : numpy dtype, keyword-only
    """

    def __init__(self, normalized_shape: Union[int, Sequence[int]], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, *, dtype=np.float64) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, self._cache = F.layer_norm_forward(
            input, self.normalized_shape,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, self.eps,
        )
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.layer_norm_backward(grad_output, self._saved())
        self._accumulate(self.weight, dweight)
        self._accumulate(self.bias, dbias)
        return dx

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Normalise ``(N, C, *)`` inputs per sample over groups of ``C / num_groups`` channels.

    Parameters
    ----------
    num_groups : int, dividing num_channels
    num_channels : int
    eps : float
    affine : bool
        Learnable per-channel ``weight`` (ones) and ``bias`` (zeros).
    dtype : numpy dtype, keyword-only
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 dtype=np.float64) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = Parameter(np.ones(num_channels, dtype=dtype))
            self.bias = Parameter(np.zeros(num_channels, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: np.ndarray) -> np.ndarray:
        out, self._cache = F.group_norm_forward(
            input, self.num_groups,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, self.eps,
        )
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.group_norm_backward(grad_output, self._saved())
        self._accumulate(self.weight, dweight)
        self._accumulate(self.bias, dbias)
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
