"""The MEAL V2 training loop: ensemble targets, discriminator, checkpoints, exact resume.

One step, as in the official code:

1. the teacher source gives targets for the batch (``source.targets(images, batch)``: the mean of
   the teachers' softmax ``probs`` and the mean of their ``logits``);
2. the student's logits give ``kl`` = soft cross-entropy to ``probs``;
3. for ``objective: meal`` the discriminator sees the student's logits and the teachers' mean
   logits and gives ``d_loss`` (binary cross-entropy);
4. ONE backward of ``kl + weight * d_loss`` and ONE optimiser step. The optimiser has two parameter
   groups, the student (lr 0.01) and the discriminator (lr 1e-4): there are no alternating updates.
   In ``discriminator.mode: official`` the student therefore also *minimises* ``d_loss`` (a
   regulariser, and what produced the published numbers); ``adversarial`` reverses its gradient.

The official code also sets every group's learning rate to the student's at the start of each epoch,
so its discriminator never trains at 1e-4; ``discriminator.lr_follows_student: true`` reproduces that.

The teacher source is any object with ``targets(images, batch) -> EnsembleOutput``: the online
:class:`~meal_lite.ensemble.TeacherEnsemble` today, a cached soft-label source tomorrow.

Everything that depends on the process rank (progress bars, printed lines, ``metrics.jsonl``,
checkpoints) goes through :class:`RunRecorder`, which does nothing on non-main ranks. Resuming from
``last.pt`` restores the student, discriminator, optimiser, scheduler, grad scaler and every RNG, so
on CPU a resumed run ends with bit-identical weights.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    scheduler_state_from_safe,
    scheduler_state_to_safe,
    set_rng_state,
)
from .config import Config, DiscriminatorConfig, OptimConfig, config_to_dict, format_config
from .discriminator import discriminator_loss, make_discriminator
from .distributed import DistributedContext, all_reduce_sum, init_distributed, resolve_device
from .errors import CheckpointError, ConfigError, ModelError, NonFiniteLossError
from .losses import soft_cross_entropy

Callback = Callable[["Trainer", int, dict], Any]

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_FORMAT = "meal-lite/1"


# --------------------------------------------------------------------------------------------------
# Optimiser, schedule, precision


def build_optimizer(
    student: nn.Module,
    discriminator: nn.Module | None,
    optim_cfg: OptimConfig,
    disc_cfg: DiscriminatorConfig,
) -> torch.optim.Optimizer:
    """ONE optimiser for both networks, as in the official code.

    Param group 0 is the student at ``optim_cfg.lr``; group 1 (only with a discriminator) is the
    discriminator at its own ``disc_cfg.lr``. Groups carry a ``name`` for logs.
    """
    groups = [{"params": [p for p in student.parameters() if p.requires_grad], "lr": optim_cfg.lr, "name": "student"}]
    if discriminator is not None:
        params = [p for p in discriminator.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": disc_cfg.lr, "name": "discriminator"})
    if not groups[0]["params"]:
        raise ModelError("The student has no trainable parameters; check that it is not frozen.")
    if optim_cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=optim_cfg.lr, momentum=optim_cfg.momentum, weight_decay=optim_cfg.weight_decay
        )
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay)
    raise ConfigError(f"Config key 'optim.name' must be sgd or adamw, but was given {optim_cfg.name!r}.")


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: OptimConfig) -> torch.optim.lr_scheduler.MultiStepLR:
    """Step regime stepped once per epoch: every group's lr times ``gamma`` at each milestone epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(optim_cfg.milestones), gamma=optim_cfg.gamma)


