"""Where model weights come from: local files, URLs and the timm hub, failing fast without a network.

Three sources, one rule each:

- a local file (``.pth``/``.pt``/``.bin``/``.safetensors``): read with ``weights_only=True`` (no code
  runs when a file is opened), nested state dicts (``state_dict``, ``model``, ``student``) unwrapped
  and DataParallel's ``module.`` prefix - present in the released MEAL V2 checkpoints - removed;
- a URL: ``torch.hub.load_state_dict_from_url`` (cached under the torch hub folder);
- the hub (``pretrained=True``): timm's own download, but first the local Hugging Face / torch hub
  cache, and when the weights are not there a check, in well under a second, that the network is
  there at all (``HF_HUB_OFFLINE`` or a short TCP probe of the endpoint the download will use, a
  mirror's included). Without it timm retries for about 46 s before failing with a message that does
  not name the model. Cached weights that fail to load are removed from the cache
  (:func:`forget_cached_weights`), so that the next run downloads them again.

The network probe is :mod:`meal_lite.network`'s, the one the datasets use too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

import huggingface_hub
import torch
from huggingface_hub import constants as hf_constants
from timm.models import get_pretrained_cfg

from meal_lite.checkpoint import extract_state_dict
from meal_lite.network import OFFLINE_HINT, is_url, offline_mode, url_reachable
from meal_lite.errors import CheckpointError, ModelError, first_line

__all__ = [
    "read_state_dict",
    "weights_hint",
    "hub_overlay",
    "file_overlay",
    "key_report",
    "drop_overlay_state",
    "forget_cached_weights",
]

# --------------------------------------------------------------------------------------------------
# Reading weights


def read_state_dict(location: str | os.PathLike, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Model weights from a local file (``.pth``/``.pt``/``.bin``/``.safetensors``) or an http(s) URL.

    Always ``weights_only=True``. Accepts a raw state dict or one nested under ``state_dict``,
    ``model`` or ``student`` (meal-lite's own checkpoints), and strips the ``module.`` prefix.
    Raises :class:`ModelError` (missing file, unreachable URL, unreadable or unsafe file).
    """
    location = str(location)
    obj = _load_url(location) if is_url(location) else _load_file(Path(location).expanduser(), mmap)
    try:
        return extract_state_dict(obj)
    except CheckpointError as exc:
        raise ModelError(str(exc).replace("in the checkpoint", f"in '{location}'")) from None


def _load_file(path: Path, mmap: bool) -> Any:
    if not path.is_file():
        raise ModelError(f"Weights file '{path}' does not exist; check the path (or give an http(s) URL).")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # optional: only needed for .safetensors files

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelError(f"Weights file '{path}' is not a readable safetensors file ({first_line(exc)}).") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as exc:
        if mmap and "mmap" in str(exc).lower():  # legacy (non-zip) format cannot be memory-mapped
            return _load_file(path, mmap=False)
        raise ModelError(
            f"Weights file '{path}' cannot be read safely ({first_line(exc)}); it must be a PyTorch state dict."
        ) from None
    except Exception as exc:
        raise ModelError(
            f"Weights file '{path}' cannot be read safely ({first_line(exc)}); it must be a PyTorch "
            f"state dict (.pth/.pt) or a .safetensors file, saved without pickled code."
        ) from None


def _hub_cache_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _load_url(url: str) -> Any:
    """``torch.hub.load_state_dict_from_url`` with a fast, clear failure when there is no network."""
    if not _hub_cache_file(url).is_file():
        host = urlparse(url).hostname or url
        if offline_mode() or not url_reachable(url):
            why = "HF_HUB_OFFLINE is set" if offline_mode() else f"{host} cannot be reached"
            raise ModelError(
                f"Cannot download weights from {url} because {why}; download the file elsewhere and give its "
                f"local path instead."
            )
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, check_hash=False, progress=False)
    except Exception as exc:
        raise ModelError(f"Cannot load weights from {url} ({first_line(exc)}); check the address or give a local file.") from None


def _timm_can_read(path: Path) -> bool:
    """Whether timm's file loader finds the weights itself (raw state dict, or under state_dict/model)."""
    if path.suffix == ".safetensors":
        return True
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return True
    return isinstance(obj, Mapping) and any(k in obj for k in ("state_dict", "model"))


# --------------------------------------------------------------------------------------------------
# What a checkpoint says about the model it was saved from


def _pretrained_cfg(name: str) -> Any:
    """timm's pretrained cfg of ``name`` (its default tag if none is given), or None."""
    try:
        return get_pretrained_cfg(name)
    except RuntimeError:
        return None


