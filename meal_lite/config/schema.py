"""Run configuration: typed dataclasses read from YAML and overridden from the command line.

A run is described by one YAML file (see ``configs/`` for examples, ``meal_lite/config/defaults/`` for the
packaged per-profile defaults) plus ``section.key=value`` overrides such as ``train.epochs=3``.
Every key is checked against the dataclasses below, so a typo or a wrong type stops the run at once
with one sentence instead of surfacing as a strange failure hours later. The defaults are the paper's
and the official code's values (SGD, lr 0.01 -> 0.001 at epoch 100, 180 epochs, discriminator lr
1e-4, temperature 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

from meal_lite.errors import ConfigError
from meal_lite.config.choices import (
    AMP_MODES,
    AUGMENT_STRENGTHS,
    DATASETS,
    DISCRIMINATOR_INPUTS,
    DISCRIMINATOR_MODES,
    DISTILLATION_LOSSES,
    IMAGENETTE_SIZES,
    OBJECTIVES,
    OPTIMIZERS,
    check_choice,
)
from meal_lite.config.paper import packaged_config
from meal_lite.config.profiles import profile_config_path, resolve_profile
from meal_lite.config.typed import apply_override, build, dump_yaml, parse_override, read_yaml

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TeacherConfig",
    "LossConfig",
    "DiscriminatorConfig",
    "OptimConfig",
    "TrainConfig",
    "SoftLabelsConfig",
    "load_config",
    "validate_config",
    "config_to_dict",
    "config_from_dict",
    "format_config",
]



@dataclass
class DataConfig:
    """Which images to train on and how to load them."""

    dataset: str = "imagenette"  # digits | imagenette | imagenet | folder (your own: root/train/<class>/*, root/val/<class>/*)
    root: str = "data"  # where imagenette/imagenet live (or go); for folder, the folder holding train/ and val/
    imagenette_size: str = "160px"
    download: bool = True
    image_size: int | None = None  # None: the student's own timm input size
    batch_size: int = 64  # per process (per GPU under DDP) when global_batch is unset; global = this x world size
    # global_batch set: the batch of ONE optimiser step over all processes (the paper: 512); the
    # per-process batch and the gradient accumulation steps are derived from the world size (and
    # max_batch_per_process), batch_size is then ignored, and the lrs scale with optim.reference_batch.
    global_batch: int | None = None
    max_batch_per_process: int | None = None  # None: no limit (no accumulation unless needed to divide)
    # Input mixing, applied to each training batch before the teachers and the student see it (timm's
    # Mixup in batch mode, meal_lite.core.objective.make_mix); a cross-entropy run mixes its labels alike.
    cutmix_prob: float = 0.0  # probability that a training batch is CutMixed (the paper's CutMix row)
    cutmix_beta: float = 1.0  # CutMix's Beta(beta, beta) for the kept area
    mixup_alpha: float = 0.0  # Mixup's Beta(alpha, alpha), every batch: "function matching" (Beyer et al. 2022)
    eval_batch_size: int | None = None  # None: same as batch_size
    num_workers: int = 2
    skip_bad_files: bool = False
    augment: bool = True
    # A smaller run (meal_lite.data.subsets): train on the first N images of each training class. Where the
    # dataset has no test split of its own (ImageNette, ImageNet, a folder), val_per_class keeps the first N
    # images of each validation class (at most half of it) for validation and makes the next test_per_class
    # (None: all the others) the test split, so settings chosen on validation are reported on other images.
    # None: every image, validation = the val folder. The imagenette profile sets them to fit two CPU cores.
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    # digits only: mild (small affine jitter, the default) or strong (larger rotations, shifts, zooms
    # and shear: views on which the teachers disagree, so their targets are not near one-hot)
    augment_strength: str = "mild"


@dataclass
class ModelConfig:
    """The student: a timm model name and where its starting weights come from."""

    name: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None  # a local file or URL; beats `pretrained`
    num_classes: int | None = None  # None: the dataset's class count


@dataclass
class TeacherConfig:
    """One teacher of the ensemble (in YAML, a bare timm name is short for ``{name: ...}``)."""

    SHORTHAND: ClassVar[str] = "name"
    name: str = ""
    pretrained: bool = True
    # a local file or URL; beats `pretrained`. A meal-lite run's last.pt (e.g. a teacher fine-tuned on your
    # folder with loss.objective=ce) also brings that run's input size and normalisation.
    weights: str | None = None


@dataclass
class LossConfig:
    """What the student learns from: labels (ce), the ensemble (kl) or the ensemble + discriminator (meal)."""

    temperature: float = 1.0  # MEAL V2 uses 1 (no temperature)
    objective: str = "meal"
    distillation: str = "soft_ce"  # soft_ce (the official loss) | kl (same gradient, reads 0 at a perfect match)


@dataclass
class DiscriminatorConfig:
    """The discriminator on final outputs and how it is optimised."""

    mode: str = "official"  # official: joint regulariser (published numbers); adversarial: paper's text
    reduction: int = 8
    lr: float = 1e-4
    weight: float = 1.0
    input: str = "logits"  # logits: student vs mean teacher logits (official); probs: softmaxes (cached labels)
    # The official code sets *every* parameter group's lr to the student's lr at each epoch start,
    # so its discriminator actually trains at 0.01/0.001, not 1e-4. true reproduces that overwrite.
    lr_follows_student: bool = False


@dataclass
class OptimConfig:
    """Optimiser and the step learning-rate schedule (stepped once per epoch)."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [100])
    gamma: float = 0.1
    # optim.lr and discriminator.lr are the values at this GLOBAL batch (the paper's 512); with
    # data.global_batch set, both are scaled linearly by global_batch / reference_batch.
    reference_batch: int = 512


