"""Parity of ``scaled_dot_product_attention_forward/backward`` and ``MultiheadAttention`` with torch: outputs, the
returned attention weights, dq/dk/dv (dquery/dkey/dvalue) and every parameter gradient against torch's autograd, over
masks of each kind (bool and float, 2-d and 3-d, key padding, causal, fully masked rows), batch dims, layouts
(seq-first, batch_first, batch of one, unbatched), kdim/vdim, add_bias_kv, add_zero_attn, need_weights and
average_attn_weights, attention dropout with masks drawn as torch draws them and injected, torch's initialisation bit
for bit, gradient accumulation, and bad inputs raising torch's classes."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import pytest
import torch

from handnn.functional.attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from handnn.nn.modules.attention import MultiheadAttention
from handnn.random import TorchGenerator
from reference import assert_close
from reference.harness import assert_nonzero, torch_error
from reference.twin import TORCH_DTYPES

B, H_, L, S, E, EV = 2, 3, 4, 6, 5, 7  # SDPA: batch, heads, target, source, embedding, value dims: all different


def tensor(a: Optional[np.ndarray], grad: bool = False) -> Optional[torch.Tensor]:
    return None if a is None else torch.from_numpy(np.array(a, copy=True)).requires_grad_(grad)


def raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the class is what the caller compares
        return exc
    raise AssertionError("the input was accepted where a rejection was expected")


# ==== scaled_dot_product_attention =================================================================================
SDPA_SHAPES = {
    "4-d": ((B, H_, L, E), (B, H_, S, E), (B, H_, S, EV)),
    "3-d": ((H_, L, E), (H_, S, E), (H_, S, EV)),
    "2-d": ((L, E), (S, E), (S, EV)),
    "broadcast batch dims": ((B, H_, L, E), (1, H_, S, E), (H_, S, EV)),
    "one query, L > S": ((B, 1, 7, E), (B, 1, 3, E), (B, 1, 3, EV)),
}


def _sdpa_mask(kind: str, q_shape, k_shape, rng) -> Dict[str, object]:
    """SDPA's keyword arguments for a mask kind (bool: True = attend)."""
    lq, sk = q_shape[-2], k_shape[-2]
    if kind == "none":
        return {}
    if kind == "bool, a fully masked row":
        mask = rng.random((lq, sk)) < 0.6
        mask[:, 0] = True
        mask[1] = False
        return {"attn_mask": mask}
    if kind == "bool, broadcast over a batch dim":
        mask = rng.random((q_shape[0], 1, lq, sk) if len(q_shape) == 4 else (lq, sk)) < 0.6
        mask[..., 0] = True
        return {"attn_mask": mask}
    if kind == "float with -inf, a -inf row":
        mask = rng.normal(size=(lq, sk))
        mask[rng.random((lq, sk)) < 0.3] = -np.inf
        mask[:, 1] = 0.5
        mask[-1] = -np.inf
        return {"attn_mask": mask}
    if kind == "causal":
        return {"is_causal": True}
    if kind == "scale 0.3":
        return {"scale": 0.3}
    raise ValueError(kind)


SDPA_MASKS = ["none", "bool, a fully masked row", "bool, broadcast over a batch dim", "float with -inf, a -inf row",
              "causal", "scale 0.3"]


def _torch_sdpa(q, k, v, dout, kwargs, seed: Optional[int] = None):
    qt, kt, vt = tensor(q, True), tensor(k, True), tensor(v, True)
    kw = dict(kwargs)
    if "attn_mask" in kw:
        kw["attn_mask"] = tensor(kw["attn_mask"])
    if seed is not None:
        torch.manual_seed(seed)
    out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, **kw)
    out.backward(tensor(dout))
    return out.detach().numpy(), qt.grad.numpy(), kt.grad.numpy(), vt.grad.numpy()


