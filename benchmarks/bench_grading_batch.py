"""What keeping a grading batch whole costs, and what noticing a dead kernel saves.

1. Writing out: ``BatchOutput.add`` for every submission (feedback, record and marks.csv, each written
   atomically with fsync) on a course-sized batch of synthetic results, per row and in all, and the cost
   of ``--resume`` deciding that every row is done (sha256 of each submission plus a record lookup).
2. A kernel that dies in the middle of a cell: the seconds ``run_nbval`` takes to report it, against nbval
   alone (``pytest --nbval``, which waits out the cell timeout), with the same notebook and timeout.

    python benchmarks/bench_grading_batch.py                      # 300 rows, 60 s cell timeout
    python benchmarks/bench_grading_batch.py --rows 1000 --cell-timeout 120
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from dpdl.grading import submission_sha256
from dpdl.grading.batch import BatchOutput
from dpdl.grading.report import CheckResult, GradeResult
from dpdl.grading.runner import run_nbval

ROOT = Path(__file__).resolve().parents[1]
CRASH = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300, help="submissions in the synthetic batch (default 300)")
    parser.add_argument(
        "--cell-timeout", type=float, default=60.0, help="cell timeout for the dead kernel (default 60)"
    )
    args = parser.parse_args(argv)
    print(
        f"# Grading batch: {platform.machine()} CPU, {os.cpu_count()} cores; python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="dpdl-bench-batch-") as tmp:
        write_seconds, finish_seconds, resume_seconds = time_writing(Path(tmp), args.rows)
    print()
    print("| what | rows | seconds | per row ms |")
    print("|---|---|---|---|")
    print(
        f"| `BatchOutput.add` (feedback + record + marks.csv, fsync'd) | {args.rows} | {write_seconds:.2f} | {1000 * write_seconds / args.rows:.1f} |"
    )
    print(
        f"| `finish` (written_answers.md, marks.csv) | {args.rows} | {finish_seconds:.2f} | {1000 * finish_seconds / args.rows:.1f} |"
    )
    print(
        f"| `--resume` with every row done (sha256 of 100 kB each) | {args.rows} | {resume_seconds:.2f} | {1000 * resume_seconds / args.rows:.1f} |"
    )

    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell(CRASH), new_code_cell("x")])
    runner = time_runner(nb, args.cell_timeout)
    alone = time_nbval_alone(nb, args.cell_timeout)
    print()
    print(f"| a kernel killed mid-cell, cell timeout {args.cell_timeout:g} s | seconds to the verdict |")
    print("|---|---|")
    print(f"| nbval alone (`pytest --nbval`) | {alone:.1f} |")
    print(f"| `run_nbval` (dead kernel noticed) | **{runner:.1f}** |")
    return 0


def time_writing(folder: Path, rows: int) -> tuple[float, float, float]:
    """Seconds to add ``rows`` results (10 checks, 2 written answers of 2,000 characters), to finish, and
    for a resumed run to find them all done."""
    submissions = []
    for i in range(rows):
        path = folder / "submissions" / f"student{i:04d}" / "lab1_exercise.ipynb"
        path.parent.mkdir(parents=True)
        path.write_bytes(os.urandom(100_000))
        submissions.append(str(path))
    out = folder / "out" / "marks.csv"
    output = BatchOutput(out, submissions=submissions, reference_sha256="r", written_ids=["why_a", "why_b"])
    start = time.perf_counter()
    for submission in submissions:
        checks = [CheckResult(f"check_{j}", 1, j % 3 != 0, "AssertionError: the shapes differ") for j in range(10)]
        written = {"why_a": "a" * 2000, "why_b": "b" * 2000}
        output.add(
            GradeResult(
                submission, "graded", "", checks, written=written, submission_sha256=submission_sha256(submission)
            )
        )
    write_seconds = time.perf_counter() - start
    start = time.perf_counter()
    output.finish()
    finish_seconds = time.perf_counter() - start
    start = time.perf_counter()
    resumed = BatchOutput(
        out, submissions=submissions, reference_sha256="r", written_ids=["why_a", "why_b"], resume=True
    )
    todo = [path for path in submissions if not resumed.keep_if_current(path, submission_sha256(path))]
    resume_seconds = time.perf_counter() - start
    assert not todo, "every row was done"
    return write_seconds, finish_seconds, resume_seconds


def time_runner(nb, cell_timeout: float) -> float:
    start = time.perf_counter()
    run = run_nbval(nb, cell_timeout=cell_timeout, timeout=10 * cell_timeout)
    assert not run.cells[1].passed and "kernel died" in run.cells[1].message, run
    return time.perf_counter() - start


def time_nbval_alone(nb, cell_timeout: float) -> float:
    with tempfile.TemporaryDirectory(prefix="dpdl-bench-nbval-") as tmp:
        path = Path(tmp) / "crash.ipynb"
        nbformat.write(nb, path)
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        command = [
            sys.executable, "-m", "pytest", "-p", "nbval.plugin", "-p", "no:cacheprovider", "--noconftest", "-q",
            "--nbval", "--nbval-current-env", f"--nbval-cell-timeout={cell_timeout:g}", "--rootdir", tmp, str(path),
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=tmp, env=env, capture_output=True, timeout=10 * cell_timeout)
        return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
