"""Checkpoints: atomic writes, safe loads, and the state-dict shapes found in the wild.

A run killed while it writes ``last.pt`` must never lose the previous checkpoint, so
:func:`save_checkpoint` writes a temporary file next to the target, flushes it to disk and only then
renames it over the target (``os.replace`` is atomic on one file system). :func:`load_checkpoint`
uses ``torch.load(weights_only=True)``, which refuses to run pickled code from a file; everything the
trainer stores is therefore tensors, numbers, strings, lists and dicts -- including the random number
generator states (:func:`get_rng_state` / :func:`set_rng_state`).

Published MEAL V2 weights carry DataParallel's ``module.`` prefix and may be wrapped in a dict;
:func:`extract_state_dict` and :func:`strip_module_prefix` accept all of those forms.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from meal_lite.errors import CheckpointError
from meal_lite.files import atomic_write

__all__ = [
    "STATE_DICT_KEYS",
    "save_checkpoint",
    "load_checkpoint",
    "strip_module_prefix",
    "extract_state_dict",
    "get_rng_state",
    "set_rng_state",
    "scheduler_state_to_safe",
    "scheduler_state_from_safe",
]

STATE_DICT_KEYS = ("state_dict", "model", "student")


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    If anything fails midway the temp file is removed and the previous file at ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: torch.save(dict(state), handle))


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)``; missing or unreadable -> CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist; check the path (training writes <out>/last.pt).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, wrong format...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Checkpoint '{path}' cannot be read safely ({reason[:160]}); it is corrupt, truncated or not a "
            f"plain PyTorch state file."
        ) from None


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` prefix that DataParallel / DistributedDataParallel add to every key."""
    prefix = "module."
    if state_dict and all(str(k).startswith(prefix) for k in state_dict):
        return {str(k)[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _looks_like_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The model weights in ``obj``: a raw state dict or ``{"state_dict"|"model"|"student": ...}``.

    The ``module.`` prefix is removed. Anything else raises CheckpointError.
    """
    if _looks_like_state_dict(obj):
        return strip_module_prefix(obj)
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and _looks_like_state_dict(obj[key]):
                return strip_module_prefix(obj[key])
    keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"No model weights found in the checkpoint (top level: {keys}); expected a state dict or a dict "
        f"with one of the keys {', '.join(STATE_DICT_KEYS)}."
    )


# --------------------------------------------------------------------------------------------------
# RNG states in weights_only-safe form


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if present) CUDA RNG states as tensors / lists / numbers."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only when CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


# --------------------------------------------------------------------------------------------------
# LR scheduler state: MultiStepLR keeps its milestones in a collections.Counter


def scheduler_state_to_safe(state: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of a scheduler state dict with Counters turned into plain dicts (weights_only-safe)."""
    return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in state.items()}


def scheduler_state_from_safe(state: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`scheduler_state_to_safe` for MultiStepLR (milestones back to a Counter)."""
    state = dict(state)
    if isinstance(state.get("milestones"), dict):
        state["milestones"] = Counter({int(k): int(v) for k, v in state["milestones"].items()})
    return state
