"""The committed full runs the book is built around, shipped inside the package.

The chapters show the results of commands too long for a page (``meal-lite demo``, ``meal-lite
dark-knowledge``, ``bench/cache_accuracy.py``, ``bench/evidence_search.py``). Those results live here, in
``meal_lite/experiments/results/`` as package data, so that a reader with nothing but the installed wheel
(Colab, a notebook outside a checkout) sees the same page as a reader of the repository. Each file is
the command's own output, with the command, date and hardware it records; the writers in ``bench/``
write these files when they are run again, and the two commands' ``results.json`` is copied here as
``demo.json`` / ``dark_knowledge.json``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from meal_lite.errors import ConfigError

__all__ = ["committed_result"]


def _known() -> list[str]:
    """The names of the committed results: the ``*.json`` files in the package's ``results`` folder."""
    folder = files("meal_lite.experiments") / "results"
    return sorted(entry.name[: -len(".json")] for entry in folder.iterdir() if entry.name.endswith(".json"))


def committed_result(name: str) -> Any:
    """The committed result ``name`` (``"demo"``, ``"dark_knowledge"``, ``"cache_accuracy"``,
    ``"evidence_search"``), loaded from the package's JSON file as its command wrote it."""
    known = _known()
    if name not in known:
        raise ConfigError(f"there is no committed result named {name!r}; use one of {', '.join(known)}.")
    return json.loads((files("meal_lite.experiments") / "results" / f"{name}.json").read_text(encoding="utf-8"))
