"""dpdl.data.download: atomic, retried, checked downloads and the recipes (zip, zip head, IMDB subset).

No network: URLs are file:// URLs of small files in tmp_path, or a monkeypatched opener.
"""

import csv
import hashlib
import io
import random
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpdl.data import download
from dpdl.data.download import (
    ChecksumError,
    DataUnavailableError,
    download_url,
    imdb_subset,
    produce,
    read_aclimdb,
    write_imdb_subset,
)
from dpdl.data.registry import FileSpec, Source


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch):
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable body with headers; ``fail_after`` bytes then a reset."""

    def __init__(self, body: bytes, length: int | None = None, fail_after: int | None = None):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body) if length is None else length)}
        self.fail_after = fail_after
        self.bytes_read = 0

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        if self.fail_after is not None:
            n = min(n if n > 0 else 1 << 30, self.fail_after - self.tell())
        data = super().read(n)
        self.bytes_read += len(data)
        return data


class Opener:
    """A stand-in for urlopen that replays a script of responses/exceptions and counts calls."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = 0

    def __call__(self, request, timeout=None):
        self.calls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step() if callable(step) else step


# --- download_url --------------------------------------------------------------------------------


def test_download_url_writes_the_file_and_returns_its_sha256(tmp_path):
    body = b"official bytes\n" * 100
    upstream = tmp_path / "upstream.bin"
    upstream.write_bytes(body)
    dest = tmp_path / "out" / "file.bin"
    digest = download_url(upstream.as_uri(), dest, size=len(body), sha256=sha(body))
    assert digest == sha(body)
    assert dest.read_bytes() == body
    assert leftovers(dest.parent) == ["file.bin"]


def test_download_with_wrong_sha256_is_refused_and_leaves_nothing(tmp_path):
    upstream = tmp_path / "upstream.bin"
    upstream.write_bytes(b"tampered")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ChecksumError, match="sha256"):
        download_url(upstream.as_uri(), dest, size=8, sha256=sha(b"original"))
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_server_announcing_the_wrong_size_is_refused_before_reading(tmp_path, monkeypatch):
    response = FakeResponse(b"<html>not found</html>")
    monkeypatch.setattr(download, "urlopen", Opener(response))
    with pytest.raises(ChecksumError, match="expects 1,000"):
        download_url("https://example.org/x.gz", tmp_path / "x.gz", size=1000)
    assert response.bytes_read == 0
    assert leftovers(tmp_path) == []


def test_network_errors_are_retried_until_the_download_succeeds(tmp_path, monkeypatch):
    body = b"finally" * 50
    opener = Opener(urllib.error.URLError("timed out"), ConnectionResetError("reset"), lambda: FakeResponse(body))
    monkeypatch.setattr(download, "urlopen", opener)
    download_url("https://example.org/x", tmp_path / "x", sha256=sha(body), retries=3)
    assert opener.calls == 3
    assert (tmp_path / "x").read_bytes() == body


def test_retries_are_bounded_and_the_error_names_the_url(tmp_path, monkeypatch):
    opener = Opener(urllib.error.URLError("no route to host"))
    monkeypatch.setattr(download, "urlopen", opener)
    with pytest.raises(DataUnavailableError, match=r"https://example.org/x \(2 attempts\).*no route"):
        download_url("https://example.org/x", tmp_path / "x", retries=2)
    assert opener.calls == 2


def test_http_404_is_not_retried(tmp_path, monkeypatch):
    opener = Opener(urllib.error.HTTPError("https://example.org/x", 404, "Not Found", {}, None))
    monkeypatch.setattr(download, "urlopen", opener)
    with pytest.raises(DataUnavailableError, match="HTTP 404"):
        download_url("https://example.org/x", tmp_path / "x", retries=5)
    assert opener.calls == 1


def test_http_503_is_retried(tmp_path, monkeypatch):
    opener = Opener(urllib.error.HTTPError("u", 503, "Busy", {}, None), lambda: FakeResponse(b"ok"))
    monkeypatch.setattr(download, "urlopen", opener)
    download_url("https://example.org/x", tmp_path / "x", retries=2)
    assert opener.calls == 2 and (tmp_path / "x").read_bytes() == b"ok"


