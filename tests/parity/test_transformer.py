"""Parity of ``TransformerEncoderLayer`` with torch's: output, dsrc and every parameter gradient in both
``norm_first`` settings, relu and gelu, masks of each kind, layouts (seq-first, batch_first, batch of one,
unbatched), ``bias=False``; dropout with masks injected (drawn as torch draws them) and drawn by a ``TorchGenerator``
continuing from the initialisation as torch's global generator does; torch's initialisation bit for bit; gradient
accumulation; eval; bad arguments raising torch's classes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from handnn.nn.modules.transformer import TransformerEncoderLayer
from handnn.random import TorchGenerator
from reference import assert_close
from reference.harness import assert_nonzero, torch_error
from reference.twin import TORCH_DTYPES

D_MODEL, NHEAD, FF, SEQ, BATCH = 8, 2, 12, 5, 3  # all different, so a wrong axis or reshape cannot pass


def tensor(a, grad: bool = False):
    return None if a is None else torch.from_numpy(np.array(a, copy=True)).requires_grad_(grad)


def make_pair(config: dict, dtype, rng):
    ours = TransformerEncoderLayer(D_MODEL, NHEAD, FF, **config, dtype=dtype, rng=rng)
    twin = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, **config, dtype=TORCH_DTYPES[dtype])
    twin.load_state_dict({key: torch.from_numpy(value.copy()) for key, value in ours.state_dict().items()})
    return ours, twin


def src_of(layout: str, dtype, rng) -> np.ndarray:
    shape = {"seq first": (SEQ, BATCH, D_MODEL), "batch_first": (BATCH, SEQ, D_MODEL),
             "batch of one": (SEQ, 1, D_MODEL), "unbatched": (SEQ, D_MODEL)}[layout]
    return rng.normal(size=shape).astype(dtype)


def masks_of(kind: str, n, dtype, rng) -> dict:
    """The layer's mask arguments (bool: True = masked)."""
    lead = () if n is None else (n,)
    if kind == "none":
        return {}
    if kind == "key padding, bool":
        kpm = rng.random(lead + (SEQ,)) < 0.4
        kpm[..., 0] = False
        return {"src_key_padding_mask": kpm}
    if kind == "a fully padded sample":
        kpm = np.zeros(lead + (SEQ,), bool)
        kpm[..., -2:] = True
        kpm[0] = True
        return {"src_key_padding_mask": kpm}
    if kind == "src_mask float":
        mask = rng.normal(size=(SEQ, SEQ)).astype(dtype)
        mask[rng.random((SEQ, SEQ)) < 0.3] = -np.inf
        mask[:, 0] = 0.0
        return {"src_mask": mask}
    if kind == "both bool, 3-d src_mask":
        heads = NHEAD * (1 if n is None else n)
        mask = rng.random((heads, SEQ, SEQ)) < 0.4
        mask[..., 0] = False
        kpm = rng.random(lead + (SEQ,)) < 0.3
        kpm[..., 0] = False
        return {"src_mask": mask, "src_key_padding_mask": kpm}
    if kind == "causal":
        return {"src_mask": ~np.tri(SEQ, SEQ, 0, dtype=bool), "is_causal": True}
    raise ValueError(kind)


