"""benchmarks/gpu_check.sh: the GPU run stops at once, and says why, where there is no CUDA device."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would run the whole course")
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_without_cuda_the_gpu_check_runs_nothing_and_says_why(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "DPDL_DEVICE"}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 3
    assert "no usable CUDA device, nothing was run" in done.stderr
    assert "DPDL_REQUIRE_CUDA=1 but torch sees no CUDA device" in done.stderr
    assert not (tmp_path / "notebooks.csv").exists()
