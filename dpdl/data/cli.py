"""``dpdl data``: list, fetch, verify and locate the registry's datasets, and regenerate its README.

A thin layer over :mod:`dpdl.data.store` and :mod:`dpdl.data.registry`. Exit status, for scripts:
0 fine, 1 a required dataset unavailable or a file failed its checksum, 2 usage (see datasets/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dpdl.data import registry, store
from dpdl.data.download import DataUnavailableError
from dpdl.data.registry import Entry, UnknownDatasetError

__all__ = ["register", "OK", "FAILED", "USAGE"]

OK, FAILED, USAGE = 0, 1, 2


def register(subparsers) -> None:
    """Add ``data`` and its actions to the ``dpdl`` command's subparsers."""
    parser = subparsers.add_parser(
        "data",
        help="list, fetch, verify and locate the course datasets",
        description="The dataset registry and its verified cache (DPDL_DATA_DIR, mirrors in DPDL_DATA_MIRROR, "
        "DPDL_OFFLINE=1 for no downloads). Exit status: 0 fine, 1 unavailable or failed checksum, 2 usage.",
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    listing = actions.add_parser("list", help="every entry: size, whether it is cached, licence")
    listing.set_defaults(func=run_list)
    for action, helptext, func in (
        ("fetch", "put the datasets' files in the cache, verified (mirror first, then download)", run_fetch),
        ("verify", "re-hash the cached files; a file that fails its checksum is removed", run_verify),
    ):
        sub = actions.add_parser(action, help=helptext, description=helptext)
        sub.add_argument("names", nargs="*", metavar="NAME", help="dataset names (see `dpdl data list`)")
        sub.add_argument("--all", action="store_true", help="every entry in the registry")
        sub.set_defaults(func=func)
    path = actions.add_parser("path", help="print where a dataset is in the cache (its file, or its folder)")
    path.add_argument("name", metavar="NAME")
    path.set_defaults(func=run_path)
    readme = actions.add_parser("readme", help="regenerate datasets/README.md from registry.json")
    readme.add_argument("--check", action="store_true", help="only check that the README is current (exit 1 if not)")
    readme.add_argument("--output", type=Path, default=None, help="write here instead (default: beside registry.json)")
    readme.set_defaults(func=run_readme)


def run_list(args: argparse.Namespace) -> int:
    """One row per entry: name, size, cached?, licence."""
    rows = [("name", "size", "cached", "licence")]
    for entry in registry.entries():
        name = entry.name + (" (optional)" if entry.optional else "")
        size = registry._human_size(entry.size) if entry.files else "-"
        rows.append((name, size, _cached_column(entry), entry.licence))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return OK


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch each entry; optional ones that cannot be had are skipped under ``--all``."""
    chosen = _chosen(args)
    if isinstance(chosen, int):
        return chosen
    status = OK
    for entry in chosen:
        try:
            store.fetch(entry.name)
        except DataUnavailableError as err:
            headline = str(err).splitlines()[0]
            if entry.optional and args.all:
                print(f"skipped  {entry.name} (optional): {headline}")
                continue
            print(f"FAILED   {entry.name}: {headline}")
            print(f"error: {err}", file=sys.stderr)
            status = FAILED
            continue
        print(f"ok       {entry.name}  {_fetched(entry)}")
    return status


def run_verify(args: argparse.Namespace) -> int:
    """Re-hash the cache; exit 1 on any mismatch (files not cached are listed, not failures)."""
    chosen = _chosen(args)
    if isinstance(chosen, int):
        return chosen
    status = OK
    for entry in chosen:
        if entry.provider != "files":
            importable = "importable" if store.provider_available(entry) else "NOT importable"
            print(f"ok       {entry.name}  (provided by {_provider_words(entry)}: {importable}; no files)")
            continue
        checks = store.verify(entry.name)
        bad = [c for c in checks if c.status == "mismatch"]
        missing = [c for c in checks if c.status == "missing"]
        for check in bad:
            print(f"FAILED   {entry.name}: {check.path} failed its checksum: {check.detail}")
        if bad:
            print(
                f"error: {entry.name}: {len(bad)} file(s) failed; run `dpdl data fetch {entry.name}`", file=sys.stderr
            )
            status = FAILED
        elif missing and len(missing) == len(checks):
            print(f"missing  {entry.name}  (not cached; run `dpdl data fetch {entry.name}`)")
        elif missing:
            print(f"missing  {entry.name}  ({len(checks) - len(missing)} of {len(checks)} files cached and verified)")
        else:
            print(f"ok       {entry.name}  ({len(checks)} file{'s' if len(checks) != 1 else ''} verified)")
    return status


def run_path(args: argparse.Namespace) -> int:
    """Print the entry's path in the cache; exit 1 (and print nothing) when it is not cached yet."""
    try:
        entry = registry.get(args.name)
    except UnknownDatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE
    try:
        where = store.dataset_path(entry.name)
    except DataUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return FAILED
    if entry.provider == "files" and store.cached_count(entry.name) < len(entry.files):
        print(
            f"error: {entry.name} is not (fully) in the cache {store.cache_dir()}; run `dpdl data fetch {entry.name}`",
            file=sys.stderr,
        )
        return FAILED
    print(where)
    return OK


def run_readme(args: argparse.Namespace) -> int:
    """Write ``datasets/README.md`` from the registry, or with ``--check`` say whether it is current."""
    target = args.output or registry.readme_path()
    text = registry.render_readme()
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            print(f"ok       {target} is current")
            return OK
        state = "missing" if current is None else "stale"
        print(f"error: {target} is {state}; run `dpdl data readme`", file=sys.stderr)
        return FAILED
    target.write_text(text, encoding="utf-8")
    print(f"wrote    {target}")
    return OK


def _chosen(args: argparse.Namespace) -> list[Entry] | int:
    if args.all and args.names:
        print("error: give dataset names or --all, not both", file=sys.stderr)
        return USAGE
    if args.all:
        return registry.entries()
    if not args.names:
        print(f"error: name the datasets to {args.data_command} (see `dpdl data list`), or give --all", file=sys.stderr)
        return USAGE
    try:
        return [registry.get(name) for name in args.names]
    except UnknownDatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE


def _cached_column(entry: Entry) -> str:
    if entry.provider != "files":
        state = "importable" if store.provider_available(entry) else "NOT importable"
        return f"{entry.provider_kind}: {state}"
    have, total = store.cached_count(entry.name), len(entry.files)
    return "yes" if have == total else "no" if have == 0 else f"partly ({have}/{total})"


def _fetched(entry: Entry) -> str:
    if entry.provider != "files":
        return f"(provided by {_provider_words(entry)}: importable)"
    count = len(entry.files)
    return f"({count} file{'s' if count != 1 else ''}, {registry._human_size(entry.size)}) in {store.cache_dir()}"


def _provider_words(entry: Entry) -> str:
    return "scikit-learn" if entry.provider == "sklearn" else f"pip package {entry.provider[4:]}"


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return USAGE
