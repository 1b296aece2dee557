"""Cell identities, reference validation and merging answer cells into the reference (no kernels here)."""

import copy
import json

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from dpdl.grading.guard import METADATA_KEY as GUARD_METADATA_KEY
from dpdl.grading.merge import (
    IGNORE_OUTPUT_TAG,
    MAX_SUBMISSION_BYTES,
    STUB_SOURCE,
    SubmissionError,
    merge,
    parse_notebook,
    read_submission,
)
from dpdl.notebooks.cells import (
    ReferenceNotebookError,
    answer_cells,
    cell_id,
    cell_points,
    cell_role,
    check_cells,
    graded_cells,
    hidden_cells,
    mark_cell,
    max_points,
    validate_reference,
    written_cells,
)
from tests.fixtures.grading import exercise
from tests.fixtures.grading.exercise import FIXTURES, MSE_SOLUTION, REFERENCE


def _bytes(nb) -> bytes:
    return nbformat.writes(nb).encode("utf-8")


def _cell(nb, id_):
    return next(cell for cell in nb.cells if cell_id(cell) == id_)


# --- cells -------------------------------------------------------------------------------------------------


def test_fixture_reference_is_valid_and_cells_come_in_notebook_order():
    nb = exercise.reference()
    validate_reference(nb)
    assert list(answer_cells(nb)) == ["mse", "softmax", "step"]
    assert list(check_cells(nb)) == ["check_mse", "check_softmax", "check_step"]
    assert list(written_cells(nb)) == ["why_max"]
    assert list(hidden_cells(nb)) == ["hidden_softmax"]
    assert list(graded_cells(nb)) == ["check_mse", "check_softmax", "hidden_softmax", "check_step"]
    assert max_points(nb) == 8
    assert [cell_points(cell) for cell in graded_cells(nb).values()] == [2, 3, 2, 1]
    assert cell_points(_cell(nb, "mse")) == 0


def test_cells_without_or_with_malformed_metadata_have_no_identity():
    assert cell_id(new_code_cell("x = 1")) is None
    broken = new_code_cell("x = 1", metadata={"dpdl": "check"})
    assert cell_id(broken) is None and cell_role(broken) is None and cell_points(broken) == 0


def test_mark_cell_demands_points_exactly_for_check_cells():
    with pytest.raises(ValueError, match="points are required for check and hidden cells"):
        mark_cell(new_code_cell("assert True"), "c", "check")
    with pytest.raises(ValueError, match="only for them"):
        mark_cell(new_code_cell("x = 1"), "a", "answer", points=2)
    with pytest.raises(ValueError, match="role must be one of"):
        mark_cell(new_code_cell("x = 1"), "a", "solution")
    with pytest.raises(ValueError, match="id must be letters"):
        mark_cell(new_code_cell("x = 1"), "total", "answer")


def _broken(mutate):
    nb = exercise.reference()
    mutate(nb)
    return nb


def _set(id_, **entry):
    def mutate(nb):
        _cell(nb, id_).metadata["dpdl"].update(entry)

    return mutate


def _pop(id_, key):
    def mutate(nb):
        _cell(nb, id_).metadata["dpdl"].pop(key)

    return mutate


def _source(id_, source):
    def mutate(nb):
        _cell(nb, id_).source = source

    return mutate


def _unmark_answer(nb):
    del _cell(nb, "mse").metadata["dpdl"]


def _unexecute(nb):
    _cell(nb, "check_step").execution_count = None


def _no_checks(nb):
    for cell in nb.cells:
        if cell_role(cell) in ("check", "hidden"):
            del cell.metadata["dpdl"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (_set("check_step", id="check_mse"), "duplicate id 'check_mse'"),
        (_pop("check_mse", "points"), "check cell 'check_mse' needs points"),
        (_set("check_mse", points=0), "needs points, a positive int; got 0"),
        (_set("check_mse", points=True), "needs points, a positive int; got True"),
        (_set("mse", points=1), "only check and hidden cells carry points"),
        (_set("mse", role="solution"), "role 'solution' must be one of answer, check, hidden, written"),
        (_set("why_max", role="answer"), "role 'answer' needs a code cell"),
        (_set("mse", id="has space"), "id 'has space' must be a string of letters"),
        (_set("mse", id="total"), "id 'total' is a column name of marks.csv"),
        (_set("mse", weight=2), "unknown keys ['weight']"),
        (_unmark_answer, "holds a '### BEGIN SOLUTION' block but is not an answer cell"),
        (_source("check_mse", "# NBVAL_SKIP\nassert True"), "marked NBVAL_SKIP"),
        (
            _source("check_mse", "# NBVAL_RAISES_EXCEPTION\nmean_squared_error(1, 2)"),
            "passes when the student's stub raises",
        ),
        (_unexecute, "check cell 'check_step' was never executed"),
        (_no_checks, "no check cells"),
    ],
)
def test_validate_reference_says_what_is_wrong(mutate, expected):
    with pytest.raises(ReferenceNotebookError) as info:
        validate_reference(_broken(mutate))
    assert expected in str(info.value)


