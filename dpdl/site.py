"""``dpdl site OUT_DIR``: the course's web site, built from the student release, for students to read before
they run.

The site shows only what the release holds (:func:`dpdl.release.write_release`): the student copies of the
labs and exercises, rendered from their stored outputs (never executed) with figures, maths and code, a home
page with the lab plan, and the dataset page from the registry. It is a Sphinx project written into a
temporary folder (myst-nb reads the notebooks, sphinx-book-theme lays them out, MathJax is shipped with the
site by sphinx-mathjax-offline, so it works offline) and built in one process. DEVELOPERS.md ("The web site")
says why Sphinx.

Sphinx and its extensions are the ``site`` extra (``pip install -e ".[site]"``); they are imported inside
:func:`build_site`, so ``dpdl --help`` never loads them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpdl.notebooks import BRANCH, COLAB_BADGE_IMAGE, colab_url, find_repo_root, public_repo

__all__ = [
    "SiteError",
    "SitePage",
    "build_site",
    "site_pages",
    "lab_topics",
    "home_page",
    "datasets_page",
    "jupyter_display_maths",
    "release_target",
    "register",
]

# Written into every site this command builds: a non-empty OUT_DIR is replaced only when it holds this file.
SITE_MARKER = ".dpdl-site"
TITLE = "Differentiable Programming and Deep Learning"
# MathJax 3, shipped with the site: the package sphinx-mathjax-offline holds its files (a folder with a
# hyphenated name, found with importlib); only what tex-chtml.js loads is copied, by _copy_mathjax.
MATHJAX_PACKAGE = "sphinx-mathjax-offline"
MATHJAX_ENTRY = "tex-chtml.js"
_MATHJAX_OTHER_BUNDLES_RE = re.compile(r"^(?!tex-chtml\.js$)[^/]+\.js$")
_NOTEBOOK_TITLE_RE = re.compile(r"^#\s+(?:Lab|Exercise)\s+(?P<lab>\d+)\s+—\s+(?P<title>.+?)\s*$", re.M)
# $$ ... $$ from the start of a line (after indentation) to the end of one, possibly over several lines.
_DISPLAY_MATHS_RE = re.compile(r"^[ \t]*\$\$(?:(?!\$\$).)+\$\$[ \t]*$", re.M | re.S)
_TOPIC_ROW_RE = re.compile(r"^\|\s*\[(?P<stem>[A-Za-z0-9_]+)\]\([^)]*\)\s*\|\s*(?P<topic>[^|]+?)\s*\|", re.M)
# A small local badge in place of Colab's own image, which a site read offline could not load.
COLAB_BADGE_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">
<rect width="117" height="20" rx="3" fill="#555"/><rect x="0" width="20" height="20" rx="3" fill="#f9ab00"/>
<circle cx="7.5" cy="10" r="4" fill="none" stroke="#fff" stroke-width="2"/>
<circle cx="12.5" cy="10" r="4" fill="none" stroke="#fff" stroke-width="2"/>
<text x="68" y="14" fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"
 text-anchor="middle">Open in Colab</text></svg>
"""
FAVICON_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#ee4c2c"/>
<text x="16" y="24" fill="#fff" font-family="DejaVu Serif,serif" font-size="22" text-anchor="middle">∂</text></svg>
"""


class SiteError(RuntimeError):
    """The site cannot be built (the release is incomplete, OUT_DIR holds something else, Sphinx failed).
    The message says what and how to fix it; OUT_DIR is left as it was."""


@dataclass(frozen=True)
class SitePage:
    """One notebook of the release and the page that shows it."""

    source: Path  # relative to the release's root: labs/lab1/student/lab1_tensors.ipynb
    docname: str  # the page, without suffix: labs/lab1/lab1_tensors
    kind: str  # "lab" or "exercise"
    lab: int
    title: str  # from the notebook's title cell, after "Lab N — "

    @property
    def html(self) -> str:
        return f"{self.docname}.html"


def build_site(
    out_dir: str | os.PathLike,
    *,
    release: str | os.PathLike | None = None,
    repo: str | None = None,
    branch: str | None = None,
    root: str | os.PathLike | None = None,
    jobs: int = 2,
) -> Path:
    """Build the course's web site into ``out_dir`` and return it.

    ``release`` is a folder written by ``dpdl release``; without it a fresh release of the source at ``root``
    (default: the repository around the working directory) is written into a temporary folder first, for
    ``repo`` and ``branch`` (default: the ``public-repo`` setting, ``main``). Colab and Binder links point
    where the release's notebooks do (:func:`release_target`); ``repo`` or ``branch`` that disagree with a
    given ``release`` are refused, since its notebooks and downloads would not follow them.

    ``out_dir`` must be new, empty or an earlier site (it holds ``.dpdl-site``); the site is built elsewhere
    and moved into place only when the build succeeded, so a failed build leaves ``out_dir`` as it was.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    with tempfile.TemporaryDirectory(prefix="dpdl-site-") as work:
        work = Path(work)
        if release is None:
            from dpdl.release import write_release

            source_root = Path(root) if root is not None else find_repo_root()
            release = write_release(work / "release", repo=repo, branch=branch, root=source_root)
        release = Path(release)
        topics = lab_topics(_labs_readme(release, root))
        pages = site_pages(release, order=list(topics))
        published = release_target(release, pages)
        for option, given, found in (("--repo", repo, published[0]), ("--branch", branch, published[1])):
            if given is not None and given != found:
                raise SiteError(
                    f"the release in {release} was written for {found!r}, not {option} {given!r}: "
                    f"leave out {option}, or write a new release with `dpdl release {option} {given}`"
                )
        repo, branch = published
        source_dir = work / "source"
        _write_sources(source_dir, release, pages, topics, repo=repo, branch=branch)
        built = work / "html"
        _run_sphinx(source_dir, built, work / "doctrees", repo=repo, jobs=jobs)
        (built / SITE_MARKER).write_text("Built by `dpdl site`; the next `dpdl site` into this folder replaces it.\n")
        _check_out_dir(out_dir)
        out_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.absolute().parent))
        staging.rmdir()
        shutil.move(str(built), staging)
        os.chmod(staging, 0o755)
        previous = staging.with_name(staging.name + ".old")
        if out_dir.exists():  # empty, or an earlier site (checked above): set aside, removed once replaced
            os.replace(out_dir, previous)
        os.replace(staging, out_dir)
        shutil.rmtree(previous, ignore_errors=True)
    return out_dir


