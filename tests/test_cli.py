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


def test_a_subcommand_with_a_missing_dependency_explains_itself_and_the_rest_works(monkeypatch, capsys):
    import dpdl.cli as cli

    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("dpdl.doctor", "dpdl.no_such_module_for_test.cli"))
    monkeypatch.setitem(__import__("sys").modules, "dpdl.no_such_module_for_test", None)
    assert cli.main(["no_such_module_for_test", "--anything"]) == 2
    assert "pip install 'dpdl[dev]'" in capsys.readouterr().err
    monkeypatch.setenv("DPDL_DEVICE", "cpu")
    assert cli.main(["doctor"]) == 0
