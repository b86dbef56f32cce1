"""A run from a configuration, as the command line starts it: everything built and checked, then trained.

:func:`train_from_config` prints the resolved configuration and how its global batch splits over the
processes, checks the output folder, builds the data, the student and the teachers (a timm preset, a
list, the local digits teachers, or a soft-label cache) and pushes a single image through all of them -
every check done BEFORE the output folder is created, so a run that fails early writes nothing - and
then trains through :func:`meal_lite.training.assemble.train_student`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from meal_lite.config.schema import Config, format_config
from meal_lite.core.ensemble import TeacherEnsemble, declared_num_classes
from meal_lite.data.datasets import build_datasets
from meal_lite.data.softlabels import replay_cache
from meal_lite.errors import ConfigError, ModelError, first_line
from meal_lite.models.factory import check_model_source, create_teachers, teacher_specs
from meal_lite.training.assemble import build_student, seed_everything, train_student
from meal_lite.training.batching import describe_plan, plan_batches
from meal_lite.training.digits_teachers import digits_ensemble
from meal_lite.training.distributed import DistributedContext, init_distributed
from meal_lite.training.recorder import CHECKPOINT_NAME, RunRecorder
from meal_lite.training.trainer import Callback

__all__ = ["build_teachers", "check_teachers", "train_from_config"]


def build_teachers(cfg: Config, num_classes: int, data_config: Mapping[str, Any], *, verbose: bool = True) -> TeacherEnsemble:
    """The configured teacher ensemble: the ``teachers`` list, a timm preset, or the local ``digits`` preset."""
    if not cfg.teachers and cfg.teacher_preset == "digits":
        if num_classes != 10 or cfg.data.dataset != "digits":
            raise ConfigError(
                f"The digits teachers predict the 10 digits but the run asks for {num_classes} {cfg.data.dataset} "
                f"classes; use data.dataset=digits or another teacher_preset."
            )
        return digits_ensemble(int(data_config["input_size"][-1]), verbose=verbose)
    return create_teachers(
        teacher_specs(cfg.teachers, cfg.teacher_preset), dataset=cfg.data.dataset, num_classes=num_classes, data_config=data_config,
        image_size=cfg.teacher_image_size,
    )


def check_teachers(cfg: Config) -> None:
    """Check, without building them, that the configured timm teachers exist and their weights can be had.

    Cheap (no model is built): a run calls it before it starts worker processes, so that a missing
    teacher is one sentence from the main process. The local ``digits`` preset needs no check.
    """
    for spec in teacher_specs(cfg.teachers, cfg.teacher_preset):
        check_model_source(spec.name, pretrained=spec.pretrained, weights=spec.weights, role="teacher")


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
