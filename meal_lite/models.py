"""Students and teachers by timm name: weights from the hub or a local file/URL, class subsets, presets.

Every model in meal-lite is a timm model created by name (``resnet50``, ``senet154.gluon_in1k``...).
Weights come from one of three places:

- the hub (``pretrained=True``): timm's own download, but we first look in the local Hugging Face /
  torch hub cache and, if the weights are not there, check in well under a second that the network is
  there at all (``HF_HUB_OFFLINE`` or a short TCP probe). Without that check timm retries for about
  46 s before failing with a message that does not name the model;
- a local file (``weights=/path/to/file.pth`` or ``.safetensors``): handed to timm through
  ``pretrained_cfg_overlay=dict(file=...)``, so timm's own adaptation (classifier reset when the class
  count differs, first-conv channel adaptation, checkpoint filters) applies;
- a URL (``weights=https://...``): ``torch.hub.load_state_dict_from_url`` (cached under the torch hub
  folder), then the same timm path via ``pretrained_cfg_overlay=dict(state_dict=...)``.

Checkpoints are always read with ``weights_only=True`` (no code runs when a file is opened), and the
``module.`` prefix DataParallel adds to every key - present in the released MEAL V2 checkpoints - is
removed.

ImageNet-pretrained teachers teach ImageNette students without any fine-tuning: ImageNette's ten classes
are ImageNet classes, so :class:`ClassSubset` keeps the ten matching logits (indices from
:data:`meal_lite.data.IMAGENETTE_IMAGENET_INDICES`, in ImageNette's class order). Each teacher keeps its
own preprocessing (mean/std/resolution from its ``pretrained_cfg``); :func:`create_teachers` builds an
:class:`meal_lite.ensemble.InputAdapter` per teacher from the data's config to the teacher's.
"""

from __future__ import annotations

import difflib
import functools
import os
import socket
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import torch
from torch import nn

from .data import IMAGENETTE_IMAGENET_INDICES, data_config_for, dataset_num_classes
from .errors import CheckpointError, ConfigError, ModelError

__all__ = [
    "TEACHER_PRESETS",
    "SPECIAL_PRESETS",
    "ClassSubset",
    "create_model",
    "load_weights",
    "read_state_dict",
    "model_data_config",
    "adapt_to_dataset",
    "create_teacher",
    "teacher_specs",
    "create_student",
    "create_teachers",
]

# --------------------------------------------------------------------------------------------------
# Teacher presets
#
# paper-224 and paper-380 are the MEAL V2 paper's pairs under today's timm names.
#
# imagenette-small must run on a free Colab T4 (16 GB, ~65 TFLOPS fp16) next to a student, so it is
# chosen for ImageNet accuracy per unit of cost. Figures: ImageNet-1k top-1 from timm's
# results/results-imagenet.csv (measured at the resolution in brackets); parameters and GMACs per
# image at the model's own input size (the size its InputAdapter resizes to), counted here with
# torch.utils.flop_counter:
#
#   teacher                          top-1 (eval px)  params   GMACs  input
#   convnext_tiny.in12k_ft_in1k      84.45 (288)      28.6 M    4.5    224  (ImageNet-12k pretraining)
#   tf_efficientnet_b3.ns_jft_in1k   84.06 (300)      12.2 M    1.8    300  (Noisy Student, JFT)
#   -- for comparison --
#   senet154.gluon_in1k (paper)      81.23 (224)     115.1 M   20.7    224
#   resnet152s.gluon_in1k (paper)    81.00 (224)      60.3 M   12.9    224
#   regnety_032.ra_in1k              82.73 (288)      19.4 M    3.2    224
#   efficientnet_b3.ra2_in1k         82.24 (320)      12.2 M    1.6    288
#   resnet50.a1_in1k                 81.21 (288)      25.6 M    4.1    224
#
# The chosen pair is ~3 points more accurate than the paper's pair at ~1/5 of its cost (6.3 vs 33.6
# GMACs per image, 41 M vs 175 M parameters, ~80 MB of fp16 weights), and it mixes two architecture
# families (a ConvNeXt and an EfficientNet, pretrained on different extra data), which is what makes
# an ensemble better than its members. Two teachers, like the paper. On the 160 px ImageNette release
# the teachers see upsampled crops, so they score below their ImageNet numbers; 320px helps them.
TEACHER_PRESETS: dict[str, tuple[str, ...]] = {
    "imagenette-small": ("convnext_tiny.in12k_ft_in1k", "tf_efficientnet_b3.ns_jft_in1k"),
    "paper-224": ("senet154.gluon_in1k", "resnet152s.gluon_in1k"),
    "paper-380": ("tf_efficientnet_b4.ns_jft_in1k", "tf_efficientnet_b4.aa_in1k"),
}
#: Presets that are not lists of timm names: "digits" = the offline profile's locally trained teachers
#: (built by :func:`meal_lite.offline.digits_teachers`).
SPECIAL_PRESETS = ("digits",)

