"""Evaluate a checkpoint (yours or a released MEAL V2 one) on ImageNet, ImageNette or the digits.

``meal-lite eval`` calls :func:`evaluate_checkpoint`. The weights can be a local file or a URL, a raw
state dict (the released MEAL V2 checkpoints, whose keys carry DataParallel's ``module.`` prefix) or a
meal-lite training checkpoint (``last.pt``: the student is taken from it); they are always read with
``weights_only=True``.

A model with 1000 outputs evaluated on ImageNette is scored on the ten ImageNette logits only
(:class:`meal_lite.models.factory.ClassSubset`): the prediction is the best of the ten classes, as if the
model had been built for ImageNette. That is how an ImageNet MEAL V2 student is compared with
ImageNette students without any fine-tuning.

A meal-lite checkpoint stores its run's configuration; a setting not given explicitly is taken from it
(the student's name, the dataset, its root and size, and the image size the run validated at), so the
checkpoint is scored as its training scored it. An explicit argument always wins; without a stored
configuration the defaults apply (the model's own input size).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from meal_lite.config.schema import DataConfig
from meal_lite.data.datasets import build_datasets, data_config_for, dataset_num_classes
from meal_lite.data.loaders import build_loader
from meal_lite.errors import ConfigError
from meal_lite.models.factory import adapt_to_dataset, create_model, model_data_config
from meal_lite.training.distributed import resolve_device
from meal_lite.training.evaluate import evaluate

__all__ = ["evaluate_checkpoint", "stored_run_config"]

#: What evaluation uses when neither an argument nor the checkpoint's configuration says otherwise.
_DEFAULTS = {"dataset": "imagenette", "data_root": "data", "imagenette_size": "160px", "image_size": None,
             "skip_bad_files": False}


def stored_run_config(weights: str | os.PathLike | None) -> Mapping[str, Any] | None:
    """The run configuration a meal-lite checkpoint (``last.pt``, ``best.pt``) stores, or None.

    None for a URL, a ``.safetensors`` file, a raw state dict or anything unreadable (reading the
    weights themselves reports those). Read memory-mapped with ``weights_only=True``.
    """
    if not weights or "://" in str(weights):
        return None
    path = Path(weights).expanduser()
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    config = obj.get("config") if isinstance(obj, Mapping) else None
    return config if isinstance(config, Mapping) else None


def _from_run(stored: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """Each evaluation setting: given explicitly (not None), else the stored run's, else the default."""
    data = dict((stored or {}).get("data") or {})
    run = {"dataset": data.get("dataset"), "data_root": data.get("root"), "imagenette_size": data.get("imagenette_size"),
           "image_size": data.get("image_size"), "skip_bad_files": data.get("skip_bad_files"),
           "model_name": ((stored or {}).get("student") or {}).get("name")}
    out = {}
    for key, value in given.items():
        out[key] = value if value is not None else (run.get(key) if run.get(key) is not None else _DEFAULTS.get(key))
    return out


def evaluate_checkpoint(
    model_name: str | None,
    weights: str | os.PathLike | None,
    *,
    dataset: str | None = None,
    data_root: str | os.PathLike | None = None,
    split: str = "val",
    imagenette_size: str | None = None,
    download: bool = True,
    image_size: int | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "auto",
    num_classes: int | None = None,
    pretrained: bool = False,
    skip_bad_files: bool | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Evaluate timm model ``model_name`` with ``weights`` on a dataset split; return and print top-1/top-5.

    Args:
        model_name: timm name of the architecture the weights belong to (e.g. ``resnet50``; the
            ``mealv2_resnest50`` checkpoints are ResNet-50s); None: the student of the checkpoint's run.
        weights: local file or URL (``module.`` prefix stripped, ``weights_only=True``); None with
            ``pretrained=True`` evaluates timm's own pretrained weights.
        dataset: ``imagenette``, ``imagenet`` (an ImageFolder root with ``train/`` and ``val/``) or ``digits``.
        data_root, imagenette_size, download, skip_bad_files: where and how to find the data (as
            ``cfg.data.root`` etc.). ``dataset``, ``data_root``, ``imagenette_size``, ``image_size`` and
            ``skip_bad_files`` left None come from the checkpoint's stored run configuration, if any.
        split: ``val`` (or ``train``; ``test`` for digits, and for a run that split its validation folder
            with ``data.val_per_class``, whose splits the evaluation keeps).
        image_size: evaluation size; None: the run's ``data.image_size``, else the model's own (ImageNet:
            the paper's 87.5% centre crop).
        num_classes: the checkpoint's class count; None reads it from the checkpoint.
        device: ``auto``, ``cpu``, ``cuda``...
        verbose: print one summary line.

    Returns:
        ``{"top1": percent, "top5": percent, "n": number of images, "model": the timm name, "dataset": its
        name, "image_size": the pixels evaluated at}``. A 1000-class model on ImageNette
        is scored on the ten ImageNette logits.
    """
    if not weights and not pretrained:
        raise ConfigError("evaluate_checkpoint needs weights (a file or URL) or pretrained=True.")
    stored = stored_run_config(weights)
    chosen = _from_run(stored, {
        "model_name": model_name, "dataset": dataset, "data_root": data_root, "imagenette_size": imagenette_size,
        "image_size": image_size, "skip_bad_files": skip_bad_files,
    })
    model_name, dataset, image_size = chosen["model_name"], chosen["dataset"], chosen["image_size"]
    if model_name is None:
        raise ConfigError(
            f"The weights in '{weights}' hold no meal-lite run configuration, so which model they belong to is "
            f"unknown; give its timm name (meal-lite eval --model NAME)."
        )
    n_data = dataset_num_classes(dataset)
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
        root=str(chosen["data_root"]),
        imagenette_size=chosen["imagenette_size"],
        download=download,
        image_size=image_size,
        batch_size=batch_size,
        num_workers=num_workers,
        skip_bad_files=bool(chosen["skip_bad_files"]),
        augment=False,
    )
    # The run's own splits: its validation images (and test split) when it kept part of each class.
    if stored is not None and (stored.get("data") or {}).get("dataset", dataset) == dataset:
        for key in ("train_per_class", "val_per_class", "test_per_class"):
            setattr(data_cfg, key, (stored.get("data") or {}).get(key))
    config = data_config_for(data_cfg, model_data_config(model))
    model = adapt_to_dataset(model, dataset, n_data, name=model_name, role="Model")
    splits = build_datasets(data_cfg, config)
    if split not in splits:
        raise ConfigError(f"Unknown split {split!r} for {dataset}; use one of {', '.join(splits)}.")
    loader = build_loader(splits[split], batch_size, train=False, num_workers=num_workers)
    device = resolve_device(device)
    result = {k: v for k, v in evaluate(model.to(device), loader, device).items() if k != "loss"}
    result.update(model=model_name, dataset=dataset, image_size=int(config["input_size"][-1]))
    if verbose:
        source = weights if weights else "timm pretrained weights"
        print(
            f"{model_name} ({source}) on {dataset} {split} at {result['image_size']} px: top-1 "
            f"{result['top1']:.2f}%, top-5 {result['top5']:.2f}% over {result['n']} images"
        )
    return result
