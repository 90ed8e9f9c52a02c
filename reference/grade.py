"""Grade whole files, notebooks and whole classes of submissions against torch.

``handnn-verify --user FILE`` (a ``.py``, or an ``.ipynb`` of which only the definitions run) checks every function
of the file whose kind :func:`reference.check.infer_kind` recognises and prints one table; ``handnn-verify --user
DIR`` grades a class: each subfolder or top-level ``.py``/``.ipynb`` file of DIR is one student.

What is checked
    The top-level ``def`` of each file (course helper files such as ``fast_layers.py`` or ``reg_utils.py`` are
    skipped). ``*_backward`` is the partner of its ``*_forward`` and checked with it; ``*_backward_alt`` is checked as a
    second backward of the same forward. A name holding two layer kinds (``affine_relu_forward``, a sandwich) is not
    a kind. A name that only contains a kind (``initialize_adam``) is checked when its signature takes the course's
    arguments.

Isolation
    Each student runs in its own process: a scratch working directory, stdin from ``/dev/null``, stdout and stderr to
    files of which the first :data:`OUTPUT_CAP` bytes are kept, a wall-time limit (``--timeout``), an address-space
    limit (``--memory`` on top of the grader's own footprint, ``RLIMIT_AS``), a file-size limit, and its own process
    group (killed as a whole). A hang, a crash at import, ``sys.exit``, an endless print or files written end as that
    student's row (timeout / crash with the exception's last line) and never stop the report. Results are written
    after every function, so a student hanging in one function keeps the verdicts of the others.

    On POSIX, ``--jobs`` long-lived workers (``python -m reference.grade --worker``) import torch once and fork one
    child per student; ``--isolation subprocess`` runs ``python -m reference.grade --one PATH --json OUT`` per student
    instead (slower: torch is imported per student).

Imports
    A student's folder is first on ``sys.path`` and its parent second (``from cs231n.layers import *``, ``import
    layers``; ``from .layers import ...`` in a top-level file is imported as part of a package made of the folder).
    Course helper modules a submission imports but does not contain come from :mod:`reference.standins`, last on the
    path, so a student's own copy wins.

Reports
    The class table (student × function: ok / FAIL and the first failing check / crash / timeout / missing) on stdout,
    progress on stderr, and ``--json``, ``--csv``, ``--html`` (one self-contained page with a sortable table, each
    failure's rows and a mismatch map of the compared array: cells coloured by relative error). Exit status 0 when
    everything passed, 1 on any failure, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import ast
import atexit
import base64
import csv
import html
import inspect
import io
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

#: bytes of a student's stdout and of its stderr kept in the report
OUTPUT_CAP = 10_000
#: a student's files may not grow beyond this (its stdout and stderr are files): an endless print ends with EFBIG
FILE_SIZE_LIMIT = 64 * 2 ** 20
#: default wall time per student, seconds; default address space on top of the grader's own, bytes
DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY = 2 * 2 ** 30
#: the mismatch map has at most this many cells per side (blocks of elements keep their worst error)
MAP_CELLS = 48
#: course files that are not the student's work: never graded (and supplied by reference/standins when missing)
COURSE_HELPERS = ("fast_layers", "layer_utils", "im2col", "im2col_cython", "gradient_check", "solver",
                  "captioning_solver", "data_utils", "vis_utils", "coco_utils", "image_utils", "setup",
                  "reg_utils", "opt_utils", "testcases", "dnn_utils", "dnn_app_utils", "planar_utils",
                  "public_tests", "test_utils", "lr_utils", "gc_utils", "init_utils")
STANDINS_DIR = Path(__file__).resolve().parent / "standins"
STANDIN_MODULES = ("reg_utils", "opt_utils", "testCases", "fast_layers", "im2col", "layer_utils")
#: verdicts of one function, worst last
VERDICTS = ("ok", "FAIL", "error", "crash", "timeout", "missing")
#: the arguments a built-in kind's forward (or update rule) is called with
_ARITY = {"affine": 3, "relu": 1, "batchnorm": 4, "spatial_batchnorm": 4, "layernorm": 4, "dropout": 2, "conv": 4,
          "max_pool": 2, "spatial_groupnorm": 5, "rnn_step": 5, "rnn": 5, "word_embedding": 2,
          "temporal_affine": 3, "temporal_softmax_loss": 3, "lstm_step": 6, "lstm": 5,
          "sgd": 3, "sgd_momentum": 3, "rmsprop": 3, "adam": 3}
_UPDATE_KINDS = ("sgd", "sgd_momentum", "rmsprop", "adam")


class UsageError(Exception):
    """A command-line mistake: exit status 2 with this message."""


# ---- options --------------------------------------------------------------------------------------------------------
@dataclass
class GradeOptions:
    """What every check is told, and the limits of each student's process."""

    course: Optional[str] = None
    momentum_style: Optional[str] = None
    keep_prob: bool = False
    dtype: str = "float64"
    seed: int = 0
    timeout: float = DEFAULT_TIMEOUT
    memory: int = DEFAULT_MEMORY

    def check_argv(self) -> List[str]:
        """These options as ``--one`` command-line flags."""
        argv = ["--dtype", self.dtype, "--seed", str(self.seed), "--timeout", repr(self.timeout),
                "--memory", str(self.memory)]
        if self.course:
            argv += ["--course", self.course]
        if self.momentum_style:
            argv += ["--momentum-style", self.momentum_style]
        if self.keep_prob:
            argv.append("--keep-prob")
        return argv


def parse_memory(text: str) -> int:
    """'2G', '512M', '2GiB', '1000000' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size such as 2G, 512M or a number of bytes, but got {text!r}")
    scale = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}[match.group(2).lower()]
    value = int(float(match.group(1)) * scale)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"memory must be positive, but got {text!r}")
    return value


def parse_shard(text: str) -> Tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise argparse.ArgumentTypeError(f"--shard expects i/n with 0 <= i < n (e.g. 0/4), but got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, but got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the timeout must be positive, but got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}")
    return value


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--course", help="course profile (cs231n, dlai, d2l, nndl, torch): given to every check "
                        "that takes one")
    parser.add_argument("--momentum-style", choices=("torch", "cs231n", "dlai"),
                        help="BatchNorm: torch or cs231n; sgd_momentum: cs231n or dlai (given where it applies)")
    parser.add_argument("--keep-prob", action="store_true", help="dropout p is the keep probability")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                        help=f"wall-time limit per student, seconds (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--memory", type=parse_memory, default=DEFAULT_MEMORY,
                        help="address space per student on top of the grader's own (default 2G)")


def _options(args: argparse.Namespace) -> GradeOptions:
    return GradeOptions(course=args.course, momentum_style=args.momentum_style, keep_prob=args.keep_prob,
                        dtype=args.dtype, seed=args.seed, timeout=args.timeout, memory=args.memory)


# ---- a student's files and the functions they define (no code is run) ---------------------------------------------
@dataclass(frozen=True)
class Student:
    """One submission: ``root`` goes on sys.path; ``files`` (relative to root) are graded."""

    name: str
    root: str
    files: Tuple[str, ...]
    source: str  # the path given (a folder or a file)
    alone: bool = False  # a file of a class folder: graded from a copy in a folder of its own


@dataclass
class Entry:
    """One function to check: ``function`` (and its partners) from ``file``."""

    function: str
    file: str
    kind: Optional[str]
    backward: Optional[str] = None
    alt_of: Optional[str] = None  # a *_backward_alt: checked with this forward
    forward_file: Optional[str] = None  # where that forward is defined


def _is_helper(path: Path) -> bool:
    stem = path.stem.lower()
    return stem in COURSE_HELPERS or stem.startswith("testcases")


def student_files(root: Path) -> List[str]:
    """The .py and .ipynb files under ``root`` to grade, relative and sorted (.py first); hidden folders,
    ``__pycache__``, notebook checkpoints and course helper files left out."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part in ("__pycache__", "site-packages") for part in rel.parts):
            continue
        if path.suffix in (".py", ".ipynb") and path.is_file() and not _is_helper(path):
            found.append(rel.as_posix())
    return sorted(found, key=lambda p: (p.endswith(".ipynb"), p.count("/"), p))


