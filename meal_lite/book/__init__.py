"""The book's helpers: one-call chapter setup.

- :mod:`~meal_lite.book.chapter` -- the profile, configuration, data and teachers of a chapter.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "setup": "meal_lite.book.chapter",
    "show_config": "meal_lite.book.chapter",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