def assert_layer_step(ours, twin, src, kwargs, rng, twin_seed=None):
    """One forward/backward on both sides: output, dsrc and every parameter gradient equal, torch's not ~0, the
    input and upstream gradient unchanged."""
    src_before = src.copy()
    out = ours(src, **kwargs)
    dout = rng.normal(size=out.shape).astype(out.dtype)
    dout_before = dout.copy()
    st = tensor(src, True)
    if twin_seed is not None:
        torch.manual_seed(twin_seed)
    out_t = twin(st, **{key: (tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kwargs.items()})
    out_t.backward(tensor(dout))
    dsrc = ours.backward(dout)
    assert_close(out, out_t.detach().numpy(), name="out")
    assert_close(dsrc, st.grad.numpy(), name="dsrc")
    assert_nonzero("dsrc", st.grad.numpy())
    theirs = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    ours_grads = {name: p.grad for name, p in ours.named_parameters()}
    assert set(ours_grads) == set(theirs)
    for name, grad in theirs.items():
        assert_close(ours_grads[name], grad, name=f"grad {name}")
        assert_nonzero(name, grad)
    np.testing.assert_array_equal(src, src_before, err_msg="the layer modified its input")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")
    return out


MASKS = ["none", "key padding, bool", "a fully padded sample", "src_mask float", "both bool, 3-d src_mask", "causal"]


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_layer_matches_torch_without_dropout(norm_first, activation, mask, dtype, rng):
    ours, twin = make_pair({"dropout": 0.0, "activation": activation, "norm_first": norm_first}, dtype, rng)
    src = src_of("seq first", dtype, rng)
    assert_layer_step(ours, twin, src, masks_of(mask, BATCH, dtype, rng), rng)


LAYOUTS = {"batch_first": ("batch_first", {"batch_first": True}, BATCH),
           "batch of one": ("batch of one", {}, 1),
           "unbatched": ("unbatched", {}, None),
           "bias=False": ("seq first", {"bias": False}, BATCH)}


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_layer_layouts_match_torch(norm_first, layout, dtype, rng):
    name, config, n = layout
    ours, twin = make_pair({"dropout": 0.0, "norm_first": norm_first, **config}, dtype, rng)
    assert_layer_step(ours, twin, src_of(name, dtype, rng), masks_of("both bool, 3-d src_mask", n, dtype, rng), rng)


def torch_order_masks(seed: int, dtype, shape_src, heads: int):
    """The keep-masks torch draws in a training forward after ``torch.manual_seed(seed)``, in its order: the
    attention weights (N · heads, L, L) on the SDPA path, then dropout1 (src's shape), dropout (FF features),
    dropout2; each ``empty(shape, dtype).bernoulli_(1 - p)``."""
    g = TorchGenerator(seed)
    seq, n = shape_src[0], shape_src[1]
    draw = lambda shape: g.bernoulli_(np.empty(shape, dtype), 1 - 0.3) != 0  # noqa: E731
    attention = draw((n, heads, seq, seq))
    return attention, draw(shape_src), draw(shape_src[:-1] + (FF,)), draw(shape_src)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_layer_with_injected_dropout_masks_matches_torch(norm_first, dtype, rng, seed):
    """Masks drawn as torch draws them, injected into every dropout of the layer (whose generators would draw other
    ones): torch's forward after ``manual_seed`` gives the same, and each module reports the mask it applied."""
    ours, twin = make_pair({"dropout": 0.3, "activation": "gelu", "norm_first": norm_first}, dtype, rng)
    src = src_of("seq first", dtype, rng)
    seed = seed % 2**31
    attention, m1, m, m2 = torch_order_masks(seed, dtype, src.shape, NHEAD)
    assert 0 < m.mean() < 1
    ours.self_attn.use_mask(attention)
    ours.dropout1.use_mask(m1)
    ours.dropout.use_mask(m)
    ours.dropout2.use_mask(m2)
    assert_layer_step(ours, twin, src, masks_of("key padding, bool", BATCH, dtype, rng), rng, twin_seed=seed)
    for module, mask in ((ours.self_attn, attention), (ours.dropout1, m1), (ours.dropout, m), (ours.dropout2, m2)):
        np.testing.assert_array_equal(module.mask, mask)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_layer_rng_continues_like_torchs_global_generator(norm_first, dtype, seed):
    """``rng=TorchGenerator(seed)`` draws the parameters torch draws after ``manual_seed(seed)``, then — the same
    generator going on — the dropout masks of two training steps, as torch's global generator goes on."""
    seed = seed % 2**31
    config = {"dropout": 0.3, "norm_first": norm_first}
    ours = TransformerEncoderLayer(D_MODEL, NHEAD, FF, **config, dtype=dtype, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    twin = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, **config, dtype=TORCH_DTYPES[dtype])
    data = np.random.default_rng(seed)
    for _ in range(2):
        assert_layer_step(ours, twin, src_of("seq first", dtype, data), {}, data)


@pytest.mark.parametrize("config", [{}, {"activation": "gelu", "norm_first": True}, {"bias": False},
                                    {"batch_first": True, "dim_feedforward": 7}],
                         ids=["default", "gelu, pre-norm", "no bias", "batch_first"])
def test_layer_initialisation_is_torchs_bit_for_bit(config, dtype, seed):
    seed = seed % 2**31
    config = {"dim_feedforward": FF, **config}
    ours = TransformerEncoderLayer(D_MODEL, NHEAD, **config, dtype=dtype, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    twin = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, **config, dtype=TORCH_DTYPES[dtype])
    theirs, mine = twin.state_dict(), ours.state_dict()
    assert list(mine) == list(theirs)
    for key in theirs:
        np.testing.assert_array_equal(mine[key], theirs[key].numpy(), err_msg=key)
    # torch's children, in its order (handnn's activation is a parameter-free module, torch's a function)
    assert [name for name, _ in ours.named_children()] == [name for name, _ in twin.named_children()] + ["activation"]


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_layer_gradients_accumulate_over_two_steps(norm_first, dtype, rng):
    ours, twin = make_pair({"dropout": 0.0, "norm_first": norm_first}, dtype, rng)
    twin.zero_grad()
    sources = [src_of("seq first", dtype, rng) for _ in range(2)]
    for src in sources:
        out = ours(src)
        dout = rng.normal(size=out.shape).astype(dtype)
        ours.backward(dout)
        twin(tensor(src)).backward(tensor(dout))
    theirs = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs[name].grad.numpy(), name=f"accumulated {name}")
    single = TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, norm_first=norm_first, dtype=dtype, rng=rng)
    single.load_state_dict(ours.state_dict())
    single(sources[-1])
    single.backward(np.ones_like(sources[-1]))
    assert not np.allclose(single.linear1.weight.grad, ours.linear1.weight.grad)


