"""Executing notebooks for commit, and nbval comparing them: run → nbval round trip on a fixture, a
wrong stored output that nbval must catch, cleaning, the kernel's environment, the sanitizers."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbval.plugin import get_sanitize_patterns

from dpdl.notebooks import cli as notebooks_cli
from dpdl.notebooks.run import (
    KERNELSPEC,
    NotebookExecutionError,
    clean_notebook,
    execute_notebook,
    has_nbval_marker,
    kernel_env,
    run_to_first_stub,
)

TESTS = Path(__file__).parent
SANITIZE_CFG = TESTS / "nbval_sanitize.cfg"
FIXTURE = TESTS / "fixtures" / "notebooks" / "nbval_roundtrip.ipynb"


def _sanitize(text: str) -> str:
    """What nbval does to an output string with our config (the same re.sub loop, in file order)."""
    patterns = OrderedDict(get_sanitize_patterns(SANITIZE_CFG.read_text(encoding="utf-8")))  # as nbval keeps them
    for regex, replace in patterns.items():
        text = re.sub(regex, replace, text)
    return text


def test_nbval_reads_every_pattern_of_the_sanitize_config():
    text = SANITIZE_CFG.read_text(encoding="utf-8")
    regex_lines = [line for line in text.splitlines() if line.startswith("regex:")]
    pairs = get_sanitize_patterns(text)
    assert len(pairs) == len(dict(pairs)) == len(regex_lines) >= 10  # none dropped, none shadowed
    for regex, replace in pairs:
        re.compile(regex)
        assert replace.strip(), f"empty replacement for {regex!r} (nbval would not read it)"


@pytest.mark.parametrize(
    ("committed", "fresh"),
    [
        ("<object object at 0x7f3a2b1c0d90>\n", "<object object at 0x55d0c0ffee00>\n"),
        ("tensor([0.5000, 1.0000])", "tensor([0.5000, 1.0000], device='cuda:0')"),
        ("tensor([[1., 2.],\n        [3., 4.]])", "tensor([[1., 2.],\n        [3., 4.]], device='cuda:0')"),
        ("tensor(0.6931, grad_fn=<AddBackward0>)", "tensor(0.6931, device='cuda:0', grad_fn=<AddBackward0>)"),
        ("device(type='cpu')", "device(type='cuda', index=0)"),
        ("using cpu", "using cuda:0"),
        ("slept 0.0104 s\n", "slept 0.0213 s\n"),
        ("took 45 ms, then 1.2 µs and 800 ns", "took 3 ms, then 0.9 μs and 2 us"),
        (
            "CPU times: user 311 μs, sys: 0 ns, total: 311 μs\nWall time: 8.31 ms\n",
            "CPU times: user 2.1 ms, sys: 1 ms, total: 3.1 ms\nWall time: 2.5 s\n",
        ),
        (
            "1.23 µs ± 4.5 ns per loop (mean ± std. dev. of 7 runs, 1,000,000 loops each)",
            "16.1 µs ± 80 ns per loop (mean ± std. dev. of 7 runs, 100,000 loops each)",
        ),
        (
            "epoch 1: 100%|##########| 10/10 [00:01<00:00,  9.87it/s, loss=0.52]",
            "epoch 1: 100%|##########| 10/10 [00:03<00:00,  2.91it/s, loss=0.52]",
        ),
        ("17it [00:01, 12.34it/s]", "17it [00:04, 3.10it/s]"),
        ("3.21s/it", "1.50s/it"),
    ],
)
def test_sanitizers_make_run_to_run_noise_compare_equal(committed, fresh):
    assert _sanitize(committed) == _sanitize(fresh)


@pytest.mark.parametrize(
    ("committed", "fresh"),
    [
        ("final loss 0.412", "final loss 0.413"),
        ("accuracy 97.5%", "accuracy 91.0%"),
        ("tensor([0.5000, 1.0000])", "tensor([0.5000, 2.0000], device='cuda:0')"),
        ("10 samples", "12 samples"),
        ("42", "41"),
    ],
)
def test_sanitizers_leave_real_differences_visible(committed, fresh):
    assert _sanitize(committed) != _sanitize(fresh)


def test_clean_notebook_strips_widget_state_colab_metadata_timings_and_widget_views():
    widget = new_output(
        "display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"}, "text/plain": "HBox()"}
    )
    only_widget = new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "d"}})
    cell = new_code_cell("x = 1", execution_count=1, outputs=[widget, only_widget])
    cell.metadata.update(
        {
            "colab": {"base_uri": "https://localhost"},
            "id": "Xy12",
            "outputId": "o1",
            "executionInfo": {"elapsed": 3},
            "execution": {"iopub.status.busy": "2024"},
            "dpdl": {"id": "kept"},
            "tags": ["kept"],
        }
    )
    nb = new_notebook(
        cells=[cell],
        metadata={
            "widgets": {"application/vnd.jupyter.widget-state+json": {}},
            "colab": {"provenance": []},
            "accelerator": "GPU",
            "gpuClass": "standard",
            "kernelspec": {"name": "conda-env-x", "display_name": "x"},
            "language_info": {"name": "python", "version": "3.11.4"},
            "authors": ["kept"],
        },
    )
    clean_notebook(nb)
    assert nb.metadata == {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}, "authors": ["kept"]}
    assert cell.metadata == {"dpdl": {"id": "kept"}, "tags": ["kept"]}
    assert [output.data for output in cell.outputs] == [{"text/plain": "HBox()"}]


def test_clean_notebook_gives_old_notebooks_unique_cell_ids():
    nb = new_notebook(cells=[new_markdown_cell("a"), new_code_cell("b"), new_code_cell("c")])
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    clean_notebook(nb)
    ids = [cell.id for cell in nb.cells]
    assert nb.nbformat_minor == 5 and all(ids) and len(set(ids)) == 3
    nb.cells[2].id = nb.cells[1].id  # a copied cell
    clean_notebook(nb)
    assert len({cell.id for cell in nb.cells}) == 3 and nb.cells[1].id == ids[1]
    assert "orig_nbformat_minor" not in nb.metadata


def test_kernel_env_turns_progress_bars_off_and_leaves_matplotlib_to_the_kernel(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("DPDL_PROGRESS", "1")
    monkeypatch.setenv("KEEP_ME", "yes")
    env = kernel_env({"EXTRA": "2", "KEEP_ME": None})
    assert env["CI"] == "1" and env["DPDL_PROGRESS"] == "0" and env["EXTRA"] == "2"
    assert "MPLBACKEND" not in env and "KEEP_ME" not in env
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("# NBVAL_RAISES_EXCEPTION\n1/0", True),
        ("  ##  NBVAL_RAISES_EXCEPTION  \nx", True),
        ("x = 1  # NBVAL_RAISES_EXCEPTION", False),
        ("# NBVAL_RAISES_EXCEPTION please", False),
        ("1/0", False),
    ],
)
def test_nbval_markers_are_read_the_way_nbval_reads_them(source, expected):
    assert has_nbval_marker(source, "NBVAL_RAISES_EXCEPTION") is expected


def _nbval(folder: Path, *notebooks: str) -> subprocess.CompletedProcess:
    """nbval as CI runs it (strict, current env, our sanitizers), isolated from this repository's
    pytest configuration: its own rootdir and ini file, only the nbval plugin, no cache."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    env = kernel_env({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "nbval.plugin",
        "-p",
        "no:cacheprovider",
        "--nbval",
        "--nbval-current-env",
        f"--nbval-sanitize-with={SANITIZE_CFG}",
        f"--rootdir={folder}",
        f"-c={folder / 'pytest.ini'}",
        "-rA",
        "-q",
        *notebooks,
    ]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_run_then_nbval_passes_and_a_wrong_stored_output_fails(tmp_path, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    notebook = folder / "roundtrip.ipynb"
    committed = nbformat.read(FIXTURE, as_version=4)
    leftover = new_code_cell("", execution_count=99, outputs=[new_output("stream", name="stdout", text="old\n")])
    committed.cells.append(leftover)  # an emptied cell whose old output nbval would call "unrun"
    nbformat.write(committed, notebook)

    seconds = execute_notebook(notebook, timeout=120)

    assert seconds > 0 and f"{notebook}: executed in" in capsys.readouterr().out
    executed = nbformat.read(notebook, as_version=4)
    assert [cell.id for cell in executed.cells] == [cell.id for cell in committed.cells]
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code[:-1]] == list(range(1, len(code)))
    assert (code[-1].execution_count, code[-1].outputs) == (None, [])
    environment = code[2].outputs[0].text
    assert environment == f"1 0 module://matplotlib_inline.backend_inline {folder.name}\n"
    raising = next(cell for cell in code if "NBVAL_RAISES_EXCEPTION" in cell.source)
    assert [(out.output_type, out.ename) for out in raising.outputs] == [("error", "ValueError")]
    # nbval reads the comment; the tag stays so that Jupyter's Run All goes past the cell too.
    assert raising.metadata["tags"] == ["raises-exception"]
    assert executed.metadata == committed.metadata
    assert "execution" not in code[3].metadata

    wrong = nbformat.read(notebook, as_version=4)
    answer = wrong.cells[-2]
    assert answer.source == "6 * 7" and answer.outputs[0].data["text/plain"] == "42"
    answer.outputs[0].data["text/plain"] = "41"
    nbformat.write(wrong, folder / "wrong.ipynb")

    result = _nbval(folder, "roundtrip.ipynb", "wrong.ipynb")

    report = result.stdout + result.stderr
    passed = set(re.findall(r"^PASSED (\S+::Cell \d+)", report, re.MULTILINE))
    failed = set(re.findall(r"^FAILED (\S+::Cell \d+)", report, re.MULTILINE))
    assert {f"roundtrip.ipynb::Cell {i}" for i in range(len(code))} <= passed, report
    assert failed == {f"wrong.ipynb::Cell {len(code) - 2}"}, report
    assert "Cell outputs differ" in report and result.returncode == 1


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dpdl")
    notebooks_cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_a_failing_cell_is_reported_by_index_and_the_file_is_left_untouched(tmp_path, capsys):
    path = tmp_path / "broken.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_markdown_cell("# Broken"),
                new_code_cell("def inverse(x):\n    return 1 / x"),
                new_code_cell("inverse(0)"),
                new_code_cell("print('never runs')"),
            ]
        ),
        path,
    )
    before = path.read_bytes()
    with pytest.raises(NotebookExecutionError) as raised:
        execute_notebook(path, timeout=60)
    assert raised.value.cell_index == 2 and raised.value.path == path
    assert "ZeroDivisionError: division by zero" in raised.value.summary
    assert "\x1b[" not in str(raised.value) and "left unchanged" in str(raised.value)
    assert path.read_bytes() == before