def overwrite_group_lrs(optimizer: torch.optim.Optimizer) -> None:
    """The official code's quirk: every param group gets the student's (group 0's) current lr."""
    lr = optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] = lr


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None on CPU or with ``off``; ``auto`` -> bf16 if the GPU has it, else fp16."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp=bf16 but this GPU does not support bfloat16; use train.amp=fp16 or auto.")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _prepare_images(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def set_loader_epoch(loader: Iterable, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's sampler (or batch sampler's sampler) so its order depends on the epoch."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    for obj in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None), batch_sampler):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


class LimitedLoader:
    """``loader`` cut to its first ``limit`` batches (None: all), keeping ``len`` for progress bars."""

    def __init__(self, loader: Iterable, limit: int | None) -> None:
        self.loader, self.limit = loader, limit

    def __iter__(self):
        return iter(self.loader) if self.limit is None else itertools.islice(self.loader, self.limit)

    def __len__(self) -> int:
        n = len(self.loader)
        return n if self.limit is None else min(n, self.limit)


# --------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    num_classes: int | None = None,
    *,
    channels_last: bool = False,
    wrap: Callable[[Iterable], Iterable] | None = None,
    limit_batches: int | None = None,
) -> dict:
    """Cross-entropy on labels and top-1 / top-5 accuracy (percent) of ``model`` over ``loader``.

    ``limit_batches`` stops after that many batches; ``wrap`` wraps the batch iterable (a progress bar).

    Top-5 is top-``min(5, classes)``. Under DDP the sums are all-reduced over processes (a
    DistributedSampler pads the last batch, so a few images may count twice). The model's
    train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1 hits, top5 hits, n
    batches = LimitedLoader(loader, limit_batches)
    for batch in wrap(batches) if wrap else batches:
        images = _prepare_images(batch[0], device, channels_last)
        labels = batch[1].to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
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


# --------------------------------------------------------------------------------------------------
# Rank-dependent side effects, in one place


class RunRecorder:
    """Progress bars, printed lines, ``metrics.jsonl`` and checkpoints -- on the main process only.

    With ``out_dir`` None nothing is written; on a non-main rank nothing is shown or written.
    """

    def __init__(
        self, out_dir: str | Path | None, *, is_main: bool = True, progress: bool = True, verbose: bool = True
    ) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.prints = is_main and verbose
        self.show_progress = progress and is_main
        self.writes = is_main and self.out_dir is not None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    @property
    def metrics_path(self) -> Path | None:
        return self.out_dir / METRICS_NAME if self.out_dir is not None else None

    def start(self, completed_epochs: int) -> None:
        """Create the run folder and keep only the metrics lines of epochs already in the checkpoint."""
        if not self.writes:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_path
        if not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if _metrics_epoch(line) <= completed_epochs]
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)

    def bar(self, iterable: Iterable, desc: str) -> Iterable:
        """A tqdm bar around ``iterable`` on the main process when progress is on, else the iterable."""
        if not self.show_progress:
            return iterable
        return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)

    def log(self, text: str) -> None:
        """Print one line on the main process (without breaking progress bars)."""
        if self.prints:
            tqdm.write(text)

    def append_metrics(self, metrics: dict) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        if self.writes:
            with open(self.metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(metrics) + "\n")

    def save(self, state: dict, name: str = CHECKPOINT_NAME) -> None:
        """Write a checkpoint atomically (see :func:`meal_lite.checkpoint.save_checkpoint`)."""
        if self.writes:
            save_checkpoint(state, self.out_dir / name)


def _metrics_epoch(line: str) -> float:
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _known_num_classes(obj: Any) -> int | None:
    """``obj.num_classes`` when it is a known int (a TeacherEnsemble may not know it before a forward)."""
    try:
        value = getattr(obj, "num_classes", None)
    except ModelError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Trains a student against a teacher source, optionally with the MEAL V2 discriminator.

    Args:
        student: the model to train (moved to the run's device).
        train_loader: yields ``(images, labels, ...)``; its sampler's ``set_epoch`` is called each epoch.
        val_loader: evaluated every ``train.eval_every`` epochs and at the last epoch (None: never).
        teacher_source: object with ``targets(images, batch) -> EnsembleOutput``; needed unless
            ``loss.objective`` is ``ce``. An ``nn.Module`` source is moved to the device and kept in eval.
        discriminator: used for ``objective: meal``; built with :func:`make_discriminator` when None.
        cfg: the run :class:`~meal_lite.config.Config`.
        out_dir: where ``last.pt``, ``best.pt`` and ``metrics.jsonl`` go (None: write nothing).
        ctx: the :class:`~meal_lite.distributed.DistributedContext` (None: single process on
            ``train.device``).
        callbacks: ``cb(trainer, epoch, metrics)`` called after each epoch's checkpoint (1-based epoch).
        verbose: print one summary line per epoch (main process only).
    """

    def __init__(
        self,
        student: nn.Module,
        train_loader: Iterable,
        val_loader: Iterable | None = None,
        *,
        teacher_source: Any = None,
        discriminator: nn.Module | None = None,
        cfg: Config,
        out_dir: str | Path | None = None,
        ctx: DistributedContext | None = None,
        callbacks: Sequence[Callback] = (),
        verbose: bool = True,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or DistributedContext(device=resolve_device(cfg.train.device))
        self.device = self.ctx.device
        self.objective = cfg.loss.objective
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks)
        self.recorder = RunRecorder(
            self.out_dir, is_main=self.ctx.is_main, progress=cfg.train.progress, verbose=verbose
        )
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
        self.student = student.to(self.device, memory_format=memory_format)
        self.teacher_source = self._setup_source(teacher_source)
        self.discriminator = self._setup_discriminator(discriminator)
        self.model = self._wrap_ddp(self.student)
        self.disc_model = self._wrap_ddp(self.discriminator) if self.discriminator is not None else None
        self.optimizer = build_optimizer(self.student, self.discriminator, cfg.optim, cfg.discriminator)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.completed_epochs = 0
        self.best_top1: float | None = None

    # -- setup -----------------------------------------------------------------------------------
    def _setup_source(self, source: Any) -> Any:
        if self.objective == "ce":
            return source
        if source is None or not hasattr(source, "targets"):
            raise ConfigError(
                f"loss.objective={self.objective} needs a teacher source with a targets(images, batch) method "
                f"(e.g. a TeacherEnsemble); pass teacher_source= or use loss.objective=ce."
            )
        if hasattr(source, "temperature"):
            # The loss divides the student's logits by T; the target must be softened by the same T.
            source.temperature = self.cfg.loss.temperature
        if isinstance(source, nn.Module):
            memory_format = torch.channels_last if self.cfg.train.channels_last else torch.preserve_format
            source.to(self.device, memory_format=memory_format).eval()
        return source

    def _setup_discriminator(self, discriminator: nn.Module | None) -> nn.Module | None:
        if self.objective != "meal":
            return None
        if discriminator is None:
            num_classes = _known_num_classes(self.teacher_source) or _known_num_classes(self.student)
            if num_classes is None:
                raise ModelError("Cannot tell the class count for the discriminator; pass discriminator= explicitly.")
            discriminator = make_discriminator(num_classes, self.cfg.discriminator.mode, self.cfg.discriminator.reduction)
        return discriminator.to(self.device)

    def _wrap_ddp(self, module: nn.Module) -> nn.Module:
        if not self.ctx.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    # -- checkpoint state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (weights_only-safe)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.completed_epochs,
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
        """Restore :meth:`state_dict` output; a checkpoint of another run raises CheckpointError."""
        try:
            self.student.load_state_dict(state["student"])
            if self.discriminator is not None:
                if state.get("discriminator") is None:
                    raise KeyError("it holds no discriminator")
                self.discriminator.load_state_dict(state["discriminator"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(scheduler_state_from_safe(state["scheduler"]))
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{source} does not fit this run ({reason}); set train.resume=false or choose another train.out."
            ) from None
        # The schedule follows the *current* config (so a resumed run may extend it); same config = same run.
        self.scheduler.milestones = Counter(self.cfg.optim.milestones)
        self.scheduler.gamma = self.cfg.optim.gamma
        self.completed_epochs = int(state["epoch"])
        self.best_top1 = state.get("best_top1")

    def _maybe_resume(self) -> None:
        path = self.recorder.checkpoint_path
        if not self.cfg.train.resume:
            return
        if path is None or not path.exists():
            self.recorder.log(f"resume: no checkpoint at {path}; starting from epoch 1")
            return
        self.load_state_dict(load_checkpoint(path, map_location="cpu"), source=f"Checkpoint '{path}'")
        if self.ctx.rank:
            # last.pt holds rank 0's RNG states; other ranks take their own deterministic stream so
            # their augmentations stay different (exact bit-identity after resume is a 1-process property).
            torch.manual_seed(self.cfg.train.seed + 1000 * self.completed_epochs + self.ctx.rank)
        self.recorder.log(f"resumed from {path} after epoch {self.completed_epochs}")

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train up to ``train.epochs`` (continuing from ``last.pt`` when ``train.resume``); per-epoch metrics."""
        self._maybe_resume()
        self.recorder.start(self.completed_epochs)
        history = []
        epochs = self.cfg.train.epochs
        for epoch in range(self.completed_epochs, epochs):
            started = time.perf_counter()
            metrics = self.train_one_epoch(epoch)
            metrics.update(self._maybe_evaluate(epoch))
            metrics["seconds"] = time.perf_counter() - started
            self.scheduler.step()
            self.completed_epochs = epoch + 1
            self._save(metrics)
            self.recorder.append_metrics(metrics)
            self.recorder.log(self._summary(metrics))
            history.append(metrics)
            for callback in self.callbacks:
                callback(self, epoch + 1, metrics)
        return history

    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the training data (``epoch`` is 0-based); returns the epoch's training metrics."""
        set_loader_epoch(self.train_loader, epoch)
        if self.discriminator is not None and self.cfg.discriminator.lr_follows_student:
            overwrite_group_lrs(self.optimizer)
        self.model.train()
        if self.disc_model is not None:
            self.disc_model.train()
        if isinstance(self.teacher_source, nn.Module):
            self.teacher_source.eval()
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        # loss, kl, d_loss summed over samples; discriminator hits and rows; samples.
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)
        started = time.perf_counter()
        batches = LimitedLoader(self.train_loader, self.cfg.train.limit_batches)
        bar = self.recorder.bar(batches, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}")
        for step, batch in enumerate(bar):
            sums += self._train_step(batch, epoch, step)
            if self.recorder.show_progress and step % self.cfg.train.log_every == 0:
                bar.set_postfix(loss=f"{(sums[0] / sums[5].clamp(min=1)).item():.4f}")
        all_reduce_sum(sums)
        return self._epoch_metrics(epoch, lrs, sums, time.perf_counter() - started)

    def _train_step(self, batch: Sequence[Any], epoch: int, step: int) -> torch.Tensor:
        """Forward, joint loss, one backward, one optimiser step; returns this step's metric sums."""
        channels_last = self.cfg.train.channels_last
        images = _prepare_images(batch[0], self.device, channels_last)
        labels = batch[1].to(self.device, non_blocking=True)
        n = images.shape[0]
        zero = torch.zeros((), device=self.device)
        with _autocast(self.device, self.amp_dtype):
            targets = self.teacher_source.targets(images, batch) if self.objective != "ce" else None
            logits = self.model(images)
        logits = logits.float()
        d_loss, hits, rows = zero, zero, zero
        if self.objective == "ce":
            kl = loss = F.cross_entropy(logits, labels)
        else:
            kl = loss = soft_cross_entropy(logits, targets.probs, temperature=self.cfg.loss.temperature)
        if self.objective == "meal":
            d_loss, outputs = discriminator_loss(
                self.disc_model, logits, targets.logits, mode=self.cfg.discriminator.mode, return_outputs=True
            )
            loss = kl + self.cfg.discriminator.weight * d_loss
            truth = torch.ones(outputs.shape[0], dtype=torch.long, device=outputs.device)
            truth[:n] = 0  # student rows first, then teacher rows
            hits = (outputs.argmax(dim=1) == truth).sum()
            rows = torch.tensor(float(outputs.shape[0]), device=self.device)
        self._check_finite(loss, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return torch.stack(
            [loss.detach() * n, kl.detach() * n, d_loss.detach() * n, hits.float(), rows, zero + n]
        ).double()

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Stop on a NaN/inf loss before it reaches the weights (and before any checkpoint of this epoch)."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.ctx.distributed:
            all_reduce_sum(bad)  # every rank stops together
        if bad.item() == 0:
            return
        path = self.recorder.checkpoint_path
        last_good = f"'{path}'" if path is not None and path.exists() else "none (no epoch has finished yet)"
        raise NonFiniteLossError(
            f"The training loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; the last good "
            f"checkpoint is {last_good}; lower optim.lr or set train.amp=off, then resume with train.resume=true."
        )

    def _epoch_metrics(self, epoch: int, lrs: list[float], sums: torch.Tensor, seconds: float) -> dict:
        loss, kl, d_loss, hits, rows, n = sums.tolist()
        n = max(n, 1.0)
        meal = self.objective == "meal"
        return {
            "epoch": epoch + 1,
            "lr": lrs[0],
            "disc_lr": lrs[1] if len(lrs) > 1 else None,
            "train_loss": loss / n,
            "train_kl": kl / n if self.objective != "ce" else None,
            "train_d_loss": d_loss / n if meal else None,
            "disc_acc": 100.0 * hits / rows if meal and rows else None,
            "train_seconds": seconds,
        }

    def _maybe_evaluate(self, epoch: int) -> dict:
        every = self.cfg.train.eval_every
        if self.val_loader is None or not ((epoch + 1) % every == 0 or epoch + 1 == self.cfg.train.epochs):
            return {"val_loss": None, "val_top1": None, "val_top5": None}
        # The unwrapped student: DDP replicas hold the same weights, and a DDP forward could start
        # collectives that hang when ranks see different numbers of evaluation batches.
        result = evaluate(
            self.student,
            self.val_loader,
            self.device,
            self.amp_dtype,
            channels_last=self.cfg.train.channels_last,
            wrap=lambda loader: self.recorder.bar(loader, desc="eval"),
            limit_batches=self.cfg.train.limit_batches,
        )
        return {"val_loss": result["loss"], "val_top1": result["top1"], "val_top5": result["top5"]}

    def _save(self, metrics: dict) -> None:
        """``last.pt`` every epoch; ``best.pt`` (student weights only) when validation top-1 improves."""
        top1 = metrics.get("val_top1")
        improved = top1 is not None and (self.best_top1 is None or top1 > self.best_top1)
        if improved:
            self.best_top1 = top1
        self.recorder.save(self.state_dict())
        if improved:
            best = {"student": self.student.state_dict(), "epoch": self.completed_epochs, "top1": top1}
            self.recorder.save(best, BEST_NAME)

    def _summary(self, m: dict) -> str:
        parts = [f"epoch {m['epoch']}/{self.cfg.train.epochs}", f"lr {m['lr']:.3g}", f"loss {m['train_loss']:.4f}"]
        if m["train_d_loss"] is not None:
            parts += [f"d_loss {m['train_d_loss']:.4f}", f"disc_acc {m['disc_acc']:.1f}%"]
        if m["val_top1"] is not None:
            parts += [f"val top1 {m['val_top1']:.2f}", f"top5 {m['val_top5']:.2f}"]
        parts.append(f"{m['seconds']:.1f}s")
        return "  ".join(parts)


# --------------------------------------------------------------------------------------------------
# From a config to a finished run


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_from_config(cfg: Config, *, callbacks: Sequence[Callback] = (), ctx: DistributedContext | None = None) -> dict:
    """Build everything a config describes, check it, then train.

    Data, student, teachers and class counts are all checked BEFORE the output folder is created, so
    a run that fails early writes nothing. Returns ``{"out_dir", "history", "last", "best_top1", "rank"}``.
    """
    from . import data as data_lib  # imported here: data/models pull in torchvision and timm
    from . import models as models_lib

    ctx = ctx or init_distributed(cfg.train.device)
    out_dir = Path(cfg.train.out)
    RunRecorder(None, is_main=ctx.is_main).log(format_config(cfg))  # the resolved config prints itself
    _check_out_dir(out_dir, cfg)
    seed_everything(cfg.train.seed)
    num_classes = cfg.student.num_classes or data_lib.dataset_num_classes(cfg.data.dataset)
    student, model_data_config = models_lib.create_student(cfg, num_classes)
    datasets = data_lib.build_datasets(cfg.data, model_data_config)
    _check_class_counts(cfg, student, datasets.num_classes)
    teachers = None
    if cfg.loss.objective != "ce":
        teachers = models_lib.create_teachers(cfg, num_classes, datasets.data_config)
        _check_teacher_classes(teachers, num_classes)
    _check_one_sample(student, teachers, datasets, num_classes)
    discriminator = None
    if cfg.loss.objective == "meal":
        discriminator = make_discriminator(num_classes, cfg.discriminator.mode, cfg.discriminator.reduction)
    if ctx.rank:
        seed_everything(cfg.train.seed + ctx.rank)  # same initial weights, different augmentation per rank
    loaders = _build_loaders(data_lib, cfg, datasets, ctx)
    trainer = Trainer(
        student,
        loaders["train"],
        loaders.get("val"),
        teacher_source=teachers,
        discriminator=discriminator,
        cfg=cfg,
        out_dir=out_dir,
        ctx=ctx,
        callbacks=callbacks,
    )
    history = trainer.fit()
    return {
        "out_dir": str(out_dir),
        "history": history,
        "last": history[-1] if history else None,
        "best_top1": trainer.best_top1,
        "rank": ctx.rank,
    }


def _check_out_dir(out_dir: Path, cfg: Config) -> None:
    """Refuse to silently overwrite a finished or interrupted run."""
    if (out_dir / CHECKPOINT_NAME).exists() and not cfg.train.resume:
        raise ConfigError(
            f"'{out_dir}' already holds a run ({CHECKPOINT_NAME}); set train.resume=true to continue it or "
            f"choose another train.out."
        )


def _check_class_counts(cfg: Config, student: nn.Module, data_classes: int) -> None:
    """The dataset, ``student.num_classes`` and the built student must agree on the class count."""
    counts = {
        "the dataset": data_classes,
        "student.num_classes": cfg.student.num_classes,
        f"the student {cfg.student.name}": _known_num_classes(student),
    }
    known = {k: v for k, v in counts.items() if v is not None}
    if len(set(known.values())) > 1:
        described = ", ".join(f"{k} has {v}" for k, v in known.items())
        raise ModelError(f"Class counts disagree ({described}); make student.num_classes match the dataset.")


def _check_teacher_classes(teachers: Any, num_classes: int) -> None:
    teacher_classes = _known_num_classes(teachers)  # None: unknown until a forward; the loss checks shapes
    if teacher_classes is not None and teacher_classes != num_classes:
        raise ModelError(
            f"The teachers predict {teacher_classes} classes but the dataset has {num_classes}; use teachers "
            f"made for this dataset's classes (see teacher_preset)."
        )


def _check_one_sample(student: nn.Module, teachers: Any, datasets: dict, num_classes: int) -> None:
    """Run one image through the student and the teachers (eval mode, CPU) to catch mismatches early.

    Wrong channel counts, sizes or class counts then fail before any output is written, not after
    the first epoch's data loading.
    """
    split = "val" if datasets.get("val") is not None else "train"
    image = datasets[split][0][0].unsqueeze(0)
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            outputs = {"student": student(image)}
            if teachers is not None:
                outputs["teachers"] = teachers.targets(image, None).probs
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"A {tuple(image.shape)} image from the {split} split does not go through the models ({reason}); "
            f"check data.image_size and that the models take this many input channels."
        ) from None
    finally:
        student.train(was_training)
    for who, out in outputs.items():
        if out.dim() != 2 or out.shape[1] != num_classes:
            raise ModelError(
                f"The {who} output {tuple(out.shape)} for one image, but the dataset has {num_classes} classes; "
                f"give the {who} {num_classes} outputs."
            )


def _build_loaders(data_lib: Any, cfg: Config, datasets: dict, ctx: DistributedContext) -> dict:
    kwargs = dict(num_workers=cfg.data.num_workers, seed=cfg.train.seed, distributed=ctx.distributed)
    loaders = {"train": data_lib.build_loader(datasets["train"], cfg.data.batch_size, train=True, **kwargs)}
    if datasets.get("val") is not None:
        eval_bs = cfg.data.eval_batch_size or cfg.data.batch_size
        loaders["val"] = data_lib.build_loader(datasets["val"], eval_bs, train=False, **kwargs)
    return loaders