def site_pages(release: str | os.PathLike, *, order: list[str] | None = None) -> list[SitePage]:
    """The notebook pages of the site: every student copy in the release's ``labs/`` and ``exercises/``, labs
    before exercises, by lab, and within a lab in the ``order`` of their names (the lab plan's; others after,
    by name). Instructor lab sources that a release may carry
    (``--with-lab-solutions``) are not shown: the site is for students reading ahead."""
    from dpdl.notebooks import read_notebook

    release = Path(release)
    pages = []
    for kind, folder in (("lab", "labs"), ("exercise", "exercises")):
        for path in sorted((release / folder).glob("lab*/student/*.ipynb")):
            relative = path.relative_to(release)
            title_cell = next((cell for cell in read_notebook(path).cells if cell.cell_type == "markdown"), None)
            match = _NOTEBOOK_TITLE_RE.search(title_cell.source) if title_cell is not None else None
            if match is None:
                raise SiteError(
                    f"{relative}: its first markdown cell must be the title '# Lab N — title' "
                    "(or '# Exercise N — title'); rebuild the release from a source that passes "
                    "`dpdl notebooks check`"
                )
            docname = f"{folder}/{relative.parts[1]}/{path.stem}"
            pages.append(SitePage(relative, docname, kind, int(match["lab"]), match["title"]))
    if not any(page.kind == "lab" for page in pages) or not any(page.kind == "exercise" for page in pages):
        raise SiteError(
            f"{release} holds no student notebooks under labs/*/student/ and exercises/*/student/; "
            "give a folder written by `dpdl release`"
        )
    rank = {stem: index for index, stem in enumerate(order or [])}
    return sorted(
        pages, key=lambda page: (page.kind != "lab", page.lab, rank.get(page.source.stem, len(rank)), page.docname)
    )


