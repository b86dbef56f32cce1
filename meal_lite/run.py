"""Run assembly: from a configuration to data, models, an objective and a trainer - and the checks before.

:func:`train_student` is meal-lite's one way to train a student: the command line
(:func:`train_from_config`), the offline teachers (:func:`digits_teachers`), the demo and the book all
train through it. Given a configuration and the datasets it seeds, builds the student (or starts from
given weights), the :class:`~meal_lite.objective.Objective` with its discriminator, the loaders and the
:class:`~meal_lite.trainer.Trainer`, and fits.

:func:`train_from_config` adds what a run from the command line needs first: the resolved configuration
printed, the output folder checked, the data, student and teachers built and a single image pushed
through all of them - every check done BEFORE the output folder is created, so a run that fails early
writes nothing.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import offline
from .batching import describe_plan, plan_batches
from .config import Config, format_config
from .data import DatasetSplits, build_datasets
from .digits import digits_data_config
from .distributed import DistributedContext, init_distributed
from .ensemble import TeacherEnsemble, declared_num_classes
from .errors import ConfigError, ModelError, first_line
from .loaders import build_loader
from .models import create_model, create_student, create_teachers, teacher_specs
from .objective import Objective
from .recorder import CHECKPOINT_NAME, RunRecorder
from .softlabels import replay_cache
from .trainer import Callback, Trainer
from .workers import cpu_pool, one_thread, resolve_workers

__all__ = [
    "seed_everything",
    "build_student",
    "build_teachers",
    "digits_teachers",
    "train_digits_teacher",
    "build_loaders",
    "train_student",
    "train_from_config",
]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# Models


def build_student(cfg: Config, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The configured student and the data config its images use (see :func:`meal_lite.models.create_student`)."""
    return create_student(cfg.student, cfg.data, num_classes)


def build_teachers(cfg: Config, num_classes: int, data_config: Mapping[str, Any], *, verbose: bool = True) -> TeacherEnsemble:
    """The configured teacher ensemble: the ``teachers`` list, a timm preset, or the local ``digits`` preset."""
    if not cfg.teachers and cfg.teacher_preset == "digits":
        if num_classes != 10 or cfg.data.dataset != "digits":
            raise ConfigError(
                f"The digits teachers predict the 10 digits but the run asks for {num_classes} {cfg.data.dataset} "
                f"classes; use data.dataset=digits or another teacher_preset."
            )
        return digits_teachers(int(data_config["input_size"][-1]), verbose=verbose)
    return create_teachers(
        teacher_specs(cfg.teachers, cfg.teacher_preset), dataset=cfg.data.dataset, num_classes=num_classes, data_config=data_config
    )


def digits_teachers(
    image_size: int = 32,
    *,
    recipes: Sequence[offline.TeacherRecipe] | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
    workers: int | None = None,
) -> TeacherEnsemble:
    """The frozen ensemble of locally trained digits teachers: from the cache, else trained now and cached.

    ``recipes`` defaults to :data:`meal_lite.offline.DIGITS_TEACHERS` (looked up at call time). Teachers
    and student share the digits normalisation, so no input adapter is needed. Missing teachers are
    trained with one torch thread each, side by side in ``workers`` processes (default: 2 on a CPU with
    two or more cores; see :mod:`meal_lite.workers`), so their weights do not depend on the core count.
    """
    recipes = offline.DIGITS_TEACHERS if recipes is None else tuple(recipes)
    cache_dir = offline.default_cache_dir() if cache_dir is None else cache_dir  # the workers' too
    missing = [r for r in recipes if not offline.teacher_path(r, image_size, cache_dir).is_file()]
    for recipe in missing:
        if verbose:
            print(f"training digits teacher {recipe.name} ({recipe.epochs} epochs), cached as "
                  f"{offline.teacher_path(recipe, image_size, cache_dir)}", flush=True)
    workers = min(resolve_workers(workers, "cpu"), len(missing))
    if workers > 1:
        # Largest first (parameter count as the proxy for cost), so the last teacher to start is a small one.
        missing.sort(key=lambda r: -sum(p.numel() for p in create_model(r.name, num_classes=10, in_chans=1).parameters()))
        with cpu_pool(workers) as pool:
            list(pool.map(train_digits_teacher, missing, [image_size] * len(missing), [cache_dir] * len(missing)))
    else:
        for recipe in missing:
            with one_thread():
                train_digits_teacher(recipe, image_size, cache_dir)
    models = [offline.load_cached_teacher(recipe, image_size, cache_dir) for recipe in recipes]
    config = digits_data_config(image_size)
    return TeacherEnsemble(models, names=[r.name for r in recipes], data_configs=[config] * len(models))


def train_digits_teacher(recipe: offline.TeacherRecipe, image_size: int, cache_dir: str | Path | None = None) -> Path:
    """Train one digits teacher with cross-entropy (its recipe, on the training split) and cache it; returns the file."""
    cfg = offline.teacher_config(recipe, image_size)
    trainer, history = train_student(cfg, build_datasets(cfg.data, digits_data_config(image_size)))
    return offline.save_teacher(trainer.student.eval(), recipe, image_size, history, cache_dir)


