"""Every notebook under labs/ and exercises/ follows DEVELOPERS.md's conventions (while there are none
yet, the fixture lab stands in), and each convention check catches what it is meant to catch."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_output

from dpdl.notebooks import (
    INSTALL_CELL,
    NOTEBOOK_FOLDERS,
    REPO,
    colab_url,
    discover_notebooks,
    repo_path,
)
from dpdl.notebooks import cli as notebooks_cli
from dpdl.notebooks.build import write_student_copy
from dpdl.notebooks.conventions import check_notebook

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "notebooks"
FIXTURE = FIXTURES / "lab_conventional.ipynb"
REPO_NOTEBOOKS = discover_notebooks(ROOT) + discover_notebooks(ROOT, students=True)
# With no labs committed yet, check the fixture lab so that this test never silently collects nothing.
CHECKED = REPO_NOTEBOOKS or [FIXTURE]


def test_discovery_finds_the_labs_folder_and_every_notebook_in_it():
    assert (ROOT / "labs").is_dir(), f"labs/ is missing from the repository root {ROOT}"
    found = {path.resolve() for path in discover_notebooks(ROOT) + discover_notebooks(ROOT, students=True)}
    on_disk = {
        path.resolve()
        for folder in NOTEBOOK_FOLDERS
        for path in (ROOT / folder).rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts
    }
    assert found == on_disk


@pytest.mark.parametrize("path", CHECKED, ids=lambda path: repo_path(path, root=ROOT))
def test_notebook_follows_the_conventions(path):
    problems = check_notebook(path, root=ROOT)
    assert not problems, f"{repo_path(path, root=ROOT)}:\n  " + "\n  ".join(problems)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """The fixture lab copied into a repository at tmp_path, at the same path (so its badge fits)."""
    (tmp_path / "pyproject.toml").write_text("")
    path = tmp_path / FIXTURE.relative_to(ROOT)
    path.parent.mkdir(parents=True)
    shutil.copy(FIXTURE, path)
    return path


def _edit(path: Path, change) -> None:
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)


def _index_of(nb, text: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if text in cell.source)


def _set_source(text: str, new: str):
    def change(nb):
        nb.cells[_index_of(nb, text)].source = new

    return change


def _swap_title_for_code(nb):
    nb.cells[0] = new_code_cell("print('no title')")


def _without_guard(nb):
    nb.cells[1].source = f'%pip install -q "dpdl @ git+https://github.com/{REPO}"'


def _install_from_elsewhere(nb):
    nb.cells[1].source = INSTALL_CELL.replace(REPO, "someone-else/dpdl")


def _pip_outside_guard(nb):
    nb.cells[1].source = INSTALL_CELL + "\n!pip install numpy"


def _renumber(nb):
    nb.cells[4].execution_count = 7


def _no_outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []


def _colab_metadata(nb):
    nb.metadata["colab"] = {"provenance": []}
    nb.cells[2].metadata["executionInfo"] = {"elapsed": 5}


def _widget_output(nb):
    nb.cells[2].outputs.append(new_output("display_data", {"application/vnd.jupyter.widget-view+json": {}}))


def _svg_output(nb):
    nb.cells[_index_of(nb, "plt.plot")].outputs.append(new_output("display_data", {"image/svg+xml": "<svg/>"}))


def _unmarked_error(nb):
    nb.cells[-1].source = 'sigmoid("a string is not a tensor")'
    del nb.cells[-1].metadata["tags"]


def _untagged_raise(nb):
    del nb.cells[_index_of(nb, "NBVAL_RAISES_EXCEPTION")].metadata["tags"]


def _tag_without_comment(nb):
    nb.cells[_index_of(nb, "final loss")].metadata["tags"] = ["raises-exception"]


def _old_format(nb):
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]


def _kernel(nb):
    nb.metadata.kernelspec.name = "conda-env-dpdl-py"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_swap_title_for_code, "cell 0: the first cell must be the markdown title cell"),
        (_set_source("Open In Colab", "# A title without a badge"), "cell 0: the title cell has no Colab badge"),
        (
            _set_source(
                "Open In Colab",
                "[![Open In Colab](x.svg)](https://colab.research.google.com/github/"
                f"{REPO}/blob/main/labs/lab1/lab1_other.ipynb)",
            ),
            f"cell 0: the Colab badge opens https://colab.research.google.com/github/{REPO}/blob/main/labs/",
        ),
        (
            _install_from_elsewhere,
            f"cell 1: installs dpdl from github.com/someone-else/dpdl, not from the public repository {REPO}",
        ),
        (_without_guard, 'cell 1: the install cell has no `if "google.colab" in sys.modules:` guard'),
        (_pip_outside_guard, "cell 1, line 5: `!pip install numpy` installs outside Colab too"),
        (
            _set_source("google.colab", 'import sys\nif "google.colab" in sys.modules:\n    pass'),
            "cell 1: the Colab guard installs nothing",
        ),
        (_renumber, "cell 4: has execution count 7, expected 3"),
        (_no_outputs, "the notebook has no outputs"),
        (_set_source("plt.plot", "plt.plot(history);"), "ends with ';' to hide its value; assign it to `_`"),
        (_colab_metadata, "notebook metadata holds widget state or Colab/editor metadata (colab)"),
        (_colab_metadata, "cell 2: metadata holds Colab/editor clutter or timings (executionInfo)"),
        (_widget_output, "cell 2: an output is a widget"),
        (_kernel, "kernelspec name is 'conda-env-dpdl-py', not 'python3'"),
        (
            _set_source("seed_everything(0)", "import torch\nimport dpdl\ndevice = dpdl.device()"),
            "cell 7: trains before any seed_everything(...) call",
        ),
        (_set_source("final loss", "w = torch.zeros(1).cuda()"), "calls .cuda(), which fails without an NVIDIA GPU"),
        (_svg_output, "has image/svg+xml output; figures are PNG"),
        (
            _set_source("1 / (1 + torch.exp(-x))", "def sigmoid(x):\n    ### BEGIN SOLUTION\n    return x"),
            "without a matching '### END SOLUTION'",
        ),
        (_unmarked_error, "the committed output is an error"),
        (_untagged_raise, "starts with `# NBVAL_RAISES_EXCEPTION` but lacks the `raises-exception` cell tag"),
        (_tag_without_comment, "tagged `raises-exception` without `# NBVAL_RAISES_EXCEPTION`"),
        (_old_format, "cells have no ids"),
    ],
)
def test_each_broken_convention_is_reported_with_a_fix(lab, change, expected, monkeypatch):
    monkeypatch.chdir(lab.parent)
    assert check_notebook(lab.name) == []
    _edit(lab, change)
    problems = check_notebook(lab)
    assert any(expected in problem for problem in problems), problems


def test_semicolon_check_ignores_semicolons_inside_strings_and_comments(lab):
    _edit(lab, _set_source("plt.plot", '_ = plt.plot(history)\nprint("a;")  # done;'))
    assert check_notebook(lab) == []


def test_student_copy_passes_and_is_flagged_when_stale_edited_or_orphaned(lab):
    student = write_student_copy(lab)
    assert check_notebook(student) == []
    assert colab_url(student) in nbformat.read(student, as_version=4).cells[0].source

    _edit(lab, _set_source("final loss", "print('changed')"))
    assert any(problem.startswith("stale: differs from a fresh build") for problem in check_notebook(student))

    write_student_copy(lab)
    _edit(student, _untagged_raise)
    problems = check_notebook(student)
    assert any("lacks the `raises-exception` cell tag" in problem for problem in problems)
    assert any(problem.startswith("edited by a person since it was built") for problem in problems)

    write_student_copy(lab, force=True)
    _edit(student, _set_source("YOUR CODE HERE", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"))
    assert any("markers left in a student copy" in problem for problem in check_notebook(student))

    lab.unlink()
    assert any(problem.startswith("no instructor source") for problem in check_notebook(student))


def _copy_into_repo(lab: Path, relpath: str) -> Path:
    """The fixture lab copied to ``relpath`` of its temporary repository, its Colab badge pointing there."""
    copy = lab.parents[3] / relpath
    copy.parent.mkdir(parents=True)
    shutil.copy(lab, copy)
    _edit(copy, lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace(repo_path(lab), relpath)))
    return copy


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dpdl")
    notebooks_cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_check_command_exits_one_listing_problems_and_zero_when_clean(lab, monkeypatch, capsys):
    root = lab.parents[3]
    good = _copy_into_repo(lab, "labs/lab1/lab1_good.ipynb")
    monkeypatch.chdir(root)
    assert discover_notebooks() == [good]
    assert _cli("notebooks", "check") == 0
    assert "1 notebooks checked, 0 with problems" in capsys.readouterr().out
    write_student_copy(good)
    _edit(good, _kernel)
    assert _cli("notebooks", "check") == 1
    out = capsys.readouterr().out
    assert "labs/lab1/lab1_good.ipynb: kernelspec name is 'conda-env-dpdl-py'" in out  # paths as typed
    assert "labs/lab1/student/lab1_good.ipynb: stale" in out and "2 notebooks checked, 2 with problems" in out
    assert _cli("notebooks", "check", str(lab)) == 0


def test_exercise_sources_must_be_gradable_references(lab):
    exercise = _copy_into_repo(lab, "exercises/lab1/lab1_exercise.ipynb")
    assert check_notebook(lab) == [], "labs are not grading references"
    # The fixture's cells carry swapped roles: points on the answer cell, none on the check cell.
    assert any("check cell 'sigmoid-check' needs points" in problem for problem in check_notebook(exercise))

    def mark_answer_and_check(nb):
        solution = _index_of(nb, "### BEGIN SOLUTION")
        nb.cells[solution].metadata["dpdl"] = {"id": "sigmoid", "role": "answer"}
        nb.cells[solution + 1].metadata["dpdl"] = {"id": "sigmoid-check", "role": "check", "points": 2}

    _edit(exercise, mark_answer_and_check)
    assert check_notebook(exercise) == []

    _edit(exercise, lambda nb: nb.cells[_index_of(nb, "### BEGIN SOLUTION")].metadata.pop("dpdl"))
    assert any(
        "holds a '### BEGIN SOLUTION' block but is not an answer cell" in problem
        for problem in check_notebook(exercise)
    )
