"""``dpdl release OUT_DIR``: the public student repository, written fresh from the instructor's private source.

This repository is the instructor's source: it holds every solution, model answer and hidden check. What
students get is a separate tree, generated here, that holds none of them:

* the ``dpdl`` package, ``pyproject.toml`` (its ``[tool.dpdl] public-repo`` set to the release's
  repository), ``constraints.txt``, the dataset registry (``datasets/``) and a student ``README.md``;
* labs: the student copies (``labs/labN/student/``), and the instructor's lab sources beside them only
  with ``with_lab_solutions`` (labs are not assessed: the instructor decides), except solution cells
  that share a line with an exercise's solution (:func:`withheld_lab_solutions`), which stay stubbed;
* exercises: the student copies only (``exercises/labN/student/``), with no hidden check.

Every student copy is made by :func:`dpdl.notebooks.build.build_student_copy`, the same function as
``dpdl notebooks build``, so the same rules apply (stubs for solutions, placeholders for answers, hidden
checks dropped); before anything is written, each notebook is checked once more for solution markers and
hidden cells. Colab badges and install cells point at ``repo`` (default: the ``public-repo`` setting) on
``branch``. The layout mirrors the source's, so paths in badges are the same in both trees.

The tree is assembled in a temporary folder beside ``out_dir`` and moved into place at the end: an
interrupted release leaves nothing half-written, and an existing non-empty ``out_dir`` is never touched.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpdl.binder import with_binder_section, write_binder_files
from dpdl.notebooks import (
    BRANCH,
    PUBLIC_REPO_SETTING,
    check_repo_name,
    colab_url,
    discover_notebooks,
    find_repo_root,
    install_source,
    notebook_bytes,
    read_notebook,
    student_path,
)
from dpdl.notebooks import public_repo as _public_repo

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "ReleaseError",
    "public_repo",
    "write_release",
    "release_notebooks",
    "withheld_lab_solutions",
    "student_readme",
    "register",
]

# Files of the source's root that the release carries as they are (pyproject.toml is rewritten).
ROOT_FILES = ("constraints.txt", "LICENSE", ".gitignore")
# Folders copied whole, without caches: the package and the dataset registry it installs.
COPIED_FOLDERS = ("dpdl", "datasets")
_SKIPPED_NAMES = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
# A lab solution line this long (whitespace normalised) that is also an exercise's is not published.
MIN_SECRET_LINE = 30
_SOLUTION_MARKER_RE = re.compile(r"^[ \t]*### (?:BEGIN|END) SOLUTION", re.M)
_ANSWER_MARKER_RE = re.compile(r"^[ \t]*(?:<!--[ \t]*)?(?:BEGIN|END) ANSWER", re.M)
_SETTING_LINE_RE = re.compile(rf"^(?P<key>{re.escape(PUBLIC_REPO_SETTING)}\s*=\s*)\"[^\"\n]*\"", re.M)


class ReleaseError(RuntimeError):
    """The release cannot be written (the folder is not empty, a notebook would leak, the source is
    incomplete). The message says what and how to fix it; nothing was written."""


def public_repo(root: str | os.PathLike | None = None) -> str:
    """The public student repository (``OWNER/NAME``): ``[tool.dpdl] public-repo`` in ``root``'s
    ``pyproject.toml`` (default: the checkout this dpdl is imported from). See :func:`dpdl.notebooks.public_repo`."""
    return _public_repo(root)


def write_release(
    out_dir: str | os.PathLike,
    *,
    repo: str | None = None,
    branch: str | None = None,
    with_lab_solutions: bool = False,
    root: str | os.PathLike | None = None,
) -> Path:
    """Write the student release of the course source at ``root`` (default: the repository around the
    working directory) into ``out_dir``, which must not exist or be empty. Returns ``out_dir``.

    ``repo`` (``OWNER/NAME``, default the source's ``public-repo`` setting) and ``branch`` (default
    ``main``) are where students will find the release: badges, install cells, the README and the
    release's own ``public-repo`` setting point there.
    """
    out_dir = Path(out_dir)
    root = Path(root) if root is not None else find_repo_root()
    repo = check_repo_name(repo, where="--repo") if repo is not None else public_repo(root)
    branch = branch or BRANCH
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or branch.startswith(("-", "/")) or ".." in branch:
        raise ReleaseError(f"--branch must be a git branch name such as main or 2027; got {branch!r}")
    _check_out_dir(out_dir)
    for needed in ("pyproject.toml", *COPIED_FOLDERS):
        if not (root / needed).exists():
            raise ReleaseError(f"{root} has no {needed}: give the root of the course's source repository")

    notebooks = release_notebooks(root, repo=repo, branch=branch, with_lab_solutions=with_lab_solutions)
    if not any(path.parts[0] == "exercises" for path in notebooks):
        raise ReleaseError(f"no exercise notebooks under {root / 'exercises'}; is {root} the course's source?")

    out_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.absolute().parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's folder is private; a release is meant to be shared
        for folder in COPIED_FOLDERS:
            _copy_tree(root / folder, staging / folder)
        for name in ROOT_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, staging / name)
        pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
        (staging / "pyproject.toml").write_text(_with_public_repo(pyproject, repo), encoding="utf-8")
        readme = student_readme(notebooks, repo=repo, branch=branch)
        # Binder and JupyterHub (dpdl.binder): the repo2docker files, and a launch badge in the README.
        write_binder_files(staging)
        readme = with_binder_section(readme, repo=repo, branch=branch)
        (staging / "README.md").write_text(readme, encoding="utf-8")
        for relative, nb in notebooks.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(notebook_bytes(nb))
        _check_out_dir(out_dir)  # still empty: nothing appeared while we worked
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked just above
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def release_notebooks(
    root: str | os.PathLike, *, repo: str, branch: str = BRANCH, with_lab_solutions: bool = False
) -> dict[Path, NotebookNode]:
    """Every notebook of the release, by its path relative to the release's root, in memory.

    Student copies of every lab and exercise (built by ``build_student_copy``), plus the labs' instructor
    sources when ``with_lab_solutions``, all pointing at ``repo`` and ``branch``. Raises
    :class:`ReleaseError` when a notebook still holds a solution marker or a hidden check.
    """
    from dpdl.notebooks.build import build_student_copy, retarget

    root = Path(root)
    notebooks: dict[Path, NotebookNode] = {}
    secrets = _exercise_secret_lines(root) if with_lab_solutions else {}
    for source in discover_notebooks(root):
        relative_source = source.relative_to(root)
        student = build_student_copy(source, repo=repo, branch=branch, root=root)
        notebooks[student_path(relative_source)] = student
        if with_lab_solutions and relative_source.parts[0] == "labs":
            lab = retarget(read_notebook(source), source, repo=repo, branch=branch, root=root)
            stubbed = {cell.id: cell for cell in student.cells}
            for index, _ in _withhold_exercise_solutions(lab, secrets):
                lab.cells[index] = copy.deepcopy(stubbed[lab.cells[index].id])
            notebooks[relative_source] = lab
    for relative, nb in notebooks.items():
        _refuse_leaks(relative, nb, instructor_lab=not _is_student_path(relative))
    return dict(sorted(notebooks.items()))


def withheld_lab_solutions(root: str | os.PathLike) -> list[str]:
    """The lab solution cells that ``with_lab_solutions`` still publishes stubbed, because a line of their
    solution (at least :data:`MIN_SECRET_LINE` characters, whitespace aside) is also a line of an
    exercise's solution, model answer or hidden check: one line each, naming both."""
    root = Path(root)
    secrets = _exercise_secret_lines(root)
    found = []
    for source in discover_notebooks(root):
        if source.relative_to(root).parts[0] == "labs":
            for index, exercise in _withhold_exercise_solutions(read_notebook(source), secrets):
                found.append(f"{source.relative_to(root)}, cell {index}: shares a solution line with {exercise}")
    return found


