"""Run one notebook through nbval in a fresh kernel and say, per code cell, whether it passed and why not.

nbval runs in a subprocess (``python -m pytest --nbval`` with a small recorder plugin from this file), as
the grader, under a wall-clock limit that kills the whole process tree (`dpdl grade`). By default only
the kernel runs inside a bubblewrap sandbox (``sandbox``), reached over jupyter_client's ``ipc``
transport through a directory shared with that sandbox alone: the notebook, nbval and the recorder's
result file stay out of the submission's reach.

This module imports only the standard library (and pytest, nbval and jupyter_client inside the
subprocess), because the subprocess loads it by file path: importing the ``dpdl`` package there would
import torch for nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from dpdl.grading.sandbox import Limits

__all__ = [
    "CellOutcome",
    "NbvalRun",
    "run_nbval",
    "retry_kernel_starts",
    "notice_dead_kernels",
    "RUN_TOKEN_ENV",
    "KERNEL_START_ATTEMPTS",
    "start_kernels_in_sandbox",
    "VALUES_ENV",
    "MAX_VALUES_BYTES",
]

# Kept in step with dpdl.grading.verdict, which this file cannot import (see the module docstring).
VALUES_ENV = "DPDL_GRADE_VALUES"
MAX_VALUES_BYTES = 8 * 2**20
# Every process of a grading run inherits this variable, so that strays can be found and ended.
RUN_TOKEN_ENV = "DPDL_GRADE_RUN"
# The pytest subprocess finds here the JSON description of the sandboxed kernel to start (see `_pytest_main`).
_SANDBOX_SPEC_ENV = "DPDL_GRADE_SANDBOX"
# How often nbval may start a kernel that died while starting (see `retry_kernel_starts`).
KERNEL_START_ATTEMPTS = 3
# jupyter_client's words for a kernel that died, or never answered, before its first cell.
_KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")
# How often a cell's wait checks that its kernel is still alive (see `notice_dead_kernels`).
KERNEL_POLL_SECONDS = 0.5
_KERNEL_DIED = "Kernel died while running the cell"
MESSAGE_CHARS = 500  # the longest failure message kept per cell
_RESULTS_BYTES = 8 * 2**20  # at most this much of the recorder's file is read back
_LOG_TAIL_BYTES = 4000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ARROW_LINE = re.compile(r"^-+>\s*\d+\s?(.*)$", re.MULTILINE)
# The subprocess loads this file as a module (see the module docstring) and runs pytest with its plugin.
# It also hides jsonschema's optional rfc3987_syntax, which compiles a grammar when imported (seconds of
# CPU per submission, through nbformat) for IRI formats that the notebook schema never uses.
_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "sys.modules.setdefault('rfc3987_syntax', None)\n"
    "spec = importlib.util.spec_from_file_location('_dpdl_grade_runner', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "sys.exit(module._pytest_main(sys.argv[2], sys.argv[3:]))\n"
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
        command = [python, "-c", _BOOTSTRAP, str(Path(__file__).resolve()), str(results), *args]
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
                env[_SANDBOX_SPEC_ENV] = str(_write_sandbox_spec(box, python, private / "sandbox.json"))
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
    env.pop(_SANDBOX_SPEC_ENV, None)
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
    lines = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return _truncate(" | ".join(lines[-6:]) or "no output")


# ---------------------------------------------------------------------------------------------------------
# Inside the grading subprocess: pytest with nbval and this recorder.


def retry_kernel_starts(attempts: int = KERNEL_START_ATTEMPTS) -> bool:
    """Let nbval start a kernel again, up to ``attempts`` times, when it died or never answered.

    jupyter_client picks a kernel's five TCP ports by binding to port 0 and letting go; the kernel binds
    them a second later. Kernels started side by side (``dpdl grade --workers``, pytest-xdist) can be
    handed the same port in between: the kernel dies with ``ZMQError: Address already in use`` (about
    1 in 60 starts with 16 at once here; jupyter/nbconvert#1066, treebeardtech/nbmake#129), or, more
    rarely, lives but never answers the client. No cell has run then, so starting again with fresh
    ports is safe. Patches ``nbval.kernel.start_new_kernel`` in this process; returns False where nbval
    is missing or no longer has that function.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts!r}")
    try:
        from nbval import kernel
    except ImportError:
        return False
    start = getattr(kernel, "start_new_kernel", None)
    if start is None:
        return False
    start = getattr(start, "__wrapped__", start)  # patching twice must not multiply the attempts

    def start_new_kernel(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, attempts + 1):
            try:
                return start(*args, **kwargs)
            except RuntimeError as error:  # nbval has shut the dead kernel down before re-raising
                if attempt == attempts or not str(error).startswith(_KERNEL_START_FAILURES):
                    raise

    start_new_kernel.__wrapped__ = start  # type: ignore[attr-defined]
    start_new_kernel.__doc__ = start.__doc__
    kernel.start_new_kernel = start_new_kernel
    return True


