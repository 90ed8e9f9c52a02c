"""The edge-input sweep: every module and loss handnn exports against its torch twin over the edge catalogue.

``reference.edge`` enumerates the classes ``handnn.nn`` exports (a new module or loss is swept without a line added
anywhere), runs each on both sides over the catalogue — 0-d, empty batch, batch of one, NaN, +-inf, exact zeros and
ties at the kinks, -0.0, 1e30 and near-overflow values, subnormals, transposed / negative-stride / strided views,
read-only arrays, Python lists, integer / bool / float16 / complex dtypes, mismatched shapes, and for losses the
target's values, dtypes and shapes — in float64 and float32, train and eval (modules) or every reduction (losses), and
judges each case: torch's exception class at the same stage, or torch's values, dtypes and NaN/inf pattern for the
output, dL/dx, every parameter gradient and buffer; the inputs and the upstream gradient unchanged.

Where handnn deliberately differs, the case must match one of ``reference.edge.DEVIATIONS`` (the table is repeated in
docs/differences.md, and a test below keeps the two equal) and behave as it says. ``python -m reference.edge`` prints the
per-class counts.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

from handnn import nn
from handnn.functional import loss as L
from reference import edge

README = Path(__file__).resolve().parents[2] / "docs" / "differences.md"


@lru_cache(maxsize=None)
def all_cases() -> Tuple[edge.Case, ...]:
    """The whole sweep, built on first use (building asks torch which shapes each class takes)."""
    return tuple(edge.cases())


def case_by_id(case_id: str) -> edge.Case:
    return next(c for c in all_cases() if c.id == case_id)


#: the cases grouped by (class, constructor variant, dtype): one test runs every edge of its group and lists every
#: failing case (``python -m reference.edge --only 'ID'`` reruns one), ~250 tests rather than one per case; a group's
#: cases are built when it runs, not at collection
GROUPS = edge.groups()


@pytest.mark.parametrize("group", GROUPS, ids=[f"{name}[{variant}]-{dtype}" for name, variant, dtype in GROUPS])
def test_edge_cases_behave_as_torch(group):
    cases = edge.group_cases(*group)
    failed = [result for result in map(edge.run, cases) if not result.passed]
    assert not failed, f"{len(failed)} of {len(cases)} cases:\n" + "\n".join(map(str, failed))


# ---- the sweep covers everything ----------------------------------------------------------------------------------
def test_every_exported_module_and_loss_is_swept():
    exported = {name for name in nn.__all__ if isinstance(getattr(nn, name), type)
                and issubclass(getattr(nn, name), nn.Module)}
    assert {case.name for case in all_cases()} == exported - set(edge.NOT_SWEPT)
    assert set(edge.NOT_SWEPT) <= exported  # no stale exclusion


@pytest.mark.parametrize("name", sorted(edge.swept_names()))
def test_every_class_meets_every_kind_of_edge(name):
    """Each module and loss meets every kind of edge in both dtypes and modes (the catalogue does not thin out)."""
    kinds = {"shape", "nonfinite", "kinks", "magnitude", "layout", "dtype"} | ({"target"} if edge.is_loss(name) else set())
    mine = [case for case in all_cases() if case.name == name]
    assert {edge.edge_class(case.edge) for case in mine} >= kinds
    assert {case.dtype for case in mine} == {"float64", "float32"}
    assert {case.mode for case in mine} == (set(edge.REDUCTIONS) if edge.is_loss(name) else {"train", "eval"})


def test_new_modules_need_no_new_test(monkeypatch):
    """A class added to handnn.nn is swept without any edit to the sweep: a ReLU6 (not in handnn) added to the
    exports is picked up at once, and, having no torch twin in reference.twin yet, fails the sweep loudly."""
    class ReLU6(nn.ReLU):
        def forward(self, input):
            out = super().forward(input)
            return np.minimum(out, out.dtype.type(6))

    monkeypatch.setattr(nn, "ReLU6", ReLU6, raising=False)
    monkeypatch.setattr(nn, "__all__", [*nn.__all__, "ReLU6"])
    assert "ReLU6" in edge.swept_names()
    # building the sweep runs it against torch at once; the twin is looked up by class, so a module without one
    # is a loud failure of the whole sweep, never a silent skip
    with pytest.raises(AssertionError, match="nn.ReLU6.*no torch twin"):
        edge.cases()


# ---- the documented deviations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("deviation", edge.DEVIATIONS, ids=[d.title for d in edge.DEVIATIONS])
def test_each_deviation_applies_where_it_says(deviation):
    result = edge.run(case_by_id(deviation.example))
    assert result.deviation is deviation and result.passed, str(result)


def _readme_deviations():
    """The titles in docs/differences.md's table of deviations (its first column, in bold)."""
    return re.findall(r"^\| \*\*(.+?)\*\* \|", README.read_text(), flags=re.M)


def test_readme_lists_every_deviation():
    titles = [d.title for d in edge.DEVIATIONS] + [edge.BLAS_WARNINGS_TITLE]
    assert _readme_deviations() == titles


# ---- the judge can fail ------------------------------------------------------------------------------------------------
def test_a_wrong_nan_gradient_is_caught(monkeypatch):
    """L1's slope at a NaN difference: torch's is 0; NumPy's sign gives NaN. Putting that back fails the sweep."""
    monkeypatch.setattr(L, "_l1", lambda d: (np.abs(d), np.sign(d)))
    result = edge.run(case_by_id("L1Loss[0]-nan-float64-mean-float"))
    assert not result.passed and "dx" in str(result)


def test_a_changed_input_is_caught(monkeypatch):
    """A forward that writes into its input fails the sweep even when its values are right."""
    original = nn.Tanh.forward

    def forward(self, input):
        out = original(self, input)
        input[...] = 0
        return out

    monkeypatch.setattr(nn.Tanh, "forward", forward)
    result = edge.run(case_by_id("Tanh[0]-nan-float64-train"))
    assert not result.passed and "changed its input" in str(result)


def test_a_changed_upstream_gradient_is_caught(monkeypatch):
    original = nn.Sigmoid.backward

    def backward(self, grad_output):
        dx = original(self, grad_output)
        grad_output *= 2
        return dx

    monkeypatch.setattr(nn.Sigmoid, "backward", backward)
    assert not edge.run(case_by_id("Sigmoid[0]-zeros-float64-train")).passed


def test_a_wrong_exception_class_is_caught(monkeypatch):
    """Where torch refuses, the class matters: ValueError for torch's RuntimeError fails."""
    def forward(self, input):
        raise ValueError("wrong class")

    monkeypatch.setattr(nn.Linear, "forward", forward)
    result = edge.run(case_by_id("Linear[0]-wrong-features-float64-train"))
    assert not result.passed and "torch raises RuntimeError" in str(result)


def test_a_nan_where_torch_is_finite_is_caught(monkeypatch):
    original = nn.ReLU.forward

    def forward(self, input):
        out = original(self, input)
        out[(out == 0)] = np.nan
        return out

    monkeypatch.setattr(nn.ReLU, "forward", forward)
    assert not edge.run(case_by_id("ReLU[0]-zeros-float64-train")).passed
