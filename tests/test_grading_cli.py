"""``dpdl grade`` on the command line, and what it writes: marks.csv, feedback, written answers."""

import argparse
import csv
import importlib.util

import nbformat
import pytest

from dpdl.grading import grade
from dpdl.grading.cli import register
from dpdl.grading.report import CheckResult, GradeResult, feedback_markdown, feedback_names, write_marks_csv
from tests.fixtures.grading import exercise
from tests.fixtures.grading.exercise import FIXTURES, MSE_SOLUTION, REFERENCE, with_answers, write

# A submission whose answer kills the process that runs nbval (the kernel's parent): possible only without
# the sandbox (in one, the parent is the sandbox's init, which ignores it; tests/test_grading_sandbox.py).
KILL_GRADER = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"


def _main(argv):
    """What ``dpdl grade ...`` runs, through the same ``register`` that dpdl/cli.py calls."""
    parser = argparse.ArgumentParser(prog="dpdl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_grading_a_batch_writes_marks_and_feedback_and_asks_to_rerun_errors(tmp_path, capsys):
    alice = tmp_path / "alice" / "lab1_exercise.ipynb"
    bob = tmp_path / "bob" / "lab1_exercise.ipynb"
    alice.parent.mkdir()
    bob.parent.mkdir()
    answered = with_answers(exercise.student(), mse=MSE_SOLUTION)
    for cell in answered.cells:
        if cell.metadata.get("dpdl", {}).get("id") == "why_max":
            cell.source = cell.source.replace("*Your answer here.*", "Overflow | of exp.")
    write(answered, alice)
    write(exercise.student(), bob)
    killer = write(with_answers(exercise.reference(), step=KILL_GRADER), tmp_path / "killer.ipynb")
    out = tmp_path / "marks" / "marks.csv"
    code = _main(
        ["grade", "--reference", str(REFERENCE), "--out", str(out), "--workers", "2", "--cell-timeout", "20",
         "--no-sandbox", str(alice), str(bob), str(killer), str(FIXTURES / "empty.ipynb")]
    )  # fmt: skip
    assert code == 3, "a row with status error asks for a re-run; failing checks alone would exit 0"
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == [
        "submission", "total", "max", "status", "reason", "review", "check_mse", "check_softmax", "hidden_softmax", "check_step",
    ]  # fmt: skip
    assert [(row["submission"], row["total"], row["status"]) for row in rows] == [
        (str(alice), "2", "graded"),
        (str(bob), "0", "graded"),
        (str(killer), "7", "error"),
        (str(FIXTURES / "empty.ipynb"), "0", "invalid"),
    ]
    assert rows[2]["reason"].startswith("nbval could not run the notebook (exit -9)")
    assert (rows[0]["check_mse"], rows[0]["check_softmax"], rows[0]["max"]) == ("2", "0", "8")
    assert rows[3]["reason"] == "the file is empty"
    assert [row["review"] for row in rows] == ["unsandboxed"] * 2 + [rows[2]["review"], ""], "an invalid file never ran"
    assert "answer `step` line 2: `os.kill` sends a signal to a process" in rows[2]["review"], "the scan's flag"
    assert rows[2]["review"].endswith("; unsandboxed")
    feedback = tmp_path / "marks" / "marks_feedback"
    assert sorted(path.name for path in feedback.iterdir()) == [
        "alice__lab1_exercise.md", "bob__lab1_exercise.md", "empty.md", "killer.md", "written_answers.md",
    ]  # fmt: skip
    alice_feedback = (feedback / "alice__lab1_exercise.md").read_text(encoding="utf-8")
    assert "**2 / 8 points**" in alice_feedback
    assert (
        "| `check_softmax` | 0 / 3 | failed: NotImplementedError: softmax: Softmax over the last axis, stable "
        "for large logits |"
    ) in alice_feedback
    written = (feedback / "written_answers.md").read_text(encoding="utf-8")
    assert f"### {alice}\n\n```text\nOverflow | of exp.\n```" in written
    assert f"### {bob}\n\n_(no answer)_" in written
    printed = capsys.readouterr()
    assert "empty.ipynb: 0/8 invalid (the file is empty)" in printed.out and f"wrote {out}" in printed.out
    assert "1 submission(s) could not be run (status error); run the same command with --resume" in printed.err
    assert printed.err.rstrip().endswith(str(killer))


def test_without_nbval_grading_stops_before_the_batch(monkeypatch, capsys, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nbval" else find_spec(name, *a))
    code = _main(["grade", "--reference", str(REFERENCE), "--out", str(tmp_path / "m.csv"), str(REFERENCE)])
    assert code == 1
    assert "grading needs nbval" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_a_missing_reference_is_a_usage_error(tmp_path, capsys):
    code = _main(
        ["grade", "--reference", str(tmp_path / "nope.ipynb"), "--out", str(tmp_path / "m.csv"), str(REFERENCE)]
    )
    assert code == 2
    assert "reference notebook not found" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_a_reference_with_bad_metadata_is_a_usage_error_listing_the_problems(tmp_path, capsys):
    nb = exercise.reference()
    for cell in nb.cells:
        if cell.metadata.get("dpdl", {}).get("id") == "check_step":
            del cell.metadata["dpdl"]["points"]
    reference = tmp_path / "reference.ipynb"
    nbformat.write(nb, reference)
    code = _main(["grade", "--reference", str(reference), "--out", str(tmp_path / "m.csv"), str(REFERENCE)])
    assert code == 2
    assert "check cell 'check_step' needs points" in capsys.readouterr().err


def test_a_reference_that_is_no_notebook_is_a_usage_error(capsys, tmp_path):
    code = _main(
        ["grade", "--reference", str(FIXTURES / "script.ipynb"), "--out", str(tmp_path / "m.csv"), str(REFERENCE)]
    )
    assert code == 2
    assert "not a notebook" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--workers", "0"], "must be at least 1"),
        (["--workers", "two"], "must be a whole number"),
        (["--timeout", "-5"], "must be a positive number of seconds"),
        (["--cell-timeout", "soon"], "must be a number of seconds"),
    ],
)
def test_bad_options_are_usage_errors(options, expected, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        _main(["grade", "--reference", str(REFERENCE), "--out", str(tmp_path / "m.csv"), *options, str(REFERENCE)])
    assert info.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, missing",
    [
        (["--reference", str(REFERENCE), "--out", "m.csv"], "SUBMISSION.ipynb"),
        (["--out", "m.csv", "x.ipynb"], "--reference"),
        (["x.ipynb"], "--reference, --out"),
    ],
)
def test_reference_out_and_submissions_are_required(argv, missing, capsys):
    assert _main(["grade", *argv]) == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err


