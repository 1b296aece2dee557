"""``dpdl grade``: mark exercise notebooks by running the reference's own checks on each student's answer cells.

A submission gives only its answer cells (``cells``); they go into a copy of the reference (``merge``),
which nbval runs in a fresh kernel (``runner``); ``marks.csv`` and feedback come out (``report``). Used
for the assessed exercise of every lab (``exercises/labN``).

A check cell earns its points when it runs to the end without raising. A hidden check (never in the
student's copy) also has to record the same values as the reference did for the same unseen inputs,
compared here, outside the kernel (``verdict``): the reference is run once per batch to learn them.

What it defends against: edited, deleted or reordered cells, added cells and forged outputs in the
submitted file; and, with the kernel in a bubblewrap sandbox per submission (``sandbox``, on by
default), answer code that reads the reference or other submissions, writes anywhere that outlives its
run, signals the grader or a neighbouring kernel, uses the network or leaves processes behind. Answer
code still runs in the same kernel as the checks: code that subverts in-kernel asserts (patching
``np.allclose`` or IPython's hooks) is made evident by the guard (``guard``: the check fails and the row
is flagged for review) and by the static scan (``scan``), and cannot turn a hidden check's wrong values
into a pass (``verdict``). What it does not stop: feedback messages carry text that answer code chose,
so a cell running after a hidden check can copy that check's source into the student's feedback; hidden
inputs are fixed per exercise, so the next cohort must not see this year's feedback verbatim.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpdl.grading.guard import guard_failures
from dpdl.grading.merge import MAX_SUBMISSION_BYTES, SubmissionError, merge, parse_notebook, read_submission
from dpdl.grading.report import CheckResult, GradeResult
from dpdl.grading.runner import NbvalRun, run_nbval
from dpdl.grading.sandbox import Limits, SandboxUnavailable, require_sandbox
from dpdl.grading.scan import scan_answers
from dpdl.grading.verdict import Record, expected_by_check, judge, parse_records
from dpdl.notebooks.cells import (
    ReferenceNotebookError,
    answer_cells,
    cell_id,
    cell_points,
    cell_role,
    cell_source,
    graded_cells,
    hidden_cells,
    validate_reference,
)

if TYPE_CHECKING:
    import nbformat

__all__ = [
    "DEFAULT_CELL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "load_reference",
    "reference_values",
    "grade",
    "grade_submission",
    "ReferenceNotebookError",
    "GradeResult",
    "CheckResult",
    "Limits",
    "SandboxUnavailable",
]

DEFAULT_CELL_TIMEOUT = 120.0  # seconds per cell; an exercise notebook runs in under 2 minutes in total
DEFAULT_TIMEOUT = 600.0  # seconds per notebook, kernel start included


def load_reference(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read and validate the instructor's reference notebook (executed, with ``dpdl`` cell metadata).

    Raises FileNotFoundError when there is no such file and :class:`ReferenceNotebookError` when it
    cannot be graded against, listing every problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference notebook not found: {path}")
    try:
        import nbformat  # here: `dpdl --help` imports this package and must stay quick

        nb = nbformat.from_dict(parse_notebook(path.read_bytes()))
    except SubmissionError as err:
        raise ReferenceNotebookError([f"{path}: {err}"]) from None
    validate_reference(nb)
    return nb


def grade_submission(
    path: str | os.PathLike,
    reference: Mapping[str, Any],
    *,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    threads: int | None = None,
    expected: Mapping[str, Mapping[str, Record]] | None = None,
    sandbox: bool = True,
    limits: Limits | None = None,
) -> GradeResult:
    """Grade one submitted notebook against a validated ``reference``; never raises for a bad submission.

    The file is read once and never written. Its answer cells run with the reference's other cells, and
    each check cell earns its points when it runs without raising; a hidden check also needs the values
    it records to match ``expected`` (from :func:`reference_values`, computed here when not given). A
    file that is no notebook gets a row with status ``invalid``; a run stopped at ``timeout`` keeps the
    points of the checks it finished. ``threads`` caps the kernel's CPU threads (see
    :func:`~dpdl.grading.runner.run_nbval`).
    The kernel runs in a bubblewrap sandbox with ``limits`` unless ``sandbox`` is False (the row is then
    flagged ``unsandboxed`` for review).
    """
    hidden = hidden_cells(reference)
    if expected is None and hidden:
        expected = reference_values(
            reference, cell_timeout=cell_timeout, timeout=timeout, threads=threads, sandbox=sandbox, limits=limits
        )
    checks = [
        CheckResult(id_, cell_points(cell), passed=False, hidden=cell_role(cell) == "hidden")
        for id_, cell in graded_cells(reference).items()
    ]
    try:
        submission = read_submission(submission_bytes(path), reference)
        merged = merge(reference, submission.answers)
    except Exception as err:  # whatever a file does to the reader, it gets a row and the batch goes on
        reason = _unreadable_reason(err)
        for check in checks:
            check.message = "not graded: the submission could not be read"
        return GradeResult(str(path), "invalid", reason, checks, sandboxed=sandbox)
    try:
        run = run_nbval(
            merged, cell_timeout=cell_timeout, timeout=timeout, threads=threads, values=bool(hidden), sandbox=sandbox,
            limits=limits,
        )  # fmt: skip
    except Exception as err:  # the grader's own trouble (a full disk, say) must not stop the batch
        run = NbvalRun("error", reason=f"the grader failed: {type(err).__name__}: {err}")
    code_index = _code_cell_index(merged)
    recorded, _ = parse_records(run.values)
    not_run = "not run: the notebook was stopped first" if run.status != "completed" else "not run"
    for check in checks:
        outcome = run.cells.get(code_index[check.id])
        check.passed = bool(outcome and outcome.passed)
        check.message = "" if check.passed else (outcome.message if outcome else not_run)
        if check.passed and check.hidden:
            difference = judge(check.id, (expected or {}).get(check.id, {}), recorded)
            check.passed = difference is None
            check.message = "" if check.passed else f"its values do not match the reference's: {difference}"
    review = scan_answers(submission.answers)
    for message, ids in _by_message(guard_failures(merged, run.cells)).items():
        for check in checks:
            if check.id in ids:  # a check that failed anyway keeps its own reason first
                check.message = message if check.passed else f"{check.message}; {message}"
                check.passed = False
        review.append(f"{', '.join(ids)}: {message}")
    answer_errors = {}
    for id_ in answer_cells(reference):
        outcome = run.cells.get(code_index[id_])
        if outcome is not None and not outcome.passed:
            answer_errors[id_] = outcome.message
    status = {"completed": "graded", "timeout": "timeout"}.get(run.status, "error")
    failed = [check.id for check in checks if not check.passed]
    reason = run.reason or (f"failed: {', '.join(failed)}" if failed else "")
    return GradeResult(
        str(path), status, reason, checks, answer_errors, submission.written, submission.notes, run.seconds,
        review=review, sandboxed=sandbox,
    )  # fmt: skip


def _by_message(failures: Mapping[str, str]) -> dict[str, list[str]]:
    """The guard's failures grouped by message: one tamper usually fails every check after it alike."""
    grouped: dict[str, list[str]] = {}
    for check_id, message in failures.items():
        grouped.setdefault(message, []).append(check_id)
    return grouped