def class_students(directory: Path) -> List[Student]:
    """Each subfolder or top-level .py/.ipynb of ``directory`` is one student, sorted by name."""
    directory = directory.resolve()
    entries = sorted(p for p in directory.iterdir()
                     if not p.name.startswith((".", "_")) and (p.is_dir() or p.suffix in (".py", ".ipynb")))
    stems = [p.stem if p.is_file() else p.name for p in entries]
    students = []
    for path, stem in zip(entries, stems):
        name = stem if stems.count(stem) == 1 else path.name
        if path.is_dir():
            students.append(Student(name, str(path), tuple(student_files(path)), str(path)))
        else:
            students.append(Student(name, str(path.parent), (path.name,), str(path), alone=True))
    return sorted(students, key=lambda s: s.name)


_MAGIC = re.compile(r"^\s*[%!?]")


def notebook_cells(path: Path) -> List[str]:
    """The code cells of a notebook (nbformat 4, or 3's worksheets), IPython magics and shell lines dropped."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    cells = data.get("cells")
    if cells is None:  # nbformat 3
        cells = [c for sheet in data.get("worksheets", []) for c in sheet.get("cells", [])]
    sources = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", cell.get("input", ""))
        text = "".join(source) if isinstance(source, list) else str(source)
        sources.append("\n".join("" if _MAGIC.match(line) else line for line in text.splitlines()))
    return sources


_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def notebook_definitions(path: Path) -> Tuple[List[ast.stmt], List[str]]:
    """The imports and function/class definitions of a notebook's cells (nothing that computes or prints), and a
    note per cell that does not parse."""
    nodes: List[ast.stmt] = []
    notes = []
    for number, source in enumerate(notebook_cells(path), 1):
        try:
            tree = ast.parse(source, filename=f"{path.name} cell {number}")
        except SyntaxError as exc:
            notes.append(f"{path.name}: code cell {number} does not parse ({exc.msg}, line {exc.lineno}): skipped")
            continue
        nodes += [node for node in tree.body if isinstance(node, _DEFINITIONS)]
    return nodes, notes


def file_definitions(path: Path) -> Tuple[List[str], List[str]]:
    """(names of the top-level functions a .py or .ipynb defines, notes); a .py that does not parse defines none."""
    if path.suffix == ".ipynb":
        try:
            nodes, notes = notebook_definitions(path)
        except (OSError, ValueError) as exc:
            return [], [f"{path.name}: not a readable notebook ({exc})"]
    else:
        try:
            nodes, notes = ast.parse(path.read_bytes(), filename=str(path)).body, []
        except (SyntaxError, ValueError) as exc:
            return [], [f"{path.name}: does not parse ({exc})"]
        except OSError as exc:
            return [], [f"{path.name}: not readable ({exc})"]
    names = []
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in names:
            names.append(node.name)
    return names, notes


def _kinds_in(name: str) -> List[Tuple[str, str]]:
    """(kind, pattern) of every built-in kind a name contains, each pattern removed once matched
    ('affine_relu_forward' -> affine, relu)."""
    from . import check

    patterns = getattr(check, "_NAME_KINDS", ())
    flat = name.lower().replace("_", "")
    found = []
    for pattern, kind in patterns:
        if pattern in flat:
            found.append((kind, pattern))
            flat = flat.replace(pattern, "|")
    return found


def _canonical(kind: str) -> Tuple[str, ...]:
    if kind in _UPDATE_KINDS or kind == "temporal_softmax_loss":
        return (kind,)
    return (f"{kind}_forward", f"{kind}_forward_naive", f"{kind}_forward_fast")


def _backward_name(forward: str) -> str:
    return forward.replace("_forward", "_backward")


def _forward_of(backward: str) -> str:
    name = backward[:-len("_alt")] if backward.endswith("_alt") else backward
    return name.replace("_backward", "_forward")


def plan_entries(defined: Sequence[Tuple[str, str]]) -> Tuple[List[Entry], List[str]]:
    """The checks for ``defined`` ((file, function name) in file order): one entry per forward, update rule or
    registered course function, plus one per ``*_backward_alt``; partners folded in; notes for what is left out.
    The first file defining a name wins."""
    from .check import infer_kind
    from .kinds import KINDS, load

    load()
    first: Dict[str, str] = {}
    for file, name in defined:
        first.setdefault(name, file)
    partners = set()
    for name in first:
        kind = infer_kind(name)
        if kind in KINDS:
            partners.update(p(name) for p in KINDS[kind].partners if p(name) != name)
    entries: List[Entry] = []
    notes: List[str] = []
    for name, file in first.items():
        kind = infer_kind(name)
        if kind is None:
            continue
        if kind in KINDS:
            if name not in partners:
                entries.append(Entry(name, file, kind))
            continue
        kinds = _kinds_in(name)
        if len({k for k, _ in kinds}) > 1:
            continue  # a sandwich of several layers (affine_relu_forward): not a kind
        flat = name.lower().replace("_", "")
        if kinds and not (flat.startswith(kinds[0][1]) or flat.startswith("spatial" + kinds[0][1])):
            notes.append(f"{name}: its name holds {kinds[0][0]!r} but does not start with it: not checked as one")
            continue  # forward_propagation_with_dropout, initialize_adam: not the course's layer or rule
        if "_backward" in name:
            forward = _forward_of(name)
            if forward not in first:
                notes.append(f"{name}: no {forward} to check it with")
            elif name.endswith("_alt"):
                entries.append(Entry(name, file, kind, backward=name, alt_of=forward, forward_file=first[forward]))
            continue
        entries.append(Entry(name, file, kind, backward=_backward_name(name) if "_forward" in name else None))
    return entries, notes


def _signature_fits(fn: Callable, kind: str) -> bool:
    """Whether ``fn`` can be called with the arguments the check gives a ``kind`` (the update rules' config is
    optional in the course)."""
    arity = _ARITY.get(kind)
    if arity is None:
        return True
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*range(arity))
        return True
    except TypeError:
        return False


def student_plan(student: Student) -> Tuple[List[Entry], List[str]]:
    """The entries of a student's files (parsed, not run) and the notes about them."""
    defined: List[Tuple[str, str]] = []
    notes: List[str] = []
    for rel in student.files:
        names, file_notes = file_definitions(Path(student.root) / rel)
        defined += [(rel, name) for name in names]
        notes += file_notes
    entries, plan_notes = plan_entries(defined)
    return entries, notes + plan_notes


