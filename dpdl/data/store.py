"""Where a dataset's files come from: the cache, then mirrors, then the official source — always verified.

Every loader asks :func:`fetch` (a whole entry) or :func:`file_path` (one file); both look in the
cache (``DPDL_DATA_DIR``), then each mirror in ``DPDL_DATA_MIRROR``, then download unless
``DPDL_OFFLINE=1``, and keep a file only after its sha256 matches the registry (labs 1-8).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dpdl.data import download, registry
from dpdl.data.download import ChecksumError, DataUnavailableError, sha256_of
from dpdl.data.registry import Entry, FileSpec
from dpdl.flags import flag

__all__ = [
    "fetch",
    "file_path",
    "locations",
    "cache_dir",
    "mirror_dirs",
    "offline",
    "verify",
    "cached_count",
    "dataset_path",
    "provider_available",
    "FileCheck",
    "DataWarning",
    "DataUnavailableError",
    "ChecksumError",
]

_META = ".dpdl"  # inside the cache: verified/ (stamps) and tmp/ (downloads in progress)
_STALE_TMP_S = 24 * 3600
_SEEN: dict[tuple[str, str], tuple[int, int, str]] = {}  # (cache, path) -> (size, mtime_ns, sha256) trusted


class DataWarning(UserWarning):
    """A copy of a dataset file was refused (a mirror's or the cache's copy failed its checksum)."""


@dataclass(frozen=True)
class FileCheck:
    """What :func:`verify` found for one file: ``status`` is ``ok``, ``missing`` or ``mismatch``."""

    path: str
    status: str
    detail: str = ""


def fetch(name: str, download: bool = True) -> Path:
    """Make sure every file of dataset ``name`` is in the cache, verified; return the cache root.

    ``download=False`` reads only the cache and the mirrors for this call, as ``DPDL_OFFLINE=1`` does
    for every call.

    The files sit under the root at their registry paths, so ``torchvision.datasets.MNIST(root=fetch("mnist"))``
    works and ``fetch("nietzsche") / "nietzsche.txt"`` is the text. Entries that a package provides
    (scikit-learn, pip) have no files: this checks the package imports.
    """
    entry = registry.get(name)
    if entry.provider != "files":
        if not provider_available(entry):
            raise DataUnavailableError(
                f"dataset {entry.name!r} comes with the Python package {_distribution(entry)!r} "
                f"(module {entry.import_name}), which is not installed: pip install {_distribution(entry)}"
            )
        return cache_dir()
    _ensure(entry, list(entry.files), download)
    return cache_dir()


def file_path(name: str, relpath: str) -> Path:
    """The cached, verified path of one file of dataset ``name`` (fetching only that file if needed)."""
    entry = registry.get(name)
    spec = entry.file(relpath)
    _ensure(entry, [spec])
    return cache_dir() / spec.path


def cache_dir() -> Path:
    """The cache root: ``DPDL_DATA_DIR``, else the per-user cache directory (``~/.cache/dpdl`` on Linux)."""
    configured = os.environ.get("DPDL_DATA_DIR", "").strip()
    return Path(configured).expanduser().absolute() if configured else _default_cache_dir()


def mirror_dirs() -> list[Path]:
    """The folders in ``DPDL_DATA_MIRROR`` (``os.pathsep``-separated), in the order they are tried."""
    raw = os.environ.get("DPDL_DATA_MIRROR", "")
    return [Path(part.strip()).expanduser() for part in raw.split(os.pathsep) if part.strip()]


def offline() -> bool:
    """Whether ``DPDL_OFFLINE`` forbids downloads (read as every flag is: :func:`dpdl.flags.flag`)."""
    return flag("DPDL_OFFLINE", on="no downloads", off="downloads allowed")


def locations() -> list[tuple[str, str]]:
    """``(label, value)`` rows for ``dpdl doctor``: the cache, each mirror and whether it exists, offline or not."""
    root = cache_dir()
    origin = "DPDL_DATA_DIR" if os.environ.get("DPDL_DATA_DIR", "").strip() else "default; set DPDL_DATA_DIR to move it"
    rows = [("data cache", f"{root} ({'exists' if root.is_dir() else 'not created yet'}; {origin})")]
    mirrors = mirror_dirs()
    if not mirrors:
        rows.append(("data mirror", "none (set DPDL_DATA_MIRROR to folders holding the datasets)"))
    for i, mirror in enumerate(mirrors, start=1):
        label = "data mirror" if len(mirrors) == 1 else f"data mirror {i}"
        rows.append((label, f"{mirror} ({'exists' if mirror.is_dir() else 'MISSING'})"))
    try:
        state = "yes (DPDL_OFFLINE): cache and mirrors only" if offline() else "no: downloads allowed"
        rows.append(("data offline", state))
    except ValueError as err:
        rows.append(("data offline", f"ERROR: {err}"))
    try:
        rows.append(("data registry", f"{registry.registry_path()} ({len(registry.load())} entries)"))
    except registry.RegistryError as err:
        rows.append(("data registry", f"ERROR: {err}"))
    return rows


def verify(name: str) -> list[FileCheck]:
    """Re-hash every cached file of ``name``; a file that fails is removed (``dpdl data verify``)."""
    entry = registry.get(name)
    root = cache_dir()
    checks = []
    for spec in entry.files:
        target = root / spec.path
        if not target.is_file():
            checks.append(FileCheck(spec.path, "missing", "not in the cache"))
            continue
        digest, size = sha256_of(target), target.stat().st_size
        if size == spec.size and digest == spec.sha256:
            _write_stamp(root, spec, origin=_read_stamp(root, spec).get("origin", "cache"))
            checks.append(FileCheck(spec.path, "ok"))
        else:
            _discard(root, spec)
            checks.append(FileCheck(spec.path, "mismatch", f"{_mismatch(size, digest, spec)}; removed from the cache"))
    return checks


def cached_count(name: str) -> int:
    """How many of the entry's files are in the cache with a valid stamp (cheap: nothing is hashed)."""
    root = cache_dir()
    return sum(_trusted(root, spec) for spec in registry.get(name).files)


