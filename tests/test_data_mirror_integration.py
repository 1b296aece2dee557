"""The real data: fetch and verify every registry file from the course's mirror, and check the recipes.

Marked ``integration``: needs the mirror (``DPDL_DATA_MIRROR``, else ``<repo>/../shared/datasets``) and
skips with the reason when there is none. Everything goes into tmp caches; nothing is downloaded.
"""

import csv
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from dpdl.data import cli, registry, store
from dpdl.data.download import imdb_subset, write_imdb_subset
from tests.conftest import MIRROR

pytestmark = pytest.mark.integration

if MIRROR is None:
    pytest.skip(
        "no data mirror: set DPDL_DATA_MIRROR or put the datasets in ../shared/datasets", allow_module_level=True
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A tmp cache filled from the mirror with `dpdl data fetch --all`, offline."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPDL_DATA_DIR", str(root))
        mp.setenv("DPDL_DATA_MIRROR", str(MIRROR))
        mp.setenv("DPDL_OFFLINE", "1")
        mp.delenv("DPDL_REGISTRY", raising=False)
        code, out = _cli("fetch", "--all")
        yield root, code, out


@pytest.fixture
def in_cache(cache, monkeypatch):
    root = cache[0]
    monkeypatch.setenv("DPDL_DATA_DIR", str(root))
    monkeypatch.setenv("DPDL_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("DPDL_OFFLINE", "1")
    monkeypatch.delenv("DPDL_REGISTRY", raising=False)
    return root


def _cli(*argv) -> tuple[int, str]:
    import argparse
    import contextlib
    import io

    parser = argparse.ArgumentParser(prog="dpdl")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["data", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = args.func(args)
    return code, out.getvalue()


def test_fetch_all_from_the_mirror_gets_every_required_file(cache, in_cache):
    root, code, out = cache
    assert code == 0, out
    required = [e for e in registry.entries() if not e.optional]
    for entry in required:
        assert f"ok       {entry.name}" in out
    files = [spec for entry in required for spec in entry.files]
    assert len(files) == 410
    assert all((root / spec.path).stat().st_size == spec.size for spec in files)
    resnet_line = next(line for line in out.splitlines() if "resnet18_imagenet" in line)
    in_mirror = (MIRROR / "weights" / "resnet18-f37072fd.pth").is_file()
    assert resnet_line.startswith("ok" if in_mirror else "skipped  resnet18_imagenet (optional): ")


def test_verify_all_rehashes_the_cache_and_passes(in_cache):
    code, out = _cli("verify", "--all")
    assert code == 0, out
    assert "ok       hymenoptera  (398 files verified)" in out


def test_torchvision_reads_the_cache_without_going_online(in_cache):
    torchvision = pytest.importorskip("torchvision")
    from dpdl.data import fetch

    assert len(torchvision.datasets.MNIST(root=fetch("mnist"), train=False, download=True)) == 10_000
    assert len(torchvision.datasets.ImageFolder(fetch("hymenoptera") / "hymenoptera_data" / "train")) == 244
    assert len(torchvision.datasets.ImageFolder(fetch("hymenoptera") / "hymenoptera_data" / "val")) == 153
    assert (fetch("nietzsche") / "nietzsche.txt").stat().st_size == 600_901


def _with_local_sources(tmp_path: Path, monkeypatch, urls: dict[str, Path]) -> None:
    """Use the real registry, with the named sources served from local files instead of the internet."""
    data = json.loads(registry.registry_path().read_text(encoding="utf-8"))
    for entry in data["entries"]:
        for key, source in (entry.get("sources") or {}).items():
            if key in urls:
                source["urls"] = [urls[key].as_uri()]
    (tmp_path / "registry.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setenv("DPDL_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("DPDL_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DPDL_DATA_MIRROR", raising=False)
    monkeypatch.delenv("DPDL_OFFLINE", raising=False)


def test_the_zip_recipe_rebuilds_hymenoptera_from_a_zip_of_it(tmp_path, monkeypatch):
    archive = tmp_path / "hymenoptera_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # the official zip's layout: hymenoptera_data/<split>/<class>/
        for path in sorted((MIRROR / "hymenoptera_data").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(MIRROR).as_posix())
    _with_local_sources(tmp_path, monkeypatch, {"hymenoptera_data.zip": archive})
    root = store.fetch("hymenoptera")
    assert store.cached_count("hymenoptera") == 398
    assert (root / "hymenoptera_data" / "train" / "ants" / "imageNotFound.gif").is_file()


def test_the_glove_recipe_cuts_the_member_to_the_verified_subset(tmp_path, monkeypatch):
    archive = tmp_path / "glove.6B.zip"
    subset = (MIRROR / "glove" / "glove.6B.50d.top50k.txt").read_bytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("glove.6B.50d.txt", subset + b"later 0.1 0.2\nlast 0.3 0.4")  # the full file goes on
        zf.writestr("glove.6B.100d.txt", b"the 0.5\n")
    _with_local_sources(tmp_path, monkeypatch, {"glove.6B.zip": archive})
    path = store.file_path("glove", "glove/glove.6B.50d.top50k.txt")
    assert path.read_bytes() == subset


def test_the_imdb_procedure_reproduces_the_subset_byte_for_byte(tmp_path):
    """Rebuild the pool from the mirror's subset plus placeholders for the 40,000 reviews it did not
    draw (only the pool's order matters to random.sample), run the procedure, compare sha256s."""
    with open(MIRROR / "imdb" / "imdb_10k.csv", encoding="utf-8", newline="") as f:
        texts = [row[0] for row in list(csv.reader(f))[1:]]
    keys = [line.split("\t")[0] for line in (MIRROR / "imdb" / "imdb_10k.sources.txt").read_text().splitlines()]
    reviews = {
        f"aclImdb/{split}/{label}/{i}_0.txt": "placeholder"
        for split in ("train", "test")
        for label in ("pos", "neg")
        for i in range(12_500)
    }
    for key, text in zip(keys, texts):
        split, label, name = key.split("/")[1:]
        del reviews[f"aclImdb/{split}/{label}/{name.split('_')[0]}_0.txt"]
        reviews[key] = text
    source = next(iter(registry.get("imdb").sources.values()))
    rows = imdb_subset(reviews, per_label=source.params["per_label"], seed=source.params["seed"])
    write_imdb_subset(rows, tmp_path / "imdb_10k.csv", tmp_path / "imdb_10k.sources.txt")
    for spec in registry.get("imdb").files:
        produced = tmp_path / Path(spec.path).name
        assert hashlib.sha256(produced.read_bytes()).hexdigest() == spec.sha256, spec.path
