"""Record torch's CPU random streams for the golden tests: ``python -m reference.record_random [--out FILE] [--check]``.

Runs every case of :data:`CASES` — a seed and a sequence of sampling calls on one generator — through the installed
torch and writes each call's result, and the generator's final ``get_state()`` bytes, to one compressed ``.npz``
(default ``tests/golden/fixtures/random_streams.npz``), stamped with the torch, numpy and python versions.
``tests/golden/test_random_golden.py`` replays the same cases through :class:`handnn.random.TorchGenerator` with
numpy only. ``--check`` records in memory instead and exits 1 when the stored streams differ from the installed
torch's.

This module imports torch only inside the functions that call it, so the golden test can import :data:`CASES`,
:func:`run_handnn` and :func:`libm_dependent` where torch is not installed.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from handnn.random import TorchGenerator

from .golden import fixture_main

DEFAULT = Path("tests/golden/fixtures/random_streams.npz")
SIZES = (1, 2, 15, 16, 17, 31, 32, 33, 100, 1000)
SEEDS = (0, 42, 2 ** 32 + 5, -7)
STATE_NORMAL_Y = slice(5024, 5032)  # the cached double normal inside get_state()'s bytes


class Step(NamedTuple):
    """One sampling call: ``op`` (see :func:`run_handnn`), the dtype's name, the shape, and extra arguments."""

    op: str
    dtype: str
    shape: Tuple[int, ...]
    args: Tuple[Any, ...] = ()


def _mixed(dtype: str) -> Tuple[Step, ...]:
    """A sequence exercising every method, each call continuing the previous one's stream."""
    return (
        Step("uniform_", dtype, (37,), (-2.5, 7.25)),
        Step("normal_", dtype, (5,), (0.3, 2.5)),
        Step("normal_", dtype, (40,), (0.3, 2.5)),
        Step("normal_", dtype, (3,), (-1.0, 0.5)),
        Step("normal_T", dtype, (3, 17), (0.0, 1.0)),
        Step("bernoulli_", dtype, (50,), (0.3,)),
        Step("bernoulli", dtype, (7, 9)),
        Step("rand", dtype, (4, 5)),
        Step("randint", "int64", (25,), (-3, 17)),
        Step("randint", "int64", (9,), (0, 2 ** 30)),
        Step("randint", "int32", (6,), (-100, 100)),
        Step("random_", "int64", (5,)),
        Step("random_", "int32", (5,)),
        Step("random_", "float32", (5,)),
        Step("random_", "float64", (5,)),
        Step("random_", "bool", (5,)),
        Step("random_", "uint8", (5,), (200,)),
        Step("random_", "int8", (5,), (-100, None)),
        Step("randperm", "int64", (1,)),
        Step("randperm", "int64", (17,)),
        Step("randperm", "int64", (100,)),
        Step("dataloader", "int64", (10,), (3,)),
        Step("randn", dtype, (2,)),
    )


def _cases() -> Dict[str, Tuple[int, Tuple[Step, ...]]]:
    cases: Dict[str, Tuple[int, Tuple[Step, ...]]] = {}
    for seed in SEEDS:
        for dtype in ("float32", "float64"):
            cases[f"rand/{dtype}/{seed}"] = (seed, tuple(Step("rand", dtype, (n,)) for n in SIZES))
            cases[f"randn/{dtype}/{seed}"] = (seed, tuple(Step("randn", dtype, (n,)) for n in SIZES))
            cases[f"mixed/{dtype}/{seed}"] = (seed, _mixed(dtype))
    return cases


#: case name -> (seed, steps)
CASES: Dict[str, Tuple[int, Tuple[Step, ...]]] = _cases()


def libm_dependent(step: Step) -> bool:
    """Whether torch computes this step's values with the C library's log/sin/cos (bit-exact only where handnn and
    torch share that library): every float64 normal, and float32 normals on the scalar path."""
    if step.op not in ("randn", "normal_", "normal_T"):
        return False
    size = int(np.prod(step.shape))
    return step.dtype == "float64" or step.op == "normal_T" or size < 16


def _probabilities(step: Step) -> np.ndarray:
    """The probability array of a ``bernoulli`` step: evenly spaced in [0, 1], in the step's dtype."""
    return np.linspace(0.0, 1.0, int(np.prod(step.shape))).astype(step.dtype).reshape(step.shape)


def run_handnn(seed: int, steps: Sequence[Step]) -> Tuple[List[np.ndarray], np.ndarray]:
    """Every step's result from one :class:`TorchGenerator`, and its final ``get_state()``."""
    gen = TorchGenerator(seed)
    return [_handnn_step(gen, step) for step in steps], gen.get_state()


