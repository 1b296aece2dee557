"""``dpdl data``: what scripts can rely on — exit codes (0 fine, 1 unavailable/mismatch, 2 usage) and messages."""

import argparse
import json

import pytest

from dpdl.data import cli, registry
from tests.test_data_store import A, B, World


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``dpdl data ARGV`` through the same register() the dpdl command uses: (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="dpdl")
    cli.register(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args(["data", *argv])
        code = args.func(args)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    world = World(tmp_path, monkeypatch)
    world.add_files("toy", {"toy/a.bin": A, "toy/b.txt": B})
    world.add_files("weights", {"weights/w.pth": b"w" * 64}, optional=True, serve=False)
    world.add_package("pkg", "json")
    return world


def test_list_shows_each_entry_with_size_cache_state_and_licence(world, capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "size", "cached", "licence"]
    toy = next(line for line in lines if line.startswith("toy "))
    assert toy.split()[1:4] == [str(len(A) + len(B)), "B", "no"] and toy.endswith("MIT")
    assert any(line.startswith("weights (optional)") for line in lines)
    assert "pip: importable" in next(line for line in lines if line.startswith("pkg "))
    run(capsys, "fetch", "toy")
    world.use_mirrors()
    (world.cache / "toy" / "b.txt").unlink()
    assert "partly (1/2)" in run(capsys, "list")[1]


def test_fetch_names_prints_ok_and_exits_0(world, capsys):
    code, out, err = run(capsys, "fetch", "toy", "pkg")
    assert code == 0 and err == ""
    assert out.splitlines()[0].startswith("ok       toy  (2 files")
    assert "pkg  (provided by pip package json-dist: importable)" in out
    assert (world.cache / "toy" / "a.bin").read_bytes() == A


def test_fetch_all_skips_an_optional_entry_that_cannot_be_had_with_the_reason(world, capsys):
    code, out, err = run(capsys, "fetch", "--all")
    assert code == 0
    skipped = next(line for line in out.splitlines() if line.startswith("skipped"))
    assert skipped.startswith("skipped  weights (optional): dataset 'weights': file 'weights/w.pth'")
    assert "the download failed" in skipped
    assert "FAILED" not in out and err == ""


def test_fetch_all_fails_when_a_required_entry_cannot_be_had(world, capsys):
    world.unserve()
    code, out, err = run(capsys, "fetch", "--all")
    assert code == 1
    assert "FAILED   toy: dataset 'toy'" in out
    assert "error: dataset 'toy'" in err and "DPDL_DATA_MIRROR" in err and "dpdl data fetch toy" in err
    assert "ok       pkg" in out  # the others are still fetched


def test_fetching_an_optional_entry_by_name_fails_when_it_cannot_be_had(world, capsys):
    code, out, _ = run(capsys, "fetch", "weights")
    assert code == 1 and out.startswith("FAILED   weights")


def test_fetch_fails_for_a_required_package_that_does_not_import(world, capsys):
    world.add_package("ghost", "no_such_module_for_dpdl_tests")
    code, out, err = run(capsys, "fetch", "ghost")
    assert code == 1 and "FAILED   ghost" in out and "pip install" in err


def test_fetch_reports_a_checksum_failure_and_exits_1(world, capsys):
    (world.upstream / "toy" / "toy" / "a.bin").write_bytes(b"x" * len(A))
    code, out, err = run(capsys, "fetch", "toy")
    assert code == 1 and "failed its checksum" in out and "toy/a.bin" in err
    assert not (world.cache / "toy" / "a.bin").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (("fetch",), "name the datasets to fetch"),
        (("verify",), "name the datasets to verify"),
        (("fetch", "toy", "--all"), "not both"),
        (("fetch", "tyo"), "Did you mean 'toy'?"),
        (("verify", "nothing"), "no dataset called 'nothing'"),
        (("path", "tyo"), "Did you mean 'toy'?"),
    ],
)
def test_usage_errors_exit_2_with_a_message(world, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and out == ""


def test_data_without_an_action_prints_help_and_exits_2(world, capsys):
    code, _, err = run(capsys)
    assert code == 2 and "fetch" in err and "verify" in err


def test_an_unknown_action_is_an_argparse_usage_error(world, capsys):
    assert run(capsys, "frobnicate")[0] == 2


def test_verify_passes_after_fetch_and_fails_on_a_corrupted_file(world, capsys):
    run(capsys, "fetch", "toy")
    code, out, _ = run(capsys, "verify", "toy", "pkg")
    assert code == 0 and "ok       toy  (2 files verified)" in out and "ok       pkg" in out
    (world.cache / "toy" / "b.txt").write_bytes(B.upper())
    code, out, err = run(capsys, "verify", "toy")
    assert code == 1
    assert "FAILED   toy: toy/b.txt failed its checksum" in out and "removed from the cache" in out
    assert "dpdl data fetch toy" in err
    assert not (world.cache / "toy" / "b.txt").exists()
    code, out, _ = run(capsys, "verify", "toy")
    assert code == 0 and "missing  toy  (1 of 2 files cached and verified)" in out


def test_verify_lists_entries_that_are_not_cached_without_failing(world, capsys):
    code, out, _ = run(capsys, "verify", "--all")
    assert code == 0
    assert "missing  toy  (not cached; run `dpdl data fetch toy`)" in out


def test_path_prints_the_cached_location_or_exits_1(world, capsys):
    code, out, err = run(capsys, "path", "toy")
    assert code == 1 and out == "" and "dpdl data fetch toy" in err
    run(capsys, "fetch", "toy")
    code, out, _ = run(capsys, "path", "toy")
    assert code == 0 and out.strip() == str(world.cache / "toy")
    code, out, _ = run(capsys, "path", "pkg")
    assert code == 0 and out.strip() == str(__import__("pathlib").Path(json.__file__).parent)


def test_path_of_a_package_entry_that_is_missing_exits_1(world, capsys):
    world.add_package("ghost", "no_such_module_for_dpdl_tests")
    code, out, err = run(capsys, "path", "ghost")
    assert code == 1 and out == "" and "not installed" in err


def test_readme_writes_then_check_passes_and_a_stale_page_fails(world, capsys, tmp_path):
    target = tmp_path / "README.md"
    code, _, err = run(capsys, "readme", "--check", "--output", str(target))
    assert code == 1 and "missing" in err
    assert run(capsys, "readme", "--output", str(target))[0] == 0
    assert target.read_text(encoding="utf-8") == registry.render_readme()
    assert run(capsys, "readme", "--check", "--output", str(target))[0] == 0
    target.write_text(target.read_text(encoding="utf-8") + "hand edit\n", encoding="utf-8")
    code, _, err = run(capsys, "readme", "--check", "--output", str(target))
    assert code == 1 and "stale; run `dpdl data readme`" in err


def test_readme_defaults_to_the_page_beside_the_registry(world, capsys):
    assert run(capsys, "readme")[0] == 0
    assert (world.registry.parent / "README.md").read_text(encoding="utf-8") == registry.render_readme()
