"""Every exercise has hidden checks worth at least 30 % of its points, and they catch tuned answers.

For each exercise, ``tests/fixtures/hidden/labN.json`` holds a submission written to pass the visible
checks without doing the task (constants that satisfy the asserts, special cases for the checks' inputs,
a wrong method that happens to pass): ``{"answers": {answer id: source}, "why": "..."}``. Answers not
listed come from the reference solution. Graded like any submission, it must pass every visible check
and lose hidden points.
"""

import json
from pathlib import Path

import nbformat
import pytest

from dpdl.grading import grade_submission, load_reference, reference_values
from dpdl.notebooks.build import build_student_copy
from dpdl.notebooks.cells import answer_cells, cell_id, cell_points, cell_source, check_cells, hidden_cells

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted(ROOT.glob("exercises/lab*/lab*_exercise.ipynb"))
FIXTURES = Path(__file__).parent / "fixtures" / "hidden"


def _lab(path: Path) -> str:
    return path.parent.name


@pytest.mark.parametrize("source", EXERCISES, ids=_lab)
def test_hidden_checks_are_worth_at_least_30_percent_and_never_reach_students(source):
    nb = nbformat.read(source, as_version=4)
    hidden = sum(cell_points(cell) for cell in hidden_cells(nb).values())
    visible = sum(cell_points(cell) for cell in check_cells(nb).values())
    assert hidden >= 0.3 * (hidden + visible), f"{source}: hidden checks give {hidden} of {hidden + visible} points"
    student = json.dumps(build_student_copy(source))
    for id_, cell in hidden_cells(nb).items():
        assert id_ not in student and cell_source(cell) not in student


def _submission(source: Path, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The student copy of ``source`` with every answer cell filled: from ``answers``, else the solution."""
    reference = nbformat.read(source, as_version=4)
    solutions = {id_: cell_source(cell) for id_, cell in answer_cells(reference).items()}
    unknown = set(answers) - set(solutions)
    assert not unknown, f"the fixture answers cells the exercise does not have: {sorted(unknown)}"
    student = build_student_copy(source)
    for cell in student.cells:
        id_ = cell_id(cell)
        if id_ in solutions:
            cell.source = answers.get(id_, solutions[id_])
    return student


@pytest.fixture(scope="module", params=EXERCISES, ids=_lab)
def graded(request, tmp_path_factory):
    """One exercise graded: its tuned fixture submission and its untouched student copy.

    ``reference_values`` runs the reference with its own solutions and raises unless every check and
    hidden check passes: that run is the reference's full marks under ``dpdl grade``.
    """
    source = request.param
    fixture = FIXTURES / f"{_lab(source)}.json"
    assert fixture.is_file(), f"write {fixture}: a submission that passes the visible checks and fails a hidden one"
    spec = json.loads(fixture.read_text(encoding="utf-8"))
    assert spec.get("why"), f"{fixture}: say in 'why' what the tuned answer does wrong"
    folder = tmp_path_factory.mktemp(_lab(source))
    tuned = folder / "tuned.ipynb"
    nbformat.write(_submission(source, spec["answers"]), tuned)
    untouched = folder / "untouched.ipynb"
    nbformat.write(build_student_copy(source), untouched)
    reference = load_reference(source)
    # One torch thread a kernel: pytest-xdist runs two of these side by side on CI's two cores.
    options = {"threads": 1, "cell_timeout": 600.0, "timeout": 1200.0}
    expected = reference_values(reference, **options)
    results = {
        path.stem: grade_submission(path, reference, expected=expected, **options) for path in (tuned, untouched)
    }
    return {"reference": reference, "expected": expected, **results}


def test_the_reference_passes_every_check_and_records_every_hidden_value(graded):
    assert set(graded["expected"]) == set(hidden_cells(graded["reference"]))


def test_an_answer_tuned_to_the_visible_checks_loses_hidden_points(graded):
    result = graded["tuned"]
    visible = [check for check in result.checks if not check.hidden]
    hidden = [check for check in result.checks if check.hidden]
    assert result.status == "graded", result.reason
    assert all(check.passed for check in visible), [(c.id, c.message) for c in visible if not c.passed]
    assert any(not check.passed for check in hidden), "every hidden check passed: the tuned answer went unnoticed"
    assert result.total < result.max


def test_the_untouched_student_copy_earns_nothing(graded):
    result = graded["untouched"]
    assert result.status == "graded" and result.total == 0, [(c.id, c.message) for c in result.checks if c.passed]
