"""Put a student's answer cells into a copy of the reference notebook: the only thing a submission gives.

Everything else (check and hidden cells, setup cells, stored outputs) comes from the reference, so editing or deleting
a check cell, reordering cells, adding cells or pasting forged outputs changes nothing (`dpdl grade`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dpdl.grading.guard import (
    METADATA_KEY as GUARD_METADATA_KEY,
)
from dpdl.grading.guard import (
    builtin_names,
    install_cell_source,
    names_assigned,
    names_read,
    verify_cell_source,
    verify_output,
)
from dpdl.notebooks.cells import (
    ANSWER_BEGIN_RE,
    ANSWER_END_RE,
    ANSWER_PLACEHOLDER,
    GRADED_ROLES,
    answer_cells,
    cell_id,
    cell_role,
    cell_source,
    check_cells,
    written_cells,
)

if TYPE_CHECKING:
    import nbformat

__all__ = [
    "MAX_SUBMISSION_BYTES",
    "STUB_SOURCE",
    "IGNORE_OUTPUT_TAG",
    "Submission",
    "SubmissionError",
    "parse_notebook",
    "read_submission",
    "merge",
]

MAX_SUBMISSION_BYTES = 64 * 2**20  # a course notebook with figures is a few MB
STUB_SOURCE = 'raise NotImplementedError("not answered")'
IGNORE_OUTPUT_TAG = "nbval-ignore-output"
WRITTEN_ANSWER_CHARS = 20_000  # longer written answers are cut for the marker

_ANSWER_BLOCK = re.compile(r"BEGIN ANSWER(?:\s*-->)?(.*?)(?:<!--\s*)?END ANSWER", re.DOTALL)
_MAGIC_BYTES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a zip archive (unzip it and submit the .ipynb inside)",
}


class SubmissionError(ValueError):
    """A submission that cannot be graded at all; the message is the reason written to marks.csv."""


@dataclass
class Submission:
    """What grading takes from one submitted notebook."""

    answers: dict[str, str]  # answer id -> source, only ids the reference has
    written: dict[str, str]  # written id -> markdown text, for manual marking
    notes: list[str] = field(default_factory=list)  # what was ignored or missing, said to the student


def parse_notebook(data: bytes) -> dict[str, Any]:
    """The notebook JSON in ``data``; raises :class:`SubmissionError` saying what the file is instead."""
    if len(data) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(
            f"the file is {len(data) / 2**20:.0f} MB, over the {MAX_SUBMISSION_BYTES // 2**20} MB limit; "
            f"clear the outputs (Edit > Clear All Outputs) and submit again"
        )
    if not data.strip():
        raise SubmissionError("the file is empty")
    for magic, kind in _MAGIC_BYTES.items():
        if data.startswith(magic):
            raise SubmissionError(f"not a notebook: the file is {kind}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SubmissionError(f"not a notebook: the file is not UTF-8 text (byte {err.start})") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        start = text.lstrip()[:40].splitlines()[0] if text.strip() else ""
        if not text.lstrip().startswith("{"):
            raise SubmissionError(f"not a notebook: the file is not JSON (it starts with {start!r})") from None
        raise SubmissionError(
            f"the notebook is damaged: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); "
            f"download it again from Jupyter (File > Download)"
        ) from None
    except RecursionError:  # Python's JSON parser recurses once per nested [ or {
        raise SubmissionError("not a notebook: the JSON is nested too deeply for a notebook") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts (sys.int_info)
        raise SubmissionError(f"not a notebook: the JSON holds a value no notebook has ({_short(str(err))})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError("not a notebook: JSON without a list of 'cells'")
    if nb.get("nbformat") != 4:
        raise SubmissionError(
            f"nbformat {_short(repr(nb.get('nbformat')))} notebook; only nbformat 4 (Jupyter 4 or later) is graded"
        )
    for index, cell in enumerate(nb["cells"]):
        problem = _cell_shape_problem(cell)
        if problem:
            raise SubmissionError(
                f"the notebook is damaged: cell {index} {problem}; open it in Jupyter, save it and submit again"
            )
    return nb


def _cell_shape_problem(cell: Any) -> str:
    """What keeps ``cell`` from being read as a notebook cell (the parts grading reads), or ''."""
    if not isinstance(cell, dict):
        return f"is a JSON {type(cell).__name__}, not an object"
    if not isinstance(cell.get("cell_type"), str):
        return "has no cell_type"
    if not isinstance(cell.get("metadata", {}), dict):
        return "has metadata that is not an object"
    source = cell.get("source", "")
    if not isinstance(source, str) and not (isinstance(source, list) and all(isinstance(line, str) for line in source)):
        return "has a source that is neither text nor a list of lines"
    return ""


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_submission(data: bytes, reference: Mapping[str, Any]) -> Submission:
    """Take the answer and written cells of the reference's ids out of a submitted notebook's bytes.

    Cells are matched by ``metadata.dpdl.id`` only: the role the submission claims is not trusted. An
    answer id that appears more than once (a copied cell) keeps all copies, joined in notebook order.
    """
    nb = parse_notebook(data)
    answer_ids, written_refs = set(answer_cells(reference)), written_cells(reference)
    checks = check_cells(reference)
    reference_code = {cell_source(cell) for cell in reference["cells"] if cell.get("cell_type") == "code"}
    found: dict[str, list[str]] = {}
    written: dict[str, str] = {}
    seen_checks: set[str] = set()
    notes: list[str] = []
    wrong_type: list[str] = []
    other_code = 0
    for cell in nb["cells"]:  # each a dict with text source and dict metadata (`parse_notebook`)
        id_, source, kind = cell_id(cell), cell_source(cell), cell.get("cell_type")
        if id_ in answer_ids:
            if kind == "code":
                found.setdefault(id_, []).append(source)
            else:
                wrong_type.append(id_)
        elif id_ in written_refs and kind == "markdown":
            written.setdefault(id_, _written_text(source, cell_source(written_refs[id_])))
        elif id_ in checks:
            seen_checks.add(id_)
            if source != cell_source(checks[id_]):
                notes.append(f"check cell `{id_}` was changed in your notebook; the original check was run")
        elif kind == "code" and source not in reference_code and source.strip():
            other_code += 1
    answers = {id_: "\n\n".join(sources) for id_, sources in found.items()}
    for id_ in answer_ids:
        if id_ in found and len(found[id_]) > 1:
            notes.append(f"answer cell `{id_}` appears {len(found[id_])} times; the copies were run one after another")
        elif id_ not in found:
            why = "is not a code cell" if id_ in wrong_type else "is missing"
            notes.append(f"answer cell `{id_}` {why} in your notebook; it was graded as unanswered")
    for id_ in sorted(set(checks) - seen_checks):
        notes.append(f"check cell `{id_}` is missing from your notebook; the original check was run")
    if other_code:
        notes.append(
            f"{other_code} code cell(s) outside the answer cells were not run: only answer cells are graded, "
            f"so put all your code inside them"
        )
    return Submission(answers=answers, written=written, notes=_ordered_notes(notes, reference))


def merge(reference: Mapping[str, Any], answers: Mapping[str, str], *, guard: bool = True) -> nbformat.NotebookNode:
    """A copy of ``reference`` whose answer cells hold ``answers`` (a missing id gets :data:`STUB_SOURCE`).

    Every code cell is tagged ``nbval-ignore-output``: checks are judged by their asserts (a check passes
    when it runs to the end without raising), so an answer that prints while a check calls it keeps its
    points. An answer that raises still makes the checks after it fail. The reference is not modified.
    With ``guard`` (the default) the tamper-evidence cells of :mod:`dpdl.grading.guard` go in too: one
    that records what the checks rely on, before the first answer, and one before every check and hidden
    check that verifies it (its printed line is compared, the one output nbval compares).
    """
    import nbformat  # here: `dpdl --help` imports this module and must stay quick

    merged = nbformat.from_dict(copy.deepcopy(dict(reference)))
    for cell in merged.cells:
        if cell_role(cell) == "answer":
            cell.source = answers.get(cell_id(cell), STUB_SOURCE)
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if IGNORE_OUTPUT_TAG not in tags:
                tags.append(IGNORE_OUTPUT_TAG)
    if guard:
        merged.cells = _with_guard_cells(reference["cells"], merged.cells)
    return merged


def _with_guard_cells(reference_cells: list, cells: list) -> list:
    """``cells`` (the merged notebook's, parallel to ``reference_cells``) with the guard's cells put in.

    Which names each verify cell protects comes from the reference's sources, never the submission's: a
    name the check reads that only the setup before the first answer binds must not be rebound, and a
    built-in the check calls that no reference cell defines must not be shadowed by an answer.
    """
    import nbformat

    roles = [cell_role(cell) if cell.get("cell_type") == "code" else None for cell in reference_cells]
    start = next((i for i, role in enumerate(roles) if role == "answer" or role in GRADED_ROLES), None)
    if start is None:
        return list(cells)
    sources = [cell_source(cell) if cell.get("cell_type") == "code" else "" for cell in reference_cells]
    assigned = [names_assigned(source) for source in sources]
    before_answers = set().union(*(names or set() for names in assigned[:start]))
    builtins_ = builtin_names()
    install = nbformat.v4.new_code_cell(install_cell_source())
    install.metadata = {GUARD_METADATA_KEY: {"role": "install"}, "tags": [IGNORE_OUTPUT_TAG]}
    install.id = "dpdl-guard-install"  # fixed ids: merging the same answers gives the same notebook
    result = cells[:start] + [install]
    for index in range(start, len(cells)):
        if roles[index] in GRADED_ROLES:
            read = names_read(sources[index]) or set()
            later = assigned[start : index + 1]
            known = all(names is not None for names in assigned[: index + 1])
            rebound = set().union(*(names or set() for names in later))
            protected = (read & before_answers) - rebound if known else set()
            shadowable = (read & builtins_) - rebound - before_answers if known else set()
            check_id = cell_id(reference_cells[index])
            verify = nbformat.v4.new_code_cell(verify_cell_source(check_id, protected, shadowable))
            verify.metadata = {GUARD_METADATA_KEY: {"role": "verify", "check": check_id}}
            verify.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verify_output(check_id))]
            verify.execution_count = 1  # nbval compares the outputs of executed cells only
            verify.id = f"dpdl-guard-{index}"
            result.append(verify)
        result.append(cells[index])
    return result


def _written_text(source: str, reference_source: str) -> str:
    """The student's answer without the question around it.

    The student copy replaces the reference's ``BEGIN ANSWER``..``END ANSWER`` block by a placeholder, so
    the answer is what is left once the reference's lines before and after that block are taken off.
    """
    match = _ANSWER_BLOCK.search(source)
    if match:
        text = match.group(1)
    else:
        lines, reference_lines = _lines(source), _lines(reference_source)
        marks = [
            i for i, line in enumerate(reference_lines) if ANSWER_BEGIN_RE.match(line) or ANSWER_END_RE.match(line)
        ]
        if marks:
            before, after = reference_lines[: marks[0]], reference_lines[marks[-1] + 1 :]
            if lines[: len(before)] == before:
                lines = lines[len(before) :]
            if after and lines[-len(after) :] == after:
                lines = lines[: -len(after)]
        text = "\n".join(lines)
    text = text.strip()
    if text == ANSWER_PLACEHOLDER:
        return ""
    if len(text) > WRITTEN_ANSWER_CHARS:
        text = text[:WRITTEN_ANSWER_CHARS] + f"\n\n[… cut: the answer is {len(text)} characters long]"
    return text


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.split("\n")]


def _ordered_notes(notes: list[str], reference: Mapping[str, Any]) -> list[str]:
    """Notes sorted by where their cell sits in the reference, so feedback reads top to bottom."""
    order = {cell_id(cell): index for index, cell in enumerate(reference["cells"]) if cell_id(cell)}

    def key(note: str) -> int:
        match = re.search(r"`([^`]+)`", note)
        return order.get(match.group(1), len(order)) if match else len(order)

    return sorted(notes, key=key)
