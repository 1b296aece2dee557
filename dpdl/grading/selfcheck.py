"""``dpdl check NOTEBOOK``: a student checks an exercise notebook before handing it in, with no instructor files.

``dpdl grade`` takes only the answer cells of a submission (matched by ``metadata.dpdl.id``) and runs them
with the instructor's own cells and checks. This command tells the student, before the deadline, what
that will make of their file (otter-grader's ``grader.check``, nbgrader's Validate):

1. Can the file be graded? It is read with the grader's own reader
   (:func:`~dpdl.grading.merge.parse_notebook`: valid notebook JSON, the size limit), then its cells are
   looked at with :mod:`dpdl.notebooks.cells`: answer cells still marked, none duplicated or turned into
   markdown, check cells still marked with their points, written answers still in markdown, and code
   written outside the answer cells, which the grader never runs.
2. Do the visible checks pass? The notebook runs top to bottom in a fresh kernel (nbclient) in an empty
   temporary directory, going on after errors, each cell under a time limit. A check passes when its cell
   runs without raising: the grader's rule too (its printed output never matters). Code cells that the
   student added are skipped, since the grader skips them, so a check that needs them fails here as it
   would there.

The instructor's hidden checks are not in the student's copy: the points printed are the visible ones,
and the command says that hidden checks will also run. The file is read once and never written.

Exit status (:data:`PASSED`, :data:`FAILED`, :data:`CANNOT_GRADE`): 0 when every visible check passed and
nothing in the file changes how it is graded; 1 otherwise; 2 when the file cannot be graded or checked.

Cheap to import (``dpdl --help`` loads it): nbclient and the kernel are imported only to run a notebook.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dpdl.grading import submission_bytes
from dpdl.grading.cli import positive_seconds
from dpdl.grading.kernels import KERNEL_START_ATTEMPTS, KERNEL_START_FAILURES
from dpdl.grading.merge import SubmissionError, parse_notebook
from dpdl.grading.recorder import exception_line  # the grader's own wording
from dpdl.grading.report import CheckResult
from dpdl.notebooks.cells import (
    ANSWER_PLACEHOLDER,
    METADATA_KEY,
    STUB_COMMENT,
    cell_id,
    cell_points,
    cell_role,
    cell_source,
)
from dpdl.notebooks.run import KERNEL_NAME, has_nbval_marker, kernel_env

__all__ = [
    "PASSED",
    "FAILED",
    "CANNOT_GRADE",
    "DEFAULT_CELL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "NotebookReview",
    "CheckRun",
    "review_notebook",
    "run_checks",
    "check_notebook",
    "register",
]

PASSED, FAILED, CANNOT_GRADE = 0, 1, 2
DEFAULT_CELL_TIMEOUT = 120.0  # seconds per cell, as `dpdl grade`
DEFAULT_TIMEOUT = 600.0  # seconds for the whole notebook, as `dpdl grade`
HIDDEN_CHECKS_NOTE = (
    "When your notebook is graded, the instructor's hidden checks also run: they test your functions on "
    "inputs you have not seen, so these points are not yet your mark."
)
ADDED_CODE_ADVICE = "this code will not be graded; move it into an answer cell"

# The exercise's own cells have nbformat ids `<stem>-<number>` (`ex1-07`); Jupyter gives a new cell a
# random id, so a code cell without a dpdl role whose id breaks that pattern was added by the student.
_OWN_CELL_ID = re.compile(r"^(?P<stem>.+)-\d+$")
_CHECK_COMMENT = re.compile(r"^\s*#\s*Check\b")


@dataclass
class NotebookReview:
    """What reading a notebook (without running it) says about how it will be graded.

    ``errors``: the file cannot be graded. ``problems``: it will be graded differently from what the
    student sees (an answer cell lost, a check no longer marked); each says how to fix it. ``warnings``:
    worth knowing, no effect on the exit status. Cell numbers count every cell from 1, as a student
    scrolling the notebook would.
    """

    nb: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # answer ids, notebook order
    checks: dict[int, tuple[str, int]] = field(default_factory=dict)  # cell index -> (check id, points)
    written: list[str] = field(default_factory=list)  # written ids, notebook order
    empty_written: list[str] = field(default_factory=list)  # written ids still blank or holding the placeholder
    added_code: list[int] = field(default_factory=list)  # cell indices of code the grader ignores
    ids_known: bool = True  # False when the cell ids are gone and added code cannot be told apart

    @property
    def max_points(self) -> int:
        return sum(points for _, points in self.checks.values())


@dataclass
class CheckRun:
    """The outcome of running a notebook: ``status`` is ``completed``, ``timeout`` or ``kernel died``."""

    status: str
    checks: list[CheckResult]
    cell_errors: dict[int, str] = field(default_factory=dict)  # cell index -> why that (non-check) cell raised
    seconds: float = 0.0


def review_notebook(data: bytes) -> NotebookReview:
    """Read a notebook's bytes the way the grader does and list what would change or stop its grading."""
    try:
        nb = parse_notebook(data)
    except SubmissionError as err:
        return NotebookReview(None, errors=[f"this file cannot be graded: {err}"])
    review = NotebookReview(nb)
    cells = [cell for cell in nb["cells"] if isinstance(cell, dict)]
    if len(cells) != len(nb["cells"]):
        review.errors.append("the notebook is damaged: some cells are not JSON objects; download it again from Jupyter")
        return review
    stems = _own_id_stems(cells)
    review.ids_known = bool(stems)
    seen: dict[str, int] = {}
    for index, cell in enumerate(cells):
        where = f"cell {index + 1}"
        kind, source, id_, role = cell.get("cell_type"), cell_source(cell), cell_id(cell), cell_role(cell)
        metadata = cell.get("metadata")
        if isinstance(metadata, Mapping) and METADATA_KEY in metadata and (id_ is None or role is None):
            review.problems.append(
                f"{where} ({_first_line(source)}): its metadata.{METADATA_KEY} is damaged "
                f"({metadata[METADATA_KEY]!r}), so the grader cannot recognise it; undo the change, or copy "
                f"the cell from a fresh copy of the exercise"
            )
            continue
        if role is None:
            if kind == "code" and source.strip():
                if STUB_COMMENT in source:
                    review.problems.append(
                        f"{where} ({_first_line(source)}) looks like an answer cell (it holds `{STUB_COMMENT}`) but "
                        f"has no answer id in metadata.{METADATA_KEY}, so the grader will not take it; undo the "
                        f"change, or paste your code into the answer cell of a fresh copy of the exercise"
                    )
                elif _CHECK_COMMENT.match(source):
                    review.warnings.append(
                        f"{where} ({_first_line(source)}) looks like a check cell that lost its "
                        f"metadata.{METADATA_KEY}; dpdl check cannot count it (the grader runs the original check)"
                    )
                elif stems and not _is_own_cell(cell, stems):
                    review.added_code.append(index)
                    review.warnings.append(
                        f"{where} ({_first_line(source)}) is code outside the answer cells: {ADDED_CODE_ADVICE}. "
                        f"dpdl check skips it, as the grader does."
                    )
            continue
        if id_ in seen:
            review.problems.append(_duplicate(role, id_, seen[id_], index))
            continue
        seen[id_] = index
        if role == "answer":
            if kind != "code":
                review.problems.append(
                    f"{where}: answer cell `{id_}` has been turned into a {kind} cell, so the grader treats it as "
                    f"unanswered; make it a code cell again (in Jupyter: select it, press Esc then Y)"
                )
            else:
                review.answers.append(id_)
        elif role == "check":
            points = cell_points(cell)
            if kind != "code" or not points:
                review.problems.append(
                    f"{where}: check cell `{id_}` was changed (it must be a code cell with positive points in "
                    f"metadata.{METADATA_KEY}); dpdl check cannot count it. The grader runs the original "
                    f"check; copy this cell back from a fresh copy of the exercise"
                )
            else:
                review.checks[index] = (id_, points)
        elif role == "written":
            review.written.append(id_)
            if kind != "markdown":
                review.problems.append(
                    f"{where}: written answer `{id_}` has been turned into a {kind} cell; the grader reads written "
                    f"answers from markdown cells only: make it markdown again (Esc then M)"
                )
            elif ANSWER_PLACEHOLDER in source or not source.strip():
                review.empty_written.append(id_)
    if not review.answers and not review.checks:
        review.errors.append(
            f"no cell is marked as an answer or a check (metadata.{METADATA_KEY}): this is not an exercise "
            f"notebook, or its cells were copied into a new one. Work in the exercise's own notebook "
            f"(exercises/labN/student/labN_exercise.ipynb) and paste your answers into its answer cells"
        )
    elif not review.answers:
        review.errors.append(
            "no answer cell is left: the grader takes only the answer cells, so this notebook would score 0. "
            "Start again from a fresh copy of the exercise and paste your code into its answer cells"
        )
    return review