@pytest.mark.parametrize("mask", SDPA_MASKS)
@pytest.mark.parametrize("shapes", list(SDPA_SHAPES.values()), ids=list(SDPA_SHAPES))
def test_sdpa_matches_torch(shapes, mask, dtype, rng):
    q, k, v = (rng.normal(size=s).astype(dtype) for s in shapes)
    kwargs = _sdpa_mask(mask, shapes[0], shapes[1], rng)
    if "attn_mask" in kwargs and kwargs["attn_mask"].dtype.kind == "f":
        kwargs["attn_mask"] = kwargs["attn_mask"].astype(dtype)
    before = [a.copy() for a in (q, k, v)]
    out, cache = scaled_dot_product_attention_forward(q, k, v, **kwargs)
    dout = rng.normal(size=out.shape).astype(dtype)
    dout_before = dout.copy()
    out_t, dq_t, dk_t, dv_t = _torch_sdpa(q, k, v, dout, kwargs)
    dq, dk, dv = scaled_dot_product_attention_backward(dout, cache)
    for name, ours, theirs in (("out", out, out_t), ("dq", dq, dq_t), ("dk", dk, dk_t), ("dv", dv, dv_t)):
        assert_close(ours, theirs, name=name)
        if name != "out":
            assert_nonzero(name, theirs)
    for a, b in zip((q, k, v, dout), (*before, dout_before)):
        np.testing.assert_array_equal(a, b, err_msg="an input was modified")
    np.testing.assert_array_equal(scaled_dot_product_attention_backward(dout, cache)[1], dk)  # cache reusable


def test_sdpa_fully_masked_row_is_zero_with_zero_gradients(rng):
    """torch's SDPA gives 0 (not NaN) for a query row whose every key is masked, and zero gradients for it."""
    q, k, v = (rng.normal(size=s) for s in SDPA_SHAPES["4-d"])
    mask = np.ones((L, S), bool)
    mask[2] = False
    out, cache = scaled_dot_product_attention_forward(q, k, v, attn_mask=mask)
    dq, _, _ = scaled_dot_product_attention_backward(np.ones_like(out), cache)
    assert np.all(out[..., 2, :] == 0) and np.all(dq[..., 2, :] == 0) and np.all(np.isfinite(out))


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_sdpa_dropout_drawn_and_injected_like_torch(p, dtype, rng, seed):
    """torch draws the weights' keep-mask as ``F.dropout`` does: ``rng=TorchGenerator(seed)`` draws the same after
    ``torch.manual_seed(seed)``, and the same mask injected (with a NumPy generator beside it) gives the same."""
    q, k, v = (rng.normal(size=s).astype(dtype) for s in SDPA_SHAPES["4-d"])
    dout = rng.normal(size=(B, H_, L, EV)).astype(dtype)
    out_t, dq_t, dk_t, dv_t = _torch_sdpa(q, k, v, dout, {"dropout_p": p}, seed=seed % 2**31)
    keep = TorchGenerator(seed % 2**31).bernoulli_(np.empty((B, H_, L, S), dtype), 1 - p) != 0
    for kwargs in ({"rng": TorchGenerator(seed % 2**31)}, {"rng": np.random.default_rng(0), "dropout_mask": keep}):
        out, cache = scaled_dot_product_attention_forward(q, k, v, dropout_p=p, **kwargs)
        dq, dk, dv = scaled_dot_product_attention_backward(dout, cache)
        for name, ours, theirs in (("out", out, out_t), ("dq", dq, dq_t), ("dk", dk, dk_t), ("dv", dv, dv_t)):
            assert_close(ours, theirs, name=name)
    if p < 1:
        assert_nonzero("dq", dq_t)
        assert 0 < keep.mean() < 1


@pytest.mark.parametrize("empty", ["L", "S"])
def test_sdpa_empty_sequences_like_torch(empty, dtype, rng):
    """No query: an empty output. No key: torch's zeros (a softmax over nothing, then a product with nothing)."""
    shapes = [list(s) for s in SDPA_SHAPES["4-d"]]
    if empty == "L":
        shapes[0][-2] = 0
    else:
        shapes[1][-2] = shapes[2][-2] = 0
    q, k, v = (rng.normal(size=s).astype(dtype) for s in shapes)
    out, cache = scaled_dot_product_attention_forward(q, k, v)
    dout = rng.normal(size=out.shape).astype(dtype)
    expected = _torch_sdpa(q, k, v, dout, {})
    for name, ours, theirs in zip(("out", "dq", "dk", "dv"), (out, *scaled_dot_product_attention_backward(dout, cache)),
                                  expected):
        assert_close(ours, theirs, name=name)