# ---- loading a student's code (in the student's process) ------------------------------------------------------------
class _StandinFinder:
    """Supplies ``PACKAGE.layer_utils`` (etc.) from reference/standins when the student's package lacks it; last on
    ``sys.meta_path``, so a student's own module always wins."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        import importlib.util

        package, _, last = fullname.rpartition(".")
        if not package or last not in STANDIN_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, STANDINS_DIR / f"{last}.py")


def prepare_imports(root: Path) -> None:
    """The student's folder first on sys.path, its parent second, the stand-ins last."""
    for entry in (str(root.parent), str(root)):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    if str(STANDINS_DIR) not in sys.path:
        sys.path.append(str(STANDINS_DIR))
    if not any(isinstance(f, _StandinFinder) for f in sys.meta_path):
        sys.meta_path.append(_StandinFinder())


def _has_relative_import(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return False
    return any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))


_STUDENT_PACKAGE = "_handnn_student"


def load_file(root: Path, rel: str) -> Dict[str, Any]:
    """Run a student's .py as a module (dotted by its place under ``root``), or a notebook's definitions alone;
    its namespace. Raises whatever the student's code raises."""
    import importlib
    import importlib.util

    path = root / rel
    if path.suffix == ".ipynb":
        nodes, _ = notebook_definitions(path)
        name = "handnn_notebook_" + re.sub(r"\W", "_", path.stem)
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module
        namespace = vars(module)
        for node in nodes:
            code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                try:  # a notebook's imports of data loaders and plotting may be missing: its functions may not care
                    exec(code, namespace)
                except Exception as exc:  # noqa: BLE001
                    print(f"{rel}: {ast.unparse(node)} failed ({type(exc).__name__}: {exc})", file=sys.stderr)
            else:
                exec(code, namespace)
        return namespace
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] or [path.parent.name]
    dotted_ok = all(p.isidentifier() for p in parts)
    if dotted_ok and len(parts) == 1 and _has_relative_import(path):
        if _STUDENT_PACKAGE not in sys.modules:  # the student's folder as a package: `from .layers import ...`
            package = types.ModuleType(_STUDENT_PACKAGE)
            package.__path__ = [str(root)]
            sys.modules[_STUDENT_PACKAGE] = package
        return vars(importlib.import_module(f"{_STUDENT_PACKAGE}.{parts[0]}"))
    dotted = ".".join(parts)
    if dotted_ok and dotted not in sys.modules:  # not a name the grader already uses (numpy, torch, ...)
        module = importlib.import_module(dotted)
        if Path(getattr(module, "__file__", "") or "").resolve() == path.resolve():
            return vars(module)
    name = "handnn_user_" + re.sub(r"\W", "_", "_".join(parts))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return vars(module)


