"""Cached soft labels (FKD-style): the stored format, the crops, and training by replaying them.

MEAL V2's cost is its teachers: every student step runs two or three large networks forward. A
*soft-label cache* runs them once, over ``R`` random crops (and flips) of every training image, and
stores per crop what training needs to see the same thing again:

- the crop box ``(top, left, height, width)`` in the source image's pixels and the flip bit;
- the ensemble's top-``k`` probabilities (float16) and their class indices (int16, or int32 beyond
  32767 classes).

That is ``9 + 4k`` bytes per crop (29 at k=5, about 37 MB for one crop of each of ImageNet's 1.28M
training images), in a few large shard files (not one file per image) plus ``manifest.json``.
Generation lives in :mod:`meal_lite.training.softlabel_cache`; this module reads a cache and replays it.

**Replay keeps teacher and student consistent.** :class:`CachedCrops` renders, for image ``i`` in epoch
``e``, stored crop ``r = e mod R`` with the very function (:func:`render_crop`) that rendered it for the
teachers, so the student sees the pixels the teachers saw (a test checks pixel identity). Taking the
crops in turn uses every stored crop once before any repeats. The rendering runs in the DataLoader's
workers: a cached record travels with its image as ``(image, label, top-k probs, top-k classes)``.

**Rebuilding the target.** :class:`CachedSoftLabels` (the teacher-source protocol of
:class:`~meal_lite.core.ensemble.TeacherEnsemble`: ``targets(images, batch) -> EnsembleOutput``) puts the
stored probabilities at their classes and spreads the remaining mass ``m = 1 - sum(top-k)`` evenly
over the other ``C - k`` classes, as FKD does, then renormalises (float16 sums are off by ~1e-3).
Error bound, with ``p`` the ensemble's full distribution and ``q`` the rebuilt one: the top-k entries
are exact up to float16 rounding and the others both sum to ``m``, so

    ||q - p||_1  <=  2 m  +  2**-10          (m = the tail mass, which the cache itself knows)

and ``m <= (C - k) * p_(k)`` (each tail class is at most the k-th largest probability). Tests check
the bound for every k. A cache stores no logits, so the discriminator sees probabilities: see
:class:`CachedSoftLabels`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from timm.data.transforms import RandomResizedCropAndInterpolation
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from meal_lite.data.datasets import DatasetSplits
from meal_lite.core.ensemble import EnsembleOutput
from meal_lite.errors import DataError
from meal_lite.files import file_sha256
from meal_lite.data.loaders import SeededViews, mix_seed

__all__ = [
    "CACHE_FORMAT",
    "MANIFEST_NAME",
    "CacheError",
    "CropSpec",
    "DIGITS_CROP",
    "crop_spec",
    "base_item",
    "draw_crop",
    "render_crop",
    "record_dtype",
    "dataset_fingerprint",
    "SoftLabelCache",
    "CachedCrops",
    "CachedSoftLabels",
    "rebuild_targets",
    "topk_error_bound",
    "teacher_config_identity",
    "replay_cache",
]

CACHE_FORMAT = "meal-lite-softlabels/1"
MANIFEST_NAME = "manifest.json"
_CROP_TAG = 0xCAC4E  # keeps crop seeds apart from SeededViews' view seeds


class CacheError(DataError):
    """A soft-label cache is missing, made for another run, or damaged."""


# --------------------------------------------------------------------------------------------------
# Crops


@dataclass(frozen=True)
class CropSpec:
    """The random crop a cache stores: RandomResizedCrop's parameters, the flip rate and the normalisation."""

    size: tuple[int, int]
    scale: tuple[float, float]
    ratio: tuple[float, float]
    interpolation: str
    hflip: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as stored in the manifest