def test_sdpa_numpy_generator_keep_rate(rng):
    q, k, v = (rng.normal(size=s) for s in ((8, 40, E), (8, 50, E), (8, 50, EV)))
    _, cache = scaled_dot_product_attention_forward(q, k, v, dropout_p=0.25, rng=rng)
    keep = cache.noise != 0
    assert abs(keep.mean() - 0.75) < 0.02
    np.testing.assert_allclose(cache.noise[keep], 1 / 0.75)
    # no dropout at p <= 0 (torch reads a negative p as none), nor without one
    assert scaled_dot_product_attention_forward(q, k, v, dropout_p=-0.5)[1].noise is None
    # without a generator, a fresh one draws (never NumPy's global state)
    assert scaled_dot_product_attention_forward(q, k, v, dropout_p=0.5)[1].noise is not None


SDPA_BAD = {
    "dtypes differ": (lambda q, k, v: (q.astype(np.float32), k, v), {}),
    "1-d": (lambda q, k, v: (q[0, 0, 0], k[0, 0, 0], v[0, 0, 0]), {}),
    "embedding differs": (lambda q, k, v: (q, k[..., :4], v), {}),
    "source lengths differ": (lambda q, k, v: (q, k, v[..., :5, :]), {}),
    "integer inputs": (lambda q, k, v: (q.astype(np.int64), k.astype(np.int64), v.astype(np.int64)), {}),
    "mask and is_causal": (lambda q, k, v: (q, k, v), {"attn_mask": np.ones((L, S), bool), "is_causal": True}),
    "mask of a wrong shape": (lambda q, k, v: (q, k, v), {"attn_mask": np.ones((L, 5), bool)}),
    "integer mask": (lambda q, k, v: (q, k, v), {"attn_mask": np.ones((L, S), np.int64)}),
    "dropout above 1": (lambda q, k, v: (q, k, v), {"dropout_p": 1.5}),
}


@pytest.mark.parametrize("make, kwargs", list(SDPA_BAD.values()), ids=list(SDPA_BAD))
def test_sdpa_bad_inputs_raise_torchs_class(make, kwargs, rng):
    q, k, v = make(*(rng.normal(size=s) for s in SDPA_SHAPES["4-d"]))
    tkw = {key: (tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kwargs.items()}
    expected = torch_error(lambda: torch.nn.functional.scaled_dot_product_attention(
        tensor(q), tensor(k), tensor(v), **tkw))
    got = raised(lambda: scaled_dot_product_attention_forward(q, k, v, rng=rng, **kwargs))
    assert type(got) is type(expected), f"handnn raised {type(got).__name__}: {got}; torch {expected!r}"


def test_sdpa_bad_dropout_mask(rng):
    q, k, v = (rng.normal(size=s) for s in SDPA_SHAPES["4-d"])
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention_forward(q, k, v, dropout_p=0.5, dropout_mask=np.ones((B, H_, L, S)))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 6\)"):
        scaled_dot_product_attention_forward(q, k, v, dropout_p=0.5, dropout_mask=np.ones((B, H_, L, 5), bool))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        scaled_dot_product_attention_forward(q.tolist(), k, v)


# ==== MultiheadAttention ===========================================================================================
EMBED, HEADS, TGT, SRC, BATCH, KDIM, VDIM = 12, 3, 4, 5, 3, 7, 9

MHA_CONFIGS = {
    "default": {},
    "kdim, vdim": {"kdim": KDIM, "vdim": VDIM},
    "add_bias_kv": {"add_bias_kv": True},
    "add_zero_attn": {"add_zero_attn": True},
    "add_bias_kv, add_zero_attn, kdim": {"add_bias_kv": True, "add_zero_attn": True, "kdim": KDIM},
    "no bias": {"bias": False},
}
LAYOUTS = {"seq first": (False, BATCH), "batch_first": (True, BATCH), "batch of one": (False, 1),
           "unbatched": (False, None)}


def make_pair(config: dict, dtype, rng, batch_first: bool = False):
    """A handnn MultiheadAttention and a torch twin holding copies of its parameters (same class and args)."""
    ours = MultiheadAttention(EMBED, HEADS, batch_first=batch_first, **config, dtype=dtype, rng=rng)
    twin = torch.nn.MultiheadAttention(EMBED, HEADS, batch_first=batch_first, **config, dtype=TORCH_DTYPES[dtype])
    twin.load_state_dict({key: torch.from_numpy(value.copy()) for key, value in ours.state_dict().items()})
    return ours, twin


