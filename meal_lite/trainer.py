"""The training loop: optimiser, schedule, precision, checkpoints and exact resume around an objective.

What a step *computes* belongs to :class:`~meal_lite.objective.Objective` (targets, losses,
discriminator). The :class:`Trainer` runs it: for each batch, the objective's loss, ONE backward and
ONE optimiser step (:meth:`Trainer.train_step`); per epoch, the learning-rate schedule, an evaluation
and an atomic checkpoint. It never asks what kind of objective it runs.

The optimiser is the official code's: one SGD (or AdamW) with two parameter groups, the student at
``optim.lr`` and the discriminator at ``discriminator.lr``, stepped by a per-epoch MultiStepLR. The
official code also sets every group's learning rate to the student's at the start of each epoch, so
its discriminator never trains at 1e-4; ``discriminator.lr_follows_student: true`` reproduces that.

A run states its global batch; the per-process batch, the gradient accumulation steps and the lr
scaling follow from the world size (:mod:`meal_lite.batching`), and one step over accumulated
micro-batches, one epoch of steps and the mid-epoch checkpoints live in :mod:`meal_lite.stepping`.

Resuming from ``last.pt`` restores the student, discriminator, optimiser, scheduler, grad scaler and
every RNG (:mod:`meal_lite.state`), at an epoch's end or mid-epoch, so on CPU a resumed run ends with
bit-identical weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .batching import plan_batches
from .config import Config, DiscriminatorConfig, OptimConfig
from .distributed import DistributedContext, resolve_device
from .errors import ConfigError
from .evaluate import evaluate
from .objective import Objective
from .recorder import RunRecorder, epoch_summary
from .state import restore_training_state, resume_if_asked, save_epoch, training_state
from .stepping import EpochSums, check_finite, optimizer_step, overwrite_group_lrs, run_epoch

__all__ = ["Callback", "EpochSums", "Trainer", "build_optimizer", "build_scheduler", "check_finite", "overwrite_group_lrs", "resolve_amp"]

Callback = Callable[["Trainer", int, dict], Any]


def build_optimizer(
    objective: Objective, optim_cfg: OptimConfig, disc_cfg: DiscriminatorConfig, lr_scale: float = 1.0
) -> torch.optim.Optimizer:
    """ONE optimiser for everything trainable, as in the official code.

    Param group 0 is the student at ``optim_cfg.lr``; group 1 (only with a discriminator) is the
    discriminator at its own ``disc_cfg.lr``; both times ``lr_scale`` (global batch / reference batch,
    see :mod:`meal_lite.batching`). Groups carry a ``name`` for logs.
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


