"""A pytest plugin that keeps what nbval executed, so the book is built from it instead of running again.

``make test`` runs every chapter once: nbval executes each notebook cell by cell (checking that every
cell runs and every asserted claim holds), this plugin records each cell's outputs as nbval receives
them, and the browser test (``tests/test_book_browser.py``) builds the HTML from those executed copies
with Jupyter Book's execution switched off. Without the plugin, or when a chapter did not run to its
end under nbval, the browser test falls back to a build that executes the chapters itself.

With ``--executed-dir DIR`` every chapter that ran to its end is also written to ``DIR`` (and a chapter
that failed leaves ``DIR/<name>.failed``). That is how the chapters can run in parallel pytest-xdist
workers while the browser test still builds from all of them: ``make test`` runs the whole suite on two
workers, the browser test last in the collection order; when a worker reaches it while the other worker
is still running a chapter, :func:`await_chapters` waits for that chapter to be written (or to fail).
A later run that collects no notebook (the browser test alone) reads what an earlier run wrote there.

Enabled with ``-p executed_notebooks`` (the Makefile does it); ``tests/`` is on ``pythonpath``.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import nbformat
import pytest

#: notebook path -> {"nb": executed copy, "done": code cells recorded, "total": code cells, "failed": bool}
RECORDED: dict[Path, dict] = {}
#: where finished chapters are written (empty: memory only), set from --executed-dir; and the rootdir
EXECUTED_DIR: list[Path] = []
ROOT: list[Path] = []
#: the notebooks nbval runs in this run (in any worker), from the collection
COLLECTED: set[Path] = set()


def pytest_addoption(parser):
    parser.addoption(
        "--executed-dir", default=None, metavar="DIR",
        help="write every chapter nbval ran to its end to DIR (a failed one leaves DIR/<name>.failed); "
             "a later run's browser test builds the book from DIR",
    )


def pytest_configure(config):
    folder = config.getoption("executed_dir")
    EXECUTED_DIR[:] = [Path(folder).resolve()] if folder else []
    ROOT[:] = [Path(config.rootpath).resolve()]
    # The controller (not an xdist worker) starts from an empty folder, unless this run collects no
    # notebook at all (the browser test run reads the folder the previous run wrote).
    if EXECUTED_DIR and not hasattr(config, "workerinput") and _collects_notebooks(config):
        shutil.rmtree(EXECUTED_DIR[0], ignore_errors=True)


def _collects_notebooks(config) -> bool:
    paths = [Path(str(a).split("::")[0]) for a in config.args] or [Path(config.rootpath)]
    return bool(config.getoption("nbval_lax", False) or config.getoption("nbval", False)) and any(
        p.suffix == ".ipynb" or (p.is_dir() and any(p.rglob("*.ipynb"))) for p in paths
    )


def executed_notebooks() -> dict[Path, nbformat.NotebookNode]:
    """The notebooks whose every code cell ran under nbval without failing, with their outputs.

    From ``--executed-dir`` when it is set (every worker of this run, or an earlier run, wrote there),
    else from this process's memory.
    """
    if EXECUTED_DIR and EXECUTED_DIR[0].is_dir():
        return {ROOT[0] / p.relative_to(EXECUTED_DIR[0]): nbformat.read(p, as_version=4) for p in _saved("*.ipynb")}
    return {path: rec["nb"] for path, rec in RECORDED.items() if rec["done"] == rec["total"] and not rec["failed"]}


def await_chapters(paths, timeout: float = 1800.0, poll: float = 1.0) -> None:
    """Wait until each of ``paths`` that nbval runs in this run is written to ``--executed-dir`` or marked
    failed there: under pytest-xdist another worker may still be running it. Returns at once without
    ``--executed-dir``, and for a chapter this run does not execute; raises after ``timeout`` seconds."""
    if not EXECUTED_DIR:
        return
    pending = {Path(p).resolve() for p in paths} & COLLECTED
    deadline = time.monotonic() + timeout
    while True:
        pending = {p for p in pending if not (_target(p).exists() or _target(p).with_name(p.name + ".failed").exists())}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker finished these chapters within {timeout:.0f} s: "
                               f"{', '.join(sorted(p.name for p in pending))}")
        time.sleep(poll)


def failed_notebooks() -> list[str]:
    """Names of the chapters that failed under nbval (memory, else ``--executed-dir``'s markers)."""
    names = [path.name for path, rec in RECORDED.items() if rec["failed"]]
    return names or [p.name[: -len(".failed")] for p in _saved("*.failed")]


def any_recorded() -> bool:
    """Did nbval run any chapter in this run, or in an earlier run that wrote ``--executed-dir``?"""
    return bool(RECORDED) or bool(_saved("*.ipynb") or _saved("*.failed"))


def _saved(pattern: str) -> list[Path]:
    return sorted(EXECUTED_DIR[0].rglob(pattern)) if EXECUTED_DIR and EXECUTED_DIR[0].is_dir() else []


def _write(path: Path, record: dict) -> None:
    """Save a finished chapter under ``--executed-dir``, at its path relative to the rootdir."""
    if not EXECUTED_DIR:
        return
    target = _target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if record["failed"]:
        target.with_name(path.name + ".failed").write_text("failed under nbval\n")
    else:  # written whole, then renamed: a waiting worker never reads half a notebook
        partial = target.with_name(target.name + ".partial")
        nbformat.write(record["nb"], partial)
        partial.replace(target)


def _target(path: Path) -> Path:
    return EXECUTED_DIR[0] / path.relative_to(ROOT[0])


def pytest_collection_modifyitems(session, config, items):
    """Browser checks after the last chapter, so that they find every chapter executed by nbval; note which
    notebooks this run executes."""
    COLLECTED.update(Path(str(item.fspath)).resolve() for item in items if hasattr(item, "cell_num"))
    browser = [item for item in items if Path(str(item.fspath)).name == "test_book_browser.py"]
    notebooks = [i for i, item in enumerate(items) if hasattr(item, "cell_num")]
    if browser and notebooks and items.index(browser[0]) < notebooks[-1]:  # a chapter comes after it: move it
        rest = [item for item in items if item not in browser]
        last = rest.index(items[notebooks[-1]])
        items[:] = rest[: last + 1] + browser + rest[last + 1:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call" or not hasattr(item, "cell_num") or not hasattr(item, "test_outputs"):
        return
    path = Path(str(item.fspath)).resolve()
    if path not in RECORDED:
        nb = copy.deepcopy(item.parent.nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        for cell in code:
            cell.outputs, cell.execution_count = [], None
        RECORDED[path] = {"nb": nb, "code": code, "done": 0, "total": len(code), "failed": False}
    record = RECORDED[path]
    report = outcome.get_result()
    if report.failed or item.test_outputs is None:
        if not record["failed"]:
            record["failed"] = True
            _write(path, record)
        return
    cell = record["code"][item.cell_num]
    cell.outputs = [nbformat.from_dict(dict(out)) for out in item.test_outputs]
    cell.execution_count = item.cell_num + 1
    for out in cell.outputs:
        if out.get("output_type") == "execute_result":
            out["execution_count"] = cell.execution_count
            out.setdefault("metadata", {})
    record["done"] += 1
    if record["done"] == record["total"] and not record["failed"]:
        _write(path, record)
