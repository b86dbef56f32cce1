"""Image-folder datasets: ImageNette (downloaded by torchvision) and ImageNet (a local copy).

- **ImageNette**: ten easy ImageNet classes, through torchvision's ``datasets.Imagenette`` (downloaded
  on first use, from the official address or a mirror, by :mod:`meal_lite.data.sources`). Its folders are ImageNet wnids, so ImageNet-pretrained teachers can classify it by
  keeping ten of their 1000 logits (:data:`IMAGENETTE_IMAGENET_INDICES`, used by
  :class:`meal_lite.models.factory.ClassSubset`).
- **ImageNet**: an ``ImageFolder`` root with ``train/`` and ``val/``, 1000 wnid folders each, with the
  paper's transforms at 224 or 380 px.

Both check their class folders before torchvision reads them, name an unreadable image file in one
sentence (or skip it with ``data.skip_bad_files``), and say how to get the data when it is missing. A
relative ``root`` is resolved by :func:`meal_lite.data.sources.resolve_data_root` (inside a checkout:
against the project root, so the command line and the chapters share one copy).
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image
from timm.data import ImageNetInfo
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder, Imagenette

from meal_lite.config.choices import IMAGENETTE_SIZES, check_choice
from meal_lite.errors import DataError, first_line
from meal_lite.data.transforms import build_transforms, paper_data_config
from meal_lite.data.sources import download_imagenette, imagenette_archive, imagenette_folder_name, resolve_data_root
from meal_lite.network import OFFLINE_HINT

__all__ = [
    "IMAGENET_INDEX_OF_WNID",
    "IMAGENETTE_WNIDS",
    "IMAGENETTE_CLASSES",
    "IMAGENETTE_IMAGENET_INDICES",
    "IMAGENETTE_URLS",
    "imagenet_indices",
    "imagenet_wnids",
    "imagenette_datasets",
    "imagenet_datasets",
    "CheckedImageFolder",
    "ImageLoader",
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

#: The official archives torchvision downloads, by size (a mirror: ``MEAL_LITE_IMAGENETTE_URL``).
IMAGENETTE_URLS = {size: url for size, (url, _) in Imagenette._ARCHIVES.items()}


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


class ImageLoader:
    """PIL RGB loader that names the file when it cannot be decoded (picklable for worker processes)."""

    def __call__(self, path: str) -> Image.Image:
        try:
            with open(path, "rb") as f:
                img = Image.open(f)
                return img.convert("RGB")  # decodes the whole image, so truncation is caught here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise _BadImageError(
                f"Cannot read image file '{path}' ({first_line(exc, 120)}); delete or replace it, or set "
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



def _check_class_folders(split_dir: Path, expected: Sequence[str], what: str, fix: str) -> None:
    """The one check of a split folder: it exists and holds exactly the ``expected`` class folders.

    torchvision would otherwise fail later with a bare KeyError (ImageNette) or silently build a dataset
    with the wrong label order (ImageFolder).
    """
    found = _folder_classes(split_dir)
    if tuple(found) != tuple(expected):
        raise DataError(
            f"'{split_dir}' holds {len(found)} class folders ({_class_mismatch(found, expected)}) but {what} "
            f"needs exactly {'its ten' if len(expected) == 10 else f'the {len(expected)}'} wnids; {fix}."
        )


class _Imagenette(_SkipBadFilesMixin, Imagenette):
    """torchvision's Imagenette with named-file errors and optional skipping of unreadable files.

    Like every meal-lite dataset it has ``targets`` (labels without decoding an image) and
    ``raw_image(i)`` (the i-th image before any transform). torchvision reads each size's URL and md5
    from the class attribute ``_ARCHIVES``; this instance's own names the archive meal-lite downloads
    (:func:`meal_lite.data.sources.imagenette_archive`: a mirror or the official one), and its download
    leaves nothing half-extracted (:func:`meal_lite.data.sources.download_imagenette`).
    """

    def __init__(self, root: str, *, size: str, archive: tuple[str, str], **kwargs: Any) -> None:
        self._ARCHIVES = {**Imagenette._ARCHIVES, size: archive}
        super().__init__(root, size=size, **kwargs)

    def _download(self) -> None:
        if not self._check_exists():
            download_imagenette(Path(self.root), self._size, self._url, self._md5)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self._samples]

    def raw_image(self, index: int) -> Image.Image:
        return Image.open(self._samples[index][0]).convert("RGB")


class CheckedImageFolder(_SkipBadFilesMixin, ImageFolder):
    """torchvision's ImageFolder with named-file errors and optional skipping of unreadable files."""

    def raw_image(self, index: int) -> Image.Image:
        return Image.open(self.samples[index][0]).convert("RGB")


