"""The datasets of a run, by name: digits (offline), ImageNette, ImageNet and any image folder, with their data configs.

Four datasets, one interface. Each comes with a *data config*, the same kind of dict timm uses to
describe what a pretrained model expects (``input_size`` (C, H, W), ``mean``, ``std``,
``interpolation``, ``crop_pct``, ``crop_mode``). The loader normalises images with it, and every
teacher whose own config differs gets its batch re-normalised/resized on the fly by
:class:`meal_lite.core.ensemble.InputAdapter`.

The datasets themselves live in :mod:`meal_lite.data.digits`, :mod:`meal_lite.data.imagefolders` and
:mod:`meal_lite.data.folder` (a folder of your own, whose class count is the number of its class folders), their
transforms in :mod:`meal_lite.data.transforms` and the loaders in :mod:`meal_lite.data.loaders`; this module
turns the ``data`` section of a configuration into them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch.utils.data import Dataset

import os

from meal_lite.data.digits import DIGITS_DEFAULT_SIZE, DigitsDataset, digits_data_config, digits_datasets
from meal_lite.config.choices import DATASETS
from meal_lite.errors import ConfigError
from meal_lite.data.folder import folder_classes, folder_datasets
from meal_lite.data.subsets import per_class, split_per_class
from meal_lite.data.imagefolders import IMAGENETTE_CLASSES, imagenet_datasets, imagenet_wnids, imagenette_datasets
from meal_lite.data.transforms import paper_data_config

__all__ = ["DatasetSplits", "dataset_num_classes", "dataset_class_names", "data_config_for", "build_datasets"]


class DatasetSplits(dict):
    """``split name -> Dataset`` plus what the rest of a run needs to know about the data.

    Attributes: ``num_classes``, ``data_config`` (the timm-style config the images are normalised
    with), ``class_names`` and ``dataset`` (the dataset's name).
    """

    def __init__(
        self,
        splits: Mapping[str, Dataset],
        *,
        num_classes: int,
        data_config: Mapping[str, Any],
        class_names: Sequence[str],
        dataset: str,
    ) -> None:
        super().__init__(splits)
        self.num_classes = int(num_classes)
        self.data_config = dict(data_config)
        self.class_names = tuple(class_names)
        self.dataset = dataset


def dataset_num_classes(dataset: str, root: str | os.PathLike | None = None) -> int:
    """Class count of a dataset by name (digits/imagenette 10, imagenet 1000; folder: its class folders under ``root``)."""
    try:
        count = DATASETS[dataset]
    except KeyError:
        raise ConfigError(f"Unknown dataset {dataset!r}; data.dataset must be one of {', '.join(DATASETS)}.") from None
    if count is not None:
        return count
    if root is None:
        raise ConfigError(
            f"The {dataset} dataset's class count is the number of class folders under data.root, so it needs "
            f"data.root (the folder with train/ and val/)."
        )
    return len(folder_classes(root))


def dataset_class_names(data: Any) -> tuple[str, ...]:
    """The class names of the ``data`` section's dataset, in label order, without loading an image.

    digits: ``0``-``9``; imagenette: the ten class names; imagenet: the 1000 wnids; folder: the class
    folders' names (which :func:`~meal_lite.data.folder.folder_classes` checks).
    """
    if data.dataset == "folder":
        return folder_classes(data.root)
    if data.dataset == "imagenet":
        return imagenet_wnids()
    dataset_num_classes(data.dataset)  # an unknown name: one sentence naming the valid ones
    return tuple(DigitsDataset.classes if data.dataset == "digits" else IMAGENETTE_CLASSES)


def data_config_for(data: Any, model_data_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data config a run's images use, from the ``data`` section and the student's timm data config.

    ``data`` is a run's :class:`~meal_lite.config.schema.DataConfig` (or anything with its attributes).

    - digits: :func:`~meal_lite.data.digits.digits_data_config` at ``data.image_size`` (default 32), whatever
      the model;
    - imagenette and folder: the student's own config (mean, std, interpolation, crop_pct), with its
      size replaced by ``data.image_size`` when that is set;
    - imagenet: the paper's preprocessing (:func:`~meal_lite.data.transforms.paper_data_config`) at
      ``data.image_size`` or the student's size, with the student's mean/std.

    Applying it twice gives the same result, so the student builder and the dataset builder agree.
    """
    if data.dataset not in DATASETS:
        dataset_num_classes(data.dataset)  # names the valid datasets
    if data.dataset == "digits":
        return digits_data_config(data.image_size or DIGITS_DEFAULT_SIZE)
    cfg = dict(model_data_config or paper_data_config(224))
    if data.dataset == "imagenet":
        size = data.image_size or int(cfg["input_size"][-1])
        return paper_data_config(size, mean=cfg["mean"], std=cfg["std"])
    if data.image_size:
        cfg["input_size"] = (int(cfg["input_size"][0]), int(data.image_size), int(data.image_size))
    return cfg


def cut_splits(splits: Mapping[str, Dataset], data: Any) -> dict[str, Dataset]:
    """The splits cut to ``data.train_per_class``, ``data.val_per_class`` and ``data.test_per_class``.

    A dataset without a test split of its own gets one from its validation folder (the images after the
    first ``val_per_class`` of each class), so settings chosen on the validation images are reported on
    images they were not chosen on. Unset (None) keeps every image.
    """
    out = dict(splits)
    train, val, test = (getattr(data, f"{split}_per_class", None) for split in ("train", "val", "test"))
    if train is not None:
        out["train"] = per_class(out["train"], train, "data.train_per_class")
    if val is not None and "test" in out:  # the digits: a test split of their own
        out["val"] = per_class(out["val"], val, "data.val_per_class")
        if test is not None:
            out["test"] = per_class(out["test"], test, "data.test_per_class")
    elif val is not None:
        out["val"], out["test"] = split_per_class(out["val"], val, test, "data.val_per_class")
    return out


def build_datasets(data: Any, model_data_config: Mapping[str, Any] | None = None) -> DatasetSplits:
    """All splits of the configured dataset, transformed for the student.

    Returns a :class:`DatasetSplits` (train, val, and test for digits) carrying ``num_classes`` and
    the ``data_config`` used (see :func:`data_config_for`).
    """
    config = data_config_for(data, model_data_config)
    splits: Mapping[str, Dataset]
    if data.dataset == "folder":
        splits = folder_datasets(data.root, data_config=config, skip_bad_files=data.skip_bad_files, augment=data.augment)
        names: Sequence[str] = folder_classes(data.root)
    elif data.dataset == "digits":
        splits = digits_datasets(int(config["input_size"][-1]), augment=data.augment, strength=data.augment_strength)
        names = DigitsDataset.classes
    elif data.dataset == "imagenette":
        splits = imagenette_datasets(
            data.root,
            size=data.imagenette_size,
            download=data.download,
            data_config=config,
            skip_bad_files=data.skip_bad_files,
            augment=data.augment,
        )
        names = IMAGENETTE_CLASSES
    else:
        splits = imagenet_datasets(data.root, data_config=config, skip_bad_files=data.skip_bad_files, augment=data.augment)
        names = imagenet_wnids()
    splits = cut_splits(splits, data)
    return DatasetSplits(splits, num_classes=len(names), data_config=config, class_names=names, dataset=data.dataset)
