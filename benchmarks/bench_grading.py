"""Grading throughput of ``dpdl grade`` with 1 and 2 workers, with the sandbox on and off, and its overhead.

The batch is built from a real exercise: copies of the instructor's notebook (every answer right, so every
check runs to the end), the untouched student copy (every answer raises ``NotImplementedError``), and
copies of the instructor's notebook whose first answer cell is left undone (a plausible partial
submission), in turn. The same batch is graded with each number of workers, sandboxed (a bubblewrap
sandbox per kernel, the default) and not (``--no-sandbox``); the marks of all runs must agree. Sandboxed
and unsandboxed runs alternate, and each configuration is timed ``--repeat`` times (the fastest counts),
so that a machine shared with other work biases neither side. Per submission is the mean time of one
notebook's run (kernel start to kernel end), the cost the sandbox adds to.

    python benchmarks/bench_grading.py                                   # exercise 2, 6 submissions
    python benchmarks/bench_grading.py --exercise exercises/lab1/lab1_exercise.ipynb --submissions 6 --repeat 2
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
from dpdl.notebooks.cells import answer_cells, max_points

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exercise", type=Path, default=ROOT / "exercises" / "lab2" / "lab2_exercise.ipynb")
    parser.add_argument("--submissions", type=int, default=6, help="submissions in the batch (default 6)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    parser.add_argument(
        "--sandbox",
        choices=["on", "off"],
        nargs="+",
        default=["on", "off"],
        help="sandbox settings to time (default on off)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="timings per configuration; the fastest counts (default 1)"
    )
    args = parser.parse_args(argv)
    args.exercise = args.exercise.resolve()
    if args.submissions < 1 or args.repeat < 1:
        parser.error("--submissions and --repeat must be at least 1")
    student_copy = args.exercise.parent / "student" / args.exercise.name
    if not args.exercise.is_file() or not student_copy.is_file():
        parser.error(f"need {args.exercise} and its student copy {student_copy} (run `dpdl notebooks build`)")

    with tempfile.TemporaryDirectory(prefix="dpdl-bench-grading-") as tmp:
        batch = make_batch(args.exercise, student_copy, Path(tmp), args.submissions)
        timings: dict[tuple[int, str], list[tuple[float, float]]] = {}
        marks_seen = None
        for _ in range(args.repeat):
            for workers in args.workers:
                for sandbox in args.sandbox:  # alternating, so that load on a shared machine hits both
                    start = time.perf_counter()
                    results = grade(args.exercise, batch, workers=workers, sandbox=sandbox == "on")
                    seconds = time.perf_counter() - start
                    marks = [result.total for result in results]
                    if marks_seen is not None and marks != marks_seen:
                        print(f"marks differ between runs: {marks_seen} vs {marks}", file=sys.stderr)
                        return 1
                    marks_seen = marks
                    per_submission = sum(result.seconds for result in results) / len(results)
                    timings.setdefault((workers, sandbox), []).append((seconds, per_submission))

    reference = nbformat.read(args.exercise, as_version=4)
    print(f"# Grading throughput: {args.exercise.relative_to(ROOT)}, {len(batch)} submissions, best of {args.repeat}")
    print(
        f"{platform.machine()} CPU, {os.cpu_count()} cores; python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        f"| workers | sandbox | batch seconds | seconds per submission | submissions / min | marks (of {max_points(reference)}) |"
    )
    print("|---|---|---|---|---|---|")
    best = {key: min(runs) for key, runs in timings.items()}
    for (workers, sandbox), (seconds, per_submission) in best.items():
        print(
            f"| {workers} | {sandbox} | {seconds:.1f} | {per_submission:.1f} | {60 * len(batch) / seconds:.1f} | "
            f"{' '.join(map(str, marks_seen))} |"
        )
    for workers in args.workers:
        if (workers, "on") in best and (workers, "off") in best:
            on, off = best[workers, "on"][0], best[workers, "off"][0]
            print(f"\nsandbox overhead with {workers} worker(s): {100 * (on - off) / off:+.1f} % of the batch time")
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
