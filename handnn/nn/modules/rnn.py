"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` (stacked, bidirectional, inter-layer dropout) and the cells
``RNNCell``, ``LSTMCell``, ``GRUCell``, as torch's.

Forward returns what torch returns; backward takes the gradients of forward's outputs in the same order (None is
zero) and returns the gradients of the array inputs, the initial states included even when forward was given none::

    out, h_n = rnn(x, h0)                  dx, dh0 = rnn.backward(dout, dh_n)
    out, (h_n, c_n) = lstm(x, (h0, c0))    dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n))
    h1 = cell(x, h)                        dx, dh = cell.backward(dh1)
    h1, c1 = lstm_cell(x, (h, c))          dx, (dh, dc) = lstm_cell.backward(dh1, dc1)

Parameter gradients accumulate into each ``Parameter.grad``, as in torch.
"""
from __future__ import annotations

import math
import numbers
import operator
import warnings
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ... import init
from ..._validation import check_ndarray, check_same_dtype
from ...functional import rnn as R
from ...functional.dropout import DropoutCache, dropout_backward, dropout_forward
from ..parameter import Parameter
from .linear import default_rng
from .module import Module

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_grad(name: str, grad: Optional[np.ndarray], shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """An upstream gradient of an output of ``shape``: None (zero) or an array of that shape (autograd's
    RuntimeError otherwise)."""
    if grad is None:
        return None
    check_ndarray(grad, "backward", name)
    if grad.shape != tuple(shape):
        raise RuntimeError(f"Mismatch in shape: {name} has a shape of {list(grad.shape)} and the output it is the "
                           f"gradient of has a shape of {list(shape)}")
    return grad


class _RNNState(NamedTuple):
    """The cache of a forward of :class:`RNNBase`."""

    layers: List[Any]                      # one functional cache per (layer, direction), in parameter order
    dropouts: List[Optional[DropoutCache]]  # after layer l < num_layers - 1 (None where none was applied)
    batched: bool
    batch_first: bool
    out_shape: Tuple[int, ...]
    state_shape: Tuple[int, ...]           # of h_n as returned (unbatched: without the batch dim)


class RNNBase(Module):
    """What ``RNN``, ``LSTM`` and ``GRU`` share (torch's ``RNNBase``): the constructor's checks, the parameters
    ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``…_reverse`` for the second
    direction) registered in torch's order, torch's initialisation, and the stacked, bidirectional forward and
    backward over the layer functions of :mod:`handnn.functional.rnn`.

    Layer ``l``'s input is the input (l = 0) or the previous layer's output, both directions concatenated
    (``num_directions · hidden_size`` features); in training with ``dropout > 0`` that output first goes through
    dropout, after every layer but the last, exactly as torch's: drawn from ``rng`` as
    ``empty(T, N, D·H).bernoulli_(1 - p)`` on the time-major output (so ``rng=TorchGenerator(seed)`` draws torch's
    masks when torch's module was built after ``torch.manual_seed(seed)``), or injected with :meth:`use_masks`.

    Initialisation: every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), in parameter order, from
    ``rng`` (``rng=TorchGenerator(seed)`` gives the parameters of ``torch.manual_seed(seed); torch.nn.LSTM(...)``).
    The generator is kept (``self.rng``) and draws the dropout masks afterwards, as torch's global generator does.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        # torch's checks, in its order and with its classes and messages
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          UserWarning, stacklevel=3)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
        if not isinstance(input_size, int):
            raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size > 0:
            raise NotImplementedError(f"proj_size={proj_size}: handnn does not support LSTM projections (proj_size "
                                      "> 0); only proj_size=0")
        num_layers = operator.index(num_layers)  # torch's range(num_layers): TypeError for a float
        gates = _GATES[mode]

        self._flat_weights_names: List[str] = []
        self._all_weights: List[List[str]] = []
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            for direction in range(directions):
                layer_input = input_size if layer == 0 else hidden_size * directions
                suffix = "_reverse" if direction == 1 else ""
                shapes = [("weight_ih", (gates * hidden_size, layer_input)),
                          ("weight_hh", (gates * hidden_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gates * hidden_size,)), ("bias_hh", (gates * hidden_size,))]
                names = []
                for name, shape in shapes:
                    names.append(f"{name}_l{layer}{suffix}")
                    setattr(self, names[-1], Parameter(np.empty(shape, dtype)))
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.rng = default_rng(rng)
        self._next_masks: Optional[List[np.ndarray]] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), in parameter order, from ``self.rng``."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv, rng=self.rng)

    @property
    def all_weights(self) -> List[List[Parameter]]:
        """The parameters of each (layer, direction), as torch's ``all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    # ---- dropout masks ---------------------------------------------------------------------------------------------
    def use_masks(self, masks: Sequence[np.ndarray]) -> None:
        """Apply ``masks`` (boolean keep-masks, one per layer but the last) in the next training forward instead of
        drawing them. Mask ``l`` is applied to layer ``l``'s output, and has that output's shape in the module's
        layout: (T, N, D·H), (N, T, D·H) with ``batch_first``, (T, D·H) for an unbatched input."""
        masks = list(masks)
        if len(masks) != self.num_layers - 1:
            raise ValueError(f"use_masks: expected {self.num_layers - 1} masks (one per layer but the last), but got "
                             f"{len(masks)}")
        self._next_masks = masks

    @property
    def masks(self) -> Optional[List[np.ndarray]]:
        """The keep-masks the last forward applied after each layer but the last (new boolean arrays in the
        module's layout, as :meth:`use_masks` takes them), or None if it applied no dropout (eval, ``dropout=0``,
        one layer) or before any forward."""
        state = self._cache
        if state is None or not any(c is not None and c.noise is not None for c in state.dropouts):
            return None
        return [self._to_module_layout(c.mask, state.batched, state.batch_first) for c in state.dropouts]

    # ---- layouts ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _to_time_major(a: np.ndarray, batched: bool, batch_first: bool) -> np.ndarray:
        """(T, N, F) from the module's layout (a view)."""
        if not batched:
            return a[:, None, :]
        return a.transpose(1, 0, 2) if batch_first else a

    @staticmethod
    def _to_module_layout(a: np.ndarray, batched: bool, batch_first: bool) -> np.ndarray:
        """The module's layout from (T, N, F): a new contiguous array."""
        if not batched:
            return a[:, 0, :].copy()
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a.copy()

    # ---- forward ---------------------------------------------------------------------------------------------------
    def _check_input(self, input: np.ndarray, states: Sequence[Optional[np.ndarray]], labels: Sequence[str]
                     ) -> Tuple[np.ndarray, List[Optional[np.ndarray]]]:
        """torch's ``check_forward_args`` after the rank checks: the input's dtype (ValueError) and size, the states'
        shapes (as (L·D, N, H)) and dtypes. Returns the time-major input and states."""
        weight = self._parameters["weight_ih_l0"].data
        if input.dtype != weight.dtype:
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). Convert "
                             f"input: input.astype(np.{weight.dtype}), or convert model: model.to(np.{input.dtype})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{input.shape[-1]}")
        batched = input.ndim == 3
        x = self._to_time_major(input, batched, self.batch_first)
        expected = ((2 if self.bidirectional else 1) * self.num_layers, x.shape[1], self.hidden_size)
        out_states = []
        for s, label in zip(states, labels):
            if s is not None:
                s = s if batched else s[:, None, :]
                if s.shape != expected:
                    raise RuntimeError(f"Expected {label} size {expected}, got {list(s.shape)}")
            out_states.append(s)
        if x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        for s in out_states:
            check_same_dtype(x, s, type(self).__name__)
        return x, out_states

    def _run(self, input: np.ndarray, x: np.ndarray, states: Sequence[Optional[np.ndarray]]):
        """The stacked, bidirectional forward over time-major ``x`` (T, N, I); returns (out, final states)."""
        directions = 2 if self.bidirectional else 1
        batched = input.ndim == 3
        params = self._parameters
        masks = self._next_masks if self.training else None
        drop = self.training and self.dropout > 0
        if masks is not None:  # checked before anything is computed
            (T, N), F = x.shape[:2], directions * self.hidden_size
            expected = ((N, T, F) if self.batch_first else (T, N, F)) if batched else (T, F)
            for m in masks:
                if not isinstance(m, np.ndarray) or m.dtype != np.bool_:
                    raise TypeError(f"dropout mask must be a boolean ndarray, but got {getattr(m, 'dtype', type(m))}")
                if m.shape != expected:
                    raise ValueError(f"dropout mask of shape {m.shape} does not match the layer output's shape "
                                     f"{expected}")
        caches: List[Any] = []
        dropouts: List[Optional[DropoutCache]] = []
        finals: List[List[np.ndarray]] = [[] for _ in states]
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                k = layer * directions + direction
                weights = [None if name not in params else params[name].data
                           for name in (f"{w}_l{layer}{'_reverse' if direction else ''}"
                                        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))]
                s0 = [None if s is None else s[k] for s in states]
                (out, final), cache = self._layer_forward(layer_in, s0, weights, direction == 1)
                outs.append(out)
                caches.append(cache)
                for store, value in zip(finals, final if len(states) > 1 else (final,)):
                    store.append(value)
            layer_out = outs[0] if directions == 1 else np.concatenate(outs, axis=2)
            if layer < self.num_layers - 1:
                cache = None
                if drop:
                    mask = None if masks is None else self._to_time_major(masks[layer], batched, self.batch_first)
                    layer_out, cache = dropout_forward(layer_out, self.dropout, True, rng=self.rng, mask=mask)
                dropouts.append(cache)
            layer_in = layer_out
        if self.training:
            self._next_masks = None
        out = self._to_module_layout(layer_in, batched, self.batch_first)
        finals_out = [np.stack(f) if batched else np.stack(f)[:, 0, :] for f in finals]
        self._cache = _RNNState(caches, dropouts, batched, self.batch_first, out.shape, finals_out[0].shape)
        return out, finals_out

    def _layer_forward(self, x, states, weights, reverse):
        raise NotImplementedError

    def _layer_backward(self, dout, dstates, cache):
        raise NotImplementedError

    # ---- backward --------------------------------------------------------------------------------------------------
    @R._IEEE
    def _back(self, grad_output: Optional[np.ndarray], grad_states: Sequence[Optional[np.ndarray]],
              labels: Sequence[str]) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Backward through the layers, top to bottom; returns dx and the initial states' gradients."""
        state: _RNNState = self._saved()
        batched, batch_first = state.batched, state.batch_first
        grad_output = _check_grad("grad_output", grad_output, state.out_shape)
        grad_states = [_check_grad(label, g, state.state_shape) for g, label in zip(grad_states, labels)]
        directions = 2 if self.bidirectional else 1
        H = self.hidden_size
        grad = None if grad_output is None else self._to_time_major(grad_output, batched, batch_first)
        grad_states = [None if g is None else (g if batched else g[:, None, :]) for g in grad_states]
        x = state.layers[0].x
        d_states = [np.empty((self.num_layers * directions, x.shape[1], H), x.dtype) for _ in grad_states]
        params = self._parameters
        for layer in reversed(range(self.num_layers)):
            if layer < self.num_layers - 1 and grad is not None and state.dropouts[layer] is not None:
                grad = dropout_backward(grad, state.dropouts[layer])
            dx = None
            for direction in range(directions):
                k = layer * directions + direction
                dout = None if grad is None else grad[:, :, direction * H:(direction + 1) * H]
                ds_n = [None if g is None else g[k] for g in grad_states]
                dx_d, ds_0, param_grads = self._layer_backward(dout, ds_n, state.layers[k])
                for store, value in zip(d_states, ds_0):
                    store[k] = value
                suffix = "_reverse" if direction else ""
                for name, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), param_grads):
                    if g is not None:
                        self._accumulate(params[f"{name}_l{layer}{suffix}"], g, owned=True)
                if dx is None:
                    dx = dx_d
                else:
                    dx += dx_d
            grad = dx
        dx = self._to_module_layout(grad, batched, batch_first) if batch_first or not batched else grad
        return dx, [s if batched else s[:, 0, :] for s in d_states]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