def reference_values(
    reference: Mapping[str, Any],
    *,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    threads: int | None = None,
    sandbox: bool = True,
    limits: Limits | None = None,
) -> dict[str, dict[str, Record]]:
    """Run the reference with its own solutions once, and return what its hidden checks record:
    ``{hidden check id: {name: record}}``, the values every submission's hidden checks must match.

    Raises :class:`ReferenceNotebookError` when the reference fails one of its own checks, or a hidden
    check records nothing (it would be judged by in-kernel asserts alone) or repeats a name.
    """
    hidden = hidden_cells(reference)
    if not hidden:
        return {}
    solutions = {id_: cell_source(cell) for id_, cell in answer_cells(reference).items()}
    merged = merge(reference, solutions)
    run = run_nbval(
        merged, cell_timeout=cell_timeout, timeout=timeout, threads=threads, values=True, sandbox=sandbox,
        limits=limits,
    )  # fmt: skip
    code_index = _code_cell_index(merged)
    problems = []
    for id_ in graded_cells(reference):
        outcome = run.cells.get(code_index[id_])
        if outcome is None or not outcome.passed:
            why = outcome.message if outcome else (run.reason or "not run")
            problems.append(f"the reference's own check {id_!r} does not pass when run: {why}")
    records, bad = parse_records(run.values)
    try:
        expected = expected_by_check(records)
    except ValueError as err:
        problems.append(str(err))
        expected = {}
    for id_ in sorted(set(expected) - set(hidden)):
        problems.append(f"values are recorded for {id_!r}, which is not a hidden check's id")
    for id_ in hidden:
        if id_ not in expected and not problems:
            problems.append(
                f"hidden check {id_!r} records no values; call dpdl.grading.verdict.record({id_!r}, name, value) "
                f"on what it computes from the student's functions"
            )
    if bad:
        problems.append(f"{bad} recorded line(s) could not be read back")
    if problems:
        raise ReferenceNotebookError(problems)
    return expected


