"""Run one notebook through nbval in a fresh kernel and say, per code cell, whether it passed and why not.

This module is the process control: nbval runs in a subprocess (``python -m pytest --nbval`` with the
recorder plugin of :mod:`dpdl.grading.recorder`), as the grader, under a wall-clock limit that kills the
whole process tree (`dpdl grade`). By default only the kernel runs inside a bubblewrap sandbox
(``sandbox``), reached over jupyter_client's ``ipc`` transport through a directory shared with that
sandbox alone: the notebook, nbval and the recorder's result file stay out of the submission's reach.

The subprocess imports the recorder and :mod:`dpdl.grading.kernels` (standard library only) without
running the ``dpdl`` and ``dpdl.grading`` package ``__init__`` files, which would import torch and
nbformat for nothing: ``_BOOTSTRAP`` registers the two packages by their folders alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpdl.grading.recorder import ANSI, SANDBOX_SPEC_ENV, truncate
from dpdl.grading.verdict import MAX_VALUES_BYTES, VALUES_ENV

if TYPE_CHECKING:
    from dpdl.grading.sandbox import Limits

__all__ = [
    "CellOutcome",
    "NbvalRun",
    "run_nbval",
    "RUN_TOKEN_ENV",
]

# Every process of a grading run inherits this variable, so that strays can be found and ended.
RUN_TOKEN_ENV = "DPDL_GRADE_RUN"
_RESULTS_BYTES = 8 * 2**20  # at most this much of the recorder's file is read back
_LOG_TAIL_BYTES = 4000
# The subprocess imports the recorder (and the kernel patches it makes) as they are, without the
# package __init__ files (see the module docstring), and runs pytest with the recorder's plugin. It also
# hides jsonschema's optional rfc3987_syntax, which compiles a grammar when imported (seconds of CPU per
# submission, through nbformat) for IRI formats that the notebook schema never uses.
_BOOTSTRAP = (
    "import sys, types\n"
    "sys.modules.setdefault('rfc3987_syntax', None)\n"
    "for name, folder in (('dpdl', sys.argv[1]), ('dpdl.grading', sys.argv[1] + '/grading')):\n"
    "    package = types.ModuleType(name)\n"
    "    package.__path__ = [folder]\n"
    "    sys.modules[name] = package\n"
    "from dpdl.grading.recorder import main\n"
    "sys.exit(main(sys.argv[2], sys.argv[3:]))\n"
)


@dataclass
class CellOutcome:
    """How one code cell fared; ``index`` counts code cells only, as nbval's ``Cell N`` does."""

    index: int
    passed: bool
    message: str = ""  # why it failed: the exception line, a timeout, an output difference


@dataclass
class NbvalRun:
    """The result of one nbval run: ``status`` is ``completed``, ``timeout`` or ``error``."""

    status: str
    cells: dict[int, CellOutcome] = field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0
    values: bytes = b""  # what the kernel recorded through dpdl.grading.verdict (with ``values=True``)


