"""Student copies: stubs for solutions, placeholders for answers, outputs kept only where still true,
badge opening the copy, ids and grader metadata untouched, deterministic bytes, clear marker errors."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dpdl.notebooks import (
    INSTALL_CELL,
    REPO,
    badge_markdown,
    colab_url,
    discover_notebooks,
    find_repo_root,
    install_cell,
    install_source,
    notebook_bytes,
    public_repo,
    read_notebook,
    repo_path,
    student_path,
    title_cell,
)
from dpdl.notebooks import cli as notebooks_cli
from dpdl.notebooks.build import (
    STUB_MESSAGE,
    EditedCopyError,
    MarkerError,
    build_student_copy,
    is_edited,
    orphaned_student_copies,
    stale_student_copies,
    stub_source,
    write_student_copy,
)
from dpdl.notebooks.cells import ANSWER_PLACEHOLDER, STUB_COMMENT

FIXTURE = Path(__file__).parent / "fixtures" / "notebooks" / "lab_conventional.ipynb"
RELATIVE = "labs/lab1/lab1_demo.ipynb"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root (it has a pyproject.toml) with empty labs/ and exercises/ folders."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "labs" / "lab1").mkdir(parents=True)
    (tmp_path / "exercises").mkdir()
    return tmp_path


def _save(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _demo_notebook(root: Path) -> nbformat.NotebookNode:
    """A small instructor notebook: badge, install cell, a solution cell with outputs, an answer."""
    solution = new_code_cell(
        "import torch\n\ndef softplus(x):\n    ### BEGIN SOLUTION hint: use torch.log1p\n"
        "    return torch.log1p(torch.exp(x))\n    ### END SOLUTION\n\nsoftplus(torch.zeros(1))",
        execution_count=2,
        outputs=[new_output("execute_result", {"text/plain": "tensor([0.6931])"}, execution_count=2)],
    )
    solution.metadata["dpdl"] = {"id": "softplus", "role": "answer", "points": 3}
    solution.metadata["tags"] = ["exercise"]
    reference = new_code_cell(
        "print(round(2 ** 0.5, 3))", execution_count=3, outputs=[new_output("stream", name="stdout", text="1.414\n")]
    )
    failing = new_code_cell(
        "# NBVAL_RAISES_EXCEPTION\nsoftplus('x')",
        execution_count=4,
        outputs=[
            new_output(
                "error",
                ename="TypeError",
                evalue="bad operand",
                traceback=["frame quoting    return torch.log1p(torch.exp(x))", "TypeError: bad operand"],
            )
        ],
    )
    return new_notebook(
        cells=[
            title_cell(root / RELATIVE, "Lab 1: softplus", "What it teaches."),
            new_code_cell(INSTALL_CELL, execution_count=1),
            solution,
            reference,
            new_markdown_cell(
                "Why is softplus smooth (∂ everywhere)?\n\n"
                "BEGIN ANSWER\nIt is a sum of exponentials.\nEND ANSWER\n\nThanks."
            ),
            failing,
        ]
    )


@pytest.fixture
def demo(repo: Path) -> Path:
    return _save(_demo_notebook(repo), repo / RELATIVE)


def test_solution_block_becomes_stub_at_its_indentation_naming_its_function_and_hint():
    source = (
        "def f(x):\n    ### BEGIN SOLUTION hint: use torch.exp\n    y = torch.exp(x)\n    return y\n"
        "    ### END SOLUTION\n\n### BEGIN SOLUTION\nz = f(1)\n### END SOLUTION\nprint(z)"
    )
    assert stub_source(source, "code") == (
        'def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError("f: write the body of f() (hint: use torch.exp)")'
        f'\n\n# YOUR CODE HERE\nraise NotImplementedError("{STUB_MESSAGE}")\nprint(z)'
    )


@pytest.mark.parametrize(
    ("source", "cell_id", "message"),
    [
        (
            'def truncated_svd(A, k):\n    """Return the best rank-k approximation of A.\n\n    More text."""\n'
            "    ### BEGIN SOLUTION\n    U, S, Vh = torch.linalg.svd(A)\n    ### END SOLUTION",
            "ex1-svd",
            "truncated_svd: Return the best rank-k approximation of A",
        ),
        (
            'class Net:\n    def forward(self, X):\n        """X (B, D) -> logits (B, C), from the\n        hidden layer.\n'
            '        Second sentence."""\n        ### BEGIN SOLUTION hint: use self.fc\n        return X\n'
            "        ### END SOLUTION",
            None,
            "Net.forward: X (B, D) -> logits (B, C), from the hidden layer (hint: use self.fc)",
        ),
        (
            'def f(x):\n    ### BEGIN SOLUTION\n    """A docstring inside the solution is never used."""\n'
            "    return x\n    ### END SOLUTION",
            None,
            "f: write the body of f()",
        ),
        ("### BEGIN SOLUTION hint: loop over epochs\nx = 1\n### END SOLUTION", "ex-train", "Hint: loop over epochs"),
        (
            "results = []  # one accuracy per seed\n### BEGIN SOLUTION\nresults.append(1)\n### END SOLUTION",
            "ex-runs",
            "ex-runs: fill `results`: one accuracy per seed",
        ),
        (
            "# the least-squares weights,\n# shape (11,)\n### BEGIN SOLUTION\nw = 1\n### END SOLUTION",
            None,
            "the least-squares weights, shape (11,)",
        ),
        ("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION", "ex-step", f"ex-step: {STUB_MESSAGE}"),
    ],
)
def test_stub_message_names_the_task_from_the_function_hint_comment_or_cell_id(source, cell_id, message):
    stub = stub_source(source, "code", cell_id=cell_id)
    assert f"raise NotImplementedError({json.dumps(message, ensure_ascii=False)})" in stub
    assert "return X" not in stub and "svd(A)" not in stub and "inside the solution" not in stub


