"""``dpdl grade``: the command line over :func:`dpdl.grading.grade` (marks.csv, records and feedback files).

``dpdl grade merge OUT.csv SHARD.csv...`` joins the outputs of ``--shard K/N`` runs. The exit statuses are
:data:`EXIT_STATUSES`, listed in ``dpdl grade --help`` and README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from dpdl.grading import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT
from dpdl.grading.sandbox import GiB, Limits

__all__ = ["register", "EXIT_STATUSES"]

EXIT_OK, EXIT_ENVIRONMENT, EXIT_USAGE, EXIT_RERUN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_STATUSES = {
    EXIT_OK: "every submission has its row (graded, timeout or invalid), whatever the students scored",
    EXIT_ENVIRONMENT: "this environment cannot grade (nbval or ipykernel missing, output not writable, "
    "no sandbox can be made and --no-sandbox was not given)",
    EXIT_USAGE: "usage error (bad options, no such reference, a reference that cannot be graded against, "
    "shards that cannot be merged)",
    EXIT_RERUN: "some rows have status error (the run broke down): run the same command with --resume",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); the rows written so far are whole: add --resume",
}


def register(subparsers) -> None:
    codes = "; ".join(f"{code} {meaning}" for code, meaning in EXIT_STATUSES.items())
    parser = subparsers.add_parser(
        "grade",
        help="grade submitted exercise notebooks against the reference (marks.csv + feedback)",
        usage=(
            "dpdl grade --reference REF.ipynb --out marks.csv [options] SUBMISSION.ipynb [...]\n"
            "       dpdl grade merge OUT.csv SHARD.csv [SHARD.csv ...]"
        ),
        description=(
            "Take each submission's answer cells (matched by metadata dpdl.id), run them with the reference's "
            "own check cells under nbval in a fresh kernel, and write one marks.csv row per submission plus "
            "markdown feedback per student, each as soon as that submission is graded (a record per submission "
            "in <out stem>_records/ keeps them for --resume and merge). Submission files are only read; "
            "symbolic links, pipes, devices and folders are refused. "
            "`dpdl grade merge OUT.csv SHARD.csv...` joins the outputs of --shard runs."
        ),
        epilog=(
            "status in marks.csv: graded (the notebook ran; failed checks earn 0), timeout (stopped at --timeout; "
            "checks finished before count), invalid (not a notebook: empty, damaged, another file type, a link; "
            f"0 points), error (the run broke down, e.g. the submission killed the grader; re-run). Exit status: {codes}."
        ),
    )
    parser.add_argument("submissions", nargs="*", metavar="SUBMISSION.ipynb", help="submitted notebooks")
    parser.add_argument("--reference", metavar="REF.ipynb", help="the executed instructor notebook (required)")
    parser.add_argument("--out", metavar="marks.csv", help="where to write the marks (required)")
    parser.add_argument(
        "--feedback-dir", metavar="DIR",
        help="per-student feedback and written_answers.md (default: <out stem>_feedback beside --out)",
    )  # fmt: skip
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="notebooks graded at once (default %(default)s); each kernel then gets cores/N CPU threads",
    )
    parser.add_argument(
        "--cell-timeout", type=positive_seconds, default=None, metavar="S",
        help=f"seconds one cell may run before it is interrupted and fails (default {DEFAULT_CELL_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=positive_seconds, default=None, metavar="S",
        help=f"seconds one notebook may run, kernel start included, before it is killed (default {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--memory", type=_size, default=None, metavar="SIZE",
        help=f"memory each process of a submission may allocate, e.g. 6G (default {Limits.memory / GiB:g}G)",
    )  # fmt: skip
    parser.add_argument(
        "--no-sandbox", action="store_true",
        help="run answer code with your own rights, outside the bubblewrap sandbox (where none can be made); "
        "every row is flagged unsandboxed in the review column",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the rows of an earlier run to the same --out whose submission and reference are unchanged "
        "(rows with status error are graded again); without it, an earlier run's rows are replaced",
    )  # fmt: skip
    parser.add_argument(
        "--shard", type=_shard, default=None, metavar="K/N",
        help="grade only shard K of N: every N-th submission of the sorted list, starting with the K-th "
        "(for job arrays; join the outputs with `dpdl grade merge`)",
    )  # fmt: skip
    parser.set_defaults(func=_run, grade_parser=parser)


def _run(args: argparse.Namespace) -> int:
    if args.submissions[:1] == ["merge"] and args.reference is None and args.out is None:
        return _merge(args.submissions[1:])
    missing = [option for option in ("reference", "out") if getattr(args, option) is None]
    if missing or not args.submissions:
        what = ", ".join(f"--{option}" for option in missing) or "SUBMISSION.ipynb"
        args.grade_parser.print_usage(sys.stderr)
        print(f"dpdl grade: error: the following arguments are required: {what}", file=sys.stderr)
        return EXIT_USAGE
    return _grade(args)


def _grade(args: argparse.Namespace) -> int:
    from dpdl.grading import (
        ReferenceNotebookError,
        grade,
        load_reference,
        submission_sha256,
    )
    from dpdl.grading.batch import BatchOutput, file_sha256, shard
    from dpdl.grading.sandbox import SandboxUnavailable, require_sandbox
    from dpdl.notebooks.cells import written_cells

    try:
        reference = load_reference(args.reference)
        reference_sha256 = file_sha256(args.reference)
    except (OSError, ReferenceNotebookError) as err:
        print(f"dpdl grade: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.no_sandbox:
        print(
            "dpdl grade: warning: --no-sandbox: answer code runs with your rights and can read the reference, "
            "change other submissions and the marks; every row is flagged unsandboxed",
            file=sys.stderr,
        )
    else:
        try:
            require_sandbox()
        except SandboxUnavailable as err:
            print(f"dpdl grade: {err}", file=sys.stderr)
            return EXIT_ENVIRONMENT
    limits = Limits() if args.memory is None else Limits(memory=args.memory)
    everyone = list(dict.fromkeys(os.fspath(path) for path in args.submissions))  # a path given twice: once
    mine = shard(everyone, *args.shard) if args.shard else everyone
    out = Path(args.out)
    clash = _overwritten_input(out, args.feedback_dir, [args.reference, *everyone])
    if clash:
        print(f"dpdl grade: {clash}", file=sys.stderr)
        return EXIT_USAGE
    try:
        output = BatchOutput(
            out, submissions=mine, reference_sha256=reference_sha256, written_ids=list(written_cells(reference)),
            feedback_dir=args.feedback_dir, resume=args.resume, name_pool=everyone,
        )  # fmt: skip
    except OSError as err:
        print(f"dpdl grade: cannot write the output: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    for problem in output.problems:
        print(f"dpdl grade: {problem}", file=sys.stderr)
    outdated = [path for path in mine if path in output.records and not output.graded_with_this_reference(path)]
    todo = [path for path in mine if not output.keep_if_current(path, submission_sha256(path))]
    if args.shard:
        print(f"shard {args.shard[0]}/{args.shard[1]}: {len(mine)} of {len(everyone)} submissions")
    if outdated:
        print(f"--resume: the reference changed since {len(outdated)} row(s) were graded; they are graded again")
    if len(todo) < len(mine):
        print(f"--resume: {len(mine) - len(todo)} of {len(mine)} submissions already graded with this reference")
    progress = _Progress(len(todo))

    def finished(result) -> None:
        output.add(result)
        progress.done(result)

    previous = _terminate_as_interrupt()
    try:
        if todo:  # nothing left to grade: not even the reference needs to run
            grade(
                reference, todo, workers=args.workers,
                cell_timeout=args.cell_timeout or DEFAULT_CELL_TIMEOUT, timeout=args.timeout or DEFAULT_TIMEOUT,
                on_result=finished, sandbox=not args.no_sandbox, limits=limits,
            )  # fmt: skip
        output.finish()
    except (ModuleNotFoundError, SandboxUnavailable) as err:
        print(f"dpdl grade: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except ReferenceNotebookError as err:  # found only when the reference runs (its own checks fail)
        print(f"dpdl grade: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"dpdl grade: cannot write the output: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        progress.close()
        output.finish()  # written_answers.md with the rows done so far
        print(
            f"dpdl grade: interrupted; {len(output.rows())} of {len(mine)} rows are in {out}. "
            f"Run the same command with --resume to grade the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        progress.close()
    rows = output.rows()
    print(f"wrote {out} ({len(rows)} submissions), feedback in {output.feedback_dir}, records in {output.records_dir}")
    errors = [result.submission for result in rows if result.status == "error"]
    if errors:
        print(
            f"dpdl grade: {len(errors)} submission(s) could not be run (status error); run the same command "
            f"with --resume to grade them again: {' '.join(_printable(error) for error in errors)}",
            file=sys.stderr,
        )
        return EXIT_RERUN
    return EXIT_OK


def _merge(argv: list[str]) -> int:
    from dpdl.grading.batch import MergeError, merge_outputs

    parser = argparse.ArgumentParser(
        prog="dpdl grade merge",
        description="Join the outputs of `dpdl grade --shard K/N` runs: marks.csv, records and feedback.",
    )
    parser.add_argument("out", metavar="OUT.csv", help="the merged marks (records and feedback beside it)")
    parser.add_argument("shards", nargs="+", metavar="SHARD.csv", help="each shard's marks.csv (or its folder)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        rows = merge_outputs(args.out, args.shards)
    except MergeError as err:
        print(f"dpdl grade merge: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"dpdl grade merge: cannot write the output: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    print(f"wrote {args.out} ({len(rows)} submissions from {len(args.shards)} shards)")
    return EXIT_RERUN if any(row.status == "error" for row in rows) else EXIT_OK


class _Progress:
    """A tqdm.auto bar with ETA on stderr (off under CI or DPDL_PROGRESS=0) and one line per submission on
    stdout, with elapsed time and an estimate of what is left (for logs, where no bar is drawn)."""

    def __init__(self, total: int) -> None:
        from dpdl.progress import progress

        self.total, self.count, self.start = total, 0, time.monotonic()
        self.lock = threading.Lock()
        self.bar = progress(
            total=total, file=sys.stderr, unit="notebook", desc="grading", leave=False, dynamic_ncols=True
        )

    def done(self, result) -> None:
        with self.lock:
            self.count += 1
            elapsed = time.monotonic() - self.start
            left = elapsed / self.count * (self.total - self.count)
            detail = f" ({_printable(result.reason)})" if result.status != "graded" else ""
            line = (
                f"[{self.count}/{self.total}] {_printable(result.submission)}: {result.total}/{result.max} "
                f"{result.status}{detail} [{_clock(elapsed)} elapsed, about {_clock(left)} left]"
            )
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences in a file name) shown as escapes."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _overwritten_input(out: Path, feedback_dir: str | None, inputs: list[str]) -> str:
    """Why writing the output could overwrite one of ``inputs`` (the reference, a submission), or ''."""
    from dpdl.grading.batch import default_feedback_dir, records_dir

    written_folders = [records_dir(out), Path(feedback_dir) if feedback_dir else default_feedback_dir(out)]
    for path in inputs:
        resolved = Path(os.path.abspath(path))
        if resolved == Path(os.path.abspath(out)):
            return f"--out {out} is an input ({path}); choose another file for the marks"
        for folder in written_folders:
            if Path(os.path.abspath(folder)) in resolved.parents:
                return f"{path} lies in the output folder {folder}, whose files grading replaces; move it or choose another --out"
    return ""


def _terminate_as_interrupt():
    """Turn SIGTERM (Slurm's time limit, `kill`) into KeyboardInterrupt, so running notebooks are ended."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _shard(text: str) -> tuple[int, int]:
    from dpdl.grading.batch import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _size(text: str) -> int:
    from dpdl.grading.sandbox import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_seconds(text: str) -> float:
    """An argparse type for a time limit in seconds (also used by ``dpdl check``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds; got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {text}")
    return value
