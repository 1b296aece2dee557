"""`dpdl release`: the student tree holds no exercise solution, model answer or hidden check, points at the
repository it is given, refuses to overwrite, and works on its own (installs, `dpdl doctor`, Run All).

How leaks are looked for (`_leaks`): from every exercise source, the text of each solution block (between
`### BEGIN SOLUTION` and `### END SOLUTION`), each model written answer (`BEGIN ANSWER`..`END ANSWER`) and
each hidden check cell is a secret. Whitespace is normalised (every run of spaces, tabs and newlines
becomes one space), then these are searched for in every file of the release, both in its raw text and,
for notebooks and JSON, in its decoded strings (a notebook stores `"` as `\\"`):
- every whole secret (block, answer or cell) of at least 30 characters;
- every line of a secret that is non-trivial: at least 30 characters once normalised, and not an import
  statement. Shorter lines (`return x`, `loss.backward()`) would match innocent code anywhere, and an
  import (`from dpdl.grading.verdict import record`, which every hidden check starts with) says nothing;
- except text that students are shown anyway: a secret found inside the public part of any instructor
  notebook (every lab's and exercise's cells outside solution blocks, answers and hidden checks, hints
  on BEGIN lines included) is no leak. A hidden check may repeat a visible check's set-up line, a training
  loop may create its optimiser as every lab does (`optimizer = torch.optim.Adam(model.parameters(),
  lr=LR)`). Lab *solutions* are not public: with `--with-lab-solutions` they are searched too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from dpdl.cli import main
from dpdl.notebooks import REPO, discover_notebooks, install_source, read_notebook
from dpdl.notebooks.build import find_blocks
from dpdl.release import ReleaseError, public_repo, withheld_lab_solutions, write_release

ROOT = Path(__file__).resolve().parents[1]
EXERCISE_SOURCES = sorted(ROOT.glob("exercises/lab*/lab*_exercise.ipynb"))
OTHER_REPO, OTHER_BRANCH = "someone-else/dl-course-2027", "2027"
MIN_SECRET = 30  # characters, whitespace normalised: shorter lines match innocent code
_IMPORT_RE = re.compile(r"^(?:from [\w.]+ )?import [\w., ]+(?: as \w+)?$")
# Secret lines that the release may hold, where, and why that is no leak.
ALLOWED = {
    (
        "src_padding_mask = src == self.pad_index",
        "dpdl/models/transformer.py",
    ): "lab 7's exercise writes the encoder's residual blocks by hand; it starts, as the package's "
    "Seq2SeqTransformer.encode does, from the padding mask and the scaled, position-encoded embedding",
    ("x = self.positional(self.src_embed(src) * math.sqrt(self.d_model))", "dpdl/models/transformer.py"): "the same",
}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The fullest release (lab solutions included), for another repository and branch."""
    out = tmp_path_factory.mktemp("release") / "dl-course-2027"
    start = time.perf_counter()
    write_release(out, repo=OTHER_REPO, branch=OTHER_BRANCH, with_lab_solutions=True, root=ROOT)
    print(f"release written in {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def default_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default") / "release"
    write_release(out, root=ROOT)
    return out


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _secrets(nb) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(kind, text), ...], public lines)`` of an instructor notebook: its solution blocks, model answers
    and hidden check cells, and the normalised lines that students see anyway."""
    secrets, public = [], []
    for index, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        if cell.get("metadata", {}).get("dpdl", {}).get("role") == "hidden":
            secrets.append((f"hidden check (cell {index})", cell.source))
            continue
        kind = "solution" if cell.cell_type == "code" else "model answer"
        inside = set()  # the lines of the blocks, less the BEGIN lines: their hints are shown to students
        for block in find_blocks(cell.source, cell.cell_type):
            secrets.append((f"{kind} (cell {index})", "\n".join(lines[block.begin + 1 : block.end])))
            inside.update(range(block.begin + 1, block.end + 1))
        public.append(_normalise("\n".join(line for number, line in enumerate(lines) if number not in inside)))
    return secrets, public


def _public_text() -> str:
    """What every instructor notebook shows students anyway, normalised, one NUL between cells."""
    return "\0".join(text for source in discover_notebooks(ROOT) for text in _secrets(read_notebook(source))[1])


def _needles(sources: list[Path], public: str = "") -> list[tuple[str, str]]:
    """``(where it comes from, normalised text)`` to search for: whole secrets and their non-trivial lines,
    less those found in ``public``."""
    needles = {}
    for source in sources:
        for kind, text in _secrets(read_notebook(source))[0]:
            where = f"{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source} {kind}"
            candidates = [_normalise(text)] + [_normalise(line) for line in text.split("\n")]
            for candidate in candidates:
                if len(candidate) >= MIN_SECRET and candidate not in public and not _IMPORT_RE.match(candidate):
                    needles.setdefault(candidate, where)
    return [(where, needle) for needle, where in needles.items()]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _haystacks(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as normalised text: its bytes decoded, plus the strings of a notebook's
    or JSON file's JSON (one NUL between strings, so that no match spans two of them)."""
    texts = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        text = _normalise(raw)
        if path.suffix in (".ipynb", ".json"):
            try:
                text += "\0" + "\0".join(_normalise(string) for string in _strings(json.loads(raw)))
            except ValueError:
                pass
        texts[str(path.relative_to(folder))] = text
    return texts