_IMAGENET_CLASSES = 1000
_PROBE_TIMEOUT_S = float(os.environ.get("MEAL_LITE_PROBE_TIMEOUT", "3"))


# --------------------------------------------------------------------------------------------------
# Class subset


class ClassSubset(nn.Module):
    """Wrap a model and keep only some of its logits, in the given order.

    ``ClassSubset(imagenet_model, IMAGENETTE_IMAGENET_INDICES)`` is a 10-class ImageNette classifier
    whose logit ``i`` is the ImageNet logit of ImageNette class ``i``. Softmax over the kept logits
    renormalises the probability over the ten classes, which is what a 10-class student learns from.
    The wrapper exposes ``num_classes`` (the number of kept logits) and the inner model's
    ``pretrained_cfg``, so timm's ``resolve_model_data_config`` still finds the teacher's preprocessing.
    """

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        indices = [int(i) for i in indices]
        if not indices:
            raise ModelError("ClassSubset needs at least one class index to keep.")
        inner = getattr(model, "num_classes", None)
        if isinstance(inner, int) and (max(indices) >= inner or min(indices) < 0):
            raise ModelError(
                f"ClassSubset indices must lie in [0, {inner}) for a model with {inner} outputs, got "
                f"{min(indices)}..{max(indices)}."
            )
        self.model = model
        # Derived constant, not learned state: not saved in state_dict, but moved by .to(device).
        self.register_buffer("indices", torch.tensor(indices, dtype=torch.long), persistent=False)
        self.num_classes = len(indices)
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        self.pretrained_cfg = cfg
        self.default_cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.indices)

    def extra_repr(self) -> str:
        return f"indices={self.indices.tolist()}"


# --------------------------------------------------------------------------------------------------
# Names


def _split_name(name: str) -> tuple[str, str]:
    arch, _, tag = name.partition(".")
    return arch, tag


@functools.lru_cache(maxsize=1)
def _all_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models()) + tuple(timm.list_pretrained())


