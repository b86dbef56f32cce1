"""The datasets of a run, by name: digits (offline), ImageNette and ImageNet, with their data configs.

Three datasets, one interface. Each comes with a *data config*, the same kind of dict timm uses to
describe what a pretrained model expects (``input_size`` (C, H, W), ``mean``, ``std``,
``interpolation``, ``crop_pct``, ``crop_mode``). The loader normalises images with it, and every
teacher whose own config differs gets its batch re-normalised/resized on the fly by
:class:`meal_lite.core.ensemble.InputAdapter`.

The datasets themselves live in :mod:`meal_lite.data.digits` and :mod:`meal_lite.data.imagefolders`, their
transforms in :mod:`meal_lite.data.transforms` and the loaders in :mod:`meal_lite.data.loaders`; this module
turns the ``data`` section of a configuration into them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch.utils.data import Dataset

from meal_lite.data.digits import DIGITS_DEFAULT_SIZE, DigitsDataset, digits_data_config, digits_datasets
from meal_lite.config.choices import DATASETS
from meal_lite.errors import ConfigError
from meal_lite.data.imagefolders import IMAGENETTE_CLASSES, imagenet_datasets, imagenet_wnids, imagenette_datasets
from meal_lite.data.transforms import paper_data_config

__all__ = ["DatasetSplits", "dataset_num_classes", "data_config_for", "build_datasets"]


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


def dataset_num_classes(dataset: str) -> int:
    """Class count of a dataset by name (digits/imagenette 10, imagenet 1000)."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ConfigError(f"Unknown dataset {dataset!r}; data.dataset must be one of {', '.join(DATASETS)}.") from None


def data_config_for(data: Any, model_data_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data config a run's images use, from the ``data`` section and the student's timm data config.

    ``data`` is a run's :class:`~meal_lite.config.schema.DataConfig` (or anything with its attributes).

    - digits: :func:`~meal_lite.data.digits.digits_data_config` at ``data.image_size`` (default 32), whatever
      the model;
    - imagenette: the student's own config (mean, std, interpolation, crop_pct), with its size
      replaced by ``data.image_size`` when that is set;
    - imagenet: the paper's preprocessing (:func:`~meal_lite.data.transforms.paper_data_config`) at
      ``data.image_size`` or the student's size, with the student's mean/std.

    Applying it twice gives the same result, so the student builder and the dataset builder agree.
    """
    dataset_num_classes(data.dataset)  # validates the name
    if data.dataset == "digits":
        return digits_data_config(data.image_size or DIGITS_DEFAULT_SIZE)
    cfg = dict(model_data_config or paper_data_config(224))
    if data.dataset == "imagenet":
        size = data.image_size or int(cfg["input_size"][-1])
        return paper_data_config(size, mean=cfg["mean"], std=cfg["std"])
    if data.image_size:
        cfg["input_size"] = (int(cfg["input_size"][0]), int(data.image_size), int(data.image_size))
    return cfg


def build_datasets(data: Any, model_data_config: Mapping[str, Any] | None = None) -> DatasetSplits:
    """All splits of the configured dataset, transformed for the student.

    Returns a :class:`DatasetSplits` (train, val, and test for digits) carrying ``num_classes`` and
    the ``data_config`` used (see :func:`data_config_for`).
    """
    config = data_config_for(data, model_data_config)
    splits: Mapping[str, Dataset]
    if data.dataset == "digits":
        splits = digits_datasets(int(config["input_size"][-1]), augment=data.augment, strength=data.augment_strength)
        names: Sequence[str] = DigitsDataset.classes
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
    return DatasetSplits(
        splits, num_classes=dataset_num_classes(data.dataset), data_config=config, class_names=names, dataset=data.dataset
    )