def release_target(release: str | os.PathLike, pages: list[SitePage]) -> tuple[str, str]:
    """``(repository, branch)`` that the release was written for, read from its notebooks' Colab badges (so
    the site's links agree with the notebooks'); the release's ``public-repo`` and ``main`` when no badge
    says. A release whose badges disagree is refused."""
    from dpdl.notebooks import read_notebook

    release = Path(release)
    found = set()
    for page in pages:
        pattern = re.compile(
            r"https://colab\.research\.google\.com/github/(?P<repo>[^/\s)]+/[^/\s)]+)/blob/"
            rf"(?P<branch>[^\s)]+?)/{re.escape(page.source.as_posix())}(?=[\s)\"]|$)"
        )
        for cell in read_notebook(release / page.source).cells:
            found |= {(match["repo"], match["branch"]) for match in pattern.finditer(cell.source)}
    if len(found) > 1:
        raise SiteError(
            f"the notebooks in {release} open different repositories or branches on Colab "
            f"({sorted(found)}); write the release again with `dpdl release`"
        )
    return found.pop() if found else (public_repo(release), BRANCH)


def lab_topics(labs_readme: str) -> dict[str, str]:
    """``{notebook stem: topic}`` from the table in ``labs/README.md`` (its second column)."""
    return {match["stem"]: match["topic"] for match in _TOPIC_ROW_RE.finditer(labs_readme)}


def home_page(
    pages: list[SitePage], topics: dict[str, str], *, release_readme: str, repo: str, branch: str, binder: bool
) -> str:
    """The home page (MyST markdown): what the course is, set-up and Colab (from the release's README), the
    lab plan (a row per notebook: its topic, and the lab's exercise), and the navigation's table of contents."""
    from dpdl.binder import binder_url

    exercises = {page.lab: page for page in pages if page.kind == "exercise"}
    rows = []
    seen_labs: set[int] = set()
    for page in pages:
        if page.kind != "lab":
            continue
        exercise = exercises.get(page.lab) if page.lab not in seen_labs else None
        lab_cell = f"**{page.lab}**" if page.lab not in seen_labs else ""
        seen_labs.add(page.lab)
        exercise_cell = f"[Exercise {page.lab}]({exercise.docname}.ipynb)" if exercise else ""
        topic = _table_cell(topics.get(page.source.stem, ""))
        rows.append(f"| {lab_cell} | [{_table_cell(page.title)}]({page.docname}.ipynb) | {topic} | {exercise_cell} |")
    for lab, exercise in sorted(exercises.items()):
        if lab not in seen_labs:  # an exercise without lab notebooks still gets its row
            rows.append(f"| **{lab}** | | | [Exercise {lab}]({exercise.docname}.ipynb) |")
    setup = _readme_section(release_readme, "Set up")
    colab = _readme_section(release_readme, "On Colab")
    binder_text = (
        f"\n## On Binder or a JupyterHub\n\n[Launch the labs on Binder]({binder_url(repo, branch)}): a JupyterLab "
        "with `dpdl`, the tested versions and every dataset already in the image (it takes a few minutes the "
        "first time). A university JupyterHub can serve the same image to a whole class.\n"
        if binder
        else ""
    )
    toctree = "\n".join(
        f"```{{toctree}}\n:caption: {caption}\n:hidden:\n\n"
        + "\n".join(page.docname for page in pages if page.kind == kind)
        + "\n```\n"
        for caption, kind in (("Labs", "lab"), ("Assessed exercises", "exercise"))
    )
    return f"""# {TITLE}

The labs and assessed exercises of a master's course on differentiable programming and deep learning with
PyTorch: tensors and automatic differentiation, optimisation, neural networks, convolutional and recurrent
networks, attention, transfer learning and deep generative models. Each lab is a set of Jupyter notebooks
that teach by running code; where a cell says `# YOUR CODE HERE`, you write it, and the check cell after it
tells you whether it works. Each lab ends with an assessed exercise, handed in as its notebook.

These pages show the notebooks as they are published, with the outputs of a run, so you can read a lab
before you run it. Open one on Colab or download it to run it yourself. The repository is
[github.com/{repo}](https://github.com/{repo}); the data the labs use are on the [datasets page](datasets.md).

## Lab plan

| lab | notebook | topic | exercise |
|---|---|---|---|
{chr(10).join(rows)}

## Set up
{setup}
## On Colab
{colab}{binder_text}
{toctree}
```{{toctree}}
:caption: Course
:hidden:

datasets
```
"""