@pytest.mark.parametrize("hint", ['say "hi"', "a\\b", "ünïcode ∂x", "it's"])
def test_stub_with_any_hint_is_python_that_raises_the_hint(hint):
    stub = stub_source(f"### BEGIN SOLUTION hint: {hint}\nx = 1\n### END SOLUTION", "code")
    with pytest.raises(NotImplementedError) as raised:
        exec(compile(stub, "<stub>", "exec"), {})
    assert str(raised.value) == f"Hint: {hint}"


# Plain lines never define a function, start a comment or assign with a comment: the stubs then say the
# hint or the generic message (the named-task messages are tested above).
_plain_line = st.text(alphabet="abcxyz =+()1:#'\"", max_size=20).filter(
    lambda line: (
        "SOLUTION" not in line
        and "ANSWER" not in line
        and not line.lstrip().startswith("#")
        and not ("=" in line and "#" in line)
    )
)
_block = st.tuples(
    st.sampled_from(["", "    ", "        ", "\t"]),
    st.lists(st.text(alphabet="abc =1", min_size=1, max_size=10), max_size=4),
    st.one_of(st.none(), st.text(alphabet="abc use.", min_size=1, max_size=12).map(str.strip)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_plain_line, _block), max_size=8))
def test_stubbing_keeps_every_line_outside_blocks_and_drops_every_line_inside(segments):
    source_lines, expected_lines = [], []
    for segment in segments:
        if isinstance(segment, str):
            source_lines.append(segment)
            expected_lines.append(segment)
            continue
        indent, body, hint = segment
        begin = f"{indent}### BEGIN SOLUTION" + (f" hint: {hint}" if hint else "")
        source_lines += [begin] + [f"{indent}SECRET {line}" for line in body] + [f"{indent}### END SOLUTION"]
        message = f"Hint: {hint}" if hint else STUB_MESSAGE
        expected_lines += [f"{indent}{STUB_COMMENT}", f'{indent}raise NotImplementedError("{message}")']
    stubbed = stub_source("\n".join(source_lines), "code")
    assert stubbed == "\n".join(expected_lines)
    assert "SECRET" not in stubbed


