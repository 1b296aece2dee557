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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpdl",
        description="Labs and exercises for Differentiable Programming and Deep Learning.",
    )
    parser.add_argument("--version", action="version", version=f"dpdl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
