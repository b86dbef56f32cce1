"""Students and teachers by timm name, from typed config sections: class subsets, presets, adapters.

Every model in meal-lite is a timm model created by name (``resnet50``, ``senet154.gluon_in1k``...),
with its weights from the hub, a local file or a URL (:mod:`meal_lite.models.weights` says how each is found
and what happens without a network).

ImageNet-pretrained teachers teach ImageNette students without any fine-tuning: ImageNette's ten classes
are ImageNet classes, so :class:`ClassSubset` keeps the ten matching logits (indices from
:data:`meal_lite.data.imagefolders.IMAGENETTE_IMAGENET_INDICES`, in ImageNette's class order). Each teacher
keeps its own preprocessing (mean/std/resolution from its ``pretrained_cfg``); :func:`create_teachers`
builds an :class:`~meal_lite.core.ensemble.InputAdapter` per teacher from the data's config to the teacher's.
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import timm
import timm.data
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from meal_lite.config.schema import DataConfig, ModelConfig, TeacherConfig
from meal_lite.data.datasets import data_config_for, dataset_num_classes
from meal_lite.data.digits import DIGITS_DATA_CONFIG
from meal_lite.core.ensemble import InputAdapter, TeacherEnsemble, declared_num_classes
from meal_lite.errors import ConfigError, ModelError, first_line
from meal_lite.data.imagefolders import IMAGENETTE_IMAGENET_INDICES
from meal_lite.models.runs import run_checkpoint_config
from meal_lite.models.weights import drop_overlay_state, file_overlay, forget_cached_weights, hub_overlay, key_report, weights_hint

__all__ = [
    "TEACHER_PRESETS",
    "LOCAL_PRESETS",
    "ClassSubset",
    "create_model",
    "check_model_source",
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
#: Presets that are not lists of timm names: "digits" = the offline profile's teachers, trained locally
#: and cached (built by :func:`meal_lite.training.digits_teachers.digits_ensemble`).
LOCAL_PRESETS = ("digits",)

_IMAGENET_CLASSES = 1000


# --------------------------------------------------------------------------------------------------
# Class subset


class ClassSubset(nn.Module):
    """Wrap a model and keep only some of its logits, in the given order.

    ``ClassSubset(imagenet_model, IMAGENETTE_IMAGENET_INDICES)`` is a 10-class
    ImageNette classifier whose logit ``i`` is the ImageNet logit of ImageNette class
    ``i``. Softmax over the kept logits renormalises the probability over the ten
    classes, which is what a 10-class student learns from. The wrapper exposes
    ``num_classes`` (the number of kept logits) and the inner model's
    ``pretrained_cfg``, so timm's ``resolve_model_data_config`` still finds the
    teacher's preprocessing.
    """

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        indices = [int(i) for i in indices]
        if not indices:
            raise ModelError("ClassSubset needs at least one class index to keep.")
        inner = getattr(model, "num_classes", None)
        if isinstance(inner, int) and (max(indices) >= inner or min(indices) < 0):
            raise ModelError(
                f"ClassSubset indices must lie in [0, {inner}) for a model with "
                f"{inner} outputs, got "
                f"{min(indices)}..{max(indices)}."
            )
        self.model = model
        # Derived constant, not learned state: not saved in state_dict, but moved by
        # .to(device).
        self.register_buffer(
            "indices", torch.tensor(indices, dtype=torch.long), persistent=False
        )
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


@functools.lru_cache(maxsize=1)
def _all_names() -> tuple[str, ...]:
    return tuple(timm.list_models()) + tuple(timm.list_pretrained())


def _check_name(name: str) -> None:
    """Raise ModelError (with close suggestions) unless ``name`` is a timm architecture[.tag]."""
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"A model name must be a non-empty timm name such as resnet50, got {name!r}.")
    arch, _, tag = name.partition(".")
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
# Creating models


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
    _check_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if in_chans is not None:
        kwargs["in_chans"] = int(in_chans)

    def build(**extra: Any) -> nn.Module:
        return timm.create_model(name, **{**kwargs, **extra})

    if weights:
        overlay, state_dict = file_overlay(name, weights)
        if num_classes is None and "num_classes" in overlay:
            kwargs["num_classes"] = overlay["num_classes"]
        try:
            model = build(pretrained=True, pretrained_cfg_overlay=overlay)
        except (RuntimeError, KeyError, ValueError) as exc:
            report = key_report(state_dict, lambda: build(pretrained=False))
            raise ModelError(
                f"The weights in '{weights}' do not fit timm model '{name}' ({report}); give weights saved "
                f"from this architecture."
            ) from exc
        drop_overlay_state(model)
        return model
    if pretrained:
        overlay_or_none = hub_overlay(name, role)
        try:
            if overlay_or_none is None:
                return build(pretrained=True)
            return build(pretrained=True, pretrained_cfg_overlay=overlay_or_none)
        except ModelError:
            raise
        except Exception as exc:  # network dropped mid-download, a broken file served or cached, ...
            removed = forget_cached_weights(name)
            raise ModelError(
                f"Could not load pretrained weights for '{name}' ({first_line(exc)})"
                + ("; the downloaded file was removed from the cache, so the next run downloads it again" if removed else "")
                + f"; check the network or {weights_hint(role)}."
            ) from None
    return build(pretrained=False)


def check_model_source(name: str, *, pretrained: bool, weights: str | os.PathLike | None, role: str | None = None) -> None:
    """Check, without building the model, that ``name`` exists and its weights can be had (ModelError if not).

    A local weights file must exist; hub weights must be cached, or the network on and the endpoint
    reachable (:func:`~meal_lite.models.weights.hub_overlay`). A run checks this for its teachers before
    it starts worker processes, so that a missing teacher is one sentence from the main process.
    """
    _check_name(name)
    if weights:
        if "://" not in str(weights) and not Path(weights).expanduser().is_file():
            raise ModelError(f"Weights file '{weights}' does not exist; check the path (or give an http(s) URL).")
    elif pretrained:
        hub_overlay(name, role)


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """The model's timm data config (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``...)."""
    return dict(timm.data.resolve_model_data_config(model))


