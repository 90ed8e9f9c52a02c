"""The edge-input sweep: every module and loss handnn exports, against its torch twin, over a catalogue of edge inputs.

Nothing here names a module except where a module needs more than the catalogue can guess: the modules are the
classes ``handnn.nn`` exports, built from their torch-named constructor arguments (:data:`ARGUMENTS`), so a new
module or loss is swept without a line added here. Each one is run on the first of :data:`SHAPES` that torch takes
with plain random data (its *natural* shape), and a loss on each target family torch accepts for it (float targets
in [0, 1) shaped like the input, class-index targets); every edge case is then derived from that shape.

A case passes when handnn raises the exception class torch raises, or computes what torch computes: the output, dL/dx
and every parameter gradient and buffer, with torch's dtype and exactly torch's NaN/inf pattern, within the
tolerance table elsewhere — and leaves its inputs and the upstream gradient unchanged. Where handnn deliberately
differs, the difference is one of :data:`DEVIATIONS`, with its reason, and handnn must behave as the deviation says.
"""
from __future__ import annotations

import inspect
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import torch

from handnn import nn
from handnn.nn.modules.loss import _Loss

from .calls import backward_first, call, first
from .cases import randomize_affine
from .tolerances import Comparison, compare
from .twin import TORCH_DTYPES, MaskedDropout, to_torch

#: exported classes that are not swept themselves: containers of other modules, each of which is swept
NOT_SWEPT = {"Module": "the abstract base class", "Sequential": "a container: each module it holds is swept",
             "RNNBase": "the base class of RNN, LSTM and GRU (each swept)",
             "RNNCellBase": "the base class of RNNCell, LSTMCell and GRUCell (each swept)"}

#: values for torch-named required constructor arguments: C = 3 features/channels everywhere
C = 3
ARGUMENTS: Dict[str, Any] = {
    "in_features": C, "out_features": 4, "num_features": C, "normalized_shape": C, "num_groups": 1,
    "num_channels": C, "in_channels": C, "out_channels": 4, "kernel_size": 2, "output_size": 2,
    "num_embeddings": 5, "embedding_dim": 4, "input_size": C, "hidden_size": 4, "embed_dim": C, "num_heads": 1,
    "d_model": C, "nhead": 1,
}

#: constructor arguments the sweep gives every variant of a module: dropout off where torch draws its masks inside
#: a fused kernel that cannot be given handnn's (attention dropout; its masks are tested in the modules' own files)
SWEEP_DEFAULTS: Dict[str, Dict[str, Any]] = {"TransformerEncoderLayer": {"dropout": 0.0}}

#: the shapes a module is tried on, in order: its natural shape is the first torch takes (N, C, * all different)
SHAPES = [(4, C), (2, C, 5), (2, C, 4, 5)]

#: constructor variants beyond the default one (kwargs given a dtype), for options that change the arithmetic or
#: are invalid; every other module is swept with its defaults
VARIANTS: Dict[str, List[Callable[[np.dtype], Dict[str, Any]]]] = {
    "LeakyReLU": [lambda d: {"negative_slope": 0.2}, lambda d: {"negative_slope": -1.5}],
    "GELU": [lambda d: {"approximate": "tanh"}],
    "Softmax": [lambda d: {"dim": 1}, lambda d: {"dim": 0}, lambda d: {"dim": -1}],
    "LogSoftmax": [lambda d: {"dim": 1}, lambda d: {"dim": 0}],
    "BatchNorm1d": [lambda d: {"momentum": None}, lambda d: {"affine": False, "track_running_stats": False}],
    "BatchNorm2d": [lambda d: {"track_running_stats": False}],
    "GroupNorm": [lambda d: {"num_groups": C}, lambda d: {"affine": False}],
    "LayerNorm": [lambda d: {"elementwise_affine": False}, lambda d: {"bias": False}],
    "Linear": [lambda d: {"bias": False}],
    "Dropout": [lambda d: {"p": 0.0}, lambda d: {"p": 1.0}],
    "Dropout2d": [lambda d: {"p": 0.0}, lambda d: {"p": 1.0}],
    "Embedding": [lambda d: {"padding_idx": 1}, lambda d: {"padding_idx": -2}],
    "RNN": [lambda d: {"nonlinearity": "relu", "num_layers": 2}, lambda d: {"bidirectional": True, "bias": False},
            lambda d: {"batch_first": True}, lambda d: {"nonlinearity": "sigmoid"}],
    "LSTM": [lambda d: {"num_layers": 2, "bidirectional": True}, lambda d: {"batch_first": True, "bias": False},
             lambda d: {"proj_size": 2}],
    "GRU": [lambda d: {"num_layers": 2, "bidirectional": True}, lambda d: {"batch_first": True, "bias": False}],
    "RNNCell": [lambda d: {"nonlinearity": "relu"}, lambda d: {"bias": False}],
    "LSTMCell": [lambda d: {"bias": False}],
    "GRUCell": [lambda d: {"bias": False}],
    "MultiheadAttention": [lambda d: {"num_heads": C}, lambda d: {"bias": False},
                           lambda d: {"add_bias_kv": True, "add_zero_attn": True}, lambda d: {"batch_first": True},
                           lambda d: {"num_heads": 2}],
    "TransformerEncoderLayer": [lambda d: {"norm_first": True}, lambda d: {"activation": "gelu", "batch_first": True},
                                lambda d: {"nhead": C, "bias": False, "dim_feedforward": 5}],
    "Conv1d": [lambda d: {"stride": 2, "padding": 1, "bias": False}, lambda d: {"padding": "same", "dilation": 2},
               lambda d: {"out_channels": C, "groups": C}, lambda d: {"padding": 1, "padding_mode": "circular"}],
    "Conv2d": [lambda d: {"stride": (2, 1), "padding": (1, 0)}, lambda d: {"padding": "same", "dilation": 2},
               lambda d: {"out_channels": C, "groups": C, "bias": False},
               lambda d: {"kernel_size": (1, 3), "padding": 1, "padding_mode": "reflect"},
               lambda d: {"padding": 1, "padding_mode": "replicate"}],
    "MaxPool2d": [lambda d: {"stride": 1, "padding": 1}, lambda d: {"ceil_mode": True, "stride": 2},
                  lambda d: {"kernel_size": 3, "dilation": 2, "stride": 1, "padding": 1}],
    "AvgPool2d": [lambda d: {"stride": 1, "padding": 1, "count_include_pad": False},
                  lambda d: {"ceil_mode": True, "padding": 1}, lambda d: {"divisor_override": 3}],
    "AdaptiveAvgPool2d": [lambda d: {"output_size": 1}, lambda d: {"output_size": (None, 3)}],
    "Flatten": [lambda d: {"start_dim": 0}],
    "SmoothL1Loss": [lambda d: {"beta": 0.0}, lambda d: {"beta": 0.5}, lambda d: {"beta": float("nan")},
                     lambda d: {"beta": -1.0}],
    "HuberLoss": [lambda d: {"delta": 0.5}, lambda d: {"delta": float("nan")}, lambda d: {"delta": 0.0}],
    "BCELoss": [lambda d: {"weight": np.array([0.5, 2.0, 1.5], d)}],
    "BCEWithLogitsLoss": [lambda d: {"pos_weight": np.array([0.5, 2.0, 3.0], d)},
                          lambda d: {"weight": np.array([0.5, 2.0, 1.5], d)}],
    "NLLLoss": [lambda d: {"weight": np.array([0.5, 2.0, 1.5], d)}, lambda d: {"ignore_index": 1}],
    "CrossEntropyLoss": [lambda d: {"label_smoothing": 0.1}, lambda d: {"weight": np.array([0.5, 2.0, 1.5], d)},
                         lambda d: {"ignore_index": 1}, lambda d: {"label_smoothing": float("nan")},
                         lambda d: {"label_smoothing": 0.1, "ignore_index": 1}],
}

