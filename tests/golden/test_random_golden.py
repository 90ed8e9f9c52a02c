"""Replay torch's recorded random streams through handnn.random with numpy only (fixtures/random_streams.npz).

Each case is a seed and a sequence of sampling calls on one generator (see ``reference.record_random.CASES``);
every call's result and the final ``get_state()`` bytes must equal what torch recorded. Bit for bit, except the
values torch computes with the C library's log/sin/cos (float64 normals, float32 normals on the scalar path): those
are bit-exact where handnn and torch share a libm, and within 2 ulp here so another platform's libm can pass. The
fixtures are re-recorded with ``python -m reference.record_random``; ``tests/parity/test_random.py`` fails when
they drift from the installed torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handnn.random import STATE_SIZE, TORCH_VERSION_VERIFIED
from reference.golden import load
from reference.record_random import CASES, STATE_NORMAL_Y, libm_dependent, run_handnn

FIXTURE = Path(__file__).parent / "fixtures" / "random_streams.npz"
ARRAYS = load(FIXTURE)
LIBM_ULPS = 2


def _monotone(x: np.ndarray) -> np.ndarray:
    """Float bit patterns mapped onto a monotone integer line (so neighbouring floats differ by 1; +0 == -0)."""
    signed = {4: np.int32, 8: np.int64}[x.dtype.itemsize]
    bits = np.ascontiguousarray(x).reshape(-1).view(signed).astype(np.int64)
    magnitude = bits & np.int64(np.iinfo(signed).max)
    return np.where(bits < 0, -magnitude, magnitude)


def differing_elements(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flat indices where the two arrays' bytes differ."""
    if a.size == 0:
        return np.array([], dtype=np.intp)
    a_bytes = np.ascontiguousarray(a).reshape(-1).view(np.uint8).reshape(a.size, -1)
    b_bytes = np.ascontiguousarray(b).reshape(-1).view(np.uint8).reshape(b.size, -1)
    return np.flatnonzero((a_bytes != b_bytes).any(axis=1))


def assert_matches(ours: np.ndarray, recorded: np.ndarray, what: str, ulps: int = 0) -> None:
    """Same dtype and shape; bit-identical, or (``ulps > 0``, floats) within ``ulps`` units in the last place."""
    assert ours.dtype == recorded.dtype, f"{what}: dtype {ours.dtype} != recorded {recorded.dtype}"
    assert ours.shape == recorded.shape, f"{what}: shape {ours.shape} != recorded {recorded.shape}"
    if ulps and ours.dtype.kind == "f":
        worst = int(np.abs(_monotone(ours) - _monotone(recorded)).max(initial=0))
        assert worst <= ulps, f"{what}: {worst} ulp from torch's recorded values (allowed {ulps})"
        return
    differing = differing_elements(ours, recorded)
    assert differing.size == 0, (f"{what}: {differing.size} of {ours.size} values differ from torch's, first at "
                                 f"{differing[:5].tolist()}: ours {ours.ravel()[differing[:3]]}, torch "
                                 f"{recorded.ravel()[differing[:3]]}")


def test_fixture_is_stamped_with_the_verified_torch():
    assert ARRAYS["meta/torch"].dtype.kind == "U"
    assert str(ARRAYS["meta/torch"]).split("+")[0] == TORCH_VERSION_VERIFIED


def test_every_case_is_recorded():
    expected = {f"{name}/{i}" for name, (_, steps) in CASES.items() for i in range(len(steps))}
    expected |= {f"{name}/state" for name in CASES}
    assert {key for key in ARRAYS if not key.startswith("meta/")} == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_handnn_replays_torchs_stream(name):
    seed, steps = CASES[name]
    results, state = run_handnn(seed, steps)
    for i, (step, ours) in enumerate(zip(steps, results)):
        assert_matches(ours, ARRAYS[f"{name}/{i}"], f"step {i} {step}", LIBM_ULPS if libm_dependent(step) else 0)
    recorded = ARRAYS[f"{name}/state"]
    assert recorded.shape == (STATE_SIZE,)
    outside = np.ones(STATE_SIZE, dtype=bool)
    outside[STATE_NORMAL_Y] = False
    assert_matches(state[outside], recorded[outside], "final state (engine, seed, cache flags)")
    assert_matches(state[STATE_NORMAL_Y].view(np.float64), recorded[STATE_NORMAL_Y].view(np.float64),
                   "final state (cached normal)", LIBM_ULPS)
