"""Executing a notebook for commit: top to bottom in a fresh kernel, then stripped of personal clutter.

What CI's nbval compares against is exactly what this writes (DEVELOPERS.md, "Notebooks"): outputs
made with ``CI=1`` and ``DPDL_PROGRESS=0`` (no progress bars), and no widget state, Colab metadata or
timings, so that re-running a notebook changes only what really changed.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpdl.notebooks import read_notebook, write_notebook

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "KERNEL_NAME",
    "KERNELSPEC",
    "LANGUAGE_INFO",
    "PERSONAL_NOTEBOOK_METADATA",
    "PERSONAL_CELL_METADATA",
    "WIDGET_MIME",
    "RAISES_EXCEPTION_TAG",
    "NotebookExecutionError",
    "execute_notebook",
    "StubRun",
    "run_to_first_stub",
    "clean_notebook",
    "kernel_env",
    "has_nbval_marker",
]

CELL_TIMEOUT = 600  # seconds one cell may run (`dpdl notebooks run --timeout`)

KERNEL_NAME = "python3"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {"name": "python"}  # the rest (version, lexer) differs per machine and churns diffs

# Notebook-level metadata that is widget state, Colab's or an editor's, never the lab's.
PERSONAL_NOTEBOOK_METADATA = (
    "widgets",
    "colab",
    "accelerator",
    "gpuClass",
    "kaggle",
    "vscode",
    "orig_nbformat",
    "orig_nbformat_minor",
)
# Cell-level metadata written by Colab (colab, id, outputId, executionInfo), JupyterLab's and
# extensions' execution timings (execution, ExecuteTime), and editors (pycharm, vscode).
PERSONAL_CELL_METADATA = ("colab", "id", "outputId", "executionInfo", "execution", "ExecuteTime", "pycharm", "vscode")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RAISES_EXCEPTION_TAG = "raises-exception"  # nbclient, nbval and JupyterLab's "Run All" honour it
KERNEL_START_ATTEMPTS = 3  # kernels started side by side may die before their first cell (a port race)

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookExecutionError(RuntimeError):
    """A cell failed (or a cell marked to raise did not). ``cell_index`` counts all cells from 0."""

    def __init__(self, path: Path, cell_index: int | None, summary: str) -> None:
        where = f"cell {cell_index}" if cell_index is not None else "before the first cell"
        super().__init__(f"{path}, {where}: {summary}\n(the notebook file was left unchanged)")
        self.path = path
        self.cell_index = cell_index
        self.summary = summary


def execute_notebook(
    path: str | os.PathLike, *, timeout: int = CELL_TIMEOUT, env: Mapping[str, str | None] | None = None
) -> float:
    """Run the notebook at ``path`` top to bottom in a fresh ``python3`` kernel, clean it, and write it
    back atomically; returns (and prints) the wall time in seconds.

    The kernel starts in the notebook's folder with :func:`kernel_env` (``CI=1``, ``DPDL_PROGRESS=0``,
    matplotlib's inline backend) updated by ``env`` (a value of ``None`` removes a variable).
    ``timeout`` is per cell, like nbval's ``--nbval-cell-timeout``. Cells marked
    ``# NBVAL_RAISES_EXCEPTION`` (or tagged ``raises-exception``) may raise, and must; any other error
    raises :class:`NotebookExecutionError` naming the cell, and leaves the file untouched.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    path = Path(path)
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout is seconds per cell and must be positive; got {timeout}")
    nb = read_notebook(path)
    executed = copy.deepcopy(nb)
    # nbclient and Jupyter's Run All let a cell raise when it has the tag; nbval reads the comment. A
    # cell marked with the comment gets the tag for good, so students' Run All goes past it too.
    for cell in executed.cells:
        if (
            cell.cell_type == "code"
            and has_nbval_marker(cell.source, "NBVAL_RAISES_EXCEPTION")
            and RAISES_EXCEPTION_TAG not in cell.metadata.get("tags", [])
        ):
            cell.metadata.setdefault("tags", []).append(RAISES_EXCEPTION_TAG)
    for cell in executed.cells:
        if cell.cell_type == "code" and not cell.source.strip():  # nbclient skips these: no stale leftovers
            cell.outputs, cell.execution_count = [], None
    executed.metadata["kernelspec"] = dict(KERNELSPEC)

    current = {"index": None}

    def remember(cell, cell_index, **_):
        current["index"] = cell_index

    client = NotebookClient(
        executed,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent.absolute())}},
        record_timing=False,
        store_widget_state=False,
        on_cell_execute=remember,
    )
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env(env))
    except (CellControlSignal, DeadKernelError, TimeoutError) as err:
        raise NotebookExecutionError(path, current["index"], _summary(err, timeout)) from None
    seconds = time.perf_counter() - start
    for index, cell in enumerate(executed.cells):
        if cell.cell_type == "code" and RAISES_EXCEPTION_TAG in cell.metadata.get("tags", []):
            if not any(output.output_type == "error" for output in cell.get("outputs", [])):
                raise NotebookExecutionError(
                    path,
                    index,
                    "marked to raise (NBVAL_RAISES_EXCEPTION / raises-exception tag) but raised nothing; "
                    "make it raise or remove the marker",
                )
    write_notebook(clean_notebook(executed), path)
    print(f"{path}: executed in {seconds:.1f} s")
    return seconds


