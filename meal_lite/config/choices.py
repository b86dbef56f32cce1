"""Every configuration key's allowed values, and the one check that names a wrong one.

The lists live here, not in the modules that act on them, so that reading or checking a configuration
imports nothing heavier than this file, and a module and the config checks cannot disagree about what
is allowed: the modules import their lists from here too.
"""

from __future__ import annotations

from typing import Any, Collection

from meal_lite.errors import ConfigError

__all__ = [
    "AMP_MODES",
    "AUGMENT_STRENGTHS",
    "DATASETS",
    "DISCRIMINATOR_INPUTS",
    "DISCRIMINATOR_MODES",
    "DISTILLATION_LOSSES",
    "IMAGENETTE_SIZES",
    "OBJECTIVES",
    "OPTIMIZERS",
    "check_choice",
]

#: data.dataset -> its number of classes; None: counted from the class folders under data.root (folder)
DATASETS = {"digits": 10, "imagenette": 10, "imagenet": 1000, "folder": None}
IMAGENETTE_SIZES = ("160px", "320px", "full")
AUGMENT_STRENGTHS = ("mild", "strong")  # digits only
#: loss.objective: labels (ce), the ensemble (kl), the ensemble and the discriminator (meal). The same
#: three names are the arms of every experiment, in results files, tables, the CLI and the book.
OBJECTIVES = ("ce", "kl", "meal")
DISTILLATION_LOSSES = ("soft_ce", "kl")
DISCRIMINATOR_MODES = ("official", "adversarial")
DISCRIMINATOR_INPUTS = ("logits", "probs")
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("auto", "bf16", "fp16", "off")


def check_choice(value: Any, key: str, choices: Collection[str]) -> None:
    """Raise ConfigError (one sentence naming ``key``, the value and the choices) unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"Config key '{key}' must be one of {', '.join(choices)}, but was given {value!r}.")
