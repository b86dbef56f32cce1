"""What a checkpoint holds, and how a run continues from it exactly - at an epoch's end or mid-epoch.

``last.pt`` holds the student, the discriminator, the optimiser, the learning-rate scheduler, the grad
scaler, every random number generator's state, the epoch and the configuration - tensors, numbers,
strings, lists and dicts only, so it loads with ``weights_only=True``. Restoring all of it makes a
resumed CPU run end with weights bit-identical to an uninterrupted one.

A checkpoint written mid-epoch (``train.checkpoint_every``) also holds the step reached in the epoch
(the sampler position: the data order is a function of the seed, the epoch and the world size, so the
step count pins it), and, per rank, the RNG states and the epoch's running sums. Every rank takes part
in :func:`save_state` (it gathers those per-rank parts), rank 0 alone writes the file atomically, and
the others wait at a barrier until it is complete, so no rank runs ahead of a half-written checkpoint.
A mid-epoch checkpoint resumes only with the world size and global batch that wrote it.
"""

from __future__ import annotations

from collections import Counter

import torch
from typing import Any

from .checkpoint import get_rng_state, load_checkpoint, scheduler_state_from_safe, scheduler_state_to_safe, set_rng_state
from .config import config_to_dict
from .distributed import all_gather_objects, barrier
from .errors import CheckpointError, first_line
from .recorder import BEST_NAME

__all__ = ["CHECKPOINT_FORMAT", "training_state", "restore_training_state", "resume_if_asked", "save_state", "save_epoch"]

CHECKPOINT_FORMAT = "meal-lite/1"


def training_state(trainer: Any, step_in_epoch: int = 0) -> dict:
    """Everything needed to continue ``trainer``'s run exactly (weights_only-safe)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": trainer.completed_epochs,
        "step_in_epoch": int(step_in_epoch),
        "world_size": trainer.ctx.world_size,
        "global_batch": trainer.plan.global_batch,
        "student": trainer.student.state_dict(),
        "discriminator": trainer.discriminator.state_dict() if trainer.discriminator is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": scheduler_state_to_safe(trainer.scheduler.state_dict()),
        "scaler": trainer.scaler.state_dict(),
        "rng": get_rng_state(),
        "best_top1": trainer.best_top1,
        "config": config_to_dict(trainer.cfg),
    }


def _check_position(trainer: Any, state: dict, source: str) -> None:
    """A mid-epoch checkpoint's sampler position holds only for the world size and batch that wrote it."""
    step = int(state.get("step_in_epoch", 0))
    if not step:
        return
    saved = (state.get("world_size"), state.get("global_batch"))
    if saved != (trainer.ctx.world_size, trainer.plan.global_batch):
        raise CheckpointError(
            f"{source} was written mid-epoch (epoch {int(state['epoch']) + 1}, step {step}) by {saved[0]} "
            f"process(es) with global batch {saved[1]}, but this run has {trainer.ctx.world_size} with global "
            f"batch {trainer.plan.global_batch}; resume it with {saved[0]} processes and data.global_batch="
            f"{saved[1]}, or start a new train.out."
        )


def restore_training_state(trainer: Any, state: dict, source: str = "the checkpoint") -> None:
    """Restore what :func:`training_state` / :func:`save_state` wrote; a checkpoint of another run raises CheckpointError."""
    _check_position(trainer, state, source)
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
    mine = _own_part(trainer, state)
    if mine is not None:
        set_rng_state(mine["rng"])
    step = int(state.get("step_in_epoch", 0))
    trainer.resume_point = {"step": step, "sums": mine["sums"], "seen": mine["seen"]} if step and mine else None


def _own_part(trainer: Any, state: dict) -> dict | None:
    """This rank's saved RNG states and epoch sums, when the checkpoint was written by as many ranks."""
    per_rank = state.get("per_rank")
    if not per_rank or len(per_rank) != trainer.ctx.world_size:
        return None
    return per_rank[trainer.ctx.rank]


def resume_if_asked(trainer: Any) -> None:
    """With ``train.resume``, continue ``trainer`` from its ``last.pt`` (a fresh start when there is none)."""
    path = trainer.recorder.checkpoint_path
    if not trainer.cfg.train.resume:
        return
    if path is None or not path.exists():
        trainer.recorder.log(f"resume: no checkpoint at {path}; starting from epoch 1")
        return
    state = load_checkpoint(path, map_location="cpu")
    restore_training_state(trainer, state, source=f"Checkpoint '{path}'")
    if trainer.ctx.rank and _own_part(trainer, state) is None:
        # An epoch-end checkpoint of another world size: other ranks take their own deterministic
        # stream so their augmentations stay different (bit-identity then needs the same world size).
        torch.manual_seed(trainer.cfg.train.seed + 1000 * trainer.completed_epochs + trainer.ctx.rank)
    where = f"epoch {trainer.completed_epochs}"
    if trainer.resume_point:
        where = f"step {trainer.resume_point['step']} of epoch {trainer.completed_epochs + 1}"
    trainer.recorder.log(f"resumed from {path} after {where}")


def save_state(trainer: Any, sums: Any = None, step_in_epoch: int = 0) -> None:
    """Write ``last.pt`` (every rank calls this; rank 0 writes atomically, the others wait at a barrier).

    ``step_in_epoch`` > 0 marks a mid-epoch checkpoint; ``sums`` are the epoch's running sums then.
    """
    mine = {
        "rng": get_rng_state(),
        "sums": sums.sums.detach().cpu() if sums is not None else None,
        "seen": list(sums.seen) if sums is not None else None,
    }
    per_rank = all_gather_objects(mine)
    if trainer.recorder.writes:
        state = training_state(trainer, step_in_epoch)
        state["per_rank"] = per_rank
        trainer.recorder.save(state)
    barrier()


def save_epoch(trainer: Any, metrics: dict) -> None:
    """``last.pt`` every epoch; ``best.pt`` (student weights only) when validation top-1 improves."""
    top1 = metrics.get("val_top1")
    improved = top1 is not None and (trainer.best_top1 is None or top1 > trainer.best_top1)
    if improved:
        trainer.best_top1 = top1
    save_state(trainer)
    if improved:
        best = {"student": trainer.student.state_dict(), "epoch": trainer.completed_epochs, "top1": top1}
        trainer.recorder.save(best, BEST_NAME)