def inputs(config: dict, layout: str, dtype, rng):
    batch_first, n = LAYOUTS[layout]

    def shape(t, features):
        if n is None:
            return (t, features)
        return (n, t, features) if batch_first else (t, n, features)

    return (rng.normal(size=shape(TGT, EMBED)).astype(dtype),
            rng.normal(size=shape(SRC, config.get("kdim", EMBED))).astype(dtype),
            rng.normal(size=shape(SRC, config.get("vdim", EMBED))).astype(dtype))


def mha_masks(kind: str, n: Optional[int], dtype, rng) -> dict:
    """MultiheadAttention's mask arguments (bool: True = masked); never a fully masked row."""
    lead = () if n is None else (n,)
    heads = HEADS * (1 if n is None else n)

    def bool_mask(shape):  # keys 0 and 1 always attended: no one-hot row (its dq would be exactly 0)
        mask = rng.random(shape) < 0.4
        mask[..., :2] = False
        return mask

    def float_mask(shape):
        mask = rng.normal(size=shape).astype(dtype)
        mask[rng.random(shape) < 0.2] = -np.inf
        mask[..., 1] = 0.25
        return mask

    if kind == "none":
        return {}
    if kind == "key padding, bool":
        return {"key_padding_mask": bool_mask(lead + (SRC,))}
    if kind == "key padding, float":
        return {"key_padding_mask": float_mask(lead + (SRC,))}
    if kind == "attn_mask 2-d bool":
        return {"attn_mask": bool_mask((TGT, SRC))}
    if kind == "attn_mask 3-d float":
        return {"attn_mask": float_mask((heads, TGT, SRC))}
    if kind == "both bool":
        return {"key_padding_mask": bool_mask(lead + (SRC,)), "attn_mask": bool_mask((TGT, SRC))}
    if kind == "both float, 3-d":
        return {"key_padding_mask": float_mask(lead + (SRC,)), "attn_mask": float_mask((heads, TGT, SRC))}
    if kind == "causal":
        return {"attn_mask": ~np.tri(TGT, SRC, 0, dtype=bool), "is_causal": True}
    raise ValueError(kind)


MASK_KINDS = ["none", "key padding, bool", "key padding, float", "attn_mask 2-d bool", "attn_mask 3-d float",
              "both bool", "both float, 3-d", "causal"]
OUTPUTS = {"weights averaged": dict(need_weights=True, average_attn_weights=True),
           "weights per head": dict(need_weights=True, average_attn_weights=False),
           "no weights (SDPA path)": dict(need_weights=False)}


def torch_step(twin, q, k, v, dout, dweights, kwargs, self_attention=False, seed=None):
    """One forward/backward of the twin; ``(out, weights, dq, dk, dv, {name: grad})``."""
    qt = tensor(q, True)
    kt, vt = (qt, qt) if self_attention else (tensor(k, True), tensor(v, True))
    kw = {key: (tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kwargs.items()}
    if seed is not None:
        torch.manual_seed(seed)
    out, weights = twin(qt, kt, vt, **kw)
    loss = (out * tensor(dout)).sum()
    if weights is not None and dweights is not None:
        loss = loss + (weights * tensor(dweights)).sum()
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in twin.named_parameters() if p.grad is not None}
    if self_attention:
        return out.detach().numpy(), weights, qt.grad.numpy(), None, None, grads
    return (out.detach().numpy(), None if weights is None else weights.detach().numpy(), qt.grad.numpy(),
            kt.grad.numpy(), vt.grad.numpy(), grads)


