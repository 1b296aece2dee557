"""The recorder: a pytest plugin, run inside the grading subprocess, that says how each notebook cell fared.

:func:`dpdl.grading.runner.run_nbval` starts ``python -m pytest --nbval`` in a subprocess through
:func:`main`, which patches how nbval starts kernels (:mod:`dpdl.grading.kernels`) and writes one JSON
line per cell phase as it happens, so that a run killed at its time limit keeps what was done. The
messages are worded for students: one line each, saying what failed and why (``dpdl check`` uses the
same wording).

Standard library only at import time: the subprocess imports this module and :mod:`dpdl.grading.kernels`
without running ``dpdl/__init__.py`` or ``dpdl/grading/__init__.py`` (see ``runner``), because those would
import torch and nbformat for nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from dpdl.grading.kernels import KERNEL_DIED, notice_dead_kernels, retry_kernel_starts, start_kernels_in_sandbox

__all__ = ["SANDBOX_SPEC_ENV", "MESSAGE_CHARS", "main", "failure_message", "exception_line", "truncate"]

# The subprocess finds here the JSON description of the sandboxed kernel to start (written by the runner).
SANDBOX_SPEC_ENV = "DPDL_GRADE_SANDBOX"
MESSAGE_CHARS = 500  # the longest failure message kept per cell
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colours in tracebacks and pytest's messages
_ARROW_LINE = re.compile(r"^-+>\s*\d+\s?(.*)$", re.MULTILINE)


def main(results_path: str, args: list[str]) -> int:
    """Run pytest with ``args`` (nbval's) and the recorder, appending one JSON line per cell phase to
    ``results_path``; the kernel starts in the sandbox that ``SANDBOX_SPEC_ENV`` names, if any."""
    import pytest

    spec_path = os.environ.get(SANDBOX_SPEC_ENV)
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
            message = "" if report.passed else failure_message(item, call, report)
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


def failure_message(item: Any, call: Any, report: Any) -> str:
    """Why a cell failed, in one line a student can act on."""
    if report.skipped and not hasattr(report, "wasxfail"):
        return "skipped (NBVAL_SKIP)"
    error = call.excinfo.value if call.excinfo is not None else None
    text = ANSI.sub("", str(error)) if error is not None else report.outcome
    if text.startswith("Timeout"):
        if "Failed to interrupt" in text:
            return truncate(
                f"{text.split('.')[0]}; the kernel could not be interrupted (it crashed, exited or is stuck in native code)"
            )
        return truncate(f"{text} (--cell-timeout)")
    if text == KERNEL_DIED:
        return "the kernel died while running this cell (a crash, exit(), os._exit() or out of memory)"
    if text.startswith("Kernel dead"):
        return (
            "not run: the kernel had died in an earlier cell (a crash, exit() or a cell that could not be interrupted)"
        )
    errors = [out for out in (getattr(item, "test_outputs", None) or []) if out.get("output_type") == "error"]
    if errors:
        return exception_line(errors[-1])
    if text == "Cell outputs differ":
        detail = ANSI.sub("", getattr(error, "inner_traceback", "") or "")
        skip = "assert reference_output == test_output failed:"
        detail = " ".join(line.strip() for line in detail.splitlines() if line.strip() and line.strip() != skip)
        stream = re.match(r"mismatch '([^']+)'\s*", detail)
        detail = f" ({stream.group(1)}): {detail[stream.end() :]}" if stream else f": {detail}"
        return truncate(f"output differs from the reference{detail}")
    return truncate(f"{type(error).__name__}: {text}" if error is not None else text)


def exception_line(error: Mapping[str, Any]) -> str:
    """``ename: evalue``, with the failing line of the cell when the exception says nothing itself."""
    name, value = error.get("ename", "Error"), str(error.get("evalue", "")).strip()
    line = f"{name}: {value}" if value else name
    if not value:
        traceback = ANSI.sub("", "\n".join(error.get("traceback", [])))
        arrow = _ARROW_LINE.search(traceback)
        if arrow:
            line += f" at `{arrow.group(1).strip()}`"
    return truncate(line)


def _short_difference(expected: str, got: str) -> list[str]:
    at = _common_prefix_length(expected, got)
    start = max(0, at - 20)
    return [
        f"first difference at character {at} (expected {len(expected)} characters, got {len(got)})",
        f"expected: {expected[start : at + 60]!r}",
        f"got: {got[start : at + 60]!r}",
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


def truncate(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"
