"""Grading in real kernels: the reference, the student copy, tampering, runaway and broken submissions."""

import json
import os
import time

import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dpdl.grading import grade, grade_submission
from dpdl.grading.report import feedback_markdown
from dpdl.grading.runner import CellOutcome, _read_results, run_nbval
from dpdl.notebooks.cells import cell_role
from tests.fixtures.grading import exercise
from tests.fixtures.grading.exercise import FIXTURES, MSE_SOLUTION, SOFTMAX_SOLUTION, with_answers, write

CELL_TIMEOUT = 20  # seconds: long enough for `import torch` (through dpdl) on a busy machine, short for the loop


def _edit_checks(nb):
    for cell in nb.cells:
        if cell_role(cell) == "check":
            cell.source = "assert True"
    return nb


def _delete_checks(nb):
    nb.cells = [cell for cell in nb.cells if cell_role(cell) != "check"]
    return nb


def _forge_outputs(nb):
    for count, cell in enumerate((cell for cell in nb.cells if cell.cell_type == "code"), start=1):
        cell.outputs = [new_output("stream", name="stdout", text="All checks passed: 6/6\n")]
        cell.execution_count = count
    return nb


def _reverse(nb):
    nb.cells = nb.cells[::-1]
    return nb


UNIFORM_SOFTMAX = "def softmax(logits):\n    return np.ones_like(logits) / logits.shape[-1]"
PRINTING_SOFTMAX = SOFTMAX_SOLUTION.replace("    z = np.exp", '    print("debug: logits", logits)\n    z = np.exp')
# Passes the visible check by recognising its input, and is wrong everywhere else: only the hidden check sees it.
SPECIAL_CASED_SOFTMAX = """def softmax(logits):
    if np.array_equal(logits, [[0.0, 0.0], [1000.0, 0.0]]):
        return np.array([[0.5, 0.5], [1.0, 0.0]])
    return np.ones_like(logits) / logits.shape[-1]"""
# Defeats every in-kernel assert, then answers wrongly: the values recorded for the hidden check give it away.
PATCHED_ALLCLOSE = "np.allclose = lambda *args, **kwargs: True\n" + UNIFORM_SOFTMAX
# Writes the values file itself: made-up values, and names twice.
FORGED_VALUES = (
    UNIFORM_SOFTMAX
    + """
import json, os
if os.environ.get("DPDL_GRADE_VALUES"):
    with open(os.environ["DPDL_GRADE_VALUES"], "a") as file:
        for name in ["probabilities", "shifted by 100"] * 2:
            value = {"kind": "array", "shape": [4, 5], "bool": False, "data": ["0.2"] * 20}
            file.write(json.dumps({"check": "hidden_softmax", "name": name, "value": value, "rtol": 1e9, "atol": 1e9}) + "\\n")"""
)

# name -> (notebook to write, or an existing file; expected total; expected status)
CASES = {
    "solved": (lambda: exercise.reference(), 8, "graded"),
    "student": (lambda: exercise.student(), 0, "graded"),
    "partial": (lambda: with_answers(exercise.student(), mse=MSE_SOLUTION), 2, "graded"),
    "edited_checks": (lambda: _edit_checks(exercise.student()), 0, "graded"),
    "deleted_checks": (lambda: _delete_checks(exercise.reference()), 8, "graded"),
    "forged_outputs": (lambda: _forge_outputs(with_answers(exercise.student(), mse=MSE_SOLUTION)), 2, "graded"),
    "reordered": (lambda: _reverse(exercise.reference()), 8, "graded"),
    "wrong_output": (lambda: with_answers(exercise.reference(), softmax=UNIFORM_SOFTMAX), 3, "graded"),
    "printing": (lambda: with_answers(exercise.reference(), softmax=PRINTING_SOFTMAX), 8, "graded"),
    "special_cased": (lambda: with_answers(exercise.reference(), softmax=SPECIAL_CASED_SOFTMAX), 6, "graded"),
    "forged_values": (lambda: with_answers(exercise.reference(), softmax=FORGED_VALUES), 3, "graded"),
    "loop": (lambda: with_answers(exercise.reference(), step="while True:\n    pass"), 7, "graded"),
    "exception": (
        lambda: with_answers(exercise.reference(), softmax='raise ValueError("my softmax is broken")'),
        3,
        "graded",
    ),
    "huge_output": (
        lambda: with_answers(exercise.reference(), mse=MSE_SOLUTION + '\nprint("x" * 50_000_000)'),
        8,
        "graded",
    ),
    "kernel_crash": (lambda: with_answers(exercise.reference(), step="import os\nos._exit(1)"), 7, "graded"),
    "broken_json": (FIXTURES / "broken_json.ipynb", 0, "invalid"),
    "image": (FIXTURES / "image.ipynb", 0, "invalid"),
    "script": (FIXTURES / "script.ipynb", 0, "invalid"),
    "empty": (FIXTURES / "empty.ipynb", 0, "invalid"),
    "missing": (None, 0, "invalid"),
}


