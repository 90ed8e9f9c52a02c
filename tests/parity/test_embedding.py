"""Parity of ``Embedding`` (and ``embedding_forward`` / ``embedding_backward``) with torch: the lookup, the weight
gradient with repeated indices and ``padding_idx``, accumulation over steps, torch's initialisation drawn by
``TorchGenerator``, ``from_pretrained``, and bad inputs."""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from handnn.functional.sparse import embedding_backward, embedding_forward, scatter_add_rows
from handnn.nn.modules.sparse import Embedding
from handnn.random import TorchGenerator
from reference import assert_close, assert_nonzero
from reference.harness import torch_error

NUM, DIM = 11, 6  # num_embeddings != embedding_dim, so a transposed weight or gradient has the wrong shape
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
INDEX_SHAPES = {"0-d": (), "1-d": (13,), "2-d": (4, 7), "3-d": (2, 3, 5)}


def twin_of(layer: Embedding) -> torch.nn.Embedding:
    """torch's Embedding with the same options, holding a copy of ``layer``'s weight (loaded, not redrawn)."""
    twin = torch.nn.Embedding(layer.num_embeddings, layer.embedding_dim, padding_idx=layer.padding_idx,
                              dtype=TORCH_DTYPES[layer.weight.dtype])
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    twin.weight.requires_grad_(layer.weight.requires_grad)
    return twin


def draw_indices(rng: np.random.Generator, shape: tuple, index_dtype=np.int64, high: int = NUM) -> np.ndarray:
    """Indices with repeats (more positions than rows for the larger shapes), every row reachable."""
    return rng.integers(0, high, size=shape).astype(index_dtype)


def step_both(layer: Embedding, twin: torch.nn.Embedding, indices: np.ndarray, dout: np.ndarray) -> None:
    """One forward/backward on each side; the outputs compared (bit for bit: a lookup is a copy)."""
    out = layer(indices)
    out_t = twin(torch.from_numpy(indices.copy()))
    out_t.backward(torch.from_numpy(dout.copy()))
    assert_close(out, out_t.detach().numpy(), name="out")
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    assert layer.backward(dout) is None  # integer indices have no gradient


def assert_same_grad(layer: Embedding, twin: torch.nn.Embedding) -> None:
    theirs = twin.weight.grad.numpy()
    assert_nonzero("weight.grad", theirs)
    assert_close(layer.weight.grad, theirs, name="weight.grad")
    # repeated rows are summed in torch's order (occurrence order, from zero): equal bit for bit
    np.testing.assert_array_equal(layer.weight.grad, theirs)