def _as_names(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _checkpoint_num_classes(name: str, state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Number of classes the checkpoint's classifier predicts (None if it has no known classifier)."""
    for clf in _as_names(getattr(_pretrained_cfg(name), "classifier", None)):
        w = state_dict.get(f"{clf}.weight")
        if isinstance(w, torch.Tensor) and w.dim() >= 1:
            return int(w.shape[0])
    return None


def _checkpoint_in_chans(name: str, state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Input channels of the checkpoint's first convolution (None if timm does not name it)."""
    for conv in _as_names(getattr(_pretrained_cfg(name), "first_conv", None)):
        w = state_dict.get(f"{conv}.weight")
        if isinstance(w, torch.Tensor) and w.dim() == 4:
            return int(w.shape[1])
    return None


def file_overlay(name: str, location: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``pretrained_cfg_overlay`` that makes timm load ``name`` from a file or URL, and its weights.

    timm reads a plain local file itself (``file=``: its own checkpoint filters and classifier/first-conv
    adaptation apply); a URL or a meal-lite checkpoint (weights nested under ``student``) is handed over
    as ``state_dict=``. The overlay also carries the file's class count and input channels, so a
    10-class, 1-channel digits model loads as one instead of being rejected as inconsistent.
    """
    location = str(location)
    state_dict = read_state_dict(location, mmap=True)
    path = Path(location).expanduser()
    overlay: dict[str, Any]
    overlay = {"file": str(path)} if not is_url(location) and _timm_can_read(path) else {"state_dict": state_dict}
    classes = _checkpoint_num_classes(name, state_dict)
    if classes is not None:
        overlay["num_classes"] = classes
    chans = _checkpoint_in_chans(name, state_dict)
    size = getattr(_pretrained_cfg(name), "input_size", None)
    if chans is not None and size and chans != size[0]:
        overlay["input_size"] = (chans, *tuple(size)[1:])
    return overlay, state_dict


def key_report(state_dict: Mapping[str, torch.Tensor], build: Callable[[], torch.nn.Module]) -> str:
    """'N missing, M unexpected and K mismatched keys (e.g. ...)' between a checkpoint and a fresh model."""
    try:
        reference = build().state_dict()
    except Exception:
        return "its keys do not match"
    missing = [k for k in reference if k not in state_dict]
    unexpected = [k for k in state_dict if k not in reference]
    mismatched = [k for k in reference if k in state_dict and tuple(reference[k].shape) != tuple(state_dict[k].shape)]
    example = (missing + unexpected + mismatched)[:2]
    return (
        f"{len(missing)} missing, {len(unexpected)} unexpected and {len(mismatched)} mismatched keys"
        + (f", e.g. {', '.join(example)}" if example else "")
    )


def drop_overlay_state(model: torch.nn.Module) -> None:
    """Forget a state dict passed through the pretrained cfg (it would keep a second copy alive)."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)


# --------------------------------------------------------------------------------------------------
# The hub


def weights_hint(role: str | None) -> str:
    """How to give a local file instead, naming the config key of ``role`` (student / teacher)."""
    key = {"student": "student.weights", "teacher": "teachers[i].weights"}.get(role or "", "weights")
    return f"give a local weights file instead ({key}=/path/to/file.pth)"


def hub_overlay(name: str, role: str | None) -> dict[str, Any] | None:
    """Where timm should take ``name``'s pretrained weights from, failing fast without a network.

    Returns ``{"file": path}`` when the weights are already in the Hugging Face or torch hub cache (so
    timm reads them without touching the network), ``None`` when timm may download them, and raises
    :class:`ModelError` when they are not cached and the network is off or unreachable.
    """
    cfg = _pretrained_cfg(name)
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if cfg is None or not (hf_id or url or getattr(cfg, "file", None)):
        raise ModelError(
            f"timm has no pretrained weights for '{name}'; set pretrained=false or {weights_hint(role)} "
            f"(timm.list_pretrained() lists models with weights)."
        )
    if getattr(cfg, "file", None):
        return None
    cached, source = _hub_cached_file(cfg, hf_id, url)
    if cached is not None:
        return {"file": cached}
    if offline_mode():
        raise ModelError(
            f"Pretrained weights for '{name}' are not in the local cache and HF_HUB_OFFLINE is set; unset it "
            f"and connect once to download them, or {weights_hint(role)}, {OFFLINE_HINT}."
        )
    source = source or hf_constants.ENDPOINT
    if not url_reachable(source):
        raise ModelError(
            f"Pretrained weights for '{name}' are not in the local cache and {source} cannot be reached (no "
            f"network?); connect once to download them, or {weights_hint(role)}, {OFFLINE_HINT}."
        )
    return None


def _hub_cached_file(cfg: Any, hf_id: str | None, url: str | None) -> tuple[str | None, str | None]:
    """(path of the cached weights or None, the URL a download would use: the hub's endpoint or the file's URL).

    The endpoint is huggingface_hub's own (``HF_ENDPOINT`` as it read it when imported), the one
    ``hf_hub_download`` will use.
    """
    if hf_id:
        repo, _, revision = hf_id.partition("@")
        names = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            # Looked up on the module at call time, so tests can stand in for the cache.
            found = huggingface_hub.try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return found, None
        return None, hf_constants.ENDPOINT
    if not url:
        return None, None
    cached = _hub_cache_file(url)
    return (str(cached) if cached.is_file() else None), url


def forget_cached_weights(name: str) -> bool:
    """Remove ``name``'s pretrained weights from the local caches (they failed to load); True if any were there.

    A file the hub served broken would otherwise be found in the cache and fail again on every run. A hub
    file goes with its cached revision (huggingface_hub's own cache deletion); a URL's file is deleted.
    """
    cfg = _pretrained_cfg(name)
    if cfg is None:
        return False
    hf_id = getattr(cfg, "hf_hub_id", None)
    cached, _ = _hub_cached_file(cfg, hf_id, getattr(cfg, "url", None))
    if cached is None:
        return False
    path = Path(cached)
    if not hf_id:
        path.unlink(missing_ok=True)
        return True
    # <cache>/models--<org>--<name>/snapshots/<commit>/<file>
    cache_dir, commit = path.parents[3], path.parent.name
    try:
        huggingface_hub.scan_cache_dir(cache_dir).delete_revisions(commit).execute()
    except Exception:  # an unusual cache layout: remove the file itself
        path.unlink(missing_ok=True)
    return True