def _leaks(needles: list[tuple[str, str]], haystacks: dict[str, str]) -> list[str]:
    return [
        f"{name}: {where}: {needle[:80]!r}"
        for where, needle in needles
        for name, text in haystacks.items()
        if needle in text and (needle, name) not in ALLOWED
    ]


def test_the_leak_search_finds_a_solution_line_quoted_inside_a_notebook(tmp_path):
    needles = _needles(EXERCISE_SOURCES)
    assert len(needles) > 100, "the exercises' solutions should give many lines to look for"
    quoted = next(needle for where, needle in needles if '"' in needle and "solution" in where)
    leaked = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1\n    " + quoted.replace(" ", "  "))])
    nbformat.write(leaked, tmp_path / "copy.ipynb")
    (tmp_path / "notes.txt").write_text(needles[-1][1])
    found = _leaks(needles, _haystacks(tmp_path))
    assert any(line.startswith("copy.ipynb: ") for line in found)
    assert any(line.startswith("notes.txt: ") for line in found)


def test_no_solution_model_answer_or_hidden_check_appears_in_any_file_of_the_release(release, default_release):
    needles = _needles(EXERCISE_SOURCES, _public_text())
    assert len(needles) > 100
    for tree in (release, default_release):
        leaks = _leaks(needles, _haystacks(tree))
        assert not leaks, f"{len(leaks)} secrets found in the release:\n" + "\n".join(leaks[:20])


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
HINT_NGRAM = 6  # tokens: `x.shape[-1]` is 6; a run this long copied from the solution is code, not a hint


@pytest.mark.parametrize("source", EXERCISE_SOURCES, ids=lambda path: path.parent.name)
def test_no_exercise_hint_repeats_its_solution_code(source):
    """A hint on a BEGIN SOLUTION line reaches students: it may name an idea, never give a run of the
    solution's code (``loss = (X - U @ V.T).pow(2).sum()`` as a "hint" gives away the marks)."""
    nb = read_notebook(source)
    copied = []
    for index, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        for block in find_blocks(cell.source, cell.cell_type):
            hint = lines[block.begin].partition("hint:")[2]
            code = [line.split("#")[0] for line in lines[block.begin + 1 : block.end]]
            solution_tokens = _TOKEN_RE.findall("\n".join(code))
            runs = {tuple(solution_tokens[i : i + HINT_NGRAM]) for i in range(len(solution_tokens) - HINT_NGRAM + 1)}
            hint_tokens = _TOKEN_RE.findall(hint)
            for i in range(len(hint_tokens) - HINT_NGRAM + 1):
                if tuple(hint_tokens[i : i + HINT_NGRAM]) in runs:
                    copied.append(
                        f"cell {index}: {hint.strip()!r} repeats {' '.join(hint_tokens[i : i + HINT_NGRAM])!r}"
                    )
                    break
    assert not copied, f"{source.name}: hints that give solution code away:\n" + "\n".join(copied)


def test_lab_solutions_that_would_reveal_an_exercise_stay_stubbed(release):
    withheld = withheld_lab_solutions(ROOT)
    for line in withheld:
        path, cell = line.split(", cell ")
        index = int(cell.split(":")[0])
        published = read_notebook(release / path).cells[index]
        assert "### BEGIN SOLUTION" not in published.source and "# YOUR CODE HERE" in published.source, line
    print("\n".join(withheld) or "no lab solution shares a line with an exercise")