def print_student_traceback(exc: BaseException, root: Path) -> None:
    """The traceback of ``exc`` on stderr, keeping the frames of the student's own files (the grader's and the
    import machinery's are noise to a student)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve().is_relative_to(root.resolve())] or frames[-1:]
    sys.stderr.write("Traceback (the submission's frames):\n" + "".join(traceback.format_list(own)) +
                     "".join(traceback.format_exception_only(type(exc), exc)))


def _last_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: {exc.code}"
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return text[:500]


# ---- checking one function ------------------------------------------------------------------------------------------
def _as_2d(array: np.ndarray) -> Tuple[np.ndarray, str]:
    """An array laid out flat for a picture: (N, C, H, W) as N rows of C tiles H × W; (A, B, C) as (A·B, C)."""
    if array.ndim == 0:
        return array.reshape(1, 1), "scalar"
    if array.ndim == 1:
        return array.reshape(1, -1), "1 × n"
    if array.ndim == 2:
        return array, "rows × columns"
    if array.ndim == 3:
        a, b, c = array.shape
        return array.reshape(a * b, c), "(axis 0 · axis 1) × axis 2"
    if array.ndim == 4:
        n, c, h, w = array.shape
        return array.transpose(0, 2, 1, 3).reshape(n * h, c * w), "rows: axis 0 × axis 2; tiles: axis 1 × axis 3"
    return array.reshape(-1, array.shape[-1]), "leading axes × last axis"


def _blocks(length: int, cells: int) -> np.ndarray:
    return np.linspace(0, length, min(length, cells) + 1).round().astype(int)


def mismatch_map(actual: Any, expected: Any, cells: int = MAP_CELLS) -> Optional[Dict[str, Any]]:
    """Where ``actual`` and ``expected`` differ: each cell's worst relative error (the same error as
    :func:`reference.tolerances.compare`, floored at its tolerance) and whether it holds a mismatch, at most
    ``cells`` × ``cells`` blocks. None when the arrays cannot be compared element by element."""
    from .tolerances import tolerance

    try:
        a = np.asarray(actual)
        e = np.asarray(expected)
    except (ValueError, TypeError):
        return None
    if a.shape != e.shape or a.dtype.kind not in "fiub" or e.dtype.kind not in "fiub" or e.size == 0:
        return None
    rtol, atol = tolerance(e.dtype)
    a64, e64 = np.atleast_1d(a.astype(np.float64)), np.atleast_1d(e.astype(np.float64))  # a 0-d loss: one cell
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a64 - e64)
        err[(np.isnan(a64) & np.isnan(e64)) | (np.isinf(e64) & (a64 == e64))] = 0.0
        err[np.isnan(err)] = np.inf
        finite = np.abs(np.where(np.isfinite(e64), e64, 0.0))
        scale = max(1.0, float(finite.max()))
        bad = err > atol * scale + rtol * finite
        rel = err / np.maximum(finite, atol * scale)
        rel[err == 0] = 0.0
    rel2, layout = _as_2d(rel)
    bad2, _ = _as_2d(bad)
    rows, cols = _blocks(rel2.shape[0], cells), _blocks(rel2.shape[1], cells)
    grid_rel = np.maximum.reduceat(np.maximum.reduceat(rel2, rows[:-1], axis=0), cols[:-1], axis=1)
    grid_bad = np.logical_or.reduceat(np.logical_or.reduceat(bad2, rows[:-1], axis=0), cols[:-1], axis=1)
    finite_rel = np.where(np.isfinite(grid_rel), grid_rel, 1e300)
    return {"shape": list(a.shape), "layout": layout, "rows": int(len(rows) - 1), "cols": int(len(cols) - 1),
            "block": [int(np.ceil(rel2.shape[0] / (len(rows) - 1))), int(np.ceil(rel2.shape[1] / (len(cols) - 1)))],
            "rtol": rtol, "rel": [[float(f"{v:.3g}") for v in row] for row in finite_rel],
            "bad": [[int(v) for v in row] for row in grid_bad]}


def _apply(kind: str, options: GradeOptions, accepts: Callable[[str], bool]) -> Dict[str, Any]:
    """The keyword arguments of a built-in check for ``kind`` under ``options``."""
    kwargs: Dict[str, Any] = {"dtype": options.dtype, "seed": options.seed}
    style = options.momentum_style
    if kind in _UPDATE_KINDS:
        if kind == "sgd_momentum" and style in ("cs231n", "dlai"):
            kwargs["momentum_style"] = style
    else:
        if kind in ("batchnorm", "spatial_batchnorm") and style in ("torch", "cs231n"):
            kwargs["momentum_style"] = style
        if options.keep_prob:
            kwargs["p_is_keep_prob"] = True
    if options.course and accepts("course"):
        kwargs["course"] = options.course
    return kwargs


def _accepts(fn: Callable) -> Callable[[str], bool]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return lambda name: False
    return lambda name: name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_entry(entry: Entry, namespace: Mapping[str, Any], options: GradeOptions) -> Dict[str, Any]:
    """Check one entry; the result dict of the report (``passed``, ``verdict``, ``rows`` with diagnoses and
    mismatch maps)."""
    from . import check
    from .kinds import KINDS, Options, partner_functions

    result = _result_base(entry)
    name = entry.alt_of or entry.function
    fn = namespace.get(name)
    if not callable(fn):
        return {**result, "verdict": "error", "message": f"{name} is not a function after the file ran"}
    kind = entry.kind
    try:
        if kind in KINDS:
            registered = KINDS[kind]
            extra = {}
            if options.keep_prob:
                extra["keep_prob"] = True
            if options.momentum_style:
                extra["momentum_style"] = options.momentum_style
            report = registered.run(partner_functions(registered, fn, namespace),
                                    Options(dtype=options.dtype, seed=options.seed,
                                            course=options.course or "torch", extra=extra))
        elif kind in _UPDATE_KINDS:
            if name not in _canonical(kind) and not _signature_fits(fn, kind):
                return {**result, "verdict": "skipped", "message": f"its signature does not take the "
                        f"{kind} update rule's (w, dw, config)"}
            report = check.check_update(kind, fn, **_apply(kind, options, _accepts(check.check_update)))
        else:
            if name not in _canonical(kind) and not _signature_fits(fn, kind):
                return {**result, "verdict": "skipped", "message": f"its signature does not take the "
                        f"{_ARITY.get(kind)} arguments of a {kind} forward"}
            backward = namespace.get(entry.backward) if entry.backward else None
            result["backward"] = entry.backward if callable(backward) else None
            report = check.check_layer(kind, fn, backward if callable(backward) else None,
                                       **_apply(kind, options, _accepts(check.check_layer)))
        data = report.to_dict()
    except Exception as exc:  # noqa: BLE001 — the checker refused (a convention that does not apply, ...)
        return {**result, "verdict": "error", "message": _last_line(exc)}
    maps: Dict[str, Dict[str, Any]] = {}  # from the arrays a failed row of a built-in kind holds
    for failed in report.failures:
        picture = None if failed.expected is None else mismatch_map(failed.actual, failed.expected)
        if picture is not None:
            maps[failed.check] = picture
    rows = []
    for row in data.get("rows", []):
        row = {k: _jsonable(v) for k, v in row.items()}
        if not row.get("passed") and row.get("check") in maps:
            row["map"] = maps[row["check"]]
        rows.append(row)
    passed = bool(data.get("passed"))
    return {**result, "kind": data.get("kind", kind), "functions": data.get("functions"), "passed": passed,
            "verdict": "ok" if passed else "FAIL", "conventions": data.get("conventions", []), "rows": rows,
            "checks_passed": sum(1 for r in rows if r.get("passed")), "checks_total": len(rows)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _result_base(entry: Entry) -> Dict[str, Any]:
    return {"function": entry.function, "file": entry.file, "kind": entry.kind, "backward": entry.backward,
            "passed": False, "verdict": "missing", "checks_passed": 0, "checks_total": 0, "rows": [],
            "message": ""}


# ---- one student, in its own process --------------------------------------------------------------------------------
def _write_json(path: str, data: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def grade_in_process(student: Student, options: GradeOptions, out: str) -> None:
    """Load the student's files and check each entry, writing ``{"functions": [...], "notes": [...]}`` to ``out``
    after every function. Meant for the student's own process: it changes sys.path and runs the student's code."""
    sys.dont_write_bytecode = True
    root = Path(student.root)
    entries, notes = student_plan(student)
    prepare_imports(root)
    results: Dict[str, Dict[str, Any]] = {}
    state = {"functions": results, "notes": notes}
    _write_json(out, state)
    namespaces: Dict[str, Optional[Dict[str, Any]]] = {}
    for entry in entries:
        if entry.file not in namespaces:
            try:
                namespaces[entry.file] = load_file(root, entry.file)
            except BaseException as exc:  # noqa: BLE001 — SystemExit, KeyboardInterrupt of student code too
                namespaces[entry.file] = None
                message = f"{entry.file} failed to run: {_last_line(exc)}"
                notes.append(message)
                print_student_traceback(exc, root)
                for other in entries:
                    if other.file == entry.file:
                        results[other.function] = {**_result_base(other), "verdict": "crash",
                                                   "message": _last_line(exc)}
                _write_json(out, state)
        namespace = namespaces[entry.file]
        if namespace is None:
            continue
        if entry.forward_file and entry.forward_file != entry.file:  # a *_backward_alt apart from its forward
            forward_namespace = namespaces.get(entry.forward_file)
            if forward_namespace is None and entry.forward_file not in namespaces:
                try:
                    forward_namespace = load_file(root, entry.forward_file)
                except BaseException:  # noqa: BLE001 — reported when the forward's own entry loads it
                    forward_namespace = None
                namespaces[entry.forward_file] = forward_namespace
            namespace = {**(forward_namespace or {}), **namespace}
        start = time.perf_counter()
        try:
            results[entry.function] = check_entry(entry, namespace, options)
        except BaseException as exc:  # noqa: BLE001 — sys.exit or a KeyboardInterrupt inside the student's function
            print_student_traceback(exc, root)
            results[entry.function] = {**_result_base(entry), "verdict": "crash", "message": _last_line(exc)}
        results[entry.function]["seconds"] = round(time.perf_counter() - start, 3)
        _write_json(out, state)


def _read_capped(path: Path) -> Tuple[str, int]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(OUTPUT_CAP)
    except OSError:
        return "", 0
    text = head.decode("utf-8", errors="replace")
    if size > OUTPUT_CAP:
        text += f"\n[... {size - OUTPUT_CAP} more bytes not kept]"
    return text, size


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("[...")]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)?\b.*:", line) or \
                re.match(r"^[A-Za-z_][\w.]*(Error|Exception)$", line):
            return line[:500]
    return lines[-1][:500] if lines else ""


def finish_student(student: Student, state: Optional[Dict[str, Any]], status: str, message: str,
                   stdout: str, stderr: str, seconds: float, output_bytes: int) -> Dict[str, Any]:
    """The student's record: the functions the child checked, and the ones it did not reach marked with the
    student's status (timeout, crash)."""
    entries, notes = student_plan(student)
    notes = list((state or {}).get("notes", notes))
    done = (state or {}).get("functions", {})
    functions = []
    for entry in entries:
        if entry.function in done:
            item = done[entry.function]
            if item.get("verdict") == "skipped":
                notes.append(f"{entry.function}: {item.get('message')}")
                continue
            functions.append(item)
        elif status == "graded":
            functions.append({**_result_base(entry), "verdict": "error",
                              "message": "not checked: the student's process ended without reaching it"})
        else:
            verdict = "timeout" if status == "timeout" else "crash"
            functions.append({**_result_base(entry), "verdict": verdict, "message": message})
    return {"student": student.name, "path": student.source, "status": status, "message": message,
            "seconds": round(seconds, 3), "files": list(student.files), "notes": notes, "stdout": stdout,
            "stderr": stderr, "output_bytes": output_bytes, "functions": functions}


