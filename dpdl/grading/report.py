"""What a grade is, and how it is written out: ``marks.csv`` for the instructor, markdown feedback per student.

Written answers are gathered both into each student's feedback and, question by question, into
``written_answers.md`` for manual marking (`dpdl grade`).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = [
    "STATUSES",
    "CheckResult",
    "GradeResult",
    "write_marks_csv",
    "feedback_markdown",
    "written_answers_markdown",
    "feedback_names",
    "write_feedback",
]

# graded: the notebook ran (checks may have failed); timeout: stopped at --timeout, earlier checks count;
# invalid: the file is no gradable notebook; error: the grader could not run it (re-run it).
STATUSES = ("graded", "timeout", "invalid", "error")
WRITTEN_ANSWERS_FILE = "written_answers.md"
_FIXED_COLUMNS = ["submission", "total", "max", "status", "reason"]


@dataclass
class CheckResult:
    """One check cell's verdict for one submission."""

    id: str
    max_points: int
    passed: bool
    message: str = ""  # why it failed

    @property
    def points(self) -> int:
        return self.max_points if self.passed else 0


@dataclass
class GradeResult:
    """Everything grading found out about one submission."""

    submission: str
    status: str
    reason: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    answer_errors: dict[str, str] = field(default_factory=dict)  # answer id -> why the answer cell failed
    written: dict[str, str] = field(default_factory=dict)  # written id -> the student's text
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(check.points for check in self.checks)

    @property
    def max(self) -> int:
        return sum(check.max_points for check in self.checks)


def write_marks_csv(results: Sequence[GradeResult], path: str | os.PathLike, check_ids: Sequence[str] = ()) -> Path:
    """One row per submission, in the given order: ``submission,total,max,status,reason`` then points per check."""
    ids = list(check_ids) or ([check.id for check in results[0].checks] if results else [])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(_FIXED_COLUMNS + ids)
        for result in results:
            points = {check.id: check.points for check in result.checks}
            writer.writerow(
                [result.submission, result.total, result.max, result.status, result.reason]
                + [points.get(id_, 0) for id_ in ids]
            )
    return path


def feedback_markdown(result: GradeResult) -> str:
    """A student's feedback: points per check and why a check failed, notes, and their written answers."""
    verdict = "graded" if result.status == "graded" else f"not fully graded ({result.status}): {result.reason}"
    lines = [f"# Feedback on `{result.submission}`", "", f"**{result.total} / {result.max} points** — {verdict}", ""]
    if result.checks:
        lines += ["| check | points | result |", "|---|---:|---|"]
        for check in result.checks:
            outcome = "passed" if check.passed else f"failed: {check.message or 'not run'}"
            lines.append(f"| `{check.id}` | {check.points} / {check.max_points} | {_table_text(outcome)} |")
        lines.append("")
    if result.answer_errors:
        lines += ["## Your answer cells", ""]
        lines += [f"- `{id_}` failed: {message}" for id_, message in result.answer_errors.items()]
        lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    if result.written:
        lines += ["## Written answers (marked by hand)", ""]
        for id_, text in result.written.items():
            lines += [f"### `{id_}`", "", _quote(text), ""]
    return "\n".join(lines)


def written_answers_markdown(results: Sequence[GradeResult], written_ids: Sequence[str]) -> str:
    """All written answers, question by question, so a marker reads every student's answer to one question."""
    lines = ["# Written answers", ""]
    for id_ in written_ids:
        lines += [f"## `{id_}`", ""]
        for result in results:
            lines += [f"### {result.submission}", "", _quote(result.written.get(id_, "")), ""]
    return "\n".join(lines)


def feedback_names(submissions: Sequence[str]) -> list[str]:
    """Distinct feedback file names, as short as possible: ``lab1.md``, or ``alice__lab1.md`` and
    ``bob__lab1.md`` when two submissions share a file name."""
    parts = [Path(os.path.abspath(submission)).with_suffix("").parts for submission in submissions]
    depth = [1] * len(parts)
    while True:  # lengthen the names that clash between different files by one folder each round
        clashes: dict[str, set[tuple[str, ...]]] = {}
        for path, keep in zip(parts, depth):
            clashes.setdefault("__".join(path[-keep:]), set()).add(path)
        grew = False
        for i, (path, keep) in enumerate(zip(parts, depth)):
            if len(clashes["__".join(path[-keep:])]) > 1 and keep < len(path):
                depth[i], grew = keep + 1, True
        if not grew:
            break
    seen = {Path(WRITTEN_ANSWERS_FILE).stem}
    names = []
    for path, keep in zip(parts, depth):
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", "__".join(path[-keep:])) or "submission"
        name, copy = stem, 2
        while name in seen:  # the same file given twice
            name, copy = f"{stem}-{copy}", copy + 1
        seen.add(name)
        names.append(f"{name}.md")
    return names


def write_feedback(results: Sequence[GradeResult], directory: str | os.PathLike, written_ids: Sequence[str] = ()) -> list[Path]:
    """Write each student's feedback, and ``written_answers.md`` when the exercise has written answers."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for result, name in zip(results, feedback_names([result.submission for result in results])):
        paths.append(directory / name)
        paths[-1].write_text(feedback_markdown(result), encoding="utf-8")
    if written_ids:
        (directory / WRITTEN_ANSWERS_FILE).write_text(written_answers_markdown(results, written_ids), encoding="utf-8")
    return paths


def _table_text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _quote(text: str) -> str:
    if not text.strip():
        return "_(no answer)_"
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
