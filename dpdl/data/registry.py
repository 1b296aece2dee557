"""The dataset registry: what each dataset is, where it officially comes from, and its checksums.

The facts live as data in ``datasets/registry.json`` (one entry per dataset or pretrained artefact);
this module loads and checks them, and renders ``datasets/README.md`` from them so the two never drift.
Every lab's data goes through it (labs 1-8).
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "Entry",
    "FileSpec",
    "Source",
    "RegistryError",
    "UnknownDatasetError",
    "RECIPES",
    "get",
    "entries",
    "names",
    "load",
    "registry_path",
    "readme_path",
    "render_readme",
]

# How a file is obtained from its official source (implemented in dpdl.data.download), and the
# parameters each recipe needs in its source's JSON object.
RECIPES: Mapping[str, tuple[str, ...]] = {
    "download": (),  # the file itself, from one of its URLs
    "zip": (),  # members of a zip archive (member name = file path unless the file says "member")
    "zip_head": ("member", "lines"),  # the first `lines` lines of one member of a zip archive
    "aclimdb_subset": ("seed", "per_label", "csv", "sources_list"),  # the seeded IMDB subset
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RegistryError(ValueError):
    """``registry.json`` is malformed; the message names the entry and the field to fix."""


class UnknownDatasetError(KeyError):
    """A dataset name, or a file of a dataset, that the registry does not have (a readable ``KeyError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Source:
    """An official place files come from, and the recipe that turns it into the registry's files.

    ``sha256``/``size`` describe the downloaded thing itself and are ``None`` when nobody publishes
    them (then only the files it yields are checked, each against its own sha256).
    """

    key: str
    recipe: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    note: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileSpec:
    """One file of an entry: its path relative to the cache (and to every mirror), sha256 and size."""

    path: str
    sha256: str
    size: int
    urls: tuple[str, ...]
    source: str | None = None  # key into Entry.sources; None: downloaded as is from `urls`
    member: str | None = None  # its name inside an archive, when that differs from `path`

    @property
    def url(self) -> str:
        """The first official URL (of the file, or of the archive it is taken from)."""
        return self.urls[0] if self.urls else ""


@dataclass(frozen=True)
class Entry:
    """One dataset or pretrained artefact. ``provider`` is ``files``, ``sklearn`` or ``pip:<dist>``."""

    name: str
    title: str
    description: str
    provider: str
    licence: str
    citation: str
    labs: tuple[int, ...]
    optional: bool = False
    homepage: str = ""
    notes: str = ""
    import_name: str | None = None  # the module that provides it, for sklearn/pip entries
    files: tuple[FileSpec, ...] = ()
    sources: Mapping[str, Source] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Total bytes of the entry's files (0 for entries a package provides)."""
        return sum(f.size for f in self.files)

    @property
    def provider_kind(self) -> str:
        """``files``, ``sklearn`` or ``pip``."""
        return self.provider.split(":", 1)[0]

    def file(self, relpath: str) -> FileSpec:
        """The file at ``relpath``; a clear error listing a few of the entry's files otherwise."""
        wanted = str(PurePosixPath(relpath.replace("\\", "/")))
        for spec in self.files:
            if spec.path == wanted:
                return spec
        paths = [f.path for f in self.files]
        close = difflib.get_close_matches(wanted, paths, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = ", ".join(paths[:6]) + (f", … ({len(paths)} in all)" if len(paths) > 6 else "")
        raise UnknownDatasetError(
            f"dataset {self.name!r} has no file {relpath!r}{hint}; its files are: {shown or 'none'}"
        )

    def source_of(self, spec: FileSpec) -> Source:
        """Where ``spec`` comes from: its named source, or a plain download of its own URLs."""
        if spec.source is None:
            return Source(key=spec.path, recipe="download", urls=spec.urls, sha256=spec.sha256, size=spec.size)
        return self.sources[spec.source]


def registry_path() -> Path:
    """Where ``registry.json`` is read from.

    ``DPDL_REGISTRY`` (a path) wins, for trying a new entry; then the copy installed as package data
    (``dpdl.registry_data``, i.e. ``datasets/`` of the repository); then ``datasets/`` of a checkout.
    """
    override = os.environ.get("DPDL_REGISTRY", "").strip()
    if override:
        return Path(override).expanduser()
    try:
        packaged = importlib.resources.files("dpdl.registry_data").joinpath("registry.json")
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError):  # not installed with the package-data mapping
        pass
    return Path(__file__).resolve().parents[2] / "datasets" / "registry.json"


def readme_path() -> Path:
    """``README.md`` beside ``registry.json`` (the human-readable table generated from it)."""
    return registry_path().with_name("README.md")


def load(path: str | os.PathLike | None = None) -> dict[str, Entry]:
    """All entries of the registry at ``path`` (default :func:`registry_path`), by name, in file order."""
    path = Path(path) if path is not None else registry_path()
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise RegistryError(
            f"the dataset registry {path} does not exist; reinstall dpdl, or unset DPDL_REGISTRY if you set it"
        ) from None
    return dict(_load_cached(str(path), stamp))


def entries() -> list[Entry]:
    """Every entry, in registry order."""
    return list(load().values())


def names() -> list[str]:
    """Every dataset name, in registry order."""
    return list(load())


def get(name: str) -> Entry:
    """The entry called ``name``; an :class:`UnknownDatasetError` naming the known ones otherwise."""
    table = load()
    if name in table:
        return table[name]
    close = difflib.get_close_matches(str(name), list(table), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownDatasetError(f"no dataset called {name!r} in the registry.{hint} Known: {', '.join(table)}")


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int) -> tuple[tuple[str, Entry], ...]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RegistryError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise RegistryError(f"{path} must hold an object with an 'entries' list")
    table: dict[str, Entry] = {}
    for raw in data["entries"]:
        entry = _parse_entry(raw)
        if entry.name in table:
            raise RegistryError(f"{path}: dataset {entry.name!r} appears twice")
        table[entry.name] = entry
    return tuple(table.items())


def _parse_entry(raw: Any) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RegistryError(f"every registry entry needs a string 'name'; got {str(raw)[:80]!r}")
    name = raw["name"]

    def fail(what: str) -> RegistryError:
        return RegistryError(f"registry entry {name!r}: {what}")

    if not _NAME.match(name):
        raise fail("the name must be lower_case letters, digits and underscores")
    for key in ("title", "description", "provider", "licence", "citation"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(f"needs a non-empty string {key!r}")
    labs = raw.get("labs")
    if not isinstance(labs, list) or not all(isinstance(n, int) and 1 <= n <= 8 for n in labs):
        raise fail("'labs' must be a list of lab numbers 1-8")
    provider = raw["provider"]
    if provider not in ("files", "sklearn") and not (provider.startswith("pip:") and len(provider) > 4):
        raise fail(f"provider must be 'files', 'sklearn' or 'pip:<distribution>'; got {provider!r}")
    sources = {key: _parse_source(fail, key, value) for key, value in (raw.get("sources") or {}).items()}
    files = tuple(_parse_file(fail, value, sources) for value in raw.get("files") or [])
    if provider == "files" and not files:
        raise fail("a 'files' entry needs at least one file")
    if provider != "files" and (files or not raw.get("import")):
        raise fail(f"a {provider!r} entry has no files and needs 'import': the module that provides it")
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise fail("lists the same file path twice")
    _check_recipe_outputs(fail, sources, files)
    return Entry(
        name=name,
        title=raw["title"],
        description=raw["description"],
        provider=provider,
        licence=raw["licence"],
        citation=raw["citation"],
        labs=tuple(labs),
        optional=bool(raw.get("optional", False)),
        homepage=raw.get("homepage", ""),
        notes=raw.get("notes", ""),
        import_name=raw.get("import"),
        files=files,
        sources=sources,
    )


def _parse_source(fail, key: str, raw: Any) -> Source:
    if not isinstance(raw, dict):
        raise fail(f"source {key!r} must be an object")
    recipe = raw.get("recipe")
    if recipe not in RECIPES or recipe == "download":
        raise fail(f"source {key!r}: recipe must be one of {sorted(set(RECIPES) - {'download'})}; got {recipe!r}")
    urls = _urls(fail, f"source {key!r}", raw.get("urls"))
    missing = [p for p in RECIPES[recipe] if p not in raw]
    if missing:
        raise fail(f"source {key!r}: recipe {recipe!r} needs {', '.join(missing)}")
    sha256 = raw.get("sha256")
    if sha256 is not None and not _SHA256.match(str(sha256)):
        raise fail(f"source {key!r}: sha256 must be 64 lower-case hex digits or null")
    if sha256 is None and not str(raw.get("note", "")).strip():
        raise fail(f"source {key!r}: without a sha256, a 'note' must say why and how its files are checked")
    known = {"recipe", "urls", "sha256", "size", "note"}
    params = {k: v for k, v in raw.items() if k not in known}
    return Source(key, recipe, urls, sha256, raw.get("size"), raw.get("note", ""), params)


def _parse_file(fail, raw: Any, sources: Mapping[str, Source]) -> FileSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise fail(f"every file needs a string 'path'; got {str(raw)[:80]!r}")
    path = raw["path"]
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or str(pure) != path or path.startswith("."):
        raise fail(f"file path {path!r} must be relative, use '/', and stay inside the cache")
    if not _SHA256.match(str(raw.get("sha256", ""))):
        raise fail(f"file {path!r}: sha256 must be 64 lower-case hex digits")
    if not isinstance(raw.get("size"), int) or raw["size"] < 0:
        raise fail(f"file {path!r}: size must be a number of bytes")
    source = raw.get("source")
    if source is None:
        urls = _urls(fail, f"file {path!r}", raw.get("urls"))
    elif source not in sources:
        raise fail(f"file {path!r}: source {source!r} is not in the entry's 'sources'")
    elif "urls" in raw:
        raise fail(f"file {path!r}: give either 'urls' or 'source', not both")
    else:
        urls = sources[source].urls
    return FileSpec(path, raw["sha256"], raw["size"], urls, source, raw.get("member"))


def _urls(fail, what: str, urls: Any) -> tuple[str, ...]:
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and "://" in u for u in urls):
        raise fail(f"{what}: 'urls' must be a non-empty list of URLs")
    return tuple(urls)


def _check_recipe_outputs(fail, sources: Mapping[str, Source], files: Iterable[FileSpec]) -> None:
    for key, source in sources.items():
        produced = [f.path for f in files if f.source == key]
        if not produced:
            raise fail(f"source {key!r} is used by no file")
        if source.recipe == "zip_head" and len(produced) != 1:
            raise fail(f"source {key!r}: a zip_head source yields exactly one file; {len(produced)} use it")
        if source.recipe == "aclimdb_subset":
            outputs = {source.params["csv"], source.params["sources_list"]}
            if outputs != set(produced):
                raise fail(f"source {key!r}: its files must be exactly its csv and sources_list {sorted(outputs)}")


# --- datasets/README.md ---------------------------------------------------------------------------


def render_readme(table: Mapping[str, Entry] | None = None) -> str:
    """The text of ``datasets/README.md``: a table a person can read, generated from the registry."""
    table = load() if table is None else table
    lines = [
        "# Datasets",
        "",
        "<!-- Generated from registry.json by `dpdl data readme`. Edit registry.json, then regenerate. -->",
        "",
        "Every dataset and pretrained artefact the labs use: what it is, where it officially comes from,",
        "its licence and how to cite it. [`registry.json`](registry.json) beside this page is the source of",
        "truth: `dpdl.data` reads it, every file is checked against its sha256 before it is used, and this",
        "page is generated from it (`dpdl data readme`; a test fails when the page is stale).",
        "",
        "| name | what | files | size | licence | labs | comes from |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in table.values():
        name = f"`{entry.name}`" + (" (optional)" if entry.optional else "")
        count = str(len(entry.files)) if entry.files else "–"
        size = _human_size(entry.size) if entry.files else "–"
        labs = ", ".join(str(n) for n in entry.labs)
        lines.append(
            f"| {name} | {_cell(entry.title)} | {count} | {size} | {_cell(entry.licence)} | {labs} | "
            f"{_cell(_origin(entry))} |"
        )
    lines += ["", _GUIDE.strip(), "", "## Entries", ""]
    for entry in table.values():
        lines += _entry_section(entry)
    return "\n".join(lines).rstrip() + "\n"


def _entry_section(entry: Entry) -> list[str]:
    heading = f"### `{entry.name}` — {entry.title}" + (" (optional)" if entry.optional else "")
    out = [heading, "", entry.description, ""]
    out.append(f"- **Licence:** {entry.licence}")
    out.append(f"- **Cite:** {entry.citation}")
    out.append(f"- **Labs:** {', '.join(str(n) for n in entry.labs)}")
    if entry.homepage:
        out.append(f"- **Homepage:** <{entry.homepage}>")
    if entry.provider != "files":
        out.append(f"- **Provided by:** {_origin(entry)} (module `{entry.import_name}`); no files to fetch")
    for source in entry.sources.values():
        out.append(f"- **Source `{source.key}`** ({_source_words(source)}): {', '.join(source.urls)}")
        if source.note:
            out.append(f"  {source.note}")
    if entry.notes:
        out.append(f"- **Notes:** {entry.notes}")
    out.append("")
    if entry.files and len(entry.files) <= _FILES_SHOWN:
        out += ["| path | bytes | sha256 | official URL |", "|---|---|---|---|"]
        for spec in entry.files:
            where = spec.url if spec.source is None else f"from `{spec.source}`"
            out.append(f"| `{spec.path}` | {spec.size:,} | `{spec.sha256}` | {where} |")
        out.append("")
    elif entry.files:
        folders = sorted({str(PurePosixPath(f.path).parent) for f in entry.files})
        out.append(
            f"{len(entry.files)} files ({entry.size:,} bytes) in {', '.join(f'`{d}/`' for d in folders)}; "
            "each file's sha256 and size are in `registry.json`."
        )
        out.append("")
    return out


def _origin(entry: Entry) -> str:
    if entry.provider == "sklearn":
        return "bundled with scikit-learn"
    if entry.provider_kind == "pip":
        return f"pip package `{entry.provider[4:]}`"
    if entry.sources:
        return "; ".join(_source_words(source) for source in entry.sources.values())
    return f"{len(entry.files)} official download" + ("s" if len(entry.files) != 1 else "")


def _source_words(source: Source) -> str:
    if source.recipe == "zip":
        return f"members of `{source.key}`, each verified"
    if source.recipe == "zip_head":
        return f"first {source.params['lines']:,} lines of `{source.params['member']}` in `{source.key}`"
    return f"derived from `{source.key}` (seed {source.params['seed']})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


_FILES_SHOWN = 12

_GUIDE = """
## How a file is found

Every loader in `dpdl.data` asks for its files through one function, which looks in this order:

1. **The cache**: `DPDL_DATA_DIR`, by default the per-user cache directory (`~/.cache/dpdl`, or
   `$XDG_CACHE_HOME/dpdl`; `~/Library/Caches/dpdl` on macOS; `%LOCALAPPDATA%\\dpdl\\Cache` on Windows).
   Files sit there at the relative paths listed below, so `torchvision.datasets.MNIST(root=...)` and
   `ImageFolder` work on it directly.
2. **Each mirror** in `DPDL_DATA_MIRROR` (folders separated by `os.pathsep`: `:` on Linux and macOS,
   `;` on Windows) with the same layout, for example the course's shared offline copy. A mirror's copy
   is hashed, and only when its sha256 matches is it hard-linked (same file system) or copied into the
   cache. A bad copy is skipped with a warning and the next mirror is tried.
3. **The official URL**, unless `DPDL_OFFLINE=1`: downloaded with a progress bar and retries into a
   temporary file, whose size and sha256 are checked before an atomic rename puts it in the cache.
   Archives (hymenoptera's zip, GloVe's zip, aclImdb's tarball) are downloaded to a temporary folder;
   the files the recipe takes or derives from them are each checked against their own sha256, and the
   archive is deleted.
4. Otherwise a `DataUnavailableError` names the dataset, the file, and both ways out: point
   `DPDL_DATA_MIRROR` at a copy, or go online and run `dpdl data fetch NAME`.

A file that fails its checksum is never used and never left in the cache; the error
(`ChecksumError`) says which file failed and what was expected.

**Why cached files are not re-hashed on every load.** When a file enters the cache, its verified
sha256, size and modification time are written to a stamp in `.dpdl/verified/` inside the cache.
A later load trusts the file if its size and modification time still match the stamp, so loading
MNIST does not re-hash 10 MB each time; a file whose stamp is missing or does not match is hashed
again (and removed if it fails). `dpdl data verify` re-hashes everything regardless. dpdl does not
make cached files read-only (a file hard-linked from a mirror keeps the mirror's permissions), and
the cache's folders stay writable, because torchvision unpacks MNIST's `.gz` files into `MNIST/raw/`
beside them.

A filled cache has the mirror layout, so it can serve as a mirror for other machines:
`DPDL_DATA_DIR=/srv/dpdl-mirror dpdl data fetch --all` builds one (the CI workflow does this).

## Command line

| command | what it does |
|---|---|
| `dpdl data list` | every entry: name, size, whether it is in the cache (or whether its package imports), licence |
| `dpdl data fetch NAME...` / `--all` | put the entries' files in the cache, verified (mirror first, then download) |
| `dpdl data verify NAME...` / `--all` | re-hash the cached files; a file that fails is removed |
| `dpdl data path NAME` | print where the entry's files are in the cache (one file, or their common folder) |
| `dpdl data readme [--check]` | regenerate this page from `registry.json`, or check that it is current |

Exit status, for scripts:

| status | meaning |
|---|---|
| 0 | everything asked for is fine. `fetch --all` also exits 0 when an **optional** entry cannot be had: it prints `skipped NAME (optional): REASON` |
| 1 | a required entry (or one named on the command line) cannot be had, a file failed its checksum, `path` of an entry that is not cached, or `readme --check` found the page stale |
| 2 | usage: an unknown dataset name, no names and no `--all`, or both |

`fetch` and `verify` print one line per entry, starting with `ok`, `skipped`, `missing` or `FAILED`;
error details go to stderr. `verify` lists files that are not cached as `missing` without failing: run
`fetch` to get them. Entries provided by a package (scikit-learn, pip) have no files; `list` and
`fetch` report whether the package imports, and `fetch` fails for a required one that does not.

## Environment

| variable | effect |
|---|---|
| `DPDL_DATA_DIR` | the cache folder (default: the per-user cache directory above) |
| `DPDL_DATA_MIRROR` | mirror folders read before any download, separated by `os.pathsep` |
| `DPDL_OFFLINE=1` | never download; cache and mirrors only |
| `DPDL_REGISTRY` | read another `registry.json` (to try a new entry before adding it here) |
| `DPDL_PROGRESS=0`, `CI` | no progress bars |

## Adding an entry

Add an object to `entries` in `registry.json`: `name`, `title`, `description`, `provider`
(`files`, `sklearn`, or `pip:DISTRIBUTION` with `import`), `licence`, `citation`, `labs`, `optional`,
and for `files` entries each file's `path` (its path in the cache and in every mirror), `sha256`,
`size` and `urls`, or a `source` naming one of the entry's `sources` (recipes `zip`, `zip_head`,
`aclimdb_subset`; a source whose own hash is not published has `"sha256": null` and a `note`).
Then run `dpdl data readme` and `dpdl data fetch NAME`.
"""
