"""The parity battery's cases: what is built, on which shapes and data — numpy only.

The report (``reference.report``, ``reference.battery``) runs these against torch; the golden fixtures
(``reference.record``) store torch's results for them, and ``tests/golden`` replays them without torch. Keeping the
definitions here, free of torch, is what lets the replay rebuild exactly the modules torch was run on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from handnn import nn, optim


# ---- layers --------------------------------------------------------------------------------------------------
Builder = Callable[[np.dtype, np.random.Generator], nn.Module]


@dataclass(frozen=True)
class Case:
    """One component configuration: how to build it, the input shape it takes, and (when not real numbers) how its
    input is drawn: ``make_x(rng, shape)``, e.g. Embedding's indices."""

    component: str
    build: Builder
    shape: Tuple[int, ...]
    make_x: Optional[Callable[[np.random.Generator, Tuple[int, ...]], np.ndarray]] = None

    def input(self, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        """One input: ``make_x``'s, else ``N(1, 2)`` in ``dtype`` (off-centre, so a missing mean shows)."""
        if self.make_x is not None:
            return self.make_x(rng, self.shape)
        return rng.normal(1.0, 2.0, self.shape).astype(dtype)


def indices(count: int) -> Callable[[np.random.Generator, Tuple[int, ...]], np.ndarray]:
    """Class indices in ``[0, count)`` (int64), repeats certain: an Embedding's input."""
    return lambda rng, shape: rng.integers(0, count, shape)


def layer_cases() -> List[Case]:
    def c(name: str, shape: Sequence[int], build: Builder) -> Case:
        return Case(name, build, tuple(shape))

    """Every layer and every option that changes the arithmetic, on shapes whose dimensions differ."""
    return [
        c("Linear", (7, 5), lambda d, r: nn.Linear(5, 3, dtype=d, rng=r)),
        c("Linear(bias=False) 3-d", (4, 6, 5), lambda d, r: nn.Linear(5, 3, bias=False, dtype=d, rng=r)),
        c("Identity", (7, 5), lambda d, r: nn.Identity()),
        c("Flatten", (7, 5, 4, 3), lambda d, r: nn.Flatten()),
        c("ReLU", (7, 5), lambda d, r: nn.ReLU()),
        c("LeakyReLU(0.2)", (7, 5), lambda d, r: nn.LeakyReLU(0.2)),
        c("Sigmoid", (7, 5), lambda d, r: nn.Sigmoid()),
        c("Tanh", (7, 5), lambda d, r: nn.Tanh()),
        c("GELU", (7, 5), lambda d, r: nn.GELU()),
        c("GELU(tanh)", (7, 5), lambda d, r: nn.GELU("tanh")),
        c("Softmax(dim=1)", (7, 5, 3), lambda d, r: nn.Softmax(dim=1)),
        c("LogSoftmax(dim=-1)", (7, 5, 3), lambda d, r: nn.LogSoftmax(dim=-1)),
        c("BatchNorm1d (N, C)", (9, 5), lambda d, r: nn.BatchNorm1d(5, dtype=d)),
        c("BatchNorm1d (N, C, L)", (7, 5, 4), lambda d, r: nn.BatchNorm1d(5, dtype=d)),
        c("BatchNorm1d momentum=None", (9, 5), lambda d, r: nn.BatchNorm1d(5, momentum=None, dtype=d)),
        c("BatchNorm1d affine=False", (9, 5), lambda d, r: nn.BatchNorm1d(5, affine=False, dtype=d)),
        c("BatchNorm1d no running stats", (9, 5),
          lambda d, r: nn.BatchNorm1d(5, track_running_stats=False, dtype=d)),
        c("BatchNorm2d", (7, 5, 4, 3), lambda d, r: nn.BatchNorm2d(5, dtype=d)),
        c("LayerNorm(5)", (7, 5), lambda d, r: nn.LayerNorm(5, dtype=d)),
        c("LayerNorm((4, 3))", (7, 5, 4, 3), lambda d, r: nn.LayerNorm((4, 3), dtype=d)),
        c("GroupNorm(2, 6)", (7, 6, 4, 3), lambda d, r: nn.GroupNorm(2, 6, dtype=d)),
        c("GroupNorm(3, 6) affine=False", (7, 6, 5), lambda d, r: nn.GroupNorm(3, 6, affine=False, dtype=d)),
        c("Dropout(0.3)", (7, 5, 4), lambda d, r: nn.Dropout(0.3, rng=r)),
        c("Dropout2d(0.3)", (7, 5, 4, 3), lambda d, r: nn.Dropout2d(0.3, rng=r)),
        c("Conv1d(4, 6, 3, stride=2, padding=1)", (5, 4, 11),
          lambda d, r: nn.Conv1d(4, 6, 3, stride=2, padding=1, dtype=d, rng=r)),
        c("Conv2d(3, 6, 3, padding=1)", (5, 3, 8, 7), lambda d, r: nn.Conv2d(3, 6, 3, padding=1, dtype=d, rng=r)),
        c("Conv2d(4, 6, (3, 2)) strided, dilated, groups=2, no bias", (5, 4, 9, 8),
          lambda d, r: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2, bias=False, dtype=d,
                                 rng=r)),
        c("Conv2d depthwise, padding='same', reflect, unbatched", (4, 7, 6),
          lambda d, r: nn.Conv2d(4, 4, 2, padding="same", groups=4, padding_mode="reflect", dtype=d, rng=r)),
        c("MaxPool2d(2)", (5, 4, 8, 7), lambda d, r: nn.MaxPool2d(2)),
        c("MaxPool2d(3, stride=2, padding=1, ceil_mode)", (5, 4, 8, 7),
          lambda d, r: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
        c("AvgPool2d(2)", (5, 4, 8, 7), lambda d, r: nn.AvgPool2d(2)),
        c("AvgPool2d(3, stride=2, padding=1, count_include_pad=False)", (5, 4, 8, 7),
          lambda d, r: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)),
        c("AdaptiveAvgPool2d((3, 2))", (5, 4, 8, 7), lambda d, r: nn.AdaptiveAvgPool2d((3, 2))),
        c("AdaptiveAvgPool2d(1)", (5, 4, 8, 7), lambda d, r: nn.AdaptiveAvgPool2d(1)),
        c("CNN Conv(bias=False)-BN-ReLU-MaxPool-Conv-ReLU-AdaptiveAvgPool-Flatten-Linear", (6, 1, 8, 8),
          lambda d, r: nn.Sequential(
              nn.Conv2d(1, 4, 3, padding=1, bias=False, dtype=d, rng=r), nn.BatchNorm2d(4, dtype=d), nn.ReLU(),
              nn.MaxPool2d(2),
              nn.Conv2d(4, 6, 3, padding=1, dtype=d, rng=r), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
              nn.Linear(6, 3, dtype=d, rng=r))),
        Case("Embedding(9, 5, padding_idx=2)", lambda d, r: nn.Embedding(9, 5, padding_idx=2, dtype=d, rng=r), (4, 6),
             indices(9)),
        c("RNN(4, 5) 2 layers, relu", (6, 3, 4), lambda d, r: nn.RNN(4, 5, 2, nonlinearity="relu", dtype=d, rng=r)),
        c("LSTM(4, 5) 2 layers, bidirectional, batch_first", (3, 6, 4),
          lambda d, r: nn.LSTM(4, 5, 2, batch_first=True, bidirectional=True, dtype=d, rng=r)),
        c("GRU(4, 5) no bias, unbatched", (6, 4), lambda d, r: nn.GRU(4, 5, bias=False, dtype=d, rng=r)),
        c("RNNCell(4, 5)", (3, 4), lambda d, r: nn.RNNCell(4, 5, dtype=d, rng=r)),
        c("LSTMCell(4, 5)", (3, 4), lambda d, r: nn.LSTMCell(4, 5, dtype=d, rng=r)),
        c("GRUCell(4, 5)", (3, 4), lambda d, r: nn.GRUCell(4, 5, dtype=d, rng=r)),
        c("MultiheadAttention(6, 3) self-attention", (5, 3, 6), lambda d, r: nn.MultiheadAttention(6, 3, dtype=d, rng=r)),
        c("MultiheadAttention(6, 2) add_bias_kv, add_zero_attn, batch_first", (3, 5, 6),
          lambda d, r: nn.MultiheadAttention(6, 2, add_bias_kv=True, add_zero_attn=True, batch_first=True, dtype=d,
                                             rng=r)),
        c("TransformerEncoderLayer(6, 2, 10)", (5, 3, 6),
          lambda d, r: nn.TransformerEncoderLayer(6, 2, 10, dropout=0.0, dtype=d, rng=r)),
        c("TransformerEncoderLayer(6, 3, 8) gelu, norm_first, batch_first", (3, 5, 6),
          lambda d, r: nn.TransformerEncoderLayer(6, 3, 8, dropout=0.0, activation="gelu", batch_first=True,
                                                  norm_first=True, dtype=d, rng=r)),
        c("MLP Linear-BN-ReLU-Dropout-Linear", (16, 2), lambda d, r: nn.Sequential(
            nn.Linear(2, 20, dtype=d, rng=r), nn.BatchNorm1d(20, dtype=d), nn.ReLU(),
            nn.Dropout(0.3, rng=r), nn.Linear(20, 1, dtype=d, rng=r))),
    ]


