"""Helpers shared by the book tests: where the book is, what its table of contents lists,
how to build it and how to find a usable headless browser.

Kept free of pytest fixtures so that both test modules (and a curious human at a Python
prompt) can import it. Paths in ``_toc.yml`` are relative to the repository root and carry
no suffix; a toc entry ``book/01_data`` is a page ``book/01_data.ipynb`` or ``book/01_data.md``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_DIR = REPO_ROOT / "book"
TOC_PATH = REPO_ROOT / "_toc.yml"
CONFIG_PATH = REPO_ROOT / "_config.yml"

# Suffixes a toc entry may resolve to, in the order Jupyter Book would pick them.
PAGE_SUFFIXES = (".ipynb", ".md")

# Where the Debian packages `chromium` and `chromium-driver` put their binaries.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)

BROWSER_HELP = (
    "install headless Chromium and its driver with `sudo apt-get install chromium chromium-driver` "
    "(or run `make browser-deps`), or point MEAL_LITE_CHROMIUM / MEAL_LITE_CHROMEDRIVER at them"
)

# A whole-book build executes every notebook; the offline chapters train small models.
BUILD_TIMEOUT_S = 20 * 60


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def toc_entries(toc_path: Path = TOC_PATH) -> list[str]:
    """All pages of the toc in reading order: the root first, then every `file:` entry.

    Walks parts / chapters / sections recursively; entries are root-relative, without suffix.
    """
    toc = load_yaml(toc_path)
    entries = [toc["root"]]

    def walk(items):
        for item in items or ():
            if "file" in item:
                entries.append(item["file"])
            for key in ("parts", "chapters", "sections"):
                walk(item.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return [e.removesuffix(".ipynb").removesuffix(".md") for e in entries]


def toc_chapters(toc_path: Path = TOC_PATH) -> list[str]:
    """The toc entries after the root page (the chapters)."""
    return toc_entries(toc_path)[1:]


def resolve_entry(entry: str) -> Path | None:
    """The source file behind a toc entry, or None when it does not exist (yet)."""
    for suffix in PAGE_SUFFIXES:
        path = REPO_ROOT / f"{entry}{suffix}"
        if path.is_file():
            return path
    return None


def book_notebooks() -> list[Path]:
    """Every notebook under book/, ignoring build outputs and Jupyter checkpoints."""
    return sorted(
        p
        for p in BOOK_DIR.rglob("*.ipynb")
        if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts
    )


def entry_of(path: Path) -> str:
    """Toc entry (root-relative, no suffix) of a source file."""
    return path.resolve().relative_to(REPO_ROOT).with_suffix("").as_posix()


def colab_url_for(entry: str) -> str:
    """The Colab link the launch button must carry for a notebook toc entry."""
    config = load_yaml(CONFIG_PATH)
    repo = config["repository"]
    owner_name = repo["url"].rstrip("/").removeprefix("https://github.com/")
    prefix = repo.get("path_to_book", "").strip("/")
    path = f"{prefix}/{entry}.ipynb" if prefix else f"{entry}.ipynb"
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{owner_name}/blob/{repo['branch']}/{path}"


# --------------------------------------------------------------------------------------------
# Building


@dataclass
class BuildResult:
    returncode: int | None  # None: timed out
    seconds: float
    log: str = field(repr=False)
    html_dir: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and (self.html_dir / "index.html").is_file()

    def warnings(self) -> list[str]:
        """Lines of the build log that Sphinx or myst-nb flagged as warnings or errors."""
        return [
            line
            for line in self.log.splitlines()
            if "WARNING:" in line or "ERROR:" in line or "CRITICAL:" in line
        ]

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-n:])

    def summary(self, max_lines: int = 80) -> str:
        """What went wrong, in a few lines: warnings, the failing notebook cell, else the tail."""
        lines = self.log.splitlines()
        parts = self.warnings()
        # A cell that raised: nbclient prints the cell and the error, then a long chained traceback.
        for i, line in enumerate(lines):
            if "CellExecutionError" in line and "An error occurred while executing" in line:
                notebook = next(
                    (l for l in reversed(lines[:i]) if "Executing notebook" in l), "(notebook unknown)"
                )
                end = next(
                    (j for j in range(i, len(lines)) if lines[j].startswith("The above exception")), len(lines)
                )
                parts += ["", notebook.strip(), *lines[i:end]]
                break
        if not parts:
            return self.tail(max_lines)
        return "\n".join(parts[:max_lines])


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Sphinx and IPython colour their output; the tests compare and print plain text."""
    return _ANSI.sub("", text)


def jupyter_book_executable() -> str:
    """The `jupyter-book` script of the running environment (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "jupyter-book"
    if local.is_file():
        return str(local)
    found = shutil.which("jupyter-book")
    if found is None:
        raise FileNotFoundError(
            "jupyter-book is not installed in this environment; install the book extras with "
            "`pip install -e \".[book]\"`."
        )
    return found


def build_command(out_dir: Path, source: Path = REPO_ROOT) -> list[str]:
    """The exact build the tests run: every warning is an error, all of them are reported."""
    return [
        jupyter_book_executable(),
        "build",
        "--warningiserror",
        "--keep-going",
        "--all",  # fresh environment: never reuse a stale doctree
        "--path-output",
        str(out_dir),
        str(source),
    ]


def stage_executed_book(executed: dict, dest: Path) -> Path:
    """A copy of the book's sources in ``dest`` whose notebooks are the ``executed`` ones (path -> notebook),
    with Jupyter Book's execution switched off: building it renders those outputs and runs nothing."""
    import nbformat

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TOC_PATH, dest / TOC_PATH.name)
    config = load_yaml(CONFIG_PATH)
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (dest / CONFIG_PATH.name).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    shutil.copytree(BOOK_DIR, dest / BOOK_DIR.name, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    # The pages show the package's real source (literalinclude ../meal_lite/..., ../scripts/...): link it in.
    for folder in ("meal_lite", "scripts"):
        (dest / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    for path, nb in executed.items():
        nbformat.write(nb, dest / Path(path).resolve().relative_to(REPO_ROOT))
    return dest


def build_book(
    out_dir: Path, *, profile: str = "offline", timeout: float = BUILD_TIMEOUT_S, source: Path = REPO_ROOT
) -> BuildResult:
    """Build the whole book from ``source`` into ``out_dir/_build/html`` with the given profile, offline."""
    env = dict(os.environ)
    env.update(
        MEAL_LITE_PROFILE=profile,
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        # matplotlib must never try to open a window inside the kernels.
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    # Make the venv's jupyter, kernels and python the ones found first.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    start = time.monotonic()
    try:
        proc = subprocess.run(
            build_command(out_dir, source),
            cwd=source,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        code, log = proc.returncode, strip_ansi(proc.stdout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        code, log = None, strip_ansi(out.decode(errors="replace") if isinstance(out, bytes) else out)
        log += f"\n[book_utils] build killed after {timeout:.0f} s"
    return BuildResult(code, time.monotonic() - start, log, out_dir / "_build" / "html")


# --------------------------------------------------------------------------------------------
# Browser


def find_executable(env_var: str, candidates: tuple[str, ...], name: str) -> str | None:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def find_chromium() -> tuple[str | None, str | None]:
    """(chromium binary, chromedriver binary); either may be None when not installed."""
    return (
        find_executable("MEAL_LITE_CHROMIUM", CHROMIUM_CANDIDATES, "chromium"),
        find_executable("MEAL_LITE_CHROMEDRIVER", CHROMEDRIVER_CANDIDATES, "chromedriver"),
    )


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
