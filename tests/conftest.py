"""Fixtures shared by every test: deterministic, per-test random generators (no global RNG anywhere)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest


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
