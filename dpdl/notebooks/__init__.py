"""What every lab notebook shares: where it lives, how it opens on Colab, its first two cells.

Notebook authors call :func:`title_cell` and :func:`install_cell`; ``dpdl notebooks run|build|check``
(:mod:`dpdl.notebooks.run`, :mod:`.build`, :mod:`.conventions`) rely on the paths and I/O below.
DEVELOPERS.md ("Notebooks") gives the conventions these helpers encode.

``nbformat`` and ``nbclient`` are development requirements (``pip install -e ".[dev]"``), so they are
imported inside the functions that need them: ``import dpdl`` never needs them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "REPO",
    "BRANCH",
    "INSTALL_CELL",
    "NOTEBOOK_FOLDERS",
    "STUDENT_FOLDER",
    "colab_url",
    "badge_markdown",
    "title_cell",
    "install_cell",
    "find_repo_root",
    "repo_path",
    "student_path",
    "is_student_copy",
    "discover_notebooks",
    "read_notebook",
    "notebook_bytes",
    "write_notebook",
]

# The GitHub repository (org/name) and branch that Colab badges open: the single place to change them.
REPO = "dpdl-course/dpdl"
BRANCH = "main"

# Folders (relative to the repository root) that hold instructor sources; student copies go into a
# ``student/`` folder beside each source.
NOTEBOOK_FOLDERS = ("labs", "exercises")
STUDENT_FOLDER = "student"

COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

# The second cell of every notebook. It is a no-op outside Colab, where students follow the README.
INSTALL_CELL = """\
# Colab only: install dpdl (elsewhere follow the README's set-up).
import sys
if "google.colab" in sys.modules:
    %pip install -q "dpdl @ git+https://github.com/dpdl-course/dpdl\""""

_ROOT_MARKERS = ("pyproject.toml", ".git")


def colab_url(path: str | os.PathLike, *, root: str | os.PathLike | None = None, repo: str = REPO) -> str:
    """The URL that opens ``path`` (a notebook in this repository) on Colab, from GitHub's ``main``."""
    return f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/{repo_path(path, root=root)}"


def badge_markdown(path: str | os.PathLike, *, root: str | os.PathLike | None = None, repo: str = REPO) -> str:
    """The *Open in Colab* badge (markdown) for the notebook at ``path``, as the title cell shows it.

    ``path`` need not exist yet. A relative path is taken from the working directory (so inside a
    notebook ``badge_markdown("lab1_tensors.ipynb")`` works), or from ``root`` when it is given.
    """
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(path, root=root, repo=repo)})"


def title_cell(
    path: str | os.PathLike, title: str, summary: str, *, root: str | os.PathLike | None = None
) -> NotebookNode:
    """The first cell of a notebook: ``# title``, the Colab badge for ``path``, then what it teaches."""
    import nbformat

    title = title.strip()
    if not title:
        raise ValueError("title_cell needs a non-empty title, e.g. 'Lab 1: Introducing PyTorch'")
    if title.startswith("#"):
        raise ValueError(f"give the title without the leading '#' (it is added for you); got {title!r}")
    source = f"# {title}\n\n{badge_markdown(path, root=root)}\n\n{summary.strip()}".rstrip()
    return nbformat.v4.new_markdown_cell(source)


def install_cell() -> NotebookNode:
    """The second cell of a notebook: :data:`INSTALL_CELL` as a code cell."""
    import nbformat

    return nbformat.v4.new_code_cell(INSTALL_CELL)


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) that holds a
    ``pyproject.toml`` or ``.git``: the root that Colab paths and ``labs/`` are relative to."""
    here = Path(start if start is not None else Path.cwd()).absolute()
    if here.suffix == ".ipynb" or here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    raise FileNotFoundError(
        f"no repository root (a folder with pyproject.toml or .git) at or above {here}; "
        "run this inside your clone of the dpdl repository, or pass root=..."
    )


def repo_path(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> str:
    """``path`` relative to the repository root, with ``/`` separators (as GitHub URLs need).

    A relative ``path`` is taken from ``root`` when one is given, else from the working directory.
    """
    base = Path(os.path.abspath(root)) if root is not None else None
    absolute = Path(os.path.abspath(base / path if base is not None else path))
    base = base if base is not None else find_repo_root(absolute)
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        raise ValueError(f"{absolute} is not inside the repository root {base}; pass the right root=...") from None


def student_path(source: str | os.PathLike) -> Path:
    """Where the student copy of the instructor notebook ``source`` goes: ``student/<same name>`` beside it."""
    source = Path(source)
    if is_student_copy(source):
        raise ValueError(f"{source} is already a student copy; give the instructor source beside student/")
    return source.parent / STUDENT_FOLDER / source.name


def is_student_copy(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a generated student copy (it lies in a ``student/`` folder)."""
    return Path(path).parent.name == STUDENT_FOLDER


def discover_notebooks(root: str | os.PathLike | None = None, *, students: bool = False) -> list[Path]:
    """Every instructor notebook under ``labs/`` and ``exercises/`` of ``root``, sorted.

    With ``students=True`` the generated student copies are listed instead. Jupyter's
    ``.ipynb_checkpoints`` are never listed.
    """
    root = Path(root) if root is not None else find_repo_root()
    found = []
    for folder in NOTEBOOK_FOLDERS:
        for path in (root / folder).rglob("*.ipynb"):
            relative_parts = path.relative_to(root).parts
            if ".ipynb_checkpoints" in relative_parts:
                continue
            if (STUDENT_FOLDER in relative_parts[:-1]) == students:
                found.append(path)
    return sorted(found)


def read_notebook(path: str | os.PathLike) -> NotebookNode:
    """Read a notebook as nbformat v4, with a clear error when the file is not one."""
    import nbformat

    path = Path(path)
    if path.suffix != ".ipynb":
        raise ValueError(f"{path} is not a notebook (expected a .ipynb file)")
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise FileNotFoundError(f"no notebook at {path}") from None
    except Exception as err:  # nbformat raises several JSON/validation error types
        raise ValueError(f"{path} could not be read as a Jupyter notebook: {err}") from err


def notebook_bytes(nb: NotebookNode) -> bytes:
    """The exact bytes a notebook is saved as: nbformat's JSON (indent 1, sorted keys, UTF-8 text
    rather than ``\\u`` escapes, as Jupyter saves it) plus a final newline. Deterministic."""
    import nbformat

    text = nbformat.writes(nb)
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


def write_notebook(nb: NotebookNode, path: str | os.PathLike) -> bool:
    """Write ``nb`` to ``path`` atomically (a temporary file, then a rename), so an interrupted run
    never leaves half a notebook. Returns False, touching nothing, when the file already has these bytes."""
    path = Path(path)
    data = notebook_bytes(nb)
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
        if path.exists():
            os.chmod(tmp_name, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return True