# --------------------------------------------------------------------------------------------------
# Loaders


def build_loaders(cfg: Config, datasets: Mapping[str, Any], ctx: DistributedContext | None = None) -> dict:
    """``{"train": loader, "val": loader}`` (val only when the data has one), seeded by ``train.seed``.

    The batch is the per-process batch of the run's :func:`~meal_lite.batching.plan_batches`.
    """
    distributed = ctx is not None and ctx.distributed
    per_process = plan_batches(cfg, ctx.world_size if ctx is not None else 1).per_process
    kwargs = dict(num_workers=cfg.data.num_workers, seed=cfg.train.seed, distributed=distributed)
    loaders = {"train": build_loader(datasets["train"], per_process, train=True, **kwargs)}
    if datasets.get("val") is not None:
        eval_bs = cfg.data.eval_batch_size or per_process
        loaders["val"] = build_loader(datasets["val"], eval_bs, train=False, **kwargs)
    return loaders


# --------------------------------------------------------------------------------------------------
# Training


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


def train_from_config(cfg: Config, *, callbacks: Sequence[Callback] = (), ctx: DistributedContext | None = None) -> dict:
    """Build everything a config describes, check it, then train (writing into ``train.out``).

    Data, student, teachers and class counts are all checked BEFORE the output folder is created, so
    a run that fails early writes nothing. Returns ``{"out_dir", "history", "last", "best_top1", "rank"}``.
    """
    ctx = ctx or init_distributed(cfg.train.device)
    out_dir = Path(cfg.train.out)
    # The resolved config prints itself, then how its global batch splits over this run's processes.
    plan = plan_batches(cfg, ctx.world_size)
    RunRecorder(None, is_main=ctx.is_main).log(format_config(cfg) + describe_plan(plan, cfg))
    if (out_dir / CHECKPOINT_NAME).exists() and not cfg.train.resume:
        raise ConfigError(
            f"'{out_dir}' already holds a run ({CHECKPOINT_NAME}); set train.resume=true to continue it or "
            f"choose another train.out."
        )
    seed_everything(cfg.train.seed)
    student, data_config = build_student(cfg)
    datasets = build_datasets(cfg.data, data_config)
    _check_class_counts(cfg, student, datasets.num_classes)
    teachers = source = None
    if cfg.loss.objective != "ce" and cfg.soft_labels.path:
        datasets, source = replay_cache(cfg, datasets)  # cached soft labels: no teacher is built
    elif cfg.loss.objective != "ce":
        teachers = source = build_teachers(cfg, datasets.num_classes, datasets.data_config)
        _check_teacher_classes(teachers, datasets.num_classes)
    _check_one_sample(student, teachers, datasets, datasets.num_classes)
    trainer, history = train_student(
        cfg, datasets, teacher_source=source, student=student, out_dir=out_dir, ctx=ctx, callbacks=callbacks, verbose=True
    )
    return {
        "out_dir": str(out_dir),
        "history": history,
        "last": history[-1] if history else None,
        "best_top1": trainer.best_top1,
        "rank": ctx.rank,
    }


# --------------------------------------------------------------------------------------------------
# Checks before anything is written


def _check_class_counts(cfg: Config, student: nn.Module, data_classes: int) -> None:
    """The dataset, ``student.num_classes`` and the built student must agree on the class count."""
    counts = {
        "the dataset": data_classes,
        "student.num_classes": cfg.student.num_classes,
        f"the student {cfg.student.name}": declared_num_classes(student),
    }
    known = {k: v for k, v in counts.items() if v is not None}
    if len(set(known.values())) > 1:
        described = ", ".join(f"{k} has {v}" for k, v in known.items())
        raise ModelError(f"Class counts disagree ({described}); make student.num_classes match the dataset.")


def _check_teacher_classes(teachers: TeacherEnsemble, num_classes: int) -> None:
    try:
        teacher_classes = teachers.num_classes
    except ModelError:  # unknown until a forward; the one-sample check below catches a mismatch
        return
    if teacher_classes != num_classes:
        raise ModelError(
            f"The teachers predict {teacher_classes} classes but the dataset has {num_classes}; use teachers "
            f"made for this dataset's classes (see teacher_preset)."
        )


def _check_one_sample(student: nn.Module, teachers: Any, datasets: Mapping[str, Any], num_classes: int) -> None:
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
        raise ModelError(
            f"A {tuple(image.shape)} image from the {split} split does not go through the models "
            f"({first_line(exc, 200)}); check data.image_size and that the models take this many input channels."
        ) from None
    finally:
        student.train(was_training)
    for who, out in outputs.items():
        if out.dim() != 2 or out.shape[1] != num_classes:
            raise ModelError(
                f"The {who} output {tuple(out.shape)} for one image, but the dataset has {num_classes} classes; "
                f"give the {who} {num_classes} outputs."
            )
