"""Tiny stand-ins for ImageNette and ImageNet, written as real JPEG files, for offline tests.

``make_fake_imagenette`` writes torchvision's layout (``root/imagenette2-160/{train,val}/<wnid>/*.JPEG``)
with all ten wnids and a few small images per class, so the real ``torchvision.datasets.Imagenette``
code path runs on it. Each class has its own colour (plus noise), so a model can learn something in
a few steps. ``make_fake_imagenet`` writes an ImageNet-style ImageFolder (``root/{train,val}/<wnid>``)
with the 1000 ImageNet-1k wnids.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from meal_lite.data.imagefolders import IMAGENETTE_WNIDS

FOLDER_OF_SIZE = {"160px": "imagenette2-160", "320px": "imagenette2-320", "full": "imagenette2"}


def _colour(k: int) -> np.ndarray:
    """A distinct RGB colour for class k."""
    rng = np.random.RandomState(1000 + k)
    return rng.randint(30, 226, size=3)


def jpeg_bytes(k: int, size: tuple[int, int] = (40, 30), seed: int = 0) -> bytes:
    """JPEG bytes of a ``size`` (width, height) image of class colour ``k`` with a little noise."""
    rng = np.random.RandomState(seed)
    w, h = size
    pixels = np.clip(_colour(k)[None, None, :] + rng.randint(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def make_fake_imagenette(
    root: str | Path,
    size: str = "160px",
    n_train: int = 3,
    n_val: int = 2,
    image_size: tuple[int, int] = (40, 30),
    wnids: Sequence[str] = IMAGENETTE_WNIDS,
) -> Path:
    """Write a fake ImageNette under ``root`` in torchvision's layout; return ``root``."""
    root = Path(root)
    base = root / FOLDER_OF_SIZE[size]
    for split, n in (("train", n_train), ("val", n_val)):
        for k, wnid in enumerate(wnids):
            folder = base / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{k:04d}{i:04d}.JPEG"
                (folder / name).write_bytes(jpeg_bytes(k, image_size, seed=100 * k + i + (0 if split == "train" else 7)))
    return root


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in index order."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def make_fake_imagenet(
    root: str | Path, n_per_class: int = 1, wnids: Sequence[str] | None = None, image_size: tuple[int, int] = (20, 16)
) -> Path:
    """Write a fake ImageNet ImageFolder (``root/{train,val}/<wnid>/*.JPEG``); return ``root``."""
    root = Path(root)
    wnids = imagenet_wnids() if wnids is None else tuple(wnids)
    blobs = [jpeg_bytes(k, image_size, seed=k) for k in range(8)]  # reuse a few encodings: fast
    for split in ("train", "val"):
        for k, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                (folder / f"{wnid}_{i}.JPEG").write_bytes(blobs[(k + i) % len(blobs)])
    return root


def write_not_an_image(path: str | Path) -> Path:
    """A file with a .JPEG name that is not an image at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a jpeg, just text\n" * 4)
    return path


def write_truncated_jpeg(path: str | Path, k: int = 0) -> Path:
    """A real JPEG cut in half (the header is fine, decoding fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(k, (64, 48))
    path.write_bytes(data[: len(data) // 2])
    return path