def run_nbval(
    nb: Mapping[str, Any],
    *,
    cell_timeout: float = 120.0,
    timeout: float = 600.0,
    python: str | None = None,
    threads: int | None = None,
    values: bool = False,
    sandbox: bool = True,
    limits: Limits | None = None,
) -> NbvalRun:
    """Run notebook ``nb`` (a dict in nbformat 4) with ``pytest --nbval`` in a fresh kernel of this environment.

    Every code cell's outputs are compared with those stored in ``nb`` unless the cell is tagged
    ``nbval-ignore-output``. A cell running longer than ``cell_timeout`` seconds is interrupted and nbval
    goes on; after ``timeout`` seconds the whole run (pytest, kernel and anything they started) is killed
    and the cells finished by then are kept (``status="timeout"``). The kernel works in an empty directory
    with ``CI=1`` and ``DPDL_PROGRESS=0``. ``threads`` caps the kernel's OpenMP/MKL threads (torch's CPU
    pool) unless ``OMP_NUM_THREADS`` is set already: kernels graded side by side that each spin up one
    thread per core contend for the cores and can run ten times slower, into the cell timeout. With
    ``values`` the kernel gets a file to record values in (:mod:`dpdl.grading.verdict`), read back into
    ``NbvalRun.values`` (at most ``MAX_VALUES_BYTES``).

    With ``sandbox`` (the default) the kernel runs in a bubblewrap sandbox with ``limits``
    (:class:`~dpdl.grading.sandbox.Limits`; raises :class:`~dpdl.grading.sandbox.SandboxUnavailable`
    where none can be made); without it, as the grader, with the grader's files in reach.
    """
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dpdl-grade-"))  # the notebook; the kernel's cwd when unsandboxed
    private = Path(tempfile.mkdtemp(prefix="dpdl-grade-results-"))  # the recorder's file, away from the kernel
    token = uuid.uuid4().hex
    try:
        notebook = work / "submission.ipynb"
        notebook.write_text(json.dumps(nb), encoding="utf-8")
        results, log = private / "cells.jsonl", private / "pytest.log"
        (private / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        args = [
            "-p", "nbval.plugin", "-p", "no:cacheprovider", "--noconftest",
            "-c", str(private / "pytest.ini"), "--rootdir", str(work),
            "-q", "--tb=no", "--color=no",
            "--nbval", "--nbval-current-env", f"--nbval-cell-timeout={cell_timeout:g}",
            str(notebook),
        ]  # fmt: skip
        python = python or sys.executable
        command = [python, "-c", _BOOTSTRAP, str(Path(__file__).resolve().parents[1]), str(results), *args]
        env = _grading_env(token, threads)
        if sandbox:
            from dpdl.grading.sandbox import KernelSandbox, Limits

            box = KernelSandbox(private, limits or Limits(), _kernel_env(env))
        else:
            box = _Unsandboxed(private)
        with box:
            if values:
                env[VALUES_ENV] = str(box.values_file)
                if sandbox:
                    box.env[VALUES_ENV] = str(box.values_file)  # the shared directory: the same path inside
            if sandbox:
                env[SANDBOX_SPEC_ENV] = str(_write_sandbox_spec(box, python, private / "sandbox.json"))
            with open(log, "wb") as log_file:
                process = subprocess.Popen(
                    command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                try:
                    returncode = process.wait(timeout=timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    returncode, timed_out = None, True
                finally:
                    _end_process_tree(process, token, getattr(box, "uid", None))
            recorded = _read_values(box.values_file) if values else b""
        cells, setup_error = _read_results(results)
        seconds = time.monotonic() - start
        if timed_out:
            reason = f"the notebook ran past the {timeout:g} s limit (--timeout) and was stopped"
            return NbvalRun("timeout", cells, reason, seconds, recorded)
        if returncode not in (0, 1) or setup_error:
            detail = setup_error or _tail(log)
            return NbvalRun(
                "error", cells, f"nbval could not run the notebook (exit {returncode}): {detail}", seconds, recorded
            )
        return NbvalRun("completed", cells, "", seconds, recorded)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


class _Unsandboxed:
    """The values channel of an unsandboxed run: a directory of its own (the kernel runs as the grader)."""

    uid = None

    def __init__(self, folder: Path) -> None:
        self.values_file = folder / "values" / "values.jsonl"

    def __enter__(self) -> _Unsandboxed:
        self.values_file.parent.mkdir(mode=0o700)
        return self

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.values_file.parent, ignore_errors=True)


def _kernel_env(grader_env: Mapping[str, str]) -> dict[str, str]:
    """What a sandboxed kernel gets of the grader's environment: the run's settings, nothing else."""
    keep = ("CI", "DPDL_PROGRESS", "PYTHONHASHSEED", RUN_TOKEN_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DPDL_DEVICE")
    return {key: grader_env[key] for key in keep if key in grader_env}


def _write_sandbox_spec(box: Any, python: str, path: Path) -> Path:
    """Tell the pytest subprocess how to start the kernel: the bwrap command, the shared directory, the uid."""
    spec = {
        "argv": box.command([python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]),
        "shared": str(box.shared),
        "uid": box.uid,
    }
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def _grading_env(token: str, threads: int | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_CORE_"))}
    if threads is not None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.pop("MPLBACKEND", None)  # let the kernel pick inline, as Jupyter does
    env.pop(VALUES_ENV, None)  # set by run_nbval only when values are wanted
    env.pop(SANDBOX_SPEC_ENV, None)
    env.update(
        {
            "CI": "1",
            "DPDL_PROGRESS": "0",
            "PYTHONHASHSEED": "0",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # only nbval and the recorder: no stray plugins
            RUN_TOKEN_ENV: token,
        }
    )
    return env


def _end_process_tree(process: subprocess.Popen, token: str, uid: int | None = None) -> None:
    """Kill pytest, its kernel (which jupyter_client starts in a session of its own) and their children.

    A sandboxed kernel dies with its sandbox (bwrap's PID namespace; ``--die-with-parent``); as a last
    resort, processes that still carry the run's token or, as root, run as the sandbox's ``uid`` are
    killed too, and waited for, so that the uid can be handed to the next sandbox.
    """
    try:
        import psutil
    except ImportError:  # jupyter's ipykernel depends on psutil; without it the process group is all we reach
        psutil = None
    victims = []
    if psutil is not None and process.poll() is None:
        try:
            victims = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            pass
    if process.poll() is None:
        if hasattr(os, "killpg"):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        process.kill()
    process.wait()
    if psutil is None:
        return
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 10
    while True:
        strays = _strays(psutil, token, uid)
        if not strays or time.monotonic() > deadline:
            break
        for stray in strays:
            try:
                stray.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(strays, timeout=1)


def _strays(psutil, token: str, uid: int | None) -> list:
    """Live processes of this run: the sandbox's uid (as root), or this user's carrying the run's token."""
    found = []
    for candidate in psutil.process_iter():
        try:
            if candidate.pid == os.getpid() or candidate.status() == psutil.STATUS_ZOMBIE:
                continue
            if uid is not None and uid in candidate.uids():
                found.append(candidate)
            elif candidate.environ().get(RUN_TOKEN_ENV) == token:
                found.append(candidate)
        except psutil.Error:
            continue
    return found


def _read_results(path: Path) -> tuple[dict[int, CellOutcome], str]:
    """Per-cell outcomes from the recorder's JSON lines, and the setup error when no cell ran at all
    (a kernel that would not start)."""
    cells: dict[int, CellOutcome] = {}
    setup_error, any_call = "", False
    if not path.exists():
        return cells, setup_error
    with open(path, "rb") as file:
        lines = file.read(_RESULTS_BYTES).decode("utf-8", errors="replace").splitlines()
    for line in lines:
        try:
            record = json.loads(line)
            index, when, passed, message = record["cell"], record["when"], record["passed"], record["message"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # the last line of a killed run may be cut short
        if when == "teardown":
            continue  # the kernel's shutdown, not the cell's doing
        any_call = any_call or when == "call"
        if when == "setup" and not passed and not setup_error:
            setup_error = message
        previous = cells.get(index)
        if previous is None or (previous.passed and not passed):
            cells[index] = CellOutcome(index, bool(passed), "" if passed else message)
    return cells, "" if any_call else setup_error


def _read_values(path: Path) -> bytes:
    """The kernel's values file, at most ``MAX_VALUES_BYTES`` of it; only a regular file is read (the kernel
    could leave a link to another file, or a FIFO that would block the grader, in its place)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return b""
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return b""
        return file.read(MAX_VALUES_BYTES)


def _tail(path: Path) -> str:
    if not path.exists():
        return "no output"
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
        text = file.read().decode("utf-8", errors="replace")
    lines = [line for line in ANSI.sub("", text).splitlines() if line.strip()]
    return truncate(" | ".join(lines[-6:]) or "no output")
