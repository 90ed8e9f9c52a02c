"""What is timed: layers (forward + backward), losses, optimizer steps and the seeds' moons MLP, for both libraries.

Each case builds, for one size and dtype, two zero-argument callables doing the same work — one with handnn, one
with torch on the same inputs — and, for layers, the bytes handnn keeps for backward. Some cases add a third, a
*peer*: plain course code (:mod:`benchmarks.peers`) doing the same work, timed in the same run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from handnn import nn, optim
from reference import to_tensor, to_torch
from reference.optim import to_torch_optimizer

from . import peers

Work = Callable[[], object]

#: (rows, features) for 1-d layers and losses; (N, C, H, W) for the 2-d ones
SIZES_1D = {"tiny": (4, 8), "small": (32, 64), "medium": (512, 1024), "large": (4096, 1024)}
SIZES_2D = {"tiny": (2, 4, 3, 3), "small": (8, 16, 8, 8), "medium": (32, 64, 28, 28), "large": (64, 64, 56, 56)}


@dataclass
class Built:
    """The two callables of one case, and what the handnn layer keeps for backward (bytes; None: not a layer);
    optionally a third doing the same work with plain course code, and its name."""

    handnn: Work
    torch: Work
    cache_bytes: Optional[int] = None
    input_bytes: Optional[int] = None
    peer: Optional[Work] = None
    peer_name: str = ""
    models: Optional[Tuple[object, object]] = None  # a model row's (handnn model, torch twin), for the smoke test


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "layer" | "loss" | "optimizer" | "model"
    build: Callable[[str, np.dtype, np.random.Generator], Built]
    sizes: Optional[Tuple[str, ...]] = None  # the sizes it runs at (None: all)


# ---- layers ----------------------------------------------------------------------------------------------------
def _array_bytes(obj: object, seen: set) -> int:
    """Bytes of the distinct arrays reachable from a cache (NamedTuples, tuples, arrays; views count once)."""
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        if id(base) in seen or not isinstance(base, np.ndarray):
            return 0
        seen.add(id(base))
        return base.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_array_bytes(item, seen) for item in obj)
    return 0


def cache_bytes(module: nn.Module) -> int:
    """Bytes of every array the module and its children keep for backward (parameters excluded)."""
    seen: set = set()
    return sum(_array_bytes(getattr(m, "_cache", None), seen) for m in module.modules())


def _layer(factory: Callable[[int, np.dtype, np.random.Generator], nn.Module], two_d: bool = False,
           shapes: Optional[Dict[str, Tuple[int, ...]]] = None):
    """A case timing ``module(x)`` then ``module.backward(dout)``, and the twin's forward + autograd backward; the
    input shape per size from ``shapes``, else the 1-d or 2-d table."""

    def build(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
        shape = (shapes or (SIZES_2D if two_d else SIZES_1D))[size]
        module = factory(shape[1], dtype, rng)
        for m in module.modules():  # move norm parameters off 1/0 so no shortcut could apply
            if getattr(m, "weight", None) is not None and not isinstance(m, nn.Linear):
                m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
        twin = to_torch(module)
        x = rng.normal(size=shape).astype(dtype)
        out_shape = module(x).shape
        dout = rng.normal(size=out_shape).astype(dtype)
        kept = cache_bytes(module)
        if isinstance(module, nn.Dropout):
            mask = module.mask  # the twin reuses handnn's last mask; handnn draws a new one every call

        xt, doutt = to_tensor(x).requires_grad_(True), to_tensor(dout)

        def ours() -> object:
            module(x)
            return module.backward(dout)

        def theirs() -> object:
            xt.grad = None
            twin(xt).backward(doutt)
            return xt.grad

        return Built(ours, theirs, kept, x.nbytes)

    return build


def _bn1d(c, d, r):
    return nn.BatchNorm1d(c, dtype=d)


LAYERS: List[Case] = [
    Case("Linear", "layer", _layer(lambda c, d, r: nn.Linear(c, c, dtype=d, rng=r))),
    Case("ReLU", "layer", _layer(lambda c, d, r: nn.ReLU())),
    Case("GELU", "layer", _layer(lambda c, d, r: nn.GELU())),
    Case("GELU(tanh)", "layer", _layer(lambda c, d, r: nn.GELU("tanh"))),
    Case("BatchNorm1d", "layer", _layer(_bn1d)),
    Case("BatchNorm2d", "layer", _layer(lambda c, d, r: nn.BatchNorm2d(c, dtype=d), two_d=True)),
    Case("LayerNorm", "layer", _layer(lambda c, d, r: nn.LayerNorm(c, dtype=d))),
    Case("GroupNorm", "layer", _layer(lambda c, d, r: nn.GroupNorm(max(1, c // 8), c, dtype=d), two_d=True)),
    Case("Dropout", "layer", _layer(lambda c, d, r: nn.Dropout(0.3, rng=r))),
]

#: CIFAR-10 scale: a batch of 64 images of 32 x 32 (and tiny stand-ins for the smoke run)
CIFAR_32 = {"tiny": (2, 32, 8, 8), "medium": (64, 32, 32, 32)}
CIFAR_3 = {"tiny": (2, 3, 8, 8), "medium": (64, 3, 32, 32)}
NAIVE = {"tiny": (2, 3, 6, 6), "small": (4, 3, 16, 16)}


def _conv_vs_naive(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
    """Conv2d(3, 8, 3, padding=1) forward + backward, beside CS231n's four-loop ``conv_*_naive`` on the same
    input, weights and upstream gradient."""
    built = _layer(lambda c, d, r: nn.Conv2d(c, 8, 3, padding=1, dtype=d, rng=r), shapes=NAIVE)(size, dtype, rng)
    shape = NAIVE[size]
    weight, bias = (rng.normal(size=s).astype(dtype) for s in ((8, shape[1], 3, 3), (8,)))
    x = rng.normal(size=shape).astype(dtype)
    dout = rng.normal(size=(shape[0], 8) + shape[2:]).astype(dtype)

    def naive() -> object:
        _, cache = peers.conv_forward_naive(x, weight, bias, {"stride": 1, "pad": 1})
        return peers.conv_backward_naive(dout, cache)[0]

    built.peer, built.peer_name = naive, "CS231n conv_*_naive (4 loops)"
    return built


#: CIFAR-10 scale for fully connected layers: a batch of 200 flattened 32 x 32 x 3 images, as in CS231n's
#: assignment 2 (and a tiny stand-in for the smoke run)
CIFAR_FLAT = {"tiny": (4, 12), "medium": (200, 3072)}


def _norm_vs_course(kind: str):
    """BatchNorm1d or LayerNorm forward + backward on (N, D), beside CS231n's vectorised solution
    (:mod:`benchmarks.peers`) on the same input, parameters and upstream gradient."""

    def build(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
        factory = (lambda c, d, r: nn.BatchNorm1d(c, dtype=d)) if kind == "batch" else (
            lambda c, d, r: nn.LayerNorm(c, dtype=d))
        built = _layer(factory, shapes=CIFAR_FLAT)(size, dtype, rng)
        n, d = CIFAR_FLAT[size]
        gamma = rng.uniform(0.5, 1.5, d).astype(dtype)
        beta = rng.normal(size=d).astype(dtype)
        x = rng.normal(size=(n, d)).astype(dtype)
        dout = rng.normal(size=(n, d)).astype(dtype)
        forward, backward = ((peers.batchnorm_forward, peers.batchnorm_backward_alt) if kind == "batch"
                             else (peers.layernorm_forward, peers.layernorm_backward))

        def course() -> object:
            _, cache = forward(x, gamma, beta, {"mode": "train"})
            return backward(dout, cache)[0]

        built.peer = course
        built.peer_name = ("CS231n batchnorm_forward + batchnorm_backward_alt" if kind == "batch"
                           else "CS231n layernorm_forward + layernorm_backward")
        return built

    return build


NORMS_VS_COURSE: List[Case] = [
    Case("BatchNorm1d 3072 (CIFAR) vs course code", "layer", _norm_vs_course("batch"), sizes=tuple(CIFAR_FLAT)),
    Case("LayerNorm 3072 (CIFAR) vs course code", "layer", _norm_vs_course("layer"), sizes=tuple(CIFAR_FLAT)),
]
LAYERS += NORMS_VS_COURSE

CNN_LAYERS: List[Case] = [
    Case("Conv2d 32→64 3×3 pad 1 (CIFAR)", "layer",
         _layer(lambda c, d, r: nn.Conv2d(c, 64, 3, padding=1, dtype=d, rng=r), shapes=CIFAR_32),
         sizes=tuple(CIFAR_32)),
    Case("Conv2d 3→32 3×3 pad 1 (CIFAR)", "layer",
         _layer(lambda c, d, r: nn.Conv2d(c, 32, 3, padding=1, dtype=d, rng=r), shapes=CIFAR_3),
         sizes=tuple(CIFAR_3)),
    Case("Conv2d 3→8 3×3 pad 1 vs naive loops", "layer", _conv_vs_naive, sizes=tuple(NAIVE)),
    Case("MaxPool2d 2×2", "layer", _layer(lambda c, d, r: nn.MaxPool2d(2), two_d=True)),
    Case("AvgPool2d 2×2", "layer", _layer(lambda c, d, r: nn.AvgPool2d(2), two_d=True)),
]
LAYERS += CNN_LAYERS


# ---- sequences ---------------------------------------------------------------------------------------------------
#: (T, N, input, hidden): CS231n/d2l-scale recurrent layers, and a tiny stand-in for the smoke run
LSTM_SIZES = {"tiny": (5, 2, 4, 6), "medium": (50, 32, 64, 128)}
#: (L, N, embed_dim, num_heads)
MHA_SIZES = {"tiny": (4, 2, 8, 2), "medium": (64, 16, 128, 8)}


def _lstm(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
    """LSTM(input, hidden) forward + backward over T steps of a batch of N (time-major), gradient on the output."""
    t, n, i, h = LSTM_SIZES[size]
    module = nn.LSTM(i, h, dtype=dtype, rng=rng)
    twin = to_torch(module)
    x, dout = rng.normal(size=(t, n, i)).astype(dtype), rng.normal(size=(t, n, h)).astype(dtype)
    module(x)
    kept = cache_bytes(module)
    xt, doutt = to_tensor(x).requires_grad_(True), to_tensor(dout)

    def ours() -> object:
        module(x)
        return module.backward(dout, None)[0]

    def theirs() -> object:
        xt.grad = None
        twin(xt)[0].backward(doutt)
        return xt.grad

    return Built(ours, theirs, kept, x.nbytes)


def _mha(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
    """MultiheadAttention self-attention (need_weights=True, torch's default) forward + backward at L = S."""
    length, n, e, heads = MHA_SIZES[size]
    module = nn.MultiheadAttention(e, heads, dtype=dtype, rng=rng)
    twin = to_torch(module)
    x, dout = rng.normal(size=(length, n, e)).astype(dtype), rng.normal(size=(length, n, e)).astype(dtype)
    module(x, x, x)
    kept = cache_bytes(module)
    xt, doutt = to_tensor(x).requires_grad_(True), to_tensor(dout)

    def ours() -> object:  # the three gradients of one input summed, as autograd sums them into xt.grad
        module(x, x, x)
        dq, dk, dv = module.backward(dout, None)
        return dq + dk + dv

    def theirs() -> object:
        xt.grad = None
        twin(xt, xt, xt)[0].backward(doutt)
        return xt.grad

    return Built(ours, theirs, kept, x.nbytes)


def _charlm_step(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
    """One training step of ``handnn-experiment charlm``'s LSTM model at its default size (16 windows of 32
    characters, 2 layers of 64): forward, cross-entropy over every position, backward, clip_grad_norm_, Adam."""
    from handnn.experiments import charlm
    from reference.experiments import TorchCharLM

    config = charlm.Config() if size != "tiny" else charlm.Config(seq_len=4, batch_size=2, hidden_size=8)
    vocab = charlm.vocabulary()
    model = charlm.CharLM(len(vocab), config.embedding_dim, config.hidden_size, config.num_layers, "LSTM",
                          dtype=dtype, rng=rng)
    twin = TorchCharLM(model)
    opt = optim.Adam(model.parameters(), lr=config.lr)
    twin_opt = to_torch_optimizer(opt, model, twin)
    x, y = charlm.windows(charlm.encode(charlm.TEXT, vocab), config.seq_len, config.batch_size, rng)
    loss_fn, twin_loss = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def ours() -> object:
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        nn.utils.clip_grad_norm_(model.parameters(), config.max_norm)
        opt.step()

    def theirs() -> object:
        twin_opt.zero_grad()
        twin_loss(twin(xt), yt).backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), config.max_norm)
        twin_opt.step()

    return Built(ours, theirs, models=(model, twin))