def _check_name(name: str) -> None:
    """Raise ModelError (with close suggestions) unless ``name`` is a timm architecture[.tag]."""
    import timm
    from timm.models import get_pretrained_cfg

    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"A model name must be a non-empty timm name such as resnet50, got {name!r}.")
    arch, tag = _split_name(name)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(name, _all_names(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"Unknown timm model '{name}'{hint}; timm.list_models() lists every valid name.")
    if tag:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            tags = timm.list_pretrained(f"{arch}.*")
            close = difflib.get_close_matches(name, tags, n=3, cutoff=0.5) or tags[:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ModelError(
                f"timm model '{arch}' has no weights tagged '{tag}'{hint}; timm.list_pretrained('{arch}.*') "
                f"lists its tags."
            ) from None


# --------------------------------------------------------------------------------------------------
# Weights: files, URLs, hub


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _is_url(location: str) -> bool:
    return urlparse(str(location)).scheme in ("http", "https", "ftp", "s3")


def _offline_mode() -> bool:
    """True when the user said there is no network (HF_HUB_OFFLINE, read now and as huggingface_hub saw it)."""
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    if value.strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # huggingface_hub missing or changed: fall back to the environment only
        return False


def _host_reachable(host: str, port: int = 443, timeout: float | None = None) -> bool:
    """Short TCP probe; behind an HTTP(S) proxy we cannot tell, so assume yes."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S if timeout is None else timeout):
            return True
    except OSError:
        return False


def _weights_hint(role: str | None) -> str:
    key = {"student": "student.weights", "teacher": "teachers[i].weights"}.get(role or "", "weights")
    return f"give a local weights file instead ({key}=/path/to/file.pth)"


def read_state_dict(location: str | os.PathLike, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Model weights from a local file (``.pth``/``.pt``/``.bin``/``.safetensors``) or an http(s) URL.

    Always ``weights_only=True``. Accepts a raw state dict or one nested under ``state_dict``,
    ``model`` or ``student`` (meal-lite's own checkpoints), and strips the ``module.`` prefix.
    Raises :class:`ModelError` (missing file, unreachable URL, unreadable or unsafe file).
    """
    from .checkpoint import extract_state_dict

    location = str(location)
    if _is_url(location):
        obj = _load_url(location)
    else:
        path = Path(location).expanduser()
        if not path.is_file():
            raise ModelError(f"Weights file '{path}' does not exist; check the path (or give an http(s) URL).")
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file

                obj = load_file(str(path), device="cpu")
            except Exception as exc:
                raise ModelError(f"Weights file '{path}' is not a readable safetensors file ({_first_line(exc)}).") from None
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if mmap and "mmap" in str(exc).lower():  # legacy (non-zip) format cannot be memory-mapped
                    return read_state_dict(path, mmap=False)
                raise ModelError(f"Weights file '{path}' cannot be read safely ({_first_line(exc)}); it must be a PyTorch state dict.") from None
            except Exception as exc:
                raise ModelError(
                    f"Weights file '{path}' cannot be read safely ({_first_line(exc)}); it must be a PyTorch "
                    f"state dict (.pth/.pt) or a .safetensors file, saved without pickled code."
                ) from None
    try:
        return extract_state_dict(obj)
    except CheckpointError as exc:
        raise ModelError(str(exc).replace("in the checkpoint", f"in '{location}'")) from None


def _hub_cache_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _load_url(url: str) -> Any:
    """``torch.hub.load_state_dict_from_url`` with a fast, clear failure when there is no network."""
    cached = _hub_cache_file(url)
    if not cached.is_file():
        host = urlparse(url).hostname or url
        if _offline_mode() or not _host_reachable(host, urlparse(url).port or 443):
            why = "HF_HUB_OFFLINE is set" if _offline_mode() else f"{host} cannot be reached"
            raise ModelError(
                f"Cannot download weights from {url} because {why}; download the file elsewhere and give its "
                f"local path instead."
            )
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, check_hash=False, progress=False)
    except Exception as exc:
        raise ModelError(f"Cannot load weights from {url} ({_first_line(exc)}); check the address or give a local file.") from None


def _pretrained_cfg(name: str) -> Any:
    """timm's pretrained cfg of ``name`` (its default tag if none is given), or None."""
    from timm.models import get_pretrained_cfg

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


def _pretrained_input_size(name: str) -> tuple[int, ...] | None:
    size = getattr(_pretrained_cfg(name), "input_size", None)
    return tuple(size) if size else None


def _hub_overlay(name: str, role: str | None) -> dict[str, Any] | None:
    """Where timm should take ``name``'s pretrained weights from, failing fast without a network.

    Returns ``{"file": path}`` when the weights are already in the Hugging Face or torch hub cache (so
    timm reads them without touching the network), ``None`` when timm may download them, and raises
    :class:`ModelError` when they are not cached and the network is off or unreachable.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if cfg is None or not (hf_id or url or getattr(cfg, "file", None)):
        raise ModelError(
            f"timm has no pretrained weights for '{name}'; set pretrained=false or {_weights_hint(role)} "
            f"(timm.list_pretrained() lists models with weights)."
        )
    if getattr(cfg, "file", None):
        return None
    host = None
    if hf_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo, _, revision = hf_id.partition("@")
            filenames = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else ["model.safetensors", "pytorch_model.bin"]
            for filename in filenames:
                found = try_to_load_from_cache(repo, filename, revision=revision or None)
                if isinstance(found, str):
                    return {"file": found}
            host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
        except ImportError:
            hf_id = None
    if not hf_id:
        cached = _hub_cache_file(url)
        if cached.is_file():
            return {"file": str(cached)}
        host = urlparse(url).hostname
    if _offline_mode():
        raise ModelError(
            f"Pretrained weights for '{name}' are not in the local cache and HF_HUB_OFFLINE is set; unset it "
            f"and connect once to download them, or {_weights_hint(role)}."
        )
    if not _host_reachable(host or "huggingface.co"):
        raise ModelError(
            f"Pretrained weights for '{name}' are not in the local cache and {host} cannot be reached (no "
            f"network?); connect once to download them, or {_weights_hint(role)}, or set "
            f"MEAL_LITE_PROFILE=offline to run without a network."
        )
    return None


def _key_report(model_name: str, state_dict: Mapping[str, torch.Tensor], build: Any) -> str:
    """'N missing, M unexpected, K mismatched keys (e.g. ...)' between a checkpoint and a fresh model."""
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


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    in_chans: int | None = None,
    role: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create timm model ``name`` (``arch`` or ``arch.tag``) with weights from the hub, a file or a URL.

    Args:
        name: a timm name; unknown names raise :class:`ModelError` with close suggestions.
        num_classes: output classes; None keeps the weights' class count (1000 for ImageNet weights,
            or whatever the ``weights`` file's classifier has). When it differs from the weights',
            timm re-initialises the classifier.
        pretrained: load timm's pretrained weights (from the local cache if there; fails fast and
            clearly when they must be downloaded and there is no network).
        weights: a local file or http(s) URL with weights; beats ``pretrained``.
        in_chans: input channels (timm adapts a pretrained first convolution).
        role: "student" or "teacher", only to name the right config key in error messages.
        kwargs: passed to ``timm.create_model`` (e.g. ``drop_rate``).
    """
    import timm

    _check_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if in_chans is not None:
        kwargs["in_chans"] = int(in_chans)

    def build(**extra: Any) -> nn.Module:
        return timm.create_model(name, **{**kwargs, **extra})

    if weights:
        location = str(weights)
        state_dict = read_state_dict(location, mmap=True)
        overlay: dict[str, Any]
        ckpt_classes = _checkpoint_num_classes(name, state_dict)
        path = Path(location).expanduser()
        if not _is_url(location) and _timm_can_read(path):
            overlay = {"file": str(path)}  # timm reads it itself (weights_only, strips "module.")
        else:
            overlay = {"state_dict": state_dict}  # URL, or a meal-lite checkpoint nested under "student"
        if ckpt_classes is not None:
            overlay["num_classes"] = ckpt_classes
            if num_classes is None:
                kwargs["num_classes"] = ckpt_classes
        # Tell timm how many input channels the *file* has (e.g. a 1-channel digits model), so it
        # adapts (or keeps) the first convolution instead of rejecting it as inconsistent.
        ckpt_chans, size = _checkpoint_in_chans(name, state_dict), _pretrained_input_size(name)
        if ckpt_chans is not None and size is not None and ckpt_chans != size[0]:
            overlay["input_size"] = (ckpt_chans, *size[1:])
        try:
            model = build(pretrained=True, pretrained_cfg_overlay=overlay)
        except (RuntimeError, KeyError, ValueError) as exc:
            report = _key_report(name, state_dict, lambda: build(pretrained=False))
            raise ModelError(
                f"The weights in '{location}' do not fit timm model '{name}' ({report}); give weights saved "
                f"from this architecture."
            ) from exc
        _drop_overlay_state(model)
        return model

    if pretrained:
        overlay_or_none = _hub_overlay(name, role)
        try:
            if overlay_or_none is None:
                return build(pretrained=True)
            return build(pretrained=True, pretrained_cfg_overlay=overlay_or_none)
        except ModelError:
            raise
        except Exception as exc:  # network dropped mid-download, corrupt cache file, ...
            raise ModelError(
                f"Could not load pretrained weights for '{name}' ({_first_line(exc)}); check the network or "
                f"{_weights_hint(role)}."
            ) from None
    return build(pretrained=False)


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


def _drop_overlay_state(model: nn.Module) -> None:
    """Forget a state dict passed through the pretrained cfg (it would keep a second copy alive)."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)


def load_weights(model: nn.Module, path_or_url: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Load weights from a file or URL into an existing model (``module.`` stripped, weights_only)."""
    state_dict = read_state_dict(path_or_url)
    target = model.model if isinstance(model, ClassSubset) else model
    try:
        target.load_state_dict(state_dict, strict=strict)
    except RuntimeError as exc:
        ref = target.state_dict()
        missing = [k for k in ref if k not in state_dict]
        unexpected = [k for k in state_dict if k not in ref]
        mismatched = [k for k in ref if k in state_dict and ref[k].shape != state_dict[k].shape]
        example = ", ".join((missing + unexpected + mismatched)[:2])
        raise ModelError(
            f"The weights in '{path_or_url}' do not fit {type(target).__name__} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(mismatched)} mismatched keys, e.g. {example}); give weights "
            f"saved from this architecture."
        ) from exc
    return model


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """The model's timm data config (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``...)."""
    import timm.data

    return dict(timm.data.resolve_model_data_config(model))


def _declared_classes(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def adapt_to_dataset(
    model: nn.Module, dataset: str, num_classes: int, *, name: str = "teacher", role: str = "Teacher"
) -> nn.Module:
    """Make ``model`` predict the dataset's classes: as is, or an ImageNet model cut to ImageNette's ten.

    A 1000-class model on ImageNette becomes :class:`ClassSubset` of the ten ImageNette logits; any
    other mismatch between the model's class count and ``num_classes`` raises :class:`ModelError`.
    """
    have = _declared_classes(model)
    if have is None or have == num_classes:
        return model
    if dataset == "imagenette" and have == _IMAGENET_CLASSES and num_classes == len(IMAGENETTE_IMAGENET_INDICES):
        return ClassSubset(model, IMAGENETTE_IMAGENET_INDICES)
    if role == "Teacher":
        raise ModelError(
            f"Teacher '{name}' predicts {have} classes but the student predicts {num_classes} ({dataset}); use "
            f"teachers trained on the same classes (ImageNet teachers are cut to ImageNette's ten automatically)."
        )
    raise ModelError(
        f"{role} '{name}' predicts {have} classes but the {dataset} data has {num_classes}; use weights "
        f"trained on {dataset} (or ImageNet weights on ImageNette, which are cut to its ten classes)."
    )


def create_teacher(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    dataset: str = "imagenette",
    num_classes: int | None = None,
    data_config: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """One frozen-to-be teacher for ``dataset`` and its own data config (from its ``pretrained_cfg``).

    An ImageNet teacher on ImageNette is wrapped in :class:`ClassSubset` (10 logits, ImageNette order).
    Returns ``(model in eval mode, data_config)``; the data config is what the teacher expects (mean,
    std, resolution), used to build its :class:`~meal_lite.ensemble.InputAdapter`. Digits teachers
    are 1-channel models trained on the digits' own normalisation, so their config is the data's
    (``data_config``, default :data:`meal_lite.data.DIGITS_DATA_CONFIG`).
    """
    from .data import DIGITS_DATA_CONFIG

    target = dataset_num_classes(dataset) if num_classes is None else int(num_classes)
    digits = dataset == "digits"
    # A teacher with neither pretrained nor given weights is random: build it with the data's classes
    # directly (useful for smoke tests; a real run always gives weights).
    random_init = not pretrained and weights is None
    model = create_model(
        name,
        num_classes=target if random_init else None,
        pretrained=pretrained,
        weights=weights,
        in_chans=1 if digits else None,
        role="teacher",
    )
    teacher_config = dict(data_config or DIGITS_DATA_CONFIG) if digits else model_data_config(model)
    model = adapt_to_dataset(model, dataset, target, name=name)
    return model.eval(), teacher_config


def teacher_specs(cfg: Any) -> list[Any]:
    """The run's teacher entries: ``cfg.teachers`` if non-empty, else the ``cfg.teacher_preset`` names."""
    from .config import TeacherConfig

    if getattr(cfg, "teachers", None):
        return list(cfg.teachers)
    preset = getattr(cfg, "teacher_preset", None)
    if not preset:
        return []
    if preset in TEACHER_PRESETS:
        return [TeacherConfig(name=n) for n in TEACHER_PRESETS[preset]]
    valid = ", ".join(list(TEACHER_PRESETS) + list(SPECIAL_PRESETS))
    close = difflib.get_close_matches(preset, list(TEACHER_PRESETS) + list(SPECIAL_PRESETS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"Unknown teacher_preset {preset!r}{hint}; use one of {valid}, or list teachers explicitly.")


def create_student(cfg: Any, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The run's student (``cfg.student``) and the data config its images use.

    ``num_classes`` defaults to the dataset's (``student.num_classes`` may repeat it but not differ).
    Digits students get one input channel. The data config is :func:`meal_lite.data.data_config_for`
    of the student's timm config, so passing it to :func:`meal_lite.data.build_datasets` agrees.
    """
    dataset = cfg.data.dataset
    n = dataset_num_classes(dataset) if num_classes is None else int(num_classes)
    wanted = getattr(cfg.student, "num_classes", None)
    if wanted is not None and int(wanted) != n:
        raise ConfigError(
            f"student.num_classes={wanted} but the {dataset} data has {n} classes; remove student.num_classes "
            f"or set it to {n}."
        )
    model = create_model(
        cfg.student.name,
        num_classes=n,
        pretrained=bool(cfg.student.pretrained),
        weights=cfg.student.weights,
        in_chans=1 if dataset == "digits" else None,
        role="student",
    )
    return model, data_config_for(cfg.data, model_data_config(model))


def create_teachers(cfg: Any, num_classes: int | None = None, data_config: Mapping[str, Any] | None = None):
    """The run's frozen teacher ensemble, each teacher with its own input adapter.

    Teachers come from ``cfg.teachers`` or ``cfg.teacher_preset`` (``"digits"`` delegates to
    :func:`meal_lite.offline.digits_teachers`). ``data_config`` is the config the batches are
    normalised with (from :func:`create_student`); each teacher gets an
    :class:`~meal_lite.ensemble.InputAdapter` from it to the teacher's own config. The ensemble also
    carries ``teacher_names`` and ``teacher_data_configs``.
    """
    from .ensemble import InputAdapter, TeacherEnsemble

    dataset = cfg.data.dataset
    n = dataset_num_classes(dataset) if num_classes is None else int(num_classes)
    if data_config is None:
        data_config = data_config_for(cfg.data, None)
    temperature = float(getattr(getattr(cfg, "loss", None), "temperature", 1.0))
    if not getattr(cfg, "teachers", None) and getattr(cfg, "teacher_preset", None) in SPECIAL_PRESETS:
        from .offline import digits_teachers  # lazy: the offline module trains/loads local teachers

        return digits_teachers(cfg, num_classes=n, data_config=data_config)
    specs = teacher_specs(cfg)
    if not specs:
        raise ConfigError("No teachers configured; set teacher_preset (e.g. imagenette-small) or list teachers.")
    teachers, adapters, configs, names = [], [], [], []
    for spec in specs:
        model, tcfg = create_teacher(
            spec.name,
            pretrained=bool(spec.pretrained),
            weights=spec.weights,
            dataset=dataset,
            num_classes=n,
            data_config=data_config,
        )
        if len(tcfg.get("mean", ())) != int(data_config["input_size"][0]):
            raise ModelError(
                f"Teacher '{spec.name}' expects {len(tcfg['mean'])}-channel images but the data has "
                f"{data_config['input_size'][0]}; use teachers made for this dataset."
            )
        teachers.append(model)
        adapters.append(InputAdapter.from_configs(data_config, tcfg))
        configs.append(tcfg)
        names.append(spec.name)
    ensemble = TeacherEnsemble(teachers, adapters, temperature=temperature)
    ensemble.teacher_names = names
    ensemble.teacher_data_configs = configs
    return ensemble