def _paths(folder):
    paths = {}
    for name, (source, _, _) in CASES.items():
        if source is None:
            paths[name] = folder / f"{name}.ipynb"  # never created
        elif callable(source):
            paths[name] = write(source(), folder / f"{name}.ipynb")
        else:
            paths[name] = source
    return paths


def _snapshot(paths):
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths if path.exists()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Every case graded in one batch with two workers: {name: GradeResult}, plus files before/after."""
    paths = _paths(tmp_path_factory.mktemp("submissions"))
    before = _snapshot(paths.values())
    results = grade(exercise.REFERENCE, list(paths.values()), workers=2, cell_timeout=CELL_TIMEOUT, timeout=180)
    return {"results": dict(zip(paths, results)), "order": results, "paths": paths, "before": before}


@pytest.mark.parametrize("name", list(CASES))
def test_each_submission_gets_its_marks_and_status(batch, name):
    result = batch["results"][name]
    _, total, status = CASES[name]
    assert (result.total, result.status) == (total, status), feedback_markdown(result)
    assert result.max == 8
    assert status == "graded" or result.reason, "a row that was not graded says why"


def test_rows_come_in_the_input_order(batch):
    assert [result.submission for result in batch["order"]] == [str(path) for path in batch["paths"].values()]


def test_no_submission_file_is_modified(batch):
    after = _snapshot(batch["paths"].values())
    assert after == batch["before"]
    assert len(after) == len(CASES) - 1  # all but the missing one


def test_the_reference_earns_full_marks_and_keeps_its_written_answer(batch):
    result = batch["results"]["solved"]
    assert all(check.passed and not check.message for check in result.checks)
    assert result.written["why_max"].startswith("Because `exp` overflows")
    assert result.reason == "" and result.answer_errors == {}


def test_the_untouched_student_copy_earns_zero_and_says_why(batch):
    result = batch["results"]["student"]
    messages = {check.id: check.message for check in result.checks}
    assert messages["check_mse"] == (
        "NotImplementedError: mean_squared_error: Mean of the squared differences "
        "between predictions y_hat and targets y"
    )
    assert messages["check_step"].startswith("AssertionError: after one step w should be [0.7, 1.0]")
    assert result.reason == "failed: check_mse, check_softmax, hidden_softmax, check_step"
    assert result.written == {"why_max": ""}


def test_tampered_checks_are_replaced_by_the_originals(batch):
    edited, deleted = batch["results"]["edited_checks"], batch["results"]["deleted_checks"]
    assert any("`check_mse` was changed" in note for note in edited.notes)
    assert any("`check_step` is missing" in note for note in deleted.notes)
    assert all(check.passed for check in deleted.checks)


def _check(result, id_):
    return next(check for check in result.checks if check.id == id_)


def test_checks_are_judged_by_their_asserts_not_their_output(batch):
    softmax = _check(batch["results"]["wrong_output"], "check_softmax")
    assert not softmax.passed
    assert softmax.message.startswith("AssertionError: softmax([[0, 0], [1000, 0]]) should be [[0.5, 0.5], [1, 0]]")
    printing = batch["results"]["printing"]
    assert all(check.passed for check in printing.checks), "printing while a check runs costs nothing"


def test_a_hidden_check_catches_an_answer_tuned_to_the_visible_check(batch):
    result = batch["results"]["special_cased"]
    assert _check(result, "check_softmax").passed
    hidden = _check(result, "hidden_softmax")
    assert hidden.hidden and not hidden.passed
    assert "its values do not match the reference's" in hidden.message


def test_a_hidden_check_fails_on_wrong_values_even_when_its_asserts_are_defeated(tmp_path):
    submission = write(with_answers(exercise.reference(), softmax=PATCHED_ALLCLOSE), tmp_path / "patched.ipynb")
    [result] = grade(exercise.REFERENCE, [submission], cell_timeout=CELL_TIMEOUT)
    hidden = _check(result, "hidden_softmax")
    assert not hidden.passed and "'probabilities': 20 of 20 entries outside the tolerance" in hidden.message


def test_forged_values_do_not_pass_a_hidden_check(batch):
    hidden = _check(batch["results"]["forged_values"], "hidden_softmax")
    assert not hidden.passed
    assert "'probabilities' was recorded 3 times" in hidden.message  # twice forged, once by the check


def test_a_cell_that_loops_is_interrupted_and_later_cells_still_run(batch):
    result = batch["results"]["loop"]
    assert f"Timeout of {CELL_TIMEOUT} seconds exceeded" in result.answer_errors["step"]
    step = next(check for check in result.checks if check.id == "check_step")
    assert step.message == "NameError: name 'w' is not defined"


def test_an_answer_that_raises_fails_the_checks_that_need_it(batch):
    result = batch["results"]["exception"]
    assert result.answer_errors == {"softmax": "ValueError: my softmax is broken"}
    assert [check.id for check in result.checks if not check.passed] == ["check_softmax", "hidden_softmax"]
    assert "NameError: name 'softmax' is not defined" in result.checks[1].message


def test_a_crashed_kernel_fails_the_rest_and_says_so(batch):
    step = next(check for check in batch["results"]["kernel_crash"].checks if check.id == "check_step")
    assert "kernel had died" in step.message


def test_huge_output_is_neither_stored_nor_reported(batch):
    result = batch["results"]["huge_output"]
    assert len(feedback_markdown(result)) < 5_000
    assert result.answer_errors == {}


@pytest.mark.parametrize(
    "name, reason",
    [
        ("broken_json", "the notebook is damaged: invalid JSON"),
        ("image", "not a notebook: the file is a PNG image"),
        ("script", "not a notebook: the file is not JSON"),
        ("empty", "the file is empty"),
        ("missing", "cannot read the file: No such file or directory"),
    ],
)
def test_files_that_are_no_notebook_get_a_row_with_the_reason(batch, name, reason):
    assert batch["results"][name].reason.startswith(reason)


def test_one_worker_gives_the_same_marks_as_two(batch):
    names = ["partial", "exception"]
    serial = grade(exercise.REFERENCE, [batch["paths"][name] for name in names], workers=1, cell_timeout=CELL_TIMEOUT)
    for name, result in zip(names, serial):
        parallel = batch["results"][name]
        assert [(c.id, c.points, c.message) for c in result.checks] == [
            (c.id, c.points, c.message) for c in parallel.checks
        ]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_notebook_past_its_time_limit_is_killed_with_all_it_started(tmp_path):
    """Unsandboxed, the grader finds the kernel's strays by their token (test_grading_sandbox covers the sandbox)."""
    pids = tmp_path / "pids.txt"
    runaway = (
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "while True:\n"
        "    pass"
    )
    path = write(with_answers(exercise.reference(), step=runaway), tmp_path / "runaway.ipynb")
    result = grade_submission(path, exercise.reference(), cell_timeout=300, timeout=30, sandbox=False)
    assert result.status == "timeout" and "30 s limit" in result.reason
    assert {check.id: check.points for check in result.checks} == {
        "check_mse": 2, "check_softmax": 3, "hidden_softmax": 2, "check_step": 0
    }  # fmt: skip
    assert "not run: the notebook was stopped first" in result.checks[3].message
    kernel, child = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while not (_gone(kernel) and _gone(child)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(kernel) and _gone(child), "the kernel and the process it started must be killed"


def test_a_notebook_nbval_cannot_read_is_an_error_with_the_log():
    run = run_nbval({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "not a list"}, timeout=120)
    assert run.status == "error" and run.cells == {}
    assert "nbval could not run the notebook (exit" in run.reason


def test_a_kernel_that_dies_mid_cell_fails_that_cell_at_once_not_at_the_cell_timeout():
    nb = new_notebook(cells=[
        new_code_cell("x = 1"),
        new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),  # as the out-of-memory killer does
        new_code_cell("x"),
    ])  # fmt: skip
    run = run_nbval(nb, cell_timeout=600, timeout=120)  # waiting out the cell timeout would hit the run's limit
    assert run.status == "completed", run.reason
    assert run.cells[1].message.startswith("the kernel died while running this cell")
    assert run.cells[2].message.startswith("not run: the kernel had died")