def test_grade_refuses_zero_workers():
    with pytest.raises(ValueError, match="workers must be at least 1"):
        grade(REFERENCE, [], workers=0)


# --- report -----------------------------------------------------------------------------------------------


def test_feedback_names_are_distinct_for_the_same_file_name_in_different_folders():
    names = feedback_names(["sub/alice/lab1.ipynb", "sub/bob/lab1.ipynb", "sub/bob/lab1.ipynb", "sub/x y/ü ß.ipynb"])
    assert names == ["alice__lab1.md", "bob__lab1.md", "bob__lab1-2.md", "___.md"]
    assert feedback_names(["a/x/l.ipynb", "b/x/l.ipynb", "c/y/l.ipynb"]) == ["a__x__l.md", "b__x__l.md", "y__l.md"]
    assert feedback_names(["written_answers.ipynb"]) == ["written_answers-2.md"]
    assert feedback_names([]) == []


def _result(status="graded", passed=(True, False), reason=""):
    checks = [CheckResult("a", 2, passed[0]), CheckResult("b", 3, passed[1], "AssertionError: x | y\nmore")]
    return GradeResult("s.ipynb", status, reason, checks, notes=["answer cell `q` is missing"])


def test_marks_csv_has_a_column_per_check_and_rows_in_order(tmp_path):
    path = write_marks_csv([_result(), _result("timeout", (False, False), "too slow")], tmp_path / "m.csv")
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows == [
        ["submission", "total", "max", "status", "reason", "review", "a", "b"],
        ["s.ipynb", "2", "5", "graded", "", "unsandboxed", "2", "0"],
        ["s.ipynb", "0", "5", "timeout", "too slow", "unsandboxed", "0", "0"],
    ]


def test_feedback_escapes_table_cells_and_says_why_a_row_was_not_graded():
    text = feedback_markdown(_result("timeout", reason="the notebook ran past the 600 s limit"))
    assert "| `b` | 0 / 3 | failed: AssertionError: x \\| y more |" in text
    assert "not fully graded (timeout): the notebook ran past the 600 s limit" in text
    assert "- answer cell `q` is missing" in text