REDUCTIONS = ("mean", "sum", "none")


# ---- the catalogue ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    """One case's inputs: the module's input, a loss's target (None for modules), and the upstream gradient's
    edge form ('random' or 'nonfinite')."""

    x: Any
    target: Any = None
    upstream: str = "random"


#: every case's name -> (what it probes, applies to losses' targets as well)
EDGE_CLASSES = {
    "shape": ["zero-d", "one-d", "empty", "empty-features", "empty-length", "batch-one", "wrong-features",
              "extra-dim"],
    "nonfinite": ["nan", "inf", "-inf", "inf-mix", "nan-row", "upstream-nonfinite"],
    "kinks": ["zeros", "ties", "negzero"],
    "magnitude": ["large", "overflow", "subnormal"],
    "layout": ["transposed", "reversed", "strided", "readonly", "list"],
    "dtype": ["int64", "int32", "uint8", "bool", "float16", "complex128"],
    "target": ["target-out-of-range", "target-broadcast", "target-mismatch", "target-list", "target-readonly"],
    "float-target": ["target-nan", "target-inf", "target-ties", "target-other-float", "target-int"],
    "class-target": ["target-int32", "target-float-classes", "target-negative-class", "target-ignored"],
}
EDGES = [name for names in EDGE_CLASSES.values() for name in names]
EDGE_CLASS = {name: kind for kind, names in EDGE_CLASSES.items() for name in names}
#: the edges swept in eval mode too (modules whose forward depends on the mode)
EVAL_EDGES = ["zero-d", "one-d", "empty", "batch-one", "nan", "inf", "inf-mix", "zeros", "large", "float16", "int64"]


#: the edges that give an index-taking module (Embedding) float indices: NaN, inf, huge, subnormal and -0.0 values
INDEX_AS_FLOAT = ("nan", "inf", "-inf", "inf-mix", "nan-row", "negzero", "large", "overflow", "subnormal")


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _huge(dtype: np.dtype) -> float:
    """A value whose square overflows but which is itself finite: near the largest finite of ``dtype``."""
    return float(np.finfo(dtype).max) / 4


def _tiny(dtype: np.dtype) -> float:
    """A subnormal of ``dtype``."""
    return float(np.finfo(dtype).smallest_subnormal) * 3


def _set(x: np.ndarray, rng: np.random.Generator, values: List[float]) -> np.ndarray:
    """``x`` (a copy) with ``values`` at distinct random positions."""
    x = x.copy()
    flat = x.reshape(-1)
    positions = rng.choice(flat.size, size=min(len(values), flat.size), replace=False)
    flat[positions] = values[:len(positions)]
    return x


def _class_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The class-index target's shape for an input of ``shape`` (class dim 1, or 0 for a 1-d input)."""
    return () if len(shape) == 1 else shape[:1] + shape[2:]


class Natural(NamedTuple):
    """What a module takes with plain data: its shape, whether its input is a probability (BCELoss), and (losses)
    the target families torch accepts."""

    shape: Tuple[int, ...]
    unit: bool
    families: Tuple[Optional[str], ...]
    index: bool = False  # class indices (Embedding): int64 in [0, num_embeddings)