def assert_mha_step(ours, twin, q, k, v, kwargs, rng, nonzero=True, seed=None, twin_seed=None):
    """Forward with ``kwargs`` on both sides, random upstream gradients on the output and the weights, everything
    compared (torch's gradients not ~0), inputs and upstream gradients unchanged."""
    before = [a.copy() for a in (q, k, v)]
    out, weights = ours(q, k, v, **kwargs)
    dout = rng.normal(size=out.shape).astype(out.dtype)
    dweights = None if weights is None else rng.normal(size=weights.shape).astype(out.dtype)
    grads_before = [None if d is None else d.copy() for d in (dout, dweights)]
    out_t, w_t, dq_t, dk_t, dv_t, grads_t = torch_step(twin, q, k, v, dout, dweights, kwargs, seed=twin_seed)
    dq, dk, dv = ours.backward(dout, dweights)
    assert (weights is None) == (w_t is None)
    pairs = [("out", out, out_t), ("dquery", dq, dq_t), ("dkey", dk, dk_t), ("dvalue", dv, dv_t)]
    if weights is not None:
        pairs.append(("attn_weights", weights, w_t))
    ours_grads = {name: p.grad for name, p in ours.named_parameters()}
    assert set(ours_grads) == set(grads_t)
    pairs += [(f"grad {name}", ours_grads[name], grads_t[name]) for name in grads_t]
    for name, a, b in pairs:
        assert_close(a, b, name=name)
        if nonzero and name not in ("out", "attn_weights"):
            assert_nonzero(name, b)
    for a, b in zip((q, k, v, dout, dweights), (*before, *grads_before)):
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg="an input or upstream gradient was modified")


@pytest.mark.parametrize("outputs", list(OUTPUTS.values()), ids=list(OUTPUTS))
@pytest.mark.parametrize("mask", MASK_KINDS)
def test_mha_masks_and_outputs_match_torch(mask, outputs, dtype, rng):
    config = MHA_CONFIGS["default"]
    ours, twin = make_pair(config, dtype, rng)
    q, k, v = inputs(config, "seq first", dtype, rng)
    assert_mha_step(ours, twin, q, k, v, {**mha_masks(mask, BATCH, dtype, rng), **outputs}, rng)


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
@pytest.mark.parametrize("config", list(MHA_CONFIGS.values()), ids=list(MHA_CONFIGS))
def test_mha_configurations_and_layouts_match_torch(config, layout, dtype, rng):
    batch_first, n = LAYOUTS[layout]
    ours, twin = make_pair(config, dtype, rng, batch_first)
    q, k, v = inputs(config, layout, dtype, rng)
    masks = mha_masks("both bool" if layout != "batch of one" else "attn_mask 3-d float", n, dtype, rng)
    outputs = OUTPUTS[list(OUTPUTS)[len(config) % 3]]
    assert_mha_step(ours, twin, q, k, v, {**masks, **outputs}, rng)


@pytest.mark.parametrize("outputs", list(OUTPUTS.values()), ids=list(OUTPUTS))
@pytest.mark.parametrize("config", [MHA_CONFIGS["default"], MHA_CONFIGS["add_bias_kv"]], ids=["default", "bias_kv"])
def test_mha_self_attention_gradients_sum_to_torchs(config, outputs, dtype, rng):
    """``query is key is value``: the three returned gradients are each path's; their sum is torch's x.grad."""
    ours, twin = make_pair(config, dtype, rng, batch_first=True)
    x = rng.normal(size=(BATCH, TGT, EMBED)).astype(dtype)
    out, weights = ours(x, x, x, **outputs)
    dout = rng.normal(size=out.shape).astype(dtype)
    out_t, _, dx_t, _, _, grads_t = torch_step(twin, x, x, x, dout, None, outputs, self_attention=True)
    dq, dk, dv = ours.backward(dout)
    assert_close(out, out_t, name="out")
    assert_close(dq + dk + dv, dx_t, name="dx")
    assert_nonzero("dx", dx_t)
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads_t[name], name=name)


@pytest.mark.parametrize("outputs", list(OUTPUTS.values()), ids=list(OUTPUTS))
def test_mha_fully_masked_rows_like_torch(outputs, dtype, rng):
    """A sample whose every key is padding: NaN output and gradients with the weights (torch's softmax of a −inf
    row), zeros without them (torch's SDPA). Every NaN in the same place as torch's."""
    ours, twin = make_pair({}, dtype, rng)
    q, k, v = inputs({}, "seq first", dtype, rng)
    kpm = np.zeros((BATCH, SRC), bool)
    kpm[1] = True
    kwargs = {"key_padding_mask": kpm, **outputs}
    assert_mha_step(ours, twin, q, k, v, kwargs, rng, nonzero=False)
    out, _ = ours(q, k, v, **kwargs)
    assert np.isnan(out[:, 1]).all() == outputs["need_weights"]


