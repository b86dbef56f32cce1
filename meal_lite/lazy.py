"""Lazy public names for a package's ``__init__``: ``from meal_lite import Trainer`` without importing everything.

A package's ``__init__`` lists ``{public name: module that defines it}``; the module is imported the
first time the name is asked for (PEP 562's module ``__getattr__``). So ``import meal_lite`` stays
instant (the command line's start-up does not pay for torch and timm before it needs them), every
public name has exactly one home, and ``__all__`` is the documented API that chapters import from.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that resolve each name in ``exports`` from its module on first use."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
