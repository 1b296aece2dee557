"""The cell grammar of the course's notebooks: solution and answer markers, cell roles, the placeholder.

``dpdl notebooks build`` (student copies), ``dpdl notebooks check`` and ``dpdl grade`` all read notebooks
by these rules, so they are written here once, below both ``dpdl.notebooks`` and ``dpdl.grading``.

Markers (DEVELOPERS.md, "Notebooks"): in code cells the lines from ``### BEGIN SOLUTION`` (a hint may
follow: ``### BEGIN SOLUTION hint: use torch.exp``) to ``### END SOLUTION``, which the student copy
replaces by ``# YOUR CODE HERE`` and a ``raise NotImplementedError(...)``; in markdown cells the lines
from ``BEGIN ANSWER`` to ``END ANSWER`` (each alone on its line, or as ``<!-- BEGIN ANSWER -->``), which it
replaces by ``*Your answer here.*``. ``SOLUTION_LIKE_RE``/``ANSWER_LIKE_RE`` catch lines that look like a
marker without being one exactly, which the build refuses rather than copy a solution.

Roles: which cells of an exercise notebook are answers, graded checks and written answers.

Every gradable cell carries a stable identity in its metadata, so grading matches cells by name, never by
position (DEVELOPERS.md, "Notebooks"; the assessed exercises of every lab). This module is the single
source of truth for that convention::

    cell.metadata["dpdl"] = {"id": "<stable id>", "role": "answer" | "check" | "hidden" | "written", "points": <int>}

- ``answer``: a code cell the student writes (the instructor source holds the solution between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``). Only these cells are taken from a submission.
- ``check``: a code cell of graded asserts, worth ``points`` (a positive int, graded cells only), that
  students see in their copy. The grader always runs the reference's own check cells; a check earns its
  points when it runs to the end without raising (its printed output is feedback, never compared).
- ``hidden``: a check that students never see: student copies drop it, ``dpdl grade`` runs it. It re-tests
  the student's functions on unseen inputs, and its verdict also needs the values it records
  (:mod:`dpdl.grading.verdict`) to match the reference's, compared outside the kernel.
- ``written``: a markdown cell holding a written answer, collected for manual marking.

Ids are unique in a notebook, made of letters, digits, ``_``, ``-`` and ``.``, and become the column
names of ``marks.csv``. nbformat's own ``cell.id`` is not used: not every front end keeps it when cells
are copied, while cell metadata survives Jupyter, JupyterLab, Colab and ``dpdl notebooks build``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SOLUTION_BEGIN",
    "SOLUTION_END",
    "ANSWER_BEGIN",
    "ANSWER_END",
    "STUB_COMMENT",
    "ANSWER_PLACEHOLDER",
    "METADATA_KEY",
    "MARKS_COLUMNS",
    "ROLES",
    "RESERVED_IDS",
    "ReferenceNotebookError",
    "cell_id",
    "cell_role",
    "cell_points",
    "cell_source",
    "mark_cell",
    "answer_cells",
    "check_cells",
    "hidden_cells",
    "graded_cells",
    "written_cells",
    "max_points",
    "validate_reference",
]

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
ANSWER_BEGIN = "BEGIN ANSWER"
ANSWER_END = "END ANSWER"
STUB_COMMENT = "# YOUR CODE HERE"  # the first line of a student copy's stub, above its raise
ANSWER_PLACEHOLDER = "*Your answer here.*"  # what a student copy puts in place of a written answer

SOLUTION_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:[ \t]+hint:(?P<hint>.*?))?[ \t]*$")
SOLUTION_END_RE = re.compile(r"^(?P<indent>[ \t]*)### END SOLUTION[ \t]*$")
ANSWER_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)(?:<!--[ \t]*BEGIN ANSWER[ \t]*-->|BEGIN ANSWER)[ \t]*$")
ANSWER_END_RE = re.compile(r"^(?P<indent>[ \t]*)(?:<!--[ \t]*END ANSWER[ \t]*-->|END ANSWER)[ \t]*$")
# Lines that look like markers: a comment (code) or line (markdown) starting with one in any case, or
# the upper-case words anywhere. Such a line that is not exactly a marker is an error.
SOLUTION_LIKE_RE = re.compile(r"^[#\s]*(?i:BEGIN|END)[ \t_-]*(?i:SOLUTION)|\b(?:BEGIN|END)[ \t_-]*SOLUTION")
ANSWER_LIKE_RE = re.compile(r"^[#<!\-*_\s]*(?i:BEGIN|END)[ \t_-]*(?i:ANSWER)|\b(?:BEGIN|END)[ \t_-]*ANSWER")

METADATA_KEY = "dpdl"
ROLES = ("answer", "check", "hidden", "written")
GRADED_ROLES = ("check", "hidden")  # the roles that carry points
# marks.csv's columns before one per graded cell id (dpdl.grading.report), so no cell may be called one of them.
MARKS_COLUMNS = ("submission", "total", "max", "status", "reason", "review")
RESERVED_IDS = frozenset(MARKS_COLUMNS)

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SOLUTION_MARKER = re.compile(r"#+\s*BEGIN SOLUTION")
_CELL_TYPE_OF_ROLE = {"answer": "code", "check": "code", "hidden": "code", "written": "markdown"}


class ReferenceNotebookError(ValueError):
    """The reference notebook's ``dpdl`` cell metadata cannot be graded; ``problems`` lists every issue."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"the reference notebook cannot be used for grading:\n{lines}")


