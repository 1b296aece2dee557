"""Getting a registry file from its official source: a download with retries, or a recipe.

A recipe turns an official archive into the registry's files: members of a zip (hymenoptera), the
first lines of a zip member (GloVe), or the seeded IMDB subset drawn from aclImdb's tarball. Nothing
made here is trusted: :mod:`dpdl.data.store` checks every file's sha256 before it enters the cache.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import random
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit
from urllib.request import urlopen

from dpdl.data.registry import FileSpec, Source
from dpdl.progress import progress

__all__ = [
    "DataUnavailableError",
    "ChecksumError",
    "download_url",
    "produce",
    "read_aclimdb",
    "imdb_subset",
    "write_imdb_subset",
    "sha256_of",
    "RETRIES",
]

RETRIES = 3  # attempts per URL for network errors (not for wrong bytes)
RETRY_BACKOFF_S = 1.0  # wait before attempt k+1: RETRY_BACKOFF_S * 2**(k-1)
TIMEOUT_S = 60  # per socket operation, not for the whole download
CHUNK = 1 << 20


class DataUnavailableError(RuntimeError):
    """A dataset file cannot be had: not cached, no mirror has a good copy, and no download worked."""


class ChecksumError(DataUnavailableError):
    """The only copies found of a file had the wrong size or sha256; none of them was kept."""


def download_url(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    sha256: str | None = None,
    desc: str | None = None,
    retries: int = RETRIES,
) -> str:
    """Download ``url`` to ``dest`` and return its sha256; ``dest`` appears only when complete and right.

    The bytes go to a temporary file beside ``dest`` and are renamed into place (atomically) only
    when every announced byte arrived and, where given, ``size`` and ``sha256`` match. Network errors
    are retried ``retries`` times with growing pauses; wrong bytes raise :class:`ChecksumError` at once.
    """
    dest = Path(dest)
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            return _download_once(url, dest, size, sha256, desc)
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500 and err.code not in (408, 429):
                raise DataUnavailableError(f"{url} answered HTTP {err.code} {err.reason}") from err
            last = err
        except (OSError, http.client.HTTPException) as err:
            last = err
        if attempt < retries:
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
    raise DataUnavailableError(f"could not download {url} ({retries} attempts): {last}") from last


def produce(source: Source, files: Sequence[FileSpec], workdir: Path, *, desc: str = "") -> dict[str, Path]:
    """Make ``files`` from ``source`` inside ``workdir``: ``{relative path: produced file}``.

    A file the source does not yield (a member missing from the archive) is left out of the result;
    the caller reports it. Raises :class:`DataUnavailableError` when the source itself cannot be had.
    """
    recipe = _RECIPES[source.recipe]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return recipe(source, list(files), workdir, desc or source.key)
    except (zipfile.BadZipFile, tarfile.TarError, UnicodeDecodeError, EOFError) as err:
        raise DataUnavailableError(f"{source.urls[0]} did not give the archive its recipe expects: {err}") from err


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- the IMDB subset (recipe "aclimdb_subset") ---------------------------------------------------

_REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_SENTIMENT = {"pos": "positive", "neg": "negative"}


def read_aclimdb(path: str | os.PathLike) -> dict[str, str]:
    """The 50,000 labelled reviews of aclImdb, ``{"aclImdb/train/pos/0_9.txt": text}``.

    ``path`` is the official ``aclImdb_v1.tar.gz`` or an unpacked folder (the ``aclImdb`` folder or
    the one holding it). Texts are decoded as UTF-8 and kept verbatim, ``<br />`` tags included.
    """
    path = Path(path)
    reviews: dict[str, str] = {}
    if path.is_dir():
        top = path if path.name == "aclImdb" else path / "aclImdb"
        for file in sorted(top.glob("*/*/*.txt")):
            key = "aclImdb/" + file.relative_to(top).as_posix()
            if _REVIEW.search(key):
                reviews[key] = file.read_bytes().decode("utf-8")
    else:
        with tarfile.open(path, "r|*") as tar:  # a stream: one pass, no seeking in the gzip
            for member in tar:
                match = _REVIEW.search(member.name) if member.isfile() else None
                if match:
                    key = "aclImdb/" + member.name.split("aclImdb/", 1)[1]
                    reviews[key] = tar.extractfile(member).read().decode("utf-8")
    if not reviews:
        raise DataUnavailableError(
            f"{path} holds no aclImdb reviews (aclImdb/<train|test>/<pos|neg>/<id>_<rating>.txt)"
        )
    return reviews


def imdb_subset(reviews: Mapping[str, str], *, per_label: int, seed: int) -> list[tuple[str, str, str]]:
    """``(aclImdb path, review, sentiment)`` rows: ``per_label`` of each label, drawn reproducibly.

    The procedure of the course's subset: per label, the pool is train then test, each by numeric
    id; ``r = random.Random(seed)``; ``pos = r.sample(pos_pool, k)``, then ``neg = r.sample(neg_pool, k)``,
    then ``r.shuffle(pos + neg)``.
    """
    pools = {"pos": [], "neg": []}
    for key in reviews:
        match = _REVIEW.search(key)
        if match:
            pools[match.group(2)].append(key)
    for label, pool in pools.items():
        pool.sort(key=_pool_order)
        if len(pool) < per_label:
            raise ValueError(f"aclImdb has {len(pool)} {label} reviews here; the subset needs {per_label}")
    r = random.Random(seed)
    chosen = r.sample(pools["pos"], per_label) + r.sample(pools["neg"], per_label)
    r.shuffle(chosen)
    return [(key, reviews[key], _SENTIMENT[_REVIEW.search(key).group(2)]) for key in chosen]


def write_imdb_subset(rows: Sequence[tuple[str, str, str]], csv_path: Path, sources_path: Path) -> None:
    """The CSV (``review,sentiment``; csv module, minimal quoting, ``\\n``, UTF-8) and its sources list."""
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["review", "sentiment"])
        writer.writerows((text, sentiment) for _, text, sentiment in rows)
    with open(sources_path, "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{key}\t{sentiment}\n" for key, _, sentiment in rows)


def _pool_order(key: str) -> tuple[int, int]:
    split, _, number, _ = _REVIEW.search(key).groups()
    return (0 if split == "train" else 1, int(number))


# --- downloading -----------------------------------------------------------------------------------


def _download_once(url: str, dest: Path, size: int | None, sha256: str | None, desc: str | None) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": "dpdl (course data; python-urllib)"})
    with urlopen(request, timeout=TIMEOUT_S) as response:
        announced = _content_length(response)
        if size is not None and announced is not None and announced != size:
            raise ChecksumError(f"{url} offers {announced:,} bytes but the registry expects {size:,}; not downloaded")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        bar = progress(total=announced or size, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or dest.name)
        try:
            digest, received = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if announced is not None and received < announced:
                raise ConnectionError(f"the connection closed after {received:,} of {announced:,} bytes")
            if size is not None and received != size:
                raise ChecksumError(f"{url} gave {received:,} bytes; the registry expects {size:,}")
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ChecksumError(f"{url} gave bytes with sha256 {digest.hexdigest()}; the registry expects {sha256}")
            os.replace(tmp, dest)
            return digest.hexdigest()
        finally:
            bar.close()
            tmp.unlink(missing_ok=True)


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _download_any(urls: Sequence[str], dest: Path, *, size: int | None, sha256: str | None, desc: str) -> None:
    """Try each official URL in turn; a wrong file from one URL is not kept and the next is tried."""
    errors: list[DataUnavailableError] = []
    for url in urls:
        try:
            download_url(url, dest, size=size, sha256=sha256, desc=desc)
            return
        except DataUnavailableError as err:
            errors.append(err)
    message = "; ".join(str(err) for err in errors)
    if any(isinstance(err, ChecksumError) for err in errors):
        raise ChecksumError(message)
    raise DataUnavailableError(message)


# --- recipes: (source, files, workdir, desc) -> {relative path: produced file} ---------------------


def _recipe_download(source: Source, files: list[FileSpec], workdir: Path, desc: str) -> dict[str, Path]:
    produced = {}
    for spec in files:
        out = workdir / spec.path
        _download_any(spec.urls, out, size=spec.size, sha256=spec.sha256, desc=f"{desc}: {Path(spec.path).name}")
        produced[spec.path] = out
    return produced


def _recipe_zip(source: Source, files: list[FileSpec], workdir: Path, desc: str) -> dict[str, Path]:
    archive = _fetch_archive(source, workdir, desc)
    produced = {}
    with zipfile.ZipFile(archive) as zf:
        members = set(zf.namelist())
        for spec in files:
            member = spec.member or spec.path
            if member in members:
                out = _output(workdir, spec.path)
                with zf.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                produced[spec.path] = out
    archive.unlink()
    return produced


def _recipe_zip_head(source: Source, files: list[FileSpec], workdir: Path, desc: str) -> dict[str, Path]:
    archive = _fetch_archive(source, workdir, desc)
    (spec,) = files
    member, lines = source.params["member"], int(source.params["lines"])
    with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
            return {}
        out = _output(workdir, spec.path)
        with zf.open(member) as src, open(out, "wb") as dst:
            for _ in range(lines):
                line = src.readline()
                if not line:
                    break
                dst.write(line)
    archive.unlink()
    return {spec.path: out}


def _recipe_aclimdb_subset(source: Source, files: list[FileSpec], workdir: Path, desc: str) -> dict[str, Path]:
    archive = _fetch_archive(source, workdir, desc)
    per_label, seed = int(source.params["per_label"]), int(source.params["seed"])
    rows = imdb_subset(read_aclimdb(archive), per_label=per_label, seed=seed)
    archive.unlink()
    csv_path, list_path = source.params["csv"], source.params["sources_list"]
    csv_out, list_out = _output(workdir, csv_path), _output(workdir, list_path)
    write_imdb_subset(rows, csv_out, list_out)
    return {csv_path: csv_out, list_path: list_out}


def _fetch_archive(source: Source, workdir: Path, desc: str) -> Path:
    archive = workdir / "archive" / (PurePosixPath(urlsplit(source.urls[0]).path).name or "archive")
    _download_any(source.urls, archive, size=source.size, sha256=source.sha256, desc=f"{desc}: {archive.name}")
    return archive


def _output(workdir: Path, relpath: str) -> Path:
    out = workdir / "out" / relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


_RECIPES: dict[str, Callable[[Source, list[FileSpec], Path, str], dict[str, Path]]] = {
    "download": _recipe_download,
    "zip": _recipe_zip,
    "zip_head": _recipe_zip_head,
    "aclimdb_subset": _recipe_aclimdb_subset,
}
