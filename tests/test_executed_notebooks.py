"""The executed-notebooks plugin's hand-over between workers: the browser test waits for a chapter another
worker is still running, reads it only once it is written whole, and never waits for one this run does not
execute (tests/executed_notebooks.py)."""

from __future__ import annotations

import threading

import nbformat
import pytest

import executed_notebooks as plugin


@pytest.fixture
def executed_dir(tmp_path, monkeypatch):
    root, out = tmp_path / "repo", tmp_path / "executed"
    (root / "book").mkdir(parents=True)
    monkeypatch.setattr(plugin, "EXECUTED_DIR", [out])
    monkeypatch.setattr(plugin, "ROOT", [root])
    monkeypatch.setattr(plugin, "COLLECTED", set())
    return root, out


def _record(nb_path, failed=False):
    return {"nb": nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), "failed": failed}


def test_waits_for_a_chapter_another_worker_writes(executed_dir):
    root, out = executed_dir
    chapter = (root / "book" / "01.ipynb").resolve()
    plugin.COLLECTED.add(chapter)
    writer = threading.Timer(0.3, plugin._write, args=(chapter, _record(chapter)))
    writer.start()
    plugin.await_chapters([chapter], timeout=30, poll=0.05)
    writer.join()
    assert (out / "book" / "01.ipynb").is_file() and not list(out.rglob("*.partial"))
    assert list(plugin.executed_notebooks()) == [root / "book" / "01.ipynb"]


def test_a_failed_chapter_ends_the_wait(executed_dir):
    root, out = executed_dir
    chapter = (root / "book" / "02.ipynb").resolve()
    plugin.COLLECTED.add(chapter)
    plugin._write(chapter, _record(chapter, failed=True))
    plugin.await_chapters([chapter], timeout=0)  # returns: the marker is there
    assert plugin.failed_notebooks() == ["02.ipynb"] and plugin.executed_notebooks() == {}


def test_a_chapter_this_run_does_not_execute_is_not_waited_for(executed_dir):
    root, _ = executed_dir
    plugin.await_chapters([root / "book" / "03.ipynb"], timeout=0)


def test_a_chapter_that_never_finishes_times_out_naming_it(executed_dir):
    root, _ = executed_dir
    chapter = (root / "book" / "04.ipynb").resolve()
    plugin.COLLECTED.add(chapter)
    with pytest.raises(TimeoutError, match="04.ipynb"):
        plugin.await_chapters([chapter], timeout=0.1, poll=0.02)