def test_answer_blocks_in_markdown_become_placeholders():
    source = (
        "Q1?\n<!-- BEGIN ANSWER -->\nsecret one\n<!-- END ANSWER -->\nQ2?\n  BEGIN ANSWER\n  secret two\n  END ANSWER"
    )
    assert stub_source(source, "markdown") == f"Q1?\n{ANSWER_PLACEHOLDER}\nQ2?\n  {ANSWER_PLACEHOLDER}"


def test_cells_without_markers_are_returned_unchanged():
    for source, kind in [
        ("x = 1  # the end\nprint(x)", "code"),
        ("Some *text* with an answer.", "markdown"),
        ("### BEGIN SOLUTION", "raw"),
    ]:
        assert stub_source(source, kind) == source


@pytest.mark.parametrize(
    ("source", "cell_type", "expected"),
    [
        ("### BEGIN SOLUTION\nx = 1", "code", "line 1 ('### BEGIN SOLUTION'): '### BEGIN SOLUTION' without a matching"),
        ("x = 1\n### END SOLUTION", "code", "line 2 ('### END SOLUTION'): '### END SOLUTION' without a '### BEGIN"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
            "code",
            "line 2 ('### BEGIN SOLUTION'): '### BEGIN SOLUTION' inside the solution block opened on line 1",
        ),
        ("def f():\n    ### BEGIN SOLUTION\n    pass\n### END SOLUTION", "code", "indented differently"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "code", "looks like a solution marker but is not one"),
        ("### BEGIN SOLUTIONS\nx = 1", "code", "looks like a solution marker"),
        ("### begin solution\nx = 1", "code", "looks like a solution marker"),
        ("# BEGIN ANSWER\nx = 1\n# END ANSWER", "code", "code cells use ### BEGIN SOLUTION"),
        ("### BEGIN SOLUTION\ntext\n### END SOLUTION", "markdown", "markdown cells use BEGIN ANSWER"),
        ("BEGIN ANSWER\ntext", "markdown", "'BEGIN ANSWER' without a matching 'END ANSWER'"),
        ("**BEGIN ANSWER**\ntext\n**END ANSWER**", "markdown", "looks like an answer marker"),
    ],
)
def test_malformed_markers_name_the_notebook_cell_and_line(repo, source, cell_type, expected):
    make = new_code_cell if cell_type == "code" else new_markdown_cell
    path = _save(new_notebook(cells=[new_markdown_cell("title"), make(source)]), repo / RELATIVE)
    with pytest.raises(MarkerError) as raised:
        build_student_copy(path)
    message = str(raised.value)
    assert message.startswith(f"{path}, cell 1: ")
    assert expected in message


def test_ordinary_comments_and_strings_mentioning_solutions_are_not_markers():
    source = 'print("### BEGIN SOLUTION is how instructors mark code")\n# the solution begins below'
    assert stub_source(source, "code") == source
    assert stub_source("The end: answer all questions.", "markdown") == "The end: answer all questions."


def test_markers_around_part_of_a_statement_are_an_error(repo):
    source = "x = [\n    ### BEGIN SOLUTION\n    1, 2,\n    ### END SOLUTION\n]"
    path = _save(new_notebook(cells=[new_code_cell(source)]), repo / RELATIVE)
    with pytest.raises(MarkerError, match="not valid Python.*around whole statements"):
        build_student_copy(path)


def test_changed_cells_lose_outputs_and_others_keep_them(demo):
    source = nbformat.read(demo, as_version=4)
    student = build_student_copy(demo)
    solution, reference, answer = student.cells[2], student.cells[3], student.cells[4]
    assert "torch.log1p(torch.exp" not in solution.source
    assert (
        'raise NotImplementedError("softplus: write the body of softplus() (hint: use torch.log1p)")' in solution.source
    )
    assert solution.outputs == [] and solution.execution_count is None
    assert reference.outputs == source.cells[3].outputs and reference.execution_count == 3
    assert student.cells[1] == source.cells[1]
    assert answer.source == f"Why is softplus smooth (∂ everywhere)?\n\n{ANSWER_PLACEHOLDER}\n\nThanks."