def dataset_path(name: str) -> Path:
    """Where the entry lives: its one file, or the deepest folder holding all its files (nothing is fetched).

    For an entry a package provides, the package's folder.
    """
    entry = registry.get(name)
    if entry.provider != "files":
        spec = importlib.util.find_spec(entry.import_name)
        if spec is None or spec.origin is None:
            raise DataUnavailableError(f"dataset {name!r}: module {entry.import_name} is not installed")
        return Path(spec.origin).parent
    if len(entry.files) == 1:
        return cache_dir() / entry.files[0].path
    common = os.path.commonpath([str(PurePosixPath(f.path).parent) for f in entry.files])
    return cache_dir() / common if common else cache_dir()


def provider_available(entry: Entry) -> bool:
    """Whether the module that provides a package entry can be imported (found without importing it)."""
    if entry.provider == "files":
        return True
    try:
        return importlib.util.find_spec(entry.import_name) is not None
    except (ImportError, ValueError):
        return False


# --- resolution ----------------------------------------------------------------------------------


def _ensure(entry: Entry, wanted: list[FileSpec], download: bool = True) -> None:
    root = cache_dir()
    missing = [spec for spec in wanted if not _check_cached(root, entry, spec)]
    if not missing:
        return
    _tmp_root(root, clean=True)  # creates the cache and clears temporaries left by killed runs
    reasons: dict[str, list[str]] = {spec.path: [] for spec in missing}
    bad_copy: set[str] = set()
    missing = [spec for spec in missing if not _from_mirrors(root, entry, spec, reasons, bad_copy)]
    if not missing:
        return
    if offline():
        raise _unavailable(entry, missing, reasons, bad_copy, root, "DPDL_OFFLINE=1 forbids downloading")
    if not download:
        raise _unavailable(entry, missing, reasons, bad_copy, root, "download=False forbids downloading")
    failed = _download(root, entry, missing, reasons, bad_copy)
    if failed:
        raise _unavailable(entry, failed, reasons, bad_copy, root, "the download failed")


def _check_cached(root: Path, entry: Entry, spec: FileSpec) -> bool:
    """True for a good cached copy; a cached copy that fails its checksum is removed."""
    if _trusted(root, spec):
        return True
    target = root / spec.path
    if target.is_dir():
        raise DataUnavailableError(
            f"{target} is a folder where dataset {entry.name!r} keeps a file; remove it and try again"
        )
    if not target.exists():
        return False
    size = target.stat().st_size
    digest = sha256_of(target) if size == spec.size else ""
    if digest == spec.sha256:
        _write_stamp(root, spec, origin=_read_stamp(root, spec).get("origin", "cache (re-verified)"))
        return True
    _discard(root, spec)
    _warn(
        f"the cached copy of {spec.path} (dataset {entry.name!r}) failed its checksum "
        f"({_mismatch(size, digest, spec)}); it was removed and will be fetched again"
    )
    return False


