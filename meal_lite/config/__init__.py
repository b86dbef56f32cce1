"""Configuration: typed sections read from YAML, overrides, profiles, the lists of choices.

- :mod:`~meal_lite.config.schema` -- the run configuration's dataclasses, ``load_config`` and its checks;
- :mod:`~meal_lite.config.choices` -- every key's allowed values, in one place;
- :mod:`~meal_lite.config.typed` -- the YAML <-> dataclass machinery;
- :mod:`~meal_lite.config.profiles` -- the ``offline`` / ``imagenette`` switch;
- :mod:`~meal_lite.config.paper` -- the paper's ImageNet table as packaged configurations.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "AMP_MODES": "meal_lite.config.choices",
    "apply_override": "meal_lite.config.typed",
    "AUGMENT_STRENGTHS": "meal_lite.config.choices",
    "build": "meal_lite.config.typed",
    "check_choice": "meal_lite.config.choices",
    "Config": "meal_lite.config.schema",
    "config_from_dict": "meal_lite.config.schema",
    "config_to_dict": "meal_lite.config.schema",
    "DataConfig": "meal_lite.config.schema",
    "DATASETS": "meal_lite.config.choices",
    "DEFAULT_PROFILE": "meal_lite.config.profiles",
    "DISCRIMINATOR_INPUTS": "meal_lite.config.choices",
    "DISCRIMINATOR_MODES": "meal_lite.config.choices",
    "DiscriminatorConfig": "meal_lite.config.schema",
    "DISTILLATION_LOSSES": "meal_lite.config.choices",
    "dump_yaml": "meal_lite.config.typed",
    "format_config": "meal_lite.config.schema",
    "IMAGENETTE_SIZES": "meal_lite.config.choices",
    "load_config": "meal_lite.config.schema",
    "LossConfig": "meal_lite.config.schema",
    "ModelConfig": "meal_lite.config.schema",
    "OBJECTIVES": "meal_lite.config.choices",
    "OptimConfig": "meal_lite.config.schema",
    "OPTIMIZERS": "meal_lite.config.choices",
    "packaged_config": "meal_lite.config.paper",
    "PAPER_CONFIG_DIR": "meal_lite.config.paper",
    "paper_configs": "meal_lite.config.paper",
    "parse_override": "meal_lite.config.typed",
    "profile_config_path": "meal_lite.config.profiles",
    "PROFILES": "meal_lite.config.profiles",
    "read_yaml": "meal_lite.config.typed",
    "resolve_profile": "meal_lite.config.profiles",
    "SoftLabelsConfig": "meal_lite.config.schema",
    "TeacherConfig": "meal_lite.config.schema",
    "TrainConfig": "meal_lite.config.schema",
    "validate_config": "meal_lite.config.schema",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
