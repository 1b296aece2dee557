"""Shared test set-up: a non-interactive matplotlib backend, and the real data mirror with a fresh cache.

Kernels started by nbval keep their inline backend. Tests that read real data take the ``data_env``
fixture: it points dpdl at the mirror (``DPDL_DATA_MIRROR``, else ``<repo>/../shared/datasets``) with an
empty per-session cache, offline, and skips with the reason when there is no mirror.
"""

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
# What a complete mirror holds (the datasets that the data tests read).
MIRROR_CONTENTS = ("MNIST/raw", "FashionMNIST/raw", "hymenoptera_data", "nietzsche.txt", "glove", "imdb")
NO_MIRROR = "needs the real data mirror: set DPDL_DATA_MIRROR or place it at ../shared/datasets"


def find_mirror() -> Path | None:
    """The first directory of ``DPDL_DATA_MIRROR`` (else ``../shared/datasets``) holding every dataset."""
    configured = [Path(p) for p in os.environ.get("DPDL_DATA_MIRROR", "").split(os.pathsep) if p.strip()]
    for candidate in configured or [REPO.parent / "shared" / "datasets"]:
        if all((candidate / part).exists() for part in MIRROR_CONTENTS):
            return candidate
    return None


MIRROR = find_mirror()


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One empty dpdl cache per test session, so that tests never touch the user's cache."""
    return tmp_path_factory.mktemp("dpdl-cache")


@pytest.fixture
def data_env(data_cache, monkeypatch) -> Path:
    """dpdl reads the mirror into the session's cache and never goes online; skips without a mirror."""
    if MIRROR is None:
        pytest.skip(NO_MIRROR)
    monkeypatch.setenv("DPDL_DATA_DIR", str(data_cache))
    monkeypatch.setenv("DPDL_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("DPDL_OFFLINE", "1")
    monkeypatch.delenv("DPDL_REGISTRY", raising=False)
    return MIRROR
