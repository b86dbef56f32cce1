"""Evaluate a checkpoint (yours or a released MEAL V2 one) on ImageNet, ImageNette or the digits.

``meal-lite eval`` calls :func:`evaluate_checkpoint`. The weights can be a local file or a URL, a raw
state dict (the released MEAL V2 checkpoints, whose keys carry DataParallel's ``module.`` prefix) or a
meal-lite training checkpoint (``last.pt``: the student is taken from it); they are always read with
``weights_only=True``.

A model with 1000 outputs evaluated on ImageNette is scored on the ten ImageNette logits only
(:class:`meal_lite.models.factory.ClassSubset`): the prediction is the best of the ten classes, as if the
model had been built for ImageNette. That is how an ImageNet MEAL V2 student is compared with
ImageNette students without any fine-tuning.
"""

from __future__ import annotations

import os

from meal_lite.config.schema import DataConfig
from meal_lite.data.datasets import build_datasets, data_config_for, dataset_num_classes
from meal_lite.data.loaders import build_loader
from meal_lite.errors import ConfigError
from meal_lite.models.factory import adapt_to_dataset, create_model, model_data_config
from meal_lite.training.distributed import resolve_device
from meal_lite.training.evaluate import evaluate

__all__ = ["evaluate_checkpoint"]


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
    device = resolve_device(device)
    result = {k: v for k, v in evaluate(model.to(device), loader, device).items() if k != "loss"}
    if verbose:
        source = weights if weights else "timm pretrained weights"
        print(
            f"{model_name} ({source}) on {dataset} {split}: top-1 {result['top1']:.2f}%, "
            f"top-5 {result['top5']:.2f}% over {result['n']} images"
        )
    return result
