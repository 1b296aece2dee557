"""The ``dpdl`` command: a thin layer over functions that notebooks and tests call directly.

Each area registers its own subcommand from its own ``cli`` module (``dpdl data``, ``dpdl notebooks``,
``dpdl grade``), so this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from dpdl import __version__

# Modules that provide ``register(subparsers)``; each sets ``func(args) -> int`` on its parser.
SUBCOMMAND_MODULES = (
    "dpdl.doctor",
    "dpdl.data.cli",
    "dpdl.notebooks.cli",
    "dpdl.grading.cli",
    "dpdl.grading.selfcheck",
    "dpdl.release",
    "dpdl.site",
)
# What to install when a subcommand's module cannot be imported (students have no use for the dev extras).
_INSTALL_HINTS = {"check": "install Jupyter's notebook tools with: pip install nbformat nbclient ipykernel"}


def build_parser() -> argparse.ArgumentParser:
    # jsonschema (through nbformat, which `dpdl grade`/`check`/`notebooks` import) compiles a grammar for
    # IRI formats that notebooks never use when its optional rfc3987_syntax is installed: seconds of CPU
    # on every `dpdl` command. Hiding it leaves nbformat's validation as it is (the grading runner does the same).
    sys.modules.setdefault("rfc3987_syntax", None)
    parser = argparse.ArgumentParser(
        prog="dpdl",
        description="Labs and exercises for Differentiable Programming and Deep Learning.",
    )
    parser.add_argument("--version", action="version", version=f"dpdl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:  # e.g. `dpdl grade` without nbformat: the rest still works
            _register_unavailable(subparsers, module_name, err)
            continue
        module.register(subparsers)
    return parser


def _register_unavailable(subparsers, module_name: str, err: ModuleNotFoundError) -> None:
    """A subcommand whose extra dependency is missing explains how to install it instead of breaking ``dpdl``."""
    command = {
        "dpdl.grading.cli": "grade", "dpdl.grading.selfcheck": "check", "dpdl.notebooks.cli": "notebooks",
        "dpdl.data.cli": "data", "dpdl.release": "release",
    }.get(module_name, module_name.rsplit(".", 2)[-2])  # fmt: skip
    hint = _INSTALL_HINTS.get(command, "install the instructor tools with: pip install 'dpdl[dev]'")
    message = f"dpdl {command} needs the Python package {err.name!r}, which is not installed; {hint}"
    parser = subparsers.add_parser(command, help=f"(unavailable: needs {err.name})", add_help=False)

    def unavailable(args: argparse.Namespace) -> int:
        print(message, file=sys.stderr)
        return 2

    parser.set_defaults(func=unavailable, accepts_any_arguments=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "accepts_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
