"""The grading sandbox against hostile submissions: what answer code can read, write, reach and leave behind.

Each attack is an answer cell (``step``, worth the 1 point of ``check_step``) that does its worst and
then raises ``RuntimeError("REPORT {json}")``: the grader's answer error carries what it found back to
the test. One batch, graded with two workers as `dpdl grade` would, holds every attack beside honest
submissions; a second batch then looks for what the first left behind.
"""

import json
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from dpdl.grading import grade, grade_submission, load_reference, reference_values
from dpdl.grading.cli import register
from dpdl.grading.report import UNSANDBOXED
from dpdl.grading.runner import run_nbval
from dpdl.grading.sandbox import (
    FIRST_UID,
    KernelSandbox,
    Limits,
    SandboxUnavailable,
    parse_size,
    require_sandbox,
    sandbox_unavailable_reason,
)
from dpdl.grading.verdict import MAX_VALUES_BYTES
from tests.fixtures.grading import exercise
from tests.fixtures.grading.exercise import MSE_SOLUTION, REFERENCE, with_answers, write

ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT = 40  # seconds: the search below lists 200 000 file names; a killed kernel waits this out
RUN = uuid.uuid4().hex  # makes this run's secrets, file names and process tags unique
REF_SECRET = f"reference-solution-{RUN}"  # written into the reference's solution
OTHER_SECRET = f"another-students-answer-{RUN}"  # written into another student's submission

pytestmark = pytest.mark.skipif(sandbox_unavailable_reason() is not None, reason="no bubblewrap sandbox here")


def _hidden(text: str) -> str:
    """``text`` as an expression that builds it at run time, so the attack's own source never contains it."""
    return f"{text[::-1]!r}[::-1]"


def _report_line() -> str:
    return 'raise RuntimeError("REPORT " + json.dumps(report))'


def _attack(body: str) -> str:
    return "import json, os, sys\nreport = {}\n" + body + "\n" + _report_line()


def _report(result) -> dict:
    message = result.answer_errors.get("step", "")
    assert "REPORT " in message, f"the attack did not report: {message or result.reason}"
    return json.loads(message.split("REPORT ", 1)[1])


# Reads every file outside the read-only software trees (/usr and the Python installation, where it only
# lists names), looking for the reference's and another student's secrets, and for grader files by name.
SEARCH = _attack(
    f"""
import re
secrets = [{_hidden(REF_SECRET)}.encode(), {_hidden(OTHER_SECRET)}.encode()]
suspicious = {{"marks.csv", "cells.jsonl", "pytest.log", "submission.ipynb", "ref_{RUN}.ipynb", "other_{RUN}.ipynb"}}
own_box = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])
software = {{"/usr", sys.base_prefix, sys.prefix}}
hits, named, read, listed = [], [], 0, 0
for root, dirs, names in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    inside_software = any(root == top or root.startswith(top + "/") for top in software)
    for name in names:
        path = os.path.join(root, name)
        listed += 1
        if name in suspicious or (re.fullmatch(r"kernel\\d+\\.json", name) and root != own_box):
            named.append(path)
        if inside_software or os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            continue
        read += 1
        if any(secret in data for secret in secrets):
            hits.append(path)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
report = {{
    "hits": hits[:3], "named": named[:3], "read": read, "listed": listed,
    "uid": os.getuid(), "euid": os.geteuid(), "caps": status["CapEff"].strip(), "nnp": status["NoNewPrivs"].strip(),
    "pids": sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit()),
}}"""
)


def _write_attack(targets: list[str]) -> str:
    """Tries to create or change each target; reports the ones it could."""
    return _attack(
        f"""
written = []
for target in {targets!r}:
    try:
        if os.path.isdir(target):
            open(os.path.join(target, "planted-{RUN}"), "w").close()
        else:
            with open(target, "a") as file:
                file.write("# changed")
        written.append(target)
    except OSError:
        pass
report = {{"written": written}}"""
    )