def grade(
    reference: str | os.PathLike | Mapping[str, Any],
    submissions: Sequence[str | os.PathLike],
    *,
    workers: int = 1,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    on_result: Callable[[GradeResult], None] | None = None,
    sandbox: bool = True,
    limits: Limits | None = None,
) -> list[GradeResult]:
    """Grade every submission (``workers`` at a time, each in its own kernel); results in the input order.

    ``reference`` is a path or an already loaded notebook; ``on_result`` is called as each one finishes
    (from a worker thread, one call at a time per worker), to write it out at once (`dpdl grade`). Each
    result carries the sha256 of the submission's bytes. No submission stops the batch: whatever it raises
    gives its own row (``invalid`` for a file that cannot be read, ``error`` for a run that broke down). On
    an interrupt (Ctrl-C, or SIGTERM turned into one by the caller) the running notebooks are killed and no
    further ``on_result`` call is made. With several workers the CPU cores are shared out: each kernel gets
    ``cores // workers`` threads (at least one), unless ``OMP_NUM_THREADS`` says otherwise. The reference
    runs once, before the first submission that can run, to learn its hidden checks' values; a reference
    that fails its own checks raises :class:`ReferenceNotebookError` and stops the batch. Each kernel runs
    in a sandbox of its own with ``limits``; where none can be made, this raises
    :class:`SandboxUnavailable` (saying why and how to fix it) before grading anything, unless ``sandbox``
    is False.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    for module in ("nbval", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"grading needs {module}, which is not installed here; install the development extras: "
                f"pip install -e '.[dev]'"
            )
    if sandbox:
        require_sandbox()
    if isinstance(reference, Mapping):
        validate_reference(reference)
    else:
        reference = load_reference(reference)

    threads = threads_per_kernel(workers)
    stopping = threading.Event()
    learnt: list[Any] = []  # the reference's hidden-check values, or the error that running it raised
    learning = threading.Lock()

    def expected_for(path: str | os.PathLike) -> Mapping[str, Mapping[str, Record]] | None:
        """The reference's values (it runs once, when the first submission that can run needs them), or
        None for a file that is refused while being read: a batch of such files starts no kernel."""
        try:
            read_submission(submission_bytes(path), reference)
        except Exception:
            return None
        with learning:
            if not learnt:
                try:
                    learnt.append(
                        reference_values(
                            reference,
                            cell_timeout=cell_timeout,
                            timeout=timeout,
                            threads=threads,
                            sandbox=sandbox,
                            limits=limits,
                        )
                    )
                except Exception as err:  # a reference that fails its own checks stops the batch, in every worker
                    learnt.append(err)
        if isinstance(learnt[0], Exception):
            raise learnt[0]
        return learnt[0]

    def one(path: str | os.PathLike) -> GradeResult:
        if stopping.is_set():
            return GradeResult(str(path), "error", "not graded: the batch was interrupted")
        sha256 = submission_sha256(path)
        expected = expected_for(path)
        try:
            result = grade_submission(
                path,
                reference,
                cell_timeout=cell_timeout,
                timeout=timeout,
                threads=threads,
                expected=expected or {},
                sandbox=sandbox,
                limits=limits,
            )
            if expected is None and result.status != "invalid":  # unreadable a moment ago: hidden checks unjudged
                reason = "the file changed while it was being graded; grade it again (--resume)"
                checks = [replace(c, passed=False) for c in result.checks]
                result = GradeResult(str(path), "error", reason, checks, sandboxed=sandbox)
        except Exception as err:  # a bug of the grader's own, met on this submission only: the batch goes on
            checks = [
                CheckResult(id_, cell_points(cell), passed=False) for id_, cell in graded_cells(reference).items()
            ]
            reason = f"the grader failed: {type(err).__name__}: {str(err)[:300]}"
            result = GradeResult(str(path), "error", reason, checks, sandboxed=sandbox)
        result.submission_sha256 = sha256
        if on_result is not None and not stopping.is_set():
            on_result(result)
        return result

    if workers == 1:
        return [one(path) for path in submissions]  # an interrupt reaches run_nbval, which ends its processes
    pool = ThreadPoolExecutor(max_workers=workers)  # the work happens in subprocesses
    futures = [pool.submit(one, path) for path in submissions]
    try:
        results = [future.result() for future in futures]
    except BaseException:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        _end_grading_processes()
        raise
    pool.shutdown()
    return results


def _end_grading_processes() -> None:
    """Kill this process's grading subprocesses (those that carry the runner's run token) and their children."""
    try:
        import psutil
    except ImportError:
        return
    from dpdl.grading.runner import RUN_TOKEN_ENV

    for child in psutil.Process().children(recursive=True):
        try:
            if RUN_TOKEN_ENV in child.environ():
                child.kill()
        except psutil.Error:
            continue


def threads_per_kernel(workers: int) -> int | None:
    """CPU threads for each of ``workers`` kernels running at once: None (torch's default) for one worker."""
    if workers == 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def _code_cell_index(nb: Mapping[str, Any]) -> dict[str | None, int]:
    """``{dpdl id: index among code cells}``: nbval numbers cells that way."""
    code = [cell for cell in nb["cells"] if cell.get("cell_type") == "code"]
    return {cell_id(cell): index for index, cell in enumerate(code)}


def submission_bytes(path: str | os.PathLike) -> bytes:
    """A submitted file's bytes, read once, defensively; raises :class:`SubmissionError` saying why not.

    Only a regular file is read: a symbolic link (to the reference, to ``/etc/passwd``), a named pipe (which
    would block the batch), a device or a directory is refused before it is opened. The file is opened
    without following links and without blocking, checked again on the open descriptor (it cannot be swapped
    in between), and at most the size limit plus one byte is read, whatever size it claims. It is never
    written. ``OSError`` (no such file, no permission) is passed on.
    """
    path = os.fspath(path)
    before = os.lstat(path)
    kind = _not_regular(before.st_mode)
    if kind:
        raise SubmissionError(f"not a notebook: the submission is {kind}; submit the .ipynb file itself")
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))  # POSIX only
    with os.fdopen(descriptor, "rb", buffering=0) as file:
        opened = os.fstat(descriptor)
        if _not_regular(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise SubmissionError("the submission was replaced while it was being read; submit it again")
        chunks, left = [], MAX_SUBMISSION_BYTES + 1
        while left > 0:
            chunk = file.read(min(left, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    data = b"".join(chunks)
    if len(data) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(
            f"the file is over the {MAX_SUBMISSION_BYTES // 2**20} MB limit; "
            f"clear the outputs (Edit > Clear All Outputs) and submit again"
        )
    return data


def submission_sha256(path: str | os.PathLike) -> str:
    """The sha256 of what :func:`submission_bytes` reads, or ``""`` for a file it refuses or cannot read."""
    try:
        return hashlib.sha256(submission_bytes(path)).hexdigest()
    except (SubmissionError, OSError):
        return ""


def _unreadable_reason(err: Exception) -> str:
    """The ``invalid`` row's reason for a submission that reading or parsing raised ``err`` on."""
    if isinstance(err, SubmissionError):
        return str(err)
    if isinstance(err, OSError):
        return f"cannot read the file: {err.strerror or err}"
    return f"the notebook could not be read ({type(err).__name__}: {str(err)[:200]})"


def _not_regular(mode: int) -> str:
    """What a file of ``mode`` is when it is not a regular file (``''`` for a regular file)."""
    kinds = [
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    if stat.S_ISREG(mode):
        return ""
    return next((name for test, name in kinds if test(mode)), "not a regular file")