@pytest.mark.parametrize("cut", ["closed early", "reset mid-body"])
def test_an_interrupted_download_is_not_used_and_leaves_no_file(tmp_path, monkeypatch, cut):
    body = bytes(range(256)) * 40
    if cut == "closed early":  # the server announced more bytes than it sent
        make = lambda: FakeResponse(body[:3000], length=len(body))  # noqa: E731
    else:
        make = lambda: FakeResponse(body, fail_after=3000)  # noqa: E731
    opener = Opener(make)
    monkeypatch.setattr(download, "urlopen", opener)
    dest = tmp_path / "data" / "file.bin"
    with pytest.raises(DataUnavailableError):
        download_url("https://example.org/file.bin", dest, retries=2)
    assert opener.calls == 2
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_a_failed_download_leaves_an_existing_file_untouched(tmp_path, monkeypatch):
    """The rename is atomic: readers see the old file or the new one, never a half-written one."""
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"previous good copy")
    monkeypatch.setattr(download, "urlopen", Opener(lambda: FakeResponse(b"x" * 5000, fail_after=100)))
    with pytest.raises(DataUnavailableError):
        download_url("https://example.org/file.bin", dest, retries=1)
    assert dest.read_bytes() == b"previous good copy"
    monkeypatch.setattr(download, "urlopen", Opener(lambda: FakeResponse(b"new copy")))
    download_url("https://example.org/file.bin", dest, retries=1)
    assert dest.read_bytes() == b"new copy"
    assert leftovers(tmp_path) == ["file.bin"]


def test_a_bad_first_url_falls_through_to_the_next(tmp_path):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"right")
    bad.write_bytes(b"wrong")
    spec = FileSpec("f.bin", sha(b"right"), 5, (bad.as_uri(), good.as_uri()))
    source = Source("f.bin", "download", spec.urls, spec.sha256, spec.size)
    produced = produce(source, [spec], tmp_path / "work")
    assert produced["f.bin"].read_bytes() == b"right"


def test_all_urls_bad_raises_checksum_error_naming_each(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"wrong")
    missing = (tmp_path / "missing.bin").as_uri()
    spec = FileSpec("f.bin", sha(b"right"), 5, (missing, bad.as_uri()))
    source = Source("f.bin", "download", spec.urls, spec.sha256, spec.size)
    with pytest.raises(ChecksumError) as err:
        produce(source, [spec], tmp_path / "work")
    assert "missing.bin" in str(err.value) and "bad.bin" in str(err.value)


# --- recipe "zip" ----------------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_recipe_extracts_each_requested_member(tmp_path):
    archive = make_zip(tmp_path / "set.zip", {"set/a.jpg": b"A" * 10, "set/b.jpg": b"B" * 20, "set/c.txt": b"C"})
    source = Source("set.zip", "zip", (archive.as_uri(),), None, None, "hash unknown")
    specs = [
        FileSpec("set/a.jpg", sha(b"A" * 10), 10, source.urls, "set.zip"),
        FileSpec("renamed/b.jpg", sha(b"B" * 20), 20, source.urls, "set.zip", member="set/b.jpg"),
        FileSpec("set/missing.jpg", sha(b""), 0, source.urls, "set.zip"),
    ]
    produced = produce(source, specs, tmp_path / "work")
    assert set(produced) == {"set/a.jpg", "renamed/b.jpg"}
    assert produced["renamed/b.jpg"].read_bytes() == b"B" * 20
    assert not (tmp_path / "work" / "archive" / "set.zip").exists()  # the archive is not kept


def test_zip_recipe_rejects_a_file_that_is_not_a_zip(tmp_path):
    archive = tmp_path / "set.zip"
    archive.write_bytes(b"<html>moved</html>")
    source = Source("set.zip", "zip", (archive.as_uri(),), None, None, "hash unknown")
    with pytest.raises(DataUnavailableError, match="did not give the archive"):
        produce(source, [FileSpec("a", sha(b""), 0, source.urls, "set.zip")], tmp_path / "work")


def test_archive_with_a_published_sha256_is_checked(tmp_path):
    archive = make_zip(tmp_path / "set.zip", {"a": b"A"})
    source = Source("set.zip", "zip", (archive.as_uri(),), "0" * 64, None)
    with pytest.raises(ChecksumError):
        produce(source, [FileSpec("a", sha(b"A"), 1, source.urls, "set.zip")], tmp_path / "work")