# ---- forward and dweight ---------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32], ids=["int64", "int32"])
@pytest.mark.parametrize("shape", list(INDEX_SHAPES.values()), ids=list(INDEX_SHAPES))
def test_embedding_matches_torch(shape, index_dtype, dtype, rng):
    layer = Embedding(NUM, DIM, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    indices = draw_indices(rng, shape, index_dtype)
    dout = rng.normal(size=shape + (DIM,)).astype(dtype)
    indices_before, dout_before = indices.copy(), dout.copy()
    step_both(layer, twin, indices, dout)
    assert_same_grad(layer, twin)
    assert layer.weight.grad.dtype == dtype
    np.testing.assert_array_equal(indices, indices_before, err_msg="the layer modified its indices")
    np.testing.assert_array_equal(dout, dout_before, err_msg="the layer modified the upstream gradient")


def test_embedding_repeated_indices_are_summed(dtype, rng):
    """Index 3 four times, 7 twice: their rows hold the sums of those positions' upstream gradients."""
    layer = Embedding(NUM, DIM, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    indices = np.array([[3, 7, 3], [3, 0, 7], [3, 10, 1]])
    dout = rng.normal(size=(3, 3, DIM)).astype(dtype)
    step_both(layer, twin, indices, dout)
    assert_same_grad(layer, twin)
    flat = dout.reshape(-1, DIM)
    np.testing.assert_allclose(layer.weight.grad[3], flat[0] + flat[2] + flat[3] + flat[6], rtol=1e-6)
    np.testing.assert_allclose(layer.weight.grad[7], flat[1] + flat[5], rtol=1e-6)
    untouched = [k for k in range(NUM) if k not in (0, 1, 3, 7, 10)]
    assert not layer.weight.grad[untouched].any()


@pytest.mark.parametrize("repeats", [1, 8, 9, 40], ids=lambda r: f"row 5 x{r}")
def test_embedding_many_repeats_match_torch_bit_for_bit(repeats, dtype, rng):
    """A row repeated more often than the vectorised occurrence passes (the rest go through ``np.add.at``),
    interleaved with others, values of very different magnitudes (so the summation order shows)."""
    layer = Embedding(NUM, DIM, padding_idx=7, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    indices = draw_indices(rng, (repeats + 30,))
    indices[rng.permutation(indices.size)[:repeats]] = 5
    dout = (rng.normal(size=(indices.size, DIM)) * 10.0 ** rng.uniform(-6, 6, size=(indices.size, 1))).astype(dtype)
    step_both(layer, twin, indices, dout)
    assert_same_grad(layer, twin)


def test_scatter_add_rows_is_np_add_at(rng):
    """The vectorised helper adds in ``np.add.at``'s order: equal bit for bit (signed zeros too)."""
    for trial in range(40):
        rows = rng.integers(0, 1 + trial % 9, size=int(rng.integers(0, 120)))
        if trial % 5 == 0:
            rows[:] = 0
        values = rng.normal(size=(rows.size, 3)) * 10.0 ** rng.uniform(-8, 8, size=(rows.size, 1))
        values[::7] = -0.0
        expected, got = np.zeros((9, 3)), np.zeros((9, 3))
        np.add.at(expected, rows, values)
        scatter_add_rows(got, rows, values)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


@pytest.mark.parametrize("padding_idx", [0, 4, NUM - 1, -1, -5, -NUM])
def test_embedding_padding_idx_matches_torch(padding_idx, dtype, rng):
    layer = Embedding(NUM, DIM, padding_idx=padding_idx, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    row = padding_idx % NUM
    assert layer.padding_idx == twin.padding_idx == row
    layer.weight.data[row] = rng.normal(size=DIM)  # a non-zero pad: the forward reads it like any row
    twin.weight.data[row] = torch.from_numpy(layer.weight.data[row].copy())
    indices = draw_indices(rng, (5, 8))
    indices[0, :3] = row  # the pad, several times
    dout = rng.normal(size=(5, 8, DIM)).astype(dtype)
    step_both(layer, twin, indices, dout)
    assert_same_grad(layer, twin)
    assert not layer.weight.grad[row].any()
    assert np.abs(layer.weight.grad[np.unique(indices[indices != row])]).sum() > 0


def test_embedding_padding_row_gradient_is_zero_even_for_nan(dtype, rng):
    """torch skips the pad's positions: a NaN upstream gradient there leaves the pad's row 0."""
    layer = Embedding(NUM, DIM, padding_idx=2, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    indices = np.array([2, 5, 2, 9])
    dout = rng.normal(size=(4, DIM)).astype(dtype)
    dout[0, 1] = np.nan
    dout[3, 0] = np.inf
    step_both(layer, twin, indices, dout)
    theirs = twin.weight.grad.numpy()
    np.testing.assert_array_equal(layer.weight.grad, theirs)  # NaN/inf at the same places
    assert not layer.weight.grad[2].any() and np.isinf(layer.weight.grad[9, 0])


def test_embedding_gradients_accumulate_like_torch(dtype, rng):
    """Three backward calls without zero_grad (different index shapes): ``.grad`` holds the sum, as torch's."""
    layer = Embedding(NUM, DIM, padding_idx=1, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    shapes = [(6,), (3, 4), (2, 2, 3)]
    for shape in shapes:
        step_both(layer, twin, draw_indices(rng, shape), rng.normal(size=shape + (DIM,)).astype(dtype))
    assert_close(layer.weight.grad, twin.weight.grad.numpy(), name="accumulated weight.grad")
    last = copy.deepcopy(layer)
    last.zero_grad()
    last(layer._cache.indices)
    last.backward(np.ones(shapes[-1] + (DIM,), dtype))
    assert not np.allclose(layer.weight.grad, last.weight.grad)


def test_embedding_float32_upstream_into_float64_is_cast_like_torch(rng):
    layer = Embedding(NUM, DIM, rng=rng)  # float64
    twin = twin_of(layer)
    indices = draw_indices(rng, (9,))
    dout = rng.normal(size=(9, DIM)).astype(np.float32)
    step_both(layer, twin, indices, dout)
    assert layer.weight.grad.dtype == np.float64 == twin.weight.grad.numpy().dtype
    assert_same_grad(layer, twin)


def test_embedding_empty_indices_match_torch(dtype, rng):
    layer = Embedding(NUM, DIM, dtype=dtype, rng=rng)
    twin = twin_of(layer)
    indices = np.zeros((3, 0), np.int64)
    out = layer(indices)
    out_t = twin(torch.from_numpy(indices))
    assert out.shape == tuple(out_t.shape) == (3, 0, DIM)
    layer.backward(np.zeros((3, 0, DIM), dtype))
    out_t.backward(torch.zeros(3, 0, DIM, dtype=TORCH_DTYPES[dtype]))
    np.testing.assert_array_equal(layer.weight.grad, twin.weight.grad.numpy())


def test_embedding_output_is_a_new_array(dtype, rng):
    """The output never aliases the weight (a 0-d index included, where ``weight[i]`` would be a view)."""
    layer = Embedding(NUM, DIM, dtype=dtype, rng=rng)
    for indices in (np.array(4), np.array([4, 4])):
        out = layer(indices)
        assert not np.shares_memory(out, layer.weight.data)
        out[...] = 1e9
        assert not np.any(layer.weight.data == 1e9)


# ---- the functional pair -------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [None, 3, -2])
def test_functional_embedding_matches_torch(padding_idx, dtype, rng):
    weight = rng.normal(size=(NUM, DIM)).astype(dtype)
    indices = draw_indices(rng, (4, 6))
    indices[1, 2] = indices[3, 3] = (padding_idx or 0) % NUM
    dout = rng.normal(size=(4, 6, DIM)).astype(dtype)
    weight_before = weight.copy()
    out, cache = embedding_forward(indices, weight, padding_idx)
    dweight = embedding_backward(dout, cache)
    wt = torch.from_numpy(weight.copy()).requires_grad_()
    out_t = torch.nn.functional.embedding(torch.from_numpy(indices.copy()), wt, padding_idx)
    out_t.backward(torch.from_numpy(dout.copy()))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    assert_nonzero("dweight", wt.grad.numpy())
    np.testing.assert_array_equal(dweight, wt.grad.numpy())
    np.testing.assert_array_equal(weight, weight_before)


def test_functional_embedding_rejects_non_2d_weight_like_torch(rng):
    weight = rng.normal(size=NUM)
    expected = torch_error(lambda: torch.nn.functional.embedding(torch.tensor([1]), torch.from_numpy(weight)))
    with pytest.raises(type(expected), match="'weight' must be 2-D"):
        embedding_forward(np.array([1]), weight)


# ---- initialisation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num, dim, padding_idx", [(11, 6, None), (11, 6, 3), (3, 4, -1), (1, 1, None),
                                                   (50, 17, 0)],
                         ids=["11x6", "11x6-pad3", "3x4-pad-1 (scalar path)", "1x1", "50x17-pad0"])
def test_embedding_init_equals_torch_bit_for_bit(num, dim, padding_idx, dtype, seed):
    layer = Embedding(num, dim, padding_idx=padding_idx, dtype=dtype, rng=TorchGenerator(seed))
    torch.manual_seed(seed)
    theirs = torch.nn.Embedding(num, dim, padding_idx=padding_idx, dtype=TORCH_DTYPES[dtype])
    np.testing.assert_array_equal(layer.weight.data, theirs.weight.detach().numpy())
    assert layer.weight.dtype == dtype
    if padding_idx is not None:
        assert not layer.weight.data[padding_idx].any()


def test_embedding_init_is_standard_normal(dtype, rng):
    """Mean and variance of 60000 draws agree with N(0, 1): 6 standard errors (var's s.e. is sqrt(2/n))."""
    w = Embedding(3000, 20, dtype=dtype, rng=rng).weight.data.astype(np.float64).ravel()
    n = w.size
    assert abs(w.mean()) <= 6 / np.sqrt(n)
    assert abs(w.var() - 1) <= 6 * np.sqrt(2 / n)


def test_embedding_same_seed_same_weight(seed):
    a, b, c = (Embedding(NUM, DIM, rng=np.random.default_rng(s)) for s in (seed, seed, seed + 1))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)


def test_embedding_state_dict_and_repr_match_torch(rng):
    layer = Embedding(NUM, DIM, padding_idx=-3, norm_type=1.0, rng=rng)
    torch_layer = torch.nn.Embedding(NUM, DIM, padding_idx=-3, norm_type=1.0, dtype=torch.float64)
    assert list(layer.state_dict()) == list(torch_layer.state_dict()) == ["weight"]
    layer.load_state_dict({k: v.numpy() for k, v in torch_layer.state_dict().items()})
    np.testing.assert_array_equal(layer.weight.data, torch_layer.weight.detach().numpy())
    assert repr(layer) == repr(torch_layer) == "Embedding(11, 6, padding_idx=8, norm_type=1.0)"
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


# ---- from_pretrained and _weight ----------------------------------------------------------------------------
@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "trainable"])
def test_from_pretrained_matches_torch(freeze, dtype, rng):
    embeddings = rng.normal(size=(NUM, DIM)).astype(dtype)
    before = embeddings.copy()
    layer = Embedding.from_pretrained(embeddings, freeze=freeze, padding_idx=2)
    twin = torch.nn.Embedding.from_pretrained(torch.from_numpy(embeddings.copy()), freeze=freeze, padding_idx=2)
    assert layer.weight.requires_grad is twin.weight.requires_grad is (not freeze)
    # the pad's row is kept as given (not zeroed), as in torch
    np.testing.assert_array_equal(layer.weight.data, twin.weight.detach().numpy())
    assert layer.weight.dtype == dtype and layer.padding_idx == 2
    indices = np.array([[2, 5, 5], [0, 2, 9]])
    dout = rng.normal(size=(2, 3, DIM)).astype(dtype)
    out = layer(indices)
    out_t = twin(torch.from_numpy(indices))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    layer.backward(dout)
    if freeze:
        assert layer.weight.grad is None
    else:
        out_t.backward(torch.from_numpy(dout))
        assert_same_grad(layer, twin)
    layer.weight.data += 1.0  # an optimizer step: the caller's array is a copy, never touched
    np.testing.assert_array_equal(embeddings, before)


@pytest.mark.parametrize("shape", [(NUM,), (2, NUM, DIM)], ids=["1-d", "3-d"])
def test_from_pretrained_rejects_non_2d_like_torch(shape, rng):
    embeddings = rng.normal(size=shape)
    expected = torch_error(lambda: torch.nn.Embedding.from_pretrained(torch.from_numpy(embeddings)))
    with pytest.raises(type(expected), match="expected to be 2-dimensional"):
        Embedding.from_pretrained(embeddings)


def test_weight_argument_of_wrong_shape_raises_like_torch(rng):
    weight = rng.normal(size=(NUM, DIM + 1))
    expected = torch_error(lambda: torch.nn.Embedding(NUM, DIM, _weight=torch.from_numpy(weight)))
    with pytest.raises(type(expected), match="Shape of weight does not match"):
        Embedding(NUM, DIM, _weight=weight)


# ---- bad arguments and inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [NUM, NUM + 5, -NUM - 1])
def test_embedding_padding_idx_out_of_range_raises_like_torch(padding_idx):
    expected = torch_error(lambda: torch.nn.Embedding(NUM, DIM, padding_idx=padding_idx))
    assert type(expected) is AssertionError
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        Embedding(NUM, DIM, padding_idx=padding_idx)
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        embedding_forward(np.array([0]), np.zeros((NUM, DIM)), padding_idx)


@pytest.mark.parametrize("num, padding_idx", [(1, 1), (2, 2), (1, -2)])
def test_embedding_padding_idx_at_the_edge_of_a_tiny_table_raises_like_torch(num, padding_idx):
    """padding_idx == num_embeddings is out of range even for a table of one or two rows (the bound is not 0)."""
    expected = torch_error(lambda: torch.nn.Embedding(num, DIM, padding_idx=padding_idx))
    with pytest.raises(type(expected), match="Padding_idx must be within num_embeddings"):
        Embedding(num, DIM, padding_idx=padding_idx)


def test_embedding_negative_size_raises_like_torch():
    expected = torch_error(lambda: torch.nn.Embedding(-1, DIM))
    with pytest.raises(type(expected), match="negative dimension"):
        Embedding(-1, DIM)


@pytest.mark.parametrize("option", [{"max_norm": 1.0}, {"scale_grad_by_freq": True}, {"sparse": True}],
                         ids=["max_norm", "scale_grad_by_freq", "sparse"])
def test_embedding_unimplemented_options_are_named(option):
    (name,) = option
    with pytest.raises(NotImplementedError, match=name):
        Embedding(NUM, DIM, **option)


BAD_INDICES = {
    "float32": (np.array([1.0, 2.0], np.float32), "Long, Int; but got float32"),
    "float64": (np.array([1.0, 2.0]), "Long, Int; but got float64"),
    "uint8": (np.array([1, 2], np.uint8), "Long, Int; but got uint8"),
    "int16": (np.array([1, 2], np.int16), "Long, Int; but got int16"),
    "int8": (np.array([1, 2], np.int8), "Long, Int; but got int8"),
    "bool": (np.array([True, False]), "Long, Int; but got bool"),
    "index = num_embeddings": (np.array([[1, NUM], [0, 2]]), "index out of range in self"),
    "negative index": (np.array([3, -1]), "index out of range in self"),
    "index < -num_embeddings": (np.array([-NUM - 1], np.int32), "index out of range in self"),
    "large index": (np.array(10 ** 12), "index out of range in self"),
}


@pytest.mark.parametrize("indices, match", list(BAD_INDICES.values()), ids=list(BAD_INDICES))
def test_embedding_bad_indices_raise_like_torch(indices, match, rng):
    layer = Embedding(NUM, DIM, padding_idx=0, rng=rng)
    twin = twin_of(layer)
    good = np.array([1, 2, 2])
    layer(good)
    cache, weight_before = layer._cache, layer.weight.data.copy()
    indices_before = indices.copy()
    expected = torch_error(lambda: twin(torch.from_numpy(indices.copy())))
    with pytest.raises(type(expected), match=match):
        layer(indices)
    assert type(expected) in (RuntimeError, IndexError)
    np.testing.assert_array_equal(indices, indices_before)
    np.testing.assert_array_equal(layer.weight.data, weight_before)
    assert layer._cache is cache  # backward still uses the last good forward
    layer.backward(np.ones((3, DIM)))
    assert layer.weight.grad[2].tolist() == [2.0] * DIM


def test_embedding_non_array_indices_raise_type_error_like_torch(rng):
    layer = Embedding(NUM, DIM, rng=rng)
    expected = torch_error(lambda: twin_of(layer)([1, 2]))
    with pytest.raises(type(expected), match="must be a numpy.ndarray, not list"):
        layer([1, 2])


def test_embedding_upstream_of_wrong_shape_raises_like_torch(rng):
    layer = Embedding(NUM, DIM, rng=rng)
    twin = twin_of(layer)
    out_t = twin(torch.tensor([1, 2, 3]))
    expected = torch_error(lambda: out_t.backward(torch.ones(DIM, 3, dtype=torch.float64)))
    layer(np.array([1, 2, 3]))
    with pytest.raises(type(expected), match=re.escape("Mismatch in shape: grad_output[0] has a shape of (6, 3)")):
        layer.backward(np.ones((DIM, 3)))
    assert layer.weight.grad is None


def test_embedding_backward_before_forward_raises(rng):
    with pytest.raises(RuntimeError, match="before forward"):
        Embedding(NUM, DIM, rng=rng).backward(np.ones((2, DIM)))
