"""Student copies: the instructor's notebook with each solution replaced by a stub that raises.

The instructor source holds the solutions and the reference outputs; ``dpdl notebooks build`` writes
``student/<same name>`` beside it, and ``--check`` (run by CI) fails when a copy is stale.

Markers (the grammar is :mod:`dpdl.notebooks.cells`; DEVELOPERS.md, "Notebooks"):

* Code cells: the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (both at the same
  indentation, several blocks per cell allowed, no nesting) become, at that indentation::

      # YOUR CODE HERE
      raise NotImplementedError("truncated_svd: The best rank-k approximation of A (m, n) ...")

  The message names the task (:func:`stub_message`): the enclosing function and the first sentence of
  its docstring; else the hint; else the answer cell's id and the comment just above the block; else
  that comment. A hint goes on the BEGIN line and is added to the message:
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
* Hidden checks (``metadata.dpdl.role == "hidden"``) are dropped: only ``dpdl grade`` runs them.
* The Colab badge in the first markdown cell is rewritten to open the student copy, and the install
  cell to install from the same repository (``repo``, default the ``public-repo`` setting) and branch.
* ``metadata.dpdl_build.sha256`` records what was written, so that ``dpdl notebooks build`` can tell a
  copy a person has edited (never overwritten without ``--force``) from a merely stale one.

A marker-like line that is not exactly a marker (``# BEGIN SOLUTION``, ``### BEGIN SOLUTIONS``,
``BEGIN ANSWER`` in a code cell) is an error rather than text to copy, because copying it would hand
the solution to the students. The output is deterministic: building twice gives identical bytes.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpdl.notebooks import (
    BRANCH,
    INSTALL_URL_RE,
    colab_url,
    discover_notebooks,
    find_repo_root,
    install_source,
    is_student_copy,
    notebook_bytes,
    read_notebook,
    student_path,
    write_notebook,
)
from dpdl.notebooks.cells import (
    ANSWER_BEGIN,
    ANSWER_BEGIN_RE,
    ANSWER_END,
    ANSWER_END_RE,
    ANSWER_LIKE_RE,
    ANSWER_PLACEHOLDER,
    SOLUTION_BEGIN,
    SOLUTION_BEGIN_RE,
    SOLUTION_END,
    SOLUTION_END_RE,
    SOLUTION_LIKE_RE,
    STUB_COMMENT,
    cell_role,
)

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "MarkerError",
    "Block",
    "find_blocks",
    "stub_source",
    "stub_message",
    "is_stub_cell",
    "build_student_copy",
    "retarget",
    "EditedCopyError",
    "is_edited",
    "write_student_copy",
    "stale_student_copies",
    "orphaned_student_copies",
]

STUB_MESSAGE = "write the code this step asks for (see the text above)"
BUILD_METADATA = "dpdl_build"  # notebook metadata: {"sha256": hash of what the build wrote}

_STUB_RE = re.compile(rf"^[ \t]*{re.escape(STUB_COMMENT)}[ \t]*\n[ \t]*raise NotImplementedError\(", re.M)
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


def stub_source(source: str, cell_type: str, *, cell_id: str | None = None) -> str:
    """``source`` with every marked block replaced: code by the ``raise NotImplementedError`` stub whose
    message is :func:`stub_message`, markdown by :data:`ANSWER_PLACEHOLDER`. Unchanged when the cell has
    no blocks. ``cell_id`` (an exercise's answer cell id) names the task when nothing better does."""
    blocks = find_blocks(source, cell_type)
    if not blocks:
        return source
    lines = source.split("\n")
    out: list[str] = []
    position = 0
    for block in blocks:
        out.extend(lines[position : block.begin])
        if cell_type == "markdown":
            out.append(block.indent + ANSWER_PLACEHOLDER)
        else:
            # json.dumps gives a double-quoted literal that Python reads back as the same string.
            literal = json.dumps(stub_message(source, block, cell_id=cell_id), ensure_ascii=False)
            out += [block.indent + STUB_COMMENT, f"{block.indent}raise NotImplementedError({literal})"]
        position = block.end + 1
    out.extend(lines[position:])
    return "\n".join(out)


def is_stub_cell(source: str) -> bool:
    """Whether a code cell's source holds a stub as :func:`stub_source` writes it (the student's task)."""
    return _STUB_RE.search(source) is not None


def stub_message(source: str, block: Block, *, cell_id: str | None = None) -> str:
    """What the stub of ``block`` (a solution block of the code cell ``source``) tells the student to do.

    In order: the enclosing function and the first sentence of its docstring (``"truncated_svd: The
    best rank-k approximation of A ..."``), plus the hint if any; else ``"Hint: ..."``; else the answer
    cell's id and the comment lines just above the block; else that comment; else :data:`STUB_MESSAGE`.
    Only text above the block is used: the solution never reaches the message.
    """
    function = _enclosing_function(source, block)
    if function is not None:
        name, summary = function
        message = f"{name}: {summary}" if summary else f"{name}: write the body of {name.rsplit('.', 1)[-1]}()"
        return f"{message} (hint: {block.hint})" if block.hint else message
    if block.hint:
        return f"Hint: {block.hint}"
    comment = _comment_above(source, block)
    if cell_id:
        return f"{cell_id}: {comment or STUB_MESSAGE}"
    return comment or STUB_MESSAGE


def build_student_copy(
    source_path: str | os.PathLike,
    *,
    repo: str | None = None,
    root: str | os.PathLike | None = None,
    branch: str = BRANCH,
) -> NotebookNode:
    """The student copy of the instructor notebook at ``source_path`` (not written; see
    :func:`write_student_copy`). ``repo`` (OWNER/NAME, default the ``public-repo`` setting), ``branch``
    and ``root`` (the repository folder, found from the path by default) decide the Colab badge URL and
    the install cell."""
    source_path = Path(source_path)
    if is_student_copy(source_path):
        raise ValueError(f"{source_path} is a student copy; build from the instructor source beside student/")
    nb = read_notebook(source_path)
    student = copy.deepcopy(nb)
    student.cells = [cell for cell in student.cells if cell_role(cell) != "hidden"]
    for index, cell in enumerate(student.cells):
        try:
            new_source = stub_source(cell.source, cell.cell_type, cell_id=cell.metadata.get("dpdl", {}).get("id"))
        except MarkerError as err:
            raise MarkerError(f"{source_path}, cell {index}: {err}") from None
        if new_source != cell.source:
            if cell.cell_type == "code":
                _check_stub_compiles(cell.source, new_source, source_path, index)
                cell.outputs = []
                cell.execution_count = None
            elif "attachments" in cell:  # images pasted into an answer go with it
                cell.attachments = {
                    name: data for name, data in cell.attachments.items() if f"attachment:{name}" in new_source
                }
            cell.source = new_source
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and output.get("traceback"):
                    output.traceback = output.traceback[-1:]
    retarget(student, student_path(source_path), repo=repo, branch=branch, root=root)
    _stamp(student)
    return student


def retarget(
    nb: NotebookNode,
    path: str | os.PathLike,
    *,
    repo: str | None = None,
    branch: str = BRANCH,
    root: str | os.PathLike | None = None,
) -> NotebookNode:
    """Point ``nb`` (to be saved at ``path``) at ``repo`` and ``branch``, in place: the Colab badge of
    the title cell opens ``path`` there and the install cell installs dpdl from there."""
    path = Path(path)
    if not nb.cells:
        return nb
    title = nb.cells[0]
    if title.cell_type == "markdown" and _COLAB_URL_RE.search(title.source):
        if root is None:
            root = find_repo_root(path.parent)
        url = colab_url(path.absolute(), root=root, repo=repo, branch=branch)
        title.source = _COLAB_URL_RE.sub(lambda _: url, title.source)
    if len(nb.cells) > 1 and nb.cells[1].cell_type == "code":
        install = install_source(repo, branch)
        pip_url = INSTALL_URL_RE.search(install).group(0)
        nb.cells[1].source = INSTALL_URL_RE.sub(lambda _: pip_url, nb.cells[1].source)
    return nb


class EditedCopyError(RuntimeError):
    """A student copy differs from what ``dpdl notebooks build`` last wrote: a person has edited it, so
    it is not overwritten. The message says where it is and what to do."""


def is_edited(path: str | os.PathLike) -> bool:
    """Whether the student copy at ``path`` is no longer what the build wrote (its recorded hash does not
    match its content, or it has none): someone edited it, and it must not be overwritten silently."""
    nb = read_notebook(path)
    recorded = nb.metadata.get(BUILD_METADATA, {}).get("sha256")
    return recorded is None or recorded != _content_hash(nb)


def write_student_copy(
    source_path: str | os.PathLike,
    *,
    repo: str | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Build the student copy of ``source_path`` and write it to ``student/<same name>`` beside it
    (left untouched when already current). Returns the student copy's path.

    Raises :class:`EditedCopyError`, writing nothing, when the copy there was edited by a person
    (:func:`is_edited`), unless ``force``.
    """
    target = student_path(source_path)
    student = build_student_copy(source_path, repo=repo, root=root)
    if target.is_file() and not force and target.read_bytes() != notebook_bytes(student) and is_edited(target):
        raise EditedCopyError(
            f"{target} was edited since `dpdl notebooks build` wrote it, so it was not overwritten. To keep the "
            f"work, move it out of {target.parent}/ first (student work belongs in a copy of your own); to "
            f"discard the edits, run `dpdl notebooks build --force {source_path}`"
        )
    write_notebook(student, target)
    return target


def stale_student_copies(
    sources: Iterable[str | os.PathLike], *, repo: str | None = None, root: str | os.PathLike | None = None
) -> list[str]:
    """One line per source whose student copy is missing, edited by a person, or stale (differs from a
    fresh build); empty when every copy is current. Writes nothing: this is ``dpdl notebooks build --check``."""
    problems = []
    for source in sources:
        target = student_path(source)
        expected = notebook_bytes(build_student_copy(source, repo=repo, root=root))
        if not target.is_file():
            problems.append(f"{target}: missing (generate it with `dpdl notebooks build {source}`)")
        elif target.read_bytes() == expected:
            continue
        elif is_edited(target):
            problems.append(
                f"{target}: edited by a person since it was built (move the work elsewhere, then "
                f"`dpdl notebooks build {source}`; or discard it with `dpdl notebooks build --force {source}`)"
            )
        else:
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
    "solution",
    SOLUTION_BEGIN,
    SOLUTION_END,
    SOLUTION_BEGIN_RE,
    SOLUTION_END_RE,
    SOLUTION_LIKE_RE,
    ANSWER_LIKE_RE,
    "code cells use ### BEGIN SOLUTION / ### END SOLUTION",
    comment_only=True,
)
_MARKDOWN_MARKERS = _Markers(
    "answer",
    ANSWER_BEGIN,
    ANSWER_END,
    ANSWER_BEGIN_RE,
    ANSWER_END_RE,
    ANSWER_LIKE_RE,
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
            raise MarkerError(
                f"{where}: wrong kind of marker for a {'code' if markers.comment_only else 'markdown'} "
                f"cell; {markers.fix_wrong_kind}"
            )
    if opened is not None:
        raise MarkerError(
            f"line {opened[0] + 1} ({opened[1].group(0).strip()!r}): {markers.begin!r} without a matching "
            f"{markers.end!r}; add the END line"
        )
    return blocks


_SUMMARY_LIMIT = 160  # characters of a docstring or comment in a stub message
_ASSIGNMENT_WITH_COMMENT_RE = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*=[^=#][^#]*#\s*(?P<comment>\S.*)$")


def _enclosing_function(source: str, block: Block) -> tuple[str, str | None] | None:
    """``(qualified name, docstring summary or None)`` of the innermost function whose body holds the
    block's BEGIN line, or None. The docstring counts only when it ends above the block."""
    import ast

    begin = block.begin + 1  # ast counts lines from 1
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return None
    found = None

    def visit(node, prefix: str) -> None:
        nonlocal found
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if child.lineno < begin <= (child.end_lineno or 0):
                    if not isinstance(child, ast.ClassDef):
                        found = (name, child)
                    visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    if found is None:
        return None
    name, function = found
    first = function.body[0] if function.body else None
    docstring = ast.get_docstring(function)
    if docstring and first is not None and (first.end_lineno or begin) < begin:
        return name, _summary(docstring.split("\n\n", 1)[0])
    return name, None


def _comment_above(source: str, block: Block) -> str | None:
    """The comment lines right above the block's BEGIN line (without ``#``), joined; or, when the line
    above is ``name = ...  # comment``, "fill `name`: comment"; or None."""
    lines = source.split("\n")[: block.begin]
    if lines and (assigned := _ASSIGNMENT_WITH_COMMENT_RE.match(lines[-1])):
        return _summary(f"fill `{assigned.group('name')}`: {assigned.group('comment')}")
    comment: list[str] = []
    for line in reversed(lines):
        stripped = line.strip()
        if (
            not stripped.startswith("#")
            or stripped.startswith("# NBVAL")
            or SOLUTION_BEGIN_RE.match(line)
            or SOLUTION_END_RE.match(line)
        ):  # another block's end
            break
        comment.insert(0, stripped.lstrip("#").strip())
    return _summary(" ".join(comment)) if any(comment) else None


def _summary(text: str) -> str:
    """The first sentence of ``text`` on one line, at most :data:`_SUMMARY_LIMIT` characters."""
    text = " ".join(text.split())
    text = re.split(r"(?<=[a-z)\]])\.(?:\s|$)", text, maxsplit=1)[0].rstrip(". ")
    if len(text) > _SUMMARY_LIMIT:
        text = text[:_SUMMARY_LIMIT].rsplit(" ", 1)[0] + " …"
    return text


def _content_hash(nb: NotebookNode) -> str:
    """sha256 of the notebook as saved, without the recorded hash itself."""
    import hashlib

    unstamped = copy.deepcopy(nb)
    unstamped.metadata.pop(BUILD_METADATA, None)
    return hashlib.sha256(notebook_bytes(unstamped)).hexdigest()


def _stamp(nb: NotebookNode) -> None:
    nb.metadata.pop(BUILD_METADATA, None)
    nb.metadata[BUILD_METADATA] = {"sha256": _content_hash(nb)}


def _check_stub_compiles(original: str, stubbed: str, path: Path, index: int) -> None:
    """Markers around part of a statement give a student copy that is not even Python; say so."""
    if _compile_error(original) is None and (error := _compile_error(stubbed)) is not None:
        raise MarkerError(
            f"{path}, cell {index}: the student copy of this cell is not valid Python ({error}); "
            "put the solution markers around whole statements"
        )


def _compile_error(source: str) -> str | None:
    try:
        compile(_python_source(source), "<cell>", "exec")
    except SyntaxError as err:
        return f"{err.msg}, line {err.lineno}"
    return None


def _python_source(source: str) -> str:
    """A cell's source as Python (IPython's magics and ``!`` lines turned into calls, line for line)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)