def make_inputs(edge: str, natural: Natural, dtype: np.dtype, family: Optional[str],
                rng: np.random.Generator) -> Inputs:
    """The inputs of ``edge`` for a module of ``natural`` shape and domain (``family``: a loss's target family,
    else None)."""
    d, shape = dtype, natural.shape

    def normal(s=shape) -> np.ndarray:
        if natural.index:
            return rng.integers(0, ARGUMENTS["num_embeddings"], s).astype(np.int64)
        if natural.unit:
            return rng.uniform(0.02, 0.98, s).astype(d)
        return rng.normal(size=s).astype(d)

    def target(s=shape, x=None) -> Optional[np.ndarray]:
        if family is None:
            return None
        if family == "float":
            return rng.uniform(0.0, 1.0, s).astype(d)
        return rng.integers(0, s[1] if len(s) > 1 else s[0], _class_shape(s)).astype(np.int64)

    x = normal()
    t = target()
    if natural.index:  # indices: the value edges make float indices (refused), ties repeat indices, dtypes cast
        if edge in INDEX_AS_FLOAT:
            x = x.astype(d)
        elif edge == "ties":
            return Inputs(rng.integers(0, 2, shape).astype(np.int64), t)
        elif edge in DTYPE_EDGES:
            return Inputs(x.astype(edge if edge != "bool" else np.bool_), t)
    if edge == "plain":
        return Inputs(x, t)
    if edge == "zero-d":
        x = normal(())
        t = None if family is None else (np.array(rng.uniform(), d) if family == "float" else np.array(1))
        return Inputs(x, t)
    if edge == "one-d":
        return Inputs(normal((shape[1],)), target((shape[1],)))
    if edge in ("empty", "empty-features", "empty-length", "batch-one", "wrong-features", "extra-dim"):
        s = {"empty": (0,) + shape[1:], "empty-features": shape[:1] + (0,) + shape[2:],
             "empty-length": shape[:2] + (0,) + shape[3:], "batch-one": (1,) + shape[1:],
             "wrong-features": tuple(n + 1 for n in shape), "extra-dim": shape + (2,)}[edge]
        if edge in ("empty-features", "empty-length") and family == "class":
            return Inputs(normal(s), np.zeros(_class_shape(s), np.int64))
        return Inputs(normal(s), target(s))
    nonfinite = {"nan": [np.nan], "inf": [np.inf], "-inf": [-np.inf], "inf-mix": [np.inf, -np.inf, np.inf]}
    if edge in nonfinite:
        return Inputs(_set(x, rng, nonfinite[edge]), t)
    if edge == "nan-row":  # a whole sample NaN, another whole sample +inf
        x = x.copy()
        x[0] = np.nan
        if len(x) > 1:
            x[1] = np.inf
        return Inputs(x, t)
    if edge == "upstream-nonfinite":
        return Inputs(x, t, upstream="nonfinite")
    if edge == "zeros":
        return Inputs(np.zeros(shape, d), None if t is None else (np.zeros_like(t) if family == "float" else t))
    if edge == "ties":  # small integers: exact zeros, equal values, and for losses |x - t| in {0, 0.5, 1}
        x = (rng.integers(0, 3, shape) / 2 if natural.unit else rng.integers(-2, 3, shape)).astype(d)
        if family == "float":
            t = (x + rng.choice([0.0, 0.5, -0.5, 1.0, -1.0], shape)).astype(d)
        return Inputs(x, t)
    if edge == "negzero":
        x = np.where(rng.uniform(size=shape) < 0.5, -0.0, x).astype(d)
        return Inputs(x, None if t is None else (np.where(x == 0, 0.0, t).astype(t.dtype) if family == "float"
                                                else t))
    if edge == "large":
        return Inputs((x * 1e30 if d == np.float64 else x * 1e18).astype(d), t)
    if edge == "overflow":
        return Inputs((np.sign(x) * _huge(d)).astype(d), t)
    if edge == "subnormal":
        return Inputs((np.sign(x) * _tiny(d) * rng.integers(1, 4, shape)).astype(d), t)
    if edge == "transposed":
        return Inputs(np.ascontiguousarray(x.T).T, t)
    if edge == "reversed":
        return Inputs(x[::-1, ..., ::-1], t)
    if edge == "strided":
        wide = np.repeat(x, 2, axis=-1)
        return Inputs(wide[..., ::2], t)
    if edge == "readonly":
        x.flags.writeable = False
        return Inputs(x, t)
    if edge == "list":
        return Inputs(x.tolist(), t)
    if edge in ("int64", "int32", "uint8", "bool", "float16", "complex128"):
        return Inputs((x * 3).astype(edge if edge != "bool" else np.bool_), t)
    # ---- targets (losses only: the module cases use the plain input) ----
    if family is None:
        raise ValueError(f"{edge} is a loss case")
    if edge == "target-nan":
        return Inputs(x, _set(t, rng, [np.nan]) if family == "float" else t)
    if edge == "target-inf":
        return Inputs(x, _set(t, rng, [np.inf, -np.inf]) if family == "float" else t)
    if edge == "target-out-of-range":
        if family == "float":
            return Inputs(x, _set(t, rng, [1.5, -0.5]))
        t = t.copy()
        t.reshape(-1)[0] = shape[1]
        return Inputs(x, t)
    if edge == "target-ties":
        return Inputs(x, x.copy() if family == "float" else t)
    if edge == "target-other-float":
        other = np.float32 if d == np.float64 else np.float64
        return Inputs(x, t.astype(other))
    if edge == "target-int":
        return Inputs(x, t.astype(np.int64) if family == "float" else t)
    if edge == "target-int32":
        return Inputs(x, t.astype(np.int32))
    if edge == "target-float-classes":
        return Inputs(x, t.astype(d))
    if edge == "target-broadcast":
        return Inputs(x, t[:1] if family == "float" else t[:1])
    if edge == "target-mismatch":
        return Inputs(x, np.concatenate([t, t[:1]]) if t.ndim else t)
    if edge == "target-list":
        return Inputs(x, t.tolist())
    if edge == "target-readonly":
        t.flags.writeable = False
        return Inputs(x, t)
    if edge == "target-negative-class":
        if family == "float":
            return Inputs(x, -t)
        t = t.copy()
        t.reshape(-1)[0] = -3
        return Inputs(x, t)
    if edge == "target-ignored":
        if family == "float":
            return Inputs(x, t)
        return Inputs(x, np.full_like(t, -100))
    raise ValueError(f"unknown edge case {edge!r}")


# ---- the sweep's cases ---------------------------------------------------------------------------------------------
def swept_names() -> List[str]:
    """Every module and loss class ``handnn.nn`` exports (but :data:`NOT_SWEPT`)."""
    return [name for name in nn.__all__ if isinstance(getattr(nn, name), type)
            and issubclass(getattr(nn, name), nn.Module) and name not in NOT_SWEPT]


def is_loss(name: str) -> bool:
    return issubclass(getattr(nn, name), _Loss)


@dataclass(frozen=True)
class Case:
    """One swept case: the class, the constructor variant, the edge, the dtype, the mode (or a loss's reduction)
    and a loss's target family ('float' or 'class'; None for modules)."""

    name: str
    variant: int  # 0: defaults; k > 0: VARIANTS[name][k - 1]
    edge: str
    dtype: str
    mode: str  # "train" / "eval" for modules, the reduction for losses
    family: Optional[str] = None

    @property
    def id(self) -> str:
        family = f"-{self.family}" if self.family else ""
        return f"{self.name}[{self.variant}]-{self.edge}-{self.dtype}-{self.mode}{family}"

    def kwargs(self) -> Dict[str, Any]:
        """The constructor's keyword arguments (the reduction included for losses)."""
        kwargs = dict(SWEEP_DEFAULTS.get(self.name, {}))
        if self.variant:
            kwargs.update(VARIANTS[self.name][self.variant - 1](np.dtype(self.dtype)))
        if is_loss(self.name):
            kwargs["reduction"] = self.mode
        return kwargs


def _edges(loss: bool, family: Optional[str], mode: str) -> List[str]:
    """The edges of a (family, mode): every module edge, the target edges for losses; the reductions other than
    'mean' skip the layout and magnitude edges (the reduction does not touch them); eval runs :data:`EVAL_EDGES`."""
    targets = {"target", f"{family}-target"}
    edges = [e for e in EDGES if "target" not in EDGE_CLASS[e] or (loss and EDGE_CLASS[e] in targets)]
    if mode == "eval":
        edges = [e for e in edges if e in EVAL_EDGES]
    if mode in ("sum", "none"):
        edges = [e for e in edges if EDGE_CLASS[e] not in ("layout", "magnitude")]
    return edges


def groups() -> List[Tuple[str, int, str]]:
    """(class, constructor variant, dtype) of every group of cases, without running anything."""
    return [(name, variant, dtype) for name in swept_names() for variant in range(1 + len(VARIANTS.get(name, [])))
            for dtype in ("float64", "float32")]


def group_cases(name: str, variant: int, dtype: str) -> List[Case]:
    """One group's cases: each mode and (losses) target family torch accepts, over the edge catalogue; a target
    family torch refuses is tried once, with plain data (which families torch accepts is asked of torch)."""
    loss = is_loss(name)
    accepted = natural(name, variant, dtype).families
    modes = (REDUCTIONS if variant == 0 else ("mean",)) if loss else ("train", "eval")
    out = []
    for family in (("float", "class") if loss else (None,)):
        for mode in modes:
            edges = _edges(loss, family, mode) if family in accepted else ["plain"]
            out += [Case(name, variant, edge, dtype, mode, family) for edge in edges]
    return out


