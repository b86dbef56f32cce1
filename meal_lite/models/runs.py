"""What a training run leaves behind, read as a model: its configuration and its student's weights.

``meal-lite train`` writes ``<train.out>/last.pt``: the student's weights next to the whole run
configuration (and the optimiser, scheduler and random states that resume needs). Three things read
such a file as a *model*: a teacher given by path (``teachers: [{name: resnet18, weights:
runs/t1/last.pt}]``, whose preprocessing is the one its run trained with, not its architecture's
ImageNet default), ``meal-lite export`` and ``meal-lite predict``. The file is loaded with
``weights_only=True`` like every checkpoint (:func:`meal_lite.checkpoint.load_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from meal_lite.checkpoint import extract_state_dict, load_checkpoint
from meal_lite.config.schema import Config, config_from_dict
from meal_lite.errors import CheckpointError, MealLiteError
from meal_lite.network import is_url

__all__ = ["RUN_CHECKPOINT_KEYS", "is_run_checkpoint", "run_checkpoint_config", "read_run_checkpoint"]

#: The keys that make a checkpoint a meal-lite training run's (as :class:`meal_lite.training.trainer.Trainer` writes it).
RUN_CHECKPOINT_KEYS = ("config", "student")


def is_run_checkpoint(obj: Any) -> bool:
    """Whether a loaded checkpoint is a meal-lite training run's (the run's config and its student's weights)."""
    return isinstance(obj, Mapping) and all(key in obj for key in RUN_CHECKPOINT_KEYS) and isinstance(obj["config"], Mapping)


def _config_of(obj: Mapping[str, Any], source: str) -> Config:
    try:
        return config_from_dict(dict(obj["config"]))
    except MealLiteError as exc:
        raise CheckpointError(
            f"{source} holds a run configuration this meal-lite cannot read ({' '.join(str(exc).split())}); train it again with this version"
        ) from None


def run_checkpoint_config(location: str | os.PathLike) -> Config | None:
    """The configuration stored in the training checkpoint at ``location``; None for plain weights, a URL or no file.

    Only the configuration is used: the file is memory-mapped, so its tensors are not read.
    """
    path = Path(str(location)).expanduser()
    if is_url(str(location)) or not path.is_file() or path.suffix == ".safetensors":
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, or unreadable: the weights reader says why, in its own words
        return None
    return _config_of(obj, f"Checkpoint '{path}'") if is_run_checkpoint(obj) else None


def read_run_checkpoint(path: str | os.PathLike) -> tuple[Config, dict[str, torch.Tensor]]:
    """``(run configuration, student weights)`` of the training checkpoint ``path``.

    Raises :class:`CheckpointError` (one sentence) when the file is missing, unreadable, or not a
    meal-lite training checkpoint (e.g. ``best.pt``, which holds the weights only, or a plain state dict).
    """
    obj = load_checkpoint(path)
    if not is_run_checkpoint(obj):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"'{path}' is not a meal-lite training checkpoint (it holds {keys}, not the run's config and student); "
            f"give the last.pt that meal-lite train wrote."
        )
    return _config_of(obj, f"Checkpoint '{path}'"), extract_state_dict({"student": obj["student"]})

