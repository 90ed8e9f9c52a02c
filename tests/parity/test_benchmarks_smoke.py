"""The benchmark harness runs (tiny sizes) and reports what it claims to; no timing is asserted here."""
from __future__ import annotations

import json

import numpy as np
import pytest

import benchmarks.__main__ as bench
from benchmarks import cases
from handnn import nn
from reference import assert_close


def test_quick_run_writes_a_row_per_case_size_and_dtype(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--only", "*Norm*", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    names = {c.name for c in cases.ALL if "norm" in c.name.lower()}
    assert {(r["case"], r["dtype"]) for r in data["rows"]} == {(n, d) for n in names for d in ("float32", "float64")}
    assert all(r["handnn_s"] > 0 and r["torch_s"] > 0 and r["cache_per_input"] > 0 for r in data["rows"])
    assert all(r["handnn_page_faults"] >= 0 and r["torch_page_faults"] >= 0 for r in data["rows"])
    printed = capsys.readouterr().out
    assert "| BatchNorm2d | tiny | float64 |" in printed
    assert "page faults per call" in printed
    assert data["environment"]["malloc"].startswith(("glibc mmap_threshold=32 MiB", "system"))


def test_system_malloc_leaves_the_allocator_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "_pin_allocator", lambda: pytest.fail("the allocator was pinned"))
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--only", "ReLU", "--dtype", "float32", "--system-malloc", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["environment"]["malloc"] == "system"


def test_sample_counts_page_faults_per_call(monkeypatch):
    """10 calls that each touch 5 fresh pages (the counter is faked): 5 faults per call."""
    counter = iter([100, 150])
    monkeypatch.setattr(bench, "_page_faults", lambda: next(counter))
    faults = []
    assert bench._sample(lambda: None, 10, faults) >= 0
    assert faults == [5.0]


@pytest.mark.parametrize("case", [c for c in cases.LAYERS if c.name != "Dropout"], ids=lambda c: c.name)
def test_both_callables_compute_the_same_gradient(case):
    """A benchmark that timed different work would be meaningless: dx of handnn and torch agree. (Dropout is
    left out: handnn draws a fresh mask per call while the twin replays the previous one.)"""
    built = case.build("tiny", np.dtype(np.float64), np.random.default_rng(1))
    assert_close(built.handnn(), built.torch().numpy(), f"{case.name} dx")


def test_cache_bytes_counts_views_once():
    layer = nn.BatchNorm1d(5)
    x = np.random.default_rng(0).normal(size=(7, 5))
    layer(x)
    kept = cases.cache_bytes(layer)
    assert 0 < kept <= x.nbytes + 10 * 5 * 8


def test_the_naive_peer_computes_what_handnn_computes():
    """The course-code peer times the same work: CS231n's four-loop convolution gives handnn's dx, dw and db for the
    same input, weights and upstream gradient (and so torch's, by the parity tests)."""
    from benchmarks import peers
    from handnn import functional as F

    rng = np.random.default_rng(2)
    x, w, b = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    out, cache = peers.conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    ours, our_cache = F.conv2d_forward(x, w, b, stride=2, padding=1)
    assert_close(out, ours, "out")
    dout = rng.normal(size=out.shape)
    for name, theirs, mine in zip(("dx", "dw", "db"), peers.conv_backward_naive(dout, cache),
                                  F.conv2d_backward(dout, our_cache)):
        assert_close(theirs, mine, name)


def test_a_peer_row_reports_how_much_slower_the_course_code_is(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--only", "*naive*", "--dtype", "float64", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["peer"].startswith("CS231n") and row["peer_s"] > 0 and row["cache_bytes"] > 0
    assert row["peer_ratio"] > 1  # four Python loops per output pixel cannot beat one matrix product
    printed = capsys.readouterr().out
    assert "| plain course code |" in printed and "CS231n conv_*_naive (4 loops)" in printed


@pytest.mark.parametrize("case", cases.MODELS, ids=lambda c: c.name)
def test_model_cases_train_both_sides_alike(case):
    """A model row times the same training on both sides: after one call each, the parameters agree."""
    built = case.build("tiny", np.dtype(np.float64), np.random.default_rng(3))
    built.handnn(), built.torch()
    model, twin = built.models
    for (name, p), (_, t) in zip(model.named_parameters(), twin.named_parameters()):
        assert_close(p.data, t.detach().numpy(), name)
