"""Run configuration: typed dataclasses read from YAML and overridden from the command line.

A run is described by one YAML file (see ``configs/`` for examples, ``meal_lite/configs/`` for the
packaged per-profile defaults) plus ``section.key=value`` overrides such as ``train.epochs=3``.
Every key is checked against the dataclasses below, so a typo or a wrong type stops the run at once
with one sentence instead of surfacing as a strange failure hours later. The defaults are the paper's
and the official code's values (SGD, lr 0.01 -> 0.001 at epoch 100, 180 epochs, discriminator lr
1e-4, temperature 1).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import ConfigError
from .profiles import profile_config_path, resolve_profile

DATASETS = ("digits", "imagenette", "imagenet")
IMAGENETTE_SIZES = ("160px", "320px", "full")
OBJECTIVES = ("ce", "kl", "meal")
DISCRIMINATOR_MODES = ("official", "adversarial")
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class DataConfig:
    """Which images to train on and how to load them."""

    dataset: str = "imagenette"
    root: str = "data"
    imagenette_size: str = "160px"
    download: bool = True
    image_size: int | None = None  # None: the student's own timm input size
    batch_size: int = 64  # per process (per GPU under DDP); the global batch is this x world size
    eval_batch_size: int | None = None  # None: same as batch_size
    num_workers: int = 2
    skip_bad_files: bool = False
    augment: bool = True


@dataclass
class ModelConfig:
    """The student: a timm model name and where its starting weights come from."""

    name: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None  # a local file or URL; beats `pretrained`
    num_classes: int | None = None  # None: the dataset's class count


@dataclass
class TeacherConfig:
    """One teacher of the ensemble."""

    name: str = ""
    pretrained: bool = True
    weights: str | None = None


@dataclass
class LossConfig:
    """What the student learns from: labels (ce), the ensemble (kl) or the ensemble + discriminator (meal)."""

    temperature: float = 1.0  # MEAL V2 uses 1 (no temperature)
    objective: str = "meal"


@dataclass
class DiscriminatorConfig:
    """The discriminator on final outputs and how it is optimised."""

    mode: str = "official"  # official: joint regulariser (published numbers); adversarial: paper's text
    reduction: int = 8
    lr: float = 1e-4
    weight: float = 1.0
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


@dataclass
class Config:
    """A whole run. ``teachers`` (explicit list) replaces ``teacher_preset`` when non-empty."""

    profile: str = "imagenette"
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    teachers: list[TeacherConfig] = field(default_factory=list)
    teacher_preset: str | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------------------------------
# Type checking driven by the dataclass annotations


def _field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (the module uses postponed annotations)."""
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    """Human-readable name of an annotation, e.g. ``int or null``, ``list of int``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + " or null"
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_name(item)}"
    if dataclasses.is_dataclass(tp):
        return "mapping" if tp is not TeacherConfig else "teacher (a name or a mapping)"
    return getattr(tp, "__name__", str(tp))


class _TypeMismatch(Exception):
    """Internal: a value does not fit an annotation (turned into a ConfigError with the key)."""


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Return ``value`` checked (and minimally converted) against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args:
            try:
                return _coerce(value, arg, key, where)
            except _TypeMismatch:
                continue
        raise _TypeMismatch
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, key, where) for v in value]
    if tp is TeacherConfig:
        if isinstance(value, str):  # shorthand: a bare timm name
            return TeacherConfig(name=value)
        if isinstance(value, dict):
            return _build(TeacherConfig, value, f"{key}[]", where)
        raise _TypeMismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _TypeMismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _TypeMismatch
    if tp is float:  # finite numbers only
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept what Python reads as a number.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise _TypeMismatch
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise _TypeMismatch
    raise _TypeMismatch


def _check_value(value: Any, tp: Any, key: str, where: str) -> Any:
    """Coerce one value or raise a one-sentence ConfigError naming key, expected type and value."""
    try:
        return _coerce(value, tp, key, where)
    except _TypeMismatch:
        raise ConfigError(
            f"Config key '{key}' {where} expects {_type_name(tp)}, but was given {value!r} "
            f"({type(value).__name__})."
        ) from None


def _unknown_key_error(key: str, section: str, valid: Sequence[str], where: str) -> ConfigError:
    """One sentence: the unknown key, a close match if any, and every valid key of the section."""
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1)
    full = f"{section}.{close[0]}" if close and section else (close[0] if close else "")
    hint = f" (did you mean '{full}'?)" if close else ""
    scope = f"section '{section}'" if section else "the top level"
    return ConfigError(
        f"Unknown config key '{key}' {where}{hint}; valid keys of {scope} are: {', '.join(valid)}."
    )


def _build(cls: type, mapping: Any, prefix: str, where: str) -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping, checking keys and types."""
    if not isinstance(mapping, dict):
        raise ConfigError(
            f"Config section '{prefix or 'top level'}' {where} must be a mapping of keys to values, "
            f"but was given {mapping!r}."
        )
    hints = _field_types(cls)
    kwargs = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise _unknown_key_error(full, prefix, list(hints), where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and tp is not TeacherConfig:
            kwargs[key] = _build(tp, value if value is not None else {}, full, where)
        else:
            kwargs[key] = _check_value(value, tp, full, where)
    try:
        return cls(**kwargs)
    except TypeError:  # a required field (only TeacherConfig.name) is missing
        raise ConfigError(f"Config entry '{prefix}' {where} needs a 'name' key.") from None


# --------------------------------------------------------------------------------------------------
# Loading, overriding, printing


def _read_yaml(path: Path) -> dict:
    """Read a YAML mapping or raise a one-sentence ConfigError."""
    if not path.is_file():
        raise ConfigError(
            f"Config file '{path}' does not exist; pass the path of a YAML file (examples are in "
            f"configs/) or omit it to use the profile's default."
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" near line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Config file '{path}' is not valid YAML{line}; fix its syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of sections, not {type(data).__name__}.")
    return data


def _parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"Override '{text}' is not of the form section.key=value (e.g. train.epochs=3).")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"Override '{text}' has an empty key; write it as section.key=value.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the raw text, the type check decides
    return key.split("."), value


