"""Datasets, transforms and loaders: handwritten digits (offline), ImageNette and ImageNet.

Three datasets, one interface. Each comes with a *data config*, the same kind of dict timm uses to
describe what a pretrained model expects (``input_size`` (C, H, W), ``mean``, ``std``,
``interpolation``, ``crop_pct``, ``crop_mode``). The loader normalises images with it, and every
teacher whose own config differs gets its batch re-normalised/resized on the fly by
:class:`meal_lite.ensemble.InputAdapter`.

- **digits** (the offline profile): scikit-learn's 1,797 8x8 handwritten digits, shipped inside the
  installed package, so a run needs no network at all. A fixed stratified split (1097 / 200 / 500,
  seed 0) that never changes, so numbers in the book stay comparable.
- **ImageNette**: ten easy ImageNet classes, through torchvision's ``datasets.Imagenette`` (downloaded
  on first use). Its folders are ImageNet wnids, so ImageNet-pretrained teachers can classify it by
  keeping ten of their 1000 logits (:data:`IMAGENETTE_IMAGENET_INDICES`, see :mod:`meal_lite.models`).
- **ImageNet**: an ``ImageFolder`` root with ``train/`` and ``val/``, 1000 wnid folders each, with the
  paper's transforms at 224 or 380 px.

Training transforms are RandomResizedCrop + horizontal flip and nothing else: MEAL V2 uses no
auto-augment, no random erasing and no colour jitter (timm's ``create_transform`` adds colour jitter
by default; we switch it off). Evaluation is resize + centre crop.

Data order is a function of ``(seed, epoch)`` only: :func:`build_loader` always uses a sampler with
``set_epoch(epoch)`` (our :class:`EpochSampler` in one process, ``DistributedSampler`` under DDP), so
an interrupted run resumes with exactly the batches it would have seen.
"""

from __future__ import annotations

import functools
import os
import socket
import tarfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Sized

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from torchvision.datasets import ImageFolder, Imagenette

from .errors import ConfigError, DataError

__all__ = [
    "IMAGENET_INDEX_OF_WNID",
    "IMAGENETTE_WNIDS",
    "IMAGENETTE_CLASSES",
    "IMAGENETTE_IMAGENET_INDICES",
    "IMAGENETTE_SIZES",
    "IMAGENETTE_URLS",
    "imagenet_indices",
    "DIGITS_SPLIT",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DIGITS_DATA_CONFIG",
    "digits_data_config",
    "DigitsDataset",
    "digits_datasets",
    "paper_data_config",
    "build_transforms",
    "imagenette_datasets",
    "imagenet_datasets",
    "DatasetSplits",
    "dataset_num_classes",
    "data_config_for",
    "build_datasets",
    "EpochSampler",
    "build_loader",
    "set_loader_epoch",
]

# --------------------------------------------------------------------------------------------------
# ImageNette <-> ImageNet: the ONE table everything else is derived from.
#
# ImageNette's folders are ImageNet synset ids (wnids). The ImageNet-1k index of a wnid is its rank in
# the sorted list of the 1000 wnids (timm's ImageNetInfo agrees; a test checks it). Note: the parachute
# synset is n03888257 (index 701); n03888605, sometimes quoted for it, is "parallel bars" (index 702).
IMAGENET_INDEX_OF_WNID: dict[str, int] = {
    "n01440764": 0,  # tench
    "n02102040": 217,  # English springer
    "n02979186": 482,  # cassette player
    "n03000684": 491,  # chain saw
    "n03028079": 497,  # church
    "n03394916": 566,  # French horn
    "n03417042": 569,  # garbage truck
    "n03425413": 571,  # gas pump
    "n03445777": 574,  # golf ball
    "n03888257": 701,  # parachute
}
_IMAGENETTE_NAME_OF_WNID = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}

#: ImageNette's class order: sorted wnids, which is also torchvision's label order (sorted folders).
IMAGENETTE_WNIDS: tuple[str, ...] = tuple(sorted(IMAGENET_INDEX_OF_WNID))
IMAGENETTE_CLASSES: tuple[str, ...] = tuple(_IMAGENETTE_NAME_OF_WNID[w] for w in IMAGENETTE_WNIDS)


