"""Grading throughput of ``dpdl grade``: submissions graded per minute with 1 and with 2 workers.

The batch is built from a real exercise: copies of the instructor's notebook (every answer right, so every
check runs to the end), the untouched student copy (every answer raises ``NotImplementedError``), and
copies of the instructor's notebook whose first answer cell is left undone (a plausible partial
submission), in turn. The same batch is graded with each number of workers; the marks of the runs must agree.

    python benchmarks/bench_grading.py                                   # exercise 2, 6 submissions
    python benchmarks/bench_grading.py --exercise exercises/lab1/lab1_exercise.ipynb --submissions 8
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from dpdl.grading import grade
from dpdl.grading.cells import answer_cells, max_points

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exercise", type=Path, default=ROOT / "exercises" / "lab2" / "lab2_exercise.ipynb")
    parser.add_argument("--submissions", type=int, default=6, help="submissions in the batch (default 6)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    args = parser.parse_args(argv)
    args.exercise = args.exercise.resolve()
    if args.submissions < 1:
        parser.error("--submissions must be at least 1")
    student_copy = args.exercise.parent / "student" / args.exercise.name
    if not args.exercise.is_file() or not student_copy.is_file():
        parser.error(f"need {args.exercise} and its student copy {student_copy} (run `dpdl notebooks build`)")

    with tempfile.TemporaryDirectory(prefix="dpdl-bench-grading-") as tmp:
        batch = make_batch(args.exercise, student_copy, Path(tmp), args.submissions)
        rows = []
        marks_seen = None
        for workers in args.workers:
            start = time.perf_counter()
            results = grade(args.exercise, batch, workers=workers)
            seconds = time.perf_counter() - start
            marks = [result.total for result in results]
            if marks_seen is not None and marks != marks_seen:
                print(f"marks differ between worker counts: {marks_seen} vs {marks}", file=sys.stderr)
                return 1
            marks_seen = marks
            rows.append((workers, seconds, 60 * len(batch) / seconds, marks))

    reference = nbformat.read(args.exercise, as_version=4)
    print(f"# Grading throughput: {args.exercise.relative_to(ROOT)}, {len(batch)} submissions")
    print(
        f"{platform.machine()} CPU, {os.cpu_count()} cores; python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| workers | seconds | submissions / min | marks (of %d) |" % max_points(reference))
    print("|---|---|---|---|")
    for workers, seconds, per_minute, marks in rows:
        print(f"| {workers} | {seconds:.1f} | {per_minute:.1f} | {' '.join(map(str, marks))} |")
    return 0


def make_batch(exercise: Path, student_copy: Path, folder: Path, count: int) -> list[Path]:
    """Right, untouched and partly done submissions in turn, written into ``folder``."""
    reference = nbformat.read(exercise, as_version=4)
    student = nbformat.read(student_copy, as_version=4)
    first_answer = next(iter(answer_cells(reference)))
    partly_done = nbformat.from_dict(reference)
    for i, cell in enumerate(partly_done.cells):  # the first answer left as the student copy has it
        if cell.get("metadata", {}).get("dpdl", {}).get("id") == first_answer:
            partly_done.cells[i] = answer_cells(student)[first_answer]
    kinds = [
        ("right", exercise.read_bytes()),
        ("untouched", student_copy.read_bytes()),
        ("partly_done", nbformat.writes(partly_done).encode()),
    ]
    batch = []
    for i in range(count):
        name, data = kinds[i % len(kinds)]
        path = folder / f"student{i:02d}_{name}.ipynb"
        path.write_bytes(data)
        batch.append(path)
    return batch


if __name__ == "__main__":
    sys.exit(main())
