"""Run All on every student copy (labs and exercises) reaches the student's first task.

Jupyter's Run All stops at the first cell that raises, unless the cell is tagged ``raises-exception``. In
a student copy that cell must be the first stub, or a check calling a stubbed function, raising
``NotImplementedError``: an untagged deliberate failure, a missing import or a cell that needs the
solution's variables before the first task would stop students earlier (issue 13).

Each notebook runs in a fresh kernel up to that error (``dpdl.notebooks.run.run_to_first_stub``), so
the module costs a kernel start per notebook plus the cells before each first task; some train first
(lab 5 part 2 trains part 1's network again, lab 8's exercise trains two models). Measured on the shared
2-core machine under a load average of 15 to 25 (other test runs beside it): all 31 tests in 838 s
(exercises 319 s, labs 513 s; 12 to 100 s a notebook), against 34 min with two torch threads per
kernel, which is why kernels get one. Notebooks read the real data mirror, as under nbval.
"""

from __future__ import annotations

import pytest

from dpdl.notebooks import discover_notebooks, repo_path
from dpdl.notebooks.run import run_to_first_stub
from tests.conftest import MIRROR, NO_MIRROR, REPO

STUDENT_COPIES = discover_notebooks(REPO, students=True)

pytestmark = [pytest.mark.integration, pytest.mark.skipif(MIRROR is None, reason=NO_MIRROR)]


def test_every_lab_and_exercise_has_a_student_copy():
    assert len(STUDENT_COPIES) == len(discover_notebooks(REPO)) > 0


@pytest.mark.parametrize("path", STUDENT_COPIES, ids=lambda path: repo_path(path, root=REPO))
def test_run_all_reaches_the_first_stub(path, data_env):
    # One torch thread per kernel, as under xdist (conftest.py): two threads on a busy 2-core machine
    # slow training cells down tenfold. The timeout is per cell, as nbval's in CI.
    run = run_to_first_stub(path, timeout=600, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    where = repo_path(path, root=REPO)
    print(f"{where}: {run.seconds:.1f} s to cell {run.stopped_at}")
    assert not run.blocking_errors, f"{where}: Run All stops before the first task at {run.blocking_errors}"
    assert run.first_stub is not None, f"{where}: no stub ran; a student copy should give the student a task"
    assert run.reached_stub, f"{where}: Run All went past every stub without a NotImplementedError ({run})"