def datasets_page(registry: dict[str, Any]) -> str:
    """The dataset page (MyST markdown) from ``datasets/registry.json``: what each is, its size, licence,
    source and citation, and which labs use it."""
    lines = [
        "# Datasets",
        "",
        "Every dataset and pretrained artefact the labs use. `dpdl` downloads each from its official source on "
        "first use, checks it against the sha256 in the registry and caches it; `dpdl data fetch --all` "
        "fetches them ahead of a lab, `dpdl data list` shows what you have.",
        "",
        "| name | what | size | licence | labs |",
        "|---|---|---|---|---|",
    ]
    entries = registry.get("entries", [])
    for entry in entries:
        files = entry.get("files", [])
        size = _size(sum(file.get("size", 0) for file in files)) if files else "–"
        optional = " (optional)" if entry.get("optional") else ""
        labs = ", ".join(str(lab) for lab in entry.get("labs", []))
        name_cell = f"[`{entry['name']}`](#{_anchor(entry['name'])}){optional}"
        lines.append(
            f"| {name_cell} | {_table_cell(entry.get('title', ''))} "
            f"| {size} | {_table_cell(entry.get('licence', ''))} | {labs} |"
        )
    for entry in entries:
        lines += [
            "",
            f"({_anchor(entry['name'])})=",
            f"## {entry.get('title', entry['name'])}",
            "",
            entry.get("description", ""),
            "",
        ]
        facts = [
            ("name", f"`{entry['name']}`"),
            ("licence", entry.get("licence")),
            ("labs", ", ".join(str(lab) for lab in entry.get("labs", []))),
            ("home page", f"<{entry['homepage']}>" if entry.get("homepage") else None),
            (
                "files",
                f"{len(entry['files'])}, {_size(sum(f.get('size', 0) for f in entry['files']))}"
                if entry.get("files")
                else None,
            ),
            ("citation", entry.get("citation")),
            ("notes", entry.get("notes")),
        ]
        lines += [f"- **{key}**: {value}" for key, value in facts if value]
    return "\n".join(lines) + "\n"


def jupyter_display_maths(markdown: str) -> str:
    """``markdown`` with a blank line around each ``$$ ... $$`` that opens a line, so that MyST reads it as
    display maths the way Jupyter does.

    Jupyter takes the maths out before it parses the markdown; MyST parses the markdown first, so a formula
    that follows a line of text without a blank line stays in the paragraph, where a line of it starting with
    ``+`` or ``-`` becomes a list item and ``_`` pairs become emphasis. Fenced code is left alone.
    """
    parts = re.split(r"(^[ \t]*(?:```|~~~).*?^[ \t]*(?:```|~~~)[ \t]*$)", markdown, flags=re.M | re.S)
    for index in range(0, len(parts), 2):  # the even parts lie outside fences
        spaced = _DISPLAY_MATHS_RE.sub(lambda match: f"\n{match.group(0)}\n", parts[index])
        parts[index] = re.sub(r"\n{3,}", "\n\n", spaced) if spaced != parts[index] else spaced
    return "".join(parts)


