"""benchmarks/cpu_capabilities.py: each notebook runs under nbval with the kernel set it names, in a fresh data cache."""

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("cpu_capabilities", ROOT / "benchmarks" / "cpu_capabilities.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_capabilities"] = module
    spec.loader.exec_module(module)
    return module


def test_the_environment_sets_the_capability_and_a_fresh_cache_and_reads_the_usual_one(script, tmp_path, monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    monkeypatch.setenv("DPDL_DATA_MIRROR", "/some/mirror")
    env = script.environment("avx2", tmp_path)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["DPDL_DATA_DIR"] == str(tmp_path)
    assert env["DPDL_DATA_MIRROR"].split(":")[-1] == "/some/mirror"  # the usual cache first, then the mirrors
    assert "ATEN_CPU_CAPABILITY" not in script.environment("native", tmp_path)  # torch's own choice


def test_a_notebook_runs_under_the_capability_asked_for_and_a_failure_names_its_cell(script, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU has no AVX2 kernels to switch between")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "import torch\ncapability = torch.backends.cpu.get_cpu_capability()\nprint(capability)"
        ),
        nbformat.v4.new_code_cell('assert capability == "DEFAULT", capability'),
    ]
    path = tmp_path / "probe.ipynb"
    nbformat.write(notebook, path)  # no stored outputs: nbval only checks that the cells run
    assert script.main(["--capabilities", "default", str(path)]) == 0
    assert script.main(["--capabilities", "avx2", str(path)]) == 1  # the assert fails under AVX2 kernels
    table = capsys.readouterr().out
    assert f"| `{path}` | **FAILED**" in table and "Cell 1" in table


def test_unknown_capabilities_are_refused(script):
    with pytest.raises(SystemExit):
        script.main(["--capabilities", "sse9"])