def test_images_pasted_into_an_answer_are_dropped_with_it(repo):
    answer = new_markdown_cell("![plot](attachment:plot.png)\nBEGIN ANSWER\n![mine](attachment:mine.png)\nEND ANSWER")
    answer.attachments = {"plot.png": {"image/png": "iVBO"}, "mine.png": {"image/png": "iVBA"}}
    path = _save(new_notebook(cells=[answer]), repo / RELATIVE)
    assert build_student_copy(path).cells[0].attachments == {"plot.png": {"image/png": "iVBO"}}


def test_error_outputs_keep_only_their_last_line_so_tracebacks_do_not_quote_solutions(demo):
    error = build_student_copy(demo).cells[5].outputs[0]
    assert error.traceback == ["TypeError: bad operand"]
    assert (error.ename, error.evalue) == ("TypeError", "bad operand")


def test_badge_is_rewritten_to_open_the_student_copy(demo, repo, monkeypatch):
    monkeypatch.chdir(demo.parent)  # a relative path from the notebook's own folder
    title = build_student_copy(demo.name).cells[0].source
    expected = f"https://colab.research.google.com/github/{REPO}/blob/main/labs/lab1/student/lab1_demo.ipynb"
    assert expected in title
    assert colab_url(repo / RELATIVE) not in title
    assert title.startswith("# Lab 1: softplus\n\n[![Open In Colab]") and title.endswith("What it teaches.")


def test_cell_ids_and_metadata_are_preserved(demo):
    source = nbformat.read(demo, as_version=4)
    student = build_student_copy(demo)
    assert [cell.id for cell in student.cells] == [cell.id for cell in source.cells]
    assert [cell.metadata for cell in student.cells] == [cell.metadata for cell in source.cells]
    assert student.cells[2].metadata["dpdl"] == {"id": "softplus", "role": "answer", "points": 3}
    assert {key: value for key, value in student.metadata.items() if key != "dpdl_build"} == source.metadata
    assert len(student.metadata["dpdl_build"]["sha256"]) == 64  # what the build wrote, to spot later edits


def test_building_twice_gives_identical_bytes_and_the_second_write_touches_nothing(demo):
    target = write_student_copy(demo)
    assert target == demo.parent / "student" / demo.name == student_path(demo)
    first = target.read_bytes()
    stamp = target.stat().st_mtime_ns
    assert write_student_copy(demo) == target
    assert target.read_bytes() == first == notebook_bytes(build_student_copy(demo))
    assert target.stat().st_mtime_ns == stamp
    assert first.endswith(b"}\n") and "∂".encode() in first and b"\\u2202" not in first  # as Jupyter saves
    assert nbformat.reads(first.decode(), as_version=4).cells[0].id == nbformat.read(demo, 4).cells[0].id


def test_student_copies_cannot_be_sources(demo):
    target = write_student_copy(demo)
    with pytest.raises(ValueError, match="student copy"):
        build_student_copy(target)


def test_stale_missing_and_orphaned_copies_are_reported(demo, repo):
    assert stale_student_copies([demo]) == [
        f"{student_path(demo)}: missing (generate it with `dpdl notebooks build {demo}`)"
    ]
    write_student_copy(demo)
    assert stale_student_copies([demo]) == []
    nb = nbformat.read(demo, as_version=4)
    nb.cells[3].source = "print(round(2 ** 0.5, 4))"
    nbformat.write(nb, demo)
    (problem,) = stale_student_copies([demo])
    assert problem.startswith(f"{student_path(demo)}: stale")
    orphan = _save(new_notebook(), repo / "exercises" / "lab2" / "student" / "lab2_exercise.ipynb")
    assert orphaned_student_copies(repo) == [orphan]


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dpdl")
    notebooks_cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_build_command_writes_every_copy_and_check_fails_once_one_is_stale(demo, repo, monkeypatch, capsys):
    exercise = _save(_demo_notebook(repo), repo / "exercises" / "lab1" / "lab1_exercise.ipynb")
    monkeypatch.chdir(repo)
    assert discover_notebooks() == [exercise, demo]
    assert _cli("notebooks", "build", "--check") == 1
    assert "2 student copies checked, 2 problems" in capsys.readouterr().out
    assert _cli("notebooks", "build") == 0
    assert student_path(demo).is_file() and student_path(exercise).is_file()
    assert discover_notebooks(students=True) == [student_path(exercise), student_path(demo)]
    assert _cli("notebooks", "build", "--check") == 0
    nb = nbformat.read(exercise, as_version=4)
    nb.cells[3].source = "print(round(2 ** 0.5, 4))"  # the instructor changes the source
    nbformat.write(nb, exercise)
    capsys.readouterr()
    assert _cli("notebooks", "build", "--check") == 1
    out = capsys.readouterr().out
    assert "exercises/lab1/student/lab1_exercise.ipynb: stale" in out and "labs/lab1/student" not in out
    assert _cli("notebooks", "build", str(exercise)) == 0  # stale, not edited: rebuilt
    assert _cli("notebooks", "build", "--check", str(exercise)) == 0