def test_run_nbval_reports_each_code_cell_by_position():
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("assert x == 2, 'x is not 2'")])
    run = run_nbval(nb, cell_timeout=CELL_TIMEOUT)
    assert run.status == "completed"
    assert run.cells == {0: CellOutcome(0, True, ""), 1: CellOutcome(1, False, "AssertionError: x is not 2")}


def test_results_of_a_killed_run_are_read_up_to_the_cut(tmp_path):
    path = tmp_path / "cells.jsonl"
    records = [
        {"cell": 0, "when": "call", "passed": True, "message": ""},
        {"cell": 1, "when": "call", "passed": True, "message": ""},
        {"cell": 1, "when": "teardown", "passed": False, "message": "kernel shutdown"},
        {"cell": 2, "when": "call", "passed": False, "message": "AssertionError"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + '\n{"cell": 3, "wh', encoding="utf-8")
    cells, setup_error = _read_results(path)
    assert cells == {0: CellOutcome(0, True), 1: CellOutcome(1, True), 2: CellOutcome(2, False, "AssertionError")}
    assert setup_error == ""


def test_a_kernel_that_never_started_is_told_apart_from_failing_cells(tmp_path):
    path = tmp_path / "cells.jsonl"
    records = [{"cell": i, "when": "setup", "passed": False, "message": "RuntimeError: no kernel"} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    cells, setup_error = _read_results(path)
    assert setup_error == "RuntimeError: no kernel" and not any(cell.passed for cell in cells.values())
    records[1:] = [{"cell": 1, "when": "call", "passed": True, "message": ""}]
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    cells, setup_error = _read_results(path)
    assert setup_error == "", "once a cell ran, a failed setup is that cell's failure, not the run's"
    assert cells[0] == CellOutcome(0, False, "RuntimeError: no kernel") and cells[1].passed


def test_kernels_graded_side_by_side_share_the_cores(monkeypatch):
    from dpdl import grading

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert grading.threads_per_kernel(1) is None
    assert grading.threads_per_kernel(2) == 4
    assert grading.threads_per_kernel(16) == 1


def test_the_kernel_gets_the_thread_cap_unless_the_user_set_one(monkeypatch):
    nb = new_notebook(
        cells=[new_code_cell("import os\nassert os.environ['OMP_NUM_THREADS'] == os.environ['MKL_NUM_THREADS'] == '3'")]
    )
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert run_nbval(nb, cell_timeout=CELL_TIMEOUT, threads=3).cells[0].passed
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert not run_nbval(nb, cell_timeout=CELL_TIMEOUT, threads=3).cells[0].passed
