"""The run-time table in the README and the intro is the one ``bench/run_times.py`` makes from the measured
results in ``bench/results`` (no number typed by hand), and its T4 estimate follows its stated rule."""

from __future__ import annotations

import runpy

import pytest

from book_utils import BOOK_DIR, REPO_ROOT

RUN_TIMES = runpy.run_path(str(REPO_ROOT / "bench" / "run_times.py"))


@pytest.mark.parametrize("page", [REPO_ROOT / "README.md", BOOK_DIR / "intro.md"])
def test_the_page_shows_the_generated_table(page):
    table = RUN_TIMES["table"]()
    assert table in page.read_text(encoding="utf-8"), f"{page.name}: paste the output of python bench/run_times.py"


def test_the_readme_shows_the_generated_unit_costs():
    assert RUN_TIMES["units_table"]() in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_chapter_has_a_row():
    assert sorted(RUN_TIMES["CHAPTERS"]) == sorted(p.stem for p in BOOK_DIR.glob("*.ipynb"))


def test_t4_speedup_by_hand():
    cost = {"units": {
        "teacher a": {"images_per_s": 10.0, "t4_images_per_s_estimate": 900.0},   # 90x
        "student train step": {"images_per_s": 20.0, "t4_images_per_s_estimate": 4000.0},  # 200x, but data-bound
        "data: decode": {"images_per_s": 300.0, "t4_images_per_s_estimate": None},
    }}
    speedup, unit = RUN_TIMES["t4_speedup"](cost)
    # the training step can go no faster than two cores decode: 2 x 300 = 600 images/s, 30x this CPU's 20
    assert speedup == pytest.approx(30.0) and unit == "student train step"
