import subprocess
import sys

import pytest

from dpdl import __version__
from dpdl.cli import SUBCOMMAND_MODULES, main


def test_no_command_prints_help_and_exits_two(capsys):
    assert main([]) == 2
    assert "usage: dpdl" in capsys.readouterr().out


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_every_registered_subcommand_has_help(capsys):
    for module in SUBCOMMAND_MODULES:
        assert module.startswith("dpdl.")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("doctor", "data", "notebooks", "grade"):
        assert command in out


def test_python_dash_m_dpdl_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "dpdl", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def test_a_command_that_finds_a_package_missing_says_what_to_install(monkeypatch, capsys):
    import argparse

    import dpdl.cli as cli

    def needs_nbformat(args):
        raise ModuleNotFoundError("No module named 'nbformat'", name="nbformat")

    real_parser = cli.build_parser

    def parser_with_a_missing_package():
        parser = real_parser()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices["grade"].set_defaults(func=needs_nbformat)
        subparsers.choices["check"].set_defaults(func=needs_nbformat)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_a_missing_package)
    assert cli.main(["grade", "merge", "a.csv", "b.csv"]) == 2
    assert "dpdl grade needs the Python package 'nbformat', which is not installed" in capsys.readouterr().err
    assert cli.main(["check", "x.ipynb"]) == 2
    assert "pip install nbformat nbclient ipykernel" in capsys.readouterr().err


# What a student's `pip install dpdl` has: torch and friends, but not the instructor tools. The parser (every
# `--help`) must need none of these, nor torch: commands import what they need when they run.
THIRD_PARTY = (
    "torch",
    "numpy",
    "nbformat",
    "nbclient",
    "nbval",
    "jupyter_client",
    "ipykernel",
    "pytest",
    "tqdm",
    "matplotlib",
    "sphinx",
    "myst_nb",
    "playwright",
    "psutil",
    "jsonschema",
    "IPython",
)


def test_every_help_works_without_any_third_party_package():
    blocker = (
        "import sys\n"
        f"for name in {THIRD_PARTY!r}:\n"
        "    sys.modules[name] = None\n"
        "from dpdl.cli import SUBCOMMAND_MODULES, build_parser, main\n"
        "parser = build_parser()\n"
        "commands = sorted(next(a for a in parser._actions if a.dest == 'command').choices)\n"
        "assert len(commands) >= len(SUBCOMMAND_MODULES), commands\n"
        "for command in commands:\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, command\n"
        "print(' '.join(commands))\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"grade", "check", "data", "notebooks", "doctor"} <= set(result.stdout.split())
