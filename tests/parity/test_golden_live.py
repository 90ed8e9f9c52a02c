"""The stored golden fixtures still are what the installed (pinned) torch computes.

``tests/golden`` trusts ``tests/golden/fixtures/parity.npz`` to hold torch's results; this re-records every section
live and compares. A torch upgrade that changes any result, or a change to the battery's cases that was not
re-recorded (``python -m reference.record``), fails here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reference import golden
from reference.record import differences, main, record

FIXTURE = Path(__file__).resolve().parents[1] / "golden" / "fixtures" / "parity.npz"


@pytest.fixture(scope="module")
def stored():
    return golden.load(FIXTURE)


def _section(arrays, section, dtype):
    return {k: v for k, v in arrays.items() if k.startswith(f"{section}/") and f"/{dtype}/" in k}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("section", golden.SECTIONS)
def test_fixtures_match_the_installed_torch(stored, section, dtype):
    fresh = _section(record((section,), (dtype,)), section, dtype)
    assert fresh, "nothing was recorded"
    assert differences(_section(stored, section, dtype), fresh) == []


def test_installed_torch_is_the_recorded_one(stored):
    assert golden.meta(stored)["torch"] == torch.__version__


def test_differences_detects_a_changed_result_and_a_changed_input(stored):
    fresh = _section(record(("loss",), ("float64",)), "loss", "float64")
    old = _section(stored, "loss", "float64")
    result_key = "loss/MSELoss(sum)/float64/torch/loss"
    input_key = "loss/MSELoss(sum)/float64/x"
    changed = dict(old, **{result_key: old[result_key] * (1 + 1e-6),
                           input_key: np.nextafter(old[input_key], np.inf)})
    problems = differences(changed, fresh)
    assert len(problems) == 2
    assert any(result_key in p for p in problems) and any(f"{input_key}: input differs" in p for p in problems)
    missing = {k: v for k, v in old.items() if not k.startswith("loss/L1Loss")}
    assert any("not in the stored fixtures" in p for p in differences(missing, fresh))


def test_record_writes_a_fixture_that_check_accepts(tmp_path, capsys, monkeypatch):
    """The command line: write (atomically, loadable without pickle), then --check against the same torch."""
    import reference.record as rec
    monkeypatch.setattr(rec, "DTYPES", ("float64",))
    monkeypatch.setattr(rec, "record", lambda: record(("loss",), ("float64",)))
    out = tmp_path / "sub" / "fixture.npz"
    assert main(["--out", str(out)]) == 0
    assert main(["--out", str(out), "--check"]) == 0
    assert "0 difference(s)" in capsys.readouterr().out
    arrays = golden.load(out)
    arrays["loss/MSELoss(sum)/float64/torch/dinput"] = -arrays["loss/MSELoss(sum)/float64/torch/dinput"]
    np.savez(out, **arrays)
    assert main(["--out", str(out), "--check"]) == 1
    assert not list(tmp_path.glob("sub/*.tmp"))