#: The digits' train transform is a small random affine, not a crop, so the offline profile's cache uses
#: this RandomResizedCrop instead: at least half the image (smaller crops lose the digit) and no flip
#: (a mirrored 2 or 7 is not a digit; the digits transform never flips either).
DIGITS_CROP = dict(scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear", hflip=0.0)


def crop_spec(dataset: Dataset, data_config: Mapping[str, Any]) -> CropSpec:
    """The crop a cache of ``dataset`` (a run's train split) stores, read from the run's train transform.

    Image folders: the timm/torchvision ``RandomResizedCrop`` and ``RandomHorizontalFlip`` of the
    dataset's training transform (scale, ratio, interpolation, flip rate), so the cached crops are drawn
    like the online ones. Digits: :data:`DIGITS_CROP`.
    """
    size = tuple(int(s) for s in data_config["input_size"][-2:])
    norm = dict(mean=tuple(float(m) for m in data_config["mean"]), std=tuple(float(s) for s in data_config["std"]))
    if hasattr(dataset, "images") and not hasattr(dataset, "transform"):
        return CropSpec(size=size, **DIGITS_CROP, **norm)  # type: ignore[arg-type]
    steps = getattr(getattr(dataset, "transform", None), "transforms", [])
    crops = [t for t in steps if hasattr(t, "scale") and hasattr(t, "ratio")]
    if not crops:
        raise CacheError(
            "The training transform has no RandomResizedCrop, so there are no random crops to cache; "
            "set data.augment=true."
        )
    flips = [float(t.p) for t in steps if type(t).__name__ == "RandomHorizontalFlip"]
    interp = crops[0].interpolation
    interp = interp[0] if isinstance(interp, (tuple, list)) else interp
    return CropSpec(
        size=size, scale=tuple(crops[0].scale), ratio=tuple(crops[0].ratio),
        interpolation=InterpolationMode(interp).value, hflip=flips[0] if flips else 0.0, **norm,
    )


def base_item(dataset: Dataset, index: int) -> tuple[Any, int]:
    """Image ``index`` before any augmentation (a PIL image, or a float tensor in [0, 1]) and its label.

    Knows the datasets meal-lite builds: in-memory ``images``/``targets`` (the digits) and torchvision
    image folders (``samples`` or ImageNette's ``_samples``, read with the dataset's ``loader``).
    """
    if hasattr(dataset, "images"):
        return dataset.images[index], int(dataset.targets[index])
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is None:
        raise CacheError(f"Cannot read un-augmented images from a {type(dataset).__name__}; use a meal-lite dataset.")
    path, label = samples[index]
    return dataset.loader(path), int(label)




def draw_crop(image: Any, spec: CropSpec, seed: int, index: int, crop: int) -> tuple[tuple[int, int, int, int], bool]:
    """Crop ``crop`` of image ``index``: ``((top, left, height, width), flip)``, a function of the seeds only.

    timm's own ``RandomResizedCropAndInterpolation.get_params`` draws the box (Python's ``random``,
    reseeded here with ``(seed, crop, index)`` and restored afterwards), so the crops follow the same
    distribution as the online training transform's.
    """
    state = random.getstate()
    try:
        random.seed(mix_seed(seed, crop, index, _CROP_TAG))
        box = RandomResizedCropAndInterpolation.get_params(image, spec.scale, spec.ratio)
        flip = random.random() < spec.hflip
    finally:
        random.setstate(state)
    return tuple(int(v) for v in box), bool(flip)  # type: ignore[return-value]


def render_crop(
    image: Any, box: Sequence[int], flip: bool, spec: CropSpec
) -> torch.Tensor:
    """The normalised crop the teachers (at generation) and the student (at replay) both
    see.

    The same operations as the online training transform: ``resized_crop`` on the PIL
    image (or, for in-memory tensors, antialiased on the tensor), ``to_tensor``, the
    flip, the normalisation.
    """
    top, left, height, width = (int(v) for v in box)
    mode = InterpolationMode(spec.interpolation)
    if isinstance(image, torch.Tensor):
        out = F.resized_crop(
            image, top, left, height, width, list(spec.size), mode, antialias=True
        )
    else:
        out = F.to_tensor(
            F.resized_crop(image, top, left, height, width, list(spec.size), mode)
        )
    if flip:
        out = F.hflip(out)
    return F.normalize(out, list(spec.mean), list(spec.std))


# --------------------------------------------------------------------------------------------------
# Records and the manifest


def record_dtype(top_k: int, num_classes: int) -> np.dtype:
    """One stored crop, packed: box (4 x uint16), flip (uint8), top-k probs (float16), classes (int16/32)."""
    index_type = "<i2" if num_classes <= np.iinfo(np.int16).max else "<i4"
    return np.dtype([("box", "<u2", (4,)), ("flip", "u1"), ("prob", "<f2", (top_k,)), ("cls", index_type, (top_k,))])


def dataset_fingerprint(dataset: Dataset) -> str:
    """A hash of what identifies a training set: its size, labels, and file names or pixels."""
    digest = hashlib.sha256()
    digest.update(f"{type(dataset).__name__}:{len(dataset)}".encode())  # type: ignore[arg-type]
    if hasattr(dataset, "images"):
        digest.update(np.asarray(dataset.targets, dtype=np.int64).tobytes())
        digest.update(dataset.images.contiguous().numpy().tobytes())
    else:
        samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None) or []
        for path, label in samples:
            digest.update(f"{Path(path).parent.name}/{Path(path).name}:{label}\n".encode())
    return digest.hexdigest()[:16]


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of the cache at ``path`` (None when there is none)."""
    file = Path(path) / MANIFEST_NAME
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheError(f"The soft-label manifest '{file}' cannot be read ({exc}); delete the folder and make the cache again.") from None


def check_identity(stored: Mapping[str, Any], expected: Mapping[str, Any], path: Path) -> None:
    """Refuse, in one sentence, a cache made for other teachers, data, transform, k, R or seed."""
    for key, value in expected.items():
        if key in stored and stored[key] != value:
            what = key.replace("_", " ")
            differs = (
                f"{what} = {stored[key]!r}, but this run has {value!r}"
                if isinstance(value, (int, float, str)) else f"a different {what} from this run's"
            )
            raise CacheError(
                f"The soft-label cache at '{path}' was made with {differs}; point soft_labels.path at a new folder, "
                f"or delete '{path}' and make the cache again."
            )


class SoftLabelCache:
    """A complete cache on disk, checked at open: every shard present, of the right length and checksum.

    ``expected`` is the part of the manifest's identity the run knows (e.g. ``transform``,
    ``dataset``); any difference is refused. Shards are memory-mapped lazily in each process (the
    object pickles without them, so DataLoader workers open their own).
    """

    def __init__(self, path: str | os.PathLike, expected: Mapping[str, Any] | None = None, *, verify: bool = True) -> None:
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise CacheError(
                f"There is no soft-label cache at '{self.path}' (no {MANIFEST_NAME}); make it with "
                f"`meal-lite cache CONFIG soft_labels.path={self.path}` or unset soft_labels.path."
            )
        if manifest.get("format") != CACHE_FORMAT or not manifest.get("complete"):
            raise CacheError(
                f"The soft-label cache at '{self.path}' is unfinished or of another format; run `meal-lite cache` "
                f"with the same config again to complete it."
            )
        check_identity(manifest["identity"], expected or {}, self.path)
        self.manifest = manifest
        identity = manifest["identity"]
        self.top_k, self.crops, self.num_classes = int(identity["top_k"]), int(identity["crops"]), int(identity["num_classes"])
        self.num_images = int(manifest["num_images"])
        self.shard_images = int(manifest["shard_images"])
        self.spec = CropSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in identity["transform"].items()})
        self.dtype = record_dtype(self.top_k, self.num_classes)
        for shard in manifest["shards"]:
            self._check_shard(shard, verify)
        self._maps: dict[int, np.ndarray] = {}

    def _check_shard(self, shard: Mapping[str, Any], verify: bool) -> None:
        file = self.path / shard["file"]
        size = file.stat().st_size if file.is_file() else None
        if size != shard["bytes"] or (verify and file_sha256(file) != shard["sha256"]):
            state = "missing" if size is None else "truncated" if size < shard["bytes"] else "corrupt"
            raise CacheError(
                f"Soft-label shard '{file}' is {state} (expected {shard['bytes']} bytes, sha256 {shard['sha256'][:12]}...); "
                f"delete it and run `meal-lite cache` with the same config to regenerate it."
            )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def __len__(self) -> int:
        return self.num_images * self.crops

    def record(self, record_id: int) -> np.void:
        """Stored crop ``record_id`` (= image index x R + crop number)."""
        shard, offset = divmod(int(record_id), self.shard_images * self.crops)
        if shard not in self._maps:
            self._maps[shard] = np.load(self.path / self.manifest["shards"][shard]["file"], mmap_mode="r")
        return self._maps[shard][offset]


# --------------------------------------------------------------------------------------------------
# Replay


class CachedCrops(SeededViews):
    """The training split replaying cached crops: item ``i`` in epoch ``e`` is stored
    crop ``e mod R``.

    Returns ``(image, label, top-k probabilities (float32), top-k classes (int64))``. A
    :class:`~meal_lite.data.loaders.SeededViews` (so ``build_loader`` does not wrap it
    again and ``set_loader_epoch`` reaches it), but its views are read from the cache,
    not drawn: the run's seed does not change them, the cache's seed does.
    """

    def __init__(self, dataset: Dataset, cache: SoftLabelCache, seed: int = 0) -> None:
        if len(dataset) != cache.num_images:  # type: ignore[arg-type]
            raise CacheError(
                f"The soft-label cache at '{cache.path}' holds {cache.num_images} "
                f"images but the training set has {len(dataset)}; "  # type: ignore
                "make the cache for this dataset."
            )
        super().__init__(dataset, seed)
        self.cache = cache

    def record_id(self, index: int, epoch: int) -> int:
        return int(index) * self.cache.crops + int(epoch) % self.cache.crops

    def view(self, index: int, epoch: int):
        rec = self.cache.record(self.record_id(index, epoch))
        image, label = base_item(self.dataset, index)
        pixels = render_crop(
            image, rec["box"].tolist(), bool(rec["flip"]), self.cache.spec
        )
        probs = torch.from_numpy(rec["prob"].astype(np.float32))
        classes = torch.from_numpy(rec["cls"].astype(np.int64))
        return pixels, label, probs, classes


def rebuild_targets(
    probs: torch.Tensor, classes: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Dense ``(N, C)`` targets from stored top-k: the k probabilities at their classes,
    the remaining mass ``1 - sum`` spread evenly over the other classes, then
    renormalised (see the module docstring)."""
    probs = probs.float()
    n, k = probs.shape
    rest = (1.0 - probs.sum(dim=1, keepdim=True)).clamp_min(0.0)
    fill = rest / (num_classes - k) if k < num_classes else torch.zeros_like(rest)
    out = fill.expand(n, num_classes).clone()
    out.scatter_(1, classes.long(), probs)
    return out / out.sum(dim=1, keepdim=True)