def _handnn_step(gen: TorchGenerator, step: Step) -> np.ndarray:
    op, dtype, shape, args = step
    if op == "rand":
        return gen.rand(*shape, dtype=dtype)
    if op == "randn":
        return gen.randn(*shape, dtype=dtype)
    if op == "uniform_":
        return gen.uniform_(np.empty(shape, dtype), *args)
    if op == "normal_":
        return gen.normal_(np.empty(shape, dtype), *args)
    if op == "normal_T":
        return np.ascontiguousarray(gen.normal_(np.empty(shape[::-1], dtype).T, *args))
    if op == "bernoulli_":
        return gen.bernoulli_(np.empty(shape, dtype), *args)
    if op == "bernoulli":
        return gen.bernoulli(_probabilities(step))
    if op == "randint":
        return gen.randint(args[0], args[1], shape, dtype=dtype)
    if op == "random_":
        return gen.random_(np.empty(shape, dtype), *args)
    if op == "randperm":
        return gen.randperm(shape[0], dtype=dtype)
    if op == "dataloader":
        return gen.dataloader_order(shape[0])
    raise ValueError(f"unknown op {op!r}")


def run_torch(seed: int, steps: Sequence[Step]) -> Tuple[List[np.ndarray], np.ndarray]:
    """Every step's result from one ``torch.Generator().manual_seed(seed)``, and its final ``get_state()``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [_torch_step(g, step) for step in steps], g.get_state().numpy()


def _torch_step(g: Any, step: Step) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    op, dtype, shape, args = step
    tdtype = getattr(torch, dtype)
    if op == "rand":
        return torch.rand(shape, dtype=tdtype, generator=g).numpy()
    if op == "randn":
        return torch.randn(shape, dtype=tdtype, generator=g).numpy()
    if op == "uniform_":
        return torch.empty(shape, dtype=tdtype).uniform_(*args, generator=g).numpy()
    if op == "normal_":
        return torch.empty(shape, dtype=tdtype).normal_(*args, generator=g).numpy()
    if op == "normal_T":
        return torch.empty(shape[::-1], dtype=tdtype).t().normal_(*args, generator=g).contiguous().numpy()
    if op == "bernoulli_":
        return torch.empty(shape, dtype=tdtype).bernoulli_(*args, generator=g).numpy()
    if op == "bernoulli":
        return torch.bernoulli(torch.from_numpy(_probabilities(step)), generator=g).numpy()
    if op == "randint":
        return torch.randint(args[0], args[1], shape, dtype=tdtype, generator=g).numpy()
    if op == "random_":
        return torch.empty(shape, dtype=tdtype).random_(*args, generator=g).numpy()
    if op == "randperm":
        return torch.randperm(shape[0], dtype=tdtype, generator=g).numpy()
    if op == "dataloader":
        loader = DataLoader(TensorDataset(torch.arange(shape[0])), batch_size=args[0], shuffle=True, generator=g)
        return torch.cat([batch for (batch,) in loader]).numpy()
    raise ValueError(f"unknown op {op!r}")


def record() -> Dict[str, np.ndarray]:
    """Every case's results keyed ``case/step_index`` (and ``case/state``), plus ``meta/...`` versions."""
    import torch

    torch.set_num_threads(1)
    out: Dict[str, np.ndarray] = {"meta/torch": np.asarray(torch.__version__), "meta/numpy": np.asarray(np.__version__),
                                  "meta/python": np.asarray(platform.python_version())}
    for name, (seed, steps) in CASES.items():
        results, state = run_torch(seed, steps)
        out.update({f"{name}/{i}": value for i, value in enumerate(results)})
        out[f"{name}/state"] = state
    return out


def differences(stored: Dict[str, np.ndarray], fresh: Dict[str, np.ndarray]) -> List[str]:
    """Keys whose arrays differ (dtype, shape or any bit) between two recordings, ``meta/`` aside."""
    keys = (set(stored) | set(fresh)) - {k for k in set(stored) | set(fresh) if k.startswith("meta/")}
    problems = []
    for key in sorted(keys):
        a, b = stored.get(key), fresh.get(key)
        if a is None or b is None:
            problems.append(f"{key}: only in the {'fresh' if a is None else 'stored'} recording")
        elif a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            problems.append(f"{key}: differs")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    return fixture_main("python -m reference.record_random", __doc__.splitlines()[0], DEFAULT, record, differences, argv)

if __name__ == "__main__":
    sys.exit(main())
