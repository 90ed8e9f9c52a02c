"""Build a torch twin of a handnn module (and back), holding copies of the same parameters and buffers.

``to_torch(module)`` gives a ``torch.nn.Module`` with identical parameters, buffers, training mode and
dtype; nested ``Sequential``s are rebuilt. A handnn ``Dropout`` becomes :class:`MaskedDropout`, a torch module
that applies the mask the handnn layer drew in its last forward, so both sides drop the same elements (a
``Dropout2d`` likewise becomes :class:`MaskedDropout2d`).
``from_torch(torch_module)`` goes the other way for every supported layer.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, Optional

import numpy as np
import torch

from handnn import nn

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
NUMPY_DTYPES = {v: k for k, v in TORCH_DTYPES.items()}


def module_dtype(module: nn.Module) -> np.dtype:
    """The floating dtype of a module's own parameters/buffers, else of its children's (a container of parameters
    such as TransformerEncoderLayer); float64 for parameter-free modules."""
    for recurse in (False, True):
        for _, array in (*module.named_parameters(recurse=recurse), *module.named_buffers(recurse=recurse)):
            data = array.data if isinstance(array, nn.Parameter) else array
            if data.dtype.kind == "f":
                return data.dtype
    return np.dtype(np.float64)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch tensor holding a copy of ``array`` (torch never sees handnn's memory)."""
    return torch.from_numpy(np.array(array, copy=True))


