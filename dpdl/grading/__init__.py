"""``dpdl grade``: mark exercise notebooks by running the reference's own checks on each student's answer cells.

A submission gives only its answer cells (``cells``); they go into a copy of the reference (``merge``),
which nbval runs in a fresh kernel (``runner``); ``marks.csv`` and feedback come out (``report``). Used
for the assessed exercise of every lab (``exercises/labN``).

What it defends against: edited, deleted or reordered cells, added cells and forged outputs in the
submitted file. What it does not: answer code runs in the same kernel as the checks, as the grading
user, so code written to subvert the checks (monkey-patching ``np.allclose`` or IPython's hooks,
writing files) is not stopped: grade untrusted work in a container or a throwaway account.
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nbformat

from dpdl.grading.cells import (
    ReferenceNotebookError,
    answer_cells,
    cell_id,
    cell_points,
    check_cells,
    validate_reference,
)
from dpdl.grading.merge import MAX_SUBMISSION_BYTES, SubmissionError, merge, parse_notebook, read_submission
from dpdl.grading.report import CheckResult, GradeResult
from dpdl.grading.runner import NbvalRun, run_nbval

__all__ = [
    "DEFAULT_CELL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "load_reference",
    "grade",
    "grade_submission",
    "ReferenceNotebookError",
    "GradeResult",
    "CheckResult",
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
) -> GradeResult:
    """Grade one submitted notebook against a validated ``reference``; never raises for a bad submission.

    The file is read once and never written. Its answer cells run with the reference's other cells, and
    each check cell earns its points when it passes under nbval. A file that is no notebook gets a row
    with status ``invalid``; a run stopped at ``timeout`` keeps the points of the checks it finished.
    ``threads`` caps the kernel's CPU threads (see :func:`~dpdl.grading.runner.run_nbval`).
    """
    checks = [CheckResult(id_, cell_points(cell), passed=False) for id_, cell in check_cells(reference).items()]
    try:
        submission = read_submission(_read_once(Path(path)), reference)
    except (SubmissionError, OSError) as err:
        reason = str(err) if isinstance(err, SubmissionError) else f"cannot read the file: {err.strerror or err}"
        for check in checks:
            check.message = "not graded: the submission could not be read"
        return GradeResult(str(path), "invalid", reason, checks)
    merged = merge(reference, submission.answers)
    try:
        run = run_nbval(merged, cell_timeout=cell_timeout, timeout=timeout, threads=threads)
    except Exception as err:  # the grader's own trouble (a full disk, say) must not stop the batch
        run = NbvalRun("error", reason=f"the grader failed: {type(err).__name__}: {err}")
    code_index = {cell_id(cell): i for i, cell in enumerate(c for c in merged.cells if c.cell_type == "code")}
    not_run = "not run: the notebook was stopped first" if run.status != "completed" else "not run"
    for check in checks:
        outcome = run.cells.get(code_index[check.id])
        check.passed = bool(outcome and outcome.passed)
        check.message = "" if check.passed else (outcome.message if outcome else not_run)
    answer_errors = {}
    for id_ in answer_cells(reference):
        outcome = run.cells.get(code_index[id_])
        if outcome is not None and not outcome.passed:
            answer_errors[id_] = outcome.message
    status = {"completed": "graded", "timeout": "timeout"}.get(run.status, "error")
    failed = [check.id for check in checks if not check.passed]
    reason = run.reason or (f"failed: {', '.join(failed)}" if failed else "")
    return GradeResult(
        str(path), status, reason, checks, answer_errors, submission.written, submission.notes, run.seconds
    )


def grade(
    reference: str | os.PathLike | Mapping[str, Any],
    submissions: Sequence[str | os.PathLike],
    *,
    workers: int = 1,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    timeout: float = DEFAULT_TIMEOUT,
    on_result: Callable[[GradeResult], None] | None = None,
) -> list[GradeResult]:
    """Grade every submission (``workers`` at a time, each in its own kernel); results in the input order.

    ``reference`` is a path or an already loaded notebook; ``on_result`` is called as each one finishes
    (from a worker thread), for progress output. With several workers the CPU cores are shared out: each
    kernel gets ``cores // workers`` threads (at least one), unless ``OMP_NUM_THREADS`` says otherwise.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    for module in ("nbval", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"grading needs {module}, which is not installed here; install the development extras: "
                f"pip install -e '.[dev]'"
            )
    if isinstance(reference, Mapping):
        validate_reference(reference)
    else:
        reference = load_reference(reference)

    threads = threads_per_kernel(workers)

    def one(path: str | os.PathLike) -> GradeResult:
        result = grade_submission(path, reference, cell_timeout=cell_timeout, timeout=timeout, threads=threads)
        if on_result is not None:
            on_result(result)
        return result

    if workers == 1:
        return [one(path) for path in submissions]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the work happens in subprocesses
        return list(pool.map(one, submissions))


def threads_per_kernel(workers: int) -> int | None:
    """CPU threads for each of ``workers`` kernels running at once: None (torch's default) for one worker."""
    if workers == 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def _read_once(path: Path) -> bytes:
    """The file's bytes, read a single time (the file is opened read-only and never touched again)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > MAX_SUBMISSION_BYTES:
            raise SubmissionError(
                f"the file is {size / 2**20:.0f} MB, over the {MAX_SUBMISSION_BYTES // 2**20} MB limit; "
                f"clear the outputs (Edit > Clear All Outputs) and submit again"
            )
        return file.read()