def register(subparsers: Any) -> None:
    """Add ``dpdl site`` (called by ``dpdl/cli.py``)."""
    parser = subparsers.add_parser(
        "site",
        help="build the course's web site (HTML) from the student release",
        description=(
            "Build the course's static web site into OUT_DIR: a home page with the lab plan, one page per\n"
            "student notebook rendered from its stored outputs (never executed), the dataset page. It shows only\n"
            "what `dpdl release` publishes. Without --release, a fresh release of this source is written first.\n"
            "Open OUT_DIR/index.html in a browser, or publish the folder (e.g. GitHub Pages)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new or empty folder, or an earlier site to replace")
    parser.add_argument("--release", metavar="DIR", help="a folder written by `dpdl release` (default: write one now)")
    parser.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="the public repository Colab and Binder links open, "
        "for the release written without --release (default: the public-repo setting)",
    )
    parser.add_argument("--branch", metavar="BRANCH", help=f"its branch (default: {BRANCH})")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        out_dir = build_site(args.out_dir, release=args.release, repo=args.repo, branch=args.branch)
    except ImportError as err:
        print(
            f'dpdl site needs the site tools ({err.name}); install them with: pip install -e ".[site]"', file=sys.stderr
        )
        return 2
    except (SiteError, LookupError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    pages = sum(1 for _ in out_dir.rglob("*.html"))
    print(f"wrote {out_dir}: {pages} pages in {time.perf_counter() - start:.1f} s; open {out_dir / 'index.html'}")
    return 0


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise SiteError(f"{out_dir} exists and is not a folder; give a new or empty folder for the site")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).is_file():
        raise SiteError(
            f"{out_dir} is not empty and is not a site built by `dpdl site`; give a new or empty "
            "folder (dpdl site replaces only its own earlier output)"
        )


def _labs_readme(release: Path, root: str | os.PathLike | None) -> str:
    """``labs/README.md`` (the topics of the lab plan): the release's, else the source's."""
    for folder in (release, Path(root) if root is not None else None):
        if folder is not None and (folder / "labs" / "README.md").is_file():
            return (folder / "labs" / "README.md").read_text(encoding="utf-8")
    try:
        return (find_repo_root() / "labs" / "README.md").read_text(encoding="utf-8")
    except (LookupError, OSError):
        return ""  # no topics: the plan still lists every notebook


def _write_sources(
    source_dir: Path, release: Path, pages: list[SitePage], topics: dict[str, str], *, repo: str, branch: str
) -> None:
    """The Sphinx project: conf.py, the home and dataset pages, each notebook (with a links cell added after
    its title) and, under ``_notebooks/``, the release's notebooks as they are, for download."""
    import nbformat

    from dpdl.binder import BINDER_FOLDER, binder_url
    from dpdl.notebooks import notebook_bytes, read_notebook

    binder = (release / BINDER_FOLDER).is_dir()
    static = source_dir / "_static"
    static.mkdir(parents=True)
    (static / "colab-badge.svg").write_text(COLAB_BADGE_SVG, encoding="utf-8")
    (static / "favicon.svg").write_text(FAVICON_SVG, encoding="utf-8")
    for page in pages:
        pristine = source_dir / "_notebooks" / page.source
        pristine.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(release / page.source, pristine)
        nb = read_notebook(release / page.source)
        up = "../" * page.docname.count("/")
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                local_badge = f"{up}_static/colab-badge.svg"
                cell.source = jupyter_display_maths(cell.source).replace(COLAB_BADGE_IMAGE, local_badge)
        links = [
            f"[Open in Colab]({colab_url(page.source, root=release, repo=repo, branch=branch)})",
            f"{{download}}`Download the notebook <{up}_notebooks/{page.source.as_posix()}>`",
        ]
        if binder:
            links.append(f"[Launch on Binder]({binder_url(repo, branch, page.source.as_posix())})")
        links_cell = nbformat.v4.new_markdown_cell(" · ".join(links))
        links_cell.metadata["dpdl-site"] = "links"
        nb.cells.insert(1, links_cell)
        target = source_dir / f"{page.docname}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(notebook_bytes(nb))
    readme = (release / "README.md").read_text(encoding="utf-8") if (release / "README.md").is_file() else ""
    (source_dir / "index.md").write_text(
        home_page(pages, topics, release_readme=readme, repo=repo, branch=branch, binder=binder), encoding="utf-8"
    )
    registry = json.loads((release / "datasets" / "registry.json").read_text(encoding="utf-8"))
    (source_dir / "datasets.md").write_text(datasets_page(registry), encoding="utf-8")


