"""The book layer's page helpers: the one table helper, and the figure style that keeps figure text readable.

The figure check here is static: no chapter and no plotting function of the package asks matplotlib for a font
smaller than :data:`meal_lite.book.MIN_FONT_PT` (the style :func:`meal_lite.book.setup` applies makes every
default size at least that). ``tests/test_book_browser.py`` measures what the page then shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
from matplotlib.font_manager import FontProperties
import nbformat
import pytest

from meal_lite import ConfigError
from meal_lite.book import FIGURE_RC, MIN_FONT_PT, apply_style, table

ROOT = Path(__file__).resolve().parents[1]


def test_table_of_mappings_formats_and_aligns():
    rows = [{"arm": "ce", "top1": 91.234, "delta": None}, {"arm": "meal", "top1": 92.5, "delta": 1.266}]
    got = table(rows, columns={"arm": "arm", "top1": "top-1 (%)", "delta": "minus ce"},
                formats={"top1": ".2f", "delta": "+.2f"})
    assert str(got) == (
        "| arm | top-1 (%) | minus ce |\n"
        "|---|---:|---:|\n"
        "| ce | 91.23 |  |\n"
        "| meal | 92.50 | +1.27 |"
    )
    assert got._repr_markdown_() == str(got)   # what IPython displays


def test_table_of_sequences_escapes_pipes_and_calls_format_functions():
    got = table([("a|b", 3), ("c", 10)], columns=["name", "n"], formats={"n": lambda v: f"{v}x"})
    # "3x" is text, but the column's values are numbers: right-aligned
    assert str(got) == "| name | n |\n|---|---:|\n| a\\|b | 3x |\n| c | 10x |"


def test_table_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="2 values for 3 columns"):
        table([(1, 2)], columns=["a", "b", "c"])
    with pytest.raises(ConfigError, match="formats for \\['x'\\]"):
        table([{"a": 1}], formats={"x": ".1f"})
    with pytest.raises(ConfigError, match="needs columns="):
        table([(1, 2)])


def test_style_makes_every_text_size_at_least_the_minimum():
    with matplotlib.rc_context():
        apply_style()
        for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                    "legend.fontsize", "legend.title_fontsize", "figure.titlesize", "figure.labelsize"):
            size = FontProperties(size=matplotlib.rcParams[key]).get_size_in_points()
            assert size >= MIN_FONT_PT, f"{key} = {matplotlib.rcParams[key]} is {size} pt"
        assert matplotlib.rcParams["figure.dpi"] == FIGURE_RC["figure.dpi"]


# An explicit font size in code: fontsize=8, labelsize=7, size="small", prop={"size": 6}, ...
SIZE_ARG = re.compile(r"""\b(fontsize|labelsize|size)\s*[=:]\s*(["']?)([\w.-]+)\2""")
SMALLER_NAMES = {"xx-small", "x-small", "small", "smaller"}


def small_sizes(text: str) -> list[str]:
    found = []
    for match in SIZE_ARG.finditer(text):
        value = match.group(3)
        try:
            small = float(value) < MIN_FONT_PT
        except ValueError:
            small = value in SMALLER_NAMES
        if small:
            found.append(match.group(0))
    return found


def figure_sources() -> dict[str, str]:
    """Every chapter's code cells (by notebook and cell id) and every package module that draws."""
    sources = {}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                sources[f"{path.relative_to(ROOT)} cell {cell.id}"] = cell.source
    for path in sorted((ROOT / "meal_lite").rglob("*.py")):
        text = path.read_text()
        if "matplotlib" in text:
            sources[str(path.relative_to(ROOT))] = text
    return sources


def test_no_chapter_or_plot_asks_for_a_small_font():
    found = {where: small_sizes(text) for where, text in figure_sources().items()}
    found = {where: sizes for where, sizes in found.items() if sizes}
    assert not found, (
        f"Figure text smaller than MIN_FONT_PT = {MIN_FONT_PT} pt (drop the size: meal_lite.book.setup's style "
        f"gives every text at least that): {found}"
    )


def test_table_numbers_right_text_and_booleans_left():
    got = table([{"n": 1.5, "ok": True, "s": "x"}], formats={"ok": lambda v: "yes" if v else "no"})
    assert str(got) == "| n | ok | s |\n|---:|---|---|\n| 1.5 | yes | x |"