def student_readme(notebooks: dict[Path, Any] | list[Path], *, repo: str, branch: str = BRANCH) -> str:
    """The release's README.md: set-up, Colab, data, the notebooks (with Colab links) and how to check
    an exercise before handing it in."""
    paths = sorted(Path(path) for path in notebooks)
    labs = [path for path in paths if path.parts[0] == "labs" and _is_student_path(path)]
    exercises = [path for path in paths if path.parts[0] == "exercises" and _is_student_path(path)]
    solutions = [path for path in paths if path.parts[0] == "labs" and not _is_student_path(path)]
    name = repo.split("/", 1)[1]
    clone_branch = "" if branch == BRANCH else f" --branch {branch}"
    install_line = install_source(repo, branch).splitlines()[-1].strip()

    def rows(paths: list[Path]) -> str:
        return "\n".join(
            f"| [{path.stem}]({path.as_posix()}) | [open]({colab_url(path, root='.', repo=repo, branch=branch)}) |"
            for path in paths
        )

    solutions_note = (
        "\nThe instructor's lab notebooks, with solutions and reference outputs, lie beside each `student/` "
        "folder: try the task first, then compare.\n"
        if solutions
        else ""
    )
    return f"""# Differentiable Programming and Deep Learning: labs and exercises

The notebooks of the course's labs and assessed exercises, and `dpdl`, the helper package they import
(data, devices, seeds, plots, training loops). Run them on Colab or on your own machine, CPU or GPU.

## Set up

Python 3.10 or newer:

```bash
git clone{clone_branch} https://github.com/{repo}.git && cd {name}
python3 -m venv .venv && . .venv/bin/activate
pip install -c constraints.txt -e ".[dev]"
dpdl doctor
```

`constraints.txt` pins the versions the notebooks were tested with. `dpdl doctor` prints the versions you
got, whether a GPU (CUDA or Apple's MPS) is used, and where datasets are cached.

## On Colab

Each notebook starts with an *Open in Colab* badge, and its first code cell installs `dpdl` from this
repository, on Colab only (`{install_line}`). For the later labs choose *Runtime → Change runtime type →
GPU*. Colab does not keep your work: *File → Save a copy in Drive*.

## Data

Datasets download from their official sources on first use, are checked against the checksums in
[`datasets/registry.json`](datasets/README.md) and cached (`DPDL_DATA_DIR`, default `~/.cache/dpdl`).
`dpdl data list` shows them, `dpdl data fetch --all` downloads them ahead of a lab. Without internet,
point `DPDL_DATA_MIRROR` at a folder holding the same files.

## Labs

Your code goes where a cell says `# YOUR CODE HERE`: the `raise NotImplementedError(...)` there names the
task. *Run All* runs up to the first such cell; each check cell after a task tells you whether it works.
{solutions_note}
| notebook | Colab |
|---|---|
{rows(labs)}

## Assessed exercises

Each exercise is done alone and handed in as its `.ipynb` file. Write code only inside the answer cells
(the ones with `# YOUR CODE HERE`) and your written answers in place of *Your answer here.*: the grader
takes those cells from your file and runs them with its own copy of the rest, including hidden checks
that test your functions on inputs you have not seen.

| exercise | Colab |
|---|---|
{rows(exercises)}

Before handing in, check your notebook:

```bash
dpdl check exercises/lab1/student/lab1_exercise.ipynb
```

It says whether the file can be graded, runs it in a fresh kernel, prints each visible check as passed or
failed with its message, your visible points so far and which written answers are still empty. It exits
with status 0 only when every visible check passes. On Colab, run `!dpdl check NOTEBOOK.ipynb` in a cell,
with the path of your saved notebook.

`git pull` brings corrections to the notebooks: commit your own work first, or keep it in a copy.
"""


