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
from contextlib import nullcontext
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import DataConfig
from .data import build_datasets, data_config_for, dataset_num_classes
from .distributed import all_reduce_sum, resolve_device
from .errors import ConfigError
from .loaders import LimitedLoader, build_loader
from .models import adapt_to_dataset, create_model, model_data_config

__all__ = ["autocast", "evaluate", "evaluate_checkpoint", "prepare_images"]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or nothing when ``dtype`` is None (full precision)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def prepare_images(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch of images on ``device``, in channels-last layout when asked."""
    images = images.to(device, non_blocking=True)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_classes: int | None = None,
    *,
    channels_last: bool = False,
    wrap: Callable[[Iterable], Iterable] | None = None,
    limit_batches: int | None = None,
) -> dict:
    """Cross-entropy on labels and top-1 / top-5 accuracy (percent) of ``model`` over ``loader``.

    The one evaluation loop of meal-lite: training runs, the demo, the book and ``meal-lite eval``
    all score models with it. ``limit_batches`` stops after that many batches; ``wrap`` wraps the batch
    iterable (a progress bar). Top-5 is top-``min(5, classes)``. Under DDP the sums are all-reduced
    over processes. The model's train/eval mode is restored afterwards.
    Returns ``{"loss", "top1", "top5", "n"}``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1 hits, top5 hits, n
    batches = LimitedLoader(loader, limit_batches)
    for batch in wrap(batches) if wrap else batches:
        images = prepare_images(batch[0], device, channels_last)
        labels = batch[1].to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        k = min(5, num_classes or logits.shape[1], logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
        sums += torch.stack(
            [
                F.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
            ]
        )
    model.train(was_training)
    all_reduce_sum(sums)
    loss, top1, top5, n = sums.tolist()
    if n == 0:
        return {"loss": float("nan"), "top1": float("nan"), "top5": float("nan"), "n": 0}
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "n": int(n)}


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