def test_mha_zero_attn_rescues_fully_masked_rows(dtype, rng):
    ours, twin = make_pair({"add_zero_attn": True}, dtype, rng)
    q, k, v = inputs({"add_zero_attn": True}, "seq first", dtype, rng)
    kpm = np.zeros((BATCH, SRC), bool)
    kpm[0] = True
    assert_mha_step(ours, twin, q, k, v, {"key_padding_mask": kpm}, rng)


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_is_causal_hint_like_torch(need_weights, dtype, rng):
    """torch requires attn_mask with is_causal; on the SDPA path (no weights, no key padding) it applies the causal
    mask *instead of* attn_mask — here a non-causal one, so the difference would show."""
    ours, twin = make_pair({}, dtype, rng)
    q, k, v = inputs({}, "seq first", dtype, rng)
    mask = np.zeros((TGT, SRC), bool)
    mask[:, 2] = True
    assert_mha_step(ours, twin, q, k, v, {"attn_mask": mask, "is_causal": True, "need_weights": need_weights}, rng)


@pytest.mark.parametrize("layout", ["seq first", "unbatched"])
@pytest.mark.parametrize("outputs", list(OUTPUTS.values()), ids=list(OUTPUTS))
def test_mha_dropout_drawn_and_injected_like_torch(outputs, layout, dtype, rng, seed):
    """The attention weights' keep-mask: drawn by ``TorchGenerator(seed)`` as torch draws it after
    ``torch.manual_seed(seed)`` (on the weights path and the SDPA path alike), and injected with ``use_mask``."""
    config = {"dropout": 0.4, "add_zero_attn": True}
    _, n = LAYOUTS[layout]
    q, k, v = inputs(config, layout, dtype, rng)
    masks = mha_masks("key padding, bool", n, dtype, rng)
    seed = seed % 2**31
    ours, twin = make_pair(config, dtype, rng)
    ours.rng = TorchGenerator(seed)
    assert_mha_step(ours, twin, q, k, v, {**masks, **outputs}, rng, twin_seed=seed)
    drawn = ours.mask
    shape = (HEADS, TGT, SRC + 1) if n is None else (n, HEADS, TGT, SRC + 1)
    expected = TorchGenerator(seed).bernoulli_(np.empty(shape, dtype), 1 - 0.4) != 0
    np.testing.assert_array_equal(drawn, expected)
    ours2, twin2 = make_pair(config, dtype, rng)
    ours2.rng = np.random.default_rng(1)  # would draw another mask: the injected one must be used
    ours2.use_mask(expected)
    assert_mha_step(ours2, twin2, q, k, v, {**masks, **outputs}, rng, twin_seed=seed)
    np.testing.assert_array_equal(ours2.mask, expected)


def test_mha_eval_has_no_dropout(dtype, rng):
    ours, twin = make_pair({"dropout": 0.5}, dtype, rng)
    ours.eval()
    twin.eval()
    q, k, v = inputs({}, "seq first", dtype, rng)
    assert_mha_step(ours, twin, q, k, v, {}, rng)
    assert ours.mask is None


@pytest.mark.parametrize("config", [MHA_CONFIGS["default"], MHA_CONFIGS["add_bias_kv, add_zero_attn, kdim"]],
                         ids=["default", "bias_kv, zero_attn, kdim"])
def test_mha_gradients_accumulate_over_two_steps(config, dtype, rng):
    ours, twin = make_pair(config, dtype, rng, batch_first=True)
    steps = [inputs(config, "batch_first", dtype, rng) for _ in range(2)]
    twin.zero_grad()
    for q, k, v in steps:
        out, weights = ours(q, k, v)
        dout = rng.normal(size=out.shape).astype(dtype)
        dweights = rng.normal(size=weights.shape).astype(dtype)
        ours.backward(dout, dweights)
        out_t, w_t = twin(tensor(q), tensor(k), tensor(v))
        ((out_t * tensor(dout)).sum() + (w_t * tensor(dweights)).sum()).backward()
    theirs = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs[name].grad.numpy(), name=f"accumulated {name}")
    last = MultiheadAttention(EMBED, HEADS, batch_first=True, **config, dtype=dtype, rng=rng)
    last.load_state_dict(ours.state_dict())
    last(*steps[-1])
    last.backward(np.ones((BATCH, TGT, EMBED), dtype))
    assert not np.allclose(last.out_proj.weight.grad, ours.out_proj.weight.grad)