def cell_id(cell: Mapping[str, Any]) -> str | None:
    """The cell's stable ``dpdl`` id, or None for a cell without one (or with malformed metadata)."""
    value = _dpdl_metadata(cell).get("id")
    return value if isinstance(value, str) and value else None


def cell_role(cell: Mapping[str, Any]) -> str | None:
    """``"answer"``, ``"check"``, ``"hidden"``, ``"written"``, or None for an ordinary cell."""
    value = _dpdl_metadata(cell).get("role")
    return value if value in ROLES else None


def cell_points(cell: Mapping[str, Any]) -> int:
    """Points a check or hidden cell is worth (0 for any other cell)."""
    value = _dpdl_metadata(cell).get("points")
    return value if cell_role(cell) in GRADED_ROLES and _is_points(value) else 0


def cell_source(cell: Mapping[str, Any]) -> str:
    """The cell's source as one string (nbformat allows a list of lines on disk)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def mark_cell(cell: Any, id: str, role: str, points: int | None = None) -> Any:
    """Give ``cell`` its ``dpdl`` identity in place (for exercise authors and tests); returns the cell."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}; got {role!r}")
    if not isinstance(id, str) or not _ID_PATTERN.match(id) or id in RESERVED_IDS:
        raise ValueError(
            f"id must be letters, digits, '_', '-' or '.' and not one of {sorted(RESERVED_IDS)}; got {id!r}"
        )
    if (role in GRADED_ROLES) != (points is not None):
        raise ValueError(
            f"points are required for check and hidden cells and only for them; got role={role!r}, points={points!r}"
        )
    entry: dict[str, Any] = {"id": id, "role": role}
    if points is not None:
        entry["points"] = points
    cell.setdefault("metadata", {})[METADATA_KEY] = entry
    return cell


def answer_cells(nb: Mapping[str, Any]) -> dict[str, Any]:
    """``{id: cell}`` of the answer cells, in notebook order (the first cell wins for a repeated id)."""
    return _cells_with_role(nb, "answer")


def check_cells(nb: Mapping[str, Any]) -> dict[str, Any]:
    """``{id: cell}`` of the visible check cells (those students see), in notebook order."""
    return _cells_with_role(nb, "check")


def hidden_cells(nb: Mapping[str, Any]) -> dict[str, Any]:
    """``{id: cell}`` of the hidden checks (dropped from student copies, run by the grader), in notebook order."""
    return _cells_with_role(nb, "hidden")


def graded_cells(nb: Mapping[str, Any]) -> dict[str, Any]:
    """``{id: cell}`` of every cell that carries points, visible and hidden, in notebook order."""
    return _cells_with_role(nb, *GRADED_ROLES)


def written_cells(nb: Mapping[str, Any]) -> dict[str, Any]:
    """``{id: cell}`` of the written (markdown) answers, in notebook order."""
    return _cells_with_role(nb, "written")


def max_points(nb: Mapping[str, Any]) -> int:
    """Total points of the notebook's check and hidden cells."""
    return sum(cell_points(cell) for cell in graded_cells(nb).values())


