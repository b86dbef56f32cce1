"""Any image folder as a dataset (``data.dataset: folder``): ``root/train/<class>/*`` and ``root/val/<class>/*``.

The folder is the whole description of the data: the class folders' names, sorted, are the classes
(label ``i`` is the ``i``-th name, as in torchvision's ``ImageFolder``), so the class count is known
only once the folder has been read. Images may have any size and mode; they are read as RGB and
transformed with a timm data config (the student's, see :func:`meal_lite.data.datasets.data_config_for`).

Everything a user can get wrong is checked before a run writes anything, each with one sentence: a
missing ``train/`` or ``val/``, train and val with different class folders, fewer than two classes, an
empty class folder, and a file that is not an image (its extension) or that no image decoder can
identify (its header). ``data.skip_bad_files: true`` skips such files with a warning instead, through
the same mechanism as the ImageNet and ImageNette folders (:mod:`meal_lite.data.imagefolders`), which
also names - or skips - an image whose data turns out unreadable when it is decoded. Hidden files and
folders (names starting with ``.``, such as ``.DS_Store`` or ``.ipynb_checkpoints``) are ignored.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from meal_lite.data.imagefolders import CheckedImageFolder, ImageLoader
from meal_lite.data.transforms import build_transforms, paper_data_config
from meal_lite.errors import DataError, first_line

__all__ = ["FOLDER_SPLITS", "folder_classes", "folder_datasets"]

#: The two sub-folders a folder dataset needs, each with one folder of images per class.
FOLDER_SPLITS = ("train", "val")
_SKIP_HINT = "or set data.skip_bad_files=true to skip such files"


def _visible_dirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def folder_classes(root: str | os.PathLike) -> tuple[str, ...]:
    """The class names of the folder dataset at ``root``: its class folders, sorted, the same in train and val.

    Reads directory names only (no image). Raises :class:`DataError` (one sentence) when ``root`` has
    no ``train/`` or ``val/`` folder, when the two hold different class folders, or when there are
    fewer than two classes.
    """
    root = Path(root).expanduser()
    found: dict[str, list[str]] = {}
    for split in FOLDER_SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(
                f"The folder dataset at '{root}' has no '{split}' folder; data.root must hold train/ and val/, "
                f"each with one sub-folder of images per class (e.g. '{root}/train/cat/1.jpg')."
            )
        found[split] = _visible_dirs(split_dir)
    train, val = found["train"], found["val"]
    if train != val:
        only_train = sorted(set(train) - set(val))
        only_val = sorted(set(val) - set(train))
        parts = []
        if only_train:
            parts.append(f"only in train: {', '.join(only_train[:5])}")
        if only_val:
            parts.append(f"only in val: {', '.join(only_val[:5])}")
        raise DataError(
            f"'{root / 'train'}' and '{root / 'val'}' hold different class folders ({'; '.join(parts)}); give "
            f"every class a folder of images in both."
        )
    if len(train) < 2:
        raise DataError(
            f"'{root / 'train'}' holds {len(train)} class folder(s) ({', '.join(train) or 'none'}) but a classifier "
            f"needs at least two; put the images of each class in a sub-folder named after the class."
        )
    return tuple(train)


def _is_readable_image(path: str) -> str | None:
    """None if ``path`` looks like an image (extension and header), else what is wrong with it (a verb phrase)."""
    if not path.lower().endswith(IMG_EXTENSIONS):
        return f"is not an image file (images end in {', '.join(IMG_EXTENSIONS)})"
    try:
        with Image.open(path) as img:  # reads the header only: cheap, even for a large folder
            img.size
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        return f"cannot be read as an image ({first_line(exc, 80)})"
    return None


def _scan_split(split_dir: Path, classes: Sequence[str], skip_bad_files: bool) -> frozenset[str]:
    """The paths of the readable images under ``split_dir``'s class folders, exactly as torchvision spells them.

    A bad file stops here with a DataError naming it, or with ``skip_bad_files`` is left out with a
    warning; a class folder left without images is an error either way.
    """
    good: set[str] = set()
    bad: list[tuple[str, str]] = []
    for name in classes:
        class_dir = os.path.join(str(split_dir), name)
        count = 0
        for folder, dirs, files in sorted(os.walk(class_dir, followlinks=True)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for fname in sorted(files):
                if fname.startswith("."):
                    continue
                path = os.path.join(folder, fname)
                why = _is_readable_image(path)
                if why is None:
                    good.add(path)
                    count += 1
                else:
                    bad.append((path, why))
        if bad and not skip_bad_files:
            path, why = bad[0]
            others = f" (and {len(bad) - 1} more file(s) in '{class_dir}')" if len(bad) > 1 else ""
            raise DataError(f"'{path}' {why}{others}; remove it from the dataset folder, {_SKIP_HINT}.")
        if count == 0:
            raise DataError(
                f"The class folder '{class_dir}' holds no readable image; add images to it, or remove the class "
                f"'{name}' from both train/ and val/."
            )
    for path, why in bad:
        warnings.warn(f"Skipping '{path}': it {why}.", RuntimeWarning, stacklevel=3)
    return frozenset(good)


class _ClassFolder(CheckedImageFolder):
    """An ``ImageFolder`` over given classes and given files (hidden folders are never classes)."""

    def __init__(self, root: str, classes: Sequence[str], files: frozenset[str], **kwargs: Any) -> None:
        self.checked_classes = list(classes)
        super().__init__(root, is_valid_file=files.__contains__, **kwargs)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self.checked_classes, {name: i for i, name in enumerate(self.checked_classes)}


def folder_datasets(
    root: str | os.PathLike,
    data_config: Mapping[str, Any] | None = None,
    skip_bad_files: bool = False,
    augment: bool = True,
) -> dict[str, Dataset]:
    """The train and val splits of the folder dataset at ``root``, with timm transforms from ``data_config``.

    ``data_config`` defaults to the paper's 224 px preprocessing; train is augmented (RandomResizedCrop
    + flip) when ``augment``. Every file is checked first (see the module docstring), so a bad folder
    fails here, before a run writes anything. Each split has ``classes``, ``targets`` and ``raw_image(i)``.
    """
    root = Path(root).expanduser()
    classes = folder_classes(root)
    data_config = data_config or paper_data_config(224)
    out: dict[str, Dataset] = {}
    for split in FOLDER_SPLITS:
        split_dir = root / split
        files = _scan_split(split_dir, classes, skip_bad_files)
        transform = build_transforms(data_config, train=(split == "train" and augment))
        ds = _ClassFolder(str(split_dir), classes, files, transform=transform, loader=ImageLoader())
        ds.skip_bad_files = skip_bad_files
        out[split] = ds
    return out
