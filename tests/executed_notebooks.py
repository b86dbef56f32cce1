"""A pytest plugin that keeps what nbval executed, so the book is built from it instead of running again.

``make test`` runs every chapter once: nbval executes each notebook cell by cell (checking that every
cell runs and every asserted claim holds), this plugin records each cell's outputs as nbval receives
them, and the browser test (``tests/test_book_browser.py``) builds the HTML from those executed copies
with Jupyter Book's execution switched off. Without the plugin, or when a chapter did not run to its
end under nbval, the browser test falls back to a build that executes the chapters itself.

Enabled with ``-p executed_notebooks`` (the Makefile does it); ``tests/`` is on ``pythonpath``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

#: notebook path -> {"nb": executed copy, "done": code cells recorded, "total": code cells, "failed": bool}
RECORDED: dict[Path, dict] = {}


def executed_notebooks() -> dict[Path, nbformat.NotebookNode]:
    """The notebooks whose every code cell ran under nbval without failing, with their outputs."""
    return {path: rec["nb"] for path, rec in RECORDED.items() if rec["done"] == rec["total"] and not rec["failed"]}


def pytest_collection_modifyitems(session, config, items):
    """Browser checks last, so that they find every chapter executed by nbval."""
    browser = [item for item in items if Path(str(item.fspath)).name == "test_book_browser.py"]
    if browser:
        items[:] = [item for item in items if item not in browser] + browser


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
        record["failed"] = True
        return
    cell = record["code"][item.cell_num]
    cell.outputs = [nbformat.from_dict(dict(out)) for out in item.test_outputs]
    cell.execution_count = item.cell_num + 1
    for out in cell.outputs:
        if out.get("output_type") == "execute_result":
            out["execution_count"] = cell.execution_count
            out.setdefault("metadata", {})
    record["done"] += 1
