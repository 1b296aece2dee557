"""The ``dpdl`` command: a thin layer over functions that notebooks and tests call directly.

Each area registers its own subcommand from its own ``cli`` module (``dpdl data``, ``dpdl notebooks``,
``dpdl grade``), so this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
# What to install when a command finds a package missing (students have no use for the dev extras).
_INSTALL_HINTS = {"check": "install Jupyter's notebook tools with: pip install nbformat nbclient ipykernel"}
_DEFAULT_HINT = "install the instructor tools with: pip install 'dpdl[dev]'"


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
    for module_name in SUBCOMMAND_MODULES:  # each imports only the standard library and dpdl (tests/test_cli.py)
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as err:  # e.g. `dpdl grade` without nbformat: say what to install
        if not err.name or err.name.partition(".")[0] == "dpdl":
            raise
        hint = _INSTALL_HINTS.get(args.command, _DEFAULT_HINT)
        print(
            f"dpdl {args.command} needs the Python package {err.name!r}, which is not installed; {hint}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