def _limit_resources(memory: int) -> None:
    """In the student's process: address space (on top of the current one), file size, no core dumps."""
    try:
        import resource
    except ImportError:  # not POSIX: the wall-time limit alone
        return
    current = 0
    try:
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pass
    for limit, value in ((resource.RLIMIT_AS, current + memory), (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT),
                         (resource.RLIMIT_CORE, 0)):
        try:
            soft, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(limit, (value, hard))
        except (ValueError, OSError):
            pass
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the file limit a write fails instead of killing


def _exit_message(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals.__members__.values() else str(sig)
        return f"killed by {name}" + (" (memory limit?)" if sig in (signal.SIGKILL, signal.SIGSEGV) else "")
    return f"exited with status {os.WEXITSTATUS(status)}"


def _student_from_json(data: Mapping[str, Any]) -> Student:
    return Student(data["name"], data["root"], tuple(data["files"]), data["source"], bool(data.get("alone")))


def _staged(student: Student, base: Path) -> Student:
    """A class's file student graded alone: a copy of its file in a folder of its own, so that its classmates'
    files are not importable; any other student as it is."""
    if not student.alone:
        return student
    folder = base / "src"
    folder.mkdir()
    shutil.copy2(Path(student.root) / student.files[0], folder / student.files[0])
    return Student(student.name, str(folder), student.files, student.source)


def run_forked(student: Student, options: GradeOptions) -> Dict[str, Any]:
    """Grade one student in a forked child of this process (which has torch imported): limits, scratch cwd,
    captured output, its own process group killed at the end."""
    base = Path(tempfile.mkdtemp(prefix="handnn-grade-"))
    try:
        cwd = base / "cwd"
        cwd.mkdir()
        out, out_txt, err_txt = str(base / "result.json"), base / "stdout.txt", base / "stderr.txt"
        staged = _staged(student, base)
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the student's process
            code = 0
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                for fd, path in ((1, out_txt), (2, err_txt)):
                    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(handle, fd)
                    os.close(handle)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
                sys.stdin = open(os.devnull)
                os.chdir(cwd)
                _limit_resources(options.memory)
                grade_in_process(staged, options, out)
            except BaseException:  # noqa: BLE001
                code = 70
                try:
                    traceback.print_exc()
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                except BaseException:  # noqa: BLE001
                    pass
                os._exit(code)
        status = None
        deadline = start + options.timeout
        delay = 0.005
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = wait_status
                break
            if time.perf_counter() >= deadline:
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        try:
            os.killpg(pid, signal.SIGKILL)  # a timeout, or whatever the student left running
        except (ProcessLookupError, PermissionError):
            pass
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        seconds = time.perf_counter() - start
        return _collect(student, options, out, out_txt, err_txt, status, seconds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _collect(student: Student, options: GradeOptions, out: str, out_txt: Path, err_txt: Path,
             status: Optional[int], seconds: float) -> Dict[str, Any]:
    stdout, out_bytes = _read_capped(out_txt)
    stderr, err_bytes = _read_capped(err_txt)
    try:
        with open(out, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        state = None
    if status is None:
        verdict, message = "timeout", f"no result after {options.timeout:g} s"
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and state is not None:
        verdict, message = "graded", ""
    else:
        verdict, error = "crash", _last_error_line(stderr)
        exited = _exit_message(status)
        message = error if error and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 70 else \
            f"{exited}: {error}" if error else exited
    return finish_student(student, state, verdict, message, stdout, stderr, seconds, out_bytes + err_bytes)


def run_subprocess(student: Student, options: GradeOptions) -> Dict[str, Any]:
    """Grade one student in ``python -m reference.grade --one``: torch imported afresh (portable, slower)."""
    base = Path(tempfile.mkdtemp(prefix="handnn-grade-"))
    try:
        cwd = base / "cwd"
        cwd.mkdir()
        out, out_txt, err_txt = str(base / "result.json"), base / "stdout.txt", base / "stderr.txt"
        spec = base / "student.json"
        spec.write_text(json.dumps(asdict(_staged(student, base))), encoding="utf-8")
        argv = [sys.executable, "-m", f"{__package__}.grade", "--one-student", str(spec), "--json", out,
                *options.check_argv()]
        start = time.perf_counter()
        with open(out_txt, "wb") as fo, open(err_txt, "wb") as fe:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                    env=_child_env(), start_new_session=True)
            try:
                proc.wait(timeout=options.timeout + _import_allowance())
                status: Optional[int] = _wait_status(proc.returncode)
            except subprocess.TimeoutExpired:
                status = None
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        return _collect(student, options, out, out_txt, err_txt, status, time.perf_counter() - start)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _import_allowance() -> float:
    return 30.0  # a fresh interpreter imports numpy and torch before the student's time starts to matter


def _wait_status(returncode: int) -> int:
    """A Popen return code as an os.wait status."""
    if returncode < 0:
        return -returncode
    return (returncode & 0xFF) << 8


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ---- the workers: torch imported once, one fork per student ---------------------------------------------------------
def _warm_up() -> None:
    """Run a few checks on trivial functions, so that torch's lazy initialisation (autograd, torch.optim, conv2d)
    happens once in the worker instead of in every student's process."""
    import warnings

    from . import check

    def affine_forward(x, w, b):
        return x.reshape(x.shape[0], -1) @ w + b, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)

    def dropout_forward(x, param):
        return x, None

    def sgd(w, dw, config=None):
        return w - 1e-2 * dw, config

    def conv_forward(x, w, b, param):
        from .twin import to_numpy, to_tensor
        import torch.nn.functional as F

        out = F.conv2d(to_tensor(x), to_tensor(w), to_tensor(b), stride=param["stride"], padding=param["pad"])
        return to_numpy(out), None

    def max_pool_forward(x, param):
        from .twin import to_numpy, to_tensor
        import torch.nn.functional as F

        out = F.max_pool2d(to_tensor(x), (param["pool_height"], param["pool_width"]), param["stride"])
        return to_numpy(out), None

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for run in (lambda: check.check_layer("affine", affine_forward, affine_backward),
                    lambda: check.check_layer("dropout", dropout_forward),
                    lambda: check.check_layer("conv", conv_forward),
                    lambda: check.check_layer("max_pool", max_pool_forward),
                    *(lambda kind=kind: check.check_update(kind, sgd) for kind in _UPDATE_KINDS)):
            try:
                run()
            except Exception:  # noqa: BLE001 — a warm-up only
                pass


def worker_main() -> int:
    """``python -m reference.grade --worker``: read one job per line on stdin (student and options as JSON),
    grade it in a forked child, answer the student's record as one JSON line on stdout."""
    import torch  # noqa: F401 — imported once here, inherited by every student's process

    from . import check  # noqa: F401
    from .kinds import load

    load()
    _warm_up()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write on the protocol pipe
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        student = _student_from_json(job["student"])
        options = GradeOptions(**job["options"])
        try:
            record = run_forked(student, options)
        except Exception as exc:  # noqa: BLE001 — never leave the parent waiting
            record = finish_student(student, None, "crash", f"grader: {_last_line(exc)}", "", "", 0.0, 0)
        protocol.write(json.dumps(record) + "\n")
        protocol.flush()
    return 0


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None

    def _start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen([sys.executable, "-m", f"{__package__}.grade", "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_child_env(),
                                     text=True, encoding="utf-8")
        return self.proc

    def grade(self, student: Student, options: GradeOptions) -> Dict[str, Any]:
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        job = {"student": asdict(student), "options": asdict(options)}
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            limit = time.monotonic() + options.timeout + _import_allowance() + 30.0
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, limit - time.monotonic()))
                if not ready:
                    raise TimeoutError("the grading worker did not answer")
                line = proc.stdout.readline()
                if not line:
                    raise EOFError("the grading worker ended")
                if line.strip():
                    return json.loads(line)
        except (OSError, ValueError, TimeoutError, EOFError) as exc:
            self.close(kill=True)
            return finish_student(student, None, "crash", f"grader worker: {exc}", "", "", 0.0, 0)

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        try:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc = None


