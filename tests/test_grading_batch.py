"""A batch that always completes and loses nothing: hostile files, safe output, atomic writes, resume, shards.

Most cases here are files that never reach a kernel (they are refused while being read), so they run in
milliseconds; the kill and resume tests grade a few tiny notebooks for real.
"""

import argparse
import csv
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mistune
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpdl import grading
from dpdl.grading import grade, submission_bytes
from dpdl.grading.batch import BatchOutput, Record, parse_shard, read_records, records_dir, shard
from dpdl.grading.cli import register
from dpdl.grading.merge import SubmissionError, read_submission
from dpdl.grading.report import (
    CheckResult,
    GradeResult,
    feedback_markdown,
    marks_csv_text,
    write_atomically,
    written_answers_markdown,
)
from dpdl.notebooks.cells import cell_points, cell_role, graded_cells
from tests.fixtures.grading import exercise
from tests.fixtures.grading.exercise import MSE_SOLUTION, REFERENCE, with_answers, write

REPO = Path(__file__).resolve().parents[1]
MAX_POINTS = sum(exercise.CHECK_POINTS.values())
MSE_POINTS = exercise.CHECK_POINTS["check_mse"]  # what a submission with only the first answer earns
PASSWD_FIRST_LINE = Path("/etc/passwd").read_text().splitlines()[0] if Path("/etc/passwd").exists() else "root:x:0:0"