def topk_error_bound(probs: torch.Tensor) -> torch.Tensor:
    """Per record, the documented bound on ``||rebuilt - full||_1``: ``2 * tail mass + 2**-10``."""
    return 2.0 * (1.0 - probs.float().sum(dim=1)).clamp_min(0.0) + 2.0**-10


class CachedSoftLabels:
    """Teacher source reading the ensemble's stored top-k from the batch (``batch[2]``, ``batch[3]``).

    Same protocol as :class:`~meal_lite.core.ensemble.TeacherEnsemble`; returns ``EnsembleOutput(probs=...)``
    with no logits. **Difference from the online mode:** online, the official code's discriminator
    compares student logits with the *mean teacher logits*; a cache keeps no logits, so here (as in the
    MEAL V2 repository's FKD training script) it compares the student's *softmax* with the stored
    ensemble *probabilities*: ``discriminator.input=probs``, required with a cache.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    def targets(self, images: torch.Tensor, batch: Any = None) -> EnsembleOutput:
        if batch is None or len(batch) < 4:
            raise CacheError(
                "A cached teacher source needs batches of (image, label, probs, classes); train on the "
                "CachedCrops dataset of the same cache."
            )
        probs = batch[2].to(images.device, non_blocking=True)
        classes = batch[3].to(images.device, non_blocking=True)
        return EnsembleOutput(probs=rebuild_targets(probs, classes, self.num_classes))

    def __repr__(self) -> str:
        return f"CachedSoftLabels(num_classes={self.num_classes})"


# --------------------------------------------------------------------------------------------------
# A run from a cache


def teacher_config_identity(cfg: Any) -> dict:
    """What a run's config says about its teachers (checked at training time, without building them)."""
    identity = {"preset": cfg.teacher_preset, "teachers": [dataclasses.asdict(t) for t in cfg.teachers]}
    if getattr(cfg, "teacher_image_size", None) is not None:  # unset: caches made before the setting existed still match
        identity["image_size"] = int(cfg.teacher_image_size)
    return identity


def replay_cache(cfg: Any, datasets: DatasetSplits) -> tuple[DatasetSplits, CachedSoftLabels]:
    """The run's datasets with the train split replaying ``cfg.soft_labels.path``, and its teacher source.

    The cache must have been made for this run's teachers (by config), crop transform, data and class
    count; anything else is refused in one sentence.
    """
    train = datasets["train"]
    expected = {
        "teacher_config": teacher_config_identity(cfg),
        "transform": crop_spec(train, datasets.data_config).as_dict(),
        "num_classes": datasets.num_classes,
        "top_k": cfg.soft_labels.top_k,
        "crops": cfg.soft_labels.crops,
        "seed": cfg.soft_labels.seed,
        "dataset": {"name": cfg.data.dataset, "images": len(train), "fingerprint": dataset_fingerprint(train)},
    }
    cache = SoftLabelCache(cfg.soft_labels.path, expected)
    splits = DatasetSplits(
        {**datasets, "train": CachedCrops(train, cache, cfg.train.seed)}, num_classes=datasets.num_classes,
        data_config=datasets.data_config, class_names=datasets.class_names, dataset=datasets.dataset,
    )
    return splits, CachedSoftLabels(datasets.num_classes)