def _check_rank(name: str, input: object) -> np.ndarray:
    """torch's ``ValueError`` for an input that is not 2-d (unbatched) or 3-d (batched)."""
    check_ndarray(input, name)
    if input.ndim not in (2, 3):
        tail = " tensor" if name == "RNN" else ""
        raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D{tail} instead")
    return input


class _SingleStateRNN(RNNBase):
    """``RNN`` and ``GRU``: one state, ``forward(input, hx) -> (output, h_n)``."""

    def forward(self, input: np.ndarray, hx: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        _check_rank(name, input)
        if hx is not None:
            check_ndarray(hx, name, "hx")
            if input.ndim == 3 and hx.ndim != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.ndim}-D tensor")
            if input.ndim == 2 and hx.ndim != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.ndim}-D tensor")
        x, states = self._check_input(input, [hx], ["hidden"])
        out, (h_n,) = self._run(input, x, states)
        return out, h_n

    def backward(self, grad_output: Optional[np.ndarray], grad_h_n: Optional[np.ndarray] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """``dx, dh0 = backward(dout, dh_n)``: the gradients of the input and of the initial state (zeros' when
        forward had none), from those of ``output`` and ``h_n`` (None = zero); parameter gradients accumulate."""
        dx, (dh0,) = self._back(grad_output, [grad_h_n], ["grad_h_n"])
        return dx, dh0


class RNN(_SingleStateRNN):
    """A multi-layer Elman RNN over a sequence: torch's ``nn.RNN``.

    Each layer computes ``h_t = φ(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)`` (φ = tanh or relu), and a second,
    right-to-left pass when bidirectional, whose states are concatenated to the first's.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    nonlinearity : 'tanh' or 'relu'
    bias : bool
    batch_first : bool
        Inputs and outputs (N, T, features) instead of (T, N, features); ignored for unbatched (T, I) inputs.
    dropout : float in [0, 1]
        Dropout on each layer's output but the last, in training.
    bidirectional : bool
    dtype : numpy dtype, keyword-only (float64 by default)
    rng : numpy.random.Generator or handnn.random.TorchGenerator, keyword-only
        Draws the initial parameters, then the dropout masks.

    ``forward(input, hx=None) -> (output, h_n)``: input (T, N, I), (N, T, I) or (T, I); hx and h_n
    (num_layers·D, N, H) or (num_layers·D, H); output (T, N, D·H) (or the input's layout), D = 2 if bidirectional.
    ``backward(dout, dh_n) -> (dx, dh0)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        R.check_nonlinearity(nonlinearity)  # torch's ValueError, before any other check
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def _layer_forward(self, x, states, weights, reverse):
        return R.rnn_layer_forward(x, states[0], *weights, nonlinearity=self.nonlinearity, reverse=reverse)

    def _layer_backward(self, dout, dstates, cache):
        dx, dh0, *grads = R.rnn_layer_backward(dout, dstates[0], cache)
        return dx, (dh0,), grads


class GRU(_SingleStateRNN):
    """A multi-layer gated recurrent unit RNN over a sequence: torch's ``nn.GRU``.

    Each layer computes, for every t (gates r, z, n stacked in that order in the weights)::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr),   z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn)),   h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Parameters and ``forward`` / ``backward`` as :class:`RNN`'s (without ``nonlinearity``).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, rng=rng)

    def _layer_forward(self, x, states, weights, reverse):
        return R.gru_layer_forward(x, states[0], *weights, reverse=reverse)

    def _layer_backward(self, dout, dstates, cache):
        dx, dh0, *grads = R.gru_layer_backward(dout, dstates[0], cache)
        return dx, (dh0,), grads


