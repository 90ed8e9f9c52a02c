"""``to_torch`` / ``from_torch``: per-module training flags, dtypes, copies (never shared memory), every
supported torch layer converted to handnn and run side by side, and a ``TypeError`` for anything else.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from handnn import nn
from reference import MaskedDropout, assert_step_parity, from_torch, to_numpy, to_tensor, to_torch
from reference.calls import call, first
from reference.twin import TORCH_DTYPES

T = torch.nn


def _mixed_model(rng: np.random.Generator, dtype=np.float64) -> nn.Sequential:
    """Every kind of state (weights, None bias, running statistics, a Dropout), nested, all moved off init."""
    model = nn.Sequential(
        nn.Linear(6, 5, bias=False, dtype=dtype, rng=rng), nn.BatchNorm1d(5, dtype=dtype), nn.ReLU(),
        nn.Dropout(0.3, rng=rng),
        nn.Sequential(nn.BatchNorm1d(5, momentum=None, dtype=dtype), nn.LayerNorm(5, dtype=dtype),
                      nn.Linear(5, 4, dtype=dtype, rng=rng)))
    for _, param in model.named_parameters():
        param.data[...] = rng.uniform(0.5, 1.5, param.shape) * rng.choice([-1.0, 1.0], param.shape)
    for _, buf in model.named_buffers():
        buf[...] = rng.uniform(0.3, 2.0, buf.shape) if buf.dtype.kind == "f" else rng.integers(1, 20)
    return model


def _arrays(module: nn.Module) -> Dict[str, np.ndarray]:
    """The live arrays (not copies) behind every state_dict entry."""
    return {**{n: p.data for n, p in module.named_parameters()}, **dict(module.named_buffers())}


# ---- training flags ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_eval", [
    [], ["1"], ["4.0"], ["", "3"], ["1", "3", "4", "4.1"], ["", "0", "1", "2", "3", "4", "4.0", "4.1", "4.2"],
], ids=["all-train", "bn-eval", "inner-bn-eval", "root-and-dropout-eval", "mixed", "all-eval"])
def test_to_torch_keeps_each_training_flag(in_eval, rng):
    model = _mixed_model(rng)
    for name, module in model.named_modules():
        module.training = name not in in_eval  # one module at a time, not recursively
    twin = to_torch(model)
    flags = [(n, m.training) for n, m in model.named_modules()]
    assert [(n, m.training) for n, m in twin.named_modules()] == flags
    assert sum(not f for _, f in flags) == len(in_eval)
    # and the mixed-mode model computes what its twin computes (eval BatchNorms use running statistics)
    x, dout = rng.normal(size=(9, 6)), rng.normal(size=(9, 4))
    assert_step_parity(model, twin, x, dout)
    back = from_torch(twin)
    assert [(n, m.training) for n, m in back.named_modules()] == flags


# ---- dtype ---------------------------------------------------------------------------------------------------
def test_to_torch_keeps_dtype(dtype, rng):
    model = _mixed_model(rng, dtype)
    twin = to_torch(model)
    ours, theirs = model.state_dict(), twin.state_dict()
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        expected = torch.int64 if key.endswith("num_batches_tracked") else TORCH_DTYPES[np.dtype(dtype)]
        assert value.dtype == np.dtype(dtype) or key.endswith("num_batches_tracked")
        assert theirs[key].dtype == expected, key
    assert all(p.dtype == TORCH_DTYPES[np.dtype(dtype)] for p in twin.parameters())
    back = from_torch(twin)
    assert [(k, v.dtype) for k, v in back.state_dict().items()] == [(k, v.dtype) for k, v in ours.items()]
    x, dout = rng.normal(size=(9, 6)).astype(dtype), rng.normal(size=(9, 4)).astype(dtype)
    assert_step_parity(model, twin, x, dout)


# ---- copies, never shared memory -----------------------------------------------------------------------------
def test_to_torch_copies(rng):
    model = _mixed_model(rng)
    twin = to_torch(model)
    before = model.state_dict()
    arrays, tensors = _arrays(model), twin.state_dict()
    assert sorted(arrays) == sorted(tensors)
    for key, array in arrays.items():
        assert not np.shares_memory(array, tensors[key].numpy()), key
    with torch.no_grad():
        for tensor in tensors.values():
            tensor.add_(3)  # state_dict tensors alias the twin's parameters and buffers
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    snapshot = {k: to_numpy(v) for k, v in twin.state_dict().items()}
    for array in arrays.values():
        array += 5
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(to_numpy(value), snapshot[key], err_msg=key)


def test_from_torch_copies(rng):
    twin = to_torch(_mixed_model(rng))
    module = from_torch(twin)
    before = module.state_dict()
    tensors, arrays = twin.state_dict(), _arrays(module)
    assert sorted(arrays) == sorted(tensors)
    for key, array in arrays.items():
        assert not np.shares_memory(array, tensors[key].numpy()), key
    with torch.no_grad():
        for tensor in tensors.values():
            tensor.add_(3)
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_shared_module_stays_shared(rng):
    shared = nn.Linear(6, 4, rng=rng)
    model = nn.Sequential(shared, nn.Tanh(), nn.Sequential(nn.Linear(4, 6, rng=rng), shared))
    twin = to_torch(model)
    assert twin[0] is twin[2][1]
    back = from_torch(twin)
    assert back[0] is back[2][1]
    assert list(model.state_dict()) == list(twin.state_dict()) == list(back.state_dict())
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], to_numpy(value), err_msg=key)


# ---- from_torch for every supported torch layer ----------------------------------------------------------------
TorchFactory = Callable[[], torch.nn.Module]
TORCH_LAYERS: List[Tuple[str, TorchFactory, Tuple[int, ...]]] = [
    ("Linear", lambda: T.Linear(6, 4), (9, 6)),
    ("Linear-nobias", lambda: T.Linear(6, 4, bias=False), (9, 6)),
    ("BatchNorm1d", lambda: T.BatchNorm1d(5), (9, 5)),
    ("BatchNorm1d-cma-eps", lambda: T.BatchNorm1d(5, eps=1e-3, momentum=None), (7, 5, 4)),
    ("BatchNorm1d-bare", lambda: T.BatchNorm1d(5, affine=False, track_running_stats=False), (9, 5)),
    ("BatchNorm2d", lambda: T.BatchNorm2d(5, momentum=0.3), (7, 5, 4, 3)),
    ("LayerNorm", lambda: T.LayerNorm(6), (9, 6)),
    ("LayerNorm-2d-nobias", lambda: T.LayerNorm((4, 3), eps=1e-3, bias=False), (7, 5, 4, 3)),
    ("LayerNorm-noaffine", lambda: T.LayerNorm(6, elementwise_affine=False), (9, 6)),
    ("GroupNorm", lambda: T.GroupNorm(3, 6), (7, 6, 4)),
    ("GroupNorm-noaffine", lambda: T.GroupNorm(2, 6, eps=1e-4, affine=False), (7, 6, 4)),
    ("Dropout", lambda: T.Dropout(0.3), (9, 6)),
    ("Dropout2d", lambda: T.Dropout2d(0.3), (7, 5, 4, 3)),
    ("Conv1d", lambda: T.Conv1d(4, 6, 3, stride=2, padding=1), (5, 4, 9)),
    ("Conv1d-same-dilated-nobias", lambda: T.Conv1d(4, 6, 2, padding="same", dilation=2, bias=False), (5, 4, 9)),
    ("Conv2d", lambda: T.Conv2d(4, 6, 3, padding=1), (5, 4, 7, 6)),
    ("Conv2d-grouped-strided", lambda: T.Conv2d(4, 6, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2),
     (5, 4, 7, 6)),
    ("Conv2d-reflect-unbatched", lambda: T.Conv2d(4, 4, 3, padding=(1, 2), groups=4, padding_mode="reflect"),
     (4, 7, 6)),
    ("MaxPool2d", lambda: T.MaxPool2d(2), (5, 4, 7, 6)),
    ("MaxPool2d-padded-ceil", lambda: T.MaxPool2d(3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True),
     (5, 4, 7, 6)),
    ("AvgPool2d", lambda: T.AvgPool2d((2, 3)), (5, 4, 7, 6)),
    ("AvgPool2d-padded", lambda: T.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     (4, 7, 6)),
    ("AvgPool2d-divisor", lambda: T.AvgPool2d(2, stride=1, divisor_override=3), (5, 4, 7, 6)),
    ("AdaptiveAvgPool2d", lambda: T.AdaptiveAvgPool2d((3, None)), (5, 4, 7, 6)),
    ("AdaptiveAvgPool2d-global", lambda: T.AdaptiveAvgPool2d(1), (5, 4, 7, 6)),
    ("Embedding", lambda: T.Embedding(9, 5, padding_idx=2), (4, 6)),
    ("RNN", lambda: T.RNN(4, 5, 2, nonlinearity="relu"), (6, 3, 4)),
    ("LSTM", lambda: T.LSTM(4, 5, 2, bidirectional=True, batch_first=True), (3, 6, 4)),
    ("GRU", lambda: T.GRU(4, 5, bias=False), (6, 4)),
    ("RNNCell", lambda: T.RNNCell(4, 5), (3, 4)),
    ("LSTMCell", lambda: T.LSTMCell(4, 5), (3, 4)),
    ("GRUCell", lambda: T.GRUCell(4, 5, bias=False), (4,)),
    ("MultiheadAttention", lambda: T.MultiheadAttention(6, 3, add_bias_kv=True), (5, 3, 6)),
    ("MultiheadAttention-batch-first", lambda: T.MultiheadAttention(6, 2, batch_first=True, bias=False), (3, 5, 6)),
    ("TransformerEncoderLayer", lambda: T.TransformerEncoderLayer(6, 2, 10, dropout=0.0), (5, 3, 6)),
    ("TransformerEncoderLayer-gelu-prenorm", lambda: T.TransformerEncoderLayer(
        6, 3, 8, dropout=0.0, activation="gelu", batch_first=True, norm_first=True), (3, 5, 6)),
    ("Identity", lambda: T.Identity(), (9, 6)),
    ("Flatten", lambda: T.Flatten(), (7, 5, 4, 3)),
    ("Flatten-1-2", lambda: T.Flatten(1, 2), (7, 5, 4, 3)),
    ("ReLU", lambda: T.ReLU(), (9, 6)),
    ("LeakyReLU", lambda: T.LeakyReLU(0.2), (9, 6)),
    ("Sigmoid", lambda: T.Sigmoid(), (9, 6)),
    ("Tanh", lambda: T.Tanh(), (9, 6)),
    ("GELU", lambda: T.GELU(), (9, 6)),
    ("GELU-tanh", lambda: T.GELU(approximate="tanh"), (9, 6)),
    ("Softmax", lambda: T.Softmax(dim=1), (9, 6)),
    ("LogSoftmax", lambda: T.LogSoftmax(dim=-1), (9, 6)),
    ("Sequential", lambda: T.Sequential(T.Linear(6, 5), T.ReLU(), T.Sequential(T.LayerNorm(5), T.Linear(5, 4))),
     (9, 6)),
]
OPTIONS = ("in_features", "out_features", "num_features", "eps", "momentum", "affine", "track_running_stats",
           "normalized_shape", "elementwise_affine", "num_groups", "num_channels", "p", "start_dim", "end_dim",
           "negative_slope", "approximate", "dim", "in_channels", "out_channels", "kernel_size", "stride", "padding",
           "dilation", "groups", "padding_mode", "return_indices", "ceil_mode", "count_include_pad",
           "divisor_override", "output_size", "num_embeddings", "embedding_dim", "padding_idx", "input_size",
           "hidden_size", "num_layers", "nonlinearity", "batch_first", "bidirectional", "embed_dim", "num_heads",
           "kdim", "vdim", "add_zero_attn", "norm_first")


def test_every_supported_layer_is_listed():
    """Every handnn layer type with a twin has a torch layer above (so from_torch is tested for each)."""
    listed = {name.split("-")[0] for name, _, _ in TORCH_LAYERS}
    exported = {name for name in nn.__all__ if isinstance(getattr(nn, name), type)
                and issubclass(getattr(nn, name), nn.Module) and not name.endswith("Loss")}
    assert listed == exported - {"Module", "RNNBase", "RNNCellBase"}


def _randomize_torch(twin: torch.nn.Module, rng: np.random.Generator) -> None:
    """Values drawn from the test's rng, copied into torch's parameters and buffers."""
    with torch.no_grad():
        for _, param in twin.named_parameters():
            param.copy_(to_tensor(rng.uniform(0.5, 1.5, param.shape) * rng.choice([-1.0, 1.0], param.shape)))
        for _, buf in twin.named_buffers():
            value = rng.uniform(0.3, 2.0, buf.shape) if buf.is_floating_point() else rng.integers(1, 20)
            buf.copy_(torch.as_tensor(value))


@pytest.mark.parametrize("name, factory, shape", TORCH_LAYERS, ids=[n for n, _, _ in TORCH_LAYERS])
def test_from_torch(name, factory, shape, dtype, seed, rng):
    twin = factory().to(TORCH_DTYPES[np.dtype(dtype)])
    _randomize_torch(twin, rng)
    module = from_torch(twin, rng=rng)
    assert type(module).__name__ == type(twin).__name__
    # torch's MultiheadAttention holds a Linear subclass; its TransformerEncoderLayer's activation is a function
    # (handnn's is a parameter-free child module, documented)
    torch_modules = [(n, "Linear" if isinstance(m, T.Linear) else type(m).__name__) for n, m in twin.named_modules()]
    torch_names = {n for n, _ in torch_modules}
    assert [(n, type(m).__name__) for n, m in module.named_modules()
            if n in torch_names or not n.endswith("activation")] == torch_modules
    for (path, ours), (_, theirs) in zip(module.named_modules(), twin.named_modules()):
        for option in OPTIONS:
            if hasattr(theirs, option):
                assert getattr(ours, option) == getattr(theirs, option), f"{path or 'root'}.{option}"
    state, expected = module.state_dict(), twin.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(state[key], to_numpy(value), err_msg=key)
    if isinstance(twin, T.Embedding):  # indices
        x = rng.integers(0, twin.num_embeddings, shape)
    else:
        x = rng.normal(size=shape).astype(dtype)
    with torch.no_grad():
        out_shape = first(call(twin.eval(), to_tensor(x))).shape  # in eval: no running statistic moves
    for mode in (True, False):
        module.train(mode)
        twin.train(mode)
        dout = rng.normal(size=out_shape).astype(dtype)
        if isinstance(twin, T.Dropout) and mode:
            # torch's own mask into handnn: F.dropout(ones) under a seed, then the twin's forward under the same
            torch.manual_seed(seed)
            module.use_mask(TF.dropout(torch.ones(shape, dtype=TORCH_DTYPES[np.dtype(dtype)]), twin.p).numpy() != 0)
            torch.manual_seed(seed)
        if isinstance(twin, T.Dropout2d) and mode:  # likewise, one value per (sample, channel)
            torch.manual_seed(seed)
            noise = torch.ones(shape[:2] + (1, 1), dtype=TORCH_DTYPES[np.dtype(dtype)])
            module.use_mask(TF.dropout2d(noise, twin.p).numpy() != 0)
            torch.manual_seed(seed)
        # a cell's single step from the zero state gives weight_hh a gradient of exactly 0 on both sides
        nonzero = not isinstance(twin, torch.nn.RNNCellBase)
        assert_step_parity(module, twin, x, dout, prefix=f"training={mode}: ", nonzero=nonzero)


def test_from_torch_keeps_eval_mode(rng):
    twin = T.Sequential(T.BatchNorm1d(5), T.Dropout(0.3)).eval()
    twin[0].train()
    module = from_torch(twin, rng=rng)
    assert [(n, m.training) for n, m in module.named_modules()] == [("", False), ("0", True), ("1", False)]


# ---- unsupported modules ---------------------------------------------------------------------------------------
class Custom(nn.Module):
    def forward(self, input):
        return input


class LinearSubclass(nn.Linear):
    """A subclass may change forward: it must not silently get a plain Linear twin."""


class MSELoss(nn.MSELoss):
    """A user's loss that shares the name of a handnn loss is still not handnn's loss."""


@pytest.mark.parametrize("build, culprit", [
    (lambda: Custom(), "Custom"),
    (lambda: LinearSubclass(6, 4, rng=np.random.default_rng(0)), "LinearSubclass"),
    (lambda: MSELoss(), "MSELoss"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Sequential(Custom())), "Custom"),
], ids=["custom", "subclass", "loss-subclass", "nested"])
def test_to_torch_unsupported(build, culprit):
    with pytest.raises(TypeError, match=f"no torch twin for handnn module {culprit}$"):
        to_torch(build())


class TorchLinearSubclass(T.Linear):
    pass


@pytest.mark.parametrize("build, culprit", [
    (lambda: T.Conv3d(2, 3, 1), "Conv3d"),
    (lambda: TorchLinearSubclass(6, 4), "TorchLinearSubclass"),
    (lambda: T.MSELoss(), "MSELoss"),
    (lambda: T.Sequential(T.ReLU(), T.Sequential(T.ConvTranspose2d(2, 3, 1))), "ConvTranspose2d"),
], ids=["conv", "subclass", "loss", "nested"])
def test_from_torch_unsupported(build, culprit):
    with pytest.raises(TypeError, match=f"handnn has no counterpart of torch module {culprit}$"):
        from_torch(build())


def test_masked_dropout_twin_is_built(rng):
    """A handnn Dropout's twin follows that layer's masks (the twin class itself is tested elsewhere)."""
    dropout = nn.Dropout(0.3, rng=rng)
    twin = to_torch(dropout)
    assert isinstance(twin, MaskedDropout) and twin.source is dropout and twin.p == 0.3
    back = from_torch(twin, rng=rng)
    assert type(back) is nn.Dropout and back.p == 0.3 and back is not dropout
