"""dpdl.data.store: the cache → mirrors → download resolution, checksums, stamps and error messages.

Every test works on a registry of small fake files (DPDL_REGISTRY) served from file:// URLs in
tmp_path, with the cache in tmp_path: no network, never the user's cache.
"""

import hashlib
import json
import os
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from dpdl.data import download, store
from dpdl.data.store import ChecksumError, DataUnavailableError, DataWarning, fetch, file_path

A = b"first file\n" * 30
B = b"second file " * 50


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class World:
    """A fake registry with its upstream files, mirrors and cache, all under one tmp folder."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.tmp = tmp_path
        self.upstream = tmp_path / "upstream"
        self.cache = tmp_path / "cache"
        self.entries: list[dict] = []
        self.registry = tmp_path / "registry.json"
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("DPDL_DATA_DIR", str(self.cache))
        monkeypatch.setenv("DPDL_REGISTRY", str(self.registry))
        monkeypatch.delenv("DPDL_DATA_MIRROR", raising=False)
        monkeypatch.delenv("DPDL_OFFLINE", raising=False)
        monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)

    def _entry(self, name, provider="files", optional=False, **extra) -> dict:
        entry = {
            "name": name,
            "title": name.title(),
            "description": f"the {name} set",
            "provider": provider,
            "licence": "MIT",
            "citation": "Someone, 2024.",
            "labs": [1],
            "optional": optional,
            **extra,
        }
        self.entries.append(entry)
        self.save()
        return entry

    def add_files(self, name: str, files: dict[str, bytes], optional: bool = False, serve: bool = True) -> dict:
        specs = []
        for path, data in files.items():
            upstream = self.upstream / name / path
            if serve:
                upstream.parent.mkdir(parents=True, exist_ok=True)
                upstream.write_bytes(data)
            specs.append({"path": path, "size": len(data), "sha256": sha(data), "urls": [upstream.as_uri()]})
        return self._entry(name, optional=optional, files=specs)

    def add_zip(self, name: str, files: dict[str, bytes], served: dict[str, bytes] | None = None) -> dict:
        """An entry whose files come from one zip; ``served`` overrides what the zip holds."""
        archive = self.upstream / f"{name}.zip"
        archive.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive, "w") as zf:
            for path, data in (files if served is None else served).items():
                zf.writestr(path, data)
        source = {"recipe": "zip", "urls": [archive.as_uri()], "sha256": None, "note": "members verified one by one"}
        specs = [{"path": p, "size": len(d), "sha256": sha(d), "source": "z"} for p, d in files.items()]
        return self._entry(name, files=specs, sources={"z": source})

    def add_package(self, name: str, module: str, optional: bool = False) -> dict:
        return self._entry(name, provider=f"pip:{module}-dist", optional=optional, **{"import": module})

    def save(self) -> None:
        self.registry.write_text(json.dumps({"format": 1, "entries": self.entries}), encoding="utf-8")
        os.utime(self.registry, ns=(time.time_ns(), time.time_ns() + len(self.entries)))  # a new mtime each save

    def mirror(self, label: str, files: dict[str, bytes]) -> Path:
        folder = self.tmp / label
        for path, data in files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        folder.mkdir(exist_ok=True)
        return folder

    def use_mirrors(self, *folders: Path) -> None:
        self.monkeypatch.setenv("DPDL_DATA_MIRROR", os.pathsep.join(str(f) for f in folders))

    def go_offline(self) -> None:
        self.monkeypatch.setenv("DPDL_OFFLINE", "1")

    def unserve(self) -> None:
        """Take the official copies away, so that only the cache and mirrors can answer."""
        for path in sorted(self.upstream.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()

    def tmp_leftovers(self) -> list[Path]:
        tmp = self.cache / ".dpdl" / "tmp"
        return list(tmp.iterdir()) if tmp.exists() else []


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return World(tmp_path, monkeypatch)


class HashCounter:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = store.sha256_of

        def counting(path):
            self.calls += 1
            return real(path)

        monkeypatch.setattr(store, "sha256_of", counting)


# --- download from the official URL ---------------------------------------------------------------


def test_fetch_downloads_verifies_and_returns_the_cache_root(world):
    world.add_files("toy", {"toy/a.bin": A, "toy/sub/b.txt": B})
    root = fetch("toy")
    assert root == world.cache
    assert (root / "toy" / "a.bin").read_bytes() == A
    assert (root / "toy" / "sub" / "b.txt").read_bytes() == B
    stamp = json.loads((root / ".dpdl" / "verified" / "toy" / "a.bin.json").read_text())
    assert stamp["sha256"] == sha(A) and stamp["size"] == len(A) and stamp["origin"].startswith("download")
    assert world.tmp_leftovers() == []


def test_file_path_fetches_only_the_file_asked_for(world):
    world.add_files("toy", {"toy/a.bin": A, "toy/b.txt": B})
    path = file_path("toy", "toy/b.txt")
    assert path == world.cache / "toy" / "b.txt" and path.read_bytes() == B
    assert not (world.cache / "toy" / "a.bin").exists()


def test_file_path_of_an_unknown_file_names_the_entry_and_suggests(world):
    world.add_files("toy", {"toy/a.bin": A})
    with pytest.raises(KeyError, match=r"no file 'toy/a.bim'.*did you mean 'toy/a.bin'"):
        file_path("toy", "toy/a.bim")


def test_a_download_that_fails_its_checksum_is_refused_and_not_cached(world):
    world.add_files("toy", {"toy/a.bin": A})
    (world.upstream / "toy" / "toy" / "a.bin").write_bytes(A.replace(b"first", b"FIRST"))  # same size
    with pytest.raises(ChecksumError) as err:
        fetch("toy")
    message = str(err.value)
    assert "'toy'" in message and "toy/a.bin" in message and "failed its checksum" in message
    assert not (world.cache / "toy" / "a.bin").exists()
    assert world.tmp_leftovers() == []


def test_an_unreachable_url_gives_both_ways_out(world):
    world.add_files("toy", {"toy/a.bin": A}, serve=False)
    with pytest.raises(DataUnavailableError) as err:
        fetch("toy")
    message = str(err.value)
    assert not isinstance(err.value, ChecksumError)
    assert "toy/a.bin" in message and "the download failed" in message
    assert "DPDL_DATA_MIRROR" in message and "dpdl data fetch toy" in message


# --- the cache -----------------------------------------------------------------------------------


def test_a_cached_file_is_trusted_by_its_stamp_without_rehashing(world, monkeypatch):
    world.add_files("toy", {"toy/a.bin": A, "toy/b.txt": B})
    fetch("toy")
    world.unserve()
    world.go_offline()
    counter = HashCounter(monkeypatch)
    assert fetch("toy") == world.cache
    assert counter.calls == 0


def test_a_cached_file_changed_in_place_is_rehashed_removed_and_fetched_again(world):
    world.add_files("toy", {"toy/a.bin": A})
    target = fetch("toy") / "toy" / "a.bin"
    target.write_bytes(A.replace(b"first", b"worst"))  # same size, new mtime
    with pytest.warns(DataWarning, match="cached copy of toy/a.bin.*failed its checksum"):
        fetch("toy")
    assert target.read_bytes() == A


def test_a_good_cached_file_without_a_stamp_is_adopted_after_one_hash(world, monkeypatch):
    world.add_files("toy", {"toy/a.bin": A}, serve=False)
    (world.cache / "toy").mkdir(parents=True)
    (world.cache / "toy" / "a.bin").write_bytes(A)  # put there by hand, or by an older dpdl
    counter = HashCounter(monkeypatch)
    fetch("toy")
    fetch("toy")
    assert counter.calls == 1
    assert (world.cache / ".dpdl" / "verified" / "toy" / "a.bin.json").exists()


def test_a_folder_where_a_file_belongs_is_reported(world):
    world.add_files("toy", {"toy/a.bin": A})
    (world.cache / "toy" / "a.bin").mkdir(parents=True)
    with pytest.raises(DataUnavailableError, match="is a folder"):
        fetch("toy")


def test_stale_temporaries_of_killed_runs_are_cleared(world):
    world.add_files("toy", {"toy/a.bin": A})
    tmp = world.cache / ".dpdl" / "tmp"
    tmp.mkdir(parents=True)
    old, fresh = tmp / "old.part", tmp / "fresh.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    long_ago = time.time() - 3 * 24 * 3600
    os.utime(old, (long_ago, long_ago))
    fetch("toy")
    assert not old.exists() and fresh.exists()


# --- mirrors -------------------------------------------------------------------------------------


def test_the_first_mirror_with_a_good_copy_wins(world):
    world.add_files("toy", {"toy/a.bin": A})
    first, second = world.mirror("m1", {"toy/a.bin": A}), world.mirror("m2", {"toy/a.bin": A})
    world.use_mirrors(first, second)
    world.unserve()
    world.go_offline()
    fetch("toy")
    stamp = json.loads((world.cache / ".dpdl" / "verified" / "toy" / "a.bin.json").read_text())
    assert stamp["origin"] == f"mirror {first}"
    assert (world.cache / "toy" / "a.bin").read_bytes() == A


def test_a_bad_copy_in_the_first_mirror_is_skipped_with_a_warning_and_the_second_used(world):
    world.add_files("toy", {"toy/a.bin": A})
    bad = world.mirror("m1", {"toy/a.bin": A.replace(b"file", b"FILE")})
    good = world.mirror("m2", {"toy/a.bin": A})
    world.use_mirrors(bad, good)
    world.unserve()
    with pytest.warns(DataWarning, match=r"mirror copy .*m1.*toy/a.bin failed its checksum"):
        fetch("toy")
    stamp = json.loads((world.cache / ".dpdl" / "verified" / "toy" / "a.bin.json").read_text())
    assert stamp["origin"] == f"mirror {good}"
    assert (bad / "toy" / "a.bin").read_bytes() != A  # the mirror itself is left alone


def test_a_mirror_copy_failing_its_checksum_is_refused_and_not_cached(world):
    world.add_files("toy", {"toy/a.bin": A})
    world.use_mirrors(world.mirror("m1", {"toy/a.bin": A[:-1]}))  # truncated: wrong size
    world.go_offline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(ChecksumError) as err:
            fetch("toy")
    assert "failed its checksum" in str(err.value) and "toy/a.bin" in str(err.value)
    assert "bytes, expected" in str(err.value)
    assert not (world.cache / "toy" / "a.bin").exists()
    assert world.tmp_leftovers() == []


def test_a_mirror_is_preferred_to_downloading(world):
    world.add_files("toy", {"toy/a.bin": A})
    world.use_mirrors(world.mirror("m1", {"toy/a.bin": A}))
    (world.upstream / "toy" / "toy" / "a.bin").write_bytes(b"would fail")
    fetch("toy")
    assert (world.cache / "toy" / "a.bin").read_bytes() == A


def test_missing_mirror_folders_are_passed_over(world):
    world.add_files("toy", {"toy/a.bin": A})
    world.use_mirrors(world.tmp / "nowhere", world.mirror("m2", {"toy/a.bin": A}))
    world.go_offline()
    fetch("toy")
    assert (world.cache / "toy" / "a.bin").read_bytes() == A


def test_mirror_files_are_copied_when_they_cannot_be_hard_linked(world, monkeypatch):
    world.add_files("toy", {"toy/a.bin": A})
    mirror = world.mirror("m1", {"toy/a.bin": A})
    world.use_mirrors(mirror)

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(store.os, "link", no_links)
    fetch("toy")
    cached = world.cache / "toy" / "a.bin"
    assert cached.read_bytes() == A
    assert not os.path.samefile(cached, mirror / "toy" / "a.bin")
    assert cached.stat().st_mode & 0o200  # a copy stays writable


# --- offline ----------------------------------------------------------------------------------------


def test_offline_error_names_the_dataset_the_file_and_both_ways_out(world):
    world.add_files("toy", {"toy/a.bin": A})
    world.use_mirrors(world.tmp / "nowhere")
    world.go_offline()
    with pytest.raises(DataUnavailableError) as err:
        fetch("toy")
    message = str(err.value)
    assert "dataset 'toy'" in message and "toy/a.bin" in message
    assert "DPDL_OFFLINE=1 forbids downloading" in message
    assert "DPDL_DATA_MIRROR" in message and "nowhere (missing)" in message
    assert "unset DPDL_OFFLINE" in message and "`dpdl data fetch toy`" in message
    assert not (world.cache / "toy").exists()


def test_download_false_reads_mirrors_but_never_downloads(world):
    world.add_files("toy", {"toy/a.bin": A})
    world.use_mirrors(world.tmp / "nowhere")
    with pytest.raises(DataUnavailableError) as err:
        fetch("toy", download=False)
    message = str(err.value)
    assert "download=False forbids downloading" in message and "(not tried: download=False)" in message
    assert not (world.cache / "toy").exists()
    assert os.environ.get("DPDL_OFFLINE") is None  # nothing global was switched to get there
    assert (fetch("toy") / "toy" / "a.bin").read_bytes() == A  # the file could have been downloaded


def test_offline_error_for_many_files_lists_them(world):
    world.add_files("toy", {f"toy/{i}.bin": bytes([i]) * 10 for i in range(5)})
    world.go_offline()
    with pytest.raises(DataUnavailableError, match=r"5 files \(toy/0.bin, toy/1.bin, toy/2.bin, … 2 more\)"):
        fetch("toy")


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_offline_flag_values(monkeypatch, value, expected):
    monkeypatch.setenv("DPDL_OFFLINE", value)
    assert store.offline() is expected


def test_an_unreadable_offline_flag_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DPDL_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="DPDL_OFFLINE='maybe'.*set it to 1"):
        store.offline()


# --- archives (recipe zip) -------------------------------------------------------------------------


def test_one_file_of_a_zip_entry_brings_every_member_it_holds(world):
    world.add_zip("ants", {"ants/train/a.jpg": A, "ants/val/b.jpg": B})
    assert file_path("ants", "ants/val/b.jpg").read_bytes() == B
    assert (world.cache / "ants" / "train" / "a.jpg").read_bytes() == A  # the download was paid for anyway
    world.unserve()
    world.go_offline()
    assert fetch("ants") == world.cache


def test_zip_members_are_verified_one_by_one(world):
    world.add_zip("ants", {"ants/a.jpg": A, "ants/b.jpg": B}, served={"ants/a.jpg": A, "ants/b.jpg": B[:-3] + b"BAD"})
    with pytest.raises(ChecksumError) as err:
        fetch("ants")
    assert "ants/b.jpg" in str(err.value) and "failed its checksum" in str(err.value)
    assert (world.cache / "ants" / "a.jpg").read_bytes() == A
    assert not (world.cache / "ants" / "b.jpg").exists()
    assert world.tmp_leftovers() == []


def test_a_bad_member_not_asked_for_is_not_kept_and_is_reported(world):
    world.add_zip("ants", {"ants/a.jpg": A, "ants/b.jpg": B}, served={"ants/a.jpg": A, "ants/b.jpg": b"short"})
    with pytest.warns(DataWarning, match="ants/b.jpg not kept"):
        assert file_path("ants", "ants/a.jpg").read_bytes() == A
    assert not (world.cache / "ants" / "b.jpg").exists()


def test_a_member_missing_from_the_zip_is_reported(world):
    world.add_zip("ants", {"ants/a.jpg": A, "ants/gone.jpg": B}, served={"ants/a.jpg": A})
    with pytest.raises(DataUnavailableError, match="ants/gone.jpg: .*does not contain it"):
        fetch("ants")


def test_an_archive_that_cannot_be_downloaded_fails_every_file(world):
    world.add_zip("ants", {"ants/a.jpg": A, "ants/b.jpg": B})
    world.unserve()
    with pytest.raises(DataUnavailableError, match=r"2 files .*the download failed"):
        fetch("ants")


# --- verify, providers, paths, locations -----------------------------------------------------------


def test_verify_rehashes_and_removes_a_file_that_no_longer_matches(world):
    world.add_files("toy", {"toy/a.bin": A, "toy/b.txt": B, "toy/c.txt": b"c"})
    fetch("toy")
    (world.cache / "toy" / "b.txt").write_bytes(B[::-1])
    (world.cache / "toy" / "c.txt").unlink()
    checks = {c.path: c for c in store.verify("toy")}
    assert checks["toy/a.bin"].status == "ok"
    assert checks["toy/b.txt"].status == "mismatch" and "removed" in checks["toy/b.txt"].detail
    assert checks["toy/c.txt"].status == "missing"
    assert not (world.cache / "toy" / "b.txt").exists()
    assert store.cached_count("toy") == 1


def test_package_entries_are_fetched_by_checking_their_module(world):
    world.add_package("pkg", "json")
    world.add_package("ghost", "no_such_module_for_dpdl_tests")
    assert fetch("pkg") == world.cache
    with pytest.raises(DataUnavailableError, match="pip install no_such_module_for_dpdl_tests-dist"):
        fetch("ghost")
    assert store.dataset_path("pkg") == Path(json.__file__).parent
    with pytest.raises(DataUnavailableError, match="not installed"):
        store.dataset_path("ghost")


def test_dataset_path_is_the_file_or_the_deepest_common_folder(world):
    world.add_files("one", {"texts/one.txt": A})
    world.add_files("many", {"set/raw/a": A, "set/raw/b": B})
    world.add_files("spread", {"x/a": A, "y/b": B})
    assert store.dataset_path("one") == world.cache / "texts" / "one.txt"
    assert store.dataset_path("many") == world.cache / "set" / "raw"
    assert store.dataset_path("spread") == world.cache


def test_locations_rows_show_cache_mirrors_and_offline(world):
    world.add_files("toy", {"toy/a.bin": A})
    world.use_mirrors(world.mirror("m1", {}), world.tmp / "gone")
    world.go_offline()
    rows = dict(store.locations())
    assert rows["data cache"].startswith(f"{world.cache} (not created yet; DPDL_DATA_DIR")
    assert rows["data mirror 1"].endswith("(exists)") and rows["data mirror 2"].endswith("(MISSING)")
    assert rows["data offline"].startswith("yes")
    assert rows["data registry"] == f"{world.registry} (1 entries)"


def test_locations_reports_a_broken_setting_as_an_error_row(world, monkeypatch):
    monkeypatch.setenv("DPDL_OFFLINE", "perhaps")
    world.registry.write_text("{not json", encoding="utf-8")
    rows = dict(store.locations())
    assert rows["data offline"].startswith("ERROR: DPDL_OFFLINE='perhaps'")
    assert rows["data registry"].startswith("ERROR:") and "not valid JSON" in rows["data registry"]
    assert rows["data mirror"].startswith("none")


def test_the_default_cache_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("DPDL_DATA_DIR", raising=False)
    monkeypatch.setattr(store.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_dir() == tmp_path / "xdg" / "dpdl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.cache_dir() == tmp_path / "home" / ".cache" / "dpdl"


@pytest.mark.parametrize(
    "platform, expected", [("darwin", ("Library", "Caches", "dpdl")), ("win32", ("AppData", "Local", "dpdl", "Cache"))]
)
def test_the_default_cache_on_macos_and_windows(monkeypatch, tmp_path, platform, expected):
    monkeypatch.delenv("DPDL_DATA_DIR", raising=False)
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(store.sys, "platform", platform)
    assert store.cache_dir() == tmp_path.joinpath(*expected)


def test_data_dir_may_be_relative_and_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DPDL_DATA_DIR", "data-cache")
    assert store.cache_dir() == tmp_path / "data-cache"


def test_mirror_list_splits_on_pathsep_and_skips_blanks(monkeypatch):
    monkeypatch.setenv("DPDL_DATA_MIRROR", os.pathsep.join(["/a", " ", "/b "]))
    assert store.mirror_dirs() == [Path("/a"), Path("/b")]