def _from_mirrors(root: Path, entry: Entry, spec: FileSpec, reasons: dict, bad_copy: set) -> bool:
    for mirror in mirror_dirs():
        candidate = mirror / spec.path
        if not candidate.is_file():
            continue
        size = candidate.stat().st_size
        tmp = _tmp_root(root) / f"{PurePosixPath(spec.path).name}.{os.getpid()}.{time.monotonic_ns()}.mirror"
        try:
            digest = _link_or_copy(candidate, tmp) if size == spec.size else ""
            if digest == spec.sha256:
                _install(root, spec, tmp, origin=f"mirror {mirror}")
                return True
        finally:
            tmp.unlink(missing_ok=True)
        problem = f"mirror copy {candidate} failed its checksum ({_mismatch(size, digest, spec)})"
        reasons[spec.path].append(problem + "; not used")
        bad_copy.add(spec.path)
        _warn(f"dataset {entry.name!r}: {problem}; skipped it")
    return False


def _download(root: Path, entry: Entry, missing: list[FileSpec], reasons: dict, bad_copy: set) -> list[FileSpec]:
    """Download ``missing`` through their sources; the files that could not be had are returned."""
    failed: list[FileSpec] = []
    asked_for = {spec.path for spec in missing}
    groups: dict[str, list[FileSpec]] = {}
    for spec in missing:
        groups.setdefault(spec.source or spec.path, []).append(spec)
    for key, specs in groups.items():
        source = entry.source_of(specs[0])
        if specs[0].source is not None:  # the archive is paid for anyway: take all its missing files
            asked = {s.path for s in specs}
            specs += [s for s in entry.files if s.source == key and s.path not in asked and not _trusted(root, s)]
        workdir = Path(tempfile.mkdtemp(dir=_tmp_root(root), prefix="download-"))
        try:
            try:
                produced = download.produce(source, specs, workdir, desc=entry.name)
            except DataUnavailableError as err:
                produced = {}
                for spec in specs:
                    reasons.setdefault(spec.path, []).append(str(err))
                    if isinstance(err, ChecksumError):
                        bad_copy.add(spec.path)
            for spec in specs:
                if spec.path in produced:
                    if _install_verified(root, entry, spec, produced[spec.path], source, reasons, bad_copy):
                        continue
                elif not reasons.get(spec.path):
                    reasons.setdefault(spec.path, []).append(f"{source.urls[0]} does not contain it")
                if spec.path in asked_for:
                    failed.append(spec)
                else:
                    _warn(f"dataset {entry.name!r}: {spec.path} not kept: {reasons[spec.path][-1]}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return failed


def _install_verified(root, entry, spec, produced: Path, source, reasons, bad_copy) -> bool:
    size = produced.stat().st_size
    digest = sha256_of(produced) if size == spec.size else ""
    if digest == spec.sha256:
        _install(root, spec, produced, origin=f"{source.recipe} {source.urls[0]}")
        return True
    reasons.setdefault(spec.path, []).append(
        f"the file made from {source.urls[0]} failed its checksum ({_mismatch(size, digest, spec)}); not kept"
    )
    bad_copy.add(spec.path)
    produced.unlink(missing_ok=True)
    return False


def _unavailable(entry, specs, reasons, bad_copy, root, why_not_downloaded) -> DataUnavailableError:
    paths = [spec.path for spec in specs]
    what = f"file {paths[0]!r}" if len(paths) == 1 else f"{len(paths)} files ({_listing(paths)})"
    mirrors = ", ".join(f"{m}{'' if m.is_dir() else ' (missing)'}" for m in mirror_dirs()) or "none set"
    checksum = any(p in bad_copy for p in paths)
    one = len(paths) == 1
    headline = (
        f"dataset {entry.name!r}: {what} failed {'its checksum' if one else 'their checksums'} and cannot be had"
        if checksum
        else f"dataset {entry.name!r}: {what} {'is' if one else 'are'} not in the cache or any mirror, "
        f"and {why_not_downloaded}"
    )
    lines = [headline + "."]
    for path in paths[:3]:
        for reason in reasons.get(path, []):
            lines.append(f"  {path}: {reason}")
    url = entry.source_of(specs[0]).urls[0]
    forbidden = why_not_downloaded.endswith("forbids downloading")
    not_tried = f" (not tried: {why_not_downloaded.split()[0]})" if forbidden else ""
    lines += [
        f"  Looked in: the cache {root}; mirrors (DPDL_DATA_MIRROR): {mirrors}; official source: {url}{not_tried}.",
        "Two ways out: set DPDL_DATA_MIRROR to a folder that holds a copy at the same relative path "
        "(for example the course's shared datasets folder), or go online "
        f"(unset DPDL_OFFLINE) and run `dpdl data fetch {entry.name}`.",
    ]
    error = ChecksumError if checksum else DataUnavailableError
    return error("\n".join(lines))


# --- the cache's own files -----------------------------------------------------------------------


def _trusted(root: Path, spec: FileSpec) -> bool:
    """A cached file is trusted, without hashing, when its size and mtime match its verified stamp."""
    try:
        st = (root / spec.path).stat()
    except OSError:
        return False
    seen = (st.st_size, st.st_mtime_ns, spec.sha256)
    key = (str(root), spec.path)
    if _SEEN.get(key) == seen:  # already checked against its stamp in this process
        return True
    stamp = _read_stamp(root, spec)
    good = (
        st.st_size == spec.size
        and stamp.get("sha256") == spec.sha256
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )
    if good:
        _SEEN[key] = seen
    return good


def _install(root: Path, spec: FileSpec, produced: Path, origin: str) -> None:
    target = root / spec.path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(produced, target)
    _write_stamp(root, spec, origin)


def _link_or_copy(source: Path, tmp: Path) -> str:
    """Hard-link ``source`` to ``tmp`` (same file system), else copy it; return the sha256 of ``tmp``."""
    try:
        os.link(source, tmp)
        return sha256_of(tmp)
    except OSError:
        digest = hashlib.sha256()
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(download.CHUNK):
                dst.write(chunk)
                digest.update(chunk)
        return digest.hexdigest()


def _stamp_path(root: Path, spec: FileSpec) -> Path:
    return root / _META / "verified" / f"{spec.path}.json"


def _read_stamp(root: Path, spec: FileSpec) -> dict:
    try:
        stamp = json.loads(_stamp_path(root, spec).read_text(encoding="utf-8"))
        return stamp if isinstance(stamp, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamp(root: Path, spec: FileSpec, origin: str) -> None:
    st = (root / spec.path).stat()
    stamp = {
        "sha256": spec.sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "origin": origin,
        "verified": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = _stamp_path(root, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(json.dumps(stamp), encoding="utf-8")
    os.replace(tmp, path)


def _discard(root: Path, spec: FileSpec) -> None:
    _SEEN.pop((str(root), spec.path), None)
    (root / spec.path).unlink(missing_ok=True)
    _stamp_path(root, spec).unlink(missing_ok=True)


def _tmp_root(root: Path, clean: bool = False) -> Path:
    """``.dpdl/tmp`` in the cache: same file system as the cache, so finished files are renamed in."""
    tmp = root / _META / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for leftover in tmp.iterdir() if clean else ():
        try:
            if now - leftover.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        except OSError:
            pass
    return tmp


def _default_cache_dir() -> Path:
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "dpdl" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "dpdl"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache") / "dpdl"


def _warn(message: str) -> None:
    """A DataWarning attributed to the first caller outside dpdl.data (the notebook's line, not ours)."""
    here, frame, level = os.path.dirname(__file__), sys._getframe(0), 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DataWarning, stacklevel=level)


def _mismatch(size: int, digest: str, spec: FileSpec) -> str:
    if size != spec.size:
        return f"{size:,} bytes, expected {spec.size:,}"
    return f"sha256 {digest}, expected {spec.sha256}"


def _listing(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (f", … {len(paths) - 3} more" if len(paths) > 3 else "")


def _distribution(entry: Entry) -> str:
    return "scikit-learn" if entry.provider == "sklearn" else entry.provider.split(":", 1)[1]