#: idle workers, kept between calls of grade_students (each job forks afresh, so a worker carries nothing over)
_idle_workers: List[_Worker] = []
_pool_lock = threading.Lock()


def _borrow_worker() -> _Worker:
    with _pool_lock:
        return _idle_workers.pop() if _idle_workers else _Worker()


def _return_worker(worker: _Worker) -> None:
    with _pool_lock:
        _idle_workers.append(worker)


@atexit.register
def close_workers() -> None:
    """End the idle workers (at exit, or to start afresh)."""
    with _pool_lock:
        workers = list(_idle_workers)
        _idle_workers.clear()
    for worker in workers:
        worker.close()


def grade_students(students: Sequence[Student], options: GradeOptions, jobs: int = 1,
                   isolation: str = "fork", progress: Optional[Callable[[int, int, Dict[str, Any]], None]] = None
                   ) -> List[Dict[str, Any]]:
    """Grade every student, ``jobs`` at a time, each in its own process; the records in ``students``' order."""
    if isolation == "fork" and not hasattr(os, "fork"):
        isolation = "subprocess"
    records: List[Optional[Dict[str, Any]]] = [None] * len(students)
    lock = threading.Lock()
    queue = list(range(len(students)))
    done = [0]

    def loop() -> None:
        worker = _borrow_worker() if isolation == "fork" else None
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop(0)
                student = students[index]
                record = worker.grade(student, options) if worker else run_subprocess(student, options)
                with lock:
                    records[index] = record
                    done[0] += 1
                    if progress:
                        progress(done[0], len(students), record)
        finally:
            if worker:
                _return_worker(worker)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(max(1, min(jobs, len(students))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in records if r is not None]


# ---- reports --------------------------------------------------------------------------------------------------------
def _first_failure(item: Mapping[str, Any]) -> Tuple[str, str]:
    """(the first failing check, its diagnosis or problem) of a function's record."""
    for row in item.get("rows", []):
        if not row.get("passed"):
            detail = "; ".join(p for p in (row.get("problem"), row.get("diagnosis")) if p) or "no known cause " \
                                                                                             "recognised"
            return row.get("check", ""), detail
    return "", item.get("message", "")


def cell(item: Optional[Mapping[str, Any]]) -> str:
    """A function's cell in the class table."""
    if item is None:
        return "missing"
    verdict = item.get("verdict", "missing")
    if verdict == "FAIL":
        check_name, _ = _first_failure(item)
        return f"FAIL {check_name}".strip()
    return verdict


def _columns(records: Sequence[Mapping[str, Any]]) -> List[str]:
    names: List[str] = []
    for record in records:
        for item in record.get("functions", []):
            if item["function"] not in names:
                names.append(item["function"])
    return names


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def _student_summary(record: Mapping[str, Any]) -> str:
    """'7/10 ok', or the one thing that happened to every function (crash or timeout and its message)."""
    items = record.get("functions", [])
    status = record.get("status")
    if not items:
        return "no function to check" if status == "graded" else f"{status}: {record.get('message', '')}"[:120]
    verdicts = {i.get("verdict") for i in items}
    if len(verdicts) == 1 and verdicts <= {"crash", "timeout"}:
        return f"{items[0]['verdict']}: {items[0].get('message') or record.get('message', '')}"[:120]
    ok = sum(1 for i in items if i.get("verdict") == "ok")
    suffix = f" ({status}: {record.get('message', '')})"[:100] if status != "graded" else ""
    return f"{ok}/{len(items)} ok{suffix}"


def class_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Student × function: ok / FAIL and the first failing check / crash / timeout / error / missing; then each
    failure with its diagnosis."""
    columns = _columns(records)
    rows = []
    for record in records:
        by_name = {i["function"]: i for i in record.get("functions", [])}
        rows.append([record["student"], _student_summary(record), *(cell(by_name.get(c)) for c in columns)])
    lines = _grid(["student", "summary", *columns], rows)
    details = []
    for record in records:
        for item in record.get("functions", []):
            if item.get("verdict") in ("FAIL", "error", "crash", "timeout"):
                check_name, detail = _first_failure(item)
                where = f"{check_name}: " if check_name else ""
                details.append(f"  {record['student']} / {item['function']} ({item.get('verdict')}): "
                               f"{where}{detail}")
    failed = sum(1 for r in records if not student_passed(r))
    lines.append(f"{len(records) - failed} of {len(records)} students passed everything")
    if details:
        lines += ["", "failures:", *details]
    return "\n".join(lines)


def file_table(record: Mapping[str, Any]) -> str:
    """One student's functions: function | kind | verdict | checks passed/total | first failing check, diagnosis."""
    rows = []
    for item in record.get("functions", []):
        check_name, detail = _first_failure(item) if item.get("verdict") != "ok" else ("", "")
        name = item["function"] + (f" (+ {item['backward']})" if item.get("backward") and
                                   item["backward"] != item["function"] else "")
        rows.append([name, str(item.get("kind")), item.get("verdict", ""),
                     f"{item.get('checks_passed', 0)}/{item.get('checks_total', 0)}",
                     f"{check_name}: {detail}" if check_name else detail])
    lines = [f"{record['path']}: {_student_summary(record)}"]
    lines += _grid(["function", "kind", "verdict", "checks", "first failing check and its diagnosis"], rows)
    lines += [f"note: {n}" for n in record.get("notes", [])]
    return "\n".join(lines)


def student_passed(record: Mapping[str, Any]) -> bool:
    items = record.get("functions", [])
    return record.get("status") == "graded" and bool(items) and all(i.get("verdict") == "ok" for i in items)


def write_json(path: str, records: Sequence[Mapping[str, Any]], options: GradeOptions) -> None:
    import torch

    data = {"torch": torch.__version__, "options": asdict(options), "columns": _columns(records),
            "passed": all(student_passed(r) for r in records), "students": list(records)}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


CSV_FIELDS = ("student", "status", "function", "file", "kind", "verdict", "checks_passed", "checks_total",
              "first_failing_check", "diagnosis", "message")


def write_csv(path: str, records: Sequence[Mapping[str, Any]]) -> None:
    """One row per student × function (every function of the class: 'missing' where the student has none)."""
    columns = _columns(records)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_FIELDS)
        for record in records:
            by_name = {i["function"]: i for i in record.get("functions", [])}
            for name in columns or [""]:
                item = by_name.get(name)
                if item is None:
                    writer.writerow([record["student"], record["status"], name, "", "", "missing" if name else
                                     record["status"], 0, 0, "", "", record.get("message", "")])
                    continue
                check_name, detail = _first_failure(item) if item.get("verdict") != "ok" else ("", "")
                writer.writerow([record["student"], record["status"], name, item.get("file", ""),
                                 item.get("kind", ""), item.get("verdict", ""), item.get("checks_passed", 0),
                                 item.get("checks_total", 0), check_name,
                                 detail if check_name else "", item.get("message", "")])


