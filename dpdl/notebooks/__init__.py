"""What every lab notebook shares: where it lives, how it opens on Colab, its first two cells.

Notebook authors call :func:`title_cell` and :func:`install_cell`; ``dpdl notebooks run|build|check``
(:mod:`dpdl.notebooks.run`, :mod:`.build`, :mod:`.conventions`) rely on the paths and I/O below.
DEVELOPERS.md ("Notebooks") gives the conventions these helpers encode.

``nbformat`` and ``nbclient`` are development requirements (``pip install -e ".[dev]"``), so they are
imported inside the functions that need them: ``import dpdl`` never needs them.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "REPO",
    "BRANCH",
    "PUBLIC_REPO_SETTING",
    "INSTALL_CELL",
    "INSTALL_URL_RE",
    "public_repo",
    "check_repo_name",
    "install_source",
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

# The branch that Colab badges open and install cells install from, unless told otherwise.
BRANCH = "main"
# Where the public student repository is named: the one place an instructor who forks the course edits.
PUBLIC_REPO_SETTING = "public-repo"  # in pyproject.toml, under [tool.dpdl]

# Folders (relative to the repository root) that hold instructor sources; student copies go into a
# ``student/`` folder beside each source.
NOTEBOOK_FOLDERS = ("labs", "exercises")
STUDENT_FOLDER = "student"

COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

_ROOT_MARKERS = ("pyproject.toml", ".git")
_REPO_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
# The pip line of an install cell and the GitHub repository (and branch) it installs from.
INSTALL_URL_RE = re.compile(
    r"git\+https://github\.com/(?P<repo>[^\s\"'@]+?)(?:\.git)?(?:@(?P<branch>[^\s\"']+))?(?=[\s\"']|$)"
)


def public_repo(root: str | os.PathLike | None = None) -> str:
    """The public student repository, ``OWNER/NAME``, that Colab badges open and install cells install
    from: ``[tool.dpdl] public-repo`` in ``root``'s ``pyproject.toml``.

    ``root`` defaults to the checkout this ``dpdl`` is imported from (the instructor's source, or a
    student release, which carries the same setting). Raises ``LookupError`` when there is no such
    setting (e.g. ``dpdl`` installed from a wheel) and ``ValueError`` when it is not ``OWNER/NAME``.
    """
    pyproject = Path(root if root is not None else _PACKAGE_CHECKOUT) / "pyproject.toml"
    where = f"[tool.dpdl] {PUBLIC_REPO_SETTING} in {pyproject}"
    try:
        settings = _toml_load(pyproject.read_bytes())
    except FileNotFoundError:
        raise LookupError(
            f"no {pyproject}, so no {PUBLIC_REPO_SETTING} setting; run this in a checkout of the "
            "course repository, or pass the repository (OWNER/NAME) explicitly"
        ) from None
    value = settings.get("tool", {}).get("dpdl", {}).get(PUBLIC_REPO_SETTING)
    if value is None:
        raise LookupError(
            f'{where} is missing; add `{PUBLIC_REPO_SETTING} = "OWNER/NAME"` (the public student repository on GitHub)'
        )
    return check_repo_name(value, where=where)


def check_repo_name(repo: object, *, where: str = "the repository") -> str:
    """``repo`` if it is a GitHub ``OWNER/NAME``; otherwise a ``ValueError`` saying what is wrong."""
    if not isinstance(repo, str) or not _REPO_NAME_RE.match(repo) or repo.endswith((".git", ".")):
        raise ValueError(f"{where} must be a GitHub repository written OWNER/NAME (e.g. my-course/dpdl); got {repo!r}")
    return repo


def install_source(repo: str | None = None, branch: str = BRANCH) -> str:
    """The second cell of every notebook: installs dpdl from ``repo`` (default :data:`REPO`) on Colab
    only, from ``branch`` when it is not :data:`BRANCH`. A no-op elsewhere, where students follow the
    README."""
    url = f"git+https://github.com/{_repo_or_setting(repo)}" + (f"@{branch}" if branch != BRANCH else "")
    return (
        "# Colab only: install dpdl (elsewhere follow the README's set-up).\n"
        "import sys\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "dpdl @ {url}"'
    )


def _repo_or_setting(repo: str | None) -> str:
    if repo is not None:
        return check_repo_name(repo, where="repo")
    if REPO is None:
        return public_repo()  # raises, saying why there is no setting
    return REPO


def _toml_load(data: bytes) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(data.decode("utf-8"))


def _package_repo() -> str | None:
    try:
        return public_repo()
    except LookupError:
        return None


_PACKAGE_CHECKOUT = Path(__file__).resolve().parents[2]
# The GitHub repository (OWNER/NAME) of the student release, read once from pyproject.toml; None when
# dpdl runs without its checkout (installed from a wheel), where the functions below need ``repo=``.
REPO: str | None = _package_repo()
# The second cell of every notebook, as it installs from :data:`REPO`.
INSTALL_CELL: str | None = install_source() if REPO is not None else None


def colab_url(
    path: str | os.PathLike, *, root: str | os.PathLike | None = None, repo: str | None = None, branch: str = BRANCH
) -> str:
    """The URL that opens ``path`` (a notebook in this repository) on Colab, from ``repo`` (default
    :data:`REPO`, the public student repository) on GitHub, branch ``branch``."""
    return (
        f"https://colab.research.google.com/github/{_repo_or_setting(repo)}/blob/{branch}/{repo_path(path, root=root)}"
    )


def badge_markdown(
    path: str | os.PathLike, *, root: str | os.PathLike | None = None, repo: str | None = None, branch: str = BRANCH
) -> str:
    """The *Open in Colab* badge (markdown) for the notebook at ``path``, as the title cell shows it.

    ``path`` need not exist yet. A relative path is taken from the working directory (so inside a
    notebook ``badge_markdown("lab1_tensors.ipynb")`` works), or from ``root`` when it is given.
    """
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(path, root=root, repo=repo, branch=branch)})"


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


def install_cell(repo: str | None = None) -> NotebookNode:
    """The second cell of a notebook: :func:`install_source` as a code cell."""
    import nbformat

    return nbformat.v4.new_code_cell(install_source(repo))


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