@pytest.mark.parametrize("config", list(MHA_CONFIGS.values()), ids=list(MHA_CONFIGS))
def test_mha_initialisation_is_torchs_bit_for_bit(config, dtype, seed):
    """``rng=TorchGenerator(seed)`` draws what ``torch.manual_seed(seed); nn.MultiheadAttention(...)`` draws, in
    torch's order (out_proj, then in-projections, then bias_k, bias_v); the state_dict keys are torch's, in order."""
    seed = seed % 2**31
    ours = MultiheadAttention(EMBED, HEADS, **config, dtype=dtype, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    twin = torch.nn.MultiheadAttention(EMBED, HEADS, **config, dtype=TORCH_DTYPES[dtype])
    theirs = twin.state_dict()
    mine = ours.state_dict()
    assert list(mine) == list(theirs)
    for key in theirs:
        np.testing.assert_array_equal(mine[key], theirs[key].numpy(), err_msg=key)
        assert mine[key].dtype == dtype
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in twin.named_parameters()]


def test_mha_float32_stays_float32(rng):
    ours = MultiheadAttention(EMBED, HEADS, add_bias_kv=True, kdim=KDIM, dtype=np.float32, rng=rng)
    q, k, v = inputs({"kdim": KDIM}, "seq first", np.float32, rng)
    out, weights = ours(q, k, v)
    grads = ours.backward(np.ones_like(out), np.ones_like(weights))
    arrays = [out, weights, *grads, *(p.grad for p in ours.parameters())]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}


def test_mha_constructor_errors_are_torchs():
    for args in ((10, 3), (0, 2), (8, 0)):
        expected = torch_error(lambda: torch.nn.MultiheadAttention(*args))
        got = raised(lambda: MultiheadAttention(*args))
        assert type(got) is type(expected), (args, got, expected)
    with pytest.raises(AssertionError, match="embed_dim=10 and num_heads=3"):
        MultiheadAttention(10, 3)


@pytest.mark.parametrize("average", [True, False], ids=["averaged", "per head"])
def test_mha_gradient_of_the_weights_alone(average, dtype, rng):
    """``backward(None, dweights)``: the output's gradient taken as zero. torch's value, and out_proj (outside the
    weights' graph: torch leaves its .grad None), get zero gradients."""
    ours, twin = make_pair({}, dtype, rng)
    q, k, v = inputs({}, "seq first", dtype, rng)
    _, weights = ours(q, k, v, average_attn_weights=average)
    dweights = rng.normal(size=weights.shape).astype(dtype)
    qt, kt, vt = tensor(q, True), tensor(k, True), tensor(v, True)
    _, w_t = twin(qt, kt, vt, average_attn_weights=average)
    (w_t * tensor(dweights)).sum().backward()
    dq, dk, dv = ours.backward(None, dweights)
    assert_close(dq, qt.grad.numpy(), name="dquery")
    assert_close(dk, kt.grad.numpy(), name="dkey")
    assert vt.grad is None and not dv.any()
    assert_close(ours.in_proj_weight.grad, twin.in_proj_weight.grad.numpy(), name="in_proj_weight")
    assert twin.out_proj.weight.grad is None and not ours.out_proj.weight.grad.any()
    assert_nonzero("dquery", qt.grad.numpy())


def test_mha_backward_misuse():
    mha = MultiheadAttention(EMBED, HEADS, rng=np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="before forward"):
        mha.backward(np.ones((TGT, BATCH, EMBED)))
    x = np.ones((TGT, BATCH, EMBED))
    mha(x, x, x, need_weights=False)
    with pytest.raises(RuntimeError, match="need_weights=False"):
        mha.backward(x, np.ones((BATCH, TGT, TGT)))