# ---- the mismatch picture -------------------------------------------------------------------------------------------
def _png(pixels: np.ndarray) -> bytes:
    """A PNG of an (H, W, 3) uint8 array: zlib and struct, no imaging library."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + \
        chunk(b"IEND", b"")


def map_colours(picture: Mapping[str, Any]) -> np.ndarray:
    """(rows, cols, 3) colours: matching cells pale (grey-green, darker as the error nears the tolerance),
    mismatching ones from yellow (just past the tolerance) to dark red (relative error 1 or more)."""
    rel = np.asarray(picture["rel"], dtype=np.float64)
    bad = np.asarray(picture["bad"], dtype=bool)
    rtol = max(float(picture.get("rtol", 1e-10)), 1e-300)
    with np.errstate(divide="ignore"):
        level = np.log10(np.maximum(rel, 1e-300))
    span = max(-np.log10(rtol), 1.0)
    t = np.clip((level - np.log10(rtol)) / span, 0.0, 1.0)  # 0 at the tolerance, 1 at relative error 1
    yellow, red = np.array([255, 220, 60.0]), np.array([150, 0, 20.0])
    bad_rgb = yellow + (red - yellow) * t[..., None]
    good_t = np.clip((level - np.log10(rtol) + 6) / 6, 0.0, 1.0)  # tinted within six decades of the tolerance
    pale, tinted = np.array([240, 244, 240.0]), np.array([180, 210, 180.0])
    good_rgb = pale + (tinted - pale) * good_t[..., None]
    return np.where(bad[..., None], bad_rgb, good_rgb).round().astype(np.uint8)


def map_image(picture: Mapping[str, Any], width: int = 240) -> str:
    """The mismatch map as an <img> with a PNG data URI, scaled up without smoothing."""
    pixels = map_colours(picture)
    uri = "data:image/png;base64," + base64.b64encode(_png(pixels)).decode("ascii")
    rows, cols = pixels.shape[:2]
    scale = max(1, min(width // max(cols, 1), 160 // max(rows, 1) or 1))
    title = (f"shape {tuple(picture['shape'])} laid out as {picture['layout']}; cell = {picture['block'][0]}×"
             f"{picture['block'][1]} elements; red = mismatch (darker: larger relative error)")
    return (f'<img class="map" alt="mismatch map" title="{html.escape(title)}" src="{uri}" '
            f'width="{cols * scale}" height="{rows * scale}">')


# ---- the HTML page --------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee;cursor:pointer;position:sticky;top:0}
td.ok{background:#e3f4e3}td.FAIL{background:#fbd5d5}td.crash,td.error{background:#f3c9f0}
td.timeout{background:#ffe7b3}td.missing{background:#f4f4f4;color:#888}
img.map{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #999;margin:4px 0}
pre{background:#f7f7f7;padding:6px;max-height:16em;overflow:auto;font-size:12px}
details{margin:.3em 0}
"""

_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir > 0 ? 'asc' : 'desc';
    rows.sort(function(a, b){ var x = a.cells[col].dataset.key || a.cells[col].textContent,
      y = b.cells[col].dataset.key || b.cells[col].textContent;
      return dir * x.localeCompare(y, undefined, {numeric: true}); });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""

_RANK = {"ok": "0", "FAIL": "1", "error": "2", "crash": "3", "timeout": "4", "missing": "5"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    try:
        return f"{float(value):.2e}"
    except (TypeError, ValueError):
        return str(value)


def _rows_table(item: Mapping[str, Any]) -> str:
    parts = ["<table><thead><tr><th>check</th><th>max abs err</th><th>max rel err</th><th>mismatches</th>"
             "<th>verdict</th><th>diagnosis</th><th>where</th></tr></thead><tbody>"]
    for row in item.get("rows", []):
        verdict = "ok" if row.get("passed") else "FAIL"
        detail = "; ".join(p for p in (row.get("problem"), row.get("diagnosis")) if p)
        picture = map_image(row["map"]) if row.get("map") else ""
        parts.append(f"<tr><td>{_e(row.get('check'))}</td><td>{_number(row.get('max_abs'))}</td>"
                     f"<td>{_number(row.get('max_rel'))}</td><td>{_e(row.get('mismatches'))}/"
                     f"{_e(row.get('total'))}</td><td class=\"{verdict}\">{verdict}</td><td>{_e(detail)}</td>"
                     f"<td>{picture}</td></tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def html_page(records: Sequence[Mapping[str, Any]], options: GradeOptions, title: str) -> str:
    """One self-contained page: the sortable class table, then per student its failures (rows, mismatch maps),
    notes and captured output."""
    columns = _columns(records)
    head = ("<tr><th>student</th><th>summary</th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>")
    body = []
    for record in records:
        by_name = {i["function"]: i for i in record.get("functions", [])}
        cells = []
        for name in columns:
            item = by_name.get(name)
            verdict = item.get("verdict", "missing") if item else "missing"
            tip = _first_failure(item)[1] if item and verdict != "ok" else ""
            cells.append(f'<td class="{_e(verdict)}" data-key="{_RANK.get(verdict, "9")}{_e(cell(item))}" '
                         f'title="{_e(tip)}"><a href="#{_e(_anchor(record, name))}">{_e(cell(item))}</a></td>'
                         if item and verdict != "ok" else
                         f'<td class="{_e(verdict)}" data-key="{_RANK.get(verdict, "9")}">{_e(cell(item))}</td>')
        ok = sum(1 for i in record.get("functions", []) if i.get("verdict") == "ok")
        body.append(f'<tr><td><a href="#{_e(_anchor(record))}">{_e(record["student"])}</a></td>'
                    f'<td data-key="{ok:05d}">{_e(_student_summary(record))}</td>{"".join(cells)}</tr>')
    sections = []
    for record in records:
        parts = [f'<h3 id="{_e(_anchor(record))}">{_e(record["student"])} <small>({_e(record["path"])}; '
                 f'{_e(_student_summary(record))}; {record.get("seconds", 0):.1f} s)</small></h3>']
        for item in record.get("functions", []):
            if item.get("verdict") == "ok":
                continue
            parts.append(f'<h4 id="{_e(_anchor(record, item["function"]))}">{_e(item["function"])} '
                         f'<small>{_e(item.get("kind"))} in {_e(item.get("file"))}: {_e(item.get("verdict"))}'
                         f'</small></h4>')
            if item.get("message"):
                parts.append(f"<p>{_e(item['message'])}</p>")
            if item.get("rows"):
                parts.append(_rows_table(item))
        if record.get("notes"):
            parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in record["notes"]) + "</ul>")
        for stream in ("stdout", "stderr"):
            if record.get(stream):
                parts.append(f"<details><summary>{stream}</summary><pre>{_e(record[stream])}</pre></details>")
        sections.append("".join(parts))
    passed = sum(1 for r in records if student_passed(r))
    settings = ", ".join(f"{k}={v}" for k, v in asdict(options).items() if v not in (None, False))
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + _e(title) + "</title><style>" + _CSS +
            "</style></head><body><h1>" + _e(title) + "</h1><p>" + f"{passed} of {len(records)} students passed "
            f"everything; {_e(settings)}. Click a column to sort; a failing cell links to its checks. Maps: each "
            "cell is a block of the compared array, red where it mismatches torch (darker: larger relative "
            "error).</p><table class=\"sortable\"><thead>" + head + "</thead><tbody>" + "".join(body) +
            "</tbody></table><h2>Details</h2>" + "".join(sections) + "<script>" + _JS + "</script></body></html>")


