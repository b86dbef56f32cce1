"""Evaluate a checkpoint (yours or a released MEAL V2 one) on ImageNet, ImageNette or the digits.

``meal-lite eval`` calls :func:`evaluate_checkpoint`. The weights can be a local file or a URL, a raw
state dict (the released MEAL V2 checkpoints, whose keys carry DataParallel's ``module.`` prefix) or a
meal-lite training checkpoint (``last.pt``: the student is taken from it); they are always read with
``weights_only=True``.

A model with 1000 outputs evaluated on ImageNette is scored on the ten ImageNette logits only
(:class:`meal_lite.models.ClassSubset`): the prediction is the best of the ten classes, as if the
model had been built for ImageNette. That is how an ImageNet MEAL V2 student is compared with
ImageNette students without any fine-tuning.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .data import build_datasets, build_loader, data_config_for, dataset_num_classes
from .errors import ConfigError
from .models import adapt_to_dataset, create_model, model_data_config

__all__ = ["evaluate_checkpoint", "evaluate_model", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU; otherwise ``torch.device(device)``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Device {device!r} was asked for but CUDA is not available; use device=cpu or auto.")
    return dev


@torch.inference_mode()
def evaluate_model(model: nn.Module, loader: Any, device: str | torch.device = "cpu") -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and the image count of ``model`` over ``loader``.

    With fewer than five classes, "top-5" is top-(number of classes), i.e. 100%.
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    correct1 = correct5 = n = 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        logits = model(images).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(labels.view(-1, 1))
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        n += labels.numel()
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "n": 0}
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "n": n}


def evaluate_checkpoint(
    model_name: str,
    weights: str | os.PathLike | None,
    *,
    dataset: str = "imagenette",
    data_root: str | os.PathLike = "data",
    split: str = "val",
    imagenette_size: str = "160px",
    download: bool = True,
    image_size: int | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "auto",
    num_classes: int | None = None,
    pretrained: bool = False,
    skip_bad_files: bool = False,
    verbose: bool = True,
) -> dict[str, float]:
    """Evaluate timm model ``model_name`` with ``weights`` on a dataset split; return and print top-1/top-5.

    Args:
        model_name: timm name of the architecture the weights belong to (e.g. ``resnet50``; the
            ``mealv2_resnest50`` checkpoints are ResNet-50s).
        weights: local file or URL (``module.`` prefix stripped, ``weights_only=True``); None with
            ``pretrained=True`` evaluates timm's own pretrained weights.
        dataset: ``imagenette``, ``imagenet`` (an ImageFolder root with ``train/`` and ``val/``) or ``digits``.
        data_root, imagenette_size, download, skip_bad_files: where and how to find the data (as
            ``cfg.data.root`` etc.).
        split: ``val`` (or ``train``; ``test`` for digits).
        image_size: evaluation size; None uses the model's own (ImageNet: the paper's 87.5% centre crop).
        num_classes: the checkpoint's class count; None reads it from the checkpoint.
        device: ``auto``, ``cpu``, ``cuda``...
        verbose: print one summary line.

    Returns:
        ``{"top1": percent, "top5": percent, "n": number of images}``. A 1000-class model on ImageNette
        is scored on the ten ImageNette logits.
    """
    from .config import DataConfig

    n_data = dataset_num_classes(dataset)
    if not weights and not pretrained:
        raise ConfigError("evaluate_checkpoint needs weights (a file or URL) or pretrained=True.")
    model = create_model(
        model_name,
        num_classes=num_classes,
        pretrained=pretrained and not weights,
        weights=weights,
        in_chans=1 if dataset == "digits" else None,
        role="model",
    )
    data_cfg = DataConfig(
        dataset=dataset,
        root=str(data_root),
        imagenette_size=imagenette_size,
        download=download,
        image_size=image_size,
        batch_size=batch_size,
        num_workers=num_workers,
        skip_bad_files=skip_bad_files,
        augment=False,
    )
    config = data_config_for(data_cfg, model_data_config(model))
    model = adapt_to_dataset(model, dataset, n_data, name=model_name, role="Model")
    splits = build_datasets(data_cfg, config)
    if split not in splits:
        raise ConfigError(f"Unknown split {split!r} for {dataset}; use one of {', '.join(splits)}.")
    loader = build_loader(splits[split], batch_size, train=False, num_workers=num_workers)
    result = evaluate_model(model, loader, device)
    if verbose:
        source = weights if weights else "timm pretrained weights"
        print(
            f"{model_name} ({source}) on {dataset} {split}: top-1 {result['top1']:.2f}%, "
            f"top-5 {result['top5']:.2f}% over {result['n']} images"
        )
    return result
