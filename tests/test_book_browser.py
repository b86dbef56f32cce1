"""Build the whole book offline and look at every page in a real (headless) browser.

What a reader would notice is what this checks, page by page of _toc.yml:
- the build (every notebook executed with MEAL_LITE_PROFILE=offline) finishes with no warning;
- the page loads without console errors;
- chapter figures (matplotlib PNGs in cell outputs, any <img> in the article) are really there
  and decoded (non-zero natural size);
- every same-site link answers 200 and its #anchor exists in the target page;
- the Colab launch button opens the chapter's notebook on the main branch of the repository.
- no code cell, output, listing or table is wider than the content column at WINDOW's width, and figure
  text is at least meal_lite.book.MIN_TEXT_PX pixels as the page shows it (the PNG's dpi, its rendered
  over natural width, and the smallest font the book's figure style allows).
One screenshot per page goes to this module's tmp folder and, when the environment variable
MEAL_LITE_SCREENSHOTS names a folder, is copied there too.

Under `make test` the book is built from the notebooks nbval has just executed (tests/executed_notebooks.py),
so no chapter runs twice; run alone, the build executes every chapter (allow up to 20 minutes). Needs Chromium and
chromedriver (Debian: `sudo apt-get install chromium chromium-driver`, or `make browser-deps`);
without them the browser checks are skipped, except under CI (CI=true), where that is a failure.

The browser is kept hermetic: every host except 127.0.0.1 is made unresolvable, so the test gives
the same answer with or without a network. The only resources the built site fetches from
elsewhere are CDN scripts (MathJax; require.js and the ipywidgets embed manager on pages that
store widget state), and their failed loads are the ONLY console errors the test ignores - see
`is_blocked_external_load`.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from meal_lite.book import MIN_FONT_PT, MIN_TEXT_PX
from book_utils import (  # noqa: E402  (pytest's default import mode puts tests/ on sys.path)
    BROWSER_HELP,
    build_book,
    build_command,
    colab_url_for,
    find_chromium,
    resolve_entry,
    REPO_ROOT,
    running_in_ci,
    stage_executed_book,
    toc_chapters,
    toc_entries,
)

PAGES = toc_entries()  # root page first, then the chapters
CHAPTERS = toc_chapters()
WINDOW = (1280, 1000)
MAX_SCREENSHOT_HEIGHT = 16000  # px; longer pages are cut, Chromium struggles beyond this


def page_path(entry: str) -> str:
    """URL path of a toc entry inside the built site."""
    return f"{entry}.html"


# ---------------------------------------------------------------------------------------------
# Fixtures: build, serve, browse


def _executed_by_nbval() -> dict:
    """The chapters nbval executed in this run (in any worker) or in a run before it (through
    ``--executed-dir``): all of them, or {} when nbval did not run.

    When nbval ran but some chapter did not run to its end, the build would only execute it again and
    fail the same way: the test stops at once and points at nbval's report instead.
    """
    try:
        from executed_notebooks import any_recorded, await_chapters, executed_notebooks, failed_notebooks
    except ImportError:
        return {}
    wanted = {resolve_entry(e).resolve() for e in PAGES if resolve_entry(e) and resolve_entry(e).suffix == ".ipynb"}
    await_chapters(wanted)  # under make test, the other worker may still be running one
    if not any_recorded():
        return {}
    executed = executed_notebooks()
    missing = sorted(str(p.relative_to(REPO_ROOT)) for p in wanted - set(executed))
    if missing:
        failed = failed_notebooks()
        pytest.fail(f"nbval did not run these chapters to their end, so the book cannot be built from them: "
                    f"{', '.join(missing)} (failed under nbval: {', '.join(failed) or 'none'}; see their cell failures).")
    return executed


@pytest.fixture(scope="module")
def book_build(tmp_path_factory):
    """Build the book once for the whole module (offline profile, no Hugging Face network).

    Under ``make test`` nbval has just executed every chapter; the build renders those outputs instead of
    executing the chapters a second time. Run alone, the browser test builds (and executes) the book itself.
    """
    out = tmp_path_factory.mktemp("book")
    executed = _executed_by_nbval()
    source = stage_executed_book(executed, tmp_path_factory.mktemp("source")) if executed else REPO_ROOT
    how = "from the notebooks nbval executed" if executed else "executing every chapter"
    result = build_book(out, profile="offline", source=source)
    print(f"\n[book] {' '.join(build_command(out, source))} ({how})\n"
          f"[book] built in {result.seconds:.0f} s, exit {result.returncode}")
    return result


@pytest.fixture(scope="module")
def site(book_build):
    """Serve the built HTML on 127.0.0.1 from a background thread; yields the base URL."""
    html_dir = book_build.html_dir
    if not (html_dir / "index.html").is_file():
        pytest.fail(
            f"The book did not build, so there is no site to browse (see test_book_builds_without_warnings):\n"
            f"{book_build.summary()}"
        )

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output readable
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html_dir))
    )
    thread = threading.Thread(target=server.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def unavailable(reason: str):
    """Skip, or fail under CI, when the browser cannot be used."""
    message = f"Browser checks not run: {reason}; to enable them, {BROWSER_HELP}."
    if running_in_ci():
        pytest.fail(message + " (CI=true: a missing browser is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium_paths():
    chromium, chromedriver = find_chromium()
    if chromium is None or chromedriver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", chromedriver)) if p is None)
        unavailable(f"{missing} not found")
    return chromium, chromedriver


@pytest.fixture(scope="module")
def driver(chromium_paths, site, tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("the selenium package is not installed (pip install -e '.[test]')")

    chromium, chromedriver = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--lang=en-US",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        # Hermetic browsing: only the local server resolves. External loads fail at once
        # (net::ERR_NAME_NOT_RESOLVED) instead of depending on whether a network is present.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    except WebDriverException as exc:
        unavailable(f"Chromium ({chromium}) with chromedriver ({chromedriver}) did not start: {exc.msg}")
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("screenshots")
    yield path
    target = os.environ.get("MEAL_LITE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in path.glob("*.png"):
            shutil.copy2(png, Path(target) / png.name)


# ---------------------------------------------------------------------------------------------
# Loading a page once and remembering what the checks need

_PAGE_JS = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const imgs = Array.from(article.querySelectorAll('img')).map(img => ({
    src: img.currentSrc || img.src,
    complete: img.complete,
    width: img.naturalWidth,
    height: img.naturalHeight,
    rendered: img.getBoundingClientRect().width,
    in_output: !!img.closest('.cell_output, .output'),
}));
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
const colab = Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href);
// Width: every pre (code cells, outputs, listings) and table must fit the content column. Collapsed
// <details> are opened for the measurement (a reader opens them) and closed again.
const closed = Array.from(article.querySelectorAll('details:not([open])'));
closed.forEach(d => { d.open = true; });
const column = article.getBoundingClientRect();
const wide = [];
Array.from(article.querySelectorAll('pre, table')).forEach((el, index) => {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) return;   // not displayed
    const over = Math.max(el.scrollWidth - el.clientWidth, box.right - column.right);
    const kind = el.tagName === 'TABLE' ? 'table' : el.closest('.cell_output, .output') ? 'output'
        : el.closest('.cell_input, .cell') ? 'code cell' : 'listing';
    const cell = el.closest('.cell');
    const cells = Array.from(article.querySelectorAll('.cell'));
    let fit = null, line = '';
    if (el.tagName === 'PRE') {   // the column in characters of this pre's font: a probe span measures one
        const probe = document.createElement('span');
        probe.textContent = 'x'.repeat(100);
        el.appendChild(probe);
        const charWidth = probe.getBoundingClientRect().width / 100;
        el.removeChild(probe);
        const style = getComputedStyle(el);
        const inner = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        fit = Math.floor(inner / charWidth);
        line = el.textContent.split('\\n').find(l => l.length > fit) || '';
    } else {
        line = Array.from((el.rows[0] || el).querySelectorAll('th, td')).map(c => c.textContent.trim()).join(' | ');
    }
    wide.push({kind: kind, index: index, cell: cell ? cells.indexOf(cell) : -1, over: over,
               width: el.scrollWidth, client: el.clientWidth, fit: fit, line: line});
});
closed.forEach(d => { d.open = false; });
return {url: location.href, title: document.title, imgs: imgs, links: links, colab: colab, blocks: wide,
        column: column.width,
        has_article: !!document.querySelector('article.bd-article'),
        height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)};
"""