def _anchor(record: Mapping[str, Any], function: str = "") -> str:
    return re.sub(r"[^\w-]", "_", f"s-{record['student']}" + (f"-{function}" if function else ""))


def write_html(path: str, records: Sequence[Mapping[str, Any]], options: GradeOptions, title: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html_page(records, options, title))


# ---- the command line -----------------------------------------------------------------------------------------------
def _parser(spec: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"handnn-verify --user {spec}",
        description="Grade a whole .py or notebook (every function whose kind its name tells), or a class: each "
                    "subfolder or top-level .py/.ipynb of DIR is one student, graded in its own process.")
    _add_check_options(parser)
    parser.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1,
                        help="students graded at once (default: the number of CPUs)")
    parser.add_argument("--shard", type=parse_shard, metavar="I/N",
                        help="grade every N-th student starting at I (0 <= I < N), in sorted order")
    parser.add_argument("--isolation", choices=("fork", "subprocess"), default="fork",
                        help="fork: workers import torch once and fork a process per student (default on POSIX); "
                             "subprocess: a fresh interpreter per student")
    parser.add_argument("--json", metavar="FILE", help="write every student's results as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one row per student × function")
    parser.add_argument("--html", metavar="FILE", help="write one self-contained HTML page")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main_grade(spec: str, argv: Optional[Sequence[str]] = None) -> int:
    """``handnn-verify --user FILE|DIR [options]``: grade, print the table, write the reports; 0 when everything
    passed, 1 on any failure, crash or timeout, 2 on a usage error."""
    parser = _parser(spec)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    options = _options(args)
    path = Path(spec)
    try:
        if path.is_dir():
            students = class_students(path)
            if not students:
                raise UsageError(f"{spec} holds no student: no subfolder and no .py or .ipynb file")
            single = False
        elif path.is_file():
            if path.suffix not in (".py", ".ipynb"):
                raise UsageError(f"{spec}: expected a .py or .ipynb file or a folder")
            students = [Student(path.stem, str(path.resolve().parent), (path.name,), str(path))]
            single = True
        else:
            raise UsageError(f"no such file or folder: {spec}")
        if args.shard:
            first, count = args.shard
            students = students[first::count]
    except UsageError as exc:
        print(f"handnn-verify --user: {exc}", file=sys.stderr)
        return 2
    if single and not student_plan(students[0])[0]:
        print(f"handnn-verify --user: {spec} defines no function whose kind its name tells "
              f"(e.g. affine_forward, batchnorm_forward, adam)", file=sys.stderr)
        return 2
    start = time.perf_counter()

    def progress(done: int, total: int, record: Dict[str, Any]) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] {record['student']}: {_student_summary(record)} ({record['seconds']:.1f} s)",
                  file=sys.stderr, flush=True)

    records = grade_students(students, options, jobs=args.jobs, isolation=args.isolation,
                             progress=None if single else progress)
    if single:
        print(file_table(records[0]))
    else:
        print(class_table(records))
        if not args.quiet:
            print(f"graded {len(records)} students in {time.perf_counter() - start:.1f} s with {args.jobs} jobs",
                  file=sys.stderr)
    title = f"handnn-verify --user {spec}"
    if args.json:
        write_json(args.json, records, options)
    if args.csv:
        write_csv(args.csv, records)
    if args.html:
        write_html(args.html, records, options, title)
    return 0 if all(student_passed(r) for r in records) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m reference.grade``: ``--worker`` (the parent's fork server), ``--one PATH --json OUT`` (grade
    one student in this process, writing its functions' results), or ``FILE|DIR [options]`` as ``--user``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main()
    if argv[:1] in (["--one"], ["--one-student"]):
        parser = argparse.ArgumentParser(prog="python -m reference.grade --one")
        parser.add_argument("--one", metavar="PATH", help="a student's folder, .py or .ipynb")
        parser.add_argument("--one-student", metavar="JSON", help="a student as JSON (used by the runner)")
        parser.add_argument("--json", metavar="OUT", required=True)
        _add_check_options(parser)
        args = parser.parse_args(argv)
        if args.one_student:
            student = _student_from_json(json.loads(Path(args.one_student).read_text(encoding="utf-8")))
        else:
            path = Path(args.one).resolve()
            if path.is_dir():
                student = Student(path.name, str(path), tuple(student_files(path)), str(path))
            elif path.is_file():
                student = Student(path.stem, str(path.parent), (path.name,), str(path))
            else:
                print(f"python -m reference.grade --one: no such file or folder: {args.one}", file=sys.stderr)
                return 2
        options = _options(args)
        import torch  # noqa: F401 — before the limit: --memory is on top of the grader's own footprint

        _limit_resources(options.memory)
        grade_in_process(student, options, str(Path(args.json).resolve()))
        return 0
    if not argv or argv[0].startswith("-"):
        print("usage: python -m reference.grade FILE|DIR [options] | --one PATH --json OUT | --worker",
              file=sys.stderr)
        return 2
    return main_grade(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
