"""reference.grade: whole files, notebooks and classes of submissions graded against torch.

The corpus (``grade_corpus/class``) is a class of students: correct CS231n assignment-2 ``layers.py``/``optim.py``
in loop and vectorised styles, two students with planted bugs (each reported with the existing detectors'
diagnosis), and students that hang at import, crash at import, print megabytes, call ``sys.exit(3)``, write files
in the cwd, hand in a notebook, use the ``cs231n`` package layout, import a neighbour both ways, or use a
deeplearning.ai helper module that only the grader's stand-in supplies. The class is graded once (module fixture)
and every report read from that run.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from reference import grade
from reference.grade import (GradeOptions, Student, class_students, class_table, main_grade, map_colours,
                             mismatch_map, plan_entries, student_plan)

CORPUS = Path(__file__).resolve().parent / "grade_corpus"
CLASS = CORPUS / "class"
SRC = CORPUS / "src"
#: the class follows CS231n's conventions: BatchNorm momentum read CS231n's way, dropout p the keep probability
CONVENTIONS = ["--momentum-style", "cs231n", "--keep-prob"]
TIMEOUT = 2.5
LAYERS = ["affine_forward", "relu_forward", "batchnorm_forward", "dropout_forward", "conv_forward_naive",
          "max_pool_forward_naive"]
RULES = ["sgd", "sgd_momentum", "rmsprop", "adam"]


def _listing(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    out = tmp_path_factory.mktemp("reports")
    before = _listing(CLASS)
    cwd = os.getcwd()
    buffer, errors = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(errors):
        code = main_grade(str(CLASS), [*CONVENTIONS, "--timeout", str(TIMEOUT), "--jobs", "2",
                                       "--json", str(out / "class.json"), "--csv", str(out / "class.csv"),
                                       "--html", str(out / "class.html")])
    data = json.loads((out / "class.json").read_text())
    return {"code": code, "table": buffer.getvalue(), "progress": errors.getvalue(), "json": data,
            "students": {s["student"]: s for s in data["students"]}, "out": out, "before": before,
            "after": _listing(CLASS), "cwd": cwd, "seconds": time.perf_counter() - start}


def _fn(graded: Dict[str, Any], student: str, function: str) -> Dict[str, Any]:
    for item in graded["students"][student]["functions"]:
        if item["function"] == function:
            return item
    raise KeyError(f"{student} has no {function}: {[i['function'] for i in graded['students'][student]['functions']]}")


def _first_failure(item: Dict[str, Any]) -> Dict[str, Any]:
    return next(row for row in item["rows"] if not row["passed"])


# ---- the class ------------------------------------------------------------------------------------------------------
def test_class_exit_status_and_every_student_reported(graded):
    assert graded["code"] == 1
    assert sorted(graded["students"]) == ["alice", "bob", "crash", "dave", "dlai", "erin", "hang", "loud", "nb",
                                          "pkg", "quitter", "writer", "zed"]
    assert "[13/13]" in graded["progress"]


@pytest.mark.parametrize("student", ["alice", "bob", "pkg"])
def test_correct_students_pass_every_function(graded, student):
    record = graded["students"][student]
    assert record["status"] == "graded"
    names = [i["function"] for i in record["functions"]]
    assert set(LAYERS + RULES) <= set(names)
    assert all(i["verdict"] == "ok" and i["passed"] for i in record["functions"]), \
        [(i["function"], i["verdict"], i["message"]) for i in record["functions"] if i["verdict"] != "ok"]


def test_backward_is_folded_into_its_forward_and_alt_checked_on_its_own(graded):
    names = [i["function"] for i in graded["students"]["alice"]["functions"]]
    assert not any(n.endswith("_backward") for n in names)
    alt = _fn(graded, "alice", "batchnorm_backward_alt")
    assert alt["verdict"] == "ok" and alt["kind"] == "batchnorm" and "dx" in [r["check"] for r in alt["rows"]]
    assert _fn(graded, "alice", "affine_forward")["backward"] == "affine_backward"


@pytest.mark.parametrize("student, function, check, cause", [
    ("dave", "batchnorm_forward", "eval out", "eps outside the sqrt"),
    ("dave", "conv_forward_naive", "out", "kernel flipped"),
    ("dave", "adam", "next_w", "Adam without bias correction"),
    ("erin", "dropout_forward", "out", "not rescaled"),
    ("erin", "rmsprop", "next_w", "eps inside the sqrt"),
    ("erin", "relu_forward", "dx", None),
])
def test_planted_bugs_fail_with_the_detectors_diagnosis(graded, student, function, check, cause):
    item = _fn(graded, student, function)
    assert item["verdict"] == "FAIL" and not item["passed"]
    row = _first_failure(item)
    assert row["check"] == check
    if cause:
        assert cause in row["diagnosis"]
    else:
        assert row["diagnosis"] is None  # no detector recognises a relu passing the negative side
    assert item["checks_passed"] < item["checks_total"]
    table = graded["table"]
    assert f"{student} / {function} (FAIL): {check}: " in table
    if cause:
        assert cause in table


@pytest.mark.parametrize("student", ["dave", "erin"])
def test_buggy_students_functions_without_bugs_pass(graded, student):
    ok = {i["function"] for i in graded["students"][student]["functions"] if i["verdict"] == "ok"}
    assert {"affine_forward", "max_pool_forward_naive", "sgd", "sgd_momentum"} <= ok


def test_a_hanging_import_times_out_within_the_limit(graded):
    record = graded["students"]["hang"]
    assert record["status"] == "timeout"
    assert TIMEOUT <= record["seconds"] < TIMEOUT + 3
    assert {i["verdict"] for i in record["functions"]} == {"timeout"}
    assert {i["function"] for i in record["functions"]} >= set(LAYERS + RULES)  # known from the source, not run


def test_a_crash_at_import_marks_that_files_functions_only(graded):
    record = graded["students"]["crash"]
    for name in LAYERS:
        item = _fn(graded, "crash", name)
        assert item["verdict"] == "crash"
        assert item["message"] == "RuntimeError: planted: this file fails at import"
    assert all(_fn(graded, "crash", name)["verdict"] == "ok" for name in RULES)
    assert any("layers.py failed to run" in n for n in record["notes"])
    assert "RuntimeError: planted" in record["stderr"]


def test_sys_exit_at_import_is_a_crash_with_its_code(graded):
    record = graded["students"]["quitter"]
    assert {i["verdict"] for i in record["functions"]} == {"crash"}
    assert {i["message"] for i in record["functions"]} == {"SystemExit: 3"}
    assert "crash: SystemExit: 3" in graded["table"]


def test_megabytes_of_output_are_truncated(graded):
    record = graded["students"]["loud"]
    assert all(i["verdict"] == "ok" for i in record["functions"])
    assert record["output_bytes"] >= 4_000_000
    assert len(record["stdout"]) < grade.OUTPUT_CAP + 100
    assert "more bytes not kept" in record["stdout"]
    assert len(graded["table"]) < 20_000


def test_files_written_land_in_a_scratch_directory(graded):
    assert all(i["verdict"] == "ok" for i in graded["students"]["writer"]["functions"])
    assert graded["before"] == graded["after"]  # nothing written into the class (no planted file, no __pycache__)
    assert not (Path(graded["cwd"]) / "planted_output.txt").exists()


def test_a_notebook_runs_its_definitions_only(graded):
    record = graded["students"]["nb"]
    assert [i["function"] for i in record["functions"]] == ["affine_forward", "relu_forward"]
    assert all(i["verdict"] == "ok" for i in record["functions"])
    assert "training for an hour" not in record["stdout"]  # the top-level print did not run
    assert any("code cell 5 does not parse" in n for n in record["notes"])
    assert "load_CIFAR10" in record["stderr"]  # the failing import is reported, the definitions still ran


def test_package_layout_and_stand_in_helpers(graded):
    item = _fn(graded, "pkg", "spatial_batchnorm_forward")  # cs231n/conv_layers.py: star, stand-in, relative
    assert item["verdict"] == "ok" and item["file"] == "cs231n/conv_layers.py"
    zed = _fn(graded, "zed", "batchnorm_backward_alt")  # `import layers` and `from .layers import ...`
    assert zed["verdict"] == "ok" and zed["file"] == "bn_alt.py"


def test_deeplearning_ai_student_imports_the_stand_ins(graded):
    record = graded["students"]["dlai"]
    assert record["status"] == "graded"
    assert _fn(graded, "dlai", "relu_forward")["verdict"] == "ok"  # calls reg_utils.relu from the stand-in
    assert not any("failed to run" in n for n in record["notes"])


def test_class_table_layout(graded):
    lines = graded["table"].splitlines()
    header = lines[0].split()
    assert header[:2] == ["student", "summary"] and set(LAYERS + RULES) <= set(header)
    row = {line.split()[0]: line for line in lines[2:15]}
    assert "FAIL next_w" in row["dave"] and "timeout" in row["hang"] and "missing" in row["nb"]
    assert row["alice"].split()[1] == "12/12"
    assert "7 of 13 students passed everything" in graded["table"]


# ---- the reports ----------------------------------------------------------------------------------------------------
def test_json_report(graded):
    data = graded["json"]
    assert data["passed"] is False and data["options"]["keep_prob"] is True
    for record in data["students"]:
        assert {"student", "status", "message", "functions", "stdout", "stderr", "notes"} <= set(record)
        for item in record["functions"]:
            assert {"function", "kind", "passed", "verdict", "rows"} <= set(item)
            for row in item["rows"]:
                assert {"check", "passed", "diagnosis", "max_rel", "mismatches"} <= set(row)
    conv = _first_failure(_fn(graded, "dave", "conv_forward_naive"))
    picture = conv["map"]
    assert picture["shape"] == [2, 4, 5, 7] and picture["rows"] == 2 * 5 and picture["cols"] == 4 * 7
    assert np.asarray(picture["bad"]).any()


def test_csv_report(graded):
    with open(graded["out"] / "class.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(grade.CSV_FIELDS)
    assert len(rows) == len(graded["students"]) * len(graded["json"]["columns"])
    by_key = {(r["student"], r["function"]): r for r in rows}
    assert by_key[("dave", "adam")]["verdict"] == "FAIL"
    assert "bias correction" in by_key[("dave", "adam")]["diagnosis"]
    assert by_key[("nb", "adam")]["verdict"] == "missing"
    assert by_key[("hang", "sgd")]["verdict"] == "timeout"


def test_html_report_is_self_contained(graded):
    page = (graded["out"] / "class.html").read_text()
    assert "http" not in page and "<link" not in page and "src=\"//" not in page
    assert '<table class="sortable">' in page and "<script>" in page and "addEventListener" in page
    assert page.count("data:image/png;base64,") >= 5  # the failures' mismatch maps
    assert "eps outside the sqrt" in page and "SystemExit: 3" in page


# ---- one file -------------------------------------------------------------------------------------------------------
def test_single_file_prints_one_table(capsys):
    code = main_grade(str(CLASS / "alice" / "layers.py"), [*CONVENTIONS, "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[:4] == ["function", "kind", "verdict", "checks"]
    assert any(line.startswith("batchnorm_forward (+ batchnorm_backward)") and " ok " in line for line in lines)
    assert any(line.startswith("batchnorm_backward_alt") for line in lines)


def test_single_file_with_failures(capsys):
    code = main_grade(str(CLASS / "dave" / "optim.py"), ["--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("adam"))
    assert "FAIL" in line and "next_w: Adam without bias correction" in line and " 3/4 " in line


def test_single_notebook(capsys):
    assert main_grade(str(CLASS / "nb.ipynb"), ["--jobs", "1"]) == 0
    assert "relu_forward" in capsys.readouterr().out


def test_subprocess_isolation_grades_alike(tmp_path):
    student = class_students(CLASS)[[s.name for s in class_students(CLASS)].index("nb")]
    record = grade.run_subprocess(student, GradeOptions(timeout=30))
    assert record["status"] == "graded"
    assert [i["verdict"] for i in record["functions"]] == ["ok", "ok"]


# ---- the command line -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--shard", "2/2"], ["--shard", "x"], ["--timeout", "0"], ["--memory", "lots"],
                                  ["--jobs", "0"]])
def test_usage_errors(argv, capsys):
    assert main_grade(str(CLASS), argv) == 2


def test_missing_path_and_file_without_functions(tmp_path, capsys):
    assert main_grade(str(tmp_path / "nope"), []) == 2
    empty = tmp_path / "empty.py"
    empty.write_text("def helper():\n    return 1\n")
    assert main_grade(str(empty), []) == 2
    assert "defines no function" in capsys.readouterr().err
    assert main_grade(str(tmp_path / "nothing_here"), []) == 2


def test_file_students_cannot_import_their_classmates(tmp_path, capsys):
    shutil.copy(SRC / "optim_vec.py", tmp_path / "ann.py")
    (tmp_path / "ben.py").write_text("from ann import *  # a classmate's file\n")
    (tmp_path / "ben.py").write_text((tmp_path / "ben.py").read_text() + (SRC / "optim_vec.py").read_text())
    report = tmp_path / "class.json"
    main_grade(str(tmp_path), ["--jobs", "1", "--json", str(report)])
    students = {s["student"]: s for s in json.loads(report.read_text())["students"]}
    assert {i["verdict"] for i in students["ann"]["functions"]} == {"ok"}
    assert {i["message"] for i in students["ben"]["functions"]} == {"ModuleNotFoundError: No module named 'ann'"}


def test_backward_alt_in_another_file_uses_the_forward_of_its_file(tmp_path, capsys):
    student = tmp_path / "class" / "s"
    student.mkdir(parents=True)
    shutil.copy(SRC / "layers_vec.py", student / "layers.py")
    alt = (CLASS / "zed" / "bn_alt.py").read_text()
    (student / "alt.py").write_text("import numpy as np\n\n\n" + alt[alt.index("def batchnorm_backward_alt"):])
    report = tmp_path / "class.json"
    assert main_grade(str(tmp_path / "class"), [*CONVENTIONS, "--jobs", "1", "--json", str(report)]) == 0
    item = next(i for i in json.loads(report.read_text())["students"][0]["functions"]
                if i["function"] == "batchnorm_backward_alt")
    assert item["verdict"] == "ok" and item["file"] == "alt.py"


def _small_class(root: Path, count: int) -> Path:
    """``count`` students: copies of the correct and the buggy variants of layers.py and optim.py."""
    variants = [("loops", "loops"), ("vec", "vec"), ("bugs_a", "bugs_a"), ("bugs_b", "bugs_b")]
    for i in range(count):
        layers, optim = variants[i % len(variants)]
        folder = root / f"student{i:03d}_{layers}"
        folder.mkdir(parents=True)
        shutil.copy(SRC / f"layers_{layers}.py", folder / "layers.py")
        shutil.copy(SRC / f"optim_{optim}.py", folder / "optim.py")
    return root


def test_shards_partition_the_class(tmp_path, capsys):
    root = _small_class(tmp_path / "class", 5)
    seen: List[str] = []
    for shard in ("0/2", "1/2"):
        report = tmp_path / f"shard{shard[0]}.json"
        main_grade(str(root), [*CONVENTIONS, "--shard", shard, "--jobs", "2", "--json", str(report)])
        seen += [s["student"] for s in json.loads(report.read_text())["students"]]
    names = [s.name for s in class_students(root)]
    assert sorted(seen) == names and len(seen) == len(set(seen))


def test_a_generated_class_is_graded_by_variant(tmp_path, capsys):
    """The timing set-up (copies of the variants) at a small scale: every copy graded as its variant."""
    root = _small_class(tmp_path / "class", 8)
    report = tmp_path / "class.json"
    assert main_grade(str(root), [*CONVENTIONS, "--jobs", "2", "--json", str(report), "--quiet"]) == 1
    for record in json.loads(report.read_text())["students"]:
        failed = {i["function"] for i in record["functions"] if i["verdict"] != "ok"}
        expected = {"loops": set(), "vec": set(),
                    "a": {"batchnorm_forward", "conv_forward_naive", "adam"},
                    "b": {"relu_forward", "dropout_forward", "rmsprop"}}[record["student"].rsplit("_", 1)[1]]
        assert failed == expected, record["student"]


# ---- the plan (no code run) and the mismatch map --------------------------------------------------------------------
def test_plan_folds_partners_and_skips_sandwiches_and_lookalikes():
    from reference.kinds import kind_for

    defined = [("l.py", n) for n in ("affine_forward", "affine_backward", "batchnorm_forward", "batchnorm_backward",
                                     "batchnorm_backward_alt", "affine_dropout_forward", "relu_backward",
                                     "make_dropout_mask", "sgd_momentum", "helper")]
    entries, notes = plan_entries(defined)
    by_name = {e.function: e for e in entries}
    assert {"affine_forward", "batchnorm_forward", "batchnorm_backward_alt", "sgd_momentum"} <= set(by_name)
    left_out = {"affine_backward", "batchnorm_backward", "relu_backward", "helper", "affine_dropout_forward",
                "make_dropout_mask"}
    assert not {n for n in left_out if kind_for(n) is None} & set(by_name)  # unless a course kind names it
    assert by_name["batchnorm_backward_alt"].alt_of == "batchnorm_forward"
    assert by_name["affine_forward"].backward == "affine_backward"
    assert any("relu_backward: no relu_forward" in n for n in notes)


def test_student_plan_reads_sources_without_running_them():
    hang = next(s for s in class_students(CLASS) if s.name == "hang")
    entries, _ = student_plan(hang)  # the file loops forever when run
    assert [e.function for e in entries][:2] == ["affine_forward", "relu_forward"]
    assert isinstance(hang, Student) and hang.files == ("layers.py", "optim.py")


def test_mismatch_map_shows_a_wrong_channel_as_a_stripe():
    expected = np.random.default_rng(0).normal(size=(2, 3, 6, 8))
    actual = expected.copy()
    actual[:, 1] *= 1.5
    bad = np.asarray(mismatch_map(actual, expected)["bad"], dtype=bool)  # rows: N·H, columns: C·W
    assert bad.shape == (12, 24)
    assert bad[:, 8:16].all() and not bad[:, :8].any() and not bad[:, 16:].any()


def test_mismatch_map_shows_alternating_signs_as_a_checkerboard():
    expected = np.random.default_rng(1).normal(size=(6, 8))
    sign = np.where(np.indices(expected.shape).sum(axis=0) % 2 == 0, 1.0, -1.0)
    bad = np.asarray(mismatch_map(expected * sign, expected)["bad"], dtype=bool)
    assert (bad == (sign < 0)).all()


def test_mismatch_map_downsamples_and_keeps_the_worst_error():
    expected = np.ones((500, 300))
    actual = expected.copy()
    actual[123, 45] = 2.0
    picture = mismatch_map(actual, expected)
    assert picture["rows"] == picture["cols"] == grade.MAP_CELLS
    rel = np.asarray(picture["rel"])
    assert np.asarray(picture["bad"]).sum() == 1 and rel.max() == pytest.approx(1.0)
    assert mismatch_map(np.ones(3), np.ones(4)) is None
    colours = map_colours(picture)
    assert colours.shape == (grade.MAP_CELLS, grade.MAP_CELLS, 3) and colours.dtype == np.uint8


def test_mismatch_map_png_is_a_valid_image():
    picture = mismatch_map(np.arange(12.0).reshape(3, 4), np.zeros((3, 4)))
    png = grade._png(map_colours(picture))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IHDR" in png and png.endswith(b"IEND\xaeB`\x82")
    assert grade.map_image(picture).startswith('<img class="map"')


def test_class_table_from_records():
    records = [{"student": "a", "status": "graded", "message": "", "functions": [
        {"function": "adam", "verdict": "FAIL", "rows": [{"check": "next_w", "passed": False, "problem": "",
                                                         "diagnosis": "cause"}]}]},
               {"student": "b", "status": "timeout", "message": "no result after 1 s", "functions": []}]
    table = class_table(records)
    assert "FAIL next_w" in table and "timeout: no result after 1 s" in table and "missing" in table
    assert "a / adam (FAIL): next_w: cause" in table


def test_mismatch_map_of_a_scalar_is_one_cell():
    """A 0-d value (a loss, a cost) maps to a single cell instead of failing the student's report."""
    from reference.grade import mismatch_map

    grid = mismatch_map(np.float64(1.5), np.float64(1.0))
    assert grid is not None and grid["rows"] == grid["cols"] == 1 and grid["bad"] == [[1]]


def test_a_course_kinds_failure_gets_its_mismatch_map(tmp_path):
    """Registered course kinds hold their failed rows' arrays too: a CS231n softmax loss whose gradient misses the
    −1 at the correct class gets a picture of dx."""
    from reference.grade import GradeOptions, check_entry, plan_entries

    path = tmp_path / "softmax.py"
    path.write_text(
        "import numpy as np\n"
        "def softmax_loss(x, y):\n"
        "    shifted = x - x.max(axis=1, keepdims=True)\n"
        "    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)\n"
        "    n = x.shape[0]\n"
        "    return -np.log(p[np.arange(n), y]).mean(), p / n\n")
    namespace: dict = {}
    exec(path.read_text(), namespace)
    entries = [e for e in plan_entries([(path.name, "softmax_loss")])[0] if e.function == "softmax_loss"]
    result = check_entry(entries[0], namespace, GradeOptions())
    failing = [row for row in result["rows"] if not row["passed"]]
    dx = [row for row in failing if row["check"] == "dx"]
    assert dx and all("map" in row for row in dx)
