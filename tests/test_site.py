"""``dpdl site``: the web site built from a fresh release, read as files and in a real browser.

The site is built once for the module (about 40 s on the 2-core machine). The browser tests drive the
system Chromium (Debian's package) with Playwright; they skip, saying why, only where Chromium or Playwright
is missing, and fail instead under CI, which installs both (``.ci/run``). One screenshot per page type is
kept in ``.artefacts/site/`` at the repository's root (ignored by git).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from dpdl.notebooks import discover_notebooks, find_repo_root, read_notebook

ROOT = find_repo_root(Path(__file__).parent)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTEFACTS = ROOT / ".artefacts" / "site"
# A line of a solution, model answer or hidden check this long (whitespace normalised) must not appear in
# the site; shorter ones ("return x") are too common to mean anything.
MIN_SECRET_LINE = 20


def _missing(what: str, how: str) -> None:
    """Skip with the reason, except under CI, which installs everything these tests need."""
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run these tests (.ci/run installs it)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(release folder, site folder, seconds the site took) for a fresh release of this repository."""
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        _missing("the site tools (sphinx, myst-nb)", "pip install -c constraints.txt -e '.[site]'")
    import time

    from dpdl.release import write_release
    from dpdl.site import build_site

    work = tmp_path_factory.mktemp("site")
    release = write_release(work / "release", root=ROOT)
    start = time.perf_counter()
    site = build_site(work / "html", release=release, root=ROOT)
    return release, site, time.perf_counter() - start


@pytest.fixture(scope="module")
def pages(built):
    from dpdl.site import site_pages

    release, _, _ = built
    return site_pages(release)


# ---------------------------------------------------------------------------------------------------------
# The built files


def test_every_student_notebook_of_the_release_has_its_page_and_download(built, pages):
    release, site, _ = built
    students = sorted(path.relative_to(release) for path in release.glob("*/lab*/student/*.ipynb"))
    assert sorted(page.source for page in pages) == students
    assert len(students) >= 16  # every lab's notebooks and the eight exercises
    for page in pages:
        page_html = (site / page.html).read_text(encoding="utf-8")
        assert page.title in html.unescape(page_html), page.html
        download = re.search(r'href="([^"]*_downloads/[^"]*/' + re.escape(page.source.name) + ')"', page_html)
        assert download, f"{page.html} has no download link to {page.source.name}"
        downloaded = (site / page.html).parent / download[1]
        assert downloaded.read_bytes() == (release / page.source).read_bytes(), "the download is the released file"
    assert (site / "index.html").is_file() and (site / "datasets.html").is_file()


def test_no_solution_model_answer_or_hidden_check_of_an_exercise_is_in_the_site(built):
    """Every line (of some length) of every exercise's solutions, written model answers and hidden checks,
    searched in the text of every file of the site, after stripping HTML and normalising whitespace."""
    release, site, _ = built
    secrets, visible = _exercise_secrets(release)
    assert len(secrets) >= 50, "the search would prove nothing: too few secret lines were found"
    text = _site_text(site)
    assert any(line in text for line in visible), "the search itself is broken: no visible line is found"
    leaked = sorted(f"{where}: {line}" for line, where in secrets.items() if line in text)
    assert not leaked, "the site shows exercise solutions:\n" + "\n".join(leaked[:20])


def test_the_site_loads_nothing_from_another_host(built):
    """Scripts, styles and fonts are all in the site (MathJax too), so it works offline."""
    _, site, _ = built
    remote = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)
    offenders = []
    for path in site.rglob("*.html"):
        for match in remote.finditer(path.read_text(encoding="utf-8")):
            tag = path.read_text(encoding="utf-8")[match.start() : match.start() + 200].split(">")[0]
            if "<link" in tag and not re.search(r"rel=[\"'](?:stylesheet|preload|icon)", tag):
                continue  # a plain link to another page (rel=next, canonical) loads nothing
            offenders.append(f"{path.relative_to(site)}: {tag}")
    for path in site.rglob("*.css"):
        remote_css = r"url\(\s*[\"']?(?:https?:)?//[^)]*\)|@import\s+[\"']?https?:"
        for match in re.finditer(remote_css, path.read_text("utf-8")):
            offenders.append(f"{path.relative_to(site)}: {match.group(0)}")
    assert not offenders, "\n".join(offenders[:20])
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def test_home_page_has_the_lab_plan_with_every_notebook_topic_and_exercise(built, pages):
    from dpdl.site import lab_topics

    _, site, _ = built
    index = (site / "index.html").read_text(encoding="utf-8")
    plan = index[index.index('id="lab-plan"') :]
    plan = plan[: plan.index("</table>")]
    topics = lab_topics((ROOT / "labs" / "README.md").read_text(encoding="utf-8"))
    plan_text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", plan)).split())
    for page in pages:
        assert f'href="{page.html}"' in plan, f"the lab plan does not link {page.html}"
        if page.kind == "lab":
            topic = " ".join(re.sub(r"`", "", topics[page.source.stem]).split())
            assert topic[:60] in plan_text, f"the lab plan lacks the topic of {page.source.stem}"
    index_text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", index)).split())
    assert "Set up" in index_text and "pip install -c constraints.txt" in index_text and "On Colab" in index_text