@dataclass(frozen=True)
class StubRun:
    """What a student's *Run All* does on a notebook: it runs until a cell raises, except cells tagged
    ``raises-exception``. In a student copy that cell should be a stub, or a check calling a stubbed
    function, raising ``NotImplementedError``: the student's first task.

    ``first_stub``: index of the first stub cell that ran (None if none did). ``stopped_at``: index of
    the untagged cell whose error stopped the run (None when it ran to the end). ``errors``: ``(cell
    index, "Name: message", tagged)`` of every cell that raised, in order. ``seconds``: the run's wall time.
    """

    path: Path
    first_stub: int | None
    stopped_at: int | None
    errors: tuple[tuple[int, str, bool], ...]
    seconds: float

    @property
    def reached_stub(self) -> bool:
        """Whether Run All stopped at the student's first task: ``NotImplementedError`` in the first stub
        cell or a later cell (a check calling a stubbed function)."""
        if self.first_stub is None or self.stopped_at is None or self.stopped_at < self.first_stub:
            return False
        return any(
            index == self.stopped_at and error.startswith("NotImplementedError") for index, error, _ in self.errors
        )

    @property
    def blocking_errors(self) -> list[tuple[int, str]]:
        """Errors that stop Run All before the first task: every untagged one, unless it is that task's."""
        return [
            (index, error)
            for index, error, tagged in self.errors
            if not tagged and not (self.reached_stub and index == self.stopped_at)
        ]


def run_to_first_stub(
    path: str | os.PathLike, *, timeout: int = CELL_TIMEOUT, env: Mapping[str, str | None] | None = None
) -> StubRun:
    """Run a notebook top to bottom in a fresh kernel as Jupyter's Run All does, stopping at the first
    cell that raises without the ``raises-exception`` tag; in a student copy, the first task.

    The kernel starts in the notebook's folder with :func:`kernel_env` updated by ``env``; ``timeout`` is
    per cell. The file is only read. Tagged cells' errors are recorded and the run goes on past them.
    """
    from nbclient import NotebookClient

    from dpdl.notebooks.build import is_stub_cell

    path = Path(path)
    errors: list[tuple[int, str, bool]] = []
    first_stub = stopped_at = None
    start = time.perf_counter()
    with ExitStack() as kernel:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            nb = read_notebook(path)
            client = NotebookClient(
                nb,
                timeout=timeout,
                kernel_name=KERNEL_NAME,
                allow_errors=True,
                record_timing=False,
                resources={"metadata": {"path": str(path.parent.absolute())}},
            )
            client.reset_execution_trackers()
            try:  # the kernel's own output is only ipykernel's start-up chatter: the cells' goes to nb
                kernel.enter_context(
                    client.setup_kernel(env=kernel_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
                break
            except RuntimeError:  # died before its first cell (a port race, DEVELOPERS.md "Tests"): again
                if attempt == KERNEL_START_ATTEMPTS:
                    raise
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            if first_stub is None and is_stub_cell(cell.source):
                first_stub = index
            raised = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
            if not raised:
                continue
            tagged = RAISES_EXCEPTION_TAG in cell.metadata.get("tags", [])
            errors.append((index, f"{raised[0].ename}: {raised[0].evalue}", tagged))
            if not tagged:  # Run All stops here
                stopped_at = index
                break
    return StubRun(path, first_stub, stopped_at, tuple(errors), time.perf_counter() - start)


def clean_notebook(nb: NotebookNode) -> NotebookNode:
    """Strip ``nb`` (in place, and returned) of widget state, Colab/editor metadata and timings; set the
    kernelspec to ``python3`` and a minimal ``language_info``; give cells ids (nbformat 4.5) when missing.

    Widget views (``application/vnd.jupyter.widget-view+json``) are removed from outputs too: without
    the stored widget state they render as nothing, and nbval never compares them.
    """
    import nbformat

    if nb.nbformat_minor < 5:
        nbformat.v4.upgrade(nb)  # adds cell ids, which the grader matches cells by
    for key in PERSONAL_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    seen_ids = set()
    for cell in nb.cells:
        if not cell.get("id") or cell.id in seen_ids:
            cell.id = _new_cell_id(seen_ids)
        seen_ids.add(cell.id)
        for key in PERSONAL_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            outputs = (_without_widget_view(output) for output in cell.get("outputs", []))
            cell.outputs = [output for output in outputs if output is not None]
    return nb


def kernel_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The kernel's environment: this process's, with ``CI=1`` and ``DPDL_PROGRESS=0`` (no progress
    bars: stable outputs) and without ``MPLBACKEND`` (so ipykernel picks the inline backend), then
    ``extra`` on top (``None`` removes a variable)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update({"CI": "1", "DPDL_PROGRESS": "0"})
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def has_nbval_marker(source: str, marker: str) -> bool:
    """Whether a cell's source carries an nbval comment marker (``# NBVAL_IGNORE_OUTPUT``...), read the
    way nbval reads it: a comment line whose text, without the ``#``, is exactly the marker."""
    return any(
        line.strip().startswith("#") and line.strip().lstrip("#").strip() == marker for line in source.splitlines()
    )


def _without_widget_view(output):
    data = output.get("data")
    if not data or WIDGET_MIME not in data:
        return output
    data.pop(WIDGET_MIME)
    return output if data else None


def _new_cell_id(taken: set[str]) -> str:
    from nbformat.corpus.words import generate_corpus_id

    while (cell_id := generate_corpus_id()) in taken:
        pass
    return cell_id


def _summary(err: BaseException, timeout: int) -> str:
    """The useful end of a kernel traceback: its last lines, without colour codes."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if isinstance(err, CellTimeoutError):
        return f"ran longer than the {timeout} s per-cell timeout; make the cell faster or pass --timeout"
    if isinstance(err, DeadKernelError):
        return f"the kernel died (out of memory or a crash in native code): {err}"
    if isinstance(err, CellExecutionError):
        lines = [line for line in _ANSI_RE.sub("", str(err)).splitlines() if line.strip()]
        return "raised an error:\n    " + "\n    ".join(lines[-8:])
    return f"{type(err).__name__}: {err}"