def randomize_affine(module: nn.Module, rng: np.random.Generator) -> None:
    """Move norm weights/biases off their 1/0 initialisation, and attention's biases off 0, so a swapped or ignored
    one shows (and a zero input does not make every attention output, hence a LayerNorm's input, exactly 0)."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            if m.bias is not None:
                m.bias.data[...] = rng.normal(size=m.bias.shape)
        if isinstance(m, nn.MultiheadAttention):
            for p in (m.in_proj_bias, m.out_proj.bias):
                if p is not None:
                    p.data[...] = rng.normal(size=p.shape)



# ---- losses --------------------------------------------------------------------------------------------------
TargetMaker = Callable[[np.random.Generator, Tuple[int, ...], np.dtype], np.ndarray]


@dataclass(frozen=True)
class LossCase:
    """A loss configuration: how to build it (given dtype and rng), the input shape, and its target maker."""

    component: str
    build: Callable[[np.dtype, np.random.Generator], nn.Module]
    shape: Tuple[int, ...]
    target: TargetMaker
    logits_scale: float = 1.0


def _real(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


def _probabilities(rng, shape, dtype):
    return rng.uniform(0.02, 0.98, shape).astype(dtype)


def _binary(rng, shape, dtype):
    return (rng.uniform(size=shape) < 0.4).astype(dtype)


def _classes(rng, shape, dtype, ignore: Optional[int] = None):
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if ignore is not None:
        target[rng.uniform(size=target.shape) < 0.25] = ignore
    return target.astype(np.int64)


def _soft_classes(rng, shape, dtype):
    p = rng.uniform(0.1, 1.0, shape)
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def loss_cases() -> List[LossCase]:
    """Every loss, each reduction for the elementwise ones, and every option that changes the arithmetic."""
    cases = []
    for reduction in ("mean", "sum", "none"):
        cases += [
            LossCase(f"MSELoss({reduction})", lambda d, r, red=reduction: nn.MSELoss(reduction=red), (7, 5), _real),
            LossCase(f"L1Loss({reduction})", lambda d, r, red=reduction: nn.L1Loss(reduction=red), (7, 5), _real),
            LossCase(f"CrossEntropyLoss({reduction})", lambda d, r, red=reduction: nn.CrossEntropyLoss(
                reduction=red), (7, 5), _classes),
        ]
    weight = lambda d, r, n: r.uniform(0.5, 2.0, n).astype(d)  # noqa: E731
    cases += [
        LossCase("SmoothL1Loss(beta=0.5)", lambda d, r: nn.SmoothL1Loss(beta=0.5), (7, 5), _real),
        LossCase("HuberLoss(delta=0.7)", lambda d, r: nn.HuberLoss(delta=0.7), (7, 5), _real),
        LossCase("BCELoss(weight)", lambda d, r: nn.BCELoss(weight=weight(d, r, 5)), (7, 5), _probabilities),
        LossCase("BCEWithLogitsLoss(pos_weight)", lambda d, r: nn.BCEWithLogitsLoss(pos_weight=weight(d, r, 5)),
                 (7, 5), _binary, logits_scale=30.0),
        LossCase("NLLLoss(weight, ignore_index)", lambda d, r: nn.NLLLoss(weight=weight(d, r, 5), ignore_index=2),
                 (7, 5), lambda r, s, d: _classes(r, s, d)),
        LossCase("CrossEntropyLoss(weight, ignore_index, smoothing) (N, C, d)",
                 lambda d, r: nn.CrossEntropyLoss(weight=weight(d, r, 5), ignore_index=-1, label_smoothing=0.2),
                 (7, 5, 3), lambda r, s, d: _classes(r, s, d, ignore=-1)),
        LossCase("CrossEntropyLoss(probability targets)", lambda d, r: nn.CrossEntropyLoss(label_smoothing=0.1),
                 (7, 5, 3), _soft_classes),
    ]
    return cases



def loss_input(case: LossCase, loss: nn.Module, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """The input a loss takes: logits (scaled), probabilities for BCELoss, log-probabilities for NLLLoss."""
    x = (case.logits_scale * rng.normal(size=case.shape)).astype(dtype)
    if case.target is _probabilities or type(loss).__name__ == "BCELoss":
        x = _probabilities(rng, case.shape, dtype)
    if type(loss).__name__ == "NLLLoss":
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


# ---- optimizer trajectories ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimCase:
    """An optimizer configuration trained for ``steps`` mini-batch steps (``scheduler``: (class name, kwargs))."""

    component: str
    optimizer: type
    kwargs: Dict[str, Any]
    scheduler: Optional[Tuple[str, Dict[str, Any]]] = None
    steps: int = 150
    extra: Dict[str, Any] = field(default_factory=dict)


def optimizer_cases() -> List[OptimCase]:
    """Every optimizer option that changes the arithmetic; a high learning rate; a mid-run lr change."""
    c = OptimCase
    return [
        c("SGD", optim.SGD, {"lr": 0.1}),
        c("SGD(momentum, dampening)", optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
        c("SGD(nesterov, weight_decay)", optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                                      "weight_decay": 1e-2}),
        c("SGD(maximize) + StepLR", optim.SGD, {"lr": 0.05, "momentum": 0.5, "maximize": True},
          ("StepLR", {"step_size": 50, "gamma": 0.3})),
        c("SGD high lr", optim.SGD, {"lr": 1.0}),
        c("Adam", optim.Adam, {"lr": 1e-2}),
        c("Adam(amsgrad, weight_decay)", optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}),
        c("Adam + CosineAnnealingLR", optim.Adam, {"lr": 2e-2}, ("CosineAnnealingLR", {"T_max": 100})),
        c("AdamW(amsgrad)", optim.AdamW, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
        c("RMSprop(centered, momentum)", optim.RMSprop, {"lr": 1e-2, "centered": True, "momentum": 0.9}),
        c("RMSprop(alpha, weight_decay)", optim.RMSprop, {"lr": 1e-2, "alpha": 0.9, "weight_decay": 1e-2}),
        c("Adagrad(lr_decay, initial_accumulator_value)", optim.Adagrad,
          {"lr": 0.1, "lr_decay": 1e-2, "initial_accumulator_value": 0.1}),
    ]


def mlp(dtype: np.dtype, rng: np.random.Generator) -> nn.Sequential:
    # The first Linear has no bias: before a BatchNorm its true gradient is 0 and the computed one is rounding
    # noise that differs between libraries, which adaptive optimizers would turn into real steps.
    return nn.Sequential(nn.Linear(4, 9, bias=False, dtype=dtype, rng=rng), nn.BatchNorm1d(9, dtype=dtype),
                         nn.ReLU(), nn.Dropout(0.2, rng=rng.spawn(1)[0]), nn.Linear(9, 3, dtype=dtype, rng=rng))



def trajectory_data(rng: np.random.Generator, dtype: np.dtype) -> Tuple[np.ndarray, np.ndarray]:
    """The optimizer runs' data set: 64 samples of 4 features on different scales, 3 linearly separable classes."""
    x_all = rng.normal(size=(64, 4)).astype(dtype) * rng.uniform(0.5, 2.0, 4).astype(dtype)
    return x_all, (x_all @ rng.normal(size=(4, 3))).argmax(axis=1)


