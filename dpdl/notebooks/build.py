"""Student copies: the instructor's notebook with each solution replaced by a stub that raises.

The instructor source holds the solutions and the reference outputs; ``dpdl notebooks build`` writes
``student/<same name>`` beside it, and ``--check`` (run by CI) fails when a copy is stale.

Markers (DEVELOPERS.md, "Notebooks"):

* Code cells: the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (both at the same
  indentation, several blocks per cell allowed, no nesting) become, at that indentation::

      # YOUR CODE HERE
      raise NotImplementedError("replace this line with your code")

  A hint goes on the BEGIN line and becomes the exception's message:
  ``### BEGIN SOLUTION hint: use torch.exp`` → ``raise NotImplementedError("Hint: use torch.exp")``.
* Markdown cells: the lines from ``BEGIN ANSWER`` to ``END ANSWER`` (each alone on its line, or
  hidden in an HTML comment ``<!-- BEGIN ANSWER -->``) become ``*Your answer here.*``.

What the student copy keeps and drops:

* A cell whose source changed loses its outputs and execution count (they show the solution); a
  markdown cell loses the attachments (pasted images) that only its answer used.
* Every other cell keeps its outputs, so students see the reference numbers and pictures.
* Except tracebacks: an error output keeps only its last line (``ValueError: ...``), because
  IPython's traceback quotes the source lines of the functions it passes through, solutions included.
* Cell ids and metadata (the ``dpdl`` dict the grader matches cells by) are kept unchanged.
* The Colab badge in the first markdown cell is rewritten to open the student copy.

A marker-like line that is not exactly a marker (``# BEGIN SOLUTION``, ``### BEGIN SOLUTIONS``,
``BEGIN ANSWER`` in a code cell) is an error rather than text to copy, because copying it would hand
the solution to the students. The output is deterministic: building twice gives identical bytes.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from dpdl.notebooks import (
    REPO,
    colab_url,
    discover_notebooks,
    find_repo_root,
    is_student_copy,
    notebook_bytes,
    read_notebook,
    student_path,
    write_notebook,
)

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "SOLUTION_BEGIN",
    "SOLUTION_END",
    "ANSWER_BEGIN",
    "ANSWER_END",
    "STUB_COMMENT",
    "ANSWER_PLACEHOLDER",
    "MarkerError",
    "Block",
    "find_blocks",
    "stub_source",
    "build_student_copy",
    "write_student_copy",
    "stale_student_copies",
    "orphaned_student_copies",
]

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
ANSWER_BEGIN = "BEGIN ANSWER"
ANSWER_END = "END ANSWER"
STUB_COMMENT = "# YOUR CODE HERE"
STUB_MESSAGE = "replace this line with your code"
ANSWER_PLACEHOLDER = "*Your answer here.*"

_SOLUTION_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:[ \t]+hint:(?P<hint>.*?))?[ \t]*$")
_SOLUTION_END_RE = re.compile(r"^(?P<indent>[ \t]*)### END SOLUTION[ \t]*$")
_ANSWER_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)(?:<!--[ \t]*BEGIN ANSWER[ \t]*-->|BEGIN ANSWER)[ \t]*$")
_ANSWER_END_RE = re.compile(r"^(?P<indent>[ \t]*)(?:<!--[ \t]*END ANSWER[ \t]*-->|END ANSWER)[ \t]*$")
# Anything that looks like a marker; a line matching this but not the exact forms above is an error.
# Lines that look like markers: a comment (code) or line (markdown) starting with one in any case, or
# the upper-case words anywhere. Such a line that is not exactly a marker is an error.
_SOLUTION_LIKE_RE = re.compile(r"^[#\s]*(?i:BEGIN|END)[ \t_-]*(?i:SOLUTION)|\b(?:BEGIN|END)[ \t_-]*SOLUTION")
_ANSWER_LIKE_RE = re.compile(r"^[#<!\-*_\s]*(?i:BEGIN|END)[ \t_-]*(?i:ANSWER)|\b(?:BEGIN|END)[ \t_-]*ANSWER")
_COLAB_URL_RE = re.compile(r"https://colab\.research\.google\.com/github/[^\s()\"'<>]+?\.ipynb")


class MarkerError(ValueError):
    """Solution or answer markers that cannot be turned into a student copy (unbalanced, nested,
    misspelt). The message names the notebook, the cell index and the line, and says what to fix."""


@dataclass(frozen=True)
class Block:
    """One marked block of a cell's source: lines ``begin``..``end`` (0-based, both markers included)."""

    begin: int
    end: int
    indent: str
    hint: str | None = None