def cases() -> List[Case]:
    """The whole sweep: every exported class, each variant, dtype, mode and (losses) target family torch accepts,
    over the edge catalogue."""
    return [case for group in groups() for case in group_cases(*group)]


# ---- running both sides --------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one side did: the exception it raised (None when it computed) or its results."""

    error: Optional[BaseException] = None
    values: Dict[str, np.ndarray] = field(default_factory=dict)
    stage: str = ""  # where the error was raised: "construct", "forward", "backward"
    python_float: bool = False  # the output is a Python float (a reduced handnn loss): compared in torch's dtype

    @property
    def error_class(self) -> Optional[type]:
        return None if self.error is None else builtin_class(type(self.error))


def builtin_class(cls: type) -> type:
    """torch's own exception subclasses (``torch.OutOfMemoryError``, ...) as the builtin class they derive from."""
    for base in cls.__mro__:
        if base.__module__ == "builtins":
            return base
    return cls


def _tensor(value: Any) -> Any:
    """What torch is given for an input or argument: a tensor holding a copy of an array (0-d stays 0-d), anything
    else as it is."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True, order="C"))
    return value


def _floating(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def upstream_for(out: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The upstream gradient for an output: random normal, or with NaN and +-inf at random positions
    (``kind='nonfinite'``). A reduced handnn loss is a Python float: its upstream gradient is drawn in float64 and
    rounded by the loss, as torch's is drawn in float64 and rounded to the loss's dtype."""
    g = np.asarray(rng.normal(size=out.shape)).astype(out.dtype)
    if kind == "nonfinite" and g.size:
        g = _set(g, rng, [np.nan, np.inf, -np.inf])
    return g


def _values(prefix: str, named: Dict[str, Any]) -> Dict[str, np.ndarray]:
    return {f"{prefix} {k}": v for k, v in named.items()}


def make_twin(case: Case, module: Optional[nn.Module]) -> torch.nn.Module:
    """torch's module for ``case``: the twin of handnn's ``module`` (the same parameters and buffers; build it before
    handnn runs), or torch's own constructor when handnn refused to build the module (it may raise)."""
    if module is not None:
        return to_torch(module)
    params = _parameters(getattr(torch.nn, case.name))
    args = {k: _tensor(v) for k, v in {**_required(case.name), **case.kwargs()}.items()}
    if "dtype" in params:
        args["dtype"] = TORCH_DTYPES[np.dtype(case.dtype)]
    twin = getattr(torch.nn, case.name)(**args)
    return twin.train(case.mode != "eval")


