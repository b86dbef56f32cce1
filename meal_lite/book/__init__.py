"""The book's helpers: one-call chapter setup, its tables and its figure style.

- :mod:`~meal_lite.book.chapter` -- the profile, configuration, data and teachers of a chapter;
- :mod:`~meal_lite.book.tables` -- rows of values to a Markdown table (the one table helper);
- :mod:`~meal_lite.book.figures` -- font sizes and resolution that keep figure text readable on the page.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "apply_style": "meal_lite.book.figures",
    "FIGURE_DPI": "meal_lite.book.figures",
    "FIGURE_RC": "meal_lite.book.figures",
    "MIN_FONT_PT": "meal_lite.book.figures",
    "MIN_TEXT_PX": "meal_lite.book.figures",
    "setup": "meal_lite.book.chapter",
    "show_config": "meal_lite.book.chapter",
    "Table": "meal_lite.book.tables",
    "table": "meal_lite.book.tables",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