def to_numpy(tensor: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if tensor is None else tensor.detach().cpu().numpy().copy()


class MaskedDropout(torch.nn.Module):
    """Torch's dropout arithmetic driven by a handnn ``Dropout``'s keep-mask.

    In training with ``0 < p < 1`` it computes ``x * noise`` with ``noise = mask.to(dtype).div_(1 - p)``,
    exactly as ``torch.nn.functional.dropout`` does with its own Bernoulli draw; ``p = 1`` gives ``x * 0``
    and eval or ``p = 0`` returns ``x``.
    """

    def __init__(self, source: nn.Dropout) -> None:
        super().__init__()
        self.source = source
        self.p = source.p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * torch.zeros((), dtype=x.dtype)
        if self.source.mask is None or tuple(self.source.mask.shape) != tuple(x.shape):
            raise RuntimeError("MaskedDropout: run the handnn Dropout's forward on the same input shape first")
        noise = torch.from_numpy(self.source.mask).to(x.dtype).div_(1 - self.p)
        return x * noise


class MaskedDropout2d(torch.nn.Module):
    """Torch's channel dropout driven by a handnn ``Dropout2d``'s keep-mask (one value per sample and channel).

    In training with ``0 < p < 1``, on a non-empty input of at least 2 dims, it computes ``x * noise`` with
    ``noise = mask.to(dtype).div_(1 - p)`` of shape ``(N, C, 1, ...)``, as ``torch.nn.functional.dropout2d`` does with
    its own Bernoulli draw (without repeating its rank warnings). Everywhere else — eval, ``p`` 0 or 1, an empty
    input, too few dims, or no mask of this input's ``(N, C, 1, ...)`` shape in the handnn layer (its forward raised)
    — it is ``F.dropout2d`` itself, which then draws nothing or raises torch's own error.
    """

    def __init__(self, source: nn.Dropout2d) -> None:
        super().__init__()
        self.source = source
        self.p = source.p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.source.mask
        noise_shape = tuple(x.shape[:2]) + (1,) * (x.dim() - 2)
        if (not self.training or self.p in (0, 1) or x.numel() == 0 or x.dim() < 2 or mask is None
                or tuple(mask.shape) != noise_shape):
            return torch.nn.functional.dropout2d(x, self.p, self.training)
        noise = torch.from_numpy(mask).to(x.dtype).div_(1 - self.p)
        return x * noise


#: handnn loss classes with a torch twin of the same name, and the constructor arguments each one takes
LOSSES = {"MSELoss": (), "L1Loss": (), "SmoothL1Loss": ("beta",), "HuberLoss": ("delta",), "BCELoss": ("weight",),
          "BCEWithLogitsLoss": ("weight", "pos_weight"), "NLLLoss": ("weight", "ignore_index"),
          "CrossEntropyLoss": ("weight", "ignore_index", "label_smoothing")}


def _loss_twin(loss: nn.Module) -> torch.nn.Module:
    """torch's loss of the same class with the same reduction and options (weights copied as tensors)."""
    kwargs = {"reduction": loss.reduction}
    for name in LOSSES[type(loss).__name__]:
        value = getattr(loss, name)
        kwargs[name] = to_tensor(value) if isinstance(value, np.ndarray) else value
    return getattr(torch.nn, type(loss).__name__)(**kwargs)


#: torch twins of handnn modules defined outside ``handnn.nn`` (an experiment's model): class -> a builder taking
#: the handnn module. The builder's twin holds twins of the module's children under the same names, so their
#: parameters are copied by :func:`to_torch` and the two ``named_parameters`` line up.
CUSTOM_TWINS: Dict[type, Callable[[nn.Module], torch.nn.Module]] = {}


def _with_state(twin: torch.nn.Module, module: nn.Module) -> torch.nn.Module:
    """``twin`` holding ``module``'s whole state_dict (its children's too: for the modules built in one piece), in
    its mode (its children's included)."""
    twin.load_state_dict({k: to_tensor(v) for k, v in module.state_dict().items()})
    return twin.train(module.training)


def _activation_name(activation: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """TransformerEncoderLayer's activation as torch's constructor takes it: 'relu', 'gelu', or torch's module."""
    if type(activation) is nn.ReLU:
        return "relu"
    if type(activation) is nn.GELU and activation.approximate == "none":
        return "gelu"
    return _build(activation, {})


def _build(module: nn.Module, memo: Dict[int, torch.nn.Module]) -> torch.nn.Module:
    dtype = TORCH_DTYPES[module_dtype(module)]
    kind = type(module)
    if kind in CUSTOM_TWINS:
        return CUSTOM_TWINS[kind](module)
    if kind is nn.Sequential:
        # every registered name, not named_children(): that de-duplicates, and Sequential(a, b, a) has 3 entries
        return torch.nn.Sequential(OrderedDict((name, to_torch(child, memo=memo))
                                               for name, child in module._modules.items()))
    if kind is nn.Linear:
        return torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype)
    if kind is nn.Embedding:
        return torch.nn.Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx,
                                  dtype=dtype)
    if kind in (nn.RNN, nn.LSTM, nn.GRU):
        extra = {"nonlinearity": module.nonlinearity} if kind is nn.RNN else {}
        return _with_state(getattr(torch.nn, kind.__name__)(
            module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
            batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional,
            dtype=dtype, **extra), module)
    if kind in (nn.RNNCell, nn.LSTMCell, nn.GRUCell):
        extra = {"nonlinearity": module.nonlinearity} if kind is nn.RNNCell else {}
        return _with_state(getattr(torch.nn, kind.__name__)(module.input_size, module.hidden_size, bias=module.bias,
                                                            dtype=dtype, **extra), module)
    if kind is nn.MultiheadAttention:
        return _with_state(torch.nn.MultiheadAttention(
            module.embed_dim, module.num_heads, dropout=module.dropout, bias=module.in_proj_bias is not None,
            add_bias_kv=module.bias_k is not None, add_zero_attn=module.add_zero_attn, kdim=module.kdim,
            vdim=module.vdim, batch_first=module.batch_first, dtype=dtype), module)
    if kind is nn.TransformerEncoderLayer:
        attn = module.self_attn
        twin = _with_state(torch.nn.TransformerEncoderLayer(
            attn.embed_dim, attn.num_heads, dim_feedforward=module.linear1.out_features, dropout=module.dropout.p,
            activation=_activation_name(module.activation), layer_norm_eps=module.norm1.eps,
            batch_first=attn.batch_first, norm_first=module.norm_first, bias=module.linear1.bias is not None,
            dtype=dtype), module)
        twin.self_attn.dropout = attn.dropout  # torch draws the attention's dropout itself: equal at 0 or in eval
        for name in ("dropout", "dropout1", "dropout2"):  # the masks handnn's Dropout children drew
            setattr(twin, name, MaskedDropout(getattr(module, name)).train(getattr(module, name).training))
        return twin
    if kind in (nn.Conv1d, nn.Conv2d):
        return getattr(torch.nn, kind.__name__)(
            module.in_channels, module.out_channels, module.kernel_size, stride=module.stride, padding=module.padding,
            dilation=module.dilation, groups=module.groups, bias=module.bias is not None,
            padding_mode=module.padding_mode, dtype=dtype)
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        return getattr(torch.nn, kind.__name__)(
            module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine,
            track_running_stats=module.track_running_stats, dtype=dtype)
    if kind is nn.LayerNorm:
        return torch.nn.LayerNorm(module.normalized_shape, eps=module.eps,
                                  elementwise_affine=module.elementwise_affine,
                                  bias=module.bias is not None, dtype=dtype)
    if kind is nn.GroupNorm:
        return torch.nn.GroupNorm(module.num_groups, module.num_channels, eps=module.eps, affine=module.affine,
                                  dtype=dtype)
    if kind is nn.Dropout:
        return MaskedDropout(module)
    if kind is nn.Dropout2d:
        return MaskedDropout2d(module)
    if kind.__name__ in LOSSES and kind is getattr(nn, kind.__name__):
        return _loss_twin(module)
    simple: Dict[type, Callable[[], torch.nn.Module]] = {
        nn.Identity: lambda: torch.nn.Identity(),
        nn.Flatten: lambda: torch.nn.Flatten(module.start_dim, module.end_dim),
        nn.ReLU: lambda: torch.nn.ReLU(),
        nn.LeakyReLU: lambda: torch.nn.LeakyReLU(module.negative_slope),
        nn.Sigmoid: lambda: torch.nn.Sigmoid(),
        nn.Tanh: lambda: torch.nn.Tanh(),
        nn.GELU: lambda: torch.nn.GELU(approximate=module.approximate),
        nn.Softmax: lambda: torch.nn.Softmax(dim=module.dim),
        nn.LogSoftmax: lambda: torch.nn.LogSoftmax(dim=module.dim),
        nn.MaxPool2d: lambda: torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                                                 module.return_indices, module.ceil_mode),
        nn.AvgPool2d: lambda: torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                                                 module.count_include_pad, module.divisor_override),
        nn.AdaptiveAvgPool2d: lambda: torch.nn.AdaptiveAvgPool2d(module.output_size),
    }
    if kind in simple:
        return simple[kind]()
    raise TypeError(f"to_torch: no torch twin for handnn module {kind.__name__}")


