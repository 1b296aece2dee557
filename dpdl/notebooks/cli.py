"""``dpdl notebooks run|build|check``: the commands instructors run before committing a notebook.

A thin layer over :mod:`dpdl.notebooks.run`, :mod:`.build` and :mod:`.conventions`. Those modules (and
nbformat/nbclient, development requirements) are imported only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dpdl.notebooks.run import CELL_TIMEOUT

__all__ = ["register"]

_MISSING = (
    "dpdl notebooks needs nbformat, nbclient and ipykernel (development requirements); "
    'install them with: pip install -e ".[dev]"'
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "notebooks",
        help="run notebooks for commit, build student copies, check conventions",
        description="Tools for the lab and exercise notebooks (see DEVELOPERS.md, 'Notebooks').",
    )
    commands = parser.add_subparsers(dest="notebooks_command", metavar="ACTION", required=True)

    run = commands.add_parser(
        "run",
        help="execute notebooks top to bottom in a fresh kernel and save them cleaned",
        description="Execute each notebook in a fresh python3 kernel (CI=1, DPDL_PROGRESS=0, working "
        "directory = its folder), strip widget state and personal metadata, save it in place.",
    )
    run.add_argument("paths", nargs="+", metavar="PATH", help="notebooks to execute")
    run.add_argument(
        "--timeout", type=int, default=CELL_TIMEOUT, metavar="S", help="seconds allowed per cell (default %(default)s)"
    )
    run.set_defaults(func=_run)

    build = commands.add_parser(
        "build",
        help="generate the student copies (student/<name> beside each source)",
        description="Generate student copies: solutions replaced by stubs. Without PATHS, every notebook "
        "under labs/ and exercises/ (student/ folders excluded). A copy a person has edited "
        "is never overwritten without --force.",
    )
    build.add_argument("paths", nargs="*", metavar="PATH", help="instructor notebooks (default: all)")
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing student copies that are missing, stale or edited (CI)",
    )
    build.add_argument(
        "--force",
        action="store_true",
        help="overwrite student copies even where a person has edited them (their edits are lost)",
    )
    build.set_defaults(func=_build)

    check = commands.add_parser(
        "check",
        help="check notebooks against the conventions of DEVELOPERS.md",
        description="Check notebooks against the conventions. Without PATHS, every instructor notebook "
        "and student copy under labs/ and exercises/.",
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="notebooks to check (default: all)")
    check.set_defaults(func=_check)


def _run(args: argparse.Namespace) -> int:
    try:
        from dpdl.notebooks.run import NotebookExecutionError, execute_notebook
    except ImportError:
        print(_MISSING, file=sys.stderr)
        return 2
    failed = []
    total = 0.0
    for path in args.paths:
        try:
            total += execute_notebook(path, timeout=args.timeout)
        except (NotebookExecutionError, RuntimeError, OSError, ValueError) as err:  # kernel start failures too
            print(f"FAILED {err}", file=sys.stderr)
            failed.append(path)
    if len(args.paths) > 1:
        print(f"{len(args.paths) - len(failed)} of {len(args.paths)} notebooks executed in {total:.1f} s")
    if failed:
        print("not executed (files unchanged): " + ", ".join(map(str, failed)), file=sys.stderr)
    return 1 if failed else 0


def _build(args: argparse.Namespace) -> int:
    try:
        from dpdl.notebooks import discover_notebooks, find_repo_root
        from dpdl.notebooks.build import (
            EditedCopyError,
            MarkerError,
            orphaned_student_copies,
            stale_student_copies,
            write_student_copy,
        )
    except ImportError:
        print(_MISSING, file=sys.stderr)
        return 2
    try:
        root = None if args.paths else find_repo_root()
        sources = [Path(p) for p in args.paths] if args.paths else _relative(discover_notebooks(root))
        if args.check:
            problems = stale_student_copies(sources)
            if root is not None:
                problems += [
                    f"{path}: no instructor source beside student/ (delete it or restore the source)"
                    for path in _relative(orphaned_student_copies(root))
                ]
            for problem in problems:
                print(problem)
            print(f"{len(sources)} student copies checked, {len(problems)} problems")
            return 1 if problems else 0
        refused = 0
        for source in sources:
            try:
                print(f"{source} -> {write_student_copy(source, force=args.force)}")
            except EditedCopyError as err:  # the others are still built
                print(f"refused: {err}", file=sys.stderr)
                refused += 1
    except (MarkerError, FileNotFoundError, ValueError, LookupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not sources:
        print("no notebooks found under labs/ or exercises/")
    return 1 if refused else 0


def _check(args: argparse.Namespace) -> int:
    try:
        from dpdl.notebooks import discover_notebooks, find_repo_root
        from dpdl.notebooks.conventions import check_notebook
    except ImportError:
        print(_MISSING, file=sys.stderr)
        return 2
    try:
        if args.paths:
            paths = [Path(p) for p in args.paths]
        else:
            root = find_repo_root()
            paths = _relative(discover_notebooks(root) + discover_notebooks(root, students=True))
        problems = [(path, problem) for path in paths for problem in check_notebook(path)]
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path, problem in problems:
        print(f"{path}: {problem}")
    bad = len({path for path, _ in problems})
    print(f"{len(paths)} notebooks checked, {bad} with problems")
    return 1 if problems else 0


def _relative(paths: list[Path]) -> list[Path]:
    """Paths as the user would type them: relative to the working directory."""
    return [Path(os.path.relpath(path)) for path in paths]
