"""What a checkpoint holds, and how a run continues from it exactly.

``last.pt`` holds the student, the discriminator, the optimiser, the learning-rate scheduler, the grad
scaler, every random number generator's state, the epoch and the configuration - tensors, numbers,
strings, lists and dicts only, so it loads with ``weights_only=True``. Restoring all of it makes a
resumed CPU run end with weights bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from collections import Counter

import torch
from typing import Any

from .checkpoint import get_rng_state, load_checkpoint, scheduler_state_from_safe, scheduler_state_to_safe, set_rng_state
from .config import config_to_dict
from .errors import CheckpointError, first_line
from .recorder import BEST_NAME

__all__ = ["CHECKPOINT_FORMAT", "training_state", "restore_training_state", "resume_if_asked", "save_epoch"]

CHECKPOINT_FORMAT = "meal-lite/1"


def training_state(trainer: Any) -> dict:
    """Everything needed to continue ``trainer``'s run exactly (weights_only-safe)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": trainer.completed_epochs,
        "student": trainer.student.state_dict(),
        "discriminator": trainer.discriminator.state_dict() if trainer.discriminator is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": scheduler_state_to_safe(trainer.scheduler.state_dict()),
        "scaler": trainer.scaler.state_dict(),
        "rng": get_rng_state(),
        "best_top1": trainer.best_top1,
        "config": config_to_dict(trainer.cfg),
    }


def restore_training_state(trainer: Any, state: dict, source: str = "the checkpoint") -> None:
    """Restore what :func:`training_state` returned; a checkpoint of another run raises CheckpointError."""
    try:
        trainer.student.load_state_dict(state["student"])
        if trainer.discriminator is not None:
            if state.get("discriminator") is None:
                raise KeyError("it holds no discriminator")
            trainer.discriminator.load_state_dict(state["discriminator"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(scheduler_state_from_safe(state["scheduler"]))
        if state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{source} does not fit this run ({first_line(exc, 200)}); set train.resume=false or choose "
            f"another train.out."
        ) from None
    # The schedule follows the *current* config (so a resumed run may extend it); same config = same run.
    trainer.scheduler.milestones = Counter(trainer.cfg.optim.milestones)
    trainer.scheduler.gamma = trainer.cfg.optim.gamma
    trainer.completed_epochs = int(state["epoch"])
    trainer.best_top1 = state.get("best_top1")


def resume_if_asked(trainer: Any) -> None:
    """With ``train.resume``, continue ``trainer`` from its ``last.pt`` (a fresh start when there is none)."""
    path = trainer.recorder.checkpoint_path
    if not trainer.cfg.train.resume:
        return
    if path is None or not path.exists():
        trainer.recorder.log(f"resume: no checkpoint at {path}; starting from epoch 1")
        return
    restore_training_state(trainer, load_checkpoint(path, map_location="cpu"), source=f"Checkpoint '{path}'")
    if trainer.ctx.rank:
        # last.pt holds rank 0's RNG states; other ranks take their own deterministic stream so
        # their augmentations stay different (exact bit-identity after resume is a 1-process property).
        torch.manual_seed(trainer.cfg.train.seed + 1000 * trainer.completed_epochs + trainer.ctx.rank)
    trainer.recorder.log(f"resumed from {path} after epoch {trainer.completed_epochs}")

def save_epoch(trainer: Any, metrics: dict) -> None:
    """``last.pt`` every epoch; ``best.pt`` (student weights only) when validation top-1 improves."""
    top1 = metrics.get("val_top1")
    improved = top1 is not None and (trainer.best_top1 is None or top1 > trainer.best_top1)
    if improved:
        trainer.best_top1 = top1
    trainer.recorder.save(training_state(trainer))
    if improved:
        best = {"student": trainer.student.state_dict(), "epoch": trainer.completed_epochs, "top1": top1}
        trainer.recorder.save(best, BEST_NAME)