def test_layer_eval_has_no_dropout(dtype, rng):
    ours, twin = make_pair({"dropout": 0.5}, dtype, rng)
    ours.eval()
    twin.eval()
    assert_layer_step(ours, twin, src_of("seq first", dtype, rng), masks_of("key padding, bool", BATCH, dtype, rng),
                      rng)


def raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the class is what the caller compares
        return exc
    raise AssertionError("accepted")


@pytest.mark.parametrize("args, kwargs", [((D_MODEL, 3), {}), ((D_MODEL, NHEAD), {"activation": "tanh"})],
                         ids=["d_model not divisible by nhead", "unknown activation"])
def test_layer_constructor_errors_are_torchs(args, kwargs):
    expected = torch_error(lambda: torch.nn.TransformerEncoderLayer(*args, **kwargs))
    got = raised(lambda: TransformerEncoderLayer(*args, **kwargs, rng=np.random.default_rng(0)))
    assert type(got) is type(expected), (got, expected)


@pytest.mark.parametrize("kwargs", [{"src_key_padding_mask": np.zeros((BATCH, SEQ), np.int64)},
                                    {"is_causal": True}, {"src_mask": np.zeros((SEQ, SEQ + 1), bool)}],
                         ids=["integer mask", "is_causal without a mask", "src_mask of a wrong shape"])
def test_layer_bad_inputs_raise_torchs_class(kwargs, rng):
    ours, twin = make_pair({"dropout": 0.0}, np.dtype(np.float64), rng)
    src = src_of("seq first", np.float64, rng)
    expected = torch_error(lambda: twin(tensor(src), **{key: (tensor(v) if isinstance(v, np.ndarray) else v)
                                                        for key, v in kwargs.items()}))
    got = raised(lambda: ours(src, **kwargs))
    assert type(got) is type(expected), (got, expected)


def test_layer_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        TransformerEncoderLayer(D_MODEL, NHEAD, FF, rng=np.random.default_rng(0)).backward(np.ones((SEQ, D_MODEL)))
