"""One optimiser step over accumulated micro-batches, and one epoch of them, resumable mid-way.

A step of the paper's global batch (512) may not fit a process's memory at once, so each process
splits its share into ``accum_steps`` micro-batches (:mod:`meal_lite.batching`). :func:`optimizer_step`
runs them: forward and backward per micro-batch, each loss weighted by its share of the images, so
the summed gradient is the gradient of the mean over all of them, then ONE optimiser step for student
and discriminator (the official code's joint step). Under DDP every micro-batch but the last runs in
``no_sync()``, so gradients are all-reduced once per step, not once per micro-batch - and the
discriminator, wrapped in the same DDP module as the student, accumulates the same way.

:func:`run_epoch` is the training half of an epoch: it sets the loader's epoch and start position,
groups the batches into steps, logs, and writes a mid-epoch checkpoint every ``train.checkpoint_every``
steps (see :func:`meal_lite.state.save_state`). A run resumed from such a checkpoint starts at the
next step with the epoch's running sums restored, so its epoch metrics are those of an unbroken run.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from .distributed import DistributedContext, all_reduce_sum
from .errors import NonFiniteLossError
from .evaluate import autocast, prepare_images
from .faults import maybe_fail
from .loaders import set_loader_epoch
from .objective import METRICS
from .state import save_state

__all__ = ["EpochSums", "StepGroups", "check_finite", "optimizer_step", "run_epoch", "overwrite_group_lrs"]


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
        """Continue from sums saved mid-epoch (see :func:`meal_lite.state.save_state`)."""
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


def _sync_unless(trainable: nn.Module, sync: bool):
    """DDP's ``no_sync()`` (no gradient all-reduce in this backward) unless ``sync``; else nothing."""
    if not sync and isinstance(trainable, nn.parallel.DistributedDataParallel):
        return trainable.no_sync()
    return contextlib.nullcontext()


def optimizer_step(trainer: Any, micro_batches: Sequence[Sequence[Any]], *, epoch: int = 0, step: int = 0) -> dict:
    """ONE optimiser step over ``micro_batches``; the step's parts (sample-weighted means) and ``n``.

    Each micro-batch's loss is scaled by its share of the step's images, so the accumulated gradient
    is that of the mean over all of them; DDP all-reduces only in the last backward.
    """
    cfg = trainer.cfg
    total = sum(int(batch[0].shape[0]) for batch in micro_batches)
    trainer.optimizer.zero_grad(set_to_none=True)
    weighted: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(micro_batches):
        images = prepare_images(batch[0], trainer.device, cfg.train.channels_last)
        labels = batch[1].to(trainer.device, non_blocking=True)
        n = int(images.shape[0])
        with _sync_unless(trainer.objective.trainable, sync=i == len(micro_batches) - 1):
            with autocast(trainer.device, trainer.amp_dtype):
                parts = trainer.objective(images, labels, batch)
            check_finite(parts["loss"], trainer.ctx, trainer.recorder.checkpoint_path, epoch, step)
            loss = parts["loss"] if n == total else parts["loss"] * (n / total)
            trainer.scaler.scale(loss).backward()
        if len(micro_batches) == 1:
            weighted = {name: value.detach() for name, value in parts.items()}
        else:
            for name, value in parts.items():
                weighted[name] = weighted.get(name, 0.0) + value.detach().double() * (n / total)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    weighted["n"] = torch.tensor(float(total), device=trainer.device)
    return weighted


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


def run_epoch(trainer: Any, epoch: int) -> dict:
    """Train one epoch (``epoch`` 0-based; continuing at ``trainer.resume_point`` if set); its metrics."""
    cfg, plan = trainer.cfg, trainer.plan
    resume, trainer.resume_point = trainer.resume_point, None
    start = resume["step"] if resume else 0
    skip = set_loader_epoch(trainer.train_loader, epoch, start * plan.accum_steps)
    if trainer.discriminator is not None and cfg.discriminator.lr_follows_student:
        overwrite_group_lrs(trainer.optimizer)
    trainer.objective.train()
    lrs = [group["lr"] for group in trainer.optimizer.param_groups]
    sums = EpochSums(trainer.device)
    if resume:
        sums.load(resume["sums"], resume["seen"])
    started = time.perf_counter()
    groups = StepGroups(trainer.train_loader, plan.accum_steps, start, skip, cfg.train.limit_batches)
    end, every = start + len(groups), cfg.train.checkpoint_every
    bar = trainer.recorder.bar(groups, desc=f"epoch {epoch + 1}/{cfg.train.epochs}")
    for step, group in enumerate(bar, start=start):
        sums.add(optimizer_step(trainer, group, epoch=epoch, step=step))
        if trainer.recorder.show_progress and step % cfg.train.log_every == 0:
            bar.set_postfix(loss=f"{sums.running_loss():.4f}")
        if every and (step + 1) % every == 0 and step + 1 < end:
            save_state(trainer, sums=sums, step_in_epoch=step + 1)
        maybe_fail(trainer.ctx.rank, epoch * end + step + 1)
    metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lrs[0], "disc_lr": lrs[1] if len(lrs) > 1 else None}
    metrics.update(sums.means())
    metrics["train_seconds"] = time.perf_counter() - started
    return metrics