def _conf(repo: str) -> dict[str, Any]:
    """Sphinx's configuration (what a conf.py would say)."""
    return {
        "project": TITLE,
        "html_title": TITLE,
        "extensions": ["myst_nb"],
        "mathjax_path": f"mathjax/{MATHJAX_ENTRY}",  # under _static/, copied by _copy_mathjax
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {
            "repository_url": f"https://github.com/{repo}",
            "use_repository_button": True,
            "use_download_button": False,  # each page has its own link to the notebook as released
            "home_page_in_toc": True,
            "show_toc_level": 2,
        },
        "html_context": {"default_mode": "light"},  # else the theme logs an error on its first visit
        "html_static_path": ["_static"],
        "html_favicon": "_static/favicon.svg",  # else browsers ask for /favicon.ico and log a 404
        "html_copy_source": False,
        "html_show_sourcelink": False,
        "exclude_patterns": ["_notebooks/**", "_static/**"],
        "nb_execution_mode": "off",  # render the stored outputs; never run a notebook
        "nb_merge_streams": True,
        "nb_mime_priority_overrides": [("html", "image/gif", 25)],  # lab 3's animation
        "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"],
        "myst_dmath_double_inline": True,  # $$...$$ inside a paragraph or list item, as Jupyter renders it
        "myst_heading_anchors": 3,
        "smartquotes": False,  # code names and apostrophes stay as typed (and searchable)
        "suppress_warnings": ["myst.header"],  # notebooks number their sections from ## under the # title
    }


def _run_sphinx(source_dir: Path, out_dir: Path, doctrees: Path, *, repo: str, jobs: int) -> None:
    from sphinx.application import Sphinx
    from sphinx.util.console import nocolor
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    nocolor()
    warnings = io.StringIO()
    # As sphinx-build does: docutils' registries are global, and a second build in one process (the tests,
    # the benchmark) would otherwise warn about every node and directive registered twice.
    with patch_docutils(None), docutils_namespace():
        app = Sphinx(
            str(source_dir),
            None,
            str(out_dir),
            str(doctrees),
            "html",
            confoverrides=_conf(repo),
            status=None,
            warning=warnings,
            freshenv=True,
            parallel=max(1, jobs),
        )
        app.build()
    if app.statuscode != 0:
        raise SiteError(f"Sphinx failed:\n{warnings.getvalue()}")
    for line in warnings.getvalue().splitlines():
        print(f"dpdl site: {line}", file=sys.stderr)
    _copy_mathjax(out_dir / "_static" / "mathjax")


def _copy_mathjax(target: Path) -> None:
    """MathJax's TeX-to-HTML bundle, its fonts and the components it loads on demand, from the
    sphinx-mathjax-offline package (its Sphinx extension cannot read in parallel, so only its files are used)."""
    import importlib.util

    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {MATHJAX_PACKAGE!r}", name=MATHJAX_PACKAGE)
    source = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_file() and not _MATHJAX_OTHER_BUNDLES_RE.match(relative):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)


def _readme_section(readme: str, heading: str) -> str:
    """The text under ``## heading`` in the release's README, up to the next ``##``."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(?P<body>.*?)(?=^## |\Z)", readme, re.M | re.S)
    return match["body"] if match else "\nSee the repository's README.\n"


def _table_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return "dataset-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _size(num_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"
