"""``dpdl check``: a student's own check of an exercise notebook, with no instructor reference.

Most tests use the tiny NumPy exercise of the grading tests (a kernel runs it in about a second); two run
a real exercise (lab 1, the cheapest to run) as a student receives it and as a student completes it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from dpdl.cli import main
from dpdl.grading.merge import MAX_SUBMISSION_BYTES
from dpdl.grading.selfcheck import (
    ADDED_CODE_ADVICE,
    CANNOT_GRADE,
    FAILED,
    HIDDEN_CHECKS_NOTE,
    PASSED,
    review_notebook,
)
from dpdl.notebooks.cells import ANSWER_PLACEHOLDER
from tests.fixtures.grading import exercise
from tests.fixtures.grading.exercise import FIXTURES, MSE_SOLUTION, SOFTMAX_SOLUTION, STEP_SOLUTION, with_answers

REPO = Path(__file__).resolve().parents[1]
EXERCISES = sorted(REPO.glob("exercises/lab*/student/lab*_exercise.ipynb"))
CHEAPEST = "lab1"  # measured: lab 1 and lab 3 take about as long; lab 1 has no data to load


def numbered(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give the fixture's cells ids in the course's scheme (``fx-00``, ``fx-01``...), as the exercises have."""
    for index, cell in enumerate(nb.cells):
        cell.id = f"fx-{index:02d}"
    return nb


def cell_with_id(nb: nbformat.NotebookNode, id_: str):
    return next(cell for cell in nb.cells if cell.metadata.get("dpdl", {}).get("id") == id_)


def pasted_copy(cell):
    """A copy of ``cell`` as Jupyter pastes it: the same metadata, a new cell id."""
    copy = nbformat.from_dict(json.loads(json.dumps(cell)))
    copy.id = "pasted-copy"
    return copy


def review_of(nb: nbformat.NotebookNode):
    return review_notebook(nbformat.writes(nb).encode("utf-8"))


def check(path: Path, capsys, *options: str) -> tuple[int, str]:
    """Run ``dpdl check`` on ``path`` as the command line does; the exit status and what it printed.

    Also proves the command left the file exactly as it was.
    """
    before = path.read_bytes(), path.stat().st_mtime_ns
    code = main(["check", *options, str(path)])
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before, "dpdl check must never write the notebook"
    return code, capsys.readouterr().out


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, path)
    return path


# --- files that cannot be graded: exit 2 before anything runs -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broken_json.ipynb", "the notebook is damaged: invalid JSON at line"),
        ("image.ipynb", "not a notebook: the file is a PNG image"),
        ("script.ipynb", "not a notebook: the file is not JSON"),
        ("empty.ipynb", "the file is empty"),
    ],
)
def test_a_file_that_is_no_notebook_exits_two_saying_what_it_is(name, expected, capsys):
    code, out = check(FIXTURES / name, capsys)
    assert code == CANNOT_GRADE
    assert "this file cannot be graded" in out and expected in out
    assert "Running the notebook" not in out


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, capsys):
    big = tmp_path / "big.ipynb"
    with open(big, "wb") as file:
        file.truncate(MAX_SUBMISSION_BYTES + 1)  # sparse: no 64 MB written
    code, out = check(big, capsys)
    assert code == CANNOT_GRADE
    assert "over the 64 MB limit" in out and "Clear All Outputs" in out