class LSTM(RNNBase):
    """A multi-layer long short-term memory RNN over a sequence: torch's ``nn.LSTM``.

    Each layer computes, for every t (gates i, f, g, o stacked in that order in the weights)::

        i, f, g, o = σ, σ, tanh, σ of the four blocks of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
        c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

    Parameters as :class:`RNN`'s (without ``nonlinearity``), plus ``proj_size``: only 0 is supported
    (``NotImplementedError`` for a valid ``proj_size > 0``, torch's ``ValueError`` for an invalid one).

    ``forward(input, hx=None) -> (output, (h_n, c_n))`` with ``hx = (h0, c0)``;
    ``backward(dout, (dh_n, dc_n)) -> (dx, (dh0, dc0))`` (None, or None inside the pair, = zero).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, dtype=dtype, rng=rng)

    def forward(self, input: np.ndarray, hx: Optional[Tuple[np.ndarray, np.ndarray]] = None
                ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        _check_rank("LSTM", input)
        states: List[Optional[np.ndarray]] = [None, None]
        if hx is not None:
            states = [hx[0], hx[1]]
            for s in states:
                check_ndarray(s, "LSTM", "hx")
            rank = 3 if input.ndim == 3 else 2
            if states[0].ndim != rank or states[1].ndim != rank:
                kind = "batched 3-D" if rank == 3 else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {rank}-D but got "
                                   f"({states[0].ndim}-D, {states[1].ndim}-D) tensors")
        x, states = self._check_input(input, states, ["hidden[0]", "hidden[1]"])
        out, (h_n, c_n) = self._run(input, x, states)
        return out, (h_n, c_n)

    def backward(self, grad_output: Optional[np.ndarray],
                 grad_state: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray]]] = None
                 ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """``dx, (dh0, dc0) = backward(dout, (dh_n, dc_n))``: the gradients of the input and of the initial states
        (zeros' when forward had none), from those of ``output``, ``h_n`` and ``c_n`` (None = zero); parameter
        gradients accumulate."""
        dh_n, dc_n = (None, None) if grad_state is None else grad_state
        dx, (dh0, dc0) = self._back(grad_output, [dh_n, dc_n], ["grad_h_n", "grad_c_n"])
        return dx, (dh0, dc0)

    def _layer_forward(self, x, states, weights, reverse):
        return R.lstm_layer_forward(x, states[0], states[1], *weights, reverse=reverse)

    def _layer_backward(self, dout, dstates, cache):
        dx, dh0, dc0, *grads = R.lstm_layer_backward(dout, dstates[0], dstates[1], cache)
        return dx, (dh0, dc0), grads


# ---- cells -----------------------------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """What the cells share (torch's ``RNNCellBase``): ``weight_ih`` (gates·H, I), ``weight_hh`` (gates·H, H),
    ``bias_ih``, ``bias_hh`` (gates·H,), all ~ U(-1/sqrt(H), 1/sqrt(H)) in that order from ``rng`` (so
    ``rng=TorchGenerator(seed)`` gives torch's after ``torch.manual_seed(seed)``), and the unbatched handling: a
    1-d input (I,) and state (H,) run as a batch of one."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, *, dtype,
                 rng: Optional[np.random.Generator]) -> None:
        super().__init__()
        for shape in ((num_chunks * hidden_size, input_size), (num_chunks * hidden_size, hidden_size)):
            if min(shape) < 0:
                raise RuntimeError(f"Trying to create tensor with negative dimension {min(shape)}: {list(shape)}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(np.empty((num_chunks * hidden_size, input_size), dtype))
        self.weight_hh = Parameter(np.empty((num_chunks * hidden_size, hidden_size), dtype))
        if bias:
            self.bias_ih = Parameter(np.empty(num_chunks * hidden_size, dtype))
            self.bias_hh = Parameter(np.empty(num_chunks * hidden_size, dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.rng = default_rng(rng)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), in parameter order, from ``self.rng``."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv, rng=self.rng)

    def _weights(self) -> Tuple[np.ndarray, ...]:
        p = self._parameters
        return tuple(None if p[name] is None else p[name].data
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _batch(self, input: object, states: Sequence[Optional[np.ndarray]], labels: Sequence[str]):
        """torch's rank checks (ValueError), then the batched views of the input and states: (x, states, batched)."""
        name = type(self).__name__
        check_ndarray(input, name)
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        for s, label in zip(states, labels):
            if s is not None:
                check_ndarray(s, name, "hx")
                if s.ndim not in (1, 2):
                    raise ValueError(f"{name}: Expected {label} to be 1D or 2D, got {s.ndim}D instead")
        batched = input.ndim == 2
        if batched:
            return input, list(states), True
        return input[None], [None if s is None else s[None] for s in states], False

    def _accumulate_all(self, grads: Sequence[Optional[np.ndarray]]) -> None:
        p = self._parameters
        for name, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), grads):
            self._accumulate(p[name], g, owned=True)

    def _grad(self, name: str, grad: Optional[np.ndarray], batched: bool, shape: Tuple[int, ...]):
        grad = _check_grad(name, grad, shape)
        return grad if grad is None or batched else grad[None]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """One step of an Elman RNN: ``h' = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)``, torch's ``nn.RNNCell``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool
    nonlinearity : 'tanh' or 'relu' (as torch, another value is refused at the forward: RuntimeError)
    dtype : numpy dtype, keyword-only (float64 by default)
    rng : numpy.random.Generator or handnn.random.TorchGenerator, keyword-only

    ``forward(input, hx=None) -> h'``: input (N, I) or (I,), hx and h' (N, H) or (H,) (zeros when None).
    ``backward(dh') -> (dx, dh)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", *,
                 dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def forward(self, input: np.ndarray, hx: Optional[np.ndarray] = None) -> np.ndarray:
        x, (h,), batched = self._batch(input, [hx], ["hidden"])
        if self.nonlinearity not in R.NONLINEARITIES:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        h1, cache = R.rnn_cell_forward(x, h, *self._weights(), nonlinearity=self.nonlinearity)
        self._cache = (cache, batched, h1.shape if batched else h1.shape[1:])
        return h1 if batched else h1[0]

    def backward(self, grad_output: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """``dx, dh = backward(dh')`` (None = zero); parameter gradients accumulate."""
        cache, batched, shape = self._saved()
        dx, dh, *grads = R.rnn_cell_backward(self._grad("grad_output", grad_output, batched, shape), cache)
        self._accumulate_all(grads)
        return (dx, dh) if batched else (dx[0], dh[0])


class GRUCell(RNNCellBase):
    """One step of a GRU, torch's ``nn.GRUCell`` (gates r, z, n)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr),   z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),   h' = (1 − z) ⊙ n + z ⊙ h

    Parameters, ``forward`` and ``backward`` as :class:`RNNCell`'s (without ``nonlinearity``).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, dtype=np.float64,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, dtype=dtype, rng=rng)

    def forward(self, input: np.ndarray, hx: Optional[np.ndarray] = None) -> np.ndarray:
        x, (h,), batched = self._batch(input, [hx], ["hidden"])
        h1, cache = R.gru_cell_forward(x, h, *self._weights())
        self._cache = (cache, batched, h1.shape if batched else h1.shape[1:])
        return h1 if batched else h1[0]

    def backward(self, grad_output: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """``dx, dh = backward(dh')`` (None = zero); parameter gradients accumulate."""
        cache, batched, shape = self._saved()
        dx, dh, *grads = R.gru_cell_backward(self._grad("grad_output", grad_output, batched, shape), cache)
        self._accumulate_all(grads)
        return (dx, dh) if batched else (dx[0], dh[0])


class LSTMCell(RNNCellBase):
    """One step of an LSTM, torch's ``nn.LSTMCell`` (gates i, f, g, o)::

        i, f, g, o = σ, σ, tanh, σ of the four blocks of (W_ih x + b_ih + W_hh h + b_hh)
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

    Parameters as :class:`GRUCell`'s. ``forward(input, hx=None) -> (h', c')`` with ``hx = (h, c)`` (zeros when
    None); ``backward(dh', dc') -> (dx, (dh, dc))`` (None = zero).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, dtype=np.float64,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, dtype=dtype, rng=rng)

    def forward(self, input: np.ndarray, hx: Optional[Tuple[np.ndarray, np.ndarray]] = None
                ) -> Tuple[np.ndarray, np.ndarray]:
        states: Sequence[Optional[np.ndarray]] = [None, None]
        if hx is not None:
            name = type(self).__name__
            for idx, value in enumerate(hx):
                check_ndarray(value, name, f"hx[{idx}]")
                if value.ndim not in (1, 2):
                    raise ValueError(f"{name}: Expected hx[{idx}] to be 1D or 2D, got {value.ndim}D instead")
            if isinstance(input, np.ndarray) and input.ndim == 2 and len(hx) != 2:
                raise RuntimeError(f"lstm_cell expects two hidden states, but got {len(hx)}")
            states = [hx[0], hx[1]]  # unbatched, torch indexes them: IndexError for a single one
        x, (h, c), batched = self._batch(input, states, ["hx[0]", "hx[1]"])
        (h1, c1), cache = R.lstm_cell_forward(x, h, c, *self._weights())
        self._cache = (cache, batched, h1.shape if batched else h1.shape[1:])
        return (h1, c1) if batched else (h1[0], c1[0])

    def backward(self, grad_h: Optional[np.ndarray], grad_c: Optional[np.ndarray] = None
                 ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """``dx, (dh, dc) = backward(dh', dc')`` (None = zero); parameter gradients accumulate."""
        cache, batched, shape = self._saved()
        dx, dh, dc, *grads = R.lstm_cell_backward(self._grad("grad_h", grad_h, batched, shape),
                                                  self._grad("grad_c", grad_c, batched, shape), cache)
        self._accumulate_all(grads)
        return (dx, (dh, dc)) if batched else (dx[0], (dh[0], dc[0]))
