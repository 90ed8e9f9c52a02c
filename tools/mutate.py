"""A small sampled AST mutation tester: do the tests fail when the code is wrong?

Usage (from the repository root, with the venv's python; ``tox -e mutation -- ARGS`` runs the same)::

    python tools/mutate.py                      # ~450 sampled mutants of handnn/functional and handnn/optim
    python tools/mutate.py --all -j 2           # every mutation site
    python tools/mutate.py --paths handnn/optim/sgd.py handnn/checkpoint.py --sample 40
    python tools/mutate.py --list --sample 20   # the sampled mutants and their diffs, nothing run
    python tools/mutate.py --only 'handnn/optim/sgd.py::sgd_step::arith::1a2b3c'   # one mutant: diff + test output
    python tools/mutate.py --only ID --tests tests                               # ... against the whole suite
    python tools/mutate.py --json /tmp/mutation.json --min-score 95
    python tools/mutate.py --rev HEAD           # the last commit's tree instead of the working tree

Method. Each target file is parsed with :mod:`ast` and every mutation site is enumerated in a fixed order: arithmetic
swaps (``+``/``-``, ``*``/``/``, ``/`` to ``//``, ``**`` to ``*``), augmented assignments (``+=``/``-=``,
``*=``/``/=``, ``x op= y`` to ``x = y``), comparisons (``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``is``/``is
not``, ``in``/``not in``), ``and``/``or``, removal of ``not`` and of unary minus, number constants (0 to 1, 1 to 0
and to 2, n to n+1, x to 1.5x, True/False), ``axis=``/``dim=`` keywords (k to k+1, None to 0), dropped statements
(an expression, assignment, ``raise`` or ``return <expr>`` replaced by ``pass``), removal of an ``out=`` argument,
and ``if c`` to ``if not (c)`` (statements and conditional expressions). Docstrings, strings, f-strings, annotations,
``__all__`` and ``if TYPE_CHECKING`` blocks are skipped. A mutant replaces only the exact source span of the change
(the rest of the file keeps its text and line numbers) and must compile.

A mutant's id is ``path::qualified.function::operator::hash`` where the hash covers the source line(s) of the
mutated node, its text and its replacement; ``~k`` is appended to the k-th repeat of an identical change in the same
function. Ids therefore survive edits elsewhere in the file, and in the same function away from that line.

The sample (``--sample N``, ``--seed``) is stratified: each file gets mutants in proportion to its number of sites,
at least :data:`MIN_PER_FILE`. The repository is copied once per worker into a temporary directory (the working
tree is never touched; the copies are taken at start-up, so concurrent edits do not leak in), and each copy is
checked to import ``handnn`` from itself (the child's cwd and ``PYTHONPATH`` are the copy, ahead of the venv's
editable install). Workers (``-j``) are threads, each owning one copy and driving one pytest process at a time: a
mutant is written into the copy (its bytecode removed; ``PYTHONDONTWRITEBYTECODE`` writes none) and that file's fast
tests (:data:`TESTS`) run there with ``CI=true`` (hypothesis derandomized) and ``pytest -x``; then the original is
restored. Every test set first passes on the unmutated copy, and 5x its time (at least 30 s) is the per-mutant
timeout: a timed-out mutant counts as killed. Mutants listed in ``tools/mutation_equivalent.toml`` are not run and
leave the denominator: score = (killed + timeout) / (mutants - equivalent). Exit status 0 when the score reaches
``--min-score``.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import io
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TARGETS = ("handnn/functional", "handnn/optim")
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.toml"
MIN_PER_FILE = 3
#: parity-tests every module and loss on edge inputs, and the functional pairs' own contract (torch's defaults, their
#: argument checks): added to each functional/ and nn/ file's tests (the first) and each functional/ file's (both)
EDGE_TESTS = "tests/parity/test_edge_inputs.py"
FUNCTIONAL_TESTS = "tests/parity/test_functional_api.py"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".tox", "__pycache__", "*.egg-info", ".hypothesis",
                                     ".pytest_cache", "build", "dist")

_OPTIM = ["tests/unit/test_optim_unit.py", "tests/unit/test_checkpoint_unit.py", "tests/golden/test_golden.py",
          "tests/parity/test_conventions.py", "tests/parity/test_optim.py"]
_MODULE = ["tests/unit/test_module.py", "tests/parity/test_module_api.py", "tests/parity/test_twin.py"]
#: each source file's fast tests (those that exercise it directly), cheapest first: ``pytest -x`` stops early
TESTS: Dict[str, List[str]] = {
    "handnn/functional/__init__.py": ["tests/unit/test_import.py", "tests/golden/test_golden.py"],
    "handnn/functional/_kernels.py": [
        "tests/unit/test_kernels.py", "tests/unit/test_special.py", "tests/unit/test_optim_unit.py",
        "tests/golden/test_golden.py", "tests/parity/test_large_inputs.py", "tests/parity/test_activations.py",
        "tests/parity/test_linear.py", "tests/parity/test_losses.py", "tests/parity/test_layernorm.py",
        "tests/parity/test_batchnorm.py", "tests/parity/test_groupnorm.py", "tests/parity/test_optim.py",
        "tests/parity/test_embedding.py", "tests/parity/test_attention.py"],
    "handnn/functional/activation.py": [
        "tests/unit/test_special.py", "tests/golden/test_golden.py", "tests/parity/test_activations.py",
        "tests/parity/test_large_inputs.py", "tests/parity/test_losses.py", "tests/parity/test_module_api.py",
        "tests/parity/test_twin.py", "tests/parity/test_properties.py"],
    "handnn/functional/dropout.py": [
        "tests/golden/test_golden.py", "tests/parity/test_dropout.py", "tests/parity/test_conventions.py",
        "tests/parity/test_module_api.py", "tests/parity/test_twin.py", "tests/parity/test_same_seed.py"],
    "handnn/functional/linear.py": [
        "tests/golden/test_golden.py", "tests/parity/test_linear.py", "tests/parity/test_twin.py",
        "tests/parity/test_module_api.py", "tests/parity/test_properties.py"],
    "handnn/functional/loss.py": [
        "tests/golden/test_golden.py", "tests/parity/test_losses.py", "tests/parity/test_properties.py"],
    "handnn/functional/normalization.py": [
        "tests/unit/test_kernels.py", "tests/golden/test_golden.py", "tests/parity/test_batchnorm.py",
        "tests/parity/test_layernorm.py", "tests/parity/test_groupnorm.py", "tests/parity/test_large_inputs.py",
        "tests/parity/test_properties.py", "tests/parity/test_twin.py"],
    "handnn/functional/conv.py": ["tests/parity/test_conv.py", "tests/golden/test_golden.py"],
    "handnn/functional/pooling.py": ["tests/parity/test_pooling.py", "tests/golden/test_golden.py"],
    "handnn/functional/rnn.py": ["tests/parity/test_rnn.py", "tests/parity/test_rnn_cells.py",
                                 "tests/golden/test_golden.py"],
    "handnn/functional/attention.py": ["tests/parity/test_attention.py", "tests/parity/test_transformer.py",
                                       "tests/golden/test_golden.py"],
    "handnn/functional/sparse.py": ["tests/parity/test_embedding.py", "tests/golden/test_golden.py"],
    "handnn/functional/special.py": [
        "tests/unit/test_special.py", "tests/golden/test_golden.py", "tests/parity/test_activations.py",
        "tests/parity/test_large_inputs.py"],
    "handnn/optim/__init__.py": _OPTIM,
    "handnn/optim/adagrad.py": _OPTIM,
    "handnn/optim/adam.py": _OPTIM,
    "handnn/optim/rmsprop.py": _OPTIM,
    "handnn/optim/sgd.py": _OPTIM,
    "handnn/optim/optimizer.py": _OPTIM + ["tests/parity/test_lr_scheduler.py", "tests/unit/test_regularization.py"],
    "handnn/optim/lr_scheduler.py": [
        "tests/unit/test_optim_unit.py", "tests/unit/test_checkpoint_unit.py", "tests/parity/test_lr_scheduler.py",
        "tests/parity/test_checkpoint.py"],
    # not targets by default (--paths ...)
    "handnn/checkpoint.py": ["tests/unit/test_checkpoint_unit.py", "tests/parity/test_checkpoint.py"],
    "handnn/regularization.py": ["tests/unit/test_regularization.py", "tests/parity/test_conventions.py"],
    "handnn/nn/parameter.py": ["tests/unit/test_module.py", "tests/unit/test_optim_unit.py"],
    "handnn/nn/modules/__init__.py": ["tests/unit/test_import.py", "tests/unit/test_module.py"],
    "handnn/nn/modules/module.py": _MODULE + ["tests/unit/test_checkpoint_unit.py"],
    "handnn/nn/modules/container.py": _MODULE,
    "handnn/nn/modules/flatten.py": _MODULE,
    "handnn/nn/modules/activation.py": _MODULE + ["tests/golden/test_golden.py", "tests/parity/test_activations.py"],
    "handnn/nn/modules/dropout.py": _MODULE + ["tests/parity/test_dropout.py"],
    "handnn/nn/modules/linear.py": _MODULE + ["tests/golden/test_golden.py", "tests/parity/test_linear.py"],
    "handnn/nn/modules/loss.py": ["tests/unit/test_module.py", "tests/golden/test_golden.py",
                                  "tests/parity/test_losses.py"],
    "handnn/nn/modules/normalization.py": _MODULE + [
        "tests/golden/test_golden.py", "tests/parity/test_batchnorm.py", "tests/parity/test_layernorm.py",
        "tests/parity/test_groupnorm.py"],
}

BINOPS = {ast.Add: ("+", ["-"]), ast.Sub: ("-", ["+"]), ast.Mult: ("*", ["/"]), ast.Div: ("/", ["*", "//"]),
          ast.FloorDiv: ("//", ["/"]), ast.Pow: ("**", ["*"])}
AUGOPS = {ast.Add: ("+=", ["-=", "="]), ast.Sub: ("-=", ["+=", "="]), ast.Mult: ("*=", ["/=", "="]),
          ast.Div: ("/=", ["*=", "="])}
CMPOPS = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
          ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"),
          ast.In: ("in", "not in"), ast.NotIn: ("not in", "in")}
AXIS_KEYWORDS = {"axis", "dim"}
DROPPABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Return)
TYPING_GENERICS = {"Union", "Optional", "Tuple", "List", "Dict", "Callable", "Iterable", "Iterator", "Sequence",
                   "Mapping", "Type"}
#: ``if not (a == b)`` is the comparison swap ``a != b`` again (likewise ``if not (not c)``): not made twice
NEGATABLE = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot, ast.In, ast.NotIn)

Edit = Tuple[int, int, str]  # (start, stop, replacement), character offsets into the source


@dataclass
class Mutant:
    id: str
    path: str
    line: int
    operator: str
    before: str  # the mutated node's text, on one line
    after: str
    edits: List[Edit] = field(repr=False)

    def apply(self, source: str) -> str:
        for start, stop, text in sorted(self.edits, reverse=True):
            source = source[:start] + text + source[stop:]
        return source

    def diff(self, source: str) -> str:
        lines = difflib.unified_diff(source.splitlines(True), self.apply(source).splitlines(True),
                                     f"a/{self.path}", f"b/{self.path}", n=1)
        return "".join(lines)


def one_line(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def number_variants(value: object) -> List[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return {0: [1], 1: [0, 2]}.get(value, [value + 1])
    if isinstance(value, float):
        return [1.0] if value == 0 else [float(f"{value * 1.5:.6g}")]
    return []


class SiteFinder(ast.NodeVisitor):
    """Collects every mutant of one file, in source order (:meth:`mutants`)."""

    def __init__(self, path: str, source: str) -> None:
        self.path, self.source = path, source
        self.lines = re.findall(r"[^\n]*\n|[^\n]+$", source)  # only \n ends a line, as for ast
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.scope: List[str] = []
        self.handled: set[int] = set()  # nodes an operator has claimed (the constant of ``axis=1``)
        self.found: List[Tuple[str, str, ast.AST, List[Edit]]] = []  # (qualname, operator, node, edits)

    # ---- positions ------------------------------------------------------------------------------------------------
    def offset(self, lineno: int, col: int) -> int:  # ast columns are UTF-8 byte offsets
        line = self.lines[lineno - 1]
        return self.line_starts[lineno - 1] + len(line.encode()[:col].decode())

    def span(self, node: ast.AST) -> Tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def operator_in_gap(self, start: int, stop: int, expected: str) -> Optional[Tuple[int, int]]:
        """The span of ``expected`` (an operator) in the text between two operands: parentheses, space, comments."""
        gap = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), self.source[start:stop])
        ends = [i for i, c in enumerate(gap) if c not in " \t\r\n\\()"]
        if not ends or " ".join(gap[ends[0]:ends[-1] + 1].split()) != expected:
            return None
        return start + ends[0], start + ends[-1] + 1

    def add(self, operator: str, node: ast.AST, edits: List[Edit]) -> None:
        self.found.append((".".join(self.scope) or "<module>", operator, node, edits))

    # ---- traversal ------------------------------------------------------------------------------------------------
    def visit_body(self, body: List[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(expr)
        self.scope.append(node.name)
        self.visit_statements(node.body)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(expr)
        self.scope.append(node.name)
        self.visit_statements(node.body)
        self.scope.pop()

    def visit_Module(self, node: ast.Module) -> None:
        self.visit_statements(node.body)

    def visit_statements(self, body: List[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and "__all__" in ast.unparse(
                    stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target):
                continue
            if isinstance(stmt, ast.If) and ast.unparse(stmt.test).split(".")[-1] == "TYPE_CHECKING":
                continue
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Subscript) and ast.unparse(
                    stmt.value.value).split(".")[-1] in TYPING_GENERICS:
                continue  # a type alias: an annotation
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # a docstring, or ``...``
            if isinstance(stmt, DROPPABLE) and not (isinstance(stmt, (ast.Return, ast.AnnAssign))
                                                    and stmt.value is None):
                start, stop = self.span(stmt)
                self.add("drop", stmt, [(start, stop, "pass" + "\n" * self.source.count("\n", start, stop))])
            if isinstance(stmt, ast.AnnAssign):  # not the annotation
                for child in (stmt.target, stmt.value):
                    if child is not None:
                        self.visit(child)
            else:
                self.visit(stmt)

    def generic_visit(self, node: ast.AST) -> None:
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                self.visit_statements(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass  # f-strings: messages (and 3.11 gives their inner nodes no usable positions)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        strings = any(isinstance(side, ast.JoinedStr) or (isinstance(side, ast.Constant) and isinstance(
            side.value, (str, bytes))) for side in (node.left, node.right))
        if type(node.op) in BINOPS and not strings:
            symbol, replacements = BINOPS[type(node.op)]
            where = self.operator_in_gap(self.span(node.left)[1], self.span(node.right)[0], symbol)
            for new in replacements if where else []:
                self.add("arith", node, [(*where, new)])
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if type(node.op) in AUGOPS:
            symbol, replacements = AUGOPS[type(node.op)]
            where = self.operator_in_gap(self.span(node.target)[1], self.span(node.value)[0], symbol)
            for new in replacements if where else []:
                self.add("augassign", node, [(*where, new)])
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            symbol, new = CMPOPS[type(op)]
            where = self.operator_in_gap(self.span(left)[1], self.span(right)[0], symbol)
            if where:
                self.add("compare", node, [(*where, new)])
            left = right
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        symbol, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        gaps = [self.operator_in_gap(self.span(a)[1], self.span(b)[0], symbol)
                for a, b in zip(node.values, node.values[1:])]
        if all(gaps):
            self.add("boolop", node, [(*where, new) for where in gaps if where])
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        start = self.span(node)[0]
        if isinstance(node.op, ast.Not) and self.source.startswith("not", start):
            self.add("not", node, [(start, start + 3, "")])
        elif isinstance(node.op, ast.USub) and id(node) not in self.handled and self.source.startswith("-", start):
            self.add("neg", node, [(start, start + 1, "")])
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if id(node) not in self.handled and not isinstance(node.value, (str, bytes)) and node.value is not None:
            start, stop = self.span(node)
            for new in number_variants(node.value):
                self.add("number", node, [(start, stop, repr(new))])

    def visit_keyword(self, node: ast.keyword) -> None:
        value = node.value
        if node.arg in AXIS_KEYWORDS:
            inner = value.operand if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub) else value
            if isinstance(inner, ast.Constant) and (inner.value is None or type(inner.value) is int):
                number = None if inner.value is None else (-inner.value if inner is not value else inner.value)
                start, stop = self.span(value)
                self.add("axis", value, [(start, stop, "0" if number is None else repr(number + 1))])
                self.handled.update({id(value), id(inner)})
        self.visit(value)

    def visit_Call(self, node: ast.Call) -> None:
        items = sorted(node.args + node.keywords, key=lambda n: (n.lineno, n.col_offset))  # type: ignore
        for i, item in enumerate(items):
            if isinstance(item, ast.keyword) and item.arg == "out":
                start, stop = self.span(item)
                if i > 0:
                    start = self.span(items[i - 1])[1]
                elif i + 1 < len(items):
                    stop = self.span(items[i + 1])[0]
                self.add("out", node, [(start, stop, "\n" * self.source.count("\n", start, stop))])
        self.generic_visit(node)

    def visit_If(self, node: ast.If | ast.IfExp) -> None:
        test = node.test
        duplicate = (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)) or (
            isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], NEGATABLE))
        if not duplicate:
            start, stop = self.span(test)
            self.add("if-not", test, [(start, stop, f"not ({self.source[start:stop]})")])
        self.generic_visit(node)

    visit_IfExp = visit_If

    # ---- results --------------------------------------------------------------------------------------------------
    def mutants(self) -> List[Mutant]:
        self.visit(ast.parse(self.source))
        result, seen = [], {}  # type: List[Mutant], Dict[str, int]
        for qualname, operator, node, edits in self.found:
            start, stop = self.span(node)
            before = self.source[start:stop]
            after = Mutant("", "", 0, "", "", "", [(a - start, b - start, t) for a, b, t in edits]).apply(before)
            context = "".join(self.lines[node.lineno - 1:node.end_lineno])  # type: ignore[attr-defined]
            digest = hashlib.sha1("\0".join((operator, context, before, after)).encode()).hexdigest()[:6]
            mutant_id = f"{self.path}::{qualname}::{operator}::{digest}"
            seen[mutant_id] = seen.get(mutant_id, 0) + 1
            if seen[mutant_id] > 1:
                mutant_id += f"~{seen[mutant_id]}"
            mutant = Mutant(mutant_id, self.path, node.lineno, operator, one_line(before),  # type: ignore
                            one_line(after), edits)
            try:
                compile(mutant.apply(self.source), self.path, "exec", dont_inherit=True)
            except SyntaxError:
                continue
            result.append(mutant)
        return sorted(result, key=lambda m: (m.edits[0][0], m.id))


# ---- selection ----------------------------------------------------------------------------------------------------
def target_files(root: Path, paths: Sequence[str]) -> List[str]:
    files: List[str] = []
    for p in paths:
        full = root / p
        found = sorted(full.rglob("*.py")) if full.is_dir() else [full]
        files += [f.relative_to(root).as_posix() for f in found if "__pycache__" not in f.parts]
    for f in files:
        if f not in TESTS:
            sys.exit(f"mutate: no tests are mapped to {f}: add it to TESTS in tools/mutate.py")
    return sorted(set(files))


def tests_for(root: Path, path: str) -> List[str]:
    tests = list(TESTS[path])
    if path.startswith("handnn/functional/"):
        tests.insert(0, FUNCTIONAL_TESTS)
    if path.startswith(("handnn/functional/", "handnn/nn/")):
        tests.append(EDGE_TESTS)
    return [t for t in tests if (root / t).exists()]


def sample(by_file: Dict[str, List[Mutant]], n: int, seed: int) -> List[Mutant]:
    """A seeded sample of about ``n``, each file's share in proportion to its sites, at least MIN_PER_FILE (fewer
    when ``n`` is too small to give every file that many)."""
    total = sum(len(ms) for ms in by_file.values())
    if total == 0:
        return []
    floor = min(MIN_PER_FILE, n // sum(1 for ms in by_file.values() if ms))
    raw = {f: n * len(ms) / total for f, ms in by_file.items()}
    quota = {f: int(r) for f, r in raw.items()}
    for f in sorted(raw, key=lambda f: raw[f] - quota[f], reverse=True)[:n - sum(quota.values())]:
        quota[f] += 1  # largest remainders
    chosen: List[Mutant] = []
    for f, ms in sorted(by_file.items()):
        k = min(len(ms), max(quota[f], floor))
        chosen += sorted(random.Random(f"{seed}:{f}").sample(sorted(ms, key=lambda m: m.id), k),
                         key=lambda m: (m.path, m.edits[0][0]))
    return chosen


def load_equivalent() -> Dict[str, str]:
    if not EQUIVALENT_FILE.exists():
        return {}
    return dict(tomllib.loads(EQUIVALENT_FILE.read_text(encoding="utf-8")).get("equivalent", {}))


# ---- running ------------------------------------------------------------------------------------------------------
def child_env(copy: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(CI="true", PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(copy))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # one core per worker
    return env


def make_copies(n: int, tmp: Path, rev: Optional[str]) -> List[Path]:
    """``n`` copies of the repository (its working tree, or commit ``rev``), all of one snapshot; each checked to
    import handnn from itself."""
    copies = [tmp / "w0"]
    if rev:
        copies[0].mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(copies[0], filter="data")
    else:
        shutil.copytree(ROOT, copies[0], ignore=COPY_IGNORE)
    for i in range(1, n):
        copies.append(tmp / f"w{i}")
        shutil.copytree(copies[0], copies[i])
    check = "import handnn, reference; print(handnn.__file__); print(reference.__file__)"
    for copy in copies:
        out = subprocess.run([sys.executable, "-c", check], cwd=copy, env=child_env(copy), capture_output=True,
                             text=True, check=True).stdout.split()
        if not all(Path(p).resolve().is_relative_to(copy.resolve()) for p in out):
            sys.exit(f"mutate: the scratch copy {copy} imports {out}, not its own handnn: aborting")
    return copies


#: the pytest process groups running now (each in its own session, so that a timeout or Ctrl-C ends its children)
RUNNING: Dict[int, subprocess.Popen] = {}
STOPPING = threading.Event()


def run_tests(copy: Path, tests: Sequence[str], timeout: Optional[float]) -> Tuple[Optional[int], float, str]:
    """(pytest's exit status, or None on timeout; seconds; output)."""
    if STOPPING.is_set():
        raise KeyboardInterrupt
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0", *tests]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=copy, env=child_env(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    RUNNING[proc.pid] = proc
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, time.perf_counter() - start, out
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        return None, time.perf_counter() - start, out
    finally:
        RUNNING.pop(proc.pid, None)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_mutant(copy: Path, mutant: Mutant, original: str, tests: Sequence[str],
               timeout: Optional[float]) -> Tuple[str, float, str]:
    target = copy / mutant.path
    cache = target.parent / "__pycache__"
    try:
        target.write_text(mutant.apply(original), encoding="utf-8")
        future = time.time() + 10  # never the original's mtime: no stale bytecode can be taken for it
        os.utime(target, (future, future))
        for pyc in cache.glob(f"{target.stem}.*.pyc"):
            pyc.unlink()
        status, seconds, out = run_tests(copy, tests, timeout)
    finally:
        target.write_text(original, encoding="utf-8")
        for pyc in cache.glob(f"{target.stem}.*.pyc"):
            pyc.unlink()
    if status in (4, 5):
        raise RuntimeError(f"pytest could not run {tests} (status {status}):\n{out[-3000:]}")
    verdict = "timeout" if status is None else "survived" if status == 0 else "killed"
    return verdict, seconds, out


# ---- report -------------------------------------------------------------------------------------------------------
def summarize(files: Sequence[str], results: List[dict]) -> Dict[str, Dict[str, float]]:
    table = {key: dict(mutants=0, killed=0, timeout=0, survived=0, equivalent=0) for key in [*files, "TOTAL"]}
    for r in results:
        for key in (r["path"], "TOTAL"):
            row = table[key]
            row["mutants"] += 1
            row[r["verdict"]] += 1
    for row in table.values():
        live = row["mutants"] - row["equivalent"]
        row["score"] = round(100 * (row["killed"] + row["timeout"]) / live, 1) if live else 100.0
    return table


def print_report(table: Dict[str, Dict[str, float]], results: List[dict], out=sys.stdout) -> None:
    cols = ("mutants", "killed", "timeout", "survived", "equivalent")
    width = max(len(k) for k in table)
    print(f"\n{'file':<{width}}  " + "  ".join(f"{c:>10}" for c in cols) + f"  {'score %':>8}", file=out)
    for path, row in table.items():
        print(f"{path:<{width}}  " + "  ".join(f"{row[c]:>10}" for c in cols) + f"  {row['score']:>8.1f}", file=out)
    for title, verdict in (("Equivalent (tools/mutation_equivalent.toml)", "equivalent"),
                           ("Survivors", "survived")):
        chosen = [r for r in results if r["verdict"] == verdict]
        print(f"\n{title}: {len(chosen)}", file=out)
        for r in chosen:
            print(f"\n{r['id']}\n  {r['path']}:{r['line']}  {r['before']!r} -> {r['after']!r}", file=out)
            print(f"  {r['reason']}" if verdict == "equivalent" else r["diff"].rstrip("\n"), file=out)


def git_state() -> Dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    return dict(head=git("rev-parse", "--short", "HEAD"), status=git("status", "--short"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", "--files", nargs="+", default=list(DEFAULT_TARGETS),
                        help="source files or directories to mutate (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=450, help="number of mutants to draw (default %(default)s)")
    parser.add_argument("--all", action="store_true", help="every mutation site, no sampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-j", "--jobs", type=int, default=2, help="workers, each with its own copy")
    parser.add_argument("--list", action="store_true", help="list the selected mutants with their diffs; run none")
    parser.add_argument("--only", metavar="ID", help="run one mutant (an id or a unique prefix): diff and output")
    parser.add_argument("--tests", nargs="+", help="with --only: these tests instead of the mapped ones")
    parser.add_argument("--rev", help="mutate this commit's tree (git archive) instead of the working tree")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--min-score", type=float, default=95.0)
    args = parser.parse_args(argv)

    if args.list:
        return list_mutants(args)
    state = dict(git_state(), tree=args.rev or "working tree")
    changed = "" if args.rev else f", {len(state['status'].splitlines())} changed paths"
    print(f"mutate: HEAD {state['head']}; mutating the {state['tree']}{changed}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="handnn-mutate-") as tmp:
        copies = make_copies(1 if args.only else max(1, args.jobs), Path(tmp), args.rev)
        snapshot = copies[0]
        files = target_files(snapshot, args.paths)
        sources = {f: (snapshot / f).read_text(encoding="utf-8") for f in files}
        by_file = {f: SiteFinder(f, sources[f]).mutants() for f in files}
        if args.only:
            return only(args, by_file, sources, snapshot)
        chosen = [m for ms in by_file.values() for m in ms] if args.all else sample(by_file, args.sample, args.seed)
        equivalent = load_equivalent()
        known = {m.id for ms in by_file.values() for m in ms}
        for stale in sorted(set(equivalent) - known):
            print(f"mutate: warning: {EQUIVALENT_FILE.name} lists {stale}, which is no mutant now", file=sys.stderr)
        results = run_all(args, chosen, equivalent, sources, copies)
    table = summarize(files, results)
    print_report(table, results)
    total = table.get("TOTAL", {"score": 100.0})
    print(f"\nscore {total['score']:.1f}% (minimum {args.min_score}%)")
    if args.json:
        args.json.write_text(json.dumps(dict(git=state, args=sys.argv[1:], files=table, mutants=results), indent=1))
    return 0 if total["score"] >= args.min_score else 1


def list_mutants(args: argparse.Namespace) -> int:
    files = target_files(ROOT, args.paths)
    sources = {f: (ROOT / f).read_text(encoding="utf-8") for f in files}
    by_file = {f: SiteFinder(f, sources[f]).mutants() for f in files}
    chosen = [m for ms in by_file.values() for m in ms] if args.all else sample(by_file, args.sample, args.seed)
    for m in chosen:
        print(f"{m.id}  ({m.path}:{m.line})\n{m.diff(sources[m.path])}")
    counts = ", ".join(f"{f} {len(ms)}" for f, ms in by_file.items())
    print(f"{len(chosen)} mutants selected of {sum(map(len, by_file.values()))} ({counts})")
    return 0


def only(args: argparse.Namespace, by_file: Dict[str, List[Mutant]], sources: Dict[str, str], copy: Path) -> int:
    matches = [m for ms in by_file.values() for m in ms if m.id == args.only] or \
              [m for ms in by_file.values() for m in ms if m.id.startswith(args.only)]
    if len(matches) != 1:
        sys.exit(f"mutate: {len(matches)} mutants match {args.only!r}: "
                 + " ".join(m.id for m in matches[:10]))
    m = matches[0]
    tests = args.tests or tests_for(copy, m.path)
    print(f"{m.id}  ({m.path}:{m.line})\n{m.diff(sources[m.path])}\n$ pytest -x {' '.join(tests)}")
    verdict, seconds, out = run_mutant(copy, m, sources[m.path], tests, None)
    print(f"{out}\n{m.id}: {verdict} in {seconds:.1f} s")
    return 0 if verdict != "survived" else 1


def run_all(args: argparse.Namespace, chosen: List[Mutant], equivalent: Dict[str, str], sources: Dict[str, str],
            copies: List[Path]) -> List[dict]:
    pool: "queue.Queue[Path]" = queue.Queue()
    for copy in copies:
        pool.put(copy)
    test_sets = {tuple(tests_for(copies[0], m.path)) for m in chosen if m.id not in equivalent}
    timeouts: Dict[Tuple[str, ...], float] = {}

    def baseline(tests: Tuple[str, ...]) -> None:
        copy = pool.get()
        try:
            status, seconds, out = run_tests(copy, tests, None)
        finally:
            pool.put(copy)
        if status != 0:
            sys.exit(f"mutate: the unmutated tests fail (status {status}), fix them first:\n"
                     f"pytest {' '.join(tests)}\n{out[-5000:]}")
        timeouts[tests] = max(30.0, 5 * seconds)
        print(f"baseline {seconds:5.1f} s  {' '.join(tests)}", file=sys.stderr)

    def one(m: Mutant) -> dict:
        result = dict(asdict(m), diff=m.diff(sources[m.path]), verdict="equivalent", seconds=0.0,
                      reason=equivalent.get(m.id, ""))
        del result["edits"]
        if m.id not in equivalent:
            copy = pool.get()
            try:
                tests = tuple(tests_for(copy, m.path))
                result["verdict"], result["seconds"], _ = run_mutant(copy, m, sources[m.path], tests,
                                                                     timeouts[tests])
            finally:
                pool.put(copy)
        done.append(m.id)
        print(f"[{len(done):>4}/{len(chosen)}] {result['verdict']:<10} {result['seconds']:5.1f} s  {m.id}",
              file=sys.stderr, flush=True)
        return result

    done: List[str] = []
    start = time.perf_counter()
    executor = ThreadPoolExecutor(len(copies))  # threads driving pytest processes, one copy each
    try:
        list(executor.map(baseline, sorted(test_sets)))
        results = list(executor.map(one, chosen))
    except KeyboardInterrupt:  # stop at once: no new pytest, the running ones killed with their children
        STOPPING.set()
        for proc in list(RUNNING.values()):
            kill_group(proc)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    print(f"mutate: {len(chosen)} mutants in {time.perf_counter() - start:.0f} s with {len(copies)} workers",
          file=sys.stderr)
    return results


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("mutate: interrupted")