def test_validate_reference_lists_all_problems_at_once():
    nb = _broken(_set("check_step", id="check_mse"))
    _pop("check_softmax", "points")(nb)
    _cell(nb, "mse").metadata["dpdl"] = "answer"
    with pytest.raises(ReferenceNotebookError) as info:
        validate_reference(nb)
    problems = info.value.problems
    assert len(problems) == 4
    assert "metadata.dpdl must be a dict" in problems[0]
    assert "not an answer cell" in problems[1], "a malformed answer cell must not pass as an ordinary one"
    assert "needs points" in problems[2] and "duplicate id" in problems[3]


def test_validate_reference_rejects_an_old_nbformat():
    nb = exercise.reference()
    nb.nbformat = 3
    with pytest.raises(ReferenceNotebookError, match="nbformat 3 is not supported"):
        validate_reference(nb)


# --- reading a submission ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("empty.ipynb", "the file is empty"),
        ("image.ipynb", "not a notebook: the file is a PNG image"),
        ("script.ipynb", "not a notebook: the file is not JSON (it starts with 'import numpy as np')"),
        ("broken_json.ipynb", "the notebook is damaged: invalid JSON at line"),
    ],
)
def test_files_that_are_no_notebook_are_refused_with_the_reason(name, expected):
    with pytest.raises(SubmissionError) as info:
        parse_notebook((FIXTURES / name).read_bytes())
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"   \n", "the file is empty"),
        (b"[1, 2]", "JSON without a list of 'cells'"),
        (json.dumps({"cells": [], "nbformat": 3}).encode(), "nbformat 3 notebook"),
        (b"\xff\xfe{\x00", "not UTF-8 text"),
        (b"PK\x03\x04rest", "a zip archive"),
    ],
)
def test_json_that_is_no_nbformat_4_notebook_is_refused(data, expected):
    with pytest.raises(SubmissionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse_notebook(data)


def test_a_file_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(SubmissionError, match="over the 64 MB limit"):
        parse_notebook(b"{" + b" " * MAX_SUBMISSION_BYTES)


def test_the_reference_submitted_as_is_gives_its_own_solutions_and_written_answer():
    submission = read_submission(REFERENCE.read_bytes(), exercise.reference())
    assert submission.answers["mse"] == MSE_SOLUTION
    assert set(submission.answers) == {"mse", "softmax", "step"}
    assert submission.written == {
        "why_max": "Because `exp` overflows for large logits; subtracting a constant does not change softmax."
    }
    assert submission.notes == []


def test_an_untouched_student_copy_has_no_written_answer_and_no_solution():
    submission = read_submission(_bytes(exercise.student()), exercise.reference())
    assert submission.written == {"why_max": ""}
    assert all("BEGIN SOLUTION" not in source for source in submission.answers.values())
    assert all("NotImplementedError" in source for source in submission.answers.values())


def test_a_written_answer_is_taken_without_the_question_around_it():
    student = exercise.student()
    cell = _cell(student, "why_max")
    cell.source = cell.source.replace("*Your answer here.*", "Large logits overflow.\n\nSo shift them.")
    assert read_submission(_bytes(student), exercise.reference()).written["why_max"] == (
        "Large logits overflow.\n\nSo shift them."
    )


def test_notes_say_what_was_missing_copied_edited_or_ignored():
    student = exercise.student()
    student.cells.remove(_cell(student, "step"))
    student.cells.remove(_cell(student, "check_softmax"))
    _cell(student, "check_mse").source = "assert True"
    duplicate = copy.deepcopy(_cell(student, "softmax"))
    duplicate.source, duplicate.id = "softmax = None", "copied-cell"
    student.cells.append(duplicate)
    student.cells.append(new_code_cell("helper = 42"))
    submission = read_submission(_bytes(student), exercise.reference())
    notes = "\n".join(submission.notes)
    assert "check cell `check_mse` was changed in your notebook; the original check was run" in notes
    assert "answer cell `softmax` appears 2 times" in notes
    assert submission.answers["softmax"].endswith("softmax = None")
    assert "check cell `check_softmax` is missing" in notes
    assert "answer cell `step` is missing in your notebook; it was graded as unanswered" in notes
    assert "1 code cell(s) outside the answer cells were not run" in notes
    assert "step" not in submission.answers


def test_an_answer_cell_turned_into_markdown_counts_as_unanswered():
    student = exercise.reference()
    _cell(student, "mse").cell_type = "markdown"
    submission = read_submission(_bytes(student), exercise.reference())
    assert "mse" not in submission.answers
    assert any("`mse` is not a code cell" in note for note in submission.notes)


def test_the_role_a_submission_claims_is_not_trusted():
    student = exercise.student()
    _cell(student, "check_mse").metadata["dpdl"]["role"] = "answer"
    submission = read_submission(_bytes(student), exercise.reference())
    assert "check_mse" not in submission.answers


# --- merging ----------------------------------------------------------------------------------------------


def test_merge_puts_answers_in_and_keeps_every_other_cell_of_the_reference():
    reference = exercise.reference()
    before = _bytes(reference)
    merged = merge(reference, {"mse": "def mean_squared_error(y_hat, y):\n    return 0.0"})
    assert _bytes(reference) == before, "the reference must not be modified"
    assert _cell(merged, "mse").source == "def mean_squared_error(y_hat, y):\n    return 0.0"
    assert _cell(merged, "softmax").source == STUB_SOURCE
    assert _cell(merged, "step").source == STUB_SOURCE
    for id_, cell in check_cells(reference).items():
        assert _cell(merged, id_).source == cell.source, "check cells come from the reference"
        assert _cell(merged, id_).outputs == cell.outputs
    assert len([cell for cell in merged.cells if GUARD_METADATA_KEY not in cell.metadata]) == len(reference.cells)


def test_a_missing_answer_never_runs_the_instructors_solution():
    merged = merge(exercise.reference(), {})
    assert "BEGIN SOLUTION" not in json.dumps(merged)
    assert "np.max(logits" not in json.dumps(merged)


def test_no_output_is_compared_checks_are_judged_by_their_asserts():
    merged = merge(exercise.reference(), {})
    code = [cell for cell in merged.cells if cell.cell_type == "code"]
    assert any(cell_role(cell) == "check" for cell in code)
    for cell in code:
        verify = cell.metadata.get(GUARD_METADATA_KEY, {}).get("role") == "verify"  # the guard's one compared line
        assert (IGNORE_OUTPUT_TAG in cell.metadata.get("tags", [])) != verify, cell.source


def _tamper(nb, order, delete, junk, forge, edit_checks):
    nb = copy.deepcopy(nb)
    cells = [cell for i, cell in enumerate(nb.cells) if i not in delete or cell_role(cell) == "answer"]
    cells = [cells[i] for i in order if i < len(cells)] + [cells[i] for i in range(len(cells)) if i >= len(order)]
    for cell in cells:
        if cell.cell_type == "code" and cell_role(cell) != "answer":
            if forge:
                cell.outputs = [new_output("stream", name="stdout", text="All checks passed: 6/6\n")]
                cell.execution_count = 99
            if edit_checks and cell_role(cell) == "check":
                cell.source = "assert True"
    cells += [new_code_cell(source) for source in junk]
    cells += [mark_cell(new_markdown_cell("fake"), "check_mse", "written")] if forge else []
    nb.cells = cells
    return nb


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(12)),
    delete=st.sets(st.integers(0, 11)),
    junk=st.lists(st.sampled_from(["assert True", "print('6/6')", "import os", "x = 1"]), max_size=3),
    forge=st.booleans(),
    edit_checks=st.booleans(),
)
def test_tampering_outside_answer_cells_never_changes_the_merged_notebook(order, delete, junk, forge, edit_checks):
    reference = exercise.reference()
    honest = merge(reference, read_submission(_bytes(exercise.student()), reference).answers)
    tampered = _tamper(exercise.student(), order, delete, junk, forge, edit_checks)
    assert merge(reference, read_submission(_bytes(tampered), reference).answers) == honest
