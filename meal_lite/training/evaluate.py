"""Running a model over a loader: the one loop that every score in meal-lite comes from.

:func:`model_outputs` yields a model's outputs batch by batch (images moved to the device, channels
last and autocast when asked); :func:`evaluate` turns them into loss, top-1 and top-5, summed over
processes under DDP; :func:`collect_logits` keeps them, in order, on the CPU. Training runs, the
demo, the experiments, the book and ``meal-lite eval`` (:mod:`meal_lite.training.eval_checkpoint`)
all score models through them.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from meal_lite.data.loaders import LimitedLoader
from meal_lite.training.distributed import all_reduce_sum

__all__ = ["autocast", "collect_logits", "evaluate", "model_outputs", "prepare_images"]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or nothing when ``dtype`` is None (full precision)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def prepare_images(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch of images on ``device``, in channels-last layout when asked."""
    images = images.to(device, non_blocking=True)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_classes: int | None = None,
    *,
    channels_last: bool = False,
    wrap: Callable[[Iterable], Iterable] | None = None,
    limit_batches: int | None = None,
) -> dict:
    """Cross-entropy on labels and top-1 / top-5 accuracy (percent) of ``model`` over ``loader``.

    The one evaluation loop of meal-lite: training runs, the demo, the book and ``meal-lite eval``
    all score models with it. ``limit_batches`` stops after that many batches; ``wrap`` wraps the batch
    iterable (a progress bar). Top-5 is top-``min(5, classes)``. Under DDP the sums are all-reduced
    over processes. The model's train/eval mode is restored afterwards.
    Returns ``{"loss", "top1", "top5", "n"}``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1 hits, top5 hits, n
    batches = LimitedLoader(loader, limit_batches)
    for logits, labels in model_outputs(model, wrap(batches) if wrap else batches, device, amp_dtype, channels_last=channels_last):
        k = min(5, num_classes or logits.shape[1], logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
        sums += torch.stack(
            [
                F.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
            ]
        )
    model.train(was_training)
    all_reduce_sum(sums)
    loss, top1, top5, n = sums.tolist()
    if n == 0:
        return {"loss": float("nan"), "top1": float("nan"), "top5": float("nan"), "n": 0}
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "n": int(n)}


def model_outputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    *,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(outputs as float32, labels)`` of ``forward`` for each batch of ``loader``, both on ``device``.

    ``forward`` is a model or any callable from images to outputs (an ensemble's probabilities); it is
    called under ``torch.no_grad()``. Setting a model's eval mode is the caller's business.
    """
    device = torch.device(device)
    for batch in loader:
        images = prepare_images(batch[0], device, channels_last)
        labels = torch.as_tensor(batch[1]).to(device, non_blocking=True)
        with torch.no_grad(), autocast(device, amp_dtype):
            outputs = forward(images)
        yield outputs.float(), labels


@torch.no_grad()
def collect_logits(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, C), labels (N,))`` of ``model`` over ``loader``, in order, on the CPU (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    outs, labels = [], []
    for logits, targets in model_outputs(model, loader, device):
        outs.append(logits.cpu())
        labels.append(targets.cpu())
    model.train(was_training)
    return torch.cat(outs), torch.cat(labels)