def test_datasets_page_lists_every_registry_entry(built):
    release, site, _ = built
    registry = json.loads((release / "datasets" / "registry.json").read_text(encoding="utf-8"))
    page = html.unescape((site / "datasets.html").read_text(encoding="utf-8"))
    for entry in registry["entries"]:
        assert entry["name"] in page and entry["title"] in page and entry["licence"] in page, entry["name"]


def test_every_colab_link_opens_its_own_notebook_in_the_configured_public_repository(built, pages):
    from dpdl.release import public_repo

    _, site, _ = built
    repo = public_repo(ROOT)
    for page in pages:
        page_html = (site / page.html).read_text("utf-8")
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]*)"', page_html))
        want = f"https://colab.research.google.com/github/{repo}/blob/main/{page.source.as_posix()}"
        assert links == {want}, page.html


def test_dpdl_site_refuses_a_folder_it_did_not_write(tmp_path, built):
    from dpdl.site import SiteError, build_site

    release, _, _ = built
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SiteError, match="not a site built by `dpdl site`"):
        build_site(tmp_path, release=release)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_a_new_build_replaces_an_earlier_site_whole(tmp_path, built):
    """Into a folder holding an earlier site (its .dpdl-site marker): nothing of the old one is left. A small
    release (one lab notebook, one exercise) keeps this build short."""
    from dpdl.site import SITE_MARKER, build_site

    release, _, _ = built
    small = tmp_path / "release"
    for relative in (
        "labs/lab1/student/lab1_tensors.ipynb",
        "exercises/lab1/student/lab1_exercise.ipynb",
        "datasets/registry.json",
        "pyproject.toml",
        "README.md",
    ):
        (small / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(release / relative, small / relative)
    site = tmp_path / "site"
    site.mkdir()
    (site / SITE_MARKER).write_text("earlier")
    (site / "stale.html").write_text("from the earlier site")
    build_site(site, release=small, root=ROOT)
    assert not (site / "stale.html").exists()
    assert (site / "labs" / "lab1" / "lab1_tensors.html").is_file() and (site / SITE_MARKER).is_file()
    assert not (site / "labs" / "lab2").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["release", "site"], "a temporary folder is left"


def test_links_follow_the_repository_and_branch_the_release_was_written_for(tmp_path):
    """A release for another repository and branch: the site's links follow its notebooks' badges, and a
    --repo or --branch that disagree with them are refused before anything is built."""
    from dpdl.release import public_repo, write_release
    from dpdl.site import SiteError, build_site, release_target, site_pages

    release = write_release(tmp_path / "release", repo="another-course/labs", branch="2027", root=ROOT)
    assert release_target(release, site_pages(release)) == ("another-course/labs", "2027")
    configured = public_repo(ROOT)
    with pytest.raises(SiteError, match=f"written for 'another-course/labs', not --repo '{re.escape(configured)}'"):
        build_site(tmp_path / "site", release=release, repo=configured)
    with pytest.raises(SiteError, match="not --branch 'main'"):
        build_site(tmp_path / "site", release=release, branch="main")
    assert not (tmp_path / "site").exists()


def test_a_folder_without_student_notebooks_is_refused_with_the_fix(tmp_path):
    from dpdl.site import SiteError, site_pages

    (tmp_path / "labs" / "lab1").mkdir(parents=True)
    with pytest.raises(SiteError, match="written by `dpdl release`"):
        site_pages(tmp_path)


def test_lab_topics_come_from_the_labs_readme_for_every_lab_notebook():
    from dpdl.site import lab_topics

    topics = lab_topics((ROOT / "labs" / "README.md").read_text(encoding="utf-8"))
    labs = [path.stem for path in discover_notebooks(ROOT) if path.relative_to(ROOT).parts[0] == "labs"]
    assert labs and sorted(topics) == sorted(labs)
    assert all(len(topic) > 20 for topic in topics.values())


def test_display_maths_after_a_line_of_text_gets_blank_lines_as_myst_needs():
    from dpdl.site import jupyter_display_maths

    jupyter = "The loss:\n$$\na\n+ b\n$$\nso it is.\n- item:\n  $$x\n  = y,$$\n  more"
    assert jupyter_display_maths(jupyter) == (
        "The loss:\n\n$$\na\n+ b\n$$\n\nso it is.\n- item:\n\n  $$x\n  = y,$$\n\n  more"
    )
    unchanged = ["inline $$x$$ in a sentence", "```\n$$\nnot maths\n$$\n```", "para\n\n$$x$$\n\nend"]
    assert [jupyter_display_maths(text) for text in unchanged] == unchanged


def test_dpdl_help_loads_neither_sphinx_nor_torch():
    code = (
        "import sys; from dpdl.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('sphinx', 'myst_nb', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------
# In a real browser


@pytest.fixture(scope="module")
def server(built):
    """The site served over HTTP on the loopback interface, as a web server would."""
    _, site, _ = built
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright", "pip install -c constraints.txt -e '.[site]'")
    if not Path(CHROMIUM).is_file():
        _missing("Chromium", "apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots():
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS


class _Visit:
    """A page opened in a fresh browser page, with its console errors and uncaught exceptions."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(60_000)
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("requestfailed", lambda request: self.errors.append(f"failed to load {request.url}"))
        self.page.on(
            "response",
            lambda response: response.status >= 400 and self.errors.append(f"{response.url}: HTTP {response.status}"),
        )
        response = self.page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{url}: {response.status if response else 'no response'}"
        # MathJax typesets after load; its promise settles when it is done.
        self.page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")

    def broken_images(self) -> list[str]:
        return self.page.evaluate(
            "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )

    def untypeset_maths(self) -> list[str]:
        """Maths delimiters left in the text a reader sees (code blocks aside)."""
        text = self.page.evaluate("""() => {
            const main = document.querySelector('main') || document.body;
            const copy = main.cloneNode(true);
            copy.querySelectorAll('pre, code, script, style, mjx-assistive-mml').forEach(e => e.remove());
            return copy.innerText; }""")
        return re.findall(r".{0,30}(?:\$\$|\\\(|\\\[|\$[^$\s][^$\n]{0,80}\$).{0,30}", text)

    def close(self) -> None:
        self.page.close()


def test_home_page_loads_without_console_errors(browser, server, screenshots):
    visit = _Visit(browser, server)
    try:
        assert visit.page.title().startswith("Differentiable Programming and Deep Learning")
        assert visit.page.locator("#lab-plan table tbody tr").count() >= 16
        visit.page.screenshot(path=str(screenshots / "home.png"), full_page=False)
        assert not visit.errors, visit.errors
        assert not visit.broken_images()
    finally:
        visit.close()


def test_every_notebook_page_is_reached_from_the_navigation_and_renders(browser, server, pages, screenshots):
    """From the home page's navigation to each notebook page: it loads without console errors, its images
    load, its maths is typeset, its Colab link opens it in the configured public repository."""
    from dpdl.release import public_repo

    repo = public_repo(ROOT)
    home = _Visit(browser, server)
    try:
        nav_links = home.page.eval_on_selector_all(
            "nav.bd-docs-nav a.reference.internal", "links => links.map(a => a.href)"
        )
    finally:
        home.close()
    reached = {urlparse(link).path.lstrip("/") for link in nav_links}
    expected = {page.html for page in pages}
    assert expected <= reached, f"not in the navigation: {sorted(expected - reached)}"

    problems = []
    shot = {"lab": False, "exercise": False}
    for page in pages:
        visit = _Visit(browser, urljoin(server, page.html))
        try:
            if visit.errors:
                problems.append(f"{page.html}: console errors {visit.errors}")
            if broken := visit.broken_images():
                problems.append(f"{page.html}: broken images {broken}")
            if raw := visit.untypeset_maths():
                problems.append(f"{page.html}: maths left as text {raw[:3]}")
            has_maths = visit.page.locator(".math").count()
            typeset = visit.page.locator("mjx-container").count()
            if typeset < has_maths:
                problems.append(f"{page.html}: {has_maths} formulas, {typeset} typeset")
            colab = visit.page.eval_on_selector_all(
                "a[href*='colab.research.google.com']", "links => links.map(a => a.href)"
            )
            want = f"https://colab.research.google.com/github/{repo}/blob/main/{page.source.as_posix()}"
            if not colab or set(colab) != {want}:
                problems.append(f"{page.html}: Colab links {sorted(set(colab))}, want {want}")
            if not shot[page.kind] and has_maths and visit.page.locator("main img").count():
                visit.page.screenshot(path=str(screenshots / f"{page.kind}.png"), full_page=False)
                shot[page.kind] = True
        finally:
            visit.close()
    assert not problems, "\n".join(problems)
    assert sum(page.kind == "lab" and page.lab for page in pages) and shot["lab"], "no lab page had maths and figures"


def test_datasets_page_renders(browser, server, screenshots):
    visit = _Visit(browser, urljoin(server, "datasets.html"))
    try:
        assert visit.page.locator("main table tbody tr").count() >= 5
        visit.page.screenshot(path=str(screenshots / "datasets.png"))
        assert not visit.errors, visit.errors
    finally:
        visit.close()


def test_search_finds_the_lab_that_teaches_a_word(browser, server, screenshots):
    visit = _Visit(browser, urljoin(server, "search.html?q=broadcasting"))
    try:
        results = visit.page.locator("#search-results li a")
        results.first.wait_for()
        found = results.evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert any("lab1/lab1_tensors.html" in href for href in found), found
        visit.page.screenshot(path=str(screenshots / "search.png"))
        assert not visit.errors, visit.errors
    finally:
        visit.close()


# ---------------------------------------------------------------------------------------------------------
# helpers


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _TextOf(HTMLParser):
    """The text a reader could see, or find in the page's source: every text node, attribute values too."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []  # joined as they are: highlighted code is split into many tags
        self.attributes: list[str] = []

    def handle_data(self, data):
        self.text.append(data)

    def handle_starttag(self, tag, attrs):
        self.attributes.extend(value for _, value in attrs if value)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _site_text(site: Path) -> str:
    """All the text of the site, normalised: HTML pages as text, notebooks by their cells' sources and
    outputs, every other text file as it is."""
    chunks = []
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".html":
            parser = _TextOf()
            parser.feed(path.read_text(encoding="utf-8"))
            chunks += ["".join(parser.text), "\n".join(parser.attributes)]
        elif path.suffix == ".ipynb":
            chunks.append(path.read_text(encoding="utf-8"))
            for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
                chunks.append("".join(cell["source"]))
        elif path.suffix in {".js", ".txt", ".json", ".css", ".svg", ".md"}:
            chunks.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(_normalise(chunk) for chunk in chunks)


def _exercise_secrets(release: Path) -> tuple[dict[str, str], list[str]]:
    """({secret line: where it comes from}, visible lines) of the exercises.

    Secret: a line inside a solution or model-answer block, or of a hidden check, in the instructor's
    ``exercises/labN/labN_exercise.ipynb``, unless a notebook of the release already shows it (a signature,
    ``optimizer.zero_grad()``, a call a lab teaches, a hint the author wrote into a stub's message): the
    release is public by design and its own tests keep solutions out of it; this test proves that the site
    adds nothing to it. Visible: the long lines of the exercises' student copies, a positive control."""
    from dpdl.notebooks.build import find_blocks

    shown = "\n".join(
        _normalise(cell.source) for path in release.glob("*/lab*/student/*.ipynb") for cell in read_notebook(path).cells
    )
    secrets: dict[str, str] = {}
    visible: list[str] = []
    for source in discover_notebooks(ROOT):
        relative = source.relative_to(ROOT)
        if relative.parts[0] != "exercises":
            continue
        student = release / relative.parent / "student" / relative.name
        visible += [
            _normalise(line)
            for cell in read_notebook(student).cells
            for line in cell.source.split("\n")
            if len(_normalise(line)) >= 40
        ]
        for index, cell in enumerate(read_notebook(source).cells):
            lines = cell.source.split("\n")
            if cell.get("metadata", {}).get("dpdl", {}).get("role") == "hidden":
                candidates = lines
            else:
                candidates = [
                    line
                    for block in find_blocks(cell.source, cell.cell_type)
                    for line in lines[block.begin + 1 : block.end]
                ]
            for line in map(_normalise, candidates):
                if len(line) >= MIN_SECRET_LINE and line not in shown:
                    secrets.setdefault(line, f"{relative}, cell {index}")
    return secrets, visible