def adapt_to_dataset(
    model: nn.Module, dataset: str, num_classes: int, *, name: str = "teacher", role: str = "Teacher"
) -> nn.Module:
    """Make ``model`` predict the dataset's classes: as is, or an ImageNet model cut to ImageNette's ten.

    A 1000-class model on ImageNette becomes :class:`ClassSubset` of the ten ImageNette logits; any
    other mismatch between the model's class count and ``num_classes`` raises :class:`ModelError`.
    """
    have = declared_num_classes(model)
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


def create_student(student: ModelConfig, data: DataConfig, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The run's student and the data config its images use.

    ``num_classes`` defaults to the dataset's (``student.num_classes`` may repeat it but not differ).
    Digits students get one input channel. The data config is :func:`meal_lite.data.datasets.data_config_for`
    of the student's timm config, so passing it to :func:`meal_lite.data.datasets.build_datasets` agrees.
    """
    n = dataset_num_classes(data.dataset, data.root) if num_classes is None else int(num_classes)
    if student.num_classes is not None and int(student.num_classes) != n:
        raise ConfigError(
            f"student.num_classes={student.num_classes} but the {data.dataset} data has {n} classes; remove "
            f"student.num_classes or set it to {n}."
        )
    model = create_model(
        student.name,
        num_classes=n,
        pretrained=student.pretrained,
        weights=student.weights,
        in_chans=1 if data.dataset == "digits" else None,
        role="student",
    )
    return model, data_config_for(data, model_data_config(model))


def create_teacher(
    spec: TeacherConfig, *, dataset: str = "imagenette", num_classes: int | None = None, data_config: Mapping[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """One frozen-to-be teacher for ``dataset`` and its own data config (from its ``pretrained_cfg``).

    An ImageNet teacher on ImageNette is wrapped in :class:`ClassSubset` (10 logits, ImageNette order).
    Returns ``(model in eval mode, data_config)``; the data config is what the teacher expects (mean,
    std, resolution), used to build its :class:`~meal_lite.core.ensemble.InputAdapter`. Digits teachers
    are 1-channel models trained on the digits' own normalisation, so their config is the data's
    (``data_config``, default :data:`meal_lite.data.digits.DIGITS_DATA_CONFIG`). A teacher whose
    ``weights`` are a meal-lite training checkpoint (``runs/t1/last.pt``: a model fine-tuned with
    ``loss.objective=ce``) keeps the data config of the run that trained it (its ``data.image_size``
    and its normalisation), read from the checkpoint's configuration.
    """
    target = dataset_num_classes(dataset) if num_classes is None else int(num_classes)
    digits = dataset == "digits"
    # A teacher with neither pretrained nor given weights is random: build it with the data's classes
    # directly (useful for smoke tests; a real run always gives weights).
    random_init = not spec.pretrained and spec.weights is None
    model = create_model(
        spec.name,
        num_classes=target if random_init else None,
        pretrained=spec.pretrained,
        weights=spec.weights,
        in_chans=1 if digits else None,
        role="teacher",
    )
    run = run_checkpoint_config(spec.weights) if spec.weights else None
    if digits:
        teacher_config = dict(data_config or DIGITS_DATA_CONFIG)
    elif run is not None:  # a meal-lite run's last.pt: the size and normalisation that run trained with
        teacher_config = data_config_for(run.data, model_data_config(model))
    else:
        teacher_config = model_data_config(model)
    model = adapt_to_dataset(model, dataset, target, name=spec.name)
    return model.eval(), teacher_config


def teacher_specs(teachers: Sequence[TeacherConfig], preset: str | None) -> list[TeacherConfig]:
    """The run's teacher entries: ``teachers`` if non-empty, else the names of a timm ``preset``.

    A local preset (``digits``) has no timm names and gives an empty list; an unknown preset is an error.
    """
    if teachers:
        return list(teachers)
    if not preset or preset in LOCAL_PRESETS:
        return []
    if preset in TEACHER_PRESETS:
        return [TeacherConfig(name=n) for n in TEACHER_PRESETS[preset]]
    valid = list(TEACHER_PRESETS) + list(LOCAL_PRESETS)
    close = difflib.get_close_matches(preset, valid, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"Unknown teacher_preset {preset!r}{hint}; use one of {', '.join(valid)}, or list teachers explicitly.")


def create_teachers(
    specs: Sequence[TeacherConfig], *, dataset: str, num_classes: int | None = None, data_config: Mapping[str, Any] | None = None,
    image_size: int | None = None,
) -> TeacherEnsemble:
    """The frozen ensemble of timm teachers ``specs``, each behind an input adapter from the data's config.

    ``data_config`` is the config the batches are normalised with (from :func:`create_student`); each
    teacher gets an :class:`~meal_lite.core.ensemble.InputAdapter` from it to the teacher's own config, at
    the teacher's own input size or, given ``image_size`` (config ``teacher_image_size``), at that size.
    """
    if not specs:
        raise ConfigError("No teachers configured; set teacher_preset (e.g. imagenette-small) or list teachers.")
    n = dataset_num_classes(dataset) if num_classes is None else int(num_classes)
    if data_config is None:
        data_config = data_config_for(DataConfig(dataset=dataset), None)
    teachers, adapters, configs = [], [], []
    for spec in specs:
        model, tcfg = create_teacher(spec, dataset=dataset, num_classes=n, data_config=data_config)
        if len(tcfg.get("mean", ())) != int(data_config["input_size"][0]):
            raise ModelError(
                f"Teacher '{spec.name}' expects {len(tcfg['mean'])}-channel images but the data has "
                f"{data_config['input_size'][0]}; use teachers made for this dataset."
            )
        if image_size is not None:
            tcfg = {**tcfg, "input_size": (tcfg["input_size"][0], int(image_size), int(image_size))}
        teachers.append(model)
        adapters.append(InputAdapter.from_configs(data_config, tcfg))
        configs.append(tcfg)
    return TeacherEnsemble(teachers, adapters, names=[s.name for s in specs], data_configs=configs)