def notice_dead_kernels(poll: float = KERNEL_POLL_SECONDS) -> bool:
    """Fail a cell as soon as its kernel dies (a crash, ``os._exit``, the out-of-memory killer).

    nbval waits for a cell's reply for the whole cell timeout, even when the kernel is already dead: two
    minutes lost per crash at the default. This patches ``nbval.kernel.RunningKernel.await_reply`` in this
    process to wait in ``poll``-second slices and to raise at once once the kernel process has exited;
    nbval then fails the cell, and the cells after it with "Kernel dead". Returns False where nbval
    is missing or no longer has that method.
    """
    from queue import Empty

    try:
        from nbval.kernel import RunningKernel
    except ImportError:
        return False
    original = getattr(RunningKernel, "await_reply", None)
    if original is None:
        return False
    original = getattr(original, "__wrapped__", original)

    def await_reply(self: Any, msg_id: str, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return original(self, msg_id, timeout=min(poll, left))
            except Empty:
                if not self.is_alive():
                    raise RuntimeError(_KERNEL_DIED) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    await_reply.__wrapped__ = original  # type: ignore[attr-defined]
    await_reply.__doc__ = original.__doc__
    RunningKernel.await_reply = await_reply
    return True


def start_kernels_in_sandbox(spec: Mapping[str, Any]) -> bool:
    """Make nbval start its kernel with the sandbox's command line, reached over ``ipc`` sockets.

    ``spec`` comes from the grader (``_write_sandbox_spec``): ``argv`` (bwrap around ``python -m
    ipykernel_launcher -f {connection_file}``), ``shared`` (the directory bound into that sandbox alone,
    at the same path, for the connection file and the sockets) and ``uid`` (the kernel's uid as root,
    which must be able to read the connection file jupyter_client writes with mode 0600). Interrupts go
    as messages: a signal to bwrap would not reach the kernel in its PID namespace. Patches
    ``nbval.kernel.start_new_kernel`` in this process; returns False where nbval no longer has it.
    """
    try:
        from nbval import kernel
    except ImportError:
        return False
    if getattr(kernel, "start_new_kernel", None) is None:
        return False
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    uid = spec.get("uid")

    class SandboxKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(
                argv=list(spec["argv"]), display_name="Python 3 (dpdl grading sandbox)", language="python",
                interrupt_mode="message", env={}, resource_dir="",
            )  # fmt: skip

    class SandboxKernelManager(KernelManager):
        def write_connection_file(self, **kwargs: Any) -> None:
            super().write_connection_file(**kwargs)
            if uid is not None:
                os.chown(self.connection_file, uid, uid)

    attempts = [0]

    def start_new_kernel(startup_timeout: float = 60, kernel_name: str = "python", **kwargs: Any) -> Any:
        attempts[0] += 1  # a retried start gets fresh socket and connection file names
        shared = Path(spec["shared"])
        manager = SandboxKernelManager(
            kernel_name="dpdl-sandbox", kernel_spec_manager=SandboxKernelSpecs(), transport="ipc",
            ip=str(shared / f"kernel{attempts[0]}"), connection_file=str(shared / f"kernel{attempts[0]}.json"),
        )  # fmt: skip
        manager.start_kernel(**kwargs)
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=startup_timeout)
        except RuntimeError:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            raise
        return manager, client

    start_new_kernel.__doc__ = kernel.start_new_kernel.__doc__
    kernel.start_new_kernel = start_new_kernel
    return True