# --------------------------------------------------------------------------------------------------
# ImageNette


def imagenette_datasets(
    root: str | os.PathLike = "data",
    size: str = "160px",
    download: bool = True,
    data_config: Mapping[str, Any] | None = None,
    skip_bad_files: bool = False,
    augment: bool = True,
) -> dict[str, Dataset]:
    """ImageNette's train and val splits through ``torchvision.datasets.Imagenette``.

    ``root`` (relative: see :func:`~meal_lite.data.sources.resolve_data_root`) holds (or will hold) ``imagenette2-160/``, ``imagenette2-320/`` or ``imagenette2/`` for
    ``size`` 160px, 320px or full. Transforms come from ``data_config`` (a timm data config; default:
    ImageNet mean/std at 160 px). Labels follow sorted wnid order, i.e. :data:`IMAGENETTE_WNIDS`.
    Raises :class:`DataError` (one sentence) when the data is missing and cannot be downloaded, is
    incomplete, or has other classes than ImageNette's ten.
    """
    check_choice(size, "data.imagenette_size", IMAGENETTE_SIZES)
    root = resolve_data_root(root)
    url, md5 = imagenette_archive(size)
    folder = root / imagenette_folder_name(size)
    data_config = data_config or paper_data_config(160 if size == "160px" else 224)
    _check_imagenette_folder(root, folder, url, size, download)
    out: dict[str, Dataset] = {}
    for split in ("train", "val"):
        transform = build_transforms(data_config, train=(split == "train" and augment))
        try:
            ds = _Imagenette(str(root), split=split, size=size, archive=(url, md5), download=download,
                             transform=transform, loader=ImageLoader())
        except (OSError, RuntimeError) as exc:
            # The download's failures are DataErrors already; torchvision raises RuntimeError for a missing
            # folder and FileNotFoundError for a class folder without images.
            raise DataError(
                f"ImageNette at '{folder}' is incomplete ({first_line(exc)}); delete it and download again "
                f"(data.download=true) or extract {url} into '{root}'."
            ) from None
        ds.skip_bad_files = skip_bad_files
        if tuple(ds.wnids) != IMAGENETTE_WNIDS:  # after a fresh download
            raise DataError(
                f"'{folder / split}' holds the classes {', '.join(ds.wnids)} but ImageNette needs exactly "
                f"{', '.join(IMAGENETTE_WNIDS)}; delete '{folder}' and download it again."
            )
        out[split] = ds
    return out


def _check_imagenette_folder(root: Path, folder: Path, url: str, size: str, download: bool) -> None:
    """Before torchvision looks: the data is there (or may be downloaded) and has ImageNette's classes."""
    if not folder.exists():
        if not download:
            raise DataError(
                f"ImageNette ({size}) was not found at '{folder}' and data.download is false; set "
                f"data.download=true, or download {url} and extract it into '{root}', {OFFLINE_HINT}."
            )
        return  # the download probes the host it will use first (meal_lite.data.sources)
    for split in ("train", "val"):
        split_dir = folder / split
        if not split_dir.is_dir():
            raise DataError(
                f"The ImageNette folder '{folder}' has no '{split}' folder, so it is incomplete; delete "
                f"it and download again (data.download=true) or extract {url} into '{root}'."
            )
        _check_class_folders(
            split_dir, IMAGENETTE_WNIDS, "ImageNette",
            f"point data.root at a real ImageNette copy or delete '{folder}' and download it again",
        )


# --------------------------------------------------------------------------------------------------
# ImageNet


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in index order (from timm's bundled ImageNet metadata)."""
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
    root = resolve_data_root(root)
    data_config = data_config or paper_data_config(224)
    out: dict[str, Dataset] = {}
    for split in ("train", "val"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(
                f"ImageNet was not found at '{split_dir}'; ImageNet cannot be downloaded automatically, so "
                f"get ILSVRC2012 from image-net.org and arrange it as '{root}/train/<wnid>/*.JPEG' and "
                f"'{root}/val/<wnid>/*.JPEG' (or use data.dataset=imagenette, {OFFLINE_HINT})."
            )
        _check_class_folders(
            split_dir, imagenet_wnids(), "ImageNet",
            "point data.root at a complete ImageNet copy whose val images are sorted into wnid folders",
        )
        transform = build_transforms(data_config, train=(split == "train" and augment))
        try:
            ds = CheckedImageFolder(str(split_dir), transform=transform, loader=ImageLoader())
        except FileNotFoundError as exc:
            raise DataError(f"ImageNet at '{split_dir}' is incomplete ({first_line(exc)}); fix or re-extract it.") from None
        ds.skip_bad_files = skip_bad_files
        out[split] = ds
    return out