def run_checks(
    nb: Mapping[str, Any],
    review: NotebookReview,
    *,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    on_check: Callable[[int, CheckResult], None] | None = None,
) -> CheckRun:
    """Run ``nb``'s code cells top to bottom in a fresh kernel, in an empty temporary directory.

    Cells in ``review.added_code`` and cells marked ``# NBVAL_SKIP`` (nbval skips them when grading) are
    not run. Errors do not stop the run; a cell that runs past ``cell_timeout`` seconds is interrupted,
    and cells still waiting when ``timeout`` seconds have passed are not run. A check passes when its cell
    raised nothing. ``on_check(position, result)`` is called as each check finishes (position from 1).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    start = time.monotonic()
    deadline = start + timeout
    cells = nb["cells"]
    skip = set(review.added_code)
    to_run = [
        index for index, cell in enumerate(cells)
        if cell.get("cell_type") == "code" and index not in skip
        and (index in review.checks or not _skipped_by_nbval(cell))
    ]  # fmt: skip
    runnable = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(cell_source(cells[index])) for index in to_run],
        metadata={"kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}},
    )
    replies: dict[int, Mapping[str, Any]] = {}

    def remember(cell: Any, cell_index: int, execute_reply: Mapping[str, Any], **_: Any) -> None:
        replies[cell_index] = execute_reply.get("content", {}) if execute_reply else {}

    work = Path(tempfile.mkdtemp(prefix="dpdl-check-"))

    def new_client() -> NotebookClient:
        return NotebookClient(
            runnable,
            timeout=cell_timeout,
            timeout_func=lambda cell: max(1.0, min(cell_timeout, deadline - time.monotonic())),
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": "TimeoutError",
                "evalue": f"the cell ran past its time limit ({cell_timeout:g} s a cell, --cell-timeout; "
                f"{timeout:g} s in all, --timeout) and was interrupted",
                "traceback": [],
            },
            allow_errors=True,
            kernel_name=KERNEL_NAME,
            record_timing=False,
            on_cell_executed=remember,
            resources={"metadata": {"path": str(work)}},
        )

    results: dict[int, CheckResult] = {
        index: CheckResult(id_, points, passed=False, message="not run")
        for index, (id_, points) in review.checks.items()
    }
    position = {index: n for n, index in enumerate(review.checks, start=1)}
    cell_errors: dict[int, str] = {}

    def run_all(client: NotebookClient) -> tuple[str, str]:
        """Run the cells in a started kernel; (status, why the remaining checks were not run)."""
        for run_index, index in enumerate(to_run):
            if time.monotonic() > deadline:
                return "timeout", f"not run: the notebook ran past the {timeout:g} s limit (--timeout)"
            try:
                client.execute_cell(runnable.cells[run_index], run_index)
            except DeadKernelError:
                return "kernel died", "not run: the kernel died in an earlier cell (out of memory, a crash, or exit())"
            reply = replies.get(run_index, {})
            message = exception_line(reply) if reply.get("status") == "error" else ""
            if index in results:
                result = results[index]
                result.passed, result.message = not message, message
                if on_check is not None:
                    on_check(position[index], result)
            elif message:
                cell_errors[index] = message
        return "completed", ""

    # The kernel's own stdout/stderr (not the cells' output) only carries ipykernel's start-up warnings.
    start_options = {"env": kernel_env({"PYTHONHASHSEED": "0"}), "cwd": str(work)}
    start_options.update(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            client, started = new_client(), False
            try:
                with client.setup_kernel(**start_options):
                    started = True
                    status, stop_reason = run_all(client)
            except RuntimeError as err:  # a kernel that died before its first cell: start another (see runner)
                if started or attempt == KERNEL_START_ATTEMPTS or not str(err).startswith(KERNEL_START_FAILURES):
                    raise
                continue
            break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for index, result in results.items():
        if result.message == "not run" and stop_reason:
            result.message = stop_reason
            if on_check is not None:
                on_check(position[index], result)
    return CheckRun(status, list(results.values()), cell_errors, time.monotonic() - start)


def check_notebook(
    path: str | os.PathLike,
    *,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO | None = None,
) -> int:
    """``dpdl check``: review and run the notebook at ``path``, print what the student needs, return the exit status."""
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    path = Path(path)
    try:
        data = submission_bytes(path)
    except SubmissionError as err:
        say(f"{path}: this file cannot be graded: {err}")
        return CANNOT_GRADE
    except OSError as err:
        say(f"{path}: cannot read the file: {err.strerror or err}")
        return CANNOT_GRADE
    review = review_notebook(data)
    say(f"dpdl check {path}")
    if review.errors:
        for error in review.errors:
            say(f"error: {error}")
        say("Nothing was run. Fix the above and run dpdl check again.")
        return CANNOT_GRADE
    say(
        f"{_count(len(review.answers), 'answer cell')}, {_count(len(review.checks), 'visible check')} worth "
        f"{review.max_points} points, {_count(len(review.written), 'written answer')}."
    )
    for problem in review.problems:
        say(f"problem: {problem}")
    for warning in review.warnings:
        say(f"warning: {warning}")
    if not review.ids_known:
        say(
            "note: this notebook has lost its cell ids (some editors drop them), so dpdl check cannot tell code you "
            "added outside the answer cells from the exercise's own: the grader runs only your answer cells."
        )
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
    except ImportError as err:
        say(
            f"error: running the notebook needs the Python package {err.name!r} (part of Jupyter); install it "
            f"with: pip install nbclient ipykernel"
        )
        return CANNOT_GRADE
    say(f"Running the notebook in a fresh kernel (at most {cell_timeout:g} s a cell)...")
    total = len(review.checks)

    def progress(position: int, result: CheckResult) -> None:
        verdict = f"passed ({_count(result.max_points, 'point')})" if result.passed else f"failed: {result.message}"
        say(f"[{position}/{total}] {result.id} ... {verdict}")

    try:
        run = run_checks(review.nb, review, cell_timeout=cell_timeout, timeout=timeout, on_check=progress)
    except Exception as err:  # no kernel could be started (no python3 kernel, one that keeps dying)
        say(f"error: could not run the notebook: {type(err).__name__}: {err}")
        say("Check that Jupyter works here (python -m ipykernel install --user installs a python3 kernel).")
        return CANNOT_GRADE
    say()
    score = sum(check.points for check in run.checks)
    say(f"Autograded points so far: {score}/{review.max_points} (visible checks only; ran in {run.seconds:.0f} s)")
    say(HIDDEN_CHECKS_NOTE)
    all_passed = bool(run.checks) and all(check.passed for check in run.checks)
    if run.cell_errors and not all_passed:
        say("Other cells that raised an error (a check after them can fail because of it):")
        for index, message in run.cell_errors.items():
            cell = review.nb["cells"][index]
            name = f"answer cell `{cell_id(cell)}`" if cell_role(cell) == "answer" else "a cell"
            say(f"  cell {index + 1}, {name} {_first_line(cell_source(cell))}: {message}")
    if review.empty_written:
        say(
            f"Written answers still empty: {', '.join(review.empty_written)} (replace {ANSWER_PLACEHOLDER} with your answer)"
        )
    elif review.written:
        say("Every written answer has text (they are marked by hand).")
    if review.problems:
        say("The problems listed above change how this notebook is graded: fix them.")
    return PASSED if all_passed and not review.problems else FAILED


def register(subparsers: Any) -> None:
    """Add ``dpdl check`` (called by ``dpdl/cli.py``)."""
    parser = subparsers.add_parser(
        "check",
        help="check an exercise notebook before handing it in (runs its visible checks)",
        description=(
            "Check an exercise notebook the way the grader will read it, then run it top to bottom in a fresh\n"
            "kernel and report each visible check: passed, or failed with its message. A check passes when its\n"
            "cell runs without raising an error; what it prints does not matter. Only your answer cells are\n"
            "graded: code you add in other cells is not run, here or by the grader. The instructor's hidden\n"
            "checks run only when your work is graded. The notebook file is only read, never changed."
        ),
        epilog=(
            "exit status:\n"
            "  0  every visible check passed, and nothing in the file changes how it is graded\n"
            "  1  a visible check failed or did not run, or a 'problem:' line says the grader will read the file\n"
            "     differently from what you see\n"
            "  2  the file cannot be graded (not a notebook, damaged, too large, no answer cells), or it could\n"
            "     not be run here (nbclient or ipykernel missing)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebook", metavar="NOTEBOOK.ipynb", help="your exercise notebook")
    parser.add_argument(
        "--cell-timeout", type=positive_seconds, default=DEFAULT_CELL_TIMEOUT, metavar="S",
        help=f"seconds one cell may run before it is interrupted and fails (default {DEFAULT_CELL_TIMEOUT:g}, as the grader)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="S",
        help=f"seconds for the whole notebook; cells not reached by then fail (default {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return check_notebook(args.notebook, cell_timeout=args.cell_timeout, timeout=args.timeout)


def _own_id_stems(cells: Sequence[Mapping[str, Any]]) -> set[str]:
    """Stems (``ex1`` of ``ex1-07``) of the nbformat ids of cells carrying a dpdl role: the exercise's own.

    Empty when those cells have no such ids (an editor that drops cell ids): added code cannot be told
    apart then.
    """
    stems = set()
    for cell in cells:
        match = _OWN_CELL_ID.match(str(cell.get("id") or ""))
        if match and cell_role(cell) is not None:
            stems.add(match.group("stem"))
    return stems


def _is_own_cell(cell: Mapping[str, Any], stems: set[str]) -> bool:
    match = _OWN_CELL_ID.match(str(cell.get("id") or ""))
    return bool(match and match.group("stem") in stems)


def _skipped_by_nbval(cell: Mapping[str, Any]) -> bool:
    tags = cell.get("metadata", {}).get("tags", []) if isinstance(cell.get("metadata"), Mapping) else []
    return has_nbval_marker(cell_source(cell), "NBVAL_SKIP") or "nbval-skip" in tags


def _duplicate(role: str, id_: str, first: int, index: int) -> str:
    if role == "answer":
        consequence = "the grader runs the copies one after another, in the first one's place; delete the extra copy"
    elif role == "check":
        consequence = "the grader runs the original check once; delete the copy"
    else:
        consequence = "the grader reads only the first; delete the copy"
    return f"cell {index + 1}: {role} cell `{id_}` appears again (first as cell {first + 1}): {consequence}"


def _first_line(source: str) -> str:
    lines = (line.strip() for line in source.splitlines())
    line = next((line for line in lines if line and not line.startswith("# NBVAL_")), "")
    return f"starting `{line[:60]}{'…' if len(line) > 60 else ''}`"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