def to_torch(module: nn.Module, *, memo: Optional[Dict[int, torch.nn.Module]] = None) -> torch.nn.Module:
    """A torch module computing what ``module`` computes: same parameters, buffers, mode and dtype.

    ``memo`` (``id(handnn module) -> twin``, filled while building) makes a module registered under
    several names map to ONE shared twin, as in the original, so the twin's ``state_dict`` has the same keys.
    """
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    twin = _build(module, memo)
    memo[id(module)] = twin
    twin.training = module.training  # per module: children were set when they were built
    own_params = dict(module.named_parameters(recurse=False))
    own_buffers = dict(module.named_buffers(recurse=False))
    with torch.no_grad():
        for name, param in own_params.items():
            getattr(twin, name).copy_(to_tensor(param.data))
        for name, buf in own_buffers.items():
            getattr(twin, name).copy_(to_tensor(buf))
    return twin


def _with_torch_state(module: nn.Module, twin: torch.nn.Module) -> nn.Module:
    """``module`` holding ``twin``'s whole state_dict (its children's too)."""
    module.load_state_dict({k: to_numpy(v) for k, v in twin.state_dict().items()})
    return module


def _from_build(twin: torch.nn.Module, rng: Optional[np.random.Generator],
                memo: Dict[int, nn.Module]) -> nn.Module:
    kind = type(twin)
    first = next((t for recurse in (False, True)  # own tensors first, else the children's (TransformerEncoderLayer)
                  for t in (*twin.parameters(recurse=recurse), *twin.buffers(recurse=recurse))
                  if t.is_floating_point()), None)
    dtype = NUMPY_DTYPES.get(first.dtype, np.float64) if first is not None else np.float64
    T = torch.nn
    if kind is T.Sequential:
        # every registered name (named_children() de-duplicates a module registered twice)
        return nn.Sequential(OrderedDict((name, from_torch(child, rng=rng, memo=memo))
                                         for name, child in twin._modules.items()))
    if kind is T.Linear:
        return nn.Linear(twin.in_features, twin.out_features, bias=twin.bias is not None, dtype=dtype, rng=rng)
    if kind is T.Embedding:
        return nn.Embedding(twin.num_embeddings, twin.embedding_dim, padding_idx=twin.padding_idx, dtype=dtype,
                            rng=rng)
    if kind in (T.RNN, T.LSTM, T.GRU):
        if getattr(twin, "proj_size", 0):
            raise TypeError("from_torch: handnn has no counterpart of an LSTM with proj_size")
        extra = {"nonlinearity": twin.nonlinearity} if kind is T.RNN else {}
        return getattr(nn, kind.__name__)(twin.input_size, twin.hidden_size, twin.num_layers, bias=twin.bias,
                                          batch_first=twin.batch_first, dropout=twin.dropout,
                                          bidirectional=twin.bidirectional, dtype=dtype, rng=rng, **extra)
    if kind in (T.RNNCell, T.LSTMCell, T.GRUCell):
        extra = {"nonlinearity": twin.nonlinearity} if kind is T.RNNCell else {}
        return getattr(nn, kind.__name__)(twin.input_size, twin.hidden_size, bias=twin.bias, dtype=dtype, rng=rng,
                                          **extra)
    if kind is T.MultiheadAttention:
        return _with_torch_state(nn.MultiheadAttention(
            twin.embed_dim, twin.num_heads, twin.dropout, bias=twin.in_proj_bias is not None,
            add_bias_kv=twin.bias_k is not None, add_zero_attn=twin.add_zero_attn, kdim=twin.kdim, vdim=twin.vdim,
            batch_first=twin.batch_first, dtype=dtype, rng=rng), twin)
    if kind is T.TransformerEncoderLayer:
        activation = {torch.nn.functional.relu: "relu", torch.nn.functional.gelu: "gelu"}.get(twin.activation)
        if activation is None:
            activation = from_torch(twin.activation) if isinstance(twin.activation, torch.nn.Module) else None
        if activation is None:
            raise TypeError(f"from_torch: handnn has no counterpart of the activation {twin.activation!r}")
        attn = twin.self_attn
        return _with_torch_state(nn.TransformerEncoderLayer(
            attn.embed_dim, attn.num_heads, twin.linear1.out_features, twin.dropout.p, activation, twin.norm1.eps,
            attn.batch_first, twin.norm_first, twin.linear1.bias is not None, dtype=dtype, rng=rng), twin)
    if kind in (T.Conv1d, T.Conv2d):
        return getattr(nn, kind.__name__)(twin.in_channels, twin.out_channels, twin.kernel_size, twin.stride,
                                          twin.padding, twin.dilation, twin.groups, twin.bias is not None,
                                          twin.padding_mode, dtype=dtype, rng=rng)
    if kind in (T.BatchNorm1d, T.BatchNorm2d):
        return getattr(nn, kind.__name__)(twin.num_features, twin.eps, twin.momentum, twin.affine,
                                          twin.track_running_stats, dtype=dtype)
    if kind is T.LayerNorm:
        return nn.LayerNorm(twin.normalized_shape, twin.eps, twin.elementwise_affine, twin.bias is not None,
                            dtype=dtype)
    if kind is T.GroupNorm:
        return nn.GroupNorm(twin.num_groups, twin.num_channels, twin.eps, twin.affine, dtype=dtype)
    if kind in (T.Dropout, MaskedDropout):
        return nn.Dropout(twin.p, rng=rng)
    if kind in (T.Dropout2d, MaskedDropout2d):
        return nn.Dropout2d(twin.p, rng=rng)
    simple = {
        T.Identity: lambda: nn.Identity(),
        T.Flatten: lambda: nn.Flatten(twin.start_dim, twin.end_dim),
        T.ReLU: lambda: nn.ReLU(),
        T.LeakyReLU: lambda: nn.LeakyReLU(twin.negative_slope),
        T.Sigmoid: lambda: nn.Sigmoid(),
        T.Tanh: lambda: nn.Tanh(),
        T.GELU: lambda: nn.GELU(twin.approximate),
        T.Softmax: lambda: nn.Softmax(twin.dim),
        T.LogSoftmax: lambda: nn.LogSoftmax(twin.dim),
        T.MaxPool2d: lambda: nn.MaxPool2d(twin.kernel_size, twin.stride, twin.padding, twin.dilation,
                                          twin.return_indices, twin.ceil_mode),
        T.AvgPool2d: lambda: nn.AvgPool2d(twin.kernel_size, twin.stride, twin.padding, twin.ceil_mode,
                                          twin.count_include_pad, twin.divisor_override),
        T.AdaptiveAvgPool2d: lambda: nn.AdaptiveAvgPool2d(twin.output_size),
    }
    if kind in simple:
        return simple[kind]()
    raise TypeError(f"from_torch: handnn has no counterpart of torch module {kind.__name__}")


def from_torch(twin: torch.nn.Module, *, rng: Optional[np.random.Generator] = None,
               memo: Optional[Dict[int, nn.Module]] = None) -> nn.Module:
    """A handnn module computing what ``twin`` computes, with copies of its parameters and buffers.

    ``memo`` (``id(torch module) -> handnn module``) keeps a torch module registered under several names
    shared in the result, as :func:`to_torch` does.
    """
    memo = {} if memo is None else memo
    if id(twin) in memo:
        return memo[id(twin)]
    module = _from_build(twin, rng, memo)
    memo[id(twin)] = module
    module.training = twin.training  # per module: children were set when they were built
    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
    if own:
        torch_state = twin.state_dict()
        module.load_state_dict({name: to_numpy(torch_state[name]) for name, _ in own}, strict=False)
    return module