def run_torch(twin: torch.nn.Module, inputs: Inputs, seed: int) -> Outcome:
    """torch's side, after handnn's (a dropout twin applies the mask handnn drew; torch's own dropout where handnn
    drew none, since then only whether torch raises matters)."""
    if isinstance(twin, MaskedDropout) and (twin.source.mask is None or twin.source.mask.shape != np.shape(inputs.x)):
        twin = torch.nn.Dropout(twin.p).train(twin.training)
    x = _tensor(inputs.x)
    if _floating(x):
        x.requires_grad_(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = first(call(twin, x)) if inputs.target is None else twin(x, _tensor(inputs.target))
    except Exception as exc:  # noqa: BLE001 - the class is the comparison
        return Outcome(exc, stage="forward")
    if not isinstance(out, torch.Tensor):  # Identity hands back what it was given
        return Outcome(values={"out": np.asarray(out)})
    values = {"out": out.detach().numpy().copy()}
    if out.requires_grad and not out.is_complex():  # a float input, or parameters (Embedding's integer input)
        g = upstream_for(values["out"], inputs.upstream, np.random.default_rng(seed))
        try:
            out.backward(torch.from_numpy(g.copy()).to(out.dtype))
        except Exception as exc:  # noqa: BLE001
            return Outcome(exc, stage="backward")
        if _floating(x):
            values["dx"] = x.grad.numpy().copy()
        values.update(_values("grad", {n: p.grad.numpy().copy() for n, p in twin.named_parameters()
                                       if p.grad is not None}))
    values.update(_values("buffer", {n: b.numpy().copy() for n, b in twin.named_buffers()}))
    return Outcome(values=values)


def both(case: Case, inputs: Inputs, seed: int) -> Tuple[Outcome, Outcome]:
    """(handnn's outcome, torch's) for ``case`` on ``inputs``; each side's construction error is an outcome too."""
    try:
        module, construct_error = build(case), None
    except Exception as exc:  # noqa: BLE001
        module, construct_error = None, exc
    try:
        twin = make_twin(case, module)
    except Exception as exc:  # noqa: BLE001
        theirs: Optional[Outcome] = Outcome(exc, stage="construct")
    else:
        theirs = None
    ours = run_handnn(module, construct_error, inputs, seed)
    if theirs is None:
        theirs = run_torch(twin, inputs, seed)
    return ours, theirs


@lru_cache(maxsize=None)
def _parameters(cls: type) -> Mapping[str, inspect.Parameter]:
    """A class's constructor parameters (cached: the sweep builds every class thousands of times)."""
    return inspect.signature(cls).parameters


def _required(name: str) -> Dict[str, Any]:
    """The torch-named required constructor arguments of ``nn.<name>``, from :data:`ARGUMENTS`."""
    params = _parameters(getattr(nn, name))
    missing = [p for p, spec in params.items() if spec.default is inspect.Parameter.empty
               and spec.kind in (spec.POSITIONAL_ONLY, spec.POSITIONAL_OR_KEYWORD, spec.KEYWORD_ONLY)]
    unknown = [p for p in missing if p not in ARGUMENTS]
    if unknown:
        raise KeyError(f"nn.{name} takes {unknown}: add a value for each to reference.edge.ARGUMENTS")
    return {p: ARGUMENTS[p] for p in missing}


def build(case: Case) -> nn.Module:
    """handnn's module for ``case`` (may raise: bad hyper-parameters are part of the sweep)."""
    cls = getattr(nn, case.name)
    kwargs = {**_required(case.name), **case.kwargs()}
    params = _parameters(cls)
    if "dtype" in params:
        kwargs["dtype"] = np.dtype(case.dtype)
    if "rng" in params:
        kwargs["rng"] = np.random.default_rng(_seed(case.id, "rng"))
    module = cls(**kwargs)
    randomize_affine(module, np.random.default_rng(_seed(case.id, "affine")))
    module.train(case.mode != "eval")
    return module


def run_handnn(module: Optional[nn.Module], construct_error: Optional[BaseException], inputs: Inputs,
               seed: int) -> Outcome:
    """handnn's side, RuntimeWarnings raised as errors (handnn emits none: torch gives none)."""
    if construct_error is not None:
        return Outcome(construct_error, stage="construct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's broadcast warnings: the same on both sides
        warnings.simplefilter("error", RuntimeWarning)
        warnings.filterwarnings("ignore", BLAS_WARNINGS, RuntimeWarning)
        try:
            outputs = call(module, inputs.x) if inputs.target is None else module(inputs.x, inputs.target)
        except Exception as exc:  # noqa: BLE001
            return Outcome(exc, stage="forward")
        out = first(outputs)
        out_array = np.asarray(out)
        values = {"out": out_array.copy()}
        float_input = isinstance(inputs.x, np.ndarray) and inputs.x.dtype.kind in "fc"
        if out_array.dtype.kind == "f" and (float_input or any(True for _ in module.parameters())):
            g = upstream_for(out_array, inputs.upstream, np.random.default_rng(seed))
            g_before = g.copy()
            try:
                dx = backward_first(module, outputs, g) if inputs.target is None else module.backward(g)
            except Exception as exc:  # noqa: BLE001
                return Outcome(exc, stage="backward")
            if not np.array_equal(g, g_before, equal_nan=True):
                values["upstream gradient changed"] = np.ones(1)  # a key torch has not: reported as a problem
            if float_input or dx is not None:
                values["dx"] = np.array(dx, copy=True)
            values.update(_values("grad", {n: p.grad.copy() for n, p in module.named_parameters()
                                           if p.grad is not None}))
    values.update(_values("buffer", {n: np.array(b, copy=True) for n, b in module.named_buffers()}))
    return Outcome(values=values, python_float=type(out) is float)


@lru_cache(maxsize=None)
def natural(name: str, variant: int, dtype: str) -> Natural:
    """The first of :data:`SHAPES` torch takes for the module with plain random data (normal, else uniform in
    (0, 1)), and (losses) the target families it accepts there. A variant torch refuses on every shape (an invalid
    hyper-parameter) is swept on the first shape with every family: each of its cases must then raise torch's
    class."""
    families: Tuple[Optional[str], ...] = ("float", "class") if is_loss(name) else (None,)
    probe = Case(name, variant, "plain", dtype, "mean" if is_loss(name) else "train", families[0])
    error: Optional[BaseException] = None
    for shape in SHAPES:
        for unit in (False, True):
            accepted = []
            for family in families:
                inputs = make_inputs("plain", Natural(shape, unit, families), np.dtype(dtype), family,
                                     np.random.default_rng(_seed(name, shape)))
                error = both(probe, inputs, 0)[1].error
                if error is None:
                    accepted.append(family)
            if accepted:
                return Natural(shape, unit, tuple(accepted))
    for shape in SHAPES:  # an index-taking module (Embedding)
        inputs = make_inputs("plain", Natural(shape, False, families, index=True), np.dtype(dtype), families[0],
                             np.random.default_rng(_seed(name, shape)))
        if both(probe, inputs, 0)[1].error is None:
            return Natural(shape, False, families, index=True)
    if variant == 0:
        raise AssertionError(f"torch takes none of {SHAPES} for nn.{name} (last: {type(error).__name__}: {error}): "
                             "add a shape to reference.edge.SHAPES, or a twin to reference.twin")
    return Natural(SHAPES[0], False, families)


# ---- deviations ------------------------------------------------------------------------------------------------------
DTYPE_EDGES = ("int64", "int32", "uint8", "bool", "float16", "complex128")


Reference = Callable[["Case", Inputs, int, Outcome], Outcome]


@dataclass(frozen=True)
class Deviation:
    """A documented difference: where it applies (given the case, its inputs and torch's outcome), what handnn does
    instead, and why. handnn either raises ``raises`` with a message matching ``message``, or (``raises`` None)
    computes the values of ``reference`` (a torch computation that avoids torch's quirk)."""

    title: str
    applies: Callable[["Case", Inputs, Outcome], bool]
    raises: Optional[type]
    message: str
    reason: str
    reference: Optional[Reference] = None
    compare_as: Optional[str] = None  # compare both sides' values in this dtype (their common precision)
    example: str = ""  # the id of a swept case this deviation applies to


NORMS = {"BatchNorm1d": "channel", "BatchNorm2d": "channel", "LayerNorm": "row", "GroupNorm": "group"}


def constant_groups(case: "Case", x: Any) -> np.ndarray:
    """For a normalisation layer using its input's statistics, the elements whose statistic's group (BatchNorm: a
    channel; LayerNorm: a row; GroupNorm: a (sample, group)) holds equal finite values: zero variance, ``x_hat``
    exactly 0. LayerNorm and GroupNorm groups whose squares overflow are left out: torch's moments give NaN there,
    as handnn's do. All False for other modules and inputs."""
    kind = NORMS.get(case.name)
    batch_stats = case.mode == "train" or not case.kwargs().get("track_running_stats", True)
    if (kind is None or (kind == "channel" and not batch_stats) or not isinstance(x, np.ndarray)
            or x.dtype.kind != "f" or x.ndim < 2 or not x.size):
        return np.zeros(np.shape(x), bool)
    if kind == "channel":
        grouped = np.moveaxis(x, 1, 0).reshape(x.shape[1], 1, -1)
    elif kind == "row":
        grouped = x.reshape(-1, 1, x.shape[-1])
    else:
        grouped = x.reshape(x.shape[0], case.kwargs().get("num_groups", ARGUMENTS["num_groups"]), -1)
    with np.errstate(invalid="ignore", over="ignore"):
        same = np.isfinite(grouped).all(axis=2) & (grouped.max(axis=2) == grouped.min(axis=2))
        if kind != "channel":
            same &= np.isfinite(grouped[:, :, 0] * grouped[:, :, 0])
    mask = np.broadcast_to(same[:, :, None], grouped.shape)
    if kind == "channel":
        return np.moveaxis(mask.reshape((x.shape[1], x.shape[0]) + x.shape[2:]), 0, 1)
    return mask.reshape(x.shape)


def _zero_variance_reference(case: "Case", inputs: Inputs, seed: int, theirs: Outcome) -> Outcome:
    """torch's float64 result, rounded to the case's dtype, on the input with each constant group's values set to 0
    (the same ``x_hat``, exactly 0, without the rounding error of ``x * rstd``); the running statistics of the
    original input (they hold the group's mean, not its ``x_hat``)."""
    x = np.where(constant_groups(case, inputs.x), 0, inputs.x).astype(np.float64)
    exact = run_torch(to_torch(build(case)).double(), Inputs(x, inputs.target, inputs.upstream), seed)
    values = {k: v.astype(np.dtype(case.dtype)) for k, v in exact.values.items() if not k.startswith("buffer")}
    values.update({k: v for k, v in theirs.values.items() if k.startswith("buffer")})
    return Outcome(values=values)


def _int64_reference(case: "Case", inputs: Inputs, seed: int, theirs: Outcome) -> Outcome:
    """torch's outcome with the class targets as int64."""
    return both(case, Inputs(inputs.x, inputs.target.astype(np.int64), inputs.upstream), seed)[1]


def _strided(x: np.ndarray) -> "torch.Tensor":
    """A non-contiguous tensor holding ``x`` (torch's element-wise kernels run their scalar loop on it)."""
    return torch.from_numpy(np.repeat(x[..., None], 2, axis=-1))[..., 0]


CONVOLUTIONS = ("Conv1d", "Conv2d")


def _conv_float64_reference(case: "Case", inputs: Inputs, seed: int, theirs: Outcome) -> Outcome:
    """torch's outcome computed in float64 (its im2col path, which multiplies the zero padding as handnn does)."""
    x = inputs.x.astype(np.float64) if isinstance(inputs.x, np.ndarray) else inputs.x
    return run_torch(to_torch(build(case)).double(), Inputs(x, inputs.target, inputs.upstream), seed)


#: the scale that keeps a sum of absolute terms of a float64 weight gradient finite, to tell where it overflows
_SHRINK = 2.0 ** -500


def _order_dependent(case: "Case", inputs: Inputs, seed: int) -> Dict[str, np.ndarray]:
    """Per value of ``case``, the entries that sum terms whose absolute values add up past the dtype's largest
    value: there, which partial sums overflow (and so the result: +-inf, NaN or a finite number) depends on the
    order of the additions. A convolution's weight gradient (torch in float64 on ``|x| * 2**-500`` and ``|dout|``)
    and a global average pooling's output (the sum of ``|x| * 2**-500`` over each plane)."""
    limit = np.finfo(case.dtype).max * _SHRINK
    shrunk = np.abs(inputs.x.astype(np.float64)) * _SHRINK
    if case.name not in CONVOLUTIONS:  # AdaptiveAvgPool2d
        return {"out": shrunk.sum(axis=(-2, -1), keepdims=True) > limit}
    twin = to_torch(build(case)).double()
    x = torch.from_numpy(shrunk).requires_grad_(True)
    out = twin(x)
    g = upstream_for(out.detach().numpy().astype(case.dtype), inputs.upstream, np.random.default_rng(seed))
    out.backward(torch.from_numpy(np.abs(g.astype(np.float64))))
    return {"grad weight": twin.weight.grad.numpy() > limit}


def _overflowing_sums_reference(case: "Case", inputs: Inputs, seed: int, theirs: Outcome) -> Outcome:
    """torch's outcome, with handnn's values at the order-dependent entries (not compared)."""
    ours = both(case, inputs, seed)[0]
    if ours.error is not None or theirs.error is not None:
        return theirs
    values = dict(theirs.values)
    for key, mask in _order_dependent(case, inputs, seed).items():
        if key in values and mask.shape == values[key].shape:
            values[key] = np.where(mask, ours.values[key], values[key])
    return Outcome(values=values)


def _theirs_with_our_gradients(case: "Case", inputs: Inputs, seed: int, theirs: Outcome) -> Outcome:
    """torch's outcome with handnn's dx and parameter gradients (not compared); the output and buffers are."""
    ours = both(case, inputs, seed)[0]
    if ours.error is not None or theirs.error is not None:
        return theirs
    values = dict(theirs.values)
    values.update({k: v for k, v in ours.values.items() if k == "dx" or k.startswith("grad ")})
    return Outcome(values=values)


#: modules whose attention torch computes with its fused scaled-dot-product kernel (``need_weights=False``)
FUSED_ATTENTION = ("TransformerEncoderLayer",)


def _math_attention_reference(case: "Case", inputs: Inputs, seed: int, theirs: Outcome) -> Outcome:
    """torch's outcome with its scaled-dot-product attention computed by the MATH backend (softmax and its
    autograd backward, as handnn computes it) instead of the fused flash kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return run_torch(to_torch(build(case)), inputs, seed)


#: where sums of overflowing terms are computed in an order other than torch's: a convolution's weight gradient, and
#: global average pooling (torch's vectorised ``mean``)
OVERFLOWING_SUMS = {"Conv1d": "all", "Conv2d": "all", "AdaptiveAvgPool2d": "global"}


def _overflowing_sums(case: "Case", inputs: Inputs, theirs: Outcome) -> bool:
    kind = OVERFLOWING_SUMS.get(case.name)
    return (kind is not None and case.edge == "overflow" and theirs.error is None
            and (kind == "all" or case.kwargs().get("output_size", ARGUMENTS["output_size"]) in (1, (1, 1))))


DEVIATIONS: List[Deviation] = [
    Deviation(
        "no LSTM projections",
        lambda case, inputs, theirs: case.name == "LSTM" and bool(case.kwargs().get("proj_size", 0)),
        NotImplementedError, r"proj_size",
        "LSTM(proj_size > 0) (a projected hidden state, LSTMP) is not implemented: the constructor raises "
        "NotImplementedError naming the option, where torch builds it",
        example="LSTM[3]-zeros-float64-train"),
    Deviation(
        "float32 and float64 only",
        lambda case, inputs, theirs: case.edge in DTYPE_EDGES and (theirs.error is None or theirs.stage == "backward"),
        TypeError,
        r"float32 or float64",
        "handnn computes in float32 and float64. Where torch computes on an integer, bool, float16 or complex input "
        "(a result it could not differentiate, or a dtype NumPy runs slowly), handnn raises TypeError naming the "
        "dtype, so the cast (`.astype(np.float32)`) is the caller's visible choice. Where torch refuses such an "
        "input, handnn raises torch's class; pass-through modules (Identity, Flatten, Dropout in eval) return any "
        "array as torch does. (torch's HuberLoss computes a float16 input's loss and refuses its backward: handnn "
        "refuses at the forward.)",
        example="ReLU[0]-int64-float64-train"),
    Deviation(
        "a Python list is a TypeError",
        lambda case, inputs, theirs: case.edge in ("list", "target-list") and isinstance(theirs.error, AttributeError),
        TypeError, r"numpy\.ndarray",
        "torch's Python code calls a tensor method on the list (`input.dim()`, `target.size()`) and raises "
        "AttributeError by accident; its C++ functions raise TypeError for the same argument, as handnn does",
        example="MSELoss[0]-list-float64-mean-float"),
    Deviation(
        "int32 class targets",
        lambda case, inputs, theirs: (case.edge == "target-int32" and theirs.error is not None
                                      and _int64_reference(case, inputs, 0, theirs).error is None), None, "",
        "class indices of any integer dtype are accepted and mean what torch's int64 indices mean (torch takes int64 "
        "and uint8 only): NumPy's default integer is int32 on some platforms",
        reference=lambda case, inputs, seed, theirs: _int64_reference(case, inputs, seed, theirs),
        example="CrossEntropyLoss[0]-target-int32-float64-mean-class"),
    Deviation(
        "zero-variance statistics",
        lambda case, inputs, theirs: theirs.error is None and bool(constant_groups(case, inputs.x).any()), None, "",
        "a channel (BatchNorm), row (LayerNorm) or group (GroupNorm) of equal values has x_hat = 0 exactly in "
        "handnn. torch's fused kernels compute x * rstd - mean * rstd and keep that product's rounding error: up to "
        "1e-4 in float32 dx for a GroupNorm group of one value (amplified by rstd^3), and +-inf in BatchNorm where "
        "x * rstd overflows (values near the largest float). handnn is checked against torch's float64 result on "
        "the same input with those groups set to 0, which has the same x_hat without the rounding error",
        reference=_zero_variance_reference,
        example="GroupNorm[1]-ties-float32-train"),
    Deviation(
        "exact GELU of +inf in float32",
        lambda case, inputs, theirs: (case.name == "GELU" and case.kwargs().get("approximate", "none") == "none"
                                      and case.dtype == "float32" and isinstance(inputs.x, np.ndarray)
                                      and inputs.x.dtype == np.float32 and inputs.x.size > 1
                                      and bool(np.isposinf(inputs.x).any())), None, "",
        "torch's vectorised float32 GELU kernel returns NaN for +inf; its scalar loop (a one-element or "
        "non-contiguous tensor) returns +inf, the limit x * Phi(x) -> x, which handnn returns for every layout. "
        "handnn is checked against torch on a non-contiguous copy of the input",
        reference=lambda case, inputs, seed, theirs: run_torch(
            to_torch(build(case)), Inputs(_strided(inputs.x), inputs.target, inputs.upstream), seed),
        example="GELU[0]-inf-float32-train"),
    Deviation(
        "float32 beside float64 in the logit losses",
        lambda case, inputs, theirs: (case.name in ("BCEWithLogitsLoss", "CrossEntropyLoss") and theirs.error is None
                                      and isinstance(inputs.target, np.ndarray) and inputs.target.dtype.kind == "f"
                                      and inputs.target.dtype != np.dtype(case.dtype)), None, "",
        "with float32 logits and float64 targets (or the reverse), torch computes BCEWithLogitsLoss and "
        "CrossEntropyLoss (probability targets) partly in the float32 dtype (log_sigmoid, log_softmax, in-place "
        "arithmetic on the float32 target), so its float64 loss or gradient carries float32 rounding. handnn returns "
        "torch's dtypes (BCEWithLogitsLoss: the loss in the target's; CrossEntropyLoss: in the promoted one; the "
        "gradient in the input's) computed in the wider dtype; they agree with torch's to float32 precision, which is "
        "what the sweep checks",
        reference=lambda case, inputs, seed, theirs: theirs, compare_as="float32",
        example="BCEWithLogitsLoss[0]-target-other-float-float64-mean-float"),
    Deviation(
        "float32 convolution gradients at the padding",
        lambda case, inputs, theirs: (case.name in CONVOLUTIONS and case.dtype == "float32" and theirs.error is None
                                      and inputs.upstream == "nonfinite"), None, "",
        "handnn's weight gradient multiplies every upstream gradient with the window it came from, zero padding "
        "included, as torch's float64 (im2col) kernel does: a NaN or inf upstream gradient at the border times a "
        "padded zero is NaN. torch's float32 (oneDNN) kernel skips the padding and gives a finite value there. "
        "handnn's float32 result is checked against torch's float64 one, at float32 precision",
        reference=_conv_float64_reference, compare_as="float32",
        example="Conv1d[2]-upstream-nonfinite-float32-train"),
    Deviation(
        "saturated attention in torch's fused kernel",
        lambda case, inputs, theirs: (case.name in FUSED_ATTENTION and case.edge in ("large", "overflow")
                                      and theirs.error is None), None, "",
        "scores of 1e30-scale inputs make the softmax one-hot, where the gradient of the scores is exactly 0 "
        "(P (dP - rowsum(dP P)) cancels to 0). torch's fused flash-attention kernel, which TransformerEncoderLayer "
        "calls (need_weights=False), forms rowsum(dO O) from the rounded output instead and returns its rounding "
        "noise at that scale (1e11 in dx where the true value is 1e-32). handnn is checked against torch with its "
        "MATH attention backend (softmax and its autograd backward), which it matches",
        reference=_math_attention_reference,
        example="TransformerEncoderLayer[0]-large-float64-train"),
    Deviation(
        "gradients decided by rounding noise",
        lambda case, inputs, theirs: (case.name == "TransformerEncoderLayer" and not case.kwargs().get("bias", True)
                                      and case.edge == "subnormal" and theirs.error is None), None, "",
        "a bias-free TransformerEncoderLayer maps a subnormal input to LayerNorm inputs of subnormal size, whose "
        "variance underflows to 0: x_hat is then a value near 1e-305 made of rounding (torch's x*rstd - mean*rstd, "
        "handnn's (x - mean)*rstd), and its sign decides which ReLU units of the feed-forward block pass a gradient. "
        "The gradients therefore differ by which units the noise opened; the output (equal) is compared, the "
        "gradients are not",
        reference=lambda case, inputs, seed, theirs: _theirs_with_our_gradients(case, inputs, seed, theirs),
        example="TransformerEncoderLayer[3]-subnormal-float64-train"),
    Deviation(
        "sums that overflow",
        _overflowing_sums, None, "",
        "where the terms of a sum add up past the largest float, which partial sums overflow, and so whether the "
        "result is +inf, -inf, NaN or finite, depends on the order of the additions: a convolution's weight "
        "gradient (torch's kernels add in different orders for float32 and float64, grouped or not; handnn in its "
        "matrix product's) and global average pooling (torch's vectorised mean). Those entries are not compared; "
        "every other value and gradient is",
        reference=_overflowing_sums_reference,
        example="Conv2d[3]-overflow-float64-train"),
]

#: warnings handnn leaves as NumPy gives them (the one other documented difference): the floating-point flags a BLAS
#: product raises on non-finite or huge input
BLAS_WARNINGS = r"(invalid value|overflow) encountered in (matmul|dot|vecdot)"
BLAS_WARNINGS_TITLE = "NumPy's warnings from BLAS products"
BLAS_WARNINGS_REASON = (
    "NumPy reports the floating-point flags of a BLAS product (Linear, the normalisation layers' sums) as a "
    "RuntimeWarning when an input holds inf or a value whose products overflow; torch reports none. The values are "
    "torch's. Silencing it would take an `np.errstate` around every product, a measurable share of a small network's "
    "step: wrap a call in `np.errstate(invalid='ignore', over='ignore')` to silence it")


def deviation_for(case: Case, inputs: Inputs, theirs: Outcome) -> Optional[Deviation]:
    return next((d for d in DEVIATIONS if d.applies(case, inputs, theirs)), None)


# ---- the verdict -----------------------------------------------------------------------------------------------------
@dataclass
class Result:
    case: Case
    ours: Outcome
    theirs: Outcome
    problems: List[str]
    deviation: Optional[Deviation] = None

    @property
    def passed(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        def describe(o: Outcome) -> str:
            if o.error is not None:
                return f"{type(o.error).__name__} at {o.stage}: {str(o.error)[:200]}"
            return "computes " + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in o.values.items())
        return (f"{self.case.id}: " + "; ".join(self.problems) + f"\n  handnn: {describe(self.ours)}"
                f"\n  torch:  {describe(self.theirs)}")


def _snapshot(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy(), value.flags.writeable
    return value


def _unchanged(before: Any, after: Any) -> bool:
    if isinstance(after, np.ndarray):
        array, writeable = before
        return (after.flags.writeable == writeable and array.shape == after.shape
                and np.array_equal(array, after, equal_nan=after.dtype.kind in "fc"))
    return before == after


def _as_dtype(outcome: Outcome, dtype: str) -> Outcome:
    """``outcome`` with every float value cast to ``dtype`` (an error stays as it is)."""
    if outcome.error is not None:
        return outcome
    values = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in outcome.values.items()}
    return Outcome(values=values, python_float=outcome.python_float)


def _same_error(ours: Outcome, theirs: Outcome) -> List[str]:
    """torch raised: handnn must raise the same class at the same stage (construction, forward or backward)."""
    if ours.error is None:
        return [f"torch raises {theirs.error_class.__name__} at {theirs.stage}, handnn computes"]
    if ours.error_class is not theirs.error_class or ours.stage != theirs.stage:
        return [f"torch raises {theirs.error_class.__name__} at {theirs.stage}, handnn "
                f"{type(ours.error).__name__} at {ours.stage}"]
    return []


def _same_values(ours: Outcome, theirs: Outcome, flavour: bool = True) -> List[str]:
    """torch computed: handnn must compute the same values (a reduced loss's float in torch's dtype)."""
    if ours.error is not None:
        return [f"torch computes, handnn raises {type(ours.error).__name__} at {ours.stage}"]
    values = dict(ours.values)
    if ours.python_float and "out" in theirs.values:
        values["out"] = values["out"].astype(theirs.values["out"].dtype)
    return _compare_values(values, theirs.values, flavour)


def run(case: Case) -> Result:
    """Run ``case`` on both sides and judge it."""
    nat = natural(case.name, case.variant, case.dtype)
    seed = _seed(case.id)
    inputs = make_inputs(case.edge, nat, np.dtype(case.dtype), case.family, np.random.default_rng(seed))
    before = (_snapshot(inputs.x), _snapshot(inputs.target))
    ours, theirs = both(case, inputs, seed)
    problems: List[str] = []
    if not (_unchanged(before[0], inputs.x) and _unchanged(before[1], inputs.target)):
        problems.append("handnn changed its input or target")
    deviation = deviation_for(case, inputs, theirs)
    flavour = inputs.upstream != "nonfinite"
    if deviation is None:
        problems += _same_error(ours, theirs) if theirs.error is not None else _same_values(ours, theirs, flavour)
    elif deviation.raises is not None:
        if ours.error is None:  # handnn computes after all (a pass-through module): it must compute torch's values
            problems += _same_values(ours, theirs)
        elif not (isinstance(ours.error, deviation.raises) and re.search(deviation.message, str(ours.error))):
            problems.append(f"documented deviation '{deviation.title}': handnn should raise "
                            f"{deviation.raises.__name__} matching {deviation.message!r}")
    else:
        reference, mine = deviation.reference(case, inputs, seed, theirs), ours
        if deviation.compare_as is not None:
            mine, reference = _as_dtype(mine, deviation.compare_as), _as_dtype(reference, deviation.compare_as)
        problems += _same_values(mine, reference, flavour)
    return Result(case, ours, theirs, problems, deviation)


def _compare_values(ours: Dict[str, np.ndarray], theirs: Dict[str, np.ndarray], flavour: bool = True) -> List[str]:
    """The problems of handnn's values against torch's: keys, dtypes, shapes, the tolerance table, and the NaN/+inf/-inf
    pattern (without ``flavour``, only where the values are finite: a sum of infinities is NaN or +-inf depending on
    the order of its terms)."""
    problems = []
    for key in sorted(set(ours) | set(theirs)):
        if key not in ours or key not in theirs:
            problems.append(f"{key} computed by {'torch' if key in theirs else 'handnn'} only")
            continue
        a, e = ours[key], theirs[key]
        if not flavour and a.shape == e.shape and a.dtype.kind == e.dtype.kind == "f":
            both = ~np.isfinite(a) & ~np.isfinite(e)
            a, e = np.where(both, 0, a).astype(a.dtype), np.where(both, 0, e).astype(e.dtype)
        if a.dtype not in (np.float32, np.float64) or e.dtype not in (np.float32, np.float64):  # must be identical
            if a.dtype != e.dtype or a.shape != e.shape or not np.array_equal(a, e, equal_nan=a.dtype.kind in "fc"):
                problems.append(f"{key}: {a.dtype}{list(a.shape)} != torch {e.dtype}{list(e.shape)} or values")
            continue
        result: Comparison = compare(key, a, e)
        pattern = (a.shape == e.shape and np.array_equal(np.isnan(a), np.isnan(e))
                   and np.array_equal(np.isposinf(a), np.isposinf(e)) and np.array_equal(np.isneginf(a), np.isneginf(e)))
        if not result.passed:
            problems.append(str(result))
        elif not pattern:
            problems.append(f"{key}: NaN/inf pattern differs from torch's")
    return problems


# ---- the command line ------------------------------------------------------------------------------------------------
def edge_class(edge: str) -> str:
    """The catalogue's class of an edge ('target' for every target edge; 'family' for a refused target family)."""
    return "family" if edge == "plain" else ("target" if "target" in EDGE_CLASS[edge] else EDGE_CLASS[edge])


def summary(results: List[Result]) -> List[Tuple[str, int, int, int, int]]:
    """Per edge class: (class, cases, matching torch, documented deviations, failed); a 'total' row last."""
    rows = []
    for kind in [*dict.fromkeys(edge_class(r.case.edge) for r in results), "total"]:
        mine = [r for r in results if kind == "total" or edge_class(r.case.edge) == kind]
        rows.append((kind, len(mine), sum(r.passed and r.deviation is None for r in mine),
                     sum(r.passed and r.deviation is not None for r in mine), sum(not r.passed for r in mine)))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m reference.edge [--only GLOB]``: run the sweep, print the per-class table and every failure."""
    import argparse
    import fnmatch

    parser = argparse.ArgumentParser(prog="python -m reference.edge", description=main.__doc__)
    parser.add_argument("--only", default="*", help="a glob on case ids, e.g. 'GroupNorm*'")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = [run(case) for case in cases() if fnmatch.fnmatchcase(case.id, args.only)]
    print(f"edge-input sweep against torch {torch.__version__}: {len(results)} cases")
    print(f"{'class':<12} {'cases':>6} {'as torch':>9} {'deviation':>10} {'failed':>7}")
    for row in summary(results):
        print(f"{row[0]:<12} {row[1]:>6} {row[2]:>9} {row[3]:>10} {row[4]:>7}")
    counts = {d.title: sum(r.deviation is d for r in results) for d in DEVIATIONS}
    print("documented deviations: " + ", ".join(f"{title} ({n})" for title, n in counts.items()))
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(r)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