def _main(argv):
    """What ``dpdl grade ...`` runs, through the same ``register`` that dpdl/cli.py calls."""
    parser = argparse.ArgumentParser(prog="dpdl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _reference_json():
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def _with_cell(cell_index, value):
    nb = _reference_json()
    nb["cells"][cell_index] = value
    return json.dumps(nb)


def _with_cell_field(cell_index, key, value):
    nb = _reference_json()
    nb["cells"][cell_index][key] = value
    return json.dumps(nb)


# name -> (how to make it in a folder, the start of the invalid row's reason)
MALFORMED = {
    "deep.ipynb": (
        lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
        "not a notebook: the JSON is nested too deeply",
    ),
    "deep_object.ipynb": (
        lambda p: p.write_text('{"a":' * 50_000 + "1" + "}" * 50_000),
        "not a notebook: the JSON is nested too deeply",
    ),
    "bigint.ipynb": (
        lambda p: p.write_text('{"cells": [], "nbformat": ' + "9" * 5000 + "}"),
        "not a notebook: the JSON holds a value no notebook has (Exceeds the limit",
    ),
    "int_in_source.ipynb": (
        lambda p: p.write_text(_with_cell_field(1, "source", ["import numpy as np\n", 5])),
        "the notebook is damaged: cell 1 has a source that is neither text nor a list of lines",
    ),
    "int_cell.ipynb": (lambda p: p.write_text(_with_cell(1, 5)), "the notebook is damaged: cell 1 is a JSON int"),
    "list_metadata.ipynb": (
        lambda p: p.write_text(_with_cell_field(3, "metadata", ["dpdl"])),
        "the notebook is damaged: cell 3 has metadata that is not an object",
    ),
    "no_cell_type.ipynb": (
        lambda p: p.write_text(_with_cell_field(3, "cell_type", None)),
        "the notebook is damaged: cell 3 has no cell_type",
    ),
    "fifo.ipynb": (lambda p: os.mkfifo(p), "not a notebook: the submission is a named pipe (FIFO)"),
    "link_to_reference.ipynb": (lambda p: p.symlink_to(REFERENCE), "not a notebook: the submission is a symbolic link"),
    "link_to_passwd.ipynb": (
        lambda p: p.symlink_to("/etc/passwd"),
        "not a notebook: the submission is a symbolic link",
    ),
    "folder.ipynb": (lambda p: p.mkdir(), "not a notebook: the submission is a directory"),
}


@pytest.fixture
def malformed(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, (make, _) in MALFORMED.items():
        make(folder / name)
    return folder


def test_each_malformed_file_gets_an_invalid_row_with_its_reason(malformed):
    paths = [malformed / name for name in MALFORMED]
    # grade() runs the reference once first (its hidden checks' values); a FIFO that blocked would hang here
    results = _in_thread(lambda: grade(REFERENCE, paths), seconds=240)
    for name, result in zip(MALFORMED, results):
        assert (result.status, result.total, result.max) == ("invalid", 0, MAX_POINTS), name
        assert result.reason.startswith(MALFORMED[name][1]), (name, result.reason)
        assert all(check.message == "not graded: the submission could not be read" for check in result.checks)


def test_the_command_writes_a_row_for_every_hostile_file_and_leaks_nothing(malformed, tmp_path, capsys):
    out = tmp_path / "marks" / "marks.csv"
    before = _fingerprints([REFERENCE, *malformed.iterdir()])
    code = _in_thread(
        lambda: _main(
            ["grade", "--reference", str(REFERENCE), "--out", str(out), *map(str, sorted(malformed.iterdir()))]
        )
    )
    assert code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(Path(row["submission"]).name for row in rows) == sorted(MALFORMED)
    assert {row["status"] for row in rows} == {"invalid"} and {row["total"] for row in rows} == {"0"}
    written = out.read_text() + "".join(path.read_text() for path in (tmp_path / "marks").rglob("*") if path.is_file())
    assert PASSWD_FIRST_LINE not in written and PASSWD_FIRST_LINE not in capsys.readouterr().out
    assert _fingerprints([REFERENCE, *malformed.iterdir()]) == before, "inputs are never modified"


def test_reading_refuses_devices_and_reads_at_most_the_limit_plus_one_byte(tmp_path, monkeypatch):
    with pytest.raises(SubmissionError, match="a character device"):
        submission_bytes("/dev/zero")  # endless: reading it would never stop
    monkeypatch.setattr(grading, "MAX_SUBMISSION_BYTES", 1000)
    sparse = tmp_path / "sparse.ipynb"
    with open(sparse, "wb") as file:
        file.truncate(10 * 2**30)  # claims 10 GB, holds none
    with pytest.raises(SubmissionError, match="over the 0 MB limit"):
        submission_bytes(sparse)
    (tmp_path / "ok.ipynb").write_bytes(b"x" * 1000)
    assert submission_bytes(tmp_path / "ok.ipynb") == b"x" * 1000
    with pytest.raises(FileNotFoundError):
        submission_bytes(tmp_path / "missing.ipynb")


def test_a_file_name_that_is_not_utf8_still_gets_its_row(tmp_path):
    folder = os.fsencode(tmp_path)
    bad = os.fsdecode(folder + b"/bad\xff\x1b[31m.ipynb")
    Path(bad).write_bytes(b"")
    out = tmp_path / "marks.csv"
    assert _main(["grade", "--reference", str(REFERENCE), "--out", str(out), bad]) == 0
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[1][0].endswith("bad\\udcff\x1b[31m.ipynb") and rows[1][3] == "invalid"
    assert len(read_records(records_dir(out))[0]) == 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
CELL = (
    st.fixed_dictionaries(
        {},
        optional={
            "cell_type": st.sampled_from(["code", "markdown", "raw"]) | JSON,
            "source": st.text(max_size=30) | st.lists(st.text(max_size=10) | JSON, max_size=3) | JSON,
            "metadata": st.fixed_dictionaries(
                {},
                optional={
                    "dpdl": st.fixed_dictionaries(
                        {},
                        optional={
                            "id": st.sampled_from(["mse", "softmax", "step", "check_mse", "why_max"]) | JSON,
                            "role": JSON,
                        },
                    )
                    | JSON
                },
            )
            | JSON,
        },
    )
    | JSON
)


READ_ONLY_REFERENCE = exercise.reference()  # read_submission only reads it


@settings(max_examples=200, deadline=None)
@given(cells=st.lists(CELL, max_size=6), extra=st.dictionaries(st.text(max_size=8), JSON, max_size=3))
def test_reading_any_json_either_gives_answers_or_says_why_not(cells, extra):
    """Whatever a notebook's JSON holds, reading it returns answers or raises SubmissionError (an invalid row)."""
    data = json.dumps({**extra, "nbformat": 4, "cells": cells}).encode()
    try:
        submission = read_submission(data, READ_ONLY_REFERENCE)
    except SubmissionError:
        return
    assert all(isinstance(source, str) for source in submission.answers.values())
    assert all(isinstance(text, str) for text in submission.written.values())


# --- safe output ----------------------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote(text):
    result = GradeResult(text, "invalid", text, [CheckResult("a", 1, False)], review=[text])
    row = next(csv.DictReader(io.StringIO(marks_csv_text([result]), newline="")))
    assert row["submission"] == row["reason"] == "'" + text
    assert row["review"].startswith("'" + text)


def test_a_submission_named_like_a_formula_is_neutralised_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("=1+1.ipynb").write_bytes(b"")
    assert _main(["grade", "--reference", str(REFERENCE), "--out", "marks.csv", "=1+1.ipynb"]) == 0
    assert Path("marks.csv").read_text().splitlines()[1].startswith(f"'=1+1.ipynb,0,{MAX_POINTS},invalid")


HOSTILE = (
    "<script>alert(1)</script><img src=x onerror=alert(2)> [click](javascript:alert(3)) ![i](http://e/t.png) | `x`"
)


def _hostile_result():
    checks = [CheckResult("check_a", 2, False, HOSTILE), CheckResult("check_b", 1, True)]
    return GradeResult(
        f"{HOSTILE}.ipynb", "timeout", HOSTILE, checks,
        answer_errors={"a": HOSTILE}, written={"w": f"{HOSTILE}\n```\n<iframe src=x></iframe>\n````"},
        notes=[HOSTILE], review=[HOSTILE],
    )  # fmt: skip


@pytest.mark.parametrize("render", ["feedback", "written_answers"])
def test_feedback_renders_no_html_and_no_links_from_a_submission(render):
    result = _hostile_result()
    text = feedback_markdown(result) if render == "feedback" else written_answers_markdown([result], ["w"])
    html = mistune.create_markdown(escape=False, plugins=["table"])(text)  # a renderer that passes raw HTML
    for tag in ("<script", "<img", "<iframe", "<a "):
        assert tag not in html, (tag, html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, "the text itself is shown"
    if render == "feedback":
        row = next(line for line in text.splitlines() if line.startswith("| `check_a`"))
        assert len(re.findall(r"(?<!\\)\|", row)) == 4, "a pipe in a message does not add table cells"
        assert html.count("<td") == 3 * 2


def test_a_written_answer_cannot_close_its_fence():
    text = written_answers_markdown([_hostile_result()], ["w"])
    fence = "`````"  # longer than the longest run of backticks in the answer
    assert f"{fence}text\n{HOSTILE}\n```\n<iframe src=x></iframe>\n````\n{fence}" in text


# --- atomic writes ------------------------------------------------------------------------------------


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_atomically(tmp_path / "marks.csv", "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["marks.csv"]


REWRITER = """
import sys
from dpdl.grading.report import write_atomically
version = 0
while True:
    version += 1
    write_atomically(sys.argv[1], f"{version}\\n" + "x" * 2_000_000 + f"\\n{version}\\n")
"""


def test_a_writer_killed_at_any_moment_leaves_a_whole_file(tmp_path):
    """SIGKILL a process rewriting a 2 MB file, at 20 moments; every time the file is one whole version."""
    path = tmp_path / "marks.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(20):
        writer = subprocess.Popen([sys.executable, "-c", REWRITER, str(path)], env=env)
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.01 * (attempt % 7))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        first, body, last = path.read_text().split("\n")[:3]
        assert first == last and int(first) >= 1 and body == "x" * 2_000_000


@pytest.fixture(scope="module")
def plain_reference(tmp_path_factory):
    """The fixture's reference without its hidden check: these tests are about the batch, and a reference
    without hidden checks needs no run of its own, so each graded submission costs one kernel only."""
    nb = exercise.reference()
    nb.cells = [cell for cell in nb.cells if cell_role(cell) != "hidden"]
    path = write(nb, tmp_path_factory.mktemp("plain") / "reference.ipynb")
    return path, sum(cell_points(cell) for cell in graded_cells(nb).values())


def _solved_copies(folder, count):
    """``count`` submissions that each take a kernel: the reference, one with only mse solved, in turn."""
    folder.mkdir(exist_ok=True)
    paths = []
    for index in range(count):
        nb = exercise.reference() if index % 2 == 0 else with_answers(exercise.student(), mse=MSE_SOLUTION)
        paths.append(write(nb, folder / f"student{index}.ipynb"))
    return paths


def _grade_command(reference, out, paths, *extra):
    return [
        sys.executable, "-m", "dpdl.cli", "grade", "--reference", str(reference), "--out", str(out),
        "--cell-timeout", "30", *extra, *map(str, paths),
    ]  # fmt: skip


def test_killing_the_grader_loses_no_finished_row_and_resume_grades_only_the_rest(tmp_path, plain_reference):
    reference, full_marks = plain_reference
    paths = _solved_copies(tmp_path / "submissions", 3)
    before = _fingerprints([reference, *paths])
    out = tmp_path / "out" / "marks.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPDL_PROGRESS": "0"}
    grader = subprocess.Popen(
        _grade_command(reference, out, paths), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    records = records_dir(out)
    deadline = time.monotonic() + 240
    while len(list(records.glob("*.json"))) < 1 and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.05)
    grader.send_signal(signal.SIGSTOP)  # so that it starts no notebook between the listing and the kill
    children = psutil.Process(grader.pid).children(recursive=True)
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    for child in children:  # nbval runs in a session of its own; stop it as the end of a job would
        try:
            child.kill()
        except psutil.Error:
            pass
    kept, problems = read_records(records)
    assert 1 <= len(kept) < 3 and problems == []
    rows = list(csv.DictReader(out.open(encoding="utf-8"))) if out.exists() else []
    assert {row["submission"] for row in rows} <= set(kept), "marks.csv follows the records, at most one behind"
    assert len(rows) >= len(kept) - 1
    for row in rows:
        assert row["status"] == "graded" and row["total"] in {str(full_marks), str(MSE_POINTS)}
    first_record = {path: path.stat().st_mtime_ns for path in records.glob("*.json")}

    done = subprocess.run(
        _grade_command(reference, out, paths, "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"--resume: {len(kept)} of 3 submissions already graded with this reference" in done.stdout
    assert done.stdout.count("graded [") == 3 - len(kept)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    expected = [(str(path), str(full_marks if i % 2 == 0 else MSE_POINTS)) for i, path in enumerate(paths)]
    assert [(row["submission"], row["total"]) for row in rows] == expected
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in first_record.items()), "kept rows are not redone"
    assert not [p for p in out.parent.rglob(".*.tmp")], "no temporary file is left behind"
    assert len(list((out.parent / "marks_feedback").glob("student*.md"))) == 3
    assert _fingerprints([reference, *paths]) == before, "inputs are never modified"


def test_sigterm_ends_the_running_notebooks_and_exits_130_with_whole_rows(tmp_path, plain_reference):
    paths = _solved_copies(tmp_path / "submissions", 4)
    out = tmp_path / "out" / "marks.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPDL_PROGRESS": "0"}
    grader = subprocess.Popen(
        _grade_command(plain_reference[0], out, paths, "--workers", "2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not list(records_dir(out).glob("*.json")) and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.05)
    children = psutil.Process(grader.pid).children(recursive=True)
    grader.send_signal(signal.SIGTERM)  # what Slurm sends at the time limit
    stdout, stderr = grader.communicate(timeout=60)
    assert grader.returncode == 130, stderr
    assert "Run the same command with --resume to grade the rest" in stderr
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"grading processes left running: {alive}"
    kept, _ = read_records(records_dir(out))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {row["submission"] for row in rows} == set(kept) and 1 <= len(kept) < 4
    assert all(row["status"] == "graded" for row in rows), "an interrupted notebook leaves no error row"


# --- resume, shards, merge (no kernel: records and invalid files) ----------------------------------------


def _result(name, status="graded", sha="s1", passed=True):
    return GradeResult(name, status, "", [CheckResult("check_a", 2, passed)], submission_sha256=sha)


def test_resume_keeps_a_record_only_for_the_same_bytes_and_reference_and_never_an_error(tmp_path):
    out = tmp_path / "marks.csv"
    first = BatchOutput(out, submissions=["a", "b", "c", "d"], reference_sha256="r1", written_ids=[])
    for result in (_result("a"), _result("b", status="error"), _result("c", status="invalid", sha=""), _result("d")):
        first.add(result)
    again = BatchOutput(out, submissions=["a", "b", "c", "d"], reference_sha256="r1", written_ids=[], resume=True)
    assert again.keep_if_current("a", "s1")
    assert not again.keep_if_current("b", "s1"), "an error row is graded again"
    assert not again.keep_if_current("c", ""), "a file that could not be read is read again"
    assert not again.keep_if_current("d", "s2"), "a changed file is graded again"
    assert [row.submission for row in again.rows()] == ["a"], "no row outlives the file it graded"
    assert sorted(read_records(records_dir(out))[0]) == ["a"]
    other = BatchOutput(out, submissions=["a"], reference_sha256="r2", written_ids=[], resume=True)
    assert not other.keep_if_current("a", "s1") and other.rows() == [], "another reference: nothing is kept"
    first.add(_result("a"))
    fresh = BatchOutput(out, submissions=["a"], reference_sha256="r1", written_ids=[])
    assert fresh.rows() == [] and read_records(records_dir(out))[0] == {}, "without --resume the old rows go"


def test_resume_on_the_command_line_skips_what_is_done_unless_the_reference_changed(malformed, tmp_path, capsys):
    paths = [str(malformed / name) for name in ("deep.ipynb", "bigint.ipynb")]
    out = tmp_path / "marks.csv"
    assert _main(["grade", "--reference", str(REFERENCE), "--out", str(out), *paths]) == 0
    record = next(records_dir(out).glob("*.json"))
    mtime = record.stat().st_mtime_ns
    assert _main(["grade", "--reference", str(REFERENCE), "--out", str(out), "--resume", *paths]) == 0
    assert record.stat().st_mtime_ns == mtime
    assert "--resume: 2 of 2 submissions already graded with this reference" in capsys.readouterr().out
    assert len(list(csv.reader(out.open()))) == 3
    changed = tmp_path / "reference_v2.ipynb"
    changed.write_text(json.dumps(_reference_json(), indent=2), encoding="utf-8")
    assert _main(["grade", "--reference", str(changed), "--out", str(out), "--resume", *paths]) == 0
    assert "the reference changed since 2 row(s) were graded; they are graded again" in capsys.readouterr().out
    assert record.stat().st_mtime_ns != mtime


def test_shards_partition_the_sorted_submissions_evenly():
    names = [f"s/{i:03d}.ipynb" for i in range(23)]
    shards = [shard(reversed(names), k, 4) for k in range(1, 5)]
    assert sorted(sum(shards, [])) == names and len(set(sum(shards, []))) == 23
    assert {len(part) for part in shards} == {5, 6}
    assert shards[0][:2] == ["s/000.ipynb", "s/004.ipynb"]
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/4", "5/4", "1", "a/b"):
        with pytest.raises(ValueError, match="K/N"):
            parse_shard(bad)


def test_shards_merge_into_the_marks_of_one_run(malformed, tmp_path):
    paths = sorted(str(path) for path in malformed.iterdir())
    common = ["grade", "--reference", str(REFERENCE)]
    for k in (1, 2, 3):
        assert _main([*common, "--out", str(tmp_path / f"shard{k}" / "marks.csv"), "--shard", f"{k}/3", *paths]) == 0
    assert _main([*common, "--out", str(tmp_path / "whole" / "marks.csv"), *paths]) == 0
    merged = tmp_path / "merged.csv"
    assert _main(["grade", "merge", str(merged), *(str(tmp_path / f"shard{k}" / "marks.csv") for k in (1, 2, 3))]) == 0
    assert merged.read_text() == (tmp_path / "whole" / "marks.csv").read_text()
    whole_feedback = {p.name: p.read_text() for p in (tmp_path / "whole" / "marks_feedback").iterdir()}
    assert {p.name: p.read_text() for p in (tmp_path / "merged_feedback").iterdir()} == whole_feedback
    again = tmp_path / "again.csv"
    assert (
        _main(
            [
                "grade",
                "merge",
                str(again),
                str(tmp_path / "shard1"),
                str(tmp_path / "shard2" / "marks_records"),
                str(tmp_path / "shard3"),
            ]
        )
        == 0
    )
    assert again.read_text() == merged.read_text(), "a shard may also be named by its folder or records folder"


def test_merge_refuses_mixed_references_and_duplicates(malformed, tmp_path, capsys):
    paths = sorted(str(path) for path in malformed.iterdir())
    other_reference = tmp_path / "reference_v2.ipynb"
    other_reference.write_text(json.dumps(_reference_json(), indent=2), encoding="utf-8")  # same notebook, other bytes
    assert (
        _main(
            ["grade", "--reference", str(REFERENCE), "--out", str(tmp_path / "a" / "m.csv"), "--shard", "1/2", *paths]
        )
        == 0
    )
    assert (
        _main(
            [
                "grade",
                "--reference",
                str(other_reference),
                "--out",
                str(tmp_path / "b" / "m.csv"),
                "--shard",
                "2/2",
                *paths,
            ]
        )
        == 0
    )
    assert (
        _main(
            ["grade", "--reference", str(REFERENCE), "--out", str(tmp_path / "c" / "m.csv"), "--shard", "1/2", *paths]
        )
        == 0
    )
    assert (
        _main(["grade", "merge", str(tmp_path / "x.csv"), str(tmp_path / "a" / "m.csv"), str(tmp_path / "b" / "m.csv")])
        == 2
    )
    assert "graded against different references" in capsys.readouterr().err
    assert (
        _main(["grade", "merge", str(tmp_path / "x.csv"), str(tmp_path / "a" / "m.csv"), str(tmp_path / "c" / "m.csv")])
        == 2
    )
    assert "graded in more than one shard" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
    assert _main(["grade", "merge", str(tmp_path / "a" / "m.csv"), str(tmp_path / "a" / "m.csv")]) == 2
    assert "would overwrite this shard's records" in capsys.readouterr().err


def test_records_round_trip_every_field(tmp_path):
    result = _hostile_result()
    result.seconds, result.sandboxed, result.submission_sha256 = 1.5, True, "ab" * 32
    record = Record(result, "cd" * 32, ["w"])
    assert Record.from_json(record.to_json()) == record
    with pytest.raises(ValueError, match="record format"):
        Record.from_json(json.dumps({"format": 99}))


def test_an_output_that_would_overwrite_an_input_is_a_usage_error(tmp_path, capsys):
    submission = write(exercise.student(), tmp_path / "s.ipynb")
    assert _main(["grade", "--reference", str(REFERENCE), "--out", str(submission), str(submission)]) == 2
    assert "is an input" in capsys.readouterr().err
    (tmp_path / "marks_feedback").mkdir()
    inside = write(exercise.student(), tmp_path / "marks_feedback" / "s.ipynb")
    assert _main(["grade", "--reference", str(REFERENCE), "--out", str(tmp_path / "marks.csv"), str(inside)]) == 2
    assert "lies in the output folder" in capsys.readouterr().err


# --- helpers --------------------------------------------------------------------------------------------


def _fingerprints(paths):
    """sha256 and mtime of each path's own entry (links are not followed; folders and pipes by metadata)."""
    prints = {}
    for path in paths:
        info = os.lstat(path)
        content = b""
        if Path(path).is_file() and not Path(path).is_symlink():
            content = Path(path).read_bytes()
        prints[str(path)] = (hashlib.sha256(content).hexdigest(), info.st_mtime_ns, info.st_mode)
    return prints


def _in_thread(function, seconds=240):
    """``function()``, failing the test instead of hanging when it does not return within ``seconds``."""
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("value", function()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s: a submission hung the batch"
    return box["value"]