# Leaves behind whatever could change a later submission's run: an IPython startup file, files in HOME,
# /tmp, the working directory, the dataset cache; the inspector in the next batch looks for them.
PLANT = _attack(
    f"""
startup = os.path.expanduser("~/.ipython/profile_default/startup")
os.makedirs(startup, exist_ok=True)
with open(os.path.join(startup, "00-full-marks.py"), "w") as file:
    file.write("import builtins\\nbuiltins.PLANTED = True\\n")
places = [os.path.expanduser("~"), "/tmp", os.getcwd(), os.environ["DPDL_DATA_DIR"]]
planted = []
for place in places:
    try:
        open(os.path.join(place, "planted-{RUN}"), "w").close()
        planted.append(place)
    except OSError:
        pass
report = {{"planted": planted}}"""
)

INSPECT = _attack(
    f"""
import builtins
places = [os.path.expanduser("~"), "/tmp", os.getcwd(), os.environ["DPDL_DATA_DIR"]]
report = {{
    "found": [place for place in places if os.path.exists(os.path.join(place, "planted-{RUN}"))],
    "startup": os.path.exists(os.path.expanduser("~/.ipython/profile_default/startup/00-full-marks.py")),
    "planted_builtin": hasattr(builtins, "PLANTED"),
    "uid": os.getuid(),
}}"""
)

# A detached daemon (double fork and setsid) and a child in a session of its own, both meant to outlive
# the run and rewrite marks.csv later.
DAEMON = _attack(
    f"""
import subprocess, time
tag = "daemon-{RUN}"
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", tag], start_new_session=True)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)", tag])
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(1)
report = {{"started": sum(tag in open(f"/proc/{{p}}/cmdline").read() for p in os.listdir("/proc") if p.isdigit())}}"""
)

# Forks until the kernel refuses; every child sleeps an hour. Contained by the process limit of the
# sandbox's own uid, so the neighbouring kernel (another uid) keeps working.
FORK_BOMB = _attack(
    """
import time
forks, error = 0, None
while forks < 100_000:
    try:
        pid = os.fork()
    except OSError as err:
        error = err.errno
        break
    if pid == 0:
        time.sleep(3600)
        os._exit(0)
    forks += 1
report = {"forks": forks, "errno": error, "kernel": sys.argv[sys.argv.index("-f") + 1]}"""
)


def _network_attack(port: int) -> str:
    return _attack(
        f"""
import socket
tried = {{}}
for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("pypi.org", 443)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        tried[host] = "connected"
    except OSError as err:
        tried[host] = type(err).__name__
report = {{"tried": tried, "interfaces": [name for _, name in socket.if_nameindex()]}}"""
    )


# Kills every process it can see, then every pid below 65536 (where the grader's are, on most machines),
# sparing only its own threads (whose ids kill() also takes) so that it can report: the grader must live on.
KILL_ALL = _attack(
    """
import signal
visible = sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit())
mine = {int(tid) for tid in os.listdir("/proc/self/task")}
killed = []
for pid in sorted(set(visible) | set(range(1, 1 << 16))):
    if pid not in mine:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
report = {"visible": visible, "killed": killed}"""
)

# The same without sparing itself: its kernel dies, and its row is still written.
KILL_EVERYTHING = "import os, signal\nfor pid in range(1, 1 << 16):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass"

# More memory than --memory allows fails with MemoryError, and the kernel lives on.
MEMORY = _attack(
    """
import numpy as np
try:
    big = np.ones(6 * 2**30, dtype=np.uint8)
    report["big"] = "allocated"
except MemoryError:
    report["big"] = "MemoryError"
report["after"] = len(bytearray(200 * 2**20))"""
)


