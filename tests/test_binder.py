"""The release's repo2docker files (``binder/``): they are there, they are valid, their requirements resolve
against the constraints, and postBuild puts every dataset into the image from a mirror.

No container can be built here; these tests check each file the way repo2docker uses it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dpdl.binder import BINDER_FOLDER, binder_url, with_binder_section
from dpdl.notebooks import find_repo_root

ROOT = find_repo_root(Path(__file__).parent)
_NO_INDEX_SIGNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found for setuptools",
    "ProxyError",
    "Could not fetch URL",
    "Max retries exceeded",
)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from dpdl.release import write_release

    return write_release(tmp_path_factory.mktemp("binder") / "release", root=ROOT)


def test_the_release_carries_the_binder_files_and_a_launch_badge(release):
    from dpdl.release import public_repo

    binder = release / BINDER_FOLDER
    assert sorted(path.name for path in binder.iterdir()) == ["postBuild", "requirements.txt", "runtime.txt", "start"]
    for script in ("postBuild", "start"):
        assert (binder / script).stat().st_mode & stat.S_IXUSR, f"{script} must be executable for repo2docker"
    readme = (release / "README.md").read_text(encoding="utf-8")
    badge = f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({binder_url(public_repo(ROOT))})"
    assert badge in readme
    assert readme.index("## On Binder or a JupyterHub") < readme.index("## Data")


def test_the_image_gets_the_python_the_requirements_resolve_for(release):
    """repo2docker's ``runtime.txt`` names the Python of the image; the dry run below resolves the requirements
    for the Python running the tests (CI's, the one constraints.txt is frozen with), so the two must agree."""
    runtime = (release / BINDER_FOLDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    here = f"python-{sys.version_info.major}.{sys.version_info.minor}"
    if runtime != here:
        pytest.skip(f"these tests run on {here}, the image on {runtime}: the dry run cannot speak for the image")


def test_post_build_and_start_are_valid_bash(release):
    for script in ("postBuild", "start"):
        result = subprocess.run(["bash", "-n", str(release / BINDER_FOLDER / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_start_points_dpdl_at_the_datasets_in_the_image_and_runs_the_server_command(release, tmp_path):
    env = {**os.environ, "NB_PYTHON_PREFIX": str(tmp_path)}
    env.pop("DPDL_DATA_DIR", None)
    out = subprocess.run(
        [str(release / BINDER_FOLDER / "start"), "sh", "-c", 'echo "$DPDL_DATA_DIR"'],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == f"{tmp_path}/share/dpdl-data"


def test_the_binder_section_goes_before_data_or_at_the_end():
    assert with_binder_section("# R\n\n## Data\n\nx\n", repo="a/b").index("## On Binder") < 10
    assert with_binder_section("# R\n", repo="a/b").rstrip().endswith("download your notebooks.")
    with pytest.raises(ValueError):
        binder_url("not a repo")


def test_the_requirements_resolve_against_the_constraints(release):
    """``pip install --dry-run`` of binder/requirements.txt from the release's root, as repo2docker runs it
    (its nested ``-c ../constraints.txt`` pins every version). Needs the package index: skipped without it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
            "--timeout",
            "20",
            "-r",
            f"{BINDER_FOLDER}/requirements.txt",
        ],
        cwd=release,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(sign in output for sign in _NO_INDEX_SIGNS):
        pytest.skip(f"no package index reachable: {output.strip().splitlines()[-1]}")
    assert result.returncode == 0, output[-3000:]


@pytest.mark.integration
def test_post_build_in_a_fresh_venv_fetches_every_dataset_into_the_image_from_the_mirror(release, tmp_path):
    """As repo2docker would: the release installed into a new venv, then postBuild, offline, from the mirror.

    The venv sees this environment's packages through a ``.pth`` line (torch is not downloaded again), but
    its ``dpdl`` is the release's, installed from the release's folder."""
    mirror = os.environ.get("DPDL_DATA_MIRROR") or str(ROOT.parent / "shared" / "datasets")
    if not Path(mirror.split(os.pathsep)[0]).is_dir():
        pytest.skip("no data mirror (set DPDL_DATA_MIRROR or put the datasets in ../shared/datasets)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(venv_site, "parent-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            str(release),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    env = {key: value for key, value in os.environ.items() if key not in {"DPDL_DATA_DIR", "PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(
        {
            "NB_PYTHON_PREFIX": str(venv),
            "DPDL_DATA_MIRROR": mirror,
            "DPDL_OFFLINE": "1",
            "HOME": str(tmp_path / "home"),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        }
    )
    where = subprocess.run(
        [str(python), "-c", "import dpdl; print(dpdl.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(venv_site), f"the venv imports another dpdl: {where}"
    result = subprocess.run(
        [str(release / BINDER_FOLDER / "postBuild")], cwd=release, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    data = venv / "share" / "dpdl-data"
    assert (data / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.gz")), "data went into $HOME"
