"""The book's notebooks are committed clean and wired into the table of contents.

Why: the book is executed from scratch on every build, so stored outputs would only be stale
copies (and bloat diffs); a notebook outside _toc.yml is silently not built
(only_build_toc_files: true); and a chapter opened in Colab has no `meal_lite` until its first,
hidden cell installs it - a cell that must do nothing anywhere else.

Fast (no kernel, no build): reads the .ipynb JSON only.
"""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the book extras: pip install -e '.[book]'")

from book_utils import (  # noqa: E402  (pytest's default import mode puts tests/ on sys.path)
    BOOK_DIR,
    REPO_ROOT,
    TOC_PATH,
    book_notebooks,
    entry_of,
    load_yaml,
    resolve_entry,
    toc_entries,
)

NOTEBOOKS = book_notebooks()
NB_IDS = [p.relative_to(REPO_ROOT).as_posix() for p in NOTEBOOKS]
TOC_ENTRIES = toc_entries()


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


# ---------------------------------------------------------------------------------------------
# Table of contents


def test_toc_is_a_jupyter_book():
    toc = load_yaml(TOC_PATH)
    assert toc.get("format") == "jb-book", f"{TOC_PATH.name} must declare `format: jb-book`."
    assert toc.get("root") == "book/intro", f"{TOC_PATH.name} must have `root: book/intro`."


@pytest.mark.parametrize("entry", TOC_ENTRIES)
def test_toc_entry_exists(entry):
    assert resolve_entry(entry) is not None, (
        f"_toc.yml lists `{entry}` but neither {entry}.ipynb nor {entry}.md exists; "
        "write the page or remove the entry."
    )


def test_toc_has_no_duplicates():
    duplicates = sorted({e for e in TOC_ENTRIES if TOC_ENTRIES.count(e) > 1})
    assert not duplicates, f"_toc.yml lists these pages more than once: {duplicates}."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_is_in_toc(path):
    assert entry_of(path) in TOC_ENTRIES, (
        f"{path.relative_to(REPO_ROOT)} is not listed in _toc.yml, so the book never builds it; "
        f"add `- file: {entry_of(path)}` there (or delete the notebook)."
    )


# ---------------------------------------------------------------------------------------------
# Each notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_is_valid(path):
    nbformat.validate(read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_has_no_outputs(path):
    nb = read(path)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or an execution count; clear them before committing "
        f"(`jupyter nbconvert --clear-output --inplace {path.relative_to(REPO_ROOT)}`)."
    )
    assert "widgets" not in nb.metadata, (
        f"{path.name} stores ipywidgets state in its metadata; clear it (Edit > Clear widget state "
        "or delete metadata.widgets)."
    )
    marked = [i for i, cell in enumerate(nb.cells) if "MERGE_CONFLICT" in cell.get("metadata", {})]
    assert not marked, (
        f"{path.name}: cells {marked} still carry a merge tool's MERGE_CONFLICT mark; resolve the conflict, "
        "then delete the key from their metadata."
    )


#: Characters of code the page's content column shows without a horizontal scroll (the browser test,
#: tests/test_book_browser.py, measures the same column in pixels; this catches a long line in a second).
CODE_COLUMN = 88


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_visible_code_fits_the_column(path):
    nb = read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    long = [
        (k, len(line), line)
        for k, cell in enumerate(code)
        if "remove-cell" not in cell.metadata.get("tags", []) and "remove-input" not in cell.metadata.get("tags", [])
        for line in cell.source.splitlines()
        if len(line) > CODE_COLUMN
    ]
    assert not long, f"{path.name}: code lines wider than the page's {CODE_COLUMN} characters (code cell, length, line): " + "; ".join(
        f"{k}, {n}: {line!r}" for k, n, line in long
    ) + "; break them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_kernel_is_python3(path):
    kernelspec = read(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", (
        f"{path.name}: metadata.kernelspec.name is {kernelspec.get('name')!r}; it must be 'python3' "
        "so that the book build, nbval and Colab all find the kernel."
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_first_code_cell_installs_only_in_colab(path):
    cells = code_cells(read(path))
    assert cells, f"{path.name} has no code cell."
    first = cells[0]
    tags = first.metadata.get("tags", [])
    assert "remove-cell" in tags, (
        f"{path.name}: the first code cell (the Colab install cell) must be tagged `remove-cell` "
        f"so the web page hides it; its tags are {tags}."
    )
    lines = first.source.splitlines()
    guard = next((i for i, line in enumerate(lines) if "google.colab" in line), None)
    assert guard is not None, (
        f"{path.name}: the first code cell must install the package only inside Colab, behind a "
        "check such as `if \"google.colab\" in sys.modules:`."
    )
    installs = [i for i, line in enumerate(lines) if "install" in line and "pip" in line]
    assert installs, f"{path.name}: the first code cell must pip-install meal_lite when run in Colab."

    def indent(line):
        return len(line) - len(line.lstrip())

    outside = [lines[i] for i in installs if i < guard or indent(lines[i]) <= indent(lines[guard])]
    assert not outside, (
        f"{path.name}: these install lines are not inside the `google.colab` check, so they would run "
        f"everywhere: {outside}."
    )


def test_book_dir_exists():
    assert BOOK_DIR.is_dir() and (BOOK_DIR / "intro.md").is_file(), "book/intro.md is missing."
