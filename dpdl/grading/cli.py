"""``dpdl grade``: the command line over :func:`dpdl.grading.grade` (marks.csv and feedback files).

Exit status 0 when the batch was graded, whatever the students scored (rows with status ``error`` are
also listed on stderr, to be re-run); 2 for a usage error (no such reference, a reference whose cell
metadata cannot be graded against); 1 when this environment cannot grade (nbval or ipykernel missing).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "grade",
        help="grade submitted exercise notebooks against the reference (marks.csv + feedback)",
        description=(
            "Take each submission's answer cells (matched by metadata dpdl.id), run them with the reference's "
            "own check cells under nbval in a fresh kernel, and write one marks.csv row per submission plus "
            "markdown feedback per student. Submission files are only read."
        ),
        epilog=(
            "status in marks.csv: graded (the notebook ran; failed checks earn 0), timeout (stopped at --timeout; "
            "checks finished before count), invalid (not a notebook: empty, damaged, another file type; 0 points), "
            "error (the run broke down, e.g. the submission killed the grader; checks finished before count)."
        ),
    )
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb", help="submitted notebooks")
    parser.add_argument("--reference", required=True, metavar="REF.ipynb", help="the executed instructor notebook")
    parser.add_argument("--out", required=True, metavar="marks.csv", help="where to write the marks")
    parser.add_argument(
        "--feedback-dir", metavar="DIR",
        help="per-student feedback and written_answers.md (default: <out stem>_feedback beside --out)",
    )  # fmt: skip
    parser.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="notebooks graded at once (default 1); each kernel then gets cores/N CPU threads")
    parser.add_argument(
        "--cell-timeout", type=_positive_float, default=None, metavar="S",
        help="seconds one cell may run before it is interrupted and fails (default 120)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_positive_float, default=None, metavar="S",
        help="seconds one notebook may run, kernel start included, before it is killed (default 600)",
    )  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dpdl.grading import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, ReferenceNotebookError, grade, load_reference
    from dpdl.grading.cells import check_cells, written_cells
    from dpdl.grading.report import write_feedback, write_marks_csv

    try:
        reference = load_reference(args.reference)
    except (FileNotFoundError, ReferenceNotebookError) as err:
        print(f"dpdl grade: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    feedback_dir = Path(args.feedback_dir) if args.feedback_dir else out.with_name(f"{out.stem}_feedback")
    lock, done = threading.Lock(), [0]

    def progress(result) -> None:
        with lock:
            done[0] += 1
            detail = f" ({result.reason})" if result.status != "graded" else ""
            print(
                f"[{done[0]}/{len(args.submissions)}] {result.submission}: {result.total}/{result.max} "
                f"{result.status}{detail}",
                flush=True,
            )

    try:
        results = grade(
            reference,
            args.submissions,
            workers=args.workers,
            cell_timeout=args.cell_timeout or DEFAULT_CELL_TIMEOUT,
            timeout=args.timeout or DEFAULT_TIMEOUT,
            on_result=progress,
        )
    except ModuleNotFoundError as err:
        print(f"dpdl grade: {err}", file=sys.stderr)
        return 1
    write_marks_csv(results, out, check_ids=list(check_cells(reference)))
    write_feedback(results, feedback_dir, written_ids=list(written_cells(reference)))
    print(f"wrote {out} ({len(results)} submissions) and feedback in {feedback_dir}")
    errors = [result.submission for result in results if result.status == "error"]
    if errors:
        print(f"dpdl grade: {len(errors)} submission(s) could not be run (status error); re-run them: "
              f"{' '.join(errors)}", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds; got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {text}")
    return value