@dataclass
class TrainConfig:
    """The training loop: length, device, precision, outputs."""

    epochs: int = 180
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto: bf16 if the GPU supports it else fp16; always off on CPU
    channels_last: bool = False
    out: str = "runs/train"
    resume: bool = False
    log_every: int = 50
    progress: bool = True
    eval_every: int = 1
    limit_batches: int | None = None  # train/evaluate on at most this many batches per epoch (smoke runs)
    checkpoint_every: int | None = None  # also write last.pt every this many optimiser steps (mid-epoch)


@dataclass
class SoftLabelsConfig:
    """Cached soft labels (FKD-style, :mod:`meal_lite.data.softlabels`): made by ``meal-lite cache``, replayed in training."""

    path: str | None = None  # a cache folder: `meal-lite cache` writes it, training replays it (None: online teachers)
    crops: int = 10  # R: random crops (+ flips) stored per training image
    top_k: int = 5  # ensemble probabilities kept per crop (float16, with their class indices)
    seed: int = 0  # seeds the crops (independent of train.seed)
    shard_images: int | None = None  # images per shard file (None: about 2**20 crops per shard)
    batch_size: int = 256  # teacher batch while making the cache


@dataclass
class Config:
    """A whole run. ``teachers`` (explicit list) replaces ``teacher_preset`` when non-empty."""

    profile: str = "imagenette"
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    teachers: list[TeacherConfig] = field(default_factory=list)
    teacher_preset: str | None = None
    # None: each teacher sees the batch at its own input size (its timm config, e.g. 300 px for an
    # EfficientNet-B3); a number: every teacher sees it resized to that size instead (fewer FLOPs: the
    # imagenette profile's teachers at 160 px cost about a quarter of their native sizes on a CPU).
    teacher_image_size: int | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    soft_labels: SoftLabelsConfig = field(default_factory=SoftLabelsConfig)


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), profile: str | None = None
) -> Config:
    """Read a run configuration.

    ``path`` None reads the profile's packaged default (``meal_lite/config/defaults/<profile>.yaml``); a
    path that is no file but names a packaged configuration (``imagenet/resnet50-224``) reads that one.
    ``overrides`` are ``section.key=value`` strings (values parsed as YAML: ``optim.milestones=[2,4]``).
    The profile is, in order: the ``profile`` argument, the file's ``profile`` key, then
    ``$MEAL_LITE_PROFILE`` / the default (see :func:`meal_lite.config.profiles.resolve_profile`).
    Raises :class:`ConfigError` (one sentence) for a missing file, an unknown key, a wrong type or an
    invalid value.
    """
    if path is None:
        path = profile_config_path(resolve_profile(profile))
    path = Path(path)
    if not path.is_file():
        path = packaged_config(path) or path
    data = read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(Config, data, parts, value, text)
    cfg = build(Config, data, "", f"in {path}")
    if profile is not None or "profile" not in data:
        cfg.profile = resolve_profile(profile)
    else:
        cfg.profile = resolve_profile(cfg.profile)
    validate_config(cfg)
    return cfg