def imagenet_indices(wnids: Sequence[str]) -> tuple[int, ...]:
    """ImageNet-1k logit indices of ``wnids``, in the given order (unknown wnid -> DataError)."""
    unknown = [w for w in wnids if w not in IMAGENET_INDEX_OF_WNID]
    if unknown:
        raise DataError(
            f"No ImageNet index is known for wnid(s) {', '.join(unknown)}; only the ten ImageNette "
            f"classes ({', '.join(IMAGENETTE_WNIDS)}) are mapped."
        )
    return tuple(IMAGENET_INDEX_OF_WNID[w] for w in wnids)


#: Logit indices an ImageNet-1k model keeps to become a 10-class ImageNette model, in ImageNette order.
IMAGENETTE_IMAGENET_INDICES: tuple[int, ...] = imagenet_indices(IMAGENETTE_WNIDS)

IMAGENETTE_SIZES = ("160px", "320px", "full")
# The archives torchvision downloads (and the folder each one extracts to), for error messages.
IMAGENETTE_URLS = {
    "full": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
    "320px": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
    "160px": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
}


def _imagenette_folder(size: str) -> str:
    return Path(IMAGENETTE_URLS[size]).name[: -len(".tgz")]


# --------------------------------------------------------------------------------------------------
# Digits: the offline profile's data

#: (train, val, test) sizes of the fixed stratified split of the 1,797 digits.
DIGITS_SPLIT = (1097, 200, 500)
_DIGITS_SPLIT_SEED = 0
# Normalisation constants: mean and std of the training split's pixels, scaled to [0, 1] (raw values
# are 0..16) and bilinearly upsampled to 32x32. The mean does not depend on the size; the std does a
# little (0.376 at 8 px, 0.319 at 16, 0.324 at 32, 0.325 at 64), and one fixed pair for every size is
# simpler than a table and close enough for a normalisation.
DIGITS_MEAN = 0.3059
DIGITS_STD = 0.3238
DIGITS_DEFAULT_SIZE = 32


