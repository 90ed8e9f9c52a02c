"""``python -m benchmarks [--sizes small,medium,large] [--dtype float32] [--only GLOB] [--repeat 7] [--json FILE]``

Times every case of :mod:`benchmarks.cases` for handnn and torch in the same process, single-threaded, with the
repetitions interleaved (handnn, torch, handnn, torch, ...) so drifts in machine speed hit both, and prints the
medians, the ratio handnn / torch (the median of the per-repetition ratios; below 1: handnn is faster) and, for
layers, the bytes handnn keeps for backward (absolute, and relative to the input). Cases with a peer (plain course
code doing the same work, :mod:`benchmarks.peers`) time it in the same interleaved run and print how many times
slower it is than handnn. Both sides run with the same pinned allocator
thresholds (:func:`_pin_allocator`); the page faults per call are counted. ``--quick`` is the CI smoke run: tiny
sizes, two repetitions, no claims.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import fnmatch
import json
import platform
import statistics
import sys
import time
from datetime import date
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from . import cases


def _limit_blas_threads() -> str:
    """Pin BLAS to one thread with threadpoolctl when present (the environment variables are already set)."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "env vars only"
    threadpool_limits(1)
    return ", ".join(sorted({f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info()}))


#: glibc ``mallopt`` parameters (malloc.h) and the values the benchmark sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (64-bit): arrays up to 32 MiB come from the heap
TRIM_THRESHOLD = 1024 ** 3


def _pin_allocator() -> str:
    """Keep freed memory in the process (glibc only), for both libraries alike.

    By default glibc hands a freed block of more than 128 KiB back to the system (or trims the heap's top) with
    thresholds that move with the heap's history; the next array of that size then page-faults every 4 KiB page
    back in, which on the benchmark machine costs about 5 µs per page: 5 ms for a 4 MiB array. Which side pays
    depended on what ran before: torch's Dropout float64 measured 1.3 ms and 6.8 ms in two runs (2900 faults per
    call), handnn's BatchNorm1d float64 2.3 ms in the benchmark and 5.1 ms in a plain loop (994 faults per call).
    Fixed thresholds (``mallopt``) make both sides reuse their freed memory, so the table compares computation; the
    faults per call that remain are reported (``page_faults``) and ``--system-malloc`` measures with the defaults.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return "system (no glibc mallopt)"
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return "system (mallopt refused)"
    return f"glibc mmap_threshold={MMAP_THRESHOLD >> 20} MiB, trim_threshold={TRIM_THRESHOLD >> 30} GiB"


def _page_faults() -> int:
    """Minor page faults of this process so far (0 where the ``resource`` module is missing)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _calibrate(work: Callable[[], object], target: float) -> int:
    """How many calls make one sample last about ``target`` seconds (at least one)."""
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    return max(1, int(target / max(elapsed, 1e-7)))


def _sample(work: Callable[[], object], number: int, faults: List[float]) -> float:
    """Seconds per call over ``number`` calls; appends the page faults per call to ``faults``."""
    before = _page_faults()
    start = time.perf_counter()
    for _ in range(number):
        work()
    elapsed = time.perf_counter() - start
    faults.append((_page_faults() - before) / number)
    return elapsed / number


def time_sides(sides: Dict[str, Callable[[], object]], repeat: int, target: float = 0.05) -> Dict[str, float]:
    """Median seconds per call of each callable (``handnn``, ``torch`` and optionally ``peer``), repetitions
    interleaved, after one warm-up call each; ``ratio``: the median of the per-repetition ratios handnn / torch, and
    ``peer_ratio``: peer / handnn (how many times faster handnn is). Each repetition times the sides back to back,
    so a slowdown of the shared machine that lasts longer than one repetition cancels in its ratio; the ratio of the
    medians would mix samples taken under different conditions. A side is called as many times per sample as the
    fastest of handnn and torch allows in ``target`` seconds; a slow peer is called once per sample."""
    for work in sides.values():
        work()
    number = min(_calibrate(sides["handnn"], target), _calibrate(sides["torch"], target))
    numbers = {side: (number if side != "peer" else min(number, _calibrate(work, target)))
               for side, work in sides.items()}
    samples: Dict[str, List[float]] = {side: [] for side in sides}
    faults: Dict[str, List[float]] = {side: [] for side in sides}
    for _ in range(repeat):
        for side, work in sides.items():
            samples[side].append(_sample(work, numbers[side], faults[side]))
    result = {side: statistics.median(values) for side, values in samples.items()}
    result["ratio"] = statistics.median(h / t for h, t in zip(samples["handnn"], samples["torch"]))
    if "peer" in sides:
        result["peer_ratio"] = statistics.median(p / h for p, h in zip(samples["peer"], samples["handnn"]))
    for side, values in faults.items():
        result[f"{side}_faults"] = statistics.median(values)
    return result


