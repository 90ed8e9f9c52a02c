"""The functional pairs' own contract beside the modules': torch.nn.functional's defaults, and torch's classes for
arguments the modules check before the functional sees them (a non-array input, the rank of batch_norm's input)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import handnn.functional as F
from reference.harness import torch_error

FORWARDS = sorted(name for name in F.__all__ if name.endswith("_forward"))


def _torch_signature(name: str):
    """torch.nn.functional's signature of the pair's name, or None (no such function, or a builtin without one)."""
    function = getattr(torch.nn.functional, name[:-len("_forward")], None)
    try:
        return None if function is None else inspect.signature(function)
    except ValueError:  # a C builtin (gelu): its defaults are checked by the parity tests' calls instead
        return None


COMPARED = [name for name in FORWARDS if _torch_signature(name) is not None]


def test_the_defaults_are_compared_for_most_pairs():
    assert len(COMPARED) >= 14, COMPARED


@pytest.mark.parametrize("name", COMPARED)
def test_functional_defaults_are_torchs(name):
    """Every option a pair shares with torch.nn.functional defaults to torch's value (momentum, eps, training,
    reduction, ignore_index, label_smoothing, beta, delta, negative_slope, dim, p...)."""
    ours = inspect.signature(getattr(F, name)).parameters
    theirs = _torch_signature(name).parameters
    shared = [p for p in ours if p in theirs and ours[p].default is not inspect.Parameter.empty]
    assert all(ours[p].default == theirs[p].default for p in shared), {
        p: (ours[p].default, theirs[p].default) for p in shared}


#: the arguments after the input each forward needs (the functional pairs are called directly here)
ARGS = {"linear_forward": (np.ones((2, 3)),), "batch_norm_forward": (None, None, None, None, True),
        "layer_norm_forward": ((3,),), "group_norm_forward": (1,), "conv1d_forward": (np.ones((1, 2, 1)),),
        "conv2d_forward": (np.ones((1, 2, 1, 1)),), "max_pool2d_forward": (1,), "avg_pool2d_forward": (1,),
        "adaptive_avg_pool2d_forward": (1,), "embedding_forward": (np.ones((5, 3)),),
        "scaled_dot_product_attention_forward": (np.ones((2, 3)), np.ones((2, 3))),
        **{f"{kind}_{part}_forward": (None,) * states + (np.ones((gates * 4, 3)), np.ones((gates * 4, 4)))
           for kind, gates, states in (("rnn", 1, 1), ("lstm", 4, 2), ("gru", 3, 1)) for part in ("cell", "layer")}}
LOSSES = {name for name in FORWARDS if "loss" in name or "entropy" in name}


@pytest.mark.parametrize("name", FORWARDS)
def test_a_python_list_is_a_type_error(name):
    """A list where an array belongs: TypeError from every pair (the deviation the edge sweep lists for modules)."""
    args = ARGS.get(name, ())
    if name in LOSSES:
        args = (np.zeros(2),)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        getattr(F, name)([[0.5, 0.25, 0.125]] * 2, *args)


@pytest.mark.parametrize("training, stats", [(True, None), (True, 0), (True, 3), (False, 0), (False, 3)],
                         ids=["train", "train 0 stats", "train 3 stats", "eval 0 stats", "eval 3 stats"])
def test_batch_norm_functional_without_a_channel_dim_raises_like_torch(training, stats):
    """F.batch_norm of a 1-d input: torch counts 0 channels (a running statistic of another size is a RuntimeError),
    then finds no dim 1 (IndexError). The modules refuse the rank earlier, with their own ValueError."""
    x = np.ones(3)
    vectors = (None, None) if stats is None else (np.zeros(stats), np.ones(stats))
    expected = torch_error(lambda: torch.nn.functional.batch_norm(
        torch.from_numpy(x), *(v if v is None else torch.from_numpy(v) for v in vectors), training=training))
    with pytest.raises(type(expected)):
        F.batch_norm_forward(x, *vectors, training=training)
