"""scikit-learn's handwritten digits: the offline profile's data, real and shipped inside a package.

1,797 8x8 images of the digits 0-9, scaled to [0, 1] and upsampled to ``image_size`` pixels (32 by
default), one channel. A fixed stratified split (1097 / 200 / 500, seed 0) that never changes, so
numbers in the book stay comparable: *train* for training, *val* for every choice made by looking at
results, *test* for the numbers reported at the end.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import Dataset
from torchvision.transforms import v2

from meal_lite.config.choices import AUGMENT_STRENGTHS, check_choice
from meal_lite.errors import ConfigError

__all__ = [
    "DIGITS_SPLIT",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DIGITS_DEFAULT_SIZE",
    "DIGITS_DATA_CONFIG",
    "DIGITS_AUGMENTATIONS",
    "digits_data_config",
    "DigitsDataset",
    "digits_datasets",
]


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


#: The training augmentations by strength (``data.augment_strength``), as RandomAffine arguments.
#: mild: small rotations, shifts and zooms (the default; the teachers' recipe). strong: views far enough
#: from the originals that the teachers are unsure on some of them, so their targets carry more than
#: the label (a lever of Beyer et al. 2022; chapter 5 measures the targets' entropy on the training views).
DIGITS_AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "mild": {"degrees": 10, "translate": (0.1, 0.1), "scale": (0.9, 1.1)},
    "strong": {"degrees": 25, "translate": (0.2, 0.2), "scale": (0.7, 1.2), "shear": 15},
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

    def __init__(
        self, split: str = "train", image_size: int = DIGITS_DEFAULT_SIZE, augment: bool = False, strength: str = "mild"
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"Unknown digits split {split!r}; use train, val or test.")
        check_choice(strength, "data.augment_strength", AUGMENT_STRENGTHS)
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
        self.strength = strength
        self.augment = None
        if augment:
            # Random affine jitter: what handwriting varies by. Fill 0 = the ink-free background.
            self.augment = v2.RandomAffine(**DIGITS_AUGMENTATIONS[strength], interpolation=v2.InterpolationMode.BILINEAR)

    def __len__(self) -> int:
        return len(self.targets)

    def raw_image(self, i: int) -> Image.Image:
        """The i-th digit before any transform: a grey PIL image (8-bit)."""
        return Image.fromarray((self.images[i, 0].numpy() * 255).round().astype(np.uint8))  # 2-D uint8: mode "L"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if self.augment is not None:
            img = self.augment(img)  # before normalisation, so the fill value 0 is the background
        return (img - DIGITS_MEAN) / DIGITS_STD, self.targets[i]


def digits_datasets(
    image_size: int = DIGITS_DEFAULT_SIZE, augment: bool = True, strength: str = "mild"
) -> dict[str, DigitsDataset]:
    """The fixed train / val / test splits (augmentation of ``strength``, if asked, on train only)."""
    return {
        "train": DigitsDataset("train", image_size, augment=augment, strength=strength),
        "val": DigitsDataset("val", image_size, augment=False),
        "test": DigitsDataset("test", image_size, augment=False),
    }