def validate_reference(nb: Mapping[str, Any]) -> None:
    """Raise :class:`ReferenceNotebookError` listing every reason ``nb`` cannot serve as a grading reference.

    Besides well-formed metadata this catches the mistakes that would hand out marks: a solution block
    outside an answer cell (every student would run the instructor's code), a check cell that nbval skips
    or expects to raise (a stub would pass it), and check cells never executed (not known to pass).
    """
    problems: list[str] = []
    if nb.get("nbformat") != 4:
        problems.append(f"nbformat {nb.get('nbformat')!r} is not supported; save the notebook as nbformat 4")
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.get("cells", [])):
        where = f"cell {index} ({cell.get('cell_type')})"
        problems.extend(_metadata_problems(cell, where, seen, index))
        source = cell_source(cell)
        role = cell_role(cell)
        if cell.get("cell_type") == "code" and role != "answer" and _SOLUTION_MARKER.search(source):
            problems.append(
                f"{where} holds a '### BEGIN SOLUTION' block but is not an answer cell: the grader would run the "
                f"instructor's solution for every student; give it metadata dpdl.role = 'answer'"
            )
        if role in GRADED_ROLES:
            problems.extend(_check_cell_problems(cell, where))
    if not problems and not graded_cells(nb):
        problems.append("no check cells: mark graded cells with metadata dpdl = {id, role: 'check', points}")
    if problems:
        raise ReferenceNotebookError(problems)


def _metadata_problems(cell: Mapping[str, Any], where: str, seen: dict[str, int], index: int) -> list[str]:
    metadata = cell.get("metadata", {})
    if METADATA_KEY not in metadata:
        return []
    entry = metadata[METADATA_KEY]
    if not isinstance(entry, Mapping):
        return [f"{where}: metadata.{METADATA_KEY} must be a dict {{id, role, points}}; got {entry!r}"]
    problems = []
    unknown = set(entry) - {"id", "role", "points"}
    if unknown:
        problems.append(
            f"{where}: unknown keys {sorted(unknown)} in metadata.{METADATA_KEY}; allowed: id, role, points"
        )
    id_, role = entry.get("id"), entry.get("role")
    if not isinstance(id_, str) or not _ID_PATTERN.match(id_):
        problems.append(f"{where}: id {id_!r} must be a string of letters, digits, '_', '-' or '.'")
    elif id_ in RESERVED_IDS:
        problems.append(f"{where}: id {id_!r} is a column name of marks.csv; choose another id")
    elif id_ in seen:
        problems.append(f"{where}: duplicate id {id_!r} (also cell {seen[id_]}); ids must be unique")
    else:
        seen[id_] = index
    if role not in ROLES:
        problems.append(f"{where}: role {role!r} must be one of {', '.join(ROLES)}")
        return problems
    if cell.get("cell_type") != _CELL_TYPE_OF_ROLE[role]:
        problems.append(f"{where}: role {role!r} needs a {_CELL_TYPE_OF_ROLE[role]} cell")
    points = entry.get("points")
    if role in GRADED_ROLES and not _is_points(points):
        problems.append(f"{where}: {role} cell {id_!r} needs points, a positive int; got {points!r}")
    if role not in GRADED_ROLES and points is not None:
        problems.append(f"{where}: only check and hidden cells carry points; remove points from {role} cell {id_!r}")
    return problems


def _check_cell_problems(cell: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    source = cell_source(cell)
    tags = cell.get("metadata", {}).get("tags", [])
    if "NBVAL_SKIP" in source or "nbval-skip" in tags:
        problems.append(f"{where}: a check cell marked NBVAL_SKIP is never run and can award no points")
    if "NBVAL_RAISES_EXCEPTION" in source or {"nbval-raises-exception", "raises-exception"} & set(tags):
        problems.append(
            f"{where}: a check cell marked NBVAL_RAISES_EXCEPTION passes when the student's stub raises; "
            f"assert the expected exception inside the cell (try/except) instead"
        )
    if cell.get("execution_count") is None:
        problems.append(
            f"{where}: check cell {cell_id(cell)!r} was never executed; run the reference top to bottom "
            f"(dpdl notebooks run) so that its checks are known to pass"
        )
    return problems


def _cells_with_role(nb: Mapping[str, Any], *roles: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        id_ = cell_id(cell)
        if id_ is not None and cell_role(cell) in roles:
            found.setdefault(id_, cell)
    return found


def _dpdl_metadata(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = cell.get("metadata")
    entry = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    return entry if isinstance(entry, Mapping) else {}


def _is_points(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