def find_blocks(source: str, cell_type: str) -> list[Block]:
    """The solution blocks of a code cell or the answer blocks of a markdown cell, in order.

    Raises :class:`MarkerError` (without the notebook's name: callers add it) when markers are
    unbalanced, nested, indented differently, misspelt, or of the wrong kind for the cell.
    """
    if cell_type == "code":
        return _scan(source, _CODE_MARKERS)
    if cell_type == "markdown":
        return _scan(source, _MARKDOWN_MARKERS)
    return []


def stub_source(source: str, cell_type: str) -> str:
    """``source`` with every marked block replaced: code by the ``raise NotImplementedError`` stub,
    markdown by :data:`ANSWER_PLACEHOLDER`. Unchanged when the cell has no blocks."""
    blocks = find_blocks(source, cell_type)
    if not blocks:
        return source
    lines = source.split("\n")
    out: list[str] = []
    position = 0
    for block in blocks:
        out.extend(lines[position:block.begin])
        out.extend(_replacement(block, cell_type))
        position = block.end + 1
    out.extend(lines[position:])
    return "\n".join(out)


def build_student_copy(
    source_path: str | os.PathLike, *, repo: str = REPO, root: str | os.PathLike | None = None
) -> NotebookNode:
    """The student copy of the instructor notebook at ``source_path`` (not written; see
    :func:`write_student_copy`). ``repo`` (org/name) and ``root`` (the repository folder, found from
    the path by default) decide the Colab badge URL."""
    source_path = Path(source_path)
    if is_student_copy(source_path):
        raise ValueError(f"{source_path} is a student copy; build from the instructor source beside student/")
    nb = read_notebook(source_path)
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        try:
            new_source = stub_source(cell.source, cell.cell_type)
        except MarkerError as err:
            raise MarkerError(f"{source_path}, cell {index}: {err}") from None
        if new_source != cell.source:
            if cell.cell_type == "code":
                _check_stub_compiles(cell.source, new_source, source_path, index)
                cell.outputs = []
                cell.execution_count = None
            elif "attachments" in cell:  # images pasted into an answer go with it
                cell.attachments = {name: data for name, data in cell.attachments.items()
                                    if f"attachment:{name}" in new_source}
            cell.source = new_source
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and output.get("traceback"):
                    output.traceback = output.traceback[-1:]
    _rewrite_badge(student, student_path(source_path), repo=repo, root=root)
    return student


def write_student_copy(
    source_path: str | os.PathLike, *, repo: str = REPO, root: str | os.PathLike | None = None
) -> Path:
    """Build the student copy of ``source_path`` and write it to ``student/<same name>`` beside it
    (left untouched when already current). Returns the student copy's path."""
    target = student_path(source_path)
    write_notebook(build_student_copy(source_path, repo=repo, root=root), target)
    return target


def stale_student_copies(
    sources: Iterable[str | os.PathLike], *, repo: str = REPO, root: str | os.PathLike | None = None
) -> list[str]:
    """One line per source whose student copy is missing or differs from a fresh build (empty when
    every copy is current). Writes nothing: this is ``dpdl notebooks build --check``."""
    problems = []
    for source in sources:
        target = student_path(source)
        expected = notebook_bytes(build_student_copy(source, repo=repo, root=root))
        if not target.is_file():
            problems.append(f"{target}: missing (generate it with `dpdl notebooks build {source}`)")
        elif target.read_bytes() != expected:
            problems.append(
                f"{target}: stale, differs from a fresh build of {source} "
                f"(regenerate with `dpdl notebooks build {source}`; never edit student copies by hand)"
            )
    return problems


def orphaned_student_copies(root: str | os.PathLike | None = None) -> list[Path]:
    """Student copies under ``labs/`` and ``exercises/`` whose instructor source no longer exists."""
    return [path for path in discover_notebooks(root, students=True) if not (path.parent.parent / path.name).is_file()]


@dataclass(frozen=True)
class _Markers:
    kind: str
    begin: str
    end: str
    begin_re: re.Pattern
    end_re: re.Pattern
    like_re: re.Pattern  # a misspelt marker of this kind
    wrong_kind_re: re.Pattern  # a marker of the other kind
    fix_wrong_kind: str
    comment_only: bool  # code: only comment lines can be markers