SEQUENCE_LAYERS: List[Case] = [
    Case("LSTM 64→128, 50 steps × batch 32", "layer", _lstm, sizes=tuple(LSTM_SIZES)),
    Case("MultiheadAttention(128, 8), L = S = 64, batch 16", "layer", _mha, sizes=tuple(MHA_SIZES)),
]
LAYERS += SEQUENCE_LAYERS


# ---- losses ----------------------------------------------------------------------------------------------------
def _loss(kind: str):
    def build(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
        shape = SIZES_1D[size]
        x = rng.normal(size=shape).astype(dtype)
        if kind == "ce":
            loss, twin_loss = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
            target = rng.integers(0, shape[1], shape[0])
        else:
            loss, twin_loss = nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
            target = (rng.uniform(size=shape) < 0.5).astype(dtype)
        xt, tt = to_tensor(x).requires_grad_(True), torch.from_numpy(target)

        def ours() -> object:
            loss(x, target)
            return loss.backward()

        def theirs() -> object:
            xt.grad = None
            twin_loss(xt, tt).backward()
            return xt.grad

        return Built(ours, theirs)

    return build


LOSSES: List[Case] = [Case("CrossEntropyLoss", "loss", _loss("ce")), Case("BCEWithLogitsLoss", "loss", _loss("bce"))]


# ---- optimizer steps -------------------------------------------------------------------------------------------
def _optimizer(cls: type, **kwargs):
    """One ``step()`` over a (rows x features) weight and a bias, gradients fixed (set once)."""

    def build(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
        rows, cols = SIZES_1D[size]
        model = nn.Linear(cols, rows, dtype=dtype, rng=rng)
        for p in model.parameters():
            p.grad = rng.normal(size=p.shape).astype(dtype)
        opt = cls(model.parameters(), **kwargs)
        twin = to_torch(model)
        for (_, p), (_, t) in zip(model.named_parameters(), twin.named_parameters()):
            t.grad = to_tensor(p.grad)
        twin_opt = to_torch_optimizer(opt, model, twin)
        return Built(opt.step, twin_opt.step)

    return build


OPTIMIZERS: List[Case] = [
    Case("SGD(momentum=0.9)", "optimizer", _optimizer(optim.SGD, lr=1e-3, momentum=0.9)),
    Case("Adam", "optimizer", _optimizer(optim.Adam, lr=1e-4)),
    Case("RMSprop", "optimizer", _optimizer(optim.RMSprop, lr=1e-5)),
]


# ---- the seeds' moons MLP ----------------------------------------------------------------------------------------
MOONS_SIZES: Dict[str, Tuple[int, int]] = {"tiny": (20, 10), "small": (200, 100), "medium": (200, 100),
                                           "large": (200, 100)}


def _moons(size: str, dtype: np.dtype, rng: np.random.Generator) -> Built:
    """Seed 004's network: [2, 20, 3, 1] with ReLU, sigmoid cross-entropy, full-batch GD at lr 0.2, 200 samples.

    One timed call = ``iterations`` full-batch steps (forward, loss, backward, update)."""
    n, iterations = MOONS_SIZES[size]
    x = rng.normal(size=(n, 2)).astype(dtype)
    y = (x[:, :1] * x[:, 1:] > 0).astype(dtype)
    model = nn.Sequential(nn.Linear(2, 20, dtype=dtype, rng=rng), nn.ReLU(), nn.Linear(20, 3, dtype=dtype, rng=rng),
                          nn.ReLU(), nn.Linear(3, 1, dtype=dtype, rng=rng))
    loss_fn, opt = nn.BCEWithLogitsLoss(), None
    opt = optim.SGD(model.parameters(), lr=0.2)
    twin = to_torch(model)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.2)
    twin_loss = torch.nn.BCEWithLogitsLoss()
    xt, yt = to_tensor(x), to_tensor(y)

    def ours() -> object:
        for _ in range(iterations):
            opt.zero_grad()
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            opt.step()

    def theirs() -> object:
        for _ in range(iterations):
            twin_opt.zero_grad()
            twin_loss(twin(xt), yt).backward()
            twin_opt.step()

    return Built(ours, theirs, models=(model, twin))


MODELS: List[Case] = [Case("moons MLP [2, 20, 3, 1] x100 steps", "model", _moons, sizes=("tiny", "small")),
                      Case("char-LM training step (charlm's LSTM)", "model", _charlm_step, sizes=("tiny", "medium"))]

ALL: List[Case] = LAYERS + LOSSES + OPTIMIZERS + MODELS
