"""Replay torch's recorded results through handnn with numpy only (tests/golden/fixtures/parity.npz).

Every layer, loss and optimizer trajectory of the parity battery, float64 and float32, compared under the one
tolerance table. These run in every tox environment, including those without torch. The fixtures are re-recorded
with ``python -m reference.record``; ``tests/parity/test_golden_live.py`` fails when they drift from the pinned torch.
"""
from __future__ import annotations

import re
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import handnn.functional
from handnn.functional import normalization
from reference import golden
from reference.runs import failures

FIXTURE = Path(__file__).parent / "fixtures" / "parity.npz"
CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
with np.load(FIXTURE, allow_pickle=False) as _npz:  # the members' names only: the arrays load on first use
    ENTRIES = golden.entries(_npz.files)


@lru_cache(maxsize=None)
def arrays():
    return golden.load(FIXTURE)


def test_every_battery_case_is_recorded_in_both_dtypes():
    from reference.cases import layer_cases, loss_cases, optimizer_cases
    expected = {(section, case.component, dtype) for section, cases in
                (("layer", layer_cases()), ("loss", loss_cases()), ("optimizer", optimizer_cases()))
                for case in cases for dtype in ("float64", "float32")}
    assert set(ENTRIES) == expected


@pytest.mark.parametrize("entry", ENTRIES, ids=["/".join(e) for e in ENTRIES])
def test_handnn_matches_recorded_torch(entry):
    results = golden.check(arrays(), entry)
    assert results, "no comparison was made"
    assert not failures(results), failures(results)


def test_stamped_with_the_pinned_torch():
    pinned = re.search(r"^torch==(\S+)", CONSTRAINTS.read_text(), re.M).group(1)
    assert golden.meta(arrays())["torch"].split("+")[0] == pinned


def test_fixture_holds_no_pickled_objects():
    """Every member is a plain .npy of a numeric, boolean or unicode dtype: loading runs no code."""
    with zipfile.ZipFile(FIXTURE) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    assert all(a.dtype.kind in "biufU" for a in arrays().values())


def test_recorded_torch_gradients_are_not_zero():
    """A replay comparing zeros with zeros would prove nothing.

    Two gradients are zero by construction and skipped: the bias of the Linear feeding the MLP's BatchNorm (the
    normalisation subtracts any constant shift, so d loss / d bias is 0 up to rounding), and a recurrent cell's
    weight_hh, whose single step starts from the zero state (tests/parity/test_rnn_cells.py gives it states).
    """
    grads = {k: v for k, v in arrays().items() if ("/torch/dx" in k or "/torch/grad/" in k or k.endswith("torch/dinput"))
             and not (k.startswith("layer/MLP") and k.endswith("grad/0.bias"))
             and not (re.match(r"layer/(RNN|LSTM|GRU)Cell", k) and k.endswith("grad/weight_hh"))}
    assert len(grads) > 100
    assert all(np.abs(v).max() > 1e-6 for v in grads.values() if v.size)


def _failing_entries(section: str, name_part: str):
    return [e for e in ENTRIES if e[0] == section and name_part in e[1] and failures(golden.check(arrays(), e))]


def test_a_planted_biased_running_variance_fails_the_replay(monkeypatch):
    """The replay can fail: BatchNorm's running variance updated with the biased batch variance."""
    original = normalization.batch_norm_forward

    def biased(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
        if training and running_var is not None:
            n = input.size // input.shape[1]
            before = running_var.copy()
            out = original(input, running_mean, running_var, weight, bias, training, momentum, eps)
            unbiased_update = running_var - (1 - momentum) * before
            running_var[...] = (1 - momentum) * before + unbiased_update * (n - 1) / n
            return out
        return original(input, running_mean, running_var, weight, bias, training, momentum, eps)

    monkeypatch.setattr(handnn.functional, "batch_norm_forward", biased)  # what the BatchNorm modules call
    failing = _failing_entries("layer", "BatchNorm")
    assert {("layer", "BatchNorm1d (N, C)", "float64"), ("layer", "BatchNorm2d", "float32")} <= set(failing)


def test_a_tampered_fixture_value_fails_the_replay():
    entry = ("loss", "MSELoss(mean)", "float64")
    tampered = dict(arrays())
    key = "loss/MSELoss(mean)/float64/torch/dinput"
    tampered[key] = arrays()[key] * (1 + 1e-6)
    assert not failures(golden.check(arrays(), entry))
    assert "dinput" in failures(golden.check(tampered, entry))
