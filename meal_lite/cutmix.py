"""CutMix as a batch transform for distillation: paste a box of one image into another, then distil.

CutMix (Yun et al. 2019) replaces a random box of each image with the same box of another image of
the batch. A supervised run must then mix the two one-hot labels by area; a distilled run need not:
the teachers see the very same mixed image as the student, so their soft target already describes it.
That is how meal-lite applies it - to the batch, before the teachers and the student (the paper's
"ResNet-50 + CutMix" row) - and why ``data.cutmix_prob > 0`` requires a teacher objective.

Every random draw (whether to mix, the area, the box, the partner permutation) comes from torch's
global CPU generator, which a checkpoint saves and restores, so a resumed run mixes the same way.
"""

from __future__ import annotations

import math

import torch

__all__ = ["cutmix_box", "cutmix"]


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """A box ``(top, bottom, left, right)`` covering about ``1 - lam`` of the image, centre uniform."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def cutmix(images: torch.Tensor, prob: float, beta: float = 1.0) -> torch.Tensor:
    """``images`` (N, C, H, W) CutMixed with probability ``prob`` (a new tensor), else unchanged.

    With probability ``prob`` one area fraction ``lam ~ Beta(beta, beta)`` and one box are drawn for the
    batch, and every image gets that box from ``images[perm]`` for a random permutation ``perm``.
    """
    if prob <= 0 or images.shape[0] < 2 or float(torch.rand(())) >= prob:
        return images
    lam = float(torch.distributions.Beta(beta, beta).sample())
    perm = torch.randperm(images.shape[0]).to(images.device)
    top, bottom, left, right = cutmix_box(images.shape[-2], images.shape[-1], lam)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
    return mixed