def digits_data_config(image_size: int = DIGITS_DEFAULT_SIZE) -> dict[str, Any]:
    """A timm-style data config for the digits at ``image_size`` (1 channel)."""
    return {
        "input_size": (1, int(image_size), int(image_size)),
        "interpolation": "bilinear",
        "mean": (DIGITS_MEAN,),
        "std": (DIGITS_STD,),
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


#: The digits' data config at the default size (32x32, one channel).
DIGITS_DATA_CONFIG = digits_data_config(DIGITS_DEFAULT_SIZE)


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``counts`` (integers summing exactly to total)."""
    exact = counts * total / counts.sum()
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - quota.sum()]] += 1
    return quota


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(images in [0, 1] as float32 (N, 8, 8), labels (N,), split name -> sorted sample indices)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    n_train, n_val, n_test = DIGITS_SPLIT
    assert n_train + n_val + n_test == len(labels)
    # Our own stratified split on NumPy's legacy RandomState, whose stream NumPy guarantees never to
    # change (unlike a library splitter's algorithm), so the split is the same on every install.
    rng = np.random.RandomState(_DIGITS_SPLIT_SEED)
    classes, counts = np.unique(labels, return_counts=True)
    test_q, val_q = _largest_remainder(counts, n_test), _largest_remainder(counts, n_val)
    split: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c, tq, vq in zip(classes, test_q, val_q):
        idx = rng.permutation(np.flatnonzero(labels == c))
        split["test"] += idx[:tq].tolist()
        split["val"] += idx[tq : tq + vq].tolist()
        split["train"] += idx[tq + vq :].tolist()
    return images, labels, {k: np.array(sorted(v), dtype=np.int64) for k, v in split.items()}


class DigitsDataset(Dataset):
    """One split of scikit-learn's handwritten digits as 1-channel tensors of ``image_size`` pixels.

    Images are scaled to [0, 1], upsampled (bilinear) from 8x8 once at construction, optionally
    augmented with a small random affine transform (training only), then normalised with
    :data:`DIGITS_MEAN` / :data:`DIGITS_STD`. The augmentation draws from torch's *global* RNG (it is
    a ``torchvision.transforms.v2`` transform), so restoring the RNG state from a checkpoint makes a
    resumed run see exactly the same augmented images.
    """

    classes = tuple(str(d) for d in range(10))
    num_classes = 10

    def __init__(self, split: str = "train", image_size: int = DIGITS_DEFAULT_SIZE, augment: bool = False) -> None:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"Unknown digits split {split!r}; use train, val or test.")
        if int(image_size) < 8:
            raise ConfigError(f"data.image_size={image_size} is too small for the 8x8 digits; use 8 or more (default 32).")
        images, labels, splits = _digits_arrays()
        self.split = split
        self.image_size = int(image_size)
        self.indices = splits[split]  # positions in sklearn's load_digits()
        x = torch.from_numpy(images[self.indices]).unsqueeze(1)  # (N, 1, 8, 8)
        if self.image_size != 8:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        self.images = x.contiguous()
        self.targets = labels[self.indices].tolist()
        self.data_config = digits_data_config(self.image_size)
        self.augment = None
        if augment:
            from torchvision.transforms import v2

            # Small rotations, shifts and zooms: what handwriting varies by. Fill 0 = background ink-free.
            self.augment = v2.RandomAffine(
                degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), interpolation=v2.InterpolationMode.BILINEAR
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if self.augment is not None:
            img = self.augment(img)  # before normalisation, so the fill value 0 is the background
        return (img - DIGITS_MEAN) / DIGITS_STD, self.targets[i]


def digits_datasets(image_size: int = DIGITS_DEFAULT_SIZE, augment: bool = True) -> dict[str, DigitsDataset]:
    """The fixed train / val / test splits (augmentation, if asked, on train only)."""
    return {
        "train": DigitsDataset("train", image_size, augment=augment),
        "val": DigitsDataset("val", image_size, augment=False),
        "test": DigitsDataset("test", image_size, augment=False),
    }


# --------------------------------------------------------------------------------------------------
# Transforms


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
    """timm transforms for a data config: RandomResizedCrop + flip (train), resize + centre crop (eval).

    No auto-augment, no random erasing, no colour jitter: the paper's recipe uses none of them.
    """
    import timm.data

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


# --------------------------------------------------------------------------------------------------
# Image files: loading with a clear error (or skipping) for unreadable files


class _BadImageError(DataError):
    """Internal: one image file could not be read (message names the file).

    A DataLoader worker that hits it is re-raised in the main process as
    ``_BadImageError("Caught _BadImageError in DataLoader worker process 0. Original Traceback...")``;
    we keep only our own sentence (the traceback's last line), so the user still reads one sentence.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = [line for line in message.strip().splitlines() if line.strip()][-1]
            head, sep, tail = last.partition(": ")
            message = tail if sep and "Error" in head else last
        super().__init__(message)


class _ImageLoader:
    """PIL RGB loader that names the file when it cannot be decoded (picklable for worker processes)."""

    def __call__(self, path: str) -> Image.Image:
        try:
            with open(path, "rb") as f:
                img = Image.open(f)
                return img.convert("RGB")  # decodes the whole image, so truncation is caught here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _BadImageError(
                f"Cannot read image file '{path}' ({reason[:120]}); delete or replace it, or set "
                f"data.skip_bad_files=true to skip unreadable files."
            ) from None


class _SkipBadFilesMixin:
    """``__getitem__`` that, when ``skip_bad_files`` is on, replaces an unreadable image by the next one.

    Off (the default), the error names the file and stops the run. On, a warning names it once and the
    sample is replaced by the next readable one, so batch shapes and the epoch length stay the same.
    """

    skip_bad_files: bool = False
    _max_consecutive_bad = 50

    def __getitem__(self, index: int):  # type: ignore[override]
        n = len(self)  # type: ignore[arg-type]
        for offset in range(min(n, self._max_consecutive_bad)):
            try:
                return super().__getitem__((index + offset) % n)  # type: ignore[misc]
            except _BadImageError as exc:
                if not self.skip_bad_files:
                    raise
                reported = self.__dict__.setdefault("_reported_bad", set())
                if (index + offset) % n not in reported:
                    reported.add((index + offset) % n)
                    warnings.warn(f"Skipping an unreadable image: {exc}", RuntimeWarning, stacklevel=2)
        raise DataError(
            f"{self._max_consecutive_bad} consecutive image files from index {index} could not be read; "
            f"the dataset at '{getattr(self, 'root', '?')}' looks corrupt, download it again."
        )


