"""What a grade is, and how it is written out: ``marks.csv`` for the instructor, markdown feedback per student.

Written answers are gathered both into each student's feedback and, question by question, into
``written_answers.md`` for manual marking (`dpdl grade`).

Everything a submission controls (its file name, failure messages, notes, written answers) is untrusted
text: ``marks.csv`` cells that a spreadsheet would run as a formula are neutralised (OWASP "CSV
injection"), and feedback escapes HTML and markdown link syntax, with written answers shown as fenced
text, so that a marker's viewer never renders what a student wrote as markup. Files are replaced
atomically (:func:`write_atomically`): a reader, or a grader killed mid-write, never sees half a file.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dpdl.notebooks.cells import MARKS_COLUMNS

__all__ = [
    "STATUSES",
    "FIXED_COLUMNS",
    "UNSANDBOXED",
    "CheckResult",
    "GradeResult",
    "graded_check_ids",
    "marks_csv_text",
    "write_marks_csv",
    "feedback_markdown",
    "written_answers_markdown",
    "feedback_names",
    "write_feedback",
    "write_atomically",
    "remove_stale_temporaries",
]

# graded: the notebook ran (checks may have failed); timeout: stopped at --timeout, earlier checks count;
# invalid: the file is no gradable notebook; error: the grader could not run it (re-run it).
STATUSES = ("graded", "timeout", "invalid", "error")
WRITTEN_ANSWERS_FILE = "written_answers.md"
# marks.csv's columns before one column per graded check id (CONTRACTS §D).
FIXED_COLUMNS = list(MARKS_COLUMNS)  # listed once, in the cell grammar: no cell id may be one of them
# The review flag of a row whose code ran outside the sandbox (`dpdl grade --no-sandbox`).
UNSANDBOXED = "unsandboxed"
# A spreadsheet runs a cell starting with one of these as a formula (OWASP: CSV injection).
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{12}\.tmp")  # write_atomically's temporary files
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class CheckResult:
    """One check cell's verdict for one submission."""

    id: str
    max_points: int
    passed: bool
    message: str = ""  # why it failed
    hidden: bool = False  # a hidden check: students never saw it

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
    review: list[str] = field(default_factory=list)  # flags for a human (tampering); they never change marks
    sandboxed: bool = False  # whether the submission's code ran inside the sandbox
    submission_sha256: str = ""  # of the bytes graded ("" when the file could not be read): --resume

    @property
    def total(self) -> int:
        return sum(check.points for check in self.checks)

    @property
    def max(self) -> int:
        return sum(check.max_points for check in self.checks)

    @property
    def ran(self) -> bool:
        """Whether the submission's code was run (an ``invalid`` file never is)."""
        return self.status != "invalid"

    def review_flags(self) -> list[str]:
        """The ``review`` flags with ``unsandboxed`` added when code ran outside the sandbox."""
        flags = list(self.review)
        if self.ran and not self.sandboxed and UNSANDBOXED not in flags:
            flags.append(UNSANDBOXED)
        return flags

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_dict` gives the result back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GradeResult:
        """The result :meth:`to_dict` wrote; raises ``KeyError``/``TypeError``/``ValueError`` on other data."""
        values = dict(data)
        checks = [CheckResult(**check) for check in values.pop("checks", [])]
        known = {name for name in cls.__dataclass_fields__} - {"checks"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        result = cls(checks=checks, **values)
        if result.status not in STATUSES:
            raise ValueError(f"unknown status {result.status!r}")
        return result


def graded_check_ids(results: Sequence[GradeResult]) -> list[str]:
    """The graded check ids of ``results``, in the order their checks come (one column each in marks.csv)."""
    ids: dict[str, None] = {}
    for result in results:
        ids.update(dict.fromkeys(check.id for check in result.checks))
    return list(ids)


def marks_csv_text(results: Sequence[GradeResult], check_ids: Sequence[str] = ()) -> str:
    """``marks.csv``: one row per result, in the given order, :data:`FIXED_COLUMNS` then points per check.

    ``check_ids`` defaults to the checks of the results. Text cells that a spreadsheet would read as a
    formula (starting with ``= + - @``, a tab or a carriage return) get a leading ``'``.
    """
    ids = list(check_ids) or graded_check_ids(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180 line ends: a bare CR or LF inside a cell gets quoted
    writer.writerow(FIXED_COLUMNS + ids)
    for result in results:
        points = {check.id: check.points for check in result.checks}
        writer.writerow(
            [
                _csv_text(result.submission), result.total, result.max, result.status,
                _csv_text(result.reason), _csv_text("; ".join(result.review_flags())),
            ]
            + [points.get(id_, 0) for id_ in ids]
        )  # fmt: skip
    return buffer.getvalue()


def write_marks_csv(results: Sequence[GradeResult], path: str | os.PathLike, check_ids: Sequence[str] = ()) -> Path:
    """Write :func:`marks_csv_text` to ``path``, atomically."""
    return write_atomically(path, marks_csv_text(results, check_ids))


def feedback_markdown(result: GradeResult) -> str:
    """A student's feedback: points per check and why a check failed, notes, and their written answers.

    Every text from the submission is escaped (:func:`_inline`) or fenced (:func:`_fenced`).
    """
    if result.status == "graded":
        verdict = "graded"
    else:
        verdict = f"not fully graded ({result.status}): {_inline(result.reason)}"
    lines = [
        f"# Feedback on {_inline(result.submission)}",
        "",
        f"**{result.total} / {result.max} points** — {verdict}",
        "",
    ]
    if result.checks:
        lines += ["| check | points | result |", "|---|---:|---|"]
        for check in result.checks:
            outcome = "passed" if check.passed else f"failed: {check.message or 'not run'}"
            name = f"`{check.id}` (hidden)" if check.hidden else f"`{check.id}`"
            lines.append(f"| {name} | {check.points} / {check.max_points} | {_inline(outcome)} |")
        lines.append("")
    if result.answer_errors:
        lines += ["## Your answer cells", ""]
        lines += [f"- `{id_}` failed: {_inline(message)}" for id_, message in result.answer_errors.items()]
        lines.append("")
    if result.review_flags():
        lines += ["## For the marker's review (marks are not changed by these)", ""]
        lines += [f"- {_inline(flag)}" for flag in result.review_flags()] + [""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {_inline(note)}" for note in result.notes] + [""]
    if result.written:
        lines += ["## Written answers (marked by hand)", ""]
        for id_, text in result.written.items():
            lines += [f"### `{id_}`", "", _fenced(text), ""]
    return "\n".join(lines)


def written_answers_markdown(results: Sequence[GradeResult], written_ids: Sequence[str]) -> str:
    """All written answers, question by question, so a marker reads every student's answer to one question."""
    lines = ["# Written answers", ""]
    for id_ in written_ids:
        lines += [f"## `{id_}`", ""]
        for result in results:
            lines += [f"### {_inline(result.submission)}", "", _fenced(result.written.get(id_, "")), ""]
    return "\n".join(lines)


def feedback_names(submissions: Sequence[str]) -> list[str]:
    """Distinct feedback file names, as short as possible: ``lab1.md``, or ``alice__lab1.md`` and
    ``bob__lab1.md`` when two submissions share a file name."""
    parts = [_stem_parts(submission) for submission in submissions]
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


def _stem_parts(submission: str) -> tuple[str, ...]:
    """The folders and file stem of ``submission``'s absolute path (``/`` alone has no file name)."""
    path = Path(os.path.abspath(submission))
    return (*path.parent.parts, path.stem) if path.name else path.parts


def write_feedback(
    results: Sequence[GradeResult], directory: str | os.PathLike, written_ids: Sequence[str] = ()
) -> list[Path]:
    """Write each student's feedback, and ``written_answers.md`` when the exercise has written answers."""
    directory = Path(directory)
    paths = []
    for result, name in zip(results, feedback_names([result.submission for result in results])):
        paths.append(write_atomically(directory / name, feedback_markdown(result)))
    if written_ids:
        write_atomically(directory / WRITTEN_ANSWERS_FILE, written_answers_markdown(results, written_ids))
    return paths


def write_atomically(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8) so that no reader and no crash ever sees a partial file.

    The text goes to a temporary file in the same folder, is flushed to disk, and then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows). Characters UTF-8 cannot encode (lone
    surrogates from a file name or a damaged notebook) are written as backslash escapes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # matches _TEMPORARY
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(text.encode("utf-8", errors="backslashreplace"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Remove the temporary files that a killed :func:`write_atomically` of ``folder/<name>`` left behind,
    for each of ``names`` (nothing else in the folder is touched)."""
    folder = Path(folder)
    names = set(names)
    if not folder.is_dir() or not names:
        return
    for leftover in folder.glob(".*.tmp"):
        match = _TEMPORARY.fullmatch(leftover.name)
        if match and match.group(1) in names and leftover.is_file() and not leftover.is_symlink():
            leftover.unlink(missing_ok=True)


def _csv_text(text: str) -> str:
    """``text`` as a spreadsheet shows it, never runs it: a leading ``'`` before a formula start."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


# Backslash escapes, links and images, table cells. Code spans are harmless once HTML is escaped.
_MARKDOWN_SPECIAL = re.compile(r"([\\\[\]|])")


def _inline(text: str) -> str:
    """Untrusted text as one line of markdown that renders as itself: no HTML, links, images or table breaks.

    HTML's ``& < >`` become entities; backslashes, brackets and pipes get a backslash."""
    text = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _fenced(text: str) -> str:
    """A written answer as a fenced text block (shown verbatim: no HTML, no markdown), or _(no answer)_."""
    if not text.strip():
        return "_(no answer)_"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"
