"""Image transforms from timm data configs: the paper's recipe and nothing else.

A *data config* is the dict timm uses to describe what a pretrained model expects (``input_size``
(C, H, W), ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``). Training transforms are
RandomResizedCrop + horizontal flip and nothing else: MEAL V2 uses no auto-augment, no random erasing
and no colour jitter (timm's ``create_transform`` adds colour jitter by default; we switch it off).
Evaluation is resize + centre crop.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import timm.data

from meal_lite.errors import ConfigError

__all__ = ["paper_data_config", "build_transforms"]


def paper_data_config(
    image_size: int = 224,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> dict[str, Any]:
    """The paper's ImageNet preprocessing as a data config: bilinear, centre crop of 87.5%.

    That is resize 256 / crop 224 at 224 px, and the same ratio (resize 434 / crop 380) at 380 px.
    """
    return {
        "input_size": (3, int(image_size), int(image_size)),
        "interpolation": "bilinear",
        "mean": tuple(mean),
        "std": tuple(std),
        "crop_pct": 0.875,
        "crop_mode": "center",
    }


def build_transforms(data_config: Mapping[str, Any], train: bool) -> Callable:
    """timm transforms for a data config: RandomResizedCrop + flip (train), resize +
    centre crop (eval).

    No auto-augment, no random erasing, no colour jitter: the paper's recipe uses none
    of them.
    """
    for key in ("input_size", "mean", "std"):
        if key not in data_config:
            raise ConfigError(
                f"The data config lacks '{key}'; pass a timm data config "
                f"(timm.data.resolve_model_data_config(model))."
            )
    return timm.data.create_transform(
        input_size=tuple(data_config["input_size"]),
        is_training=train,
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
        hflip=0.5,
        color_jitter=None,  # timm's default is 0.4; MEAL V2 trains without it
        auto_augment=None,
        re_prob=0.0,
    )
