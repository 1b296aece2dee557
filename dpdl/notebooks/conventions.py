"""The notebook conventions of DEVELOPERS.md ("Notebooks"), checked: one message per problem, saying
how to fix it. ``dpdl notebooks check`` and ``tests/test_notebook_conventions.py`` run it on every notebook.

Instructor sources get every rule. Student copies (in ``student/``) are generated, not executed, so
they get lighter rules: the badge opens the copy itself, no marker is left, and the copy is current.
"""

from __future__ import annotations

import io
import os
import re
import tokenize
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dpdl.notebooks import (
    INSTALL_URL_RE,
    PUBLIC_REPO_SETTING,
    REPO,
    colab_url,
    find_repo_root,
    is_student_copy,
    notebook_bytes,
    read_notebook,
    repo_path,
)
from dpdl.notebooks.build import MarkerError, build_student_copy, find_blocks, is_edited
from dpdl.notebooks.cells import ReferenceNotebookError, validate_reference
from dpdl.notebooks.run import (
    KERNEL_NAME,
    PERSONAL_CELL_METADATA,
    PERSONAL_NOTEBOOK_METADATA,
    RAISES_EXCEPTION_TAG,
    WIDGET_MIME,
    has_nbval_marker,
)

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["check_notebook", "SOURCE_RULES", "STUDENT_RULES"]

_COLAB_URL_RE = re.compile(r"https://colab\.research\.google\.com/github/[^\s()\"'<>]+?\.ipynb")
_GUARD_RE = re.compile(r"""^(?P<indent>[ \t]*)if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:\s*(#.*)?$""")
_PIP_RE = re.compile(r"^\s*[%!]\s*pip\s+install\b")
# Calls that train: a backward pass, an optimiser step, dpdl.train.fit / sklearn's fit, torchbearer.
_TRAINING_RE = re.compile(r"\.backward\(|\boptimizer\.step\(|(?<!def )\bfit\(|\btrial\.run\(")
_SEED_RE = re.compile(r"\bseed_everything\(")
_CUDA_RE = re.compile(r"\.cuda\(")
_NON_PNG_IMAGES = ("image/svg+xml", "image/jpeg")


