"""Global batch, per-process batch, gradient accumulation and learning-rate scaling: one plan per run.

The paper trains with a batch of 512 images per optimiser step (the official code: DataParallel over
8 GPUs, 64 each) at lr 0.01. What a lab has is a number of processes and a memory limit per GPU, so
a run states the GLOBAL batch (``data.global_batch``) and meal-lite derives the rest from the world
size: each optimiser step is ``world_size x per_process x accum_steps`` images, where ``per_process``
is the largest batch no bigger than ``data.max_batch_per_process`` that divides the work evenly, and
``accum_steps`` the number of micro-batches each process accumulates before the step.

The learning rates in a config (``optim.lr``, ``discriminator.lr``) are the values at
``optim.reference_batch`` (512, the paper's); when the global batch differs they are scaled linearly
(Goyal et al. 2017), and the printout says so. Without ``data.global_batch`` a run keeps the older,
per-process meaning of ``data.batch_size``: no accumulation and no scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

from meal_lite.errors import ConfigError

__all__ = ["BatchPlan", "plan_batches", "describe_plan"]


@dataclass(frozen=True)
class BatchPlan:
    """How one optimiser step's images are spread over processes and micro-batches."""

    global_batch: int
    world_size: int
    per_process: int
    accum_steps: int
    lr_scale: float
    reference_batch: int | None  # None: no scaling (data.global_batch unset)


def plan_batches(cfg, world_size: int = 1) -> BatchPlan:
    """The :class:`BatchPlan` of ``cfg`` (a :class:`~meal_lite.config.schema.Config`) on
    ``world_size`` processes.

    Raises a one-sentence :class:`ConfigError` when the global batch cannot be split
    evenly.
    """
    world_size = int(world_size)
    data, optim = cfg.data, cfg.optim
    if data.global_batch is None:
        return BatchPlan(
            data.batch_size * world_size, world_size, data.batch_size, 1, 1.0, None
        )
    global_batch = int(data.global_batch)
    if global_batch % world_size:
        raise ConfigError(
            f"data.global_batch={global_batch} cannot be split evenly over "
            f"{world_size} processes; make it a "
            f"multiple of {world_size} (e.g. "
            f"{max(1, round(global_batch / world_size)) * world_size})."
        )
    share = global_batch // world_size
    limit = data.max_batch_per_process or share
    accum = next(
        a for a in range(1, share + 1) if share % a == 0 and share // a <= limit
    )
    return BatchPlan(
        global_batch,
        world_size,
        share // accum,
        accum,
        global_batch / optim.reference_batch,
        optim.reference_batch,
    )


def describe_plan(plan: BatchPlan, cfg) -> str:
    """Lines explaining ``plan`` for the run configuration ``cfg``, as YAML comments (a printed config still loads)."""
    lr, disc_lr = cfg.optim.lr, cfg.discriminator.lr
    lines = [
        f"# batch: global {plan.global_batch} = {plan.world_size} process(es) x {plan.per_process} per process "
        f"x {plan.accum_steps} accumulation step(s)"
    ]
    if plan.reference_batch is None:
        lines.append("# lr: as given (data.global_batch unset: data.batch_size is per process, no lr scaling)")
    else:
        lines.append(
            f"# lr: optim.lr {lr:g} and discriminator.lr {disc_lr:g} are given at batch {plan.reference_batch}; "
            f"x {plan.global_batch}/{plan.reference_batch} = {plan.lr_scale:g} -> student lr {lr * plan.lr_scale:g}, "
            f"discriminator lr {disc_lr * plan.lr_scale:g}"
        )
    if cfg.loss.objective == "meal" and cfg.discriminator.lr_follows_student:
        lines.append("# discriminator.lr_follows_student: the discriminator trains at the student's lr (official overwrite)")
    return "\n".join(lines) + "\n"
