"""Wall time of every lab and exercise notebook under nbval, the total, and each notebook's slowest cell.

Each notebook runs alone (one nbval process at a time, so the timings are the notebook's own), exactly as
the README's test command validates it. Prints a Markdown table; ``--write`` also puts the measured
times into the notebook tables of ``labs/README.md`` and ``exercises/README.md``.

    python benchmarks/bench_notebook_suite.py                # all notebooks
    python benchmarks/bench_notebook_suite.py labs/lab2      # some
    python benchmarks/bench_notebook_suite.py --write        # and update the READMEs
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBVAL_ARGS = [
    "--nbval",
    "--nbval-current-env",
    "--nbval-sanitize-with",
    str(ROOT / "tests" / "nbval_sanitize.cfg"),
    "--nbval-cell-timeout",
    "600",
    "-p",
    "no:cacheprovider",
    "-q",
]
START, END = "<!-- timings:start -->", "<!-- timings:end -->"
# The budgets of the lab and exercise issues, on the 2-core CI machine.
NOTEBOOK_BUDGET_S, LAB_BUDGET_S, SUITE_BUDGET_S = 120, 180, 40 * 60


@dataclass
class NotebookTiming:
    path: str
    seconds: float
    passed: bool
    cells: int
    slowest_cell: str
    slowest_seconds: float


def discover(paths: list[str]) -> list[Path]:
    roots = [ROOT / p for p in paths] if paths else [ROOT / "labs", ROOT / "exercises"]
    found: list[Path] = []
    for root in roots:
        candidates = [root] if root.suffix == ".ipynb" else sorted(root.rglob("*.ipynb"))
        found += [p for p in candidates if "student" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    return found


def run_nbval(path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, list[ET.Element]]:
    """nbval over one notebook in a process of its own: (the process, its wall seconds, its junit test cases)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", *NBVAL_ARGS, f"--junitxml={report}", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - start
        cases = list(ET.parse(report).getroot().iter("testcase")) if report.exists() else []
    return result, seconds, cases


def time_notebook(path: Path) -> NotebookTiming:
    result, seconds, cases = run_nbval(path, {**os.environ, "CI": "1", "DPDL_PROGRESS": "0"})
    times = [(case.get("name", "?"), float(case.get("time", 0))) for case in cases]
    slowest = max(times, key=lambda item: item[1], default=("-", 0.0))
    return NotebookTiming(
        path=str(path.relative_to(ROOT)),
        seconds=seconds,
        passed=result.returncode == 0,
        cells=len(times),
        slowest_cell=slowest[0],
        slowest_seconds=slowest[1],
    )


def markdown_table(timings: list[NotebookTiming]) -> str:
    rows = ["| notebook | nbval wall time | cells | slowest cell | result |", "|---|---:|---:|---|---|"]
    for t in timings:
        rows.append(
            f"| `{t.path}` | {t.seconds:.0f} s | {t.cells} | {t.slowest_cell} ({t.slowest_seconds:.1f} s) |"
            f" {'passed' if t.passed else 'FAILED'} |"
        )
    total = sum(t.seconds for t in timings)
    rows.append(f"| **total** | **{total:.0f} s ({total / 60:.1f} min)** | | | |")
    return "\n".join(rows)


def budget_report(timings: list[NotebookTiming]) -> str:
    """Each lab's total (its folder's notebooks) and every budget missed: notebook, lab, suite."""
    labs: dict[str, float] = {}
    for t in timings:
        if t.path.startswith("labs/"):
            lab = Path(t.path).parent.name
            labs[lab] = labs.get(lab, 0.0) + t.seconds
    lines = (
        ["lab totals: " + ", ".join(f"{lab} {seconds:.0f} s" for lab, seconds in sorted(labs.items()))] if labs else []
    )
    over = [f"{t.path} {t.seconds:.0f} s > {NOTEBOOK_BUDGET_S} s" for t in timings if t.seconds > NOTEBOOK_BUDGET_S]
    over += [
        f"{lab} {seconds:.0f} s > {LAB_BUDGET_S} s" for lab, seconds in sorted(labs.items()) if seconds > LAB_BUDGET_S
    ]
    total = sum(t.seconds for t in timings)
    if total > SUITE_BUDGET_S:
        over.append(f"suite {total:.0f} s > {SUITE_BUDGET_S} s")
    lines.append("over budget: " + ("; ".join(over) if over else "none"))
    return "\n".join(lines)


def machine_line() -> str:
    import torch

    return (
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}),"
        f" Python {platform.python_version()}, torch {torch.__version__}, torch threads {torch.get_num_threads()},"
        " one notebook at a time under nbval."
    )


def write_into(readme: Path, timings: list[NotebookTiming]) -> None:
    """Fill the time column of each notebook's row and the 'measured on' line between the markers.

    A row belongs to a notebook when it links to it or to its student copy
    (``(lab2/lab2_relaxations.ipynb)``, ``(lab1/student/lab1_exercise.ipynb)``); its last column is the time.
    """
    if not timings:
        return
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} block to fill")
    for t in timings:
        relative = Path(t.path).relative_to(readme.parent.relative_to(ROOT))
        links = (f"({relative.as_posix()})", f"({(relative.parent / 'student' / relative.name).as_posix()})")
        link = links[0]
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("|") and any(candidate in line for candidate in links):
                cells = line.split("|")
                cells[-2] = f" {t.seconds:.0f} s "
                lines[i] = "|".join(cells)
                break
        else:
            print(f"warning: no row links to {link} in {readme.relative_to(ROOT)}")
        text = "\n".join(lines) + "\n"
    total = sum(t.seconds for t in timings)
    budgets = (
        budget_report(timings)
        .replace("\n", ". ")
        .replace("lab totals", "Lab totals")
        .replace("over budget", "Over budget")
    )
    block = f"{START}\n{machine_line()} Total: {total:.0f} s ({total / 60:.1f} min). {budgets}.\n{END}"
    readme.write_text(re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    print(f"updated {readme.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: labs/ and exercises/)")
    parser.add_argument("--write", action="store_true", help="update the timing tables in the READMEs")
    args = parser.parse_args(argv)
    timings = []
    for path in discover(args.paths):
        timing = time_notebook(path)
        print(f"{timing.seconds:7.1f} s  {'ok    ' if timing.passed else 'FAILED'}  {timing.path}", flush=True)
        timings.append(timing)
    print()
    print(machine_line())
    print(markdown_table(timings))
    print(budget_report(timings))
    if args.write:
        write_into(ROOT / "labs" / "README.md", [t for t in timings if t.path.startswith("labs/")])
        write_into(ROOT / "exercises" / "README.md", [t for t in timings if t.path.startswith("exercises/")])
    return 0 if all(t.passed for t in timings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