def register(subparsers: Any) -> None:
    """Add ``dpdl release`` (called by ``dpdl/cli.py``)."""
    parser = subparsers.add_parser(
        "release",
        help="write the student release (a new public repository) from this instructor source",
        description=(
            "Write a fresh, self-contained tree for students into OUT_DIR (which must not exist or be empty):\n"
            "the dpdl package, pyproject.toml, constraints.txt, the dataset registry, a student README, the\n"
            "student copies of the labs and exercises. Never an exercise's solutions, model answers or hidden\n"
            "checks; the labs' instructor sources only with --with-lab-solutions. Badges and install cells\n"
            f"point at --repo (default: [tool.dpdl] {PUBLIC_REPO_SETTING} in pyproject.toml)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new or empty folder to write the release into")
    parser.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help=f"the public GitHub repository students use (default: the {PUBLIC_REPO_SETTING} setting)",
    )
    parser.add_argument("--branch", metavar="BRANCH", help=f"its branch (default: {BRANCH})")
    parser.add_argument(
        "--with-lab-solutions",
        action="store_true",
        help="also publish the labs' instructor notebooks (never the exercises')",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        out_dir = write_release(
            args.out_dir, repo=args.repo, branch=args.branch, with_lab_solutions=args.with_lab_solutions
        )
    except ImportError as err:
        print(
            f'dpdl release needs the instructor tools ({err.name}); install them with: pip install -e ".[dev]"',
            file=sys.stderr,
        )
        return 2
    except (ReleaseError, LookupError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    count = sum(1 for _ in out_dir.rglob("*.ipynb"))
    print(f"wrote {out_dir}: {count} notebooks, in {time.perf_counter() - start:.1f} s")
    if args.with_lab_solutions:
        for line in withheld_lab_solutions(find_repo_root()):
            print(f"kept as a stub (it would reveal an exercise): {line}")
    print(f"publish it as its own repository: cd {out_dir} && git init && git add . && git commit -m 'Release'")
    return 0


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _exercise_secret_lines(root: Path) -> dict[str, str]:
    """Every non-trivial line of the exercises' solutions, model answers and hidden checks, normalised,
    mapped to the exercise it comes from; less the lines that some notebook shows students anyway
    (outside its solutions and hidden checks): a loop over a model's parameters, say."""
    from dpdl.notebooks.build import find_blocks

    secrets: dict[str, str] = {}
    public: set[str] = set()
    for source in discover_notebooks(root):
        relative = source.relative_to(root)
        for cell in read_notebook(source).cells:
            lines = cell.source.split("\n")
            if cell.get("metadata", {}).get("dpdl", {}).get("role") == "hidden":
                hidden = set(range(len(lines)))
            else:
                hidden = {
                    number
                    for block in find_blocks(cell.source, cell.cell_type)
                    for number in range(block.begin + 1, block.end)
                }
            public.update(_normalise(line) for number, line in enumerate(lines) if number not in hidden)
            if relative.parts[0] != "exercises":
                continue
            for number in sorted(hidden):
                if len(_normalise(lines[number])) >= MIN_SECRET_LINE:
                    secrets.setdefault(_normalise(lines[number]), relative.as_posix())
    return {line: exercise for line, exercise in secrets.items() if line not in public}


def _withhold_exercise_solutions(nb: NotebookNode, secrets: dict[str, str]) -> list[tuple[int, str]]:
    """``(cell index, exercise)`` of the cells of a lab source whose solution blocks share a line with an
    exercise's secrets: those cells are published as in the student copy."""
    from dpdl.notebooks.build import find_blocks

    found = []
    for index, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        for block in find_blocks(cell.source, cell.cell_type):
            shared = [
                secrets[key] for line in lines[block.begin + 1 : block.end] if (key := _normalise(line)) in secrets
            ]
            if shared:
                found.append((index, shared[0]))
                break
    return found


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ReleaseError(f"{out_dir} exists and is not a folder; give a new or empty folder for the release")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ReleaseError(
            f"{out_dir} is not empty; dpdl release never overwrites anything: give a new or empty folder "
            "(to update a published release, write a fresh one and copy it over your clone's files)"
        )


def _copy_tree(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` without caches, compiled files, dot-files or links."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part in _SKIPPED_NAMES or part.startswith(".") for part in relative.parts):
            continue
        if path.is_symlink() or path.suffix in _SKIPPED_SUFFIXES or path.name.endswith(".egg-info"):
            continue
        if path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)


def _with_public_repo(pyproject: str, repo: str) -> str:
    """The source's pyproject.toml with ``[tool.dpdl] public-repo`` set to ``repo`` (only that line changes)."""
    new, count = _SETTING_LINE_RE.subn(lambda match: f'{match.group("key")}"{repo}"', pyproject)
    if count != 1:
        raise ReleaseError(
            f'pyproject.toml must set [tool.dpdl] {PUBLIC_REPO_SETTING} = "OWNER/NAME" exactly once; '
            f"found {count} such lines"
        )
    return new


def _is_student_path(path: Path) -> bool:
    return len(path.parts) >= 2 and path.parts[-2] == "student"


def _refuse_leaks(relative: Path, nb: NotebookNode, *, instructor_lab: bool) -> None:
    """A last look before publishing: no hidden check anywhere, no solution or answer markers in a copy."""
    for index, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("dpdl", {}).get("role") == "hidden":
            raise ReleaseError(
                f"{relative}, cell {index}: a hidden check would be published; "
                "student copies must drop hidden cells (dpdl.notebooks.build)"
            )
        if instructor_lab:
            continue
        marker = _SOLUTION_MARKER_RE if cell.cell_type == "code" else _ANSWER_MARKER_RE
        if marker.search(cell.source):
            raise ReleaseError(f"{relative}, cell {index}: a solution or answer marker is left in a student copy")