def test_run_command_fails_a_marked_cell_that_raises_nothing_and_continues_with_the_rest(tmp_path, capsys):
    quiet = tmp_path / "quiet.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("# NBVAL_RAISES_EXCEPTION\nx = 1")]), quiet)
    before = quiet.read_bytes()
    missing = tmp_path / "missing.ipynb"
    assert _cli("notebooks", "run", str(quiet), str(missing), "--timeout", "60") == 1
    err = capsys.readouterr().err
    assert f"FAILED {quiet}, cell 0: marked to raise" in err and f"no notebook at {missing}" in err
    assert quiet.read_bytes() == before


def test_timeout_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="seconds per cell"):
        execute_notebook(FIXTURE, timeout=0)


def _student_notebook(path: Path, *, tag_the_failure: bool) -> Path:
    """A student copy in miniature: a deliberate failure, a stubbed function, its check, a later cell."""
    failing = new_code_cell("# NBVAL_RAISES_EXCEPTION\nraise ValueError('this fails on purpose')")
    if tag_the_failure:
        failing.metadata["tags"] = ["raises-exception"]
    nb = new_notebook(
        cells=[
            new_markdown_cell("# A lab"),
            failing,
            new_code_cell('def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError("f: the square of x")'),
            new_code_cell("assert f(3) == 9"),
            new_code_cell("open('reached-the-end', 'w').close()"),
        ]
    )
    nbformat.write(nb, path)
    return path


def test_run_to_first_stub_goes_past_tagged_failures_and_stops_at_the_first_task(tmp_path):
    run = run_to_first_stub(_student_notebook(tmp_path / "lab.ipynb", tag_the_failure=True), timeout=60)
    assert (run.first_stub, run.stopped_at, run.reached_stub, run.blocking_errors) == (2, 3, True, [])
    assert [(index, tagged) for index, _, tagged in run.errors] == [(1, True), (3, False)]
    assert run.errors[1][1] == "NotImplementedError: f: the square of x"
    assert not (tmp_path / "reached-the-end").exists()  # Run All stops at the task, like Jupyter's


def test_run_to_first_stub_reports_an_untagged_failure_that_stops_run_all_before_the_task(tmp_path):
    run = run_to_first_stub(_student_notebook(tmp_path / "lab.ipynb", tag_the_failure=False), timeout=60)
    assert (run.first_stub, run.stopped_at, run.reached_stub) == (None, 1, False)
    assert run.blocking_errors == [(1, "ValueError: this fails on purpose")]
