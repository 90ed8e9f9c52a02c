"""Fixtures shared by every test: deterministic, per-test random generators (no global RNG anywhere)."""
from __future__ import annotations

import gc
import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings


def pytest_collection_finish(session) -> None:
    """Freeze what imports and collection created (torch alone is hundreds of thousands of objects, alive for the
    whole session) out of the cyclic garbage collector's reach, so its full collections during the run scan only
    what the tests create."""
    gc.freeze()


@pytest.fixture
def seed(request) -> int:
    """A seed fixed per test id, so each test draws different but reproducible data (xdist-safe)."""
    return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """The explicit generator a test draws its inputs, parameters and upstream gradients from."""
    return np.random.default_rng(seed)


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    """Every parity test runs in float64 (tight) and float32 (the tolerance table's float32 row)."""
    return np.dtype(request.param)


# ---- hypothesis ---------------------------------------------------------------------------------------------------
# No deadline (a worker sharing 2 cores with others has irregular timings), no example database (xdist workers
# would race on it, and CI starts clean anyway); on CI (CI=true) the examples are derandomized, so a CI failure
# reproduces exactly. HYPOTHESIS_PROFILE=thorough explores 10x more examples locally.
settings.register_profile("dev", deadline=None, database=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True)
settings.register_profile("thorough", parent=settings.get_profile("dev"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
