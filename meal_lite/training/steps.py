"""The stateless pieces of a training step: optimiser, schedule, precision, sums and step groups.

The :class:`~meal_lite.training.trainer.Trainer` puts them together. The optimiser is the official
code's: one SGD (or AdamW) with two parameter groups, the student at ``optim.lr`` and the
discriminator at ``discriminator.lr``, stepped by a per-epoch MultiStepLR. The official code also sets
every group's learning rate to the student's at the start of each epoch, so its discriminator never
trains at 1e-4 (:func:`overwrite_group_lrs`, switched on by ``discriminator.lr_follows_student``).

A step of the paper's global batch (512) may not fit a process's memory at once, so each process
splits its share into ``accum_steps`` micro-batches (:mod:`meal_lite.training.batching`);
:class:`StepGroups` groups a loader's batches into steps, and :class:`EpochSums` keeps an epoch's
running sums on the device, so a step never waits for the host.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from meal_lite.config.schema import DiscriminatorConfig, OptimConfig
from meal_lite.core.objective import METRICS, Objective
from meal_lite.errors import ConfigError, NonFiniteLossError
from meal_lite.training.distributed import DistributedContext, all_reduce_sum

__all__ = [
    "EpochSums",
    "StepGroups",
    "build_optimizer",
    "build_scheduler",
    "check_finite",
    "overwrite_group_lrs",
    "resolve_amp",
    "sync_unless",
]


def build_optimizer(
    objective: Objective, optim_cfg: OptimConfig, disc_cfg: DiscriminatorConfig, lr_scale: float = 1.0
) -> torch.optim.Optimizer:
    """ONE optimiser for everything trainable, as in the official code.

    Param group 0 is the student at ``optim_cfg.lr``; group 1 (only with a discriminator) is the
    discriminator at its own ``disc_cfg.lr``; both times ``lr_scale`` (global batch / reference batch,
    see :mod:`meal_lite.training.batching`). Groups carry a ``name`` for logs.
    """
    lr = optim_cfg.lr * lr_scale
    groups = objective.param_groups(lr, disc_cfg.lr * lr_scale)
    if optim_cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.momentum, weight_decay=optim_cfg.weight_decay)
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=optim_cfg.weight_decay)
    raise ConfigError(f"Config key 'optim.name' must be sgd or adamw, but was given {optim_cfg.name!r}.")


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: OptimConfig) -> torch.optim.lr_scheduler.MultiStepLR:
    """Step regime stepped once per epoch: every group's lr times ``gamma`` at each milestone epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(optim_cfg.milestones), gamma=optim_cfg.gamma)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None on CPU or with ``off``; ``auto`` -> bf16 if the GPU has it, else fp16."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp=bf16 but this GPU does not support bfloat16; use train.amp=fp16 or auto.")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def overwrite_group_lrs(optimizer: torch.optim.Optimizer) -> None:
    """The official code's quirk: every param group gets the student's (group 0's) current lr."""
    lr = optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(loss: torch.Tensor, ctx: DistributedContext, checkpoint: Path | None, epoch: int, step: int) -> None:
    """Stop on a NaN/inf loss before it reaches the weights (and before any checkpoint of this epoch)."""
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if ctx.distributed:
        all_reduce_sum(bad)  # every rank stops together
    if bad.item() == 0:
        return
    last_good = f"'{checkpoint}'" if checkpoint is not None and checkpoint.exists() else "none (no epoch has finished yet)"
    raise NonFiniteLossError(
        f"The training loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; the last good "
        f"checkpoint is {last_good}; lower optim.lr or set train.amp=off, then resume with train.resume=true."
    )


class EpochSums:
    """An epoch's sums of the objective's parts, weighted by batch size, kept on the device (no sync)."""

    def __init__(self, device: torch.device) -> None:
        self.names = list(METRICS)
        self.sums = torch.zeros(len(self.names) + 1, dtype=torch.float64, device=device)  # parts, then samples
        self.seen = [False] * len(self.names)

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        n = parts["n"]
        for i, name in enumerate(self.names):
            if name in parts:
                self.sums[i] += parts[name].double() * n
                self.seen[i] = True
        self.sums[-1] += n

    def load(self, sums: torch.Tensor, seen: Sequence[bool]) -> "EpochSums":
        """Continue from sums saved mid-epoch (see :meth:`meal_lite.training.trainer.Trainer.save`)."""
        self.sums.copy_(sums.to(self.sums))
        self.seen = [bool(s) for s in seen]
        return self

    def running_loss(self) -> float:
        return (self.sums[0] / self.sums[-1].clamp(min=1)).item()

    def means(self) -> dict[str, float | None]:
        """``{metric key: mean over the epoch's samples}`` (summed over processes; None for absent parts)."""
        all_reduce_sum(self.sums)
        totals, count = self.sums[:-1].tolist(), max(self.sums[-1].item(), 1.0)
        return {METRICS[name]: totals[i] / count if self.seen[i] else None for i, name in enumerate(self.names)}


def sync_unless(trainable: nn.Module, sync: bool):
    """DDP's ``no_sync()`` (no gradient all-reduce in this backward) unless ``sync``; else nothing."""
    if not sync and isinstance(trainable, nn.parallel.DistributedDataParallel):
        return trainable.no_sync()
    return contextlib.nullcontext()


class StepGroups:
    """The batches of ``loader`` grouped ``accum`` at a time, from step ``start`` to the epoch's end.

    ``skip`` batches are first dropped here (a loader whose sampler could not skip them itself);
    an incomplete last group is dropped, like an incomplete last batch. ``limit`` caps the epoch's
    steps (``train.limit_batches``, counted in optimiser steps, start included).
    """

    def __init__(self, loader: Iterable, accum: int, start: int = 0, skip: int = 0, limit: int | None = None) -> None:
        self.loader, self.accum, self.skip = loader, accum, skip
        self.start = start
        steps = (len(loader) - skip) // accum  # type: ignore[arg-type]
        self.length = max(min(steps, limit - start), 0) if limit is not None else steps

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[list]:
        batches = itertools.islice(iter(self.loader), self.skip, None)
        for _ in range(self.length):
            yield list(itertools.islice(batches, self.accum))
