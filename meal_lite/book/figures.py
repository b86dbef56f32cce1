"""The book's figure style: font sizes and resolution chosen so that figure text stays readable on the page.

A chapter's matplotlib figure is a PNG that the page scales down to its content column. Text of ``p``
points in a figure drawn at ``d`` dots per inch is ``p * d / 72`` pixels in the PNG, and the page shows
it at ``rendered width / natural width`` of that. :func:`apply_style` (called once by
:func:`meal_lite.book.setup`) sets matplotlib's sizes so that no text in a figure is smaller than
:data:`MIN_FONT_PT`, and the resolution to :data:`FIGURE_DPI`; ``tests/test_book_browser.py`` measures
every figure on every page against :data:`MIN_TEXT_PX`, and ``tests/test_book_helpers.py`` checks that
no chapter or plotting function asks for a smaller font.
"""

from __future__ import annotations

import matplotlib

__all__ = ["FIGURE_DPI", "FIGURE_RC", "MIN_FONT_PT", "MIN_TEXT_PX", "apply_style"]

#: dots per inch of the figures a chapter displays
FIGURE_DPI = 100
#: the smallest font (points) any text in a book figure has: tick labels and legends
MIN_FONT_PT = 9
#: the smallest text height (CSS pixels) a reader should see in a figure on the page
MIN_TEXT_PX = 9

#: every matplotlib text size as an absolute size >= MIN_FONT_PT (the defaults' "small" would be 8.3 pt)
FIGURE_RC = {
    "figure.dpi": FIGURE_DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 11,
    "figure.labelsize": 10,
}


def apply_style() -> None:
    """Set :data:`FIGURE_RC` in matplotlib's rcParams (for every figure drawn after it)."""
    matplotlib.rcParams.update(FIGURE_RC)