def _student_edits(path: Path) -> bytes:
    """A student fills in the stub of the copy at ``path``, as Jupyter would save it; returns the bytes."""
    student = nbformat.read(path, as_version=4)
    student.cells[2].source = "def softplus(x):\n    return torch.log1p(torch.exp(x))  # my work"
    nbformat.write(student, path)
    return path.read_bytes()


def test_build_never_overwrites_a_copy_a_person_edited_and_check_tells_edited_from_stale(
    demo, repo, monkeypatch, capsys
):
    target = write_student_copy(demo)
    assert not is_edited(target)
    edited = _student_edits(target)
    assert is_edited(target)
    with pytest.raises(EditedCopyError, match="was edited since `dpdl notebooks build` wrote it") as refused:
        write_student_copy(demo)
    assert "--force" in str(refused.value) and "move it out of" in str(refused.value)
    assert target.read_bytes() == edited
    # The source changes too: still refused, and --check says "edited", not "stale".
    nb = nbformat.read(demo, as_version=4)
    nb.cells[3].source = "print(round(2 ** 0.5, 4))"
    nbformat.write(nb, demo)
    (problem,) = stale_student_copies([demo])
    assert problem.startswith(f"{target}: edited by a person") and "--force" in problem
    monkeypatch.chdir(repo)
    assert _cli("notebooks", "build") == 1
    assert "refused: " in capsys.readouterr().err and target.read_bytes() == edited
    assert _cli("notebooks", "build", "--force") == 0
    assert not is_edited(target) and stale_student_copies([demo]) == []
    # A copy without the build's record (hand-made, or from an older dpdl) counts as edited.
    nb = nbformat.read(target, as_version=4)
    del nb.metadata["dpdl_build"]
    nbformat.write(nb, target)
    assert is_edited(target)
    with pytest.raises(EditedCopyError):
        write_student_copy(demo)