_CODE_MARKERS = _Markers(
    "solution", SOLUTION_BEGIN, SOLUTION_END, _SOLUTION_BEGIN_RE, _SOLUTION_END_RE, _SOLUTION_LIKE_RE,
    _ANSWER_LIKE_RE, "code cells use ### BEGIN SOLUTION / ### END SOLUTION", comment_only=True,
)
_MARKDOWN_MARKERS = _Markers(
    "answer", ANSWER_BEGIN, ANSWER_END, _ANSWER_BEGIN_RE, _ANSWER_END_RE, _ANSWER_LIKE_RE,
    re.compile(r"^#+[ \t]*(?i:BEGIN|END)[ \t_-]*(?i:SOLUTION)"),
    "markdown cells use BEGIN ANSWER / END ANSWER (alone on a line or as <!-- BEGIN ANSWER -->)",
    comment_only=False,
)


def _scan(source: str, markers: _Markers) -> list[Block]:
    blocks: list[Block] = []
    opened = None  # (line number, match) of the BEGIN marker of the block being read
    for number, line in enumerate(source.split("\n")):
        stripped = line.strip()
        where = f"line {number + 1} ({stripped!r})"
        begin, end = markers.begin_re.match(line), markers.end_re.match(line)
        if begin:
            if opened is not None:
                raise MarkerError(
                    f"{where}: {markers.begin!r} inside the {markers.kind} block opened on line {opened[0] + 1}; "
                    f"blocks cannot nest, close the first one with {markers.end!r}"
                )
            opened = (number, begin)
        elif end:
            if opened is None:
                raise MarkerError(f"{where}: {markers.end!r} without a {markers.begin!r} before it; add the BEGIN line")
            if end.group("indent") != opened[1].group("indent"):
                raise MarkerError(
                    f"{where}: {markers.end!r} is indented differently from its {markers.begin!r} on line "
                    f"{opened[0] + 1}; put both markers at the same indentation"
                )
            hint = (opened[1].groupdict().get("hint") or "").strip() or None
            blocks.append(Block(opened[0], number, opened[1].group("indent"), hint))
            opened = None
        elif markers.comment_only and not stripped.startswith("#"):
            continue
        elif markers.like_re.search(stripped):
            optional_hint = " (optionally followed by ' hint: ...')" if markers.kind == "solution" else ""
            raise MarkerError(
                f"{where} looks like {'an' if markers.kind == 'answer' else 'a'} {markers.kind} marker but is "
                f"not one; write exactly "
                f"{markers.begin!r}{optional_hint} or {markers.end!r} alone on its line"
            )
        elif markers.wrong_kind_re.search(stripped):
            raise MarkerError(f"{where}: wrong kind of marker for a {'code' if markers.comment_only else 'markdown'} "
                              f"cell; {markers.fix_wrong_kind}")
    if opened is not None:
        raise MarkerError(
            f"line {opened[0] + 1} ({opened[1].group(0).strip()!r}): {markers.begin!r} without a matching "
            f"{markers.end!r}; add the END line"
        )
    return blocks


def _replacement(block: Block, cell_type: str) -> list[str]:
    if cell_type == "markdown":
        return [block.indent + ANSWER_PLACEHOLDER]
    message = f"Hint: {block.hint}" if block.hint else STUB_MESSAGE
    # json.dumps gives a double-quoted literal that Python reads back as the same string.
    literal = json.dumps(message, ensure_ascii=False)
    return [block.indent + STUB_COMMENT, f"{block.indent}raise NotImplementedError({literal})"]


def _check_stub_compiles(original: str, stubbed: str, path: Path, index: int) -> None:
    """Markers around part of a statement give a student copy that is not even Python; say so."""
    if _compile_error(original) is None and (error := _compile_error(stubbed)) is not None:
        raise MarkerError(
            f"{path}, cell {index}: the student copy of this cell is not valid Python ({error}); "
            "put the solution markers around whole statements"
        )


def _compile_error(source: str) -> str | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        compile(TransformerManager().transform_cell(source), "<cell>", "exec")
    except SyntaxError as err:
        return f"{err.msg}, line {err.lineno}"
    return None


def _rewrite_badge(nb: NotebookNode, target: Path, *, repo: str, root) -> None:
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        return
    title = nb.cells[0]
    if _COLAB_URL_RE.search(title.source):
        if root is None:
            root = find_repo_root(target.parent.parent)
        url = colab_url(target.absolute(), root=root, repo=repo)
        title.source = _COLAB_URL_RE.sub(lambda _: url, title.source)