def test_release_holds_the_package_registry_student_copies_and_lab_sources_only_when_asked(release, default_release):
    for tree in (release, default_release):
        for needed in (
            "pyproject.toml",
            "constraints.txt",
            "README.md",
            "datasets/registry.json",
            "dpdl/__init__.py",
            "dpdl/grading/selfcheck.py",
            "dpdl/release.py",
        ):
            assert (tree / needed).is_file(), needed
        assert not list(tree.rglob("__pycache__")) and not (tree / "tests").exists()
        assert not list(tree.glob("exercises/*/*.ipynb")), "exercise sources are never released"
        notebooks = sorted(path.relative_to(tree) for path in tree.rglob("*.ipynb"))
        students = [path.relative_to(ROOT) for path in discover_notebooks(ROOT, students=True)]
        assert [path for path in notebooks if path.parent.name == "student"] == sorted(students)
    assert not list(default_release.glob("labs/*/*.ipynb"))
    lab_sources = sorted(path.relative_to(release) for path in release.glob("labs/*/*.ipynb"))
    assert lab_sources == sorted(
        path.relative_to(ROOT) for path in discover_notebooks(ROOT) if path.relative_to(ROOT).parts[0] == "labs"
    )


def test_no_hidden_cell_survives_and_every_other_cell_does(release):
    for source in EXERCISE_SOURCES:
        nb = read_notebook(source)
        copy = read_notebook(release / source.relative_to(ROOT).parent / "student" / source.name)
        kept = [cell.id for cell in nb.cells if cell.get("metadata", {}).get("dpdl", {}).get("role") != "hidden"]
        assert [cell.id for cell in copy.cells] == kept
        assert not [cell for cell in copy.cells if cell.metadata.get("dpdl", {}).get("role") == "hidden"]


def test_badges_install_cells_readme_and_setting_point_at_the_given_repository(release, default_release):
    assert public_repo(release) == OTHER_REPO and public_repo(default_release) == REPO == public_repo(ROOT)
    for path in release.rglob("*.ipynb"):
        nb = read_notebook(path)
        relative = path.relative_to(release).as_posix()
        assert (
            f"https://colab.research.google.com/github/{OTHER_REPO}/blob/{OTHER_BRANCH}/{relative}"
            in nb.cells[0].source
        ), relative
        assert nb.cells[1].source == install_source(OTHER_REPO, OTHER_BRANCH), relative
    readme = (release / "README.md").read_text()
    assert f"git clone --branch {OTHER_BRANCH} https://github.com/{OTHER_REPO}.git" in readme
    assert "dpdl check exercises/lab1/student/lab1_exercise.ipynb" in readme
    assert f"/{OTHER_REPO}/blob/{OTHER_BRANCH}/exercises/lab8/student/lab8_exercise.ipynb" in readme
    hits = [name for name, text in _haystacks(release).items() if REPO in text]
    assert not hits, f"the default repository {REPO} is still named in {hits}"


def _tracked_files(root: Path) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    return [root / name for name in listed.stdout.split("\0") if name and (root / name).is_file()]


def test_the_public_repository_is_named_once_in_the_source(release):
    """Only `[tool.dpdl] public-repo` names it; notebooks carry it only in the badge and install cell that
    the conventions check derives from that setting (and `dpdl release` rewrites)."""
    setting = f'public-repo = "{REPO}"'
    places = []
    for path in _tracked_files(ROOT):
        text = path.read_bytes().decode("utf-8", errors="replace")
        if REPO not in text:
            continue
        relative = path.relative_to(ROOT).as_posix()
        if path.suffix == ".ipynb":
            nb = read_notebook(path)
            places += [
                f"{relative} cell {index}"
                for index, cell in enumerate(nb.cells)
                if REPO in json.dumps(cell) and index > 1
            ]
        elif relative == "pyproject.toml":
            assert text.count(REPO) == 1 and setting in text
        else:
            places.append(relative)
    assert not places, f"{REPO} is hard-coded in {places}; use the setting (dpdl.notebooks.REPO)"


def test_a_non_empty_folder_is_refused_and_left_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "my-work.ipynb").write_text("mine")
    with pytest.raises(ReleaseError, match="is not empty; dpdl release never overwrites"):
        write_release(out, root=ROOT)
    assert [path.name for path in out.iterdir()] == ["my-work.ipynb"] and (out / "my-work.ipynb").read_text() == "mine"
    assert main(["release", str(out)]) == 1
    assert "is not empty" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReleaseError, match="not a folder"):
        write_release(tmp_path / "file", root=ROOT)
    with pytest.raises(ValueError, match="OWNER/NAME"):
        write_release(tmp_path / "new", repo="github.com/x", root=ROOT)
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