def test_build_command_reports_marker_errors_and_exits_one(repo, capsys):
    path = _save(new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nx = 1")]), repo / RELATIVE)
    assert _cli("notebooks", "build", str(path)) == 1
    assert "without a matching '### END SOLUTION'" in capsys.readouterr().err
    assert not student_path(path).exists()


def test_fixture_lab_builds_a_student_copy_without_its_solutions(tmp_path):
    root = tmp_path
    (root / "pyproject.toml").write_text("")
    source = root / "tests" / "fixtures" / "notebooks" / FIXTURE.name
    source.parent.mkdir(parents=True)
    shutil.copy(FIXTURE, source)
    student = nbformat.reads(write_student_copy(source).read_text(), as_version=4)
    text = "\n".join(cell.source for cell in student.cells)
    assert "1 / (1 + torch.exp(-x))" not in text and "classes overlap" not in text
    assert 'raise NotImplementedError("sigmoid: The logistic function' in text and "(hint: use torch.exp)" in text
    assert any(output.get("data", {}).get("image/png") for cell in student.cells for output in cell.get("outputs", []))
    assert badge_markdown(student_path(source)) in student.cells[0].source


def test_title_and_install_cells_are_the_ones_the_conventions_expect(repo, monkeypatch):
    monkeypatch.chdir(repo / "labs" / "lab1")
    cell = title_cell("lab1_demo.ipynb", "Lab 1: tensors", "  What it teaches.  ")
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/{RELATIVE}"
    assert cell.cell_type == "markdown"
    assert cell.source == f"# Lab 1: tensors\n\n{badge_markdown(repo / RELATIVE)}\n\nWhat it teaches."
    assert badge_markdown(RELATIVE, root=repo).endswith(f"]({url})")
    assert install_cell().source == INSTALL_CELL and install_cell().cell_type == "code"
    for bad_title in ("", "# Lab 1"):
        with pytest.raises(ValueError, match="title"):
            title_cell("lab1_demo.ipynb", bad_title, "summary")


def test_paths_outside_a_repository_or_not_notebooks_give_clear_errors(tmp_path, repo):
    if not any(
        (folder / marker).exists() for folder in (tmp_path, *tmp_path.parents) for marker in ("pyproject.toml", ".git")
    ):
        with pytest.raises(FileNotFoundError, match="no repository root"):
            find_repo_root(tmp_path / "lab.ipynb")
    with pytest.raises(ValueError, match="not inside the repository root"):
        repo_path(tmp_path.parent / "elsewhere.ipynb", root=repo)
    (repo / "notes.txt").write_text("hi")
    (repo / "broken.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="not a notebook"):
        read_notebook(repo / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no notebook at"):
        read_notebook(repo / "absent.ipynb")
    with pytest.raises(ValueError, match="could not be read as a Jupyter notebook"):
        read_notebook(repo / "broken.ipynb")


def test_discovery_skips_checkpoints_and_separates_student_copies(demo, repo):
    _save(new_notebook(), demo.parent / ".ipynb_checkpoints" / "lab1_demo-checkpoint.ipynb")
    copy = write_student_copy(demo)
    assert discover_notebooks(repo) == [demo]
    assert discover_notebooks(repo, students=True) == [copy]


def test_public_repo_is_read_from_the_one_setting_with_clear_errors(tmp_path):
    assert REPO == public_repo(Path(__file__).resolve().parents[1])  # this checkout's setting
    (tmp_path / "pyproject.toml").write_text('[tool.dpdl]\npublic-repo = "my-course/dl-labs"\n')
    assert public_repo(tmp_path) == "my-course/dl-labs"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "dpdl"\n')
    with pytest.raises(LookupError, match=r"\[tool.dpdl\] public-repo in .* is missing"):
        public_repo(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.dpdl]\npublic-repo = "https://github.com/a/b"\n')
    with pytest.raises(ValueError, match="must be a GitHub repository written OWNER/NAME"):
        public_repo(tmp_path)
    with pytest.raises(LookupError, match="no .*pyproject.toml"):
        public_repo(tmp_path / "absent")


def test_student_copy_badge_and_install_cell_point_at_the_given_repository_and_branch(demo):
    student = build_student_copy(demo, repo="my-course/dl-labs", branch="2027")
    assert (
        "https://colab.research.google.com/github/my-course/dl-labs/blob/2027/labs/lab1/student/lab1_demo.ipynb"
        in student.cells[0].source
    )
    assert student.cells[1].source == install_source("my-course/dl-labs", "2027")
    assert '%pip install -q "dpdl @ git+https://github.com/my-course/dl-labs@2027"' in student.cells[1].source
    assert REPO not in notebook_bytes(student).decode()
    default = build_student_copy(demo)
    assert default.cells[1].source == INSTALL_CELL == install_source(REPO)
    with pytest.raises(ValueError, match="OWNER/NAME"):
        build_student_copy(demo, repo="not a repository")


def test_hidden_checks_are_dropped_from_student_copies(repo):
    nb = _demo_notebook(repo)
    hidden = new_code_cell("secret_input = 1234567\nassert softplus(secret_input) > 0", execution_count=5)
    hidden.metadata["dpdl"] = {"id": "softplus-hidden", "role": "hidden", "points": 2}
    nb.cells.insert(4, hidden)
    path = _save(nb, repo / RELATIVE)
    student = build_student_copy(path)
    assert len(student.cells) == len(nb.cells) - 1
    assert "1234567" not in nbformat.writes(student) and "softplus-hidden" not in nbformat.writes(student)
