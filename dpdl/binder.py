"""The course on shared infrastructure: the repo2docker files that let mybinder.org or a university JupyterHub
build one image holding the release, its pinned packages and every dataset.

repo2docker (what mybinder.org and Zero to JupyterHub images are built with) reads a ``binder/`` folder:
``runtime.txt`` picks the Python, ``requirements.txt`` is installed with pip, ``postBuild`` runs once at build
time, ``start`` runs at every launch. :func:`write_binder_files` writes them into a release (``dpdl release``
calls it), so the datasets are fetched into the image by ``dpdl data fetch`` and no lab downloads at run time.
DEVELOPERS.md ("The course on Binder or a JupyterHub") has the JupyterHub notes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dpdl.notebooks import BRANCH, check_repo_name

__all__ = [
    "BINDER_FOLDER",
    "DATA_DIR_IN_IMAGE",
    "binder_url",
    "binder_badge_markdown",
    "binder_files",
    "write_binder_files",
    "with_binder_section",
]

BINDER_FOLDER = "binder"
# Where postBuild puts the datasets: inside the image's Python environment (${NB_PYTHON_PREFIX}, owned by the
# notebook user at build time), not under $HOME, which a JupyterHub mounts a per-user volume over.
DATA_DIR_IN_IMAGE = "${NB_PYTHON_PREFIX}/share/dpdl-data"
BINDER_BADGE_IMAGE = "https://mybinder.org/badge_logo.svg"

# The Python of the image: the tested one (constraints.txt pins numpy 2.4, which needs Python 3.11 or newer,
# and repo2docker's default can be older).
RUNTIME = "python-3.11\n"

REQUIREMENTS = """\
# repo2docker (mybinder.org, a JupyterHub image) installs this with pip from the repository's root.
# The versions the notebooks were tested with (a nested -c is read relative to this file):
-c ../constraints.txt
# dpdl itself, from this repository: installed, not editable, because a JupyterHub mounts each user's
# volume over the home folder that holds the repository in the image.
.
# tqdm's progress bars in the notebooks:
ipywidgets
"""

POST_BUILD = f"""\
#!/usr/bin/env bash
# repo2docker runs this once, at image build time, after installing binder/requirements.txt.
# It puts every dataset of the registry into the image, checked against its sha256, so that no lab
# downloads anything when a student runs it. binder/start points dpdl at the same folder at launch.
set -euo pipefail
export DPDL_DATA_DIR="${{DPDL_DATA_DIR:-{DATA_DIR_IN_IMAGE}}}"
mkdir -p "$DPDL_DATA_DIR"
dpdl data fetch --all
dpdl data verify --all
"""

START = f"""\
#!/usr/bin/env bash
# repo2docker runs this at every launch, before the notebook server: dpdl reads the datasets that
# binder/postBuild put into the image.
export DPDL_DATA_DIR="${{DPDL_DATA_DIR:-{DATA_DIR_IN_IMAGE}}}"
exec "$@"
"""


def binder_url(repo: str, branch: str = BRANCH, path: str | None = None) -> str:
    """The mybinder.org URL that builds (or reuses) the image of ``repo`` at ``branch`` and opens ``path``
    (a notebook, relative to the repository's root) in JupyterLab."""
    repo = check_repo_name(repo, where="repo")
    url = f"https://mybinder.org/v2/gh/{repo}/{branch}"
    return f"{url}?labpath={path}" if path else url


def binder_badge_markdown(repo: str, branch: str = BRANCH, path: str | None = None) -> str:
    """The *Launch Binder* badge (markdown) for :func:`binder_url`."""
    return f"[![Launch Binder]({BINDER_BADGE_IMAGE})]({binder_url(repo, branch, path)})"


def binder_files() -> dict[str, str]:
    """The repo2docker files, by path relative to the release's root, and their text."""
    return {
        f"{BINDER_FOLDER}/runtime.txt": RUNTIME,
        f"{BINDER_FOLDER}/requirements.txt": REQUIREMENTS,
        f"{BINDER_FOLDER}/postBuild": POST_BUILD,
        f"{BINDER_FOLDER}/start": START,
    }


def write_binder_files(release_dir: str | os.PathLike) -> list[Path]:
    """Write :func:`binder_files` into ``release_dir`` (postBuild and start executable); returns their paths."""
    written = []
    for relative, text in binder_files().items():
        path = Path(release_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not relative.endswith(".txt"):
            path.chmod(0o755)
        written.append(path)
    return written


def with_binder_section(readme: str, *, repo: str, branch: str = BRANCH) -> str:
    """The release's README with a section on Binder and JupyterHub (and its launch badge), placed before its
    ``## Data`` section (at the end when it has none)."""
    section = f"""## On Binder or a JupyterHub

{binder_badge_markdown(repo, branch)}

The badge opens the labs in JupyterLab on mybinder.org: an image built from this repository's `binder/`
folder, with `dpdl`, the tested versions and every dataset inside it (the first launch after a change
builds the image and takes several minutes). A university JupyterHub can serve the same image to a whole
class; your instructor will say if yours does. Binder does not keep your work: download your notebooks.

"""
    match = re.search(r"^## Data\s*$", readme, re.M)
    if match is None:
        return readme.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    return readme[: match.start()] + section + readme[match.start() :]