def _pytest_main(results_path: str, args: list[str]) -> int:
    import pytest

    spec_path = os.environ.get(_SANDBOX_SPEC_ENV)
    if spec_path:
        with open(spec_path, encoding="utf-8") as file:
            if not start_kernels_in_sandbox(json.load(file)):
                print("dpdl grade: nbval has no start_new_kernel to start the kernel in its sandbox", file=sys.stderr)
                return 3
    retry_kernel_starts()
    notice_dead_kernels()

    class CellRecorder:
        """Writes one JSON line per nbval test phase, as it happens, so a killed run keeps what was done."""

        def __init__(self) -> None:
            self.file = open(results_path, "a", encoding="utf-8")

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(self, item, call):
            outcome = yield
            report = outcome.get_result()
            if not hasattr(item, "cell_num") or (report.when != "call" and report.passed):
                return
            message = "" if report.passed else _failure_message(item, call, report)
            record = {"cell": item.cell_num, "when": report.when, "passed": report.passed, "message": message}
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

        @pytest.hookimpl(tryfirst=True)
        def pytest_assertrepr_compare(self, config, op, left, right):
            """nbval's output comparison: a short difference instead of pytest's diff (slow on huge outputs)."""
            if op == "==" and isinstance(left, str) and isinstance(right, str):
                return _short_difference(left, right)
            return None

    return pytest.main(args, plugins=[CellRecorder()])


def _failure_message(item: Any, call: Any, report: Any) -> str:
    """Why a cell failed, in one line a student can act on."""
    if report.skipped and not hasattr(report, "wasxfail"):
        return "skipped (NBVAL_SKIP)"
    error = call.excinfo.value if call.excinfo is not None else None
    text = _ANSI.sub("", str(error)) if error is not None else report.outcome
    if text.startswith("Timeout"):
        if "Failed to interrupt" in text:
            return _truncate(
                f"{text.split('.')[0]}; the kernel could not be interrupted (it crashed, exited or is stuck in native code)"
            )
        return _truncate(f"{text} (--cell-timeout)")
    if text == _KERNEL_DIED:
        return "the kernel died while running this cell (a crash, exit(), os._exit() or out of memory)"
    if text.startswith("Kernel dead"):
        return "not run: the kernel had died in an earlier cell (a crash, exit() or a cell that could not be interrupted)"
    errors = [out for out in (getattr(item, "test_outputs", None) or []) if out.get("output_type") == "error"]
    if errors:
        return _exception_line(errors[-1])
    if text == "Cell outputs differ":
        detail = _ANSI.sub("", getattr(error, "inner_traceback", "") or "")
        skip = "assert reference_output == test_output failed:"
        detail = " ".join(line.strip() for line in detail.splitlines() if line.strip() and line.strip() != skip)
        stream = re.match(r"mismatch '([^']+)'\s*", detail)
        detail = f" ({stream.group(1)}): {detail[stream.end():]}" if stream else f": {detail}"
        return _truncate(f"output differs from the reference{detail}")
    return _truncate(f"{type(error).__name__}: {text}" if error is not None else text)


def _exception_line(error: Mapping[str, Any]) -> str:
    """``ename: evalue``, with the failing line of the cell when the exception says nothing itself."""
    name, value = error.get("ename", "Error"), str(error.get("evalue", "")).strip()
    line = f"{name}: {value}" if value else name
    if not value:
        traceback = _ANSI.sub("", "\n".join(error.get("traceback", [])))
        arrow = _ARROW_LINE.search(traceback)
        if arrow:
            line += f" at `{arrow.group(1).strip()}`"
    return _truncate(line)


def _short_difference(expected: str, got: str) -> list[str]:
    at = _common_prefix_length(expected, got)
    start = max(0, at - 20)
    return [
        f"first difference at character {at} (expected {len(expected)} characters, got {len(got)})",
        f"expected: {expected[start:at + 60]!r}",
        f"got: {got[start:at + 60]!r}",
    ]


def _common_prefix_length(a: str, b: str) -> int:
    """Bisection on slices: C-speed comparisons even for outputs of tens of MB."""
    low, high = 0, min(len(a), len(b))  # a[:low] == b[:low] holds throughout
    if a[:high] == b[:high]:
        return high
    while high - low > 1:  # and a[:high] != b[:high]
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


def _truncate(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"
