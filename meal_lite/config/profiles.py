"""Profiles: one switch for where a run gets its data and teachers.

`imagenette` (the default) is the real thing at Colab scale: ImageNette images and ImageNet-pretrained
timm teachers, downloaded on first use. `offline` needs no network at all: scikit-learn's handwritten
digits, which ship inside the installed package, and teachers trained locally. The switch is the
environment variable ``MEAL_LITE_PROFILE``; an explicit argument always wins over it, so a notebook or
a test can pin a profile whatever the shell says.
"""

from __future__ import annotations

from pathlib import Path

from meal_lite import settings
from meal_lite.errors import ConfigError

__all__ = [
    "PROFILES",
    "DEFAULT_PROFILE",
    "resolve_profile",
    "profile_config_path",
]

PROFILES = ("imagenette", "offline")
DEFAULT_PROFILE = "imagenette"
ENV_VAR = settings.PROFILE


def resolve_profile(profile: str | None = None) -> str:
    """Return the profile to use: ``profile`` if given, else ``$MEAL_LITE_PROFILE``, else the default."""
    source = "argument"
    if profile is None:
        profile = settings.profile()
        source = f"environment variable {ENV_VAR}"
    if profile is None:
        return DEFAULT_PROFILE
    profile = profile.strip().lower()
    if profile not in PROFILES:
        raise ConfigError(
            f"Unknown profile {profile!r} (from the {source}); use one of {', '.join(PROFILES)}."
        )
    return profile


def profile_config_path(profile: str | None = None) -> Path:
    """Path of the packaged default configuration of a profile."""
    return Path(__file__).parent / "defaults" / f"{resolve_profile(profile)}.yaml"