def test_mha_mismatched_mask_types_warn_like_torch(rng):
    ours, twin = make_pair({}, np.dtype(np.float64), rng)
    q, k, v = inputs({}, "seq first", np.float64, rng)
    kwargs = {"key_padding_mask": np.zeros((BATCH, SRC), bool), "attn_mask": np.zeros((TGT, SRC))}
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        twin(tensor(q), tensor(k), tensor(v), **{key: tensor(val) for key, val in kwargs.items()})
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        ours(q, k, v, **kwargs)


def _bad(name):
    q3 = np.ones((TGT, BATCH, EMBED))
    k3 = np.ones((SRC, BATCH, EMBED))
    cases = {
        "1-d query": ((q3[0, 0], q3[0, 0], q3[0, 0]), {}),
        "4-d query": ((q3[None], k3[None], k3[None]), {}),
        "2-d key beside a 3-d query": ((q3, k3[:, 0], k3), {}),
        "wrong embedding": ((q3[..., :6], k3[..., :6], k3[..., :6]), {}),
        "key and value shapes differ": ((q3, k3, k3[:4]), {}),
        "integer key padding mask": ((q3, k3, k3), {"key_padding_mask": np.zeros((BATCH, SRC), np.int64)}),
        "key padding mask: wrong length": ((q3, k3, k3), {"key_padding_mask": np.zeros((BATCH, 4), bool)}),
        "key padding mask: wrong batch": ((q3, k3, k3), {"key_padding_mask": np.zeros((2, SRC), bool)}),
        "1-d key padding mask, batched": ((q3, k3, k3), {"key_padding_mask": np.zeros(SRC, bool)}),
        "2-d attn_mask of a wrong shape": ((q3, k3, k3), {"attn_mask": np.zeros((TGT, 4), bool)}),
        "3-d attn_mask of a wrong shape": ((q3, k3, k3), {"attn_mask": np.zeros((BATCH, TGT, SRC), bool)}),
        "4-d attn_mask": ((q3, k3, k3), {"attn_mask": np.zeros((1, 1, TGT, SRC), bool)}),
        "is_causal without attn_mask": ((q3, k3, k3), {"is_causal": True}),
        "float32 input, float64 weights": ((q3.astype(np.float32),) * 3, {}),
        "integer input": ((q3.astype(np.int64), k3.astype(np.int64), k3.astype(np.int64)), {}),
        "unbatched, 3-d attn_mask of a wrong shape": ((q3[:, 0], k3[:, 0], k3[:, 0]),
                                                      {"attn_mask": np.zeros((HEADS + 1, TGT, SRC))}),
    }
    return cases[name]


BAD_MHA = ["1-d query", "4-d query", "2-d key beside a 3-d query", "wrong embedding", "key and value shapes differ",
           "integer key padding mask", "key padding mask: wrong length", "key padding mask: wrong batch",
           "1-d key padding mask, batched", "2-d attn_mask of a wrong shape", "3-d attn_mask of a wrong shape",
           "4-d attn_mask", "is_causal without attn_mask", "float32 input, float64 weights", "integer input",
           "unbatched, 3-d attn_mask of a wrong shape"]


@pytest.mark.parametrize("case", BAD_MHA)
def test_mha_bad_inputs_raise_torchs_class_and_change_nothing(case, rng):
    ours, twin = make_pair({}, np.dtype(np.float64), rng)
    (q, k, v), kwargs = _bad(case)
    x = np.ones((TGT, BATCH, EMBED))
    ours(x, x, x)
    cache = ours._cache
    before = ours.state_dict()
    expected = torch_error(lambda: twin(*(tensor(a) for a in (q, k, v)),
                                        **{key: (tensor(val) if isinstance(val, np.ndarray) else val)
                                           for key, val in kwargs.items()}))
    got = raised(lambda: ours(q, k, v, **kwargs))
    assert type(got) is type(expected), f"handnn raised {type(got).__name__}: {got}; torch {expected!r}"
    assert ours._cache is cache
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_mha_dropout_above_one_like_torch(rng):
    x = np.ones((TGT, BATCH, EMBED))
    for need_weights in (True, False):
        ours, twin = make_pair({"dropout": 1.5}, np.dtype(np.float64), rng)
        expected = torch_error(lambda: twin(tensor(x), tensor(x), tensor(x), need_weights=need_weights))
        got = raised(lambda: ours(x, x, x, need_weights=need_weights))
        assert type(got) is type(expected), (need_weights, got, expected)
