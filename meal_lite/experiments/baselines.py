"""The protocol's shared baseline, trained once and kept in the cache folder beside the offline teachers.

MEAL V2 starts from a student's pretrained weights: on ImageNet a timm model the hub serves, downloaded
once and cached. The book's protocol makes its own starting point, a student trained on labels by a fixed
recipe (``run_config(objective="ce", ...)``, seeded, one thread on a CPU), so the same recipe gives the
same weights bit for bit. Chapters, ``meal-lite demo`` and the tests that use the same recipe therefore
share one training of it, the way they share the digits teachers: the weights and the validation curve go
to ``<cache>/baseline-<student>-<key>.pt``, where the key hashes every setting that shaped them (the
whole run configuration except where it writes and how it reports). Change a setting and the key changes.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from meal_lite.checkpoint import load_checkpoint, save_checkpoint
from meal_lite.config.schema import Config, config_to_dict
from meal_lite.training.digits_teachers import default_cache_dir

__all__ = ["BASELINE_VERSION", "baseline_path", "load_cached_baseline", "save_baseline", "stored_or_trained"]

#: Raise when the way a baseline is trained changes without a configuration key saying so.
BASELINE_VERSION = 1
#: Settings that change where a run writes, how it reports and which process decodes its images, never its
#: weights (a loader's batches depend on its seed and epoch only, however many workers load them).
_NOT_IN_KEY = {"train": ("out", "progress", "log_every"), "data": ("num_workers",)}
#: Settings added after the first baselines were cached: left out of the key while unset (None), so a
#: baseline trained before they existed keeps its name; set, they are in the key like any other.
_UNSET_NOT_IN_KEY = {"data": ("train_per_class", "val_per_class", "test_per_class"), "": ("teacher_image_size",)}


def baseline_path(cfg: Config, device: torch.device | str, cache_dir: str | Path | None = None) -> Path:
    """The cache file of the baseline that ``cfg`` (a ``ce`` run configuration) trains on ``device``'s kind
    (a CPU and a GPU give different weights); it may not exist yet."""
    settings = config_to_dict(cfg)
    for section, keys in _NOT_IN_KEY.items():
        for key in keys:
            settings[section].pop(key, None)
    for section, keys in _UNSET_NOT_IN_KEY.items():
        for key in keys:
            where = settings[section] if section else settings
            if where.get(key, 0) is None:
                del where[key]
    payload = {"config": settings, "device": torch.device(device).type, "version": BASELINE_VERSION}
    key = hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"baseline-{cfg.student.name}-{key}.pt"


def load_cached_baseline(path: Path | None) -> tuple[dict[str, torch.Tensor], list[dict]] | None:
    """``(weights, history)`` stored at ``path`` by :func:`save_baseline`, or None when there is none."""
    if path is None or not path.is_file():
        return None
    stored = load_checkpoint(path)
    return stored["model"], stored["history"]


def save_baseline(path: Path, state: Mapping[str, torch.Tensor], history: list[dict[str, Any]]) -> Path:
    """Store a freshly trained baseline atomically, where :func:`load_cached_baseline` finds it."""
    return save_checkpoint({"model": dict(state), "history": history}, path)


def stored_or_trained(
    path: Path | None, train: Callable[[], tuple[nn.Module, list[dict]]]
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The baseline stored at ``path``; else ``train()``'s, stored there (``path`` None: train, store nothing)."""
    stored = load_cached_baseline(path)
    if stored is None:
        model, history = train()
        stored = (copy.deepcopy(model.state_dict()), history)
        if path is not None:
            save_baseline(path, *stored)
    return stored