class Trainer:
    """Trains an objective's student (and discriminator): the loop, optimiser, schedule, checkpoints.

    Args:
        objective: the :class:`~meal_lite.objective.Objective` (student, teachers, losses); moved to the
            run's device and, under DDP, its trainable part wrapped once.
        train_loader: yields ``(images, labels, ...)``; its sampler's ``set_epoch`` is called each epoch.
        val_loader: evaluated every ``train.eval_every`` epochs and at the last epoch (None: never).
        cfg: the run :class:`~meal_lite.config.Config` (``optim``, ``discriminator`` lrs, ``train``).
        out_dir: where ``last.pt``, ``best.pt`` and ``metrics.jsonl`` go (None: write nothing).
        ctx: the :class:`~meal_lite.distributed.DistributedContext` (None: one process on ``train.device``).
        callbacks: ``cb(trainer, epoch, metrics)`` called after each epoch's checkpoint (1-based epoch).
        verbose: print one summary line per epoch (main process only).
    """

    def __init__(
        self,
        objective: Objective,
        train_loader: Iterable,
        val_loader: Iterable | None = None,
        *,
        cfg: Config,
        out_dir: str | Path | None = None,
        ctx: DistributedContext | None = None,
        callbacks: Sequence[Callback] = (),
        verbose: bool = True,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or DistributedContext(device=resolve_device(cfg.train.device))
        self.device = self.ctx.device
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.callbacks = list(callbacks)
        self.recorder = RunRecorder(out_dir, is_main=self.ctx.is_main, progress=cfg.train.progress, verbose=verbose)
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
        self.objective = objective.to(self.device, memory_format=memory_format)
        if self.ctx.distributed:
            self.objective.prepare_distributed([self.device.index] if self.device.type == "cuda" else None)
        self.plan = plan_batches(cfg, self.ctx.world_size)  # global batch -> per process x accumulation
        self.optimizer = build_optimizer(self.objective, cfg.optim, cfg.discriminator, self.plan.lr_scale)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.completed_epochs = 0
        self.best_top1: float | None = None
        self.resume_point: dict | None = None  # set by a mid-epoch resume: {"step", "sums", "seen"}

    @property
    def student(self) -> nn.Module:
        return self.objective.student

    @property
    def discriminator(self) -> nn.Module | None:
        return self.objective.discriminator

    # -- one step, one epoch --------------------------------------------------------------------
    def train_step(self, batch: Sequence[Any], *, epoch: int = 0, step: int = 0) -> dict[str, torch.Tensor]:
        """Forward, the objective's loss, ONE backward, ONE optimiser step on ``batch``; its parts, detached.

        The returned dict holds the objective's parts (``loss``, ``kl``, ...) as 0-dim tensors and ``n``,
        the batch size; nothing is synchronised with the host, except to check that the loss is finite.
        ``epoch`` and ``step`` (0-based) only name the place in an error message. A step over several
        accumulated micro-batches is :func:`meal_lite.stepping.optimizer_step`.
        """
        return optimizer_step(self, [batch], epoch=epoch, step=step)

    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the training data (``epoch`` is 0-based); returns the epoch's training metrics."""
        return run_epoch(self, epoch)

    def evaluate(self, loader: Iterable | None = None) -> dict:
        """Loss, top-1 and top-5 of the (unwrapped) student on ``loader`` (default: the validation loader)."""
        # The unwrapped student: DDP replicas hold the same weights, and a DDP forward could start
        # collectives that hang when ranks see different numbers of evaluation batches.
        return evaluate(
            self.student,
            loader if loader is not None else self.val_loader,
            self.device,
            self.amp_dtype,
            channels_last=self.cfg.train.channels_last,
            wrap=lambda batches: self.recorder.bar(batches, desc="eval"),
            limit_batches=self.cfg.train.limit_batches,
        )

    def _maybe_evaluate(self, epoch: int) -> dict:
        due = (epoch + 1) % self.cfg.train.eval_every == 0 or epoch + 1 == self.cfg.train.epochs
        result = self.evaluate() if self.val_loader is not None and due else {}
        return {f"val_{k}": result.get(k) for k in ("loss", "top1", "top5")}

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train up to ``train.epochs`` (continuing from ``last.pt`` when ``train.resume``); per-epoch metrics."""
        resume_if_asked(self)
        self.recorder.start(self.completed_epochs)
        history = []
        for epoch in range(self.completed_epochs, self.cfg.train.epochs):
            started = time.perf_counter()
            metrics = self.train_one_epoch(epoch)
            metrics.update(self._maybe_evaluate(epoch))
            metrics["seconds"] = time.perf_counter() - started
            self.scheduler.step()
            self.completed_epochs = epoch + 1
            save_epoch(self, metrics)
            self.recorder.append_metrics(metrics)
            self.recorder.log(epoch_summary(metrics, self.cfg.train.epochs))
            history.append(metrics)
            for callback in self.callbacks:
                callback(self, epoch + 1, metrics)
        # Leave no gradient behind: a finished student may become a teacher, and a stale .grad would
        # move it under any optimiser that holds its parameters.
        self.optimizer.zero_grad(set_to_none=True)
        return history

    # -- checkpoint state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (see :func:`meal_lite.state.training_state`)."""
        return training_state(self)

    def load_state_dict(self, state: dict, source: str = "the checkpoint") -> None:
        """Restore :meth:`state_dict` output; a checkpoint of another run raises CheckpointError."""
        restore_training_state(self, state, source)