@pytest.fixture(scope="module")
def host_port():
    """A TCP server on the grader's loopback: no sandboxed kernel may reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, host_port):
    """Every attack graded in one batch with two workers through `dpdl grade`, beside honest submissions."""
    folder = tmp_path_factory.mktemp("course")
    reference = write(
        with_answers(exercise.reference(), mse=f"{MSE_SOLUTION}\n# {REF_SECRET}"), folder / f"ref_{RUN}.ipynb"
    )
    load_reference(reference)  # still a valid reference
    submissions = folder / "submissions"
    submissions.mkdir()
    other = write(
        with_answers(exercise.reference(), mse=f"{MSE_SOLUTION}\n# {OTHER_SECRET}"), submissions / f"other_{RUN}.ipynb"
    )
    out = folder / "out" / "marks.csv"
    out.parent.mkdir()
    (out.parent / "earlier.csv").write_text("submission,total\n", encoding="utf-8")
    from dpdl.data.store import cache_dir, mirror_dirs

    targets = [str(reference), str(other), str(out.parent), str(out.parent / "earlier.csv"), str(cache_dir()),
               *map(str, mirror_dirs()), str(ROOT / "dpdl" / "__init__.py"), sys.prefix, "/etc/passwd", "/usr/bin"]  # fmt: skip
    attacks = {
        "search": SEARCH,
        "write": _write_attack(targets),
        "plant": PLANT,
        "daemon": DAEMON,
        "fork_bomb": FORK_BOMB,
        "network": _network_attack(host_port.getsockname()[1]),
        "kill_all": KILL_ALL,
        "kill_everything": KILL_EVERYTHING,
        "memory": MEMORY,
    }
    paths = {
        name: write(with_answers(exercise.reference(), step=code), submissions / f"{name}.ipynb")
        for name, code in attacks.items()
    }
    paths["honest"] = write(exercise.reference(), submissions / "honest.ipynb")
    paths["other"] = other
    inputs = [reference, *paths.values(), out.parent / "earlier.csv"]
    before = {path: path.read_bytes() for path in inputs}
    start = time.monotonic()
    results = grade(reference, list(paths.values()), workers=2, cell_timeout=CELL_TIMEOUT)
    seconds = time.monotonic() - start
    after = {path: path.read_bytes() for path in inputs}
    inspected = grade(reference, [write(with_answers(exercise.reference(), step=INSPECT), submissions / "next.ipynb")])
    return {
        "results": dict(zip(paths, results)), "order": results, "paths": paths, "before": before, "after": after,
        "out": out, "seconds": seconds, "inspected": inspected[0],
    }  # fmt: skip


def _main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="dpdl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def _processes_matching(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if text in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_every_row_is_written_and_no_attack_earns_more_than_its_honest_work(attacked):
    results = attacked["results"]
    assert [result.submission for result in attacked["order"]] == [str(path) for path in attacked["paths"].values()]
    assert len(results) == len(attacked["paths"])
    for name, result in results.items():
        honest_points = 8 if name in ("honest", "other") else 7  # an attack replaces the 1-point step answer
        assert result.status == "graded", (name, result.reason)
        assert result.total == honest_points, (name, [(c.id, c.message) for c in result.checks])
        assert result.sandboxed and UNSANDBOXED not in result.review_flags()


def test_a_submission_searching_every_file_finds_no_solution_and_no_grader_file(attacked):
    report = _report(attacked["results"]["search"])
    assert report["hits"] == [], "secrets of the reference or another submission were readable"
    assert report["named"] == [], "the reference, another submission, the grader's or a neighbour's files were visible"
    assert report["listed"] > 10_000 and report["read"] > 50, "the search must have covered the filesystem"


def test_answer_code_runs_as_an_unprivileged_uid_without_capabilities(attacked):
    report = _report(attacked["results"]["search"])
    if os.geteuid() == 0:
        assert FIRST_UID <= report["uid"] == report["euid"]
    else:
        assert report["uid"] == 65534
    assert report["caps"] == "0000000000000000" and report["nnp"] == "1"


def test_only_the_sandbox_s_own_processes_are_visible(attacked):
    report = _report(attacked["results"]["search"])
    assert report["pids"][0] == 1 and len(report["pids"]) <= 4, report[
        "pids"
    ]  # bwrap's init, the kernel, its threads' helpers


def test_inputs_the_dataset_mirror_the_package_and_the_output_folder_cannot_be_written(attacked):
    assert _report(attacked["results"]["write"]) == {"written": []}
    assert attacked["after"] == attacked["before"]
    assert sorted(path.name for path in attacked["out"].parent.iterdir()) == ["earlier.csv"]


def test_nothing_a_submission_leaves_behind_reaches_the_next_one(attacked):
    planted = _report(attacked["results"]["plant"])["planted"]
    assert len(planted) == 4, f"the planter could write its private places: {planted}"
    seen = _report(attacked["inspected"])
    assert seen["found"] == [] and seen["startup"] is False and seen["planted_builtin"] is False, seen


def test_detached_daemons_and_forked_children_do_not_outlive_the_run(attacked):
    assert _report(attacked["results"]["daemon"])["started"] == 2
    fork_bomb = _report(attacked["results"]["fork_bomb"])
    for text in (f"daemon-{RUN}", fork_bomb["kernel"]):
        assert _processes_matching(text) == [], f"processes of the run survived it: {text}"


def test_a_fork_bomb_is_stopped_by_the_process_limit_and_spares_the_neighbours(attacked):
    report = _report(attacked["results"]["fork_bomb"])
    assert report["errno"] == 11 and 0 < report["forks"] < Limits().processes  # EAGAIN at RLIMIT_NPROC
    assert attacked["results"]["honest"].total == 8


def test_no_network_not_even_the_grader_s_loopback(attacked, host_port):
    report = _report(attacked["results"]["network"])
    assert report["interfaces"] == ["lo"]
    assert "connected" not in report["tried"].values(), report["tried"]
    with pytest.raises(BlockingIOError):
        host_port.accept()  # no connection ever reached the grader's side


def test_killing_every_pid_in_sight_leaves_the_grader_and_the_batch_running(attacked):
    report = _report(attacked["results"]["kill_all"])
    assert report["visible"][0] == 1 and len(report["visible"]) <= 4
    assert set(report["killed"]) <= set(report["visible"]), "it reached processes it could not see"
    everything = attacked["results"]["kill_everything"]
    assert "kernel had died" in everything.checks[-1].message or "Kernel" in everything.answer_errors.get("step", "")
    assert all(result.status == "graded" for result in attacked["order"])


def test_more_memory_than_the_limit_is_a_memory_error_and_the_kernel_lives_on(attacked):
    assert _report(attacked["results"]["memory"]) == {"big": "MemoryError", "after": 200 * 2**20}


def test_a_submission_past_the_wall_clock_limit_is_stopped_with_everything_it_started(tmp_path):
    tag = f"runaway-{uuid.uuid4().hex}"
    runaway = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)  # the cell timeout's interrupt is ignored\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', {tag!r}], start_new_session=True)\n"
        "while True:\n"
        "    time.sleep(1)"
    )
    path = write(with_answers(exercise.reference(), step=runaway), tmp_path / "runaway.ipynb")
    expected = reference_values(exercise.reference())  # the hidden check's values, learnt before the clock starts
    start = time.monotonic()
    result = grade_submission(path, exercise.reference(), cell_timeout=300, timeout=25, expected=expected)
    assert time.monotonic() - start < 25 + 30, "stopped at the limit, give or take the kernel's start and end"
    assert result.status == "timeout" and "25 s limit" in result.reason
    assert {check.id: check.points for check in result.checks} == {
        "check_mse": 2, "check_softmax": 3, "hidden_softmax": 2, "check_step": 0,
    }  # fmt: skip
    assert _processes_matching(tag) == []


def test_disk_file_size_and_the_shared_directory_are_limited():
    cell = (
        "import errno, os, sys\n"
        "def fill(folder, files, size):\n"
        "    try:\n"
        "        for i in range(files):\n"
        "            with open(os.path.join(folder, f'part{i}'), 'wb') as file:\n"
        "                file.write(b'x' * size)\n"
        "    except OSError as err:\n"
        "        return f'{errno.errorcode[err.errno]} after {i}'\n"
        "    return 'no error'\n"
        "shared = os.path.dirname(sys.argv[sys.argv.index('-f') + 1])\n"
        "outcomes = [fill('.', 1, 24 * 2**20), fill('.', 100, 8 * 2**20), fill(shared, 100, 8 * 2**20)]\n"
        "raise RuntimeError(repr(outcomes))"
    )
    run = run_nbval(
        new_notebook(cells=[new_code_cell(cell)]), cell_timeout=60, limits=Limits(disk=64 * 2**20, file_size=16 * 2**20)
    )
    big, disk, shared = eval(run.cells[0].message.removeprefix("RuntimeError: "))
    assert big == "EFBIG after 0"  # one file over --file-size
    assert disk.startswith("ENOSPC after ") and int(disk.split()[-1]) <= 8  # 64 MB of tmpfs: at most 8 files of 8 MB
    if os.geteuid() == 0:  # as root the shared directory is a tmpfs of its own, off the grader's disk
        assert shared.startswith("ENOSPC after ") and int(shared.split()[-1]) <= 2, shared


VALUES_CELL = (
    "import os\nwith open(os.environ['DPDL_GRADE_VALUES'], 'a') as file:\n    file.write('{\"check\": \"c\"}\\n')\n"
)


@pytest.mark.parametrize(
    "replace, expected",
    [
        ("", b'{"check": "c"}\n'),
        ("os.remove(path)\nos.symlink('/etc/hostname', path)", b""),  # the grader must not follow a link
        ("os.remove(path)\nos.mkfifo(path)", b""),  # nor block on a FIFO
        ("open(path, 'ab').write(b'y' * (9 * 2**20))", None),  # nor read more than the limit
    ],
    ids=["file", "symlink", "fifo", "oversized"],
)
def test_the_values_channel_works_in_the_sandbox_and_reads_only_a_bounded_regular_file(replace, expected):
    cell = VALUES_CELL + "path = os.environ['DPDL_GRADE_VALUES']\n" + replace
    run = run_nbval(new_notebook(cells=[new_code_cell(cell)]), cell_timeout=30, values=True)
    assert run.status == "completed" and run.cells[0].passed, run.cells
    if expected is None:
        assert len(run.values) == MAX_VALUES_BYTES and run.values.startswith(b'{"check": "c"}\n')
    else:
        assert run.values == expected


def test_without_values_the_kernel_gets_no_values_file():
    cell = "import os\nassert 'DPDL_GRADE_VALUES' not in os.environ"
    assert run_nbval(new_notebook(cells=[new_code_cell(cell)]), cell_timeout=30).cells[0].passed


# --- the real exercise, and grading where no sandbox can be made ------------------------------------------


def test_lab1_reference_full_marks_and_student_copy_zero_sandboxed_with_two_workers():
    exercise_path = ROOT / "exercises" / "lab1" / "lab1_exercise.ipynb"
    student = exercise_path.parent / "student" / exercise_path.name
    solved, untouched = grade(exercise_path, [exercise_path, student], workers=2)
    assert (solved.status, solved.total) == ("graded", solved.max), [(c.id, c.message) for c in solved.checks]
    assert (untouched.status, untouched.total) == ("graded", 0)
    assert solved.sandboxed and untouched.sandboxed


@pytest.fixture
def no_bwrap_on_path(tmp_path, monkeypatch):
    """A PATH holding python and the tools grading needs, but no bwrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}")
    return bin_dir