def time_pair(ours: Callable[[], object], theirs: Callable[[], object], repeat: int,
              target: float = 0.05) -> Dict[str, float]:
    """:func:`time_sides` of handnn and torch."""
    return time_sides({"handnn": ours, "torch": theirs}, repeat, target)


def run(sizes: Sequence[str], dtypes: Sequence[str], pattern: str, repeat: int, target: float,
        progress: bool = False) -> List[Dict[str, object]]:
    rows = []
    for case in cases.ALL:
        if not fnmatch.fnmatch(case.name.lower(), pattern.lower()):
            continue
        for size in sizes:
            if case.sizes is not None and size not in case.sizes:
                continue  # a case of fixed sizes (the moons MLP is seed 004's; CIFAR's images are 32 x 32)
            for dtype in dtypes:
                if progress:
                    print(f"  {case.name} {size} {dtype}", file=sys.stderr)
                built = case.build(size, np.dtype(dtype), np.random.default_rng(0))
                sides = {"handnn": built.handnn, "torch": built.torch}
                if built.peer is not None:
                    sides["peer"] = built.peer
                medians = time_sides(sides, repeat, target)
                row = {"case": case.name, "kind": case.kind, "size": size, "dtype": dtype,
                       "handnn_s": medians["handnn"], "torch_s": medians["torch"],
                       "ratio": medians["ratio"], "handnn_page_faults": medians["handnn_faults"],
                       "torch_page_faults": medians["torch_faults"]}
                if built.cache_bytes is not None:
                    row["cache_per_input"] = built.cache_bytes / built.input_bytes
                    row["cache_bytes"] = built.cache_bytes
                if built.peer is not None:
                    row.update(peer=built.peer_name, peer_s=medians["peer"], peer_ratio=medians["peer_ratio"])
                rows.append(row)
    return rows


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def markdown(rows: List[Dict[str, object]]) -> str:
    lines = ["| case | size | dtype | handnn | torch | handnn / torch | backward cache / input (bytes) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        cache = f"{r['cache_per_input']:.2f} ({_fmt_bytes(r['cache_bytes'])})" if "cache_per_input" in r else ""
        lines.append(f"| {r['case']} | {r['size']} | {r['dtype']} | {_fmt_time(r['handnn_s'])} | "
                     f"{_fmt_time(r['torch_s'])} | {r['ratio']:.2f} | {cache} |")
    peered = [r for r in rows if "peer" in r]
    if peered:
        lines += ["", "| case | size | dtype | plain course code | its time | handnn | course code / handnn |",
                  "|---|---|---|---|---:|---:|---:|"]
        for r in peered:
            lines.append(f"| {r['case']} | {r['size']} | {r['dtype']} | {r['peer']} | {_fmt_time(r['peer_s'])} | "
                         f"{_fmt_time(r['handnn_s'])} | {r['peer_ratio']:.1f} |")
    return "\n".join(lines)


def environment(blas: str, malloc: str) -> Dict[str, str]:
    return {"date": date.today().isoformat(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "torch_threads": str(torch.get_num_threads()), "blas": blas, "malloc": malloc}


def faults_note(rows: List[Dict[str, object]]) -> str:
    """One line: the largest median page faults per call on each side (0 when the allocator reuses its memory)."""
    worst = {side: max(float(r[f"{side}_page_faults"]) for r in rows) for side in ("handnn", "torch")}
    return (f"page faults per call (median of the repetitions), largest row: handnn {worst['handnn']:.0f}, "
            f"torch {worst['torch']:.0f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large", help="comma-separated: tiny, small, medium, large")
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"], help="default: both")
    parser.add_argument("--only", default="*", help="only the cases matching this glob")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved repetitions per side (median)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny sizes, 2 repetitions")
    parser.add_argument("--json", metavar="FILE", help="also write the rows and the environment as JSON")
    parser.add_argument("--progress", action="store_true", help="print each case to stderr as it runs")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's allocator thresholds alone (freed arrays page-fault back in)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    blas = _limit_blas_threads()
    malloc = "system" if args.system_malloc else _pin_allocator()
    sizes = ["tiny"] if args.quick else [s.strip() for s in args.sizes.split(",")]
    unknown = set(sizes) - set(cases.SIZES_1D)
    if unknown:
        parser.error(f"unknown size(s) {sorted(unknown)}; expected some of {list(cases.SIZES_1D)}")
    repeat, target = (2, 0.002) if args.quick else (args.repeat, 0.05)
    rows = run(sizes, args.dtype or ["float32", "float64"], args.only, repeat, target, args.progress)
    if not rows:
        print(f"no benchmark matches {args.only!r}", file=sys.stderr)
        return 2
    env = environment(blas, malloc)
    print("handnn / torch, single thread — " + ", ".join(f"{k} {v}" for k, v in env.items()))
    print(markdown(rows))
    print(faults_note(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"environment": env, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