_WAIT_IMAGES_JS = """
const imgs = Array.from(document.querySelectorAll('article img, main img'));
imgs.forEach(img => { img.loading = 'eager'; });
return imgs.every(img => img.complete);
"""


class PageCache:
    """Loads each page once (per module) and keeps console entries, DOM facts and a screenshot."""

    def __init__(self, driver, site, screenshot_dir):
        self.driver, self.site, self.screenshot_dir = driver, site, screenshot_dir
        self.pages: dict[str, dict] = {}

    def get(self, entry: str) -> dict:
        if entry not in self.pages:
            self.pages[entry] = self._load(entry)
        return self.pages[entry]

    def _load(self, entry: str) -> dict:
        drv = self.driver
        drv.get_log("browser")  # drop whatever earlier pages left behind
        drv.get(urllib.parse.urljoin(self.site, page_path(entry)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if drv.execute_script("return document.readyState") == "complete" and drv.execute_script(_WAIT_IMAGES_JS):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # let late scripts (theme, MathJax attempts) report their errors
        info = drv.execute_script(_PAGE_JS)
        info["console"] = drv.get_log("browser")
        info["screenshot"] = self._screenshot(entry, info["height"])
        return info

    def _screenshot(self, entry: str, height: int) -> Path:
        """Full-height screenshot: grow the window to the page's height, shoot, shrink back.

        (DevTools' captureBeyondViewport was tried first; it misplaces the theme's sticky
        sidebars, a tall window renders the page exactly as a reader scrolling it sees it.)
        """
        path = self.screenshot_dir / f"{entry.replace('/', '__')}.png"
        drv = self.driver
        chrome = drv.execute_script("return window.outerHeight - window.innerHeight") or 0
        drv.set_window_size(WINDOW[0], min(max(height, WINDOW[1]) + chrome, MAX_SCREENSHOT_HEIGHT))
        time.sleep(0.3)  # let the layout settle at the new size
        drv.save_screenshot(str(path))
        drv.set_window_size(*WINDOW)
        return path


@pytest.fixture(scope="module")
def pages(driver, site, screenshot_dir):
    return PageCache(driver, site, screenshot_dir)


# ---------------------------------------------------------------------------------------------
# Link checking over plain HTTP (the served files, not the live DOM)


class _AnchorCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" or (key == "name" and tag == "a"):
                if value:
                    self.ids.add(value)


@functools.lru_cache(maxsize=None)
def fetch(url: str) -> tuple[int, str]:
    """(HTTP status, body text) of a URL on the local server."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            kind = response.headers.get_content_type()
            text = body.decode("utf-8", errors="replace") if kind == "text/html" else ""
            return response.status, text
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def anchors_of(url: str) -> set[str]:
    collector = _AnchorCollector()
    collector.feed(fetch(url)[1])
    return collector.ids


def is_blocked_external_load(entry: dict, site: str) -> bool:
    """True for a console error that only says a resource from another host failed to load.

    The built site loads MathJax (and, on pages with stored widget state, require.js and the
    ipywidgets embed manager) from public CDNs. The test browser cannot reach them (see the
    --host-resolver-rules flag), and Chromium reports each as a SEVERE
    "<url> - Failed to load resource: net::ERR_..." entry. Those, and only those, are ignored;
    any JavaScript error, and any failed load from the local site, still fails the test.
    """
    message = entry.get("message", "")
    url = message.split(" ", 1)[0]
    parsed = urllib.parse.urlparse(url)
    return (
        entry.get("source") == "network"
        and parsed.scheme in ("http", "https")
        and not url.startswith(site)
        and parsed.hostname not in ("127.0.0.1", "localhost")
        and "net::ERR_" in message
    )


# ---------------------------------------------------------------------------------------------
# Tests


def test_book_builds_without_warnings(book_build):
    assert book_build.returncode is not None, f"The book build timed out:\n{book_build.tail()}"
    warnings = book_build.warnings()
    assert book_build.returncode == 0 and not warnings, (
        f"`{' '.join(build_command(Path('<tmp>')))}` failed (exit {book_build.returncode}, "
        f"{len(warnings)} warning(s)):\n{book_build.summary()}"
    )
    for entry in PAGES:
        assert (book_build.html_dir / page_path(entry)).is_file(), f"{page_path(entry)} is missing from the build."


def test_index_redirects_to_intro(driver, site):
    driver.get(site)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not driver.current_url.endswith(page_path(PAGES[0])):
        time.sleep(0.2)
    assert driver.current_url.endswith(page_path(PAGES[0])), (
        f"{site} should redirect to {page_path(PAGES[0])}, it shows {driver.current_url}."
    )


@pytest.mark.parametrize("entry", PAGES)
def test_page_loads_without_console_errors(pages, site, entry):
    info = pages.get(entry)
    assert info["has_article"], f"{entry}: no <article class='bd-article'>; the book theme did not render."
    errors = [
        e["message"]
        for e in info["console"]
        if e.get("level") == "SEVERE" and not is_blocked_external_load(e, site)
    ]
    assert not errors, f"{entry}: console errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("entry", PAGES)
def test_page_figures_render(pages, entry):
    info = pages.get(entry)
    broken = [i["src"] for i in info["imgs"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"{entry}: these images did not load or decode: {broken}"
    if entry != PAGES[0]:  # the intro is prose; every chapter shows at least one computed figure
        outputs = [i for i in info["imgs"] if i["in_output"]]
        assert outputs, (
            f"{entry}: no figure in any cell output; a chapter must display at least one matplotlib "
            "figure as a cell output (end the plotting cell with plt.show())."
        )


@pytest.mark.parametrize("entry", PAGES)
def test_page_internal_links_resolve(pages, site, entry):
    info = pages.get(entry)
    problems = []
    for href in sorted(set(info["links"])):
        if not href.startswith(site):
            continue  # external (repository, Colab, Binder, arXiv, ...): not fetched offline
        target, _, fragment = href.partition("#")
        status, _ = fetch(target)
        if status != 200:
            problems.append(f"{href} -> HTTP {status}")
            continue
        fragment = urllib.parse.unquote(fragment)
        if fragment and fragment not in anchors_of(target):
            problems.append(f"{href} -> no element with id {fragment!r} in {target}")
    assert not problems, f"{entry}: broken internal links:\n" + "\n".join(problems)


@pytest.mark.parametrize("entry", CHAPTERS)
def test_chapter_colab_button(pages, entry):
    source = resolve_entry(entry)
    if source is not None and source.suffix != ".ipynb":
        pytest.skip(f"{entry} is a markdown page; only notebooks get launch buttons")
    info = pages.get(entry)
    expected = colab_url_for(entry)
    assert info["colab"], f"{entry}: no Colab launch button (no link to colab.research.google.com)."
    assert set(info["colab"]) == {expected}, f"{entry}: Colab button points at {info['colab']}, expected {expected}."


@pytest.mark.parametrize("entry", PAGES)
def test_page_screenshot_saved(pages, entry):
    shot = pages.get(entry)["screenshot"]
    assert shot.is_file() and shot.stat().st_size > 10_000, f"{entry}: screenshot {shot} is missing or blank."
    print(f"[book] screenshot {shot}")


#: how far (px) a block may pass its column: sub-pixel rounding of fractional widths
WIDTH_TOLERANCE_PX = 1
@pytest.mark.parametrize("entry", PAGES)
def test_page_blocks_fit_the_column(pages, entry):
    """No code cell, output, listing or table is wider than the content column: nothing is clipped or
    needs a horizontal scroll (``scrollWidth <= clientWidth`` and no right edge past the article's)."""
    info = pages.get(entry)
    wide = [b for b in info["blocks"] if b["over"] > WIDTH_TOLERANCE_PX]
    print(f"[book] {entry}: {len(wide)} of {len(info['blocks'])} pre/table wider than the {info['column']:.0f}px column")

    def described(blocks):
        return "\n".join(
            f"  {b['kind']}" + (f" in cell {b['cell']}" if b["cell"] >= 0 else f" (block {b['index']})")
            + f": {b['width']} px in {b['client']} px" + (f" (fits {b['fit']} characters)" if b["fit"] else "")
            + f", first wide line: {b['line'][:140]!r}"
            for b in blocks
        )

    assert not wide, f"{entry}: {len(wide)} block(s) wider than the content column:\n" + described(wide)


def png_dpi(data: bytes) -> float | None:
    """Dots per inch a PNG records (its pHYs chunk, which matplotlib writes), or None."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"pHYs" and data[pos + 16] == 1:   # unit 1: pixels per metre
            return int.from_bytes(data[pos + 8:pos + 12], "big") * 0.0254
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


@functools.lru_cache(maxsize=None)
def fetch_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.mark.parametrize("entry", PAGES)
def test_page_figure_text_is_readable(pages, entry):
    """Figure text is at least MIN_TEXT_PX px on the page: the smallest font any book figure has
    (meal_lite.book.MIN_FONT_PT, see meal_lite/book/figures.py and tests/test_book_helpers.py) is
    MIN_FONT_PT * dpi / 72 px in the PNG, shown at (rendered width / natural width) of that."""
    small = []
    for img in pages.get(entry)["imgs"]:
        if not img["in_output"] or not img["width"]:
            continue
        dpi = png_dpi(fetch_bytes(img["src"]))
        assert dpi, f"{entry}: the figure {img['src']} records no resolution (not a matplotlib PNG?)"
        px = MIN_FONT_PT * dpi / 72 * img["rendered"] / img["width"]
        if px < MIN_TEXT_PX - 0.05:
            small.append(f"  {img['src'].rsplit('/', 1)[-1]}: {img['width']} px at {dpi:.0f} dpi shown {img['rendered']:.0f} px "
                         f"wide: {MIN_FONT_PT} pt is {px:.1f} px (needs a figure at most "
                         f"{img['rendered'] * MIN_FONT_PT / (MIN_TEXT_PX * 72):.1f} in wide)")
    assert not small, f"{entry}: figure text smaller than {MIN_TEXT_PX} px on the page:\n" + "\n".join(small)