def _at_least(value: float | None, key: str, low: float, strict: bool = False) -> None:
    if value is None:
        return
    bad = value <= low if strict else value < low
    if bad:
        sign = ">" if strict else ">="
        raise ConfigError(f"Config key '{key}' must be {sign} {low:g}, but was given {value!r}.")


def validate_config(cfg: Config) -> None:
    """Check value ranges and choices (types are already checked); raise a one-sentence ConfigError."""
    check_choice(cfg.data.dataset, "data.dataset", tuple(DATASETS))
    check_choice(cfg.data.augment_strength, "data.augment_strength", AUGMENT_STRENGTHS)
    check_choice(cfg.data.imagenette_size, "data.imagenette_size", IMAGENETTE_SIZES)
    check_choice(cfg.loss.objective, "loss.objective", OBJECTIVES)
    check_choice(cfg.loss.distillation, "loss.distillation", DISTILLATION_LOSSES)
    check_choice(cfg.discriminator.input, "discriminator.input", DISCRIMINATOR_INPUTS)
    check_choice(cfg.discriminator.mode, "discriminator.mode", DISCRIMINATOR_MODES)
    check_choice(cfg.optim.name, "optim.name", OPTIMIZERS)
    check_choice(cfg.train.amp, "train.amp", AMP_MODES)
    for key, value in [
        ("data.batch_size", cfg.data.batch_size),
        ("data.eval_batch_size", cfg.data.eval_batch_size),
        ("data.image_size", cfg.data.image_size),
        ("student.num_classes", cfg.student.num_classes),
        ("discriminator.reduction", cfg.discriminator.reduction),
        ("train.epochs", cfg.train.epochs),
        ("train.log_every", cfg.train.log_every),
        ("train.eval_every", cfg.train.eval_every),
        ("train.limit_batches", cfg.train.limit_batches),
        ("soft_labels.crops", cfg.soft_labels.crops),
        ("soft_labels.top_k", cfg.soft_labels.top_k),
        ("soft_labels.shard_images", cfg.soft_labels.shard_images),
        ("soft_labels.batch_size", cfg.soft_labels.batch_size),
        ("train.checkpoint_every", cfg.train.checkpoint_every),
        ("data.global_batch", cfg.data.global_batch),
        ("data.max_batch_per_process", cfg.data.max_batch_per_process),
        ("optim.reference_batch", cfg.optim.reference_batch),
        ("data.train_per_class", cfg.data.train_per_class),
        ("data.val_per_class", cfg.data.val_per_class),
        ("data.test_per_class", cfg.data.test_per_class),
        ("teacher_image_size", cfg.teacher_image_size),
    ]:
        _at_least(value, key, 1)
    _at_least(cfg.data.num_workers, "data.num_workers", 0)
    _at_least(cfg.optim.lr, "optim.lr", 0, strict=True)
    _at_least(cfg.discriminator.lr, "discriminator.lr", 0, strict=True)
    _at_least(cfg.loss.temperature, "loss.temperature", 0, strict=True)
    _at_least(cfg.optim.momentum, "optim.momentum", 0)
    _at_least(cfg.optim.weight_decay, "optim.weight_decay", 0)
    _at_least(cfg.discriminator.weight, "discriminator.weight", 0)
    _at_least(cfg.optim.gamma, "optim.gamma", 0, strict=True)
    _at_least(cfg.data.cutmix_beta, "data.cutmix_beta", 0, strict=True)
    if not 0.0 <= cfg.data.cutmix_prob <= 1.0:
        raise ConfigError(f"Config key 'data.cutmix_prob' must be between 0 and 1, but was given {cfg.data.cutmix_prob!r}.")
    _at_least(cfg.data.mixup_alpha, "data.mixup_alpha", 0)
    if cfg.data.mixup_alpha > 0 and cfg.data.cutmix_prob > 0:
        raise ConfigError(
            "data.mixup_alpha and data.cutmix_prob are both set; meal-lite mixes a batch one way, so set one of them to 0."
        )
    if (cfg.data.mixup_alpha > 0 or cfg.data.cutmix_prob > 0) and cfg.soft_labels.path:
        raise ConfigError(
            "Input mixing changes the pixels after a cached crop is replayed, so the stored soft labels would not "
            "describe the mixed image; set data.mixup_alpha=0 and data.cutmix_prob=0, or drop soft_labels.path."
        )
    if cfg.data.test_per_class is not None and cfg.data.val_per_class is None:
        raise ConfigError("data.test_per_class cuts the test part of the validation folder that data.val_per_class "
                          "splits off; set data.val_per_class too, or unset data.test_per_class.")
    if list(cfg.optim.milestones) != sorted(set(cfg.optim.milestones)):
        raise ConfigError(
            f"Config key 'optim.milestones' must be increasing epoch numbers, but was given {cfg.optim.milestones!r}."
        )
    if not cfg.student.name:
        raise ConfigError("Config key 'student.name' is empty; give a timm model name such as resnet50.")
    for i, teacher in enumerate(cfg.teachers):
        if not teacher.name:
            raise ConfigError(f"Config entry 'teachers[{i}]' has an empty name; give a timm model name.")
    if cfg.loss.objective != "ce" and not cfg.teachers and not cfg.teacher_preset:
        raise ConfigError(
            f"loss.objective={cfg.loss.objective} needs teachers: set teacher_preset (e.g. imagenette-small) "
            f"or a teachers list, or use loss.objective=ce."
        )
    if cfg.soft_labels.path and cfg.loss.objective == "meal" and cfg.discriminator.input != "probs":
        raise ConfigError(
            "A soft-label cache stores probabilities, not logits, so its discriminator must compare probabilities; "
            "set discriminator.input=probs (or unset soft_labels.path)."
        )
    if not cfg.train.device or not (cfg.train.device in ("auto", "cpu") or cfg.train.device.startswith("cuda")):
        raise ConfigError(f"Config key 'train.device' must be auto, cpu, cuda or cuda:N, but was given {cfg.train.device!r}.")


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict (YAML/JSON/checkpoint safe) of a configuration."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> Config:
    """Inverse of :func:`config_to_dict` with the same key and type checks."""
    cfg = build(Config, data, "", "in the given mapping")
    validate_config(cfg)
    return cfg


def format_config(cfg: Config, sections: Sequence[str] | None = None) -> str:
    """The resolved configuration as YAML text (what a run prints at its start); it loads back as is.

    ``sections`` keeps only those top-level keys (e.g. ``["data", "student"]``), in that order.
    """
    data = config_to_dict(cfg)
    if sections is not None:
        unknown = [s for s in sections if s not in data]
        if unknown:
            raise ConfigError(f"Unknown config section(s) {', '.join(unknown)}; use some of {', '.join(data)}.")
        data = {s: data[s] for s in sections}
    return dump_yaml(data)
