"""Run assembly: from a configuration and its datasets to a student, loaders, an objective and a Trainer.

:func:`train_student` is meal-lite's one way to train a student: the command line
(:func:`meal_lite.training.pipeline.train_from_config`), the offline teachers
(:mod:`meal_lite.training.digits_teachers`), the experiments and the book all train through it. Given a
configuration and the datasets, it seeds, builds the student (or starts from given weights), the
:class:`~meal_lite.core.objective.Objective` with its discriminator, the loaders and the
:class:`~meal_lite.training.trainer.Trainer`, and fits.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from meal_lite.config.schema import Config
from meal_lite.core.objective import Objective
from meal_lite.data.datasets import DatasetSplits
from meal_lite.data.loaders import build_loader
from meal_lite.models.factory import create_student
from meal_lite.training.batching import plan_batches
from meal_lite.training.distributed import DistributedContext
from meal_lite.training.trainer import Callback, Trainer

__all__ = ["seed_everything", "build_student", "build_loaders", "train_student"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_student(cfg: Config, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The configured student and the data config its images use (see :func:`meal_lite.models.factory.create_student`)."""
    return create_student(cfg.student, cfg.data, num_classes)


def build_loaders(cfg: Config, datasets: Mapping[str, Any], ctx: DistributedContext | None = None) -> dict:
    """``{"train": loader, "val": loader}`` (val only when the data has one), seeded by ``train.seed``.

    The batch is the per-process batch of the run's :func:`~meal_lite.training.batching.plan_batches`.
    """
    distributed = ctx is not None and ctx.distributed
    per_process = plan_batches(cfg, ctx.world_size if ctx is not None else 1).per_process
    kwargs = dict(num_workers=cfg.data.num_workers, seed=cfg.train.seed, distributed=distributed)
    loaders = {"train": build_loader(datasets["train"], per_process, train=True, **kwargs)}
    if datasets.get("val") is not None:
        eval_bs = cfg.data.eval_batch_size or per_process
        loaders["val"] = build_loader(datasets["val"], eval_bs, train=False, **kwargs)
    return loaders


def train_student(
    cfg: Config,
    datasets: DatasetSplits,
    *,
    teacher_source: Any = None,
    student: nn.Module | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    val_loader: Any = "auto",
    out_dir: str | Path | None = None,
    ctx: DistributedContext | None = None,
    callbacks: Sequence[Callback] = (),
    verbose: bool = False,
) -> tuple[Trainer, list[dict]]:
    """Train one student as ``cfg`` says, on ``datasets``; returns ``(trainer, per-epoch metrics)``.

    The student is built (after seeding with ``train.seed``) unless given; ``init_state`` starts it from
    given weights, which is how MEAL V2 boosts a trained student. ``teacher_source`` is needed unless
    ``loss.objective`` is ``ce``. ``val_loader`` is built from the ``val`` split when ``"auto"``; pass a
    loader to share one across runs, or None to skip validation. ``out_dir`` None trains in memory
    (nothing is written). The trained student is ``trainer.student``.
    """
    if student is None:
        seed_everything(cfg.train.seed)
        student, _ = build_student(cfg, datasets.num_classes)
    if init_state is not None:
        student.load_state_dict(init_state)
    objective = Objective.from_config(student, teacher_source, cfg, datasets.num_classes)
    if ctx is not None and ctx.rank:
        seed_everything(cfg.train.seed + ctx.rank)  # same initial weights, different augmentation per rank
    loaders = build_loaders(cfg, datasets if val_loader == "auto" else {"train": datasets["train"]}, ctx)
    trainer = Trainer(
        objective,
        loaders["train"],
        loaders.get("val") if val_loader == "auto" else val_loader,
        cfg=cfg,
        out_dir=out_dir,
        ctx=ctx,
        callbacks=callbacks,
        verbose=verbose,
    )
    return trainer, trainer.fit()
