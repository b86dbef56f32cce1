"""The book's one table helper: rows of values to a Markdown table a notebook displays.

Chapters show results as tables; building each one from f-strings in a cell repeats the same
pipes, separators and number formats in every chapter and hides what the table says. :func:`table`
takes the rows (mappings or sequences), the columns (key -> header) and per-column formats, and
returns a :class:`Table`: IPython displays it as Markdown (the book renders it as an HTML table),
``str()`` gives the Markdown text. Numbers are right-aligned, text left-aligned.
"""

from __future__ import annotations

from numbers import Number
from typing import Any, Callable, Mapping, Sequence

from meal_lite.errors import ConfigError

__all__ = ["Table", "table"]

Format = str | Callable[[Any], str]


class Table:
    """A Markdown table (``.markdown``) that IPython displays as such; ``str()`` is the Markdown."""

    def __init__(self, markdown: str):
        self.markdown = markdown

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        return self.markdown


def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _cell(value: Any, fmt: Format | None) -> str:
    if callable(fmt):
        text = fmt(value)
    elif fmt is not None and value is not None and value != "":
        text = format(value, fmt)
    else:
        text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(
    rows: Sequence[Mapping[str, Any] | Sequence[Any]],
    columns: Mapping[str, str] | Sequence[str] | None = None,
    formats: Mapping[str, Format] | None = None,
) -> Table:
    """A Markdown table of ``rows``.

    ``rows`` are mappings (a missing key is an empty cell) or sequences in the order of ``columns``.
    ``columns`` maps each key to its header (a sequence: the keys are the headers); default: the first
    row's keys. ``formats`` maps a key to a format spec (``".2f"``, ``"+.1f"``) or a function of the
    value; other values are shown with ``str``. A column whose values are all numbers is right-aligned.
    """
    if columns is None:
        if not rows or not isinstance(rows[0], Mapping):
            raise ConfigError("table() needs columns= when the rows are not mappings (or there are no rows).")
        columns = list(rows[0])
    headers = dict(columns) if isinstance(columns, Mapping) else {key: key for key in columns}
    keys = list(headers)
    formats = dict(formats or {})
    unknown = sorted(set(formats) - set(keys))
    if unknown:
        raise ConfigError(f"table() got formats for {unknown}, which are not among its columns {keys}.")
    values = []
    for row in rows:
        if isinstance(row, Mapping):
            values.append([row.get(key) for key in keys])
        elif len(row) != len(keys):
            raise ConfigError(f"a table row has {len(row)} values for {len(keys)} columns ({keys}): give one per column.")
        else:
            values.append(list(row))
    numeric = [
        any(_is_number(r[i]) for r in values) and all(_is_number(r[i]) or r[i] in (None, "") for r in values)
        for i in range(len(keys))
    ]
    lines = [
        "| " + " | ".join(_cell(headers[key], None) for key in keys) + " |",
        "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
    ]
    for row in values:
        lines.append("| " + " | ".join(_cell(v, formats.get(key)) for key, v in zip(keys, row)) + " |")
    return Table("\n".join(lines))