# ---- initialisers ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitCase:
    """An initialiser of ``handnn.init`` / ``torch.nn.init`` (same name), its keyword arguments, the tensor shape."""

    component: str
    name: str
    kwargs: Dict[str, Any]
    shape: Tuple[int, ...]


def init_cases() -> List[InitCase]:
    """Every random initialiser; each fan mode and nonlinearity family; 2-d and 4-d (convolution-shaped) tensors."""
    c = InitCase
    return [
        c("init.uniform_(-0.5, 2)", "uniform_", {"a": -0.5, "b": 2.0}, (300, 200)),
        c("init.normal_(0.3, 2)", "normal_", {"mean": 0.3, "std": 2.0}, (300, 200)),
        c("init.xavier_uniform_(gain=2)", "xavier_uniform_", {"gain": 2.0}, (300, 200)),
        c("init.xavier_normal_ 4-d", "xavier_normal_", {}, (40, 30, 5, 5)),
        c("init.kaiming_uniform_", "kaiming_uniform_", {}, (300, 200)),
        c("init.kaiming_uniform_(a=sqrt(5)) (Linear's)", "kaiming_uniform_", {"a": 5 ** 0.5}, (300, 200)),
        c("init.kaiming_normal_(fan_out, relu)", "kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"},
          (300, 200)),
        c("init.kaiming_normal_(leaky_relu 0.2) 4-d", "kaiming_normal_", {"a": 0.2}, (40, 30, 5, 5)),
        c("init.trunc_normal_", "trunc_normal_", {}, (300, 200)),
        c("init.trunc_normal_(0.1, 0.02, -0.01, 0.15)", "trunc_normal_",
          {"mean": 0.1, "std": 0.02, "a": -0.01, "b": 0.15}, (300, 200)),
        c("init.orthogonal_(gain=2)", "orthogonal_", {"gain": 2.0}, (120, 80)),
        c("init.orthogonal_ wide 4-d", "orthogonal_", {}, (20, 6, 5, 5)),
    ]