def test_without_bubblewrap_grading_refuses_and_says_how_to_fix_it(no_bwrap_on_path, tmp_path, capsys):
    assert sandbox_unavailable_reason() == "bubblewrap (bwrap) is not installed"
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*--no-sandbox"):
        grade(REFERENCE, [REFERENCE])
    out = tmp_path / "marks.csv"
    assert _main(["grade", "--reference", str(REFERENCE), "--out", str(out), str(REFERENCE)]) == 1
    assert "cannot grade in a sandbox: bubblewrap (bwrap) is not installed" in capsys.readouterr().err
    assert not out.exists()


def test_a_bubblewrap_that_cannot_make_namespaces_is_refused_with_its_own_words(no_bwrap_on_path):
    fake = no_bwrap_on_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n", encoding="utf-8")
    fake.chmod(0o755)
    for tool in ("prlimit", "setpriv", "true"):
        if shutil.which(tool, path="/usr/bin:/bin"):
            (no_bwrap_on_path / tool).symlink_to(shutil.which(tool, path="/usr/bin:/bin"))
    assert (
        sandbox_unavailable_reason()
        == "bubblewrap cannot create a sandbox here (bwrap: No permissions to create new namespace)"
    )
    with pytest.raises(SandboxUnavailable, match="enable|allow"):
        require_sandbox()