def check_notebook(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> list[str]:
    """Every convention the notebook at ``path`` breaks, as messages saying how to fix each; empty
    when it follows them all. ``root`` is the repository folder (found from ``path`` by default)."""
    path = Path(path)
    nb = read_notebook(path)
    root = Path(root) if root is not None else find_repo_root(path)
    rules = STUDENT_RULES if is_student_copy(path) else SOURCE_RULES
    context = _Context(path=path, root=root)
    return [problem for rule in rules for problem in rule(nb, context)]


class _Context:
    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.root = path, root


Rule = Callable[["NotebookNode", _Context], Iterator[str]]


def _title_badge(nb, context) -> Iterator[str]:
    expected = colab_url(context.path.absolute(), root=context.root)
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        yield (
            "cell 0: the first cell must be the markdown title cell with the Colab badge; "
            "generate it with dpdl.notebooks.title_cell(path, title, summary)"
        )
        return
    urls = _COLAB_URL_RE.findall(nb.cells[0].source)
    if not urls:
        yield (
            f"cell 0: the title cell has no Colab badge; add dpdl.notebooks.badge_markdown(path), "
            f"which links {expected}"
        )
    for url in urls:
        if url != expected:
            yield f"cell 0: the Colab badge opens {url}, not this notebook; it must link {expected}"


def _install_cell(nb, context) -> Iterator[str]:
    fix = 'use dpdl.notebooks.install_source() (a `%pip install` under `if "google.colab" in sys.modules:`)'
    if len(nb.cells) < 2 or nb.cells[1].cell_type != "code":
        yield f"cell 1: the second cell must be the Colab install cell; {fix}"
        return
    lines = nb.cells[1].source.splitlines()
    guard = next(((i, m) for i, line in enumerate(lines) if (m := _GUARD_RE.match(line))), None)
    if guard is None:
        yield f'cell 1: the install cell has no `if "google.colab" in sys.modules:` guard; {fix}'
        return
    guard_line, guard_match = guard
    if not any(re.match(r"^\s*import\s+sys\b", line) for line in lines[:guard_line]):
        yield "cell 1: the install cell tests sys.modules without `import sys` before the guard; add it"
    body_indent = len(guard_match.group("indent"))
    in_body, installs = True, 0
    for number, line in enumerate(lines[guard_line + 1 :], start=guard_line + 1):
        if line.strip() and len(line) - len(line.lstrip()) <= body_indent:
            in_body = False
        if _PIP_RE.match(line):
            if not in_body:
                yield (
                    f"cell 1, line {number + 1}: `{line.strip()}` installs outside Colab too; indent it under the guard"
                )
            elif line.strip().startswith("!"):
                yield f"cell 1, line {number + 1}: use `%pip install` (installs into the running kernel), not `!pip`"
            else:
                installs += 1
    if any(_PIP_RE.match(line) for line in lines[:guard_line]):
        yield "cell 1: a pip install comes before the Colab guard, so it runs everywhere; move it under the guard"
    if not installs:
        yield f"cell 1: the Colab guard installs nothing; {fix}"
    for match in INSTALL_URL_RE.finditer(nb.cells[1].source):
        if match.group("repo") != REPO:
            yield (
                f"cell 1: installs dpdl from github.com/{match.group('repo')}, not from the public repository "
                f"{REPO} ([tool.dpdl] {PUBLIC_REPO_SETTING} in pyproject.toml); use "
                "dpdl.notebooks.install_source()"
            )


def _execution_order(nb, context) -> Iterator[str]:
    expected = 1
    for index, cell in _code_cells(nb):
        if not cell.source.strip():
            continue
        if cell.execution_count != expected:
            count = cell.execution_count
            found = "was not executed" if count is None else f"has execution count {count}"
            yield (
                f"cell {index}: {found}, expected {expected}; commit notebooks run top to bottom in a fresh "
                f"kernel with `dpdl notebooks run {context.path}`"
            )
            return
        expected += 1


def _outputs_committed(nb, context) -> Iterator[str]:
    if not any(cell.get("outputs") for _, cell in _code_cells(nb)):
        yield f"the notebook has no outputs; commit it executed, with `dpdl notebooks run {context.path}`"


def _no_trailing_semicolon(nb, context) -> Iterator[str]:
    for index, cell in _code_cells(nb):
        if _ends_with_semicolon(cell.source):
            yield (
                f"cell {index}: the last line ends with ';' to hide its value; assign it to `_` instead "
                "(`_ = plt.plot(...)`)"
            )


def _no_personal_metadata(nb, context) -> Iterator[str]:
    fix = f"run `dpdl notebooks run {context.path}`, which strips it"
    found = [key for key in PERSONAL_NOTEBOOK_METADATA if key in nb.metadata]
    if found:
        yield f"notebook metadata holds widget state or Colab/editor metadata ({', '.join(found)}); {fix}"
    for index, cell in enumerate(nb.cells):
        found = [key for key in PERSONAL_CELL_METADATA if key in cell.metadata]
        if found:
            yield f"cell {index}: metadata holds Colab/editor clutter or timings ({', '.join(found)}); {fix}"
        if any(WIDGET_MIME in output.get("data", {}) for output in cell.get("outputs", [])):
            yield (
                f"cell {index}: an output is a widget (a progress bar?); run with `dpdl notebooks run`, "
                "which sets CI=1 so dpdl.progress draws none"
            )


def _kernelspec(nb, context) -> Iterator[str]:
    name = nb.metadata.get("kernelspec", {}).get("name")
    if name != KERNEL_NAME:
        yield f"kernelspec name is {name!r}, not {KERNEL_NAME!r}; `dpdl notebooks run` sets it"


def _seed_before_training(nb, context) -> Iterator[str]:
    seeded = False
    for index, cell in _code_cells(nb):
        for line in _code_lines(cell.source):
            if _SEED_RE.search(line):
                seeded = True
            elif _TRAINING_RE.search(line) and not seeded:
                yield (
                    f"cell {index}: trains before any seed_everything(...) call; call "
                    "seed_everything(0) in the imports cell so re-runs give the same numbers"
                )
                return
    if not seeded:
        yield "no code cell calls seed_everything(...); call seed_everything(0) in the imports cell"


def _no_cuda_calls(nb, context) -> Iterator[str]:
    for index, cell in _code_cells(nb):
        if any(_CUDA_RE.search(line) for line in _code_lines(cell.source)):
            yield (
                f"cell {index}: calls .cuda(), which fails without an NVIDIA GPU; use .to(device) "
                "with device = dpdl.device()"
            )


def _png_images(nb, context) -> Iterator[str]:
    for index, cell in _code_cells(nb):
        kinds = sorted(
            {kind for output in cell.get("outputs", []) for kind in output.get("data", {}) if kind in _NON_PNG_IMAGES}
        )
        if kinds:
            yield (
                f"cell {index}: has {', '.join(kinds)} output; figures are PNG (matplotlib's inline default; "
                "do not set InlineBackend.figure_formats)"
            )


def _markers_balanced(nb, context) -> Iterator[str]:
    for index, cell in enumerate(nb.cells):
        try:
            find_blocks(cell.source, cell.cell_type)
        except MarkerError as err:
            yield f"cell {index}: {err}"


def _errors_only_where_expected(nb, context) -> Iterator[str]:
    for index, cell in _code_cells(nb):
        allowed = RAISES_EXCEPTION_TAG in cell.metadata.get("tags", []) or has_nbval_marker(
            cell.source, "NBVAL_RAISES_EXCEPTION"
        )
        if not allowed and any(output.output_type == "error" for output in cell.get("outputs", [])):
            yield (
                f"cell {index}: the committed output is an error; fix the cell, or start it with "
                "`# NBVAL_RAISES_EXCEPTION` if it fails on purpose"
            )


def _raising_cells_tagged(nb, context) -> Iterator[str]:
    """nbval reads the comment, Jupyter's Run All and nbclient the tag: a cell that fails on purpose needs
    both, or Run All stops there, before the student's first task."""
    for index, cell in _code_cells(nb):
        marked = has_nbval_marker(cell.source, "NBVAL_RAISES_EXCEPTION")
        tagged = RAISES_EXCEPTION_TAG in cell.metadata.get("tags", [])
        if marked and not tagged:
            yield (
                f"cell {index}: starts with `# NBVAL_RAISES_EXCEPTION` but lacks the `{RAISES_EXCEPTION_TAG}` "
                "cell tag, so Run All stops here; add the tag (`dpdl notebooks run` adds it), then "
                "`dpdl notebooks build`"
            )
        elif tagged and not marked:
            yield (
                f"cell {index}: tagged `{RAISES_EXCEPTION_TAG}` without `# NBVAL_RAISES_EXCEPTION` on its "
                "first line; add the comment so nbval expects the error too"
            )


def _cell_ids(nb, context) -> Iterator[str]:
    ids = [cell.get("id") for cell in nb.cells]
    if nb.nbformat_minor < 5 or not all(ids):
        yield (
            "cells have no ids (nbformat < 4.5); the grader matches cells by id: "
            "`dpdl notebooks run` upgrades the notebook"
        )
    elif len(set(ids)) != len(ids):
        yield "cell ids repeat (a copied cell?); the grader matches cells by id: `dpdl notebooks run` repairs them"


def _no_markers_left(nb, context) -> Iterator[str]:
    for index, cell in enumerate(nb.cells):
        try:
            left = "a whole solution/answer block" if find_blocks(cell.source, cell.cell_type) else None
        except MarkerError as err:
            left = str(err)
        if left:
            yield f"cell {index}: markers left in a student copy ({left}); regenerate it with `dpdl notebooks build`"


def _student_copy_current(nb, context) -> Iterator[str]:
    source = context.path.parent.parent / context.path.name
    if not source.is_file():
        yield (
            f"no instructor source {source} for this student copy; delete the copy or restore the source, "
            "then run `dpdl notebooks build`"
        )
        return
    try:
        expected = notebook_bytes(build_student_copy(source, root=context.root))
    except MarkerError as err:
        yield f"its source cannot be built: {err}"
        return
    if context.path.read_bytes() == expected:
        return
    if is_edited(context.path):
        yield (
            f"edited by a person since it was built from {source}; move the work elsewhere, then "
            f"`dpdl notebooks build {source}` (or discard it with `--force`)"
        )
    else:
        yield f"stale: differs from a fresh build of {source}; regenerate it with `dpdl notebooks build {source}`"


def _gradable_exercise(nb, context) -> Iterator[str]:
    """An exercise's instructor source is `dpdl grade`'s reference: its cell identities must be gradable."""
    if not _is_exercise(context):
        return
    try:
        validate_reference(nb)
    except ReferenceNotebookError as err:
        for problem in err.problems:
            yield f"not gradable: {problem} (DEVELOPERS.md, 'Notebooks': exercises)"


def _is_exercise(context) -> bool:
    try:
        return repo_path(context.path.resolve(), root=context.root).startswith("exercises/")
    except ValueError:  # a notebook outside the repository given as root
        return False


SOURCE_RULES: tuple[Rule, ...] = (
    _title_badge,
    _install_cell,
    _execution_order,
    _outputs_committed,
    _no_trailing_semicolon,
    _no_personal_metadata,
    _kernelspec,
    _seed_before_training,
    _no_cuda_calls,
    _png_images,
    _markers_balanced,
    _errors_only_where_expected,
    _raising_cells_tagged,
    _cell_ids,
    _gradable_exercise,
)
STUDENT_RULES: tuple[Rule, ...] = (
    _title_badge,
    _install_cell,
    _no_personal_metadata,
    _kernelspec,
    _no_cuda_calls,
    _png_images,
    _no_markers_left,
    _raising_cells_tagged,
    _cell_ids,
    _student_copy_current,
)


def _code_cells(nb):
    return [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]


def _code_lines(source: str) -> list[str]:
    """The lines of a cell without comments (good enough for spotting calls; strings may hide some)."""
    return [line.split("#", 1)[0] for line in source.splitlines() if not line.lstrip().startswith("#")]


def _ends_with_semicolon(source: str) -> bool:
    # IPython magics and shell lines are not Python: blank them out before tokenising.
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tokens = [
            tok
            for tok in tokenize.generate_tokens(io.StringIO(python + "\n").readline)
            if tok.type
            not in (
                tokenize.NEWLINE,
                tokenize.NL,
                tokenize.COMMENT,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            )
        ]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        lines = [line.split("#", 1)[0].rstrip() for line in python.splitlines() if line.strip()]
        return bool(lines) and lines[-1].endswith(";")
    return bool(tokens) and tokens[-1].type == tokenize.OP and tokens[-1].string == ";"