def _folder_classes(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


def _class_mismatch(found: Sequence[str], expected: Sequence[str]) -> str:
    missing = [w for w in expected if w not in set(found)]
    extra = [w for w in found if w not in set(expected)]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if extra:
        parts.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    return "; ".join(parts) if parts else "same names, different order"


# --------------------------------------------------------------------------------------------------
# ImageNette


def _network_reachable(url: str, timeout: float = 3.0) -> bool:
    """A short TCP probe of ``url``'s host, so a missing network fails in seconds, not minutes.

    Behind an HTTP(S) proxy a direct probe says nothing, so we report "reachable" and let the real
    download decide.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


class _Imagenette(_SkipBadFilesMixin, Imagenette):
    """torchvision's Imagenette with named-file errors and optional skipping of unreadable files."""


class _ImageFolder(_SkipBadFilesMixin, ImageFolder):
    """torchvision's ImageFolder with named-file errors and optional skipping of unreadable files."""


def _offline_hint() -> str:
    return "or set MEAL_LITE_PROFILE=offline to run without a network"


def imagenette_datasets(
    root: str | os.PathLike = "data",
    size: str = "160px",
    download: bool = True,
    data_config: Mapping[str, Any] | None = None,
    skip_bad_files: bool = False,
    augment: bool = True,
) -> dict[str, Dataset]:
    """ImageNette's train and val splits through ``torchvision.datasets.Imagenette``.

    ``root`` holds (or will hold) ``imagenette2-160/``, ``imagenette2-320/`` or ``imagenette2/`` for
    ``size`` 160px, 320px or full. Transforms come from ``data_config`` (a timm data config; default:
    ImageNet mean/std at 160 px). Labels follow sorted wnid order, i.e. :data:`IMAGENETTE_WNIDS`.
    Raises :class:`DataError` (one sentence) when the data is missing and cannot be downloaded, is
    incomplete, or has other classes than ImageNette's ten.
    """
    if size not in IMAGENETTE_SIZES:
        raise ConfigError(f"data.imagenette_size must be one of {', '.join(IMAGENETTE_SIZES)}, but was given {size!r}.")
    root = Path(root).expanduser()
    url = IMAGENETTE_URLS[size]
    folder = root / _imagenette_folder(size)
    if data_config is None:
        data_config = paper_data_config(160 if size == "160px" else 224)
    if not folder.exists():
        if not download:
            raise DataError(
                f"ImageNette ({size}) was not found at '{folder}' and data.download is false; set "
                f"data.download=true, or download {url} and extract it into '{root}', {_offline_hint()}."
            )
        if not _network_reachable(url):
            raise DataError(
                f"ImageNette ({size}) is not in '{folder}' and {url} cannot be reached (no network?); "
                f"connect once to download it, or download the archive elsewhere and extract it into "
                f"'{root}', {_offline_hint()}."
            )
    # Check the class folders *before* torchvision looks at them: it fails with a bare KeyError on a
    # folder that is not one of its ten wnids.
    if folder.exists():
        for split in ("train", "val"):
            split_dir = folder / split
            if not split_dir.is_dir():
                raise DataError(
                    f"The ImageNette folder '{folder}' has no '{split}' folder, so it is incomplete; delete "
                    f"it and download again (data.download=true) or extract {url} into '{root}'."
                )
            found = _folder_classes(split_dir)
            if tuple(found) != IMAGENETTE_WNIDS:
                raise DataError(
                    f"'{split_dir}' holds {len(found)} class folders ({_class_mismatch(found, IMAGENETTE_WNIDS)}) "
                    f"but ImageNette needs exactly its ten wnids; point data.root at a real ImageNette copy "
                    f"or delete '{folder}' and download it again."
                )
    out: dict[str, Dataset] = {}
    for split in ("train", "val"):
        transform = build_transforms(data_config, train=(split == "train" and augment))
        try:
            ds = _Imagenette(str(root), split=split, size=size, download=download, transform=transform, loader=_ImageLoader())
        except (OSError, RuntimeError, tarfile.TarError) as exc:
            # URLError (no network) is an OSError; torchvision raises RuntimeError for a missing
            # folder / bad checksum and FileNotFoundError for a class folder without images.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, FileNotFoundError) and folder.exists():
                raise DataError(
                    f"ImageNette at '{folder}' is incomplete ({reason[:160]}); delete it and download "
                    f"again (data.download=true) or extract {url} into '{root}'."
                ) from None
            raise DataError(
                f"ImageNette ({size}) is not in '{folder}' and downloading it failed ({reason[:160]}); "
                f"connect to the network, or download {url} yourself and extract it into '{root}', "
                f"{_offline_hint()}."
            ) from None
        ds.skip_bad_files = skip_bad_files
        if tuple(ds.wnids) != IMAGENETTE_WNIDS:  # after a fresh download
            raise DataError(
                f"'{folder / split}' holds the classes {', '.join(ds.wnids)} but ImageNette needs exactly "
                f"{', '.join(IMAGENETTE_WNIDS)}; delete '{folder}' and download it again."
            )
        out[split] = ds
    return out


# --------------------------------------------------------------------------------------------------
# ImageNet


@functools.lru_cache(maxsize=1)
def _imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in index order (from timm's bundled ImageNet metadata)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def imagenet_datasets(
    root: str | os.PathLike,
    data_config: Mapping[str, Any] | None = None,
    skip_bad_files: bool = False,
    augment: bool = True,
) -> dict[str, Dataset]:
    """ImageNet-1k train and val ``ImageFolder`` s under ``root`` (``root/train/<wnid>/*``, ``root/val/<wnid>/*``).

    ``data_config`` defaults to the paper's 224 px preprocessing (:func:`paper_data_config`). The class
    folders must be exactly the 1000 ImageNet wnids, so label ``i`` is ImageNet index ``i``.
    """
    root = Path(root).expanduser()
    if data_config is None:
        data_config = paper_data_config(224)
    expected = _imagenet_wnids()
    out: dict[str, Dataset] = {}
    for split in ("train", "val"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(
                f"ImageNet was not found at '{split_dir}'; ImageNet cannot be downloaded automatically, so "
                f"get ILSVRC2012 from image-net.org and arrange it as '{root}/train/<wnid>/*.JPEG' and "
                f"'{root}/val/<wnid>/*.JPEG' (or use data.dataset=imagenette, {_offline_hint()})."
            )
        found = _folder_classes(split_dir)
        if tuple(found) != expected:
            raise DataError(
                f"'{split_dir}' holds {len(found)} class folders ({_class_mismatch(found, expected)}) but "
                f"ImageNet needs exactly the 1000 ImageNet-1k wnids; point data.root at a complete ImageNet "
                f"copy whose val images are sorted into wnid folders."
            )
        transform = build_transforms(data_config, train=(split == "train" and augment))
        try:
            ds = _ImageFolder(str(split_dir), transform=transform, loader=_ImageLoader())
        except FileNotFoundError as exc:
            raise DataError(f"ImageNet at '{split_dir}' is incomplete ({str(exc).strip()[:160]}); fix or re-extract it.") from None
        ds.skip_bad_files = skip_bad_files
        out[split] = ds
    return out


# --------------------------------------------------------------------------------------------------
# From a run configuration


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


_NUM_CLASSES = {"digits": 10, "imagenette": 10, "imagenet": 1000}


def dataset_num_classes(dataset: str) -> int:
    """Class count of a dataset by name, known without touching the disk (digits/imagenette 10, imagenet 1000)."""
    try:
        return _NUM_CLASSES[dataset]
    except KeyError:
        raise ConfigError(f"Unknown dataset {dataset!r}; data.dataset must be one of {', '.join(_NUM_CLASSES)}.") from None


def _data_field(data_cfg: Any, name: str, default: Any) -> Any:
    return getattr(data_cfg, name, default) if data_cfg is not None else default


def data_config_for(data_cfg: Any, model_data_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data config a run's images use, from ``cfg.data`` and the student's timm data config.

    - digits: :func:`digits_data_config` at ``data.image_size`` (default 32), whatever the model;
    - imagenette: the student's own config (mean, std, interpolation, crop_pct), with its size
      replaced by ``data.image_size`` when that is set;
    - imagenet: the paper's preprocessing (:func:`paper_data_config`) at ``data.image_size`` or the
      student's size, with the student's mean/std.

    Applying it twice gives the same result, so the student builder and the dataset builder agree.
    """
    dataset = _data_field(data_cfg, "dataset", "imagenette")
    image_size = _data_field(data_cfg, "image_size", None)
    dataset_num_classes(dataset)  # validates the name
    if dataset == "digits":
        return digits_data_config(image_size or DIGITS_DEFAULT_SIZE)
    cfg = dict(model_data_config or paper_data_config(224))
    if dataset == "imagenet":
        size = image_size or int(cfg["input_size"][-1])
        return paper_data_config(size, mean=cfg["mean"], std=cfg["std"])
    if image_size:
        cfg["input_size"] = (int(cfg["input_size"][0]), int(image_size), int(image_size))
    return cfg


def build_datasets(data_cfg: Any, model_data_config: Mapping[str, Any] | None = None) -> DatasetSplits:
    """All splits of the configured dataset (``cfg.data``), transformed for the student.

    Returns a :class:`DatasetSplits` (train, val, and test for digits) carrying ``num_classes`` and
    the ``data_config`` used (see :func:`data_config_for`).
    """
    dataset = _data_field(data_cfg, "dataset", "imagenette")
    config = data_config_for(data_cfg, model_data_config)
    augment = bool(_data_field(data_cfg, "augment", True))
    skip = bool(_data_field(data_cfg, "skip_bad_files", False))
    root = _data_field(data_cfg, "root", "data")
    if dataset == "digits":
        splits: Mapping[str, Dataset] = digits_datasets(int(config["input_size"][-1]), augment=augment)
        names: Sequence[str] = DigitsDataset.classes
    elif dataset == "imagenette":
        splits = imagenette_datasets(
            root,
            size=_data_field(data_cfg, "imagenette_size", "160px"),
            download=bool(_data_field(data_cfg, "download", True)),
            data_config=config,
            skip_bad_files=skip,
            augment=augment,
        )
        names = IMAGENETTE_CLASSES
    else:
        splits = imagenet_datasets(root, data_config=config, skip_bad_files=skip, augment=augment)
        names = _imagenet_wnids()
    return DatasetSplits(splits, num_classes=dataset_num_classes(dataset), data_config=config, class_names=names, dataset=dataset)


# --------------------------------------------------------------------------------------------------
# Loaders


class EpochSampler(Sampler[int]):
    """Shuffled (or sequential) indices whose order is a function of ``(seed, epoch)`` only.

    Call ``set_epoch(epoch)`` before each epoch, as with ``DistributedSampler``. The permutation comes
    from a private ``torch.Generator`` seeded with a mix of ``seed`` and ``epoch`` (NumPy's
    ``SeedSequence``, so that nearby seeds and epochs give unrelated orders), never from the global RNG.
    With ``world_size > 1`` it yields this rank's share, ``indices[rank::world_size]``, without the
    padding ``DistributedSampler`` adds; that is what evaluation wants (every image counted once).
    """

    def __init__(
        self, data_source: Sized | int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n = data_source if isinstance(data_source, int) else len(data_source)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        state = np.random.SeedSequence([abs(self.seed), self.epoch, int(self.seed < 0)]).generate_state(2, dtype=np.uint32)
        g = torch.Generator()
        g.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    pin_memory: bool | None = None,
    drop_last: bool | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> DataLoader:
    """A DataLoader whose sampler has ``set_epoch(epoch)`` in every case.

    - single process: :class:`EpochSampler` (shuffled for training, in order for evaluation);
    - ``distributed`` training: ``torch.utils.data.DistributedSampler`` (shuffle, seed) - each rank
      gets its share, order fixed by ``seed + epoch``; distributed evaluation: :class:`EpochSampler`
      sharded without padding, so each image is counted exactly once.

    ``pin_memory`` defaults to "CUDA is available"; ``drop_last`` defaults to ``train`` (a last batch
    of one sample breaks BatchNorm) unless that would leave no batch at all. Workers are not persistent:
    each epoch's workers are seeded from the global torch RNG, which a checkpoint restores, so random
    crops and flips replay exactly on resume.
    """
    if batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, but was given {batch_size!r}.")
    sampler: Sampler[int]
    if distributed:
        if rank is None or world_size is None:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise ConfigError("build_loader(distributed=True) needs an initialised process group or explicit rank and world_size.")
            rank, world_size = dist.get_rank(), dist.get_world_size()
        if train:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
        else:
            sampler = EpochSampler(dataset, shuffle=False, seed=seed, rank=rank, world_size=world_size)
    else:
        sampler = EpochSampler(dataset, shuffle=train, seed=seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if drop_last is None:
        drop_last = bool(train) and len(sampler) >= batch_size
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Call ``set_epoch(epoch)`` on the loader's sampler (a no-op for samplers without it)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
