"""Smaller copies of a dataset: every n-th image, or the first images of each class.

A run sized for two CPU cores or a free Colab GPU trains on part of ImageNette, not all of it
(``data.train_per_class``), and keeps part of ImageNette's validation folder for choosing settings and
another part for the final test (``data.val_per_class``, ``data.test_per_class``). The copies are of the dataset's own class with its
per-image lists cut (the digits' ``images``, ``targets`` and ``indices``; an image folder's ``samples``,
``imgs`` and ``targets``), so everything that reads a dataset (the soft-label cache's crops and
fingerprint, ``raw_image``) reads a copy as it reads the whole split.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch

from meal_lite.errors import ConfigError

__all__ = ["select", "every_nth", "per_class", "split_per_class"]

_LISTS = ("images", "indices", "samples", "_samples", "imgs", "targets")


def select(dataset: Any, indices: Sequence[int]) -> Any:
    """A copy of a meal-lite dataset (digits, ImageNette, ImageNet, a folder) holding the images ``indices``."""
    indices = [int(i) for i in indices]
    subset = copy.copy(dataset)
    cut = []
    for name in _LISTS:
        value = getattr(dataset, "__dict__", {}).get(name)  # own lists (ImageNette derives targets from _samples)
        if value is not None:
            setattr(subset, name, value[torch.tensor(indices, dtype=torch.long)].contiguous()
                    if isinstance(value, torch.Tensor) else [value[i] for i in indices])
            cut.append(name)
    if not cut or len(subset) != len(indices):
        raise ConfigError(f"Cannot cut a {type(dataset).__name__}; give a meal-lite dataset (digits, ImageNette, ImageNet or a folder).")
    return subset


def every_nth(dataset: Any, every: int) -> Any:
    """A copy of a meal-lite dataset that keeps every ``every``-th image (1 keeps them all)."""
    if int(every) < 1:
        raise ConfigError(f"every={every} must be a whole number >= 1 (1 keeps every image).")
    return select(dataset, range(0, len(dataset), int(every)))


def _labels(dataset: Any) -> list[int]:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ConfigError(f"Cannot cut a {type(dataset).__name__} by class; give a meal-lite dataset (it has targets).")
    return [int(t) for t in targets]


def per_class(dataset: Any, count: int, name: str = "count") -> Any:
    """A copy keeping the first ``count`` images of each class, in the dataset's order (all of a smaller class)."""
    if int(count) < 1:
        raise ConfigError(f"{name}={count} must be a whole number >= 1 (or unset, to keep every image).")
    seen: dict[int, int] = {}
    keep = []
    for i, label in enumerate(_labels(dataset)):
        if seen.get(label, 0) < int(count):
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    return select(dataset, keep)


def split_per_class(dataset: Any, count: int, rest: int | None = None, name: str = "count") -> tuple[Any, Any]:
    """Two disjoint copies: the first ``count`` images of each class (at most half of the class, so the
    second keeps some of every class), and the next ``rest`` images of each class (None: all the others)."""
    for value, what in ((count, name), (rest, f"the second part of {name}")):
        if value is not None and int(value) < 1:
            raise ConfigError(f"{what}={value} must be a whole number >= 1 (or unset, to keep every image).")
    labels = _labels(dataset)
    sizes: dict[int, int] = {}
    for label in labels:
        sizes[label] = sizes.get(label, 0) + 1
    if min(sizes.values(), default=0) < 2:
        raise ConfigError(f"{name} splits each class in two, but a class here has a single image; give every class at least two.")
    seen: dict[int, int] = {}
    first, second = [], []
    for i, label in enumerate(labels):
        n = seen[label] = seen.get(label, 0) + 1
        head = min(int(count), sizes[label] // 2)
        if n <= head:
            first.append(i)
        elif rest is None or n <= head + int(rest):
            second.append(i)
    return select(dataset, first), select(dataset, second)