# --- recipe "zip_head" (GloVe) -------------------------------------------------------------------

_word = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(_word.map(lambda w: (w + " 0.1 -2.5e-05\n").encode()), min_size=1, max_size=40),
    keep=st.integers(1, 50),
    final_newline=st.booleans(),
)
def test_zip_head_keeps_exactly_the_first_lines_verbatim(tmp_path_factory, lines, keep, final_newline):
    tmp = tmp_path_factory.mktemp("glove")
    member = b"".join(lines) if final_newline else b"".join(lines)[:-1]
    archive = make_zip(tmp / "glove.6B.zip", {"glove.6B.50d.txt": member, "glove.6B.100d.txt": b"other"})
    params = {"member": "glove.6B.50d.txt", "lines": keep}
    source = Source("glove.6B.zip", "zip_head", (archive.as_uri(),), None, None, "n", params)
    spec = FileSpec("glove/top.txt", "0" * 64, 0, source.urls, "glove.6B.zip")
    out = produce(source, [spec], tmp / "work")["glove/top.txt"].read_bytes()
    expected = member.splitlines(keepends=True)[:keep]
    assert out == b"".join(expected)


def test_zip_head_without_its_member_yields_nothing(tmp_path):
    archive = make_zip(tmp_path / "g.zip", {"other.txt": b"x\n"})
    params = {"member": "glove.6B.50d.txt", "lines": 3}
    source = Source("g.zip", "zip_head", (archive.as_uri(),), None, None, "n", params)
    assert produce(source, [FileSpec("g.txt", "0" * 64, 0, source.urls, "g.zip")], tmp_path / "w") == {}


# --- recipe "aclimdb_subset" (IMDB) --------------------------------------------------------------

SPECIAL = ["a comma, inside", 'a "quoted" word', "two\nlines", "<br /><br />html breaks", "ünïcödé ✓"]


def fake_aclimdb(root: Path, per_split: int = 6) -> dict[str, str]:
    """A tiny aclImdb tree: ``per_split`` reviews per split and label, plus files that are not reviews."""
    rng = random.Random(0)
    reviews = {}
    for split in ("train", "test"):
        for label, ratings in (("pos", (7, 8, 9, 10)), ("neg", (1, 2, 3, 4))):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_split):
                text = f"{split} {label} review {i}: " + rng.choice(SPECIAL)
                name = f"{i}_{rng.choice(ratings)}.txt"
                (folder / name).write_bytes(text.encode("utf-8"))
                reviews[f"aclImdb/{split}/{label}/{name}"] = text
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    (root / "aclImdb" / "train" / "urls_pos.txt").write_text("http://imdb.com/x")
    (root / "aclImdb" / "README").write_text("readme")
    return reviews


def tar_it(root: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    return out


def test_read_aclimdb_reads_labelled_reviews_from_folder_and_tarball_alike(tmp_path):
    reviews = fake_aclimdb(tmp_path / "tree")
    assert read_aclimdb(tmp_path / "tree") == reviews
    assert read_aclimdb(tmp_path / "tree" / "aclImdb") == reviews
    assert read_aclimdb(tar_it(tmp_path / "tree", tmp_path / "aclImdb_v1.tar.gz")) == reviews


def test_read_aclimdb_of_something_else_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailableError, match="no aclImdb reviews"):
        read_aclimdb(tmp_path / "empty")


def test_imdb_subset_balances_labels_and_keeps_texts_verbatim(tmp_path):
    reviews = fake_aclimdb(tmp_path)
    rows = imdb_subset(reviews, per_label=4, seed=42)
    assert len(rows) == 8
    assert sorted(s for _, _, s in rows) == ["negative"] * 4 + ["positive"] * 4
    assert len({key for key, _, _ in rows}) == 8
    for key, text, sentiment in rows:
        assert text == reviews[key]
        assert sentiment == {"pos": "positive", "neg": "negative"}[key.split("/")[2]]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order_seed=st.integers(0, 10**6))
def test_imdb_subset_depends_only_on_the_pool_not_on_reading_order(tmp_path_factory, order_seed):
    """The pool is sorted (train first, then numeric id), so the file system's order cannot leak in."""
    reviews = fake_aclimdb(tmp_path_factory.mktemp("imdb"), per_split=12)
    keys = list(reviews)
    random.Random(order_seed).shuffle(keys)
    shuffled = {key: reviews[key] for key in keys}
    assert imdb_subset(shuffled, per_label=5, seed=42) == imdb_subset(reviews, per_label=5, seed=42)