def test_a_missing_file_exits_two(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere.ipynb")]) == CANNOT_GRADE
    assert "cannot read the file" in capsys.readouterr().out


def test_a_notebook_without_graded_cells_is_not_an_exercise(tmp_path, capsys):
    nb = exercise.student()
    for cell in nb.cells:
        cell.metadata.pop("dpdl", None)
    code, out = check(write(nb, tmp_path / "copied.ipynb"), capsys)
    assert code == CANNOT_GRADE
    assert "no cell is marked as an answer or a check" in out and "Nothing was run" in out


def test_a_notebook_whose_answer_cells_are_all_gone_cannot_score(tmp_path, capsys):
    nb = exercise.student()
    nb.cells = [cell for cell in nb.cells if cell.metadata.get("dpdl", {}).get("role") != "answer"]
    code, out = check(write(nb, tmp_path / "no_answers.ipynb"), capsys)
    assert code == CANNOT_GRADE
    assert "no answer cell is left" in out


# --- what reading the file finds -------------------------------------------------------------------------------


def test_an_untouched_student_copy_has_no_problems_and_empty_written_answers():
    review = review_of(exercise.student())
    assert (review.errors, review.problems, review.warnings) == ([], [], [])
    assert review.answers == ["mse", "softmax", "step"]
    assert [id_ for id_, _ in review.checks.values()] == ["check_mse", "check_softmax", "check_step"]
    visible = {id_: points for id_, points in exercise.CHECK_POINTS.items() if not id_.startswith("hidden")}
    assert review.max_points == sum(visible.values()), "student copies have no hidden checks"
    assert review.empty_written == ["why_max"]


@pytest.mark.parametrize("path", EXERCISES, ids=lambda path: path.parent.parent.name)
def test_every_exercise_as_students_receive_it_reads_cleanly(path):
    """No finding on an untouched copy: in particular, every code cell is recognised as the exercise's own
    (an instructor cell with an id outside the `labN-NN` scheme would be skipped as added code)."""
    review = review_notebook(path.read_bytes())
    assert (review.errors, review.problems, review.warnings, review.added_code) == ([], [], [], [])
    assert review.ids_known
    nb = json.loads(path.read_text(encoding="utf-8"))
    roles = [cell["metadata"].get("dpdl", {}).get("role") for cell in nb["cells"]]
    assert (len(review.answers), len(review.checks)) == (roles.count("answer"), roles.count("check"))
    assert len(review.empty_written) == roles.count("written") > 0


def test_an_answer_cell_turned_into_markdown_is_a_problem():
    nb = exercise.student()
    cell = cell_with_id(nb, "softmax")
    cell.cell_type = "markdown"
    del cell["outputs"], cell["execution_count"]
    review = review_of(nb)
    assert review.answers == ["mse", "step"]
    assert any(
        "answer cell `softmax` has been turned into a markdown cell" in p and "press Esc then Y" in p
        for p in review.problems
    )


def test_an_answer_id_lost_or_damaged_is_a_problem_naming_the_cell():
    nb = exercise.student()
    cell_with_id(nb, "mse").metadata["dpdl"] = {"role": "answer"}  # the id deleted
    nb.cells[6].metadata.pop("dpdl")  # softmax's answer cell, its metadata deleted: the stub is still there
    review = review_of(nb)
    assert review.answers == ["step"]
    damaged, unmarked = review.problems
    assert damaged.startswith("cell 4 (starting `def mean_squared_error(y_hat, y):`): its metadata.dpdl is damaged")
    assert unmarked.startswith("cell 7 (starting `def softmax(logits):`) looks like an answer cell")
    assert "the grader will not take it" in unmarked


def test_a_duplicated_answer_cell_is_a_problem():
    nb = exercise.student()
    nb.cells.insert(4, pasted_copy(cell_with_id(nb, "mse")))
    (problem,) = review_of(nb).problems
    assert problem.startswith("cell 5: answer cell `mse` appears again (first as cell 4)")


def test_check_cells_that_lost_their_points_or_metadata_are_reported():
    nb = exercise.student()
    del cell_with_id(nb, "check_mse").metadata["dpdl"]["points"]
    softmax_check = cell_with_id(nb, "check_softmax")
    softmax_check.metadata.pop("dpdl")
    softmax_check.source = "# Check: softmax (3 points)\n" + softmax_check.source
    review = review_of(nb)
    assert [id_ for id_, _ in review.checks.values()] == ["check_step"]
    (problem,) = review.problems
    assert problem.startswith("cell 5: check cell `check_mse` was changed") and "dpdl check cannot count it" in problem
    (warning,) = review.warnings
    assert warning.startswith("cell 8 (starting `# Check: softmax (3 points)`) looks like a check cell that lost")


def test_a_written_answer_is_empty_while_it_holds_the_placeholder_and_must_stay_markdown():
    nb = exercise.student()
    written = cell_with_id(nb, "why_max")
    assert review_of(nb).empty_written == ["why_max"]
    written.source = written.source.replace(ANSWER_PLACEHOLDER, "Because exp overflows.")
    assert review_of(nb).empty_written == []
    nb.cells[nb.cells.index(written)] = nbformat.v4.new_code_cell(written.source, metadata=written.metadata)
    (problem,) = review_of(nb).problems
    assert problem.startswith("cell 9: written answer `why_max` has been turned into a code cell")


def test_code_added_outside_the_answer_cells_is_found_by_its_cell_id():
    nb = numbered(exercise.student())
    nb.cells.insert(2, new_code_cell("def helper():\n    return 1"))  # a new cell: Jupyter gives it a random id
    nb.cells.insert(3, new_code_cell("   \n"))  # empty: nothing to warn about
    review = review_of(nb)
    assert review.added_code == [2]
    (warning,) = review.warnings
    assert warning.startswith("cell 3 (starting `def helper():`) is code outside the answer cells: ")
    assert ADDED_CODE_ADVICE in warning


def test_without_cell_ids_added_code_cannot_be_told_apart():
    nb = exercise.student()  # nbformat's random ids, like a notebook whose editor rewrote them
    nb.cells.insert(2, new_code_cell("def helper():\n    return 1"))
    review = review_of(nb)
    assert (review.added_code, review.warnings, review.ids_known) == ([], [], False)


# --- running the notebook ----------------------------------------------------------------------------------------


def test_a_completed_fixture_passes_even_when_an_answer_prints_and_its_added_code_is_skipped(tmp_path, capsys):
    printing_mse = MSE_SOLUTION.replace("    return float", '    print("debug:", y_hat, y)\n    return float')
    nb = numbered(with_answers(exercise.student(), mse=printing_mse, softmax=SOFTMAX_SOLUTION, step=STEP_SOLUTION))
    code, out = check(write(nb, tmp_path / "done.ipynb"), capsys)
    assert code == PASSED, out
    assert "[1/3] check_mse ... passed (2 points)" in out
    assert "[2/3] check_softmax ... passed (3 points)" in out
    assert "[3/3] check_step ... passed (1 point)" in out
    assert "Autograded points so far: 6/6 (visible checks only" in out
    assert HIDDEN_CHECKS_NOTE in out
    assert "Written answers still empty: why_max" in out

    nb.cells.insert(2, new_code_cell("def softmax(logits):\n    return logits / logits.sum()"))
    code, out = check(write(nb, tmp_path / "added.ipynb"), capsys)
    assert code == PASSED, "the added cell was skipped: the answer cell's softmax is the one the check used"
    assert ADDED_CODE_ADVICE in out


def test_a_check_that_needs_added_code_fails_as_it_would_when_graded(tmp_path, capsys):
    nb = numbered(with_answers(exercise.student(), mse=MSE_SOLUTION, softmax="", step=STEP_SOLUTION))
    nb.cells.insert(2, new_code_cell(SOFTMAX_SOLUTION))  # the right code, in the wrong place
    code, out = check(write(nb, tmp_path / "misplaced.ipynb"), capsys)
    assert code == FAILED
    assert "cell 3 (starting `def softmax(logits):`) is code outside the answer cells" in out
    assert "[2/3] check_softmax ... failed: NameError: name 'softmax' is not defined" in out
    assert "Autograded points so far: 3/6" in out


def test_an_untouched_fixture_scores_zero_and_names_the_failing_asserts(tmp_path, capsys):
    nb = with_answers(exercise.student(), step="w = np.zeros(2)")  # runs, but the step is not taken
    code, out = check(write(nb, tmp_path / "stub.ipynb"), capsys)
    assert code == FAILED
    assert "[1/3] check_mse ... failed: NotImplementedError" in out
    assert "[3/3] check_step ... failed: AssertionError: after one step w should be [0.7, 1.0]; got [0. 0.]" in out
    assert "Autograded points so far: 0/6" in out
    assert "Other cells that raised" not in out  # the stubs raise when called, not when defined


def test_a_cell_past_its_timeout_fails_and_the_rest_still_runs(tmp_path, capsys):
    nb = with_answers(
        exercise.student(),
        mse="import time\nwhile True:\n    time.sleep(0.1)",
        softmax=SOFTMAX_SOLUTION,
        step=STEP_SOLUTION,
    )
    code, out = check(write(nb, tmp_path / "slow.ipynb"), capsys, "--cell-timeout", "3")
    assert code == FAILED
    assert "[1/3] check_mse ... failed: NameError" in out
    assert "answer cell `mse`" in out and "TimeoutError: the cell ran past its time limit" in out
    assert "[2/3] check_softmax ... passed" in out and "[3/3] check_step ... passed" in out


def test_a_kernel_that_dies_leaves_the_remaining_checks_not_run(tmp_path, capsys):
    nb = with_answers(exercise.student(), mse=MSE_SOLUTION, softmax="import os\nos._exit(1)")
    code, out = check(write(nb, tmp_path / "dies.ipynb"), capsys)
    assert code == FAILED
    assert "[1/3] check_mse ... passed (2 points)" in out
    assert "[2/3] check_softmax ... failed: not run: the kernel died" in out
    assert "[3/3] check_step ... failed: not run: the kernel died" in out
    assert "Autograded points so far: 2/6" in out


def test_problems_in_the_file_make_the_exit_status_one_even_when_every_check_passes(tmp_path, capsys):
    nb = with_answers(exercise.student(), mse=MSE_SOLUTION, softmax=SOFTMAX_SOLUTION, step=STEP_SOLUTION)
    nb.cells.insert(4, pasted_copy(cell_with_id(nb, "mse")))
    code, out = check(write(nb, tmp_path / "twice.ipynb"), capsys)
    assert "Autograded points so far: 6/6" in out
    assert "problem: cell 5: answer cell `mse` appears again" in out
    assert code == FAILED


# --- a real exercise, as students receive it and completed --------------------------------------------------------


def completed_copy(lab: str) -> nbformat.NotebookNode:
    """The student copy with every answer and written cell taken from the instructor source, by dpdl id."""
    source = nbformat.read(REPO / "exercises" / lab / f"{lab}_exercise.ipynb", as_version=4)
    solutions = {
        cell.metadata["dpdl"]["id"]: cell.source
        for cell in source.cells
        if cell.metadata.get("dpdl", {}).get("role") in ("answer", "written")
    }
    student = nbformat.read(REPO / "exercises" / lab / "student" / f"{lab}_exercise.ipynb", as_version=4)
    for cell in student.cells:
        id_ = cell.metadata.get("dpdl", {}).get("id")
        if id_ in solutions:
            cell.source = solutions[id_]
    return student


def test_an_untouched_exercise_exits_one_with_zero_points(capsys):
    path = REPO / "exercises" / CHEAPEST / "student" / f"{CHEAPEST}_exercise.ipynb"
    code, out = check(path, capsys)
    assert code == FAILED
    review = review_notebook(path.read_bytes())
    assert f"Autograded points so far: 0/{review.max_points}" in out
    assert out.count("... failed: ") == len(review.checks) > 0
    assert "Written answers still empty: " in out


def test_a_completed_exercise_exits_zero_with_full_visible_points(tmp_path, capsys):
    path = write(completed_copy(CHEAPEST), tmp_path / f"{CHEAPEST}_exercise.ipynb")
    code, out = check(path, capsys)
    review = review_notebook(path.read_bytes())
    assert code == PASSED, out
    assert f"Autograded points so far: {review.max_points}/{review.max_points}" in out
    assert out.count("... passed (") == len(review.checks) > 0
    assert "Every written answer has text" in out


def test_the_module_and_the_command_line_do_not_import_torch():
    probe = (
        "import sys\n"
        "import dpdl.cli\n"
        "try:\n    dpdl.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'dpdl --help imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    assert "check" in result.stdout


def test_a_kernel_that_cannot_start_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    import dpdl.grading.selfcheck as selfcheck

    monkeypatch.setattr(selfcheck, "KERNEL_NAME", "no-such-kernel-for-dpdl-tests")
    nb = with_answers(exercise.student(), mse=MSE_SOLUTION)
    code, out = check(write(nb, tmp_path / "answered.ipynb"), capsys)
    assert code == CANNOT_GRADE
    assert "error: could not run the notebook: NoSuchKernel" in out


def test_a_kernel_that_dies_while_starting_is_started_again(tmp_path, capsys, monkeypatch):
    """Kernels started side by side can race for a port and die before their first cell (see the runner)."""
    from nbclient import NotebookClient

    start_client, failures = NotebookClient.start_new_kernel_client, []

    def dies_once(self):
        if not failures:
            failures.append(True)
            self._cleanup_kernel()  # what nbclient does when the kernel dies here
            raise RuntimeError("Kernel died before replying to kernel_info")
        return start_client(self)

    monkeypatch.setattr(NotebookClient, "start_new_kernel_client", dies_once)
    nb = with_answers(exercise.student(), mse=MSE_SOLUTION)
    code, out = check(write(nb, tmp_path / "answered.ipynb"), capsys)
    assert failures == [True]
    assert code == FAILED and "[1/3] check_mse ... passed (2 points)" in out


def test_a_fifo_is_refused_without_hanging(tmp_path, capsys):
    fifo = tmp_path / "x.ipynb"
    os.mkfifo(fifo)
    assert main(["check", str(fifo)]) == CANNOT_GRADE  # reading it the plain way would block forever
    assert "not a notebook: the submission is a named pipe" in capsys.readouterr().out
