"""The Trainer: one class that owns a run's step, epoch, loop, checkpoints and exact resume.

What a step *computes* belongs to :class:`~meal_lite.core.objective.Objective` (targets, losses,
discriminator). The :class:`Trainer` runs it: per optimiser step, the objective's loss over the step's
micro-batches, ONE backward per micro-batch and ONE optimiser step for student and discriminator
together (the official code's joint step, :meth:`Trainer.optimizer_step`); per epoch, the learning-rate
schedule, an evaluation and an atomic checkpoint. It never asks what kind of objective it runs.

A run states its global batch; the per-process batch, the gradient accumulation steps and the lr
scaling follow from the world size (:mod:`meal_lite.training.batching`). Under DDP every micro-batch
but the last runs in ``no_sync()``, so gradients are all-reduced once per step.

``last.pt`` holds the student, the discriminator, the optimiser, the learning-rate scheduler, the grad
scaler, every random number generator's state, the epoch and the configuration - tensors, numbers,
strings, lists and dicts only, so it loads with ``weights_only=True``. Restoring all of it makes a
resumed CPU run end with weights bit-identical to an uninterrupted one. A checkpoint written mid-epoch
(``train.checkpoint_every``) also holds the step reached in the epoch (the data order is a function of
the seed, the epoch and the world size, so the step count pins it) and, per rank, the RNG states and
the epoch's running sums; it resumes only with the world size and global batch that wrote it. Every
rank takes part in a save (it gathers those per-rank parts), rank 0 alone writes the file atomically,
and the others wait at a barrier until it is complete.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from meal_lite.config.schema import Config, config_to_dict
from meal_lite.core.objective import Objective
from meal_lite.errors import CheckpointError, first_line
from meal_lite.data.loaders import set_loader_epoch
from meal_lite.training.batching import plan_batches
from meal_lite.checkpoint import (
    get_rng_state,
    load_checkpoint,
    scheduler_state_from_safe,
    scheduler_state_to_safe,
    set_rng_state,
)
from meal_lite.training.distributed import DistributedContext, all_gather_objects, barrier, resolve_device
from meal_lite.training.evaluate import autocast, evaluate, prepare_images
from meal_lite.training.faults import maybe_fail
from meal_lite.training.recorder import BEST_NAME, RunRecorder, epoch_summary
from meal_lite.training.steps import (
    EpochSums,
    StepGroups,
    build_optimizer,
    build_scheduler,
    check_finite,
    overwrite_group_lrs,
    resolve_amp,
    sync_unless,
)

__all__ = ["CHECKPOINT_FORMAT", "Callback", "Trainer"]

CHECKPOINT_FORMAT = "meal-lite/1"

Callback = Callable[["Trainer", int, dict], Any]


class Trainer:
    """Trains an objective's student (and discriminator): the loop, optimiser, schedule, checkpoints.

    Args:
        objective: the :class:`~meal_lite.core.objective.Objective` (student, teachers, losses); moved to the
            run's device and, under DDP, its trainable part wrapped once.
        train_loader: yields ``(images, labels, ...)``; its sampler's ``set_epoch`` is called each epoch.
        val_loader: evaluated every ``train.eval_every`` epochs and at the last epoch (None: never).
        cfg: the run :class:`~meal_lite.config.schema.Config` (``optim``, ``discriminator`` lrs, ``train``).
        out_dir: where ``last.pt``, ``best.pt`` and ``metrics.jsonl`` go (None: write nothing).
        ctx: the :class:`~meal_lite.training.distributed.DistributedContext` (None: one process on ``train.device``).
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

    # -- one step ----------------------------------------------------------------------------------
    def train_step(self, batch: Sequence[Any], *, epoch: int = 0, step: int = 0) -> dict[str, torch.Tensor]:
        """Forward, the objective's loss, ONE backward, ONE optimiser step on ``batch``; its parts, detached.

        The returned dict holds the objective's parts (``loss``, ``kl``, ...) as 0-dim tensors and ``n``,
        the batch size; nothing is synchronised with the host, except to check that the loss is finite.
        ``epoch`` and ``step`` (0-based) only name the place in an error message.
        """
        return self.optimizer_step([batch], epoch=epoch, step=step)

    def optimizer_step(
        self, micro_batches: Sequence[Sequence[Any]], *, epoch: int = 0, step: int = 0
    ) -> dict:
        """ONE optimiser step over ``micro_batches``; the step's parts (sample-weighted
        means) and ``n``.

        Each micro-batch's loss is scaled by its share of the step's images, so the
        accumulated gradient is that of the mean over all of them; DDP all-reduces only in
        the last backward.
        """
        total = sum(int(batch[0].shape[0]) for batch in micro_batches)
        self.optimizer.zero_grad(set_to_none=True)
        weighted: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            images = prepare_images(batch[0], self.device, self.cfg.train.channels_last)
            labels = batch[1].to(self.device, non_blocking=True)
            n = int(images.shape[0])
            with sync_unless(self.objective.trainable, sync=i == len(micro_batches) - 1):
                with autocast(self.device, self.amp_dtype):
                    parts = self.objective(images, labels, batch)
                check_finite(
                    parts["loss"], self.ctx, self.recorder.checkpoint_path, epoch, step
                )
                loss = parts["loss"] if n == total else parts["loss"] * (n / total)
                self.scaler.scale(loss).backward()
            if len(micro_batches) == 1:
                weighted = {name: value.detach() for name, value in parts.items()}
            else:
                for name, value in parts.items():
                    weighted[name] = (
                        weighted.get(name, 0.0) + value.detach().double() * (n / total)
                    )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        weighted["n"] = torch.tensor(float(total), device=self.device)
        return weighted

    # -- one epoch ---------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the training data (``epoch`` 0-based; continuing at ``resume_point`` if set); its metrics.

        Sets the loader's epoch and start position, applies the official lr overwrite when asked, groups
        the batches into steps, and writes a mid-epoch checkpoint every ``train.checkpoint_every`` steps.
        """
        cfg, plan = self.cfg, self.plan
        resume, self.resume_point = self.resume_point, None
        start = resume["step"] if resume else 0
        skip = set_loader_epoch(self.train_loader, epoch, start * plan.accum_steps)
        if self.discriminator is not None and cfg.discriminator.lr_follows_student:
            overwrite_group_lrs(self.optimizer)
        self.objective.train()
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        sums = EpochSums(self.device)
        if resume:
            sums.load(resume["sums"], resume["seen"])
        started = time.perf_counter()
        groups = StepGroups(self.train_loader, plan.accum_steps, start, skip, cfg.train.limit_batches)
        end, every = start + len(groups), cfg.train.checkpoint_every
        bar = self.recorder.bar(groups, desc=f"epoch {epoch + 1}/{cfg.train.epochs}")
        for step, group in enumerate(bar, start=start):
            sums.add(self.optimizer_step(group, epoch=epoch, step=step))
            if self.recorder.show_progress and step % cfg.train.log_every == 0:
                bar.set_postfix(loss=f"{sums.running_loss():.4f}")
            if every and (step + 1) % every == 0 and step + 1 < end:
                self.save(sums=sums, step_in_epoch=step + 1)
            maybe_fail(self.ctx.rank, epoch * end + step + 1)
        metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lrs[0], "disc_lr": lrs[1] if len(lrs) > 1 else None}
        metrics.update(sums.means())
        metrics["train_seconds"] = time.perf_counter() - started
        return metrics

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

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train up to ``train.epochs`` (continuing from ``last.pt`` when ``train.resume``); per-epoch metrics."""
        self.resume()
        self.recorder.start(self.completed_epochs)
        history = []
        for epoch in range(self.completed_epochs, self.cfg.train.epochs):
            started = time.perf_counter()
            metrics = self.train_one_epoch(epoch)
            due = (epoch + 1) % self.cfg.train.eval_every == 0 or epoch + 1 == self.cfg.train.epochs
            result = self.evaluate() if self.val_loader is not None and due else {}
            metrics.update({f"val_{k}": result.get(k) for k in ("loss", "top1", "top5")})
            metrics["seconds"] = time.perf_counter() - started
            self.scheduler.step()
            self.completed_epochs = epoch + 1
            self.save_epoch(metrics)
            self.recorder.append_metrics(metrics)
            self.recorder.log(epoch_summary(metrics, self.cfg.train.epochs))
            history.append(metrics)
            for callback in self.callbacks:
                callback(self, epoch + 1, metrics)
        # Leave no gradient behind: a finished student may become a teacher, and a stale .grad would
        # move it under any optimiser that holds its parameters.
        self.optimizer.zero_grad(set_to_none=True)
        return history

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self, step_in_epoch: int = 0) -> dict:
        """Everything needed to continue this run exactly (weights_only-safe)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.completed_epochs,
            "step_in_epoch": int(step_in_epoch),
            "world_size": self.ctx.world_size,
            "global_batch": self.plan.global_batch,
            "student": self.student.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state_to_safe(self.scheduler.state_dict()),
            "scaler": self.scaler.state_dict(),
            "rng": get_rng_state(),
            "best_top1": self.best_top1,
            "config": config_to_dict(self.cfg),
        }

    def load_state_dict(self, state: dict, source: str = "the checkpoint") -> None:
        """Restore :meth:`state_dict` / :meth:`save` output; a checkpoint of another run
        raises CheckpointError."""
        self._check_position(state, source)
        try:
            self.student.load_state_dict(state["student"])
            if self.discriminator is not None:
                if state.get("discriminator") is None:
                    raise KeyError("it holds no discriminator")
                self.discriminator.load_state_dict(state["discriminator"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(
                scheduler_state_from_safe(state["scheduler"])
            )
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{source} does not fit this run ({first_line(exc, 200)}); set "
                "train.resume=false or choose "
                f"another train.out."
            ) from None
        # The schedule follows the *current* config (so a resumed run may extend it);
        # same config = same run.
        self.scheduler.milestones = Counter(self.cfg.optim.milestones)
        self.scheduler.gamma = self.cfg.optim.gamma
        self.completed_epochs = int(state["epoch"])
        self.best_top1 = state.get("best_top1")
        mine = self._own_part(state)
        if mine is not None:
            set_rng_state(mine["rng"])
        step = int(state.get("step_in_epoch", 0))
        self.resume_point = (
            {"step": step, "sums": mine["sums"], "seen": mine["seen"]}
            if step and mine
            else None
        )

    def _check_position(self, state: dict, source: str) -> None:
        """A mid-epoch checkpoint's sampler position holds only for the world size and batch that wrote it."""
        step = int(state.get("step_in_epoch", 0))
        saved = (state.get("world_size"), state.get("global_batch"))
        if step and saved != (self.ctx.world_size, self.plan.global_batch):
            raise CheckpointError(
                f"{source} was written mid-epoch (epoch {int(state['epoch']) + 1}, step {step}) by {saved[0]} "
                f"process(es) with global batch {saved[1]}, but this run has {self.ctx.world_size} with global "
                f"batch {self.plan.global_batch}; resume it with {saved[0]} processes and data.global_batch="
                f"{saved[1]}, or start a new train.out."
            )

    def _own_part(self, state: dict) -> dict | None:
        """This rank's saved RNG states and epoch sums, when the checkpoint was written by as many ranks."""
        per_rank = state.get("per_rank")
        if not per_rank or len(per_rank) != self.ctx.world_size:
            return None
        return per_rank[self.ctx.rank]

    def resume(self) -> None:
        """With ``train.resume``, continue from ``last.pt`` (a fresh start when there is
        none)."""
        path = self.recorder.checkpoint_path
        if not self.cfg.train.resume:
            return
        if path is None or not path.exists():
            self.recorder.log(f"resume: no checkpoint at {path}; starting from epoch 1")
            return
        state = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(state, source=f"Checkpoint '{path}'")
        if self.ctx.rank and self._own_part(state) is None:
            # An epoch-end checkpoint of another world size: other ranks take their own
            # deterministic stream so their augmentations stay different (bit-identity
            # then needs the same world size).
            torch.manual_seed(
                self.cfg.train.seed + 1000 * self.completed_epochs + self.ctx.rank
            )
        where = f"epoch {self.completed_epochs}"
        if self.resume_point:
            where = (
                f"step {self.resume_point['step']} of epoch {self.completed_epochs + 1}"
            )
        self.recorder.log(f"resumed from {path} after {where}")

    def save(self, sums: EpochSums | None = None, step_in_epoch: int = 0) -> None:
        """Write ``last.pt`` (every rank calls this; rank 0 writes atomically, the others wait at a barrier).

        ``step_in_epoch`` > 0 marks a mid-epoch checkpoint; ``sums`` are the epoch's running sums then.
        """
        mine = {
            "rng": get_rng_state(),
            "sums": sums.sums.detach().cpu() if sums is not None else None,
            "seen": list(sums.seen) if sums is not None else None,
        }
        per_rank = all_gather_objects(mine)
        if self.recorder.writes:
            state = self.state_dict(step_in_epoch)
            state["per_rank"] = per_rank
            self.recorder.save(state)
        barrier()

    def save_epoch(self, metrics: dict) -> None:
        """``last.pt`` every epoch; ``best.pt`` (student weights only) when validation top-1 improves."""
        top1 = metrics.get("val_top1")
        improved = top1 is not None and (self.best_top1 is None or top1 > self.best_top1)
        if improved:
            self.best_top1 = top1
        self.save()
        if improved:
            best = {"student": self.student.state_dict(), "epoch": self.completed_epochs, "top1": top1}
            self.recorder.save(best, BEST_NAME)