def test_imdb_pool_is_train_first_then_numeric_id(tmp_path):
    # With per_label equal to the pool size, sample() returns a permutation; which one depends on
    # the pool's order, so sorting 10 before 9 (text order) would give a different list.
    reviews = {
        f"aclImdb/{split}/{label}/{i}_{rating}.txt": f"{split} {label} {i}"
        for split in ("test", "train")
        for label, rating in (("pos", 8), ("neg", 2))
        for i in (10, 9, 100)
    }
    rows = imdb_subset(reviews, per_label=6, seed=7)

    def order(key):  # the MANIFEST's rule, written out independently
        _, split, _, name = key.split("/")
        return (split != "train", int(name.split("_")[0]))

    pools = {label: sorted((k for k in reviews if f"/{label}/" in k), key=order) for label in ("pos", "neg")}

    def draw(pools):
        r = random.Random(7)
        chosen = r.sample(pools["pos"], 6) + r.sample(pools["neg"], 6)
        r.shuffle(chosen)
        return chosen

    assert [key for key, _, _ in rows] == draw(pools)
    text_sorted = {label: sorted(pool) for label, pool in pools.items()}
    assert draw(text_sorted) != draw(pools)  # so the assertion above can tell the two orders apart


def test_imdb_subset_needs_enough_reviews(tmp_path):
    with pytest.raises(ValueError, match="needs 50"):
        imdb_subset(fake_aclimdb(tmp_path), per_label=50, seed=42)


def test_write_imdb_subset_format_round_trips_with_minimal_quoting(tmp_path):
    rows = imdb_subset(fake_aclimdb(tmp_path / "tree"), per_label=5, seed=1)
    csv_path, list_path = tmp_path / "imdb.csv", tmp_path / "imdb.sources.txt"
    write_imdb_subset(rows, csv_path, list_path)
    raw = csv_path.read_bytes()
    assert raw.startswith(b"review,sentiment\n") and raw.endswith(b"\n") and b"\r\n" not in raw
    with open(csv_path, encoding="utf-8", newline="") as f:
        parsed = list(csv.reader(f))
    assert parsed[0] == ["review", "sentiment"]
    assert parsed[1:] == [[text, sentiment] for _, text, sentiment in rows]
    for line, (_, text, sentiment) in zip(raw.decode("utf-8").split("\n")[1:], rows):
        if not any(c in text for c in ',"\n'):  # minimal quoting: plain texts are not quoted
            assert line == f"{text},{sentiment}"
    lines = list_path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and lines[:-1] == [f"{key}\t{sentiment}" for key, _, sentiment in rows]


def test_aclimdb_recipe_is_deterministic_from_the_tarball(tmp_path):
    fake_aclimdb(tmp_path / "tree")
    tar_it(tmp_path / "tree", tmp_path / "aclImdb_v1.tar.gz")
    params = {"seed": 42, "per_label": 3, "csv": "imdb/s.csv", "sources_list": "imdb/s.sources.txt"}
    source = Source(
        "aclImdb_v1.tar.gz", "aclimdb_subset", ((tmp_path / "aclImdb_v1.tar.gz").as_uri(),), None, None, "n", params
    )
    specs = [
        FileSpec("imdb/s.csv", "0" * 64, 0, source.urls, source.key),
        FileSpec("imdb/s.sources.txt", "0" * 64, 0, source.urls, source.key),
    ]
    first = {k: p.read_bytes() for k, p in produce(source, specs, tmp_path / "w1").items()}
    second = {k: p.read_bytes() for k, p in produce(source, specs, tmp_path / "w2").items()}
    assert first == second
    assert first["imdb/s.csv"].count(b",positive\n") == 3 and first["imdb/s.csv"].count(b",negative\n") == 3
    assert len(first["imdb/s.sources.txt"].splitlines()) == 6
    other = Source(**{**source.__dict__, "params": {**source.params, "seed": 43}})
    assert produce(other, specs, tmp_path / "w3")["imdb/s.csv"].read_bytes() != first["imdb/s.csv"]


def test_sha256_of_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert download.sha256_of(tmp_path / "f") == sha(data)