def test_release_command_writes_an_empty_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "empty"
    out.mkdir()
    monkeypatch.chdir(ROOT)
    assert main(["release", str(out), "--repo", OTHER_REPO]) == 0
    assert f"wrote {out}: " in capsys.readouterr().out and public_repo(out) == OTHER_REPO
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_release_installs_in_a_fresh_venv_runs_doctor_and_a_notebook_up_to_its_first_stub(default_release, tmp_path):
    """From a temporary directory, offline: a new venv (no pip of its own) that sees the dev environment's
    installed packages through a .pth file, `pip install --no-deps --no-build-isolation -e RELEASE`, then
    `dpdl doctor`, and lab 1's first student notebook run to its first stub by the release's own dpdl."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "dev_environment.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(DPDL_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*command, cwd=work):
        done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", default_release)
    where = run(
        python,
        "-c",
        "import dpdl, dpdl.notebooks as n, dpdl.data.registry as r; "
        "print(dpdl.__file__, n.REPO, r.registry_path(), sep='\\n')",
    ).split("\n")
    assert Path(where[0]).is_relative_to(default_release) and where[1] == REPO
    assert Path(where[2]).resolve() == (default_release / "datasets" / "registry.json").resolve()
    doctor = run(venv / "bin" / "dpdl", "doctor")
    assert "torch" in doctor and "device" in doctor.lower()

    notebook = default_release / "labs" / "lab1" / "student" / "lab1_tensors.ipynb"
    nb = read_notebook(notebook)
    # A first cell that fails unless the kernel imports the release's own dpdl.
    nb.cells.insert(
        0,
        nbformat.v4.new_code_cell(
            "import dpdl, pathlib\n"
            "assert pathlib.Path(dpdl.__file__).is_relative_to(pathlib.Path.cwd().parents[2]), dpdl.__file__"
        ),
    )
    probe = notebook.with_name("probe.ipynb")
    nbformat.write(nb, probe)
    script = textwrap.dedent(f"""
        from dpdl.notebooks.run import run_to_first_stub
        run = run_to_first_stub({str(probe)!r}, timeout=300)
        print(run.reached_stub, run.first_stub, run.blocking_errors)
    """)
    assert run(python, "-c", script).strip().startswith("True ")
    probe.unlink()


def _mini_course(root: Path) -> Path:
    """A course source in miniature: the package's own files, the grading fixture as lab 1's exercise (it
    has a solution, a model answer and a hidden check)."""
    import shutil

    root.mkdir()
    (root / "pyproject.toml").write_text(f'[project]\nname = "dpdl"\n\n[tool.dpdl]\npublic-repo = "{REPO}"\n')
    shutil.copytree(ROOT / "dpdl", root / "dpdl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "datasets", root / "datasets")
    exercise = root / "exercises" / "lab1" / "lab1_exercise.ipynb"
    exercise.parent.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "grading" / "reference.ipynb", exercise)
    return exercise


def test_the_hidden_check_of_an_exercise_never_reaches_the_release_and_the_search_would_see_it(tmp_path):
    exercise = _mini_course(tmp_path / "course")
    secrets, _ = _secrets(read_notebook(exercise))
    assert [kind.split(" (")[0] for kind, _ in secrets] == [
        "solution",
        "solution",
        "hidden check",
        "model answer",
        "solution",
    ]
    needles = _needles([exercise], "\0".join(_secrets(read_notebook(exercise))[1]))
    assert any("hidden check" in where for where, _ in needles)
    out = write_release(tmp_path / "out", root=tmp_path / "course")
    copy = read_notebook(out / "exercises" / "lab1" / "student" / "lab1_exercise.ipynb")
    assert "hidden_softmax" not in [cell.metadata.get("dpdl", {}).get("id") for cell in copy.cells]
    # (The package is searched with the real exercises above; its docstrings quote this fixture.)
    assert not _leaks(needles, _haystacks(out / "exercises"))
    assert _leaks(needles, _haystacks(tmp_path / "course" / "exercises")), "the source itself holds them"


def test_a_hidden_check_that_the_build_let_through_stops_the_release(tmp_path, monkeypatch):
    from dpdl.notebooks import build

    _mini_course(tmp_path / "course")
    monkeypatch.setattr(build, "cell_role", lambda cell: None)  # a build that forgot to drop hidden checks
    with pytest.raises(ReleaseError, match="a hidden check would be published"):
        write_release(tmp_path / "out", root=tmp_path / "course")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