def _apply_override(data: dict, parts: list[str], value: Any, text: str) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``, checking the path against the dataclasses."""
    cls: Any = Config
    node = data
    for depth, part in enumerate(parts):
        hints = _field_types(cls)
        prefix = ".".join(parts[:depth])
        if part not in hints:
            raise _unknown_key_error(".".join(parts[: depth + 1]), prefix, list(hints), "from the command line")
        tp = hints[part]
        last = depth == len(parts) - 1
        if last:
            if not (dataclasses.is_dataclass(tp) and tp is not TeacherConfig):
                _check_value(value, tp, ".".join(parts), "from the command line")
            node[part] = value
            return
        if not dataclasses.is_dataclass(tp) or tp is TeacherConfig:
            raise ConfigError(
                f"Override '{text}' goes below '{'.'.join(parts[:depth + 1])}', which is a single value; "
                f"write {'.'.join(parts[:depth + 1])}=VALUE."
            )
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node, cls = child, tp


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), profile: str | None = None
) -> Config:
    """Read a run configuration.

    ``path`` None reads the profile's packaged default (``meal_lite/configs/<profile>.yaml``).
    ``overrides`` are ``section.key=value`` strings (values parsed as YAML: ``optim.milestones=[2,4]``).
    The profile is, in order: the ``profile`` argument, the file's ``profile`` key, then
    ``$MEAL_LITE_PROFILE`` / the default (see :func:`meal_lite.profiles.resolve_profile`).
    Raises :class:`ConfigError` (one sentence) for a missing file, an unknown key, a wrong type or an
    invalid value.
    """
    if path is None:
        path = profile_config_path(resolve_profile(profile))
    path = Path(path)
    data = _read_yaml(path)
    for text in overrides:
        parts, value = _parse_override(text)
        _apply_override(data, parts, value, text)
    cfg = _build(Config, data, "", f"in {path}")
    if profile is not None or "profile" not in data:
        cfg.profile = resolve_profile(profile)
    else:
        cfg.profile = resolve_profile(cfg.profile)
    validate_config(cfg)
    return cfg


def _choice(value: Any, key: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"Config key '{key}' must be one of {', '.join(choices)}, but was given {value!r}.")


def _at_least(value: float | None, key: str, low: float, strict: bool = False) -> None:
    if value is None:
        return
    bad = value <= low if strict else value < low
    if bad:
        sign = ">" if strict else ">="
        raise ConfigError(f"Config key '{key}' must be {sign} {low:g}, but was given {value!r}.")


def validate_config(cfg: Config) -> None:
    """Check value ranges and choices (types are already checked); raise a one-sentence ConfigError."""
    _choice(cfg.data.dataset, "data.dataset", DATASETS)
    _choice(cfg.data.imagenette_size, "data.imagenette_size", IMAGENETTE_SIZES)
    _choice(cfg.loss.objective, "loss.objective", OBJECTIVES)
    _choice(cfg.discriminator.mode, "discriminator.mode", DISCRIMINATOR_MODES)
    _choice(cfg.optim.name, "optim.name", OPTIMIZERS)
    _choice(cfg.train.amp, "train.amp", AMP_MODES)
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
    if not cfg.train.device or not (cfg.train.device in ("auto", "cpu") or cfg.train.device.startswith("cuda")):
        raise ConfigError(f"Config key 'train.device' must be auto, cpu, cuda or cuda:N, but was given {cfg.train.device!r}.")


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict (YAML/JSON/checkpoint safe) of a configuration."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> Config:
    """Inverse of :func:`config_to_dict` with the same key and type checks."""
    cfg = _build(Config, data, "", "in the given mapping")
    validate_config(cfg)
    return cfg


class _ConfigDumper(yaml.SafeDumper):
    """YAML dumper writing sections as blocks and lists of scalars inline (``milestones: [100]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    inline = all(not isinstance(item, (dict, list)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=inline)


_ConfigDumper.add_representer(list, _represent_list)


def format_config(cfg: Config) -> str:
    """The resolved configuration as YAML text (what a run prints at its start); it loads back as is."""
    return yaml.dump(config_to_dict(cfg), Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False)
