"""Data: datasets by name, their transforms, seeded loaders and the soft-label cache format.

- :mod:`~meal_lite.data.datasets` -- digits (offline), ImageNette and ImageNet by name, with data configs;
- :mod:`~meal_lite.data.digits` -- scikit-learn's digits, the offline profile's real data;
- :mod:`~meal_lite.data.imagefolders` -- ImageNette (downloaded by torchvision) and ImageNet folders;
- :mod:`~meal_lite.data.folder` -- any image folder (``train/`` and ``val/``, one folder per class), checked;
- :mod:`~meal_lite.data.sources` -- the data root, and ImageNette's archive (official or a mirror);
- :mod:`~meal_lite.data.transforms` -- timm data configs to transforms (the paper's recipe);
- :mod:`~meal_lite.data.loaders` -- loaders whose batches depend on ``(seed, epoch)`` only;
- :mod:`~meal_lite.data.subsets` -- smaller copies: the first images of each class, every n-th image;
- :mod:`~meal_lite.data.softlabels` -- cached soft labels: the format, the crops, their replay.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "base_item": "meal_lite.data.softlabels",
    "build_datasets": "meal_lite.data.datasets",
    "build_loader": "meal_lite.data.loaders",
    "build_transforms": "meal_lite.data.transforms",
    "CACHE_FORMAT": "meal_lite.data.softlabels",
    "CachedCrops": "meal_lite.data.softlabels",
    "CachedSoftLabels": "meal_lite.data.softlabels",
    "CacheError": "meal_lite.data.softlabels",
    "CheckedImageFolder": "meal_lite.data.imagefolders",
    "crop_spec": "meal_lite.data.softlabels",
    "CropSpec": "meal_lite.data.softlabels",
    "data_config_for": "meal_lite.data.datasets",
    "dataset_class_names": "meal_lite.data.datasets",
    "dataset_fingerprint": "meal_lite.data.softlabels",
    "dataset_num_classes": "meal_lite.data.datasets",
    "DatasetSplits": "meal_lite.data.datasets",
    "DIGITS_AUGMENTATIONS": "meal_lite.data.digits",
    "DIGITS_CROP": "meal_lite.data.softlabels",
    "DIGITS_DATA_CONFIG": "meal_lite.data.digits",
    "digits_data_config": "meal_lite.data.digits",
    "digits_datasets": "meal_lite.data.digits",
    "DIGITS_DEFAULT_SIZE": "meal_lite.data.digits",
    "DIGITS_MEAN": "meal_lite.data.digits",
    "DIGITS_SPLIT": "meal_lite.data.digits",
    "DIGITS_STD": "meal_lite.data.digits",
    "DigitsDataset": "meal_lite.data.digits",
    "download_imagenette": "meal_lite.data.sources",
    "draw_crop": "meal_lite.data.softlabels",
    "EpochSampler": "meal_lite.data.loaders",
    "every_nth": "meal_lite.data.subsets",
    "per_class": "meal_lite.data.subsets",
    "select": "meal_lite.data.subsets",
    "split_per_class": "meal_lite.data.subsets",
    "folder_classes": "meal_lite.data.folder",
    "folder_datasets": "meal_lite.data.folder",
    "FOLDER_SPLITS": "meal_lite.data.folder",
    "ImageLoader": "meal_lite.data.imagefolders",
    "imagenet_datasets": "meal_lite.data.imagefolders",
    "IMAGENET_INDEX_OF_WNID": "meal_lite.data.imagefolders",
    "imagenet_indices": "meal_lite.data.imagefolders",
    "imagenet_wnids": "meal_lite.data.imagefolders",
    "imagenette_archive": "meal_lite.data.sources",
    "IMAGENETTE_CLASSES": "meal_lite.data.imagefolders",
    "imagenette_datasets": "meal_lite.data.imagefolders",
    "imagenette_folder_name": "meal_lite.data.sources",
    "IMAGENETTE_IMAGENET_INDICES": "meal_lite.data.imagefolders",
    "IMAGENETTE_URLS": "meal_lite.data.imagefolders",
    "IMAGENETTE_WNIDS": "meal_lite.data.imagefolders",
    "LimitedLoader": "meal_lite.data.loaders",
    "MANIFEST_NAME": "meal_lite.data.softlabels",
    "mix_seed": "meal_lite.data.loaders",
    "paper_data_config": "meal_lite.data.transforms",
    "project_root": "meal_lite.data.sources",
    "rebuild_targets": "meal_lite.data.softlabels",
    "record_dtype": "meal_lite.data.softlabels",
    "render_crop": "meal_lite.data.softlabels",
    "replay_cache": "meal_lite.data.softlabels",
    "resolve_data_root": "meal_lite.data.sources",
    "SeededViews": "meal_lite.data.loaders",
    "set_loader_epoch": "meal_lite.data.loaders",
    "SoftLabelCache": "meal_lite.data.softlabels",
    "teacher_config_identity": "meal_lite.data.softlabels",
    "topk_error_bound": "meal_lite.data.softlabels",
    "view_seed": "meal_lite.data.loaders",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