def test_off_linux_grading_refuses(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert sandbox_unavailable_reason() == "the grading sandbox needs Linux (bubblewrap); this is darwin"


def test_no_sandbox_grades_with_a_warning_and_flags_every_row(no_bwrap_on_path, tmp_path, capsys):
    solved = write(exercise.reference(), tmp_path / "solved.ipynb")
    out = tmp_path / "marks.csv"
    argv = [
        "grade",
        "--reference",
        str(REFERENCE),
        "--out",
        str(out),
        "--no-sandbox",
        str(solved),
        str(tmp_path / "missing.ipynb"),
    ]
    assert _main(argv) == 0
    assert "warning: --no-sandbox" in capsys.readouterr().err
    results = grade(REFERENCE, [solved, tmp_path / "missing.ipynb"], sandbox=False)
    assert [(r.total, r.status, r.sandboxed) for r in results] == [(8, "graded", False), (0, "invalid", False)]
    assert [r.review_flags() for r in results] == [[UNSANDBOXED], []], "a file that never ran ran nowhere"
    assert [row["review"] for row in _rows(out)] == [UNSANDBOXED, ""]


# --- pure parts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GB", 3 * 2**29), ("2GiB", 2**31), ("100", 100)]
)
def test_sizes_are_read_like_people_write_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "4X"])
def test_bad_sizes_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match="4G|positive"):
        parse_size(text)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="memory must be a positive whole number"):
        Limits(memory=0)


def test_the_command_mounts_the_tmpfs_before_anything_under_it_and_hides_the_repository(tmp_path):
    with KernelSandbox(tmp_path) as box:
        command = box.command(["/usr/bin/true"])
    tmpfs = command.index("--tmpfs")
    assert command[tmpfs + 1] == "/tmp"
    binds = [command[i + 1] for i, word in enumerate(command) if word in ("--bind", "--ro-bind")]
    assert str(ROOT) not in binds and str(ROOT / "dpdl") in binds, "the package alone, never the repository"
    assert command.index("--bind") > tmpfs and command[command.index("--bind") + 1] == str(box.shared)
    assert "--clearenv" in command and "--unshare-net" in command and "--die-with-parent" in command


@pytest.mark.skipif(os.geteuid() != 0, reason="the shared directory is a tmpfs only when grading as root")
def test_a_killed_grader_s_shared_tmpfs_is_unmounted_by_the_next_sandbox(tmp_path):
    folder = tmp_path / "dpdl-grade-results-killed"
    folder.mkdir()
    killed = KernelSandbox(folder).__enter__()
    assert os.path.ismount(killed.shared)
    (tmp_path / "alive").mkdir()
    with KernelSandbox(tmp_path / "alive"):
        assert os.path.ismount(killed.shared), "a live grader's directory is left alone"
    killed._alive.close()  # what SIGKILL does to its locks; its __exit__ never runs
    killed._slot_lock.close()
    (tmp_path / "next").mkdir()
    with KernelSandbox(tmp_path / "next"):
        assert not os.path.ismount(killed.shared) and not folder.exists()
