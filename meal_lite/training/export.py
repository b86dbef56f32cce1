"""``meal-lite export``: take a trained student away, in the Hugging Face hub's timm layout (and as ONNX).

A run folder holds the student inside ``last.pt``, next to the optimiser and everything else resume
needs, and readable only with meal-lite. :func:`export_run` writes it the way timm publishes its own
models, with timm's own writer (``timm.models.save_for_hf``): ``model.safetensors`` and a
``config.json`` naming the architecture, the class count, the class names and the data config the
student was trained with. Plain timm loads the folder, with no meal-lite installed::

    model = timm.create_model("local-dir:DIR", pretrained=True)
    config = timm.data.resolve_model_data_config(model)   # the run's input size, mean, std, crop
    names = model.pretrained_cfg["label_names"]

and the folder uploads to the hub as it is. Before the folder appears, the export is loaded back
that way and must give exactly the student's logits; with ``onnx=True`` a ``model.onnx`` is added and
checked with ONNX Runtime on the run's validation split (:mod:`meal_lite.training.onnx_export`). It is
all written into a temporary folder and renamed into place at the end, so a failed export leaves
nothing behind. :func:`load_trained_student` is also how ``meal-lite predict`` reads a run.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from timm.models import save_for_hf
from torch import nn

from meal_lite.config.schema import Config
from meal_lite.data.datasets import build_datasets, data_config_for, dataset_class_names
from meal_lite.data.loaders import build_loader
from meal_lite.errors import CheckpointError, ConfigError, DataError, ModelError, first_line
from meal_lite.models.factory import create_model, model_data_config
from meal_lite.models.runs import read_run_checkpoint
from meal_lite.models.weights import key_report
from meal_lite.training.onnx_export import ONNX_FILE, compare_onnx, missing_onnx_packages, write_onnx
from meal_lite.training.recorder import CHECKPOINT_NAME

__all__ = ["TrainedStudent", "run_checkpoint_path", "load_trained_student", "export_run"]


@dataclass
class TrainedStudent:
    """A run's trained student (eval mode, CPU), the data config it was trained with and its class names."""

    model: nn.Module
    data_config: dict[str, Any]
    class_names: tuple[str, ...]
    config: Config
    checkpoint: Path


def run_checkpoint_path(run: str | os.PathLike) -> Path:
    """The student checkpoint of ``run``: ``run/last.pt`` for a run folder, ``run`` itself for a file."""
    run = Path(run).expanduser()
    path = run / CHECKPOINT_NAME if run.is_dir() else run
    if not path.is_file():
        raise CheckpointError(
            f"'{run}' holds no student checkpoint ({CHECKPOINT_NAME}); give the train.out folder of a meal-lite "
            f"train run that finished at least one epoch."
        )
    return path


def load_trained_student(run: str | os.PathLike) -> TrainedStudent:
    """The student of a run folder (or of its ``last.pt``), rebuilt from the run's own configuration.

    Raises :class:`CheckpointError` (one sentence) when there is no checkpoint, when it is not a
    training checkpoint, or when its weights do not fit the student its configuration describes (another
    architecture, or a data folder whose class count changed since); :class:`DataError` when the class
    names cannot be read (a folder dataset whose ``data.root`` is gone).
    """
    path = run_checkpoint_path(run)
    cfg, state = read_run_checkpoint(path)
    try:
        names = dataset_class_names(cfg.data)
    except DataError as exc:
        raise DataError(
            f"The class names of the run in '{path}' are the class folders of its data.root, which cannot be read "
            f"now ({' '.join(str(exc).split())[:200]}); run this where that folder is."
        ) from None
    model = create_model(
        cfg.student.name,
        num_classes=len(names),
        in_chans=1 if cfg.data.dataset == "digits" else None,
        role="student",
    )
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(
            f"The student in '{path}' does not match its run's configuration (a {cfg.student.name} for {len(names)} "
            f"{cfg.data.dataset} classes: {key_report(state, lambda: model)}); give the run folder that wrote this "
            f"checkpoint, with its data unchanged."
        ) from None
    data_config = data_config_for(cfg.data, model_data_config(model))
    return TrainedStudent(model.eval(), data_config, tuple(names), cfg, path)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"'{out}' already exists and is not empty; choose another --out, or delete it first.")


def _check_reload(student: TrainedStudent, folder: Path) -> None:
    """timm loads ``folder`` as it is and gives the student's logits, bit for bit, on a seeded batch."""
    try:
        reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    except Exception as exc:
        raise ModelError(
            f"timm cannot load the {student.config.student.name} it just exported ({first_line(exc, 200)}); please "
            f"report this as a bug, with the student's architecture."
        ) from None
    images = torch.randn((4, *student.data_config["input_size"]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = student.model(images), reloaded(images)
    if not torch.equal(expected, got):
        raise ModelError(
            f"The exported {student.config.student.name} loaded back with timm gives other logits than the trained "
            f"student (largest difference {(expected - got).abs().max().item():.3g}); please report this as a bug."
        )


def export_run(
    run: str | os.PathLike, out: str | os.PathLike, *, onnx: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Write the student of ``run`` into ``out`` in timm's hub layout (and ``model.onnx`` when ``onnx``).

    ``out`` must not exist or be empty. Returns ``{"out", "files", "architecture", "num_classes",
    "class_names"}`` plus, with ``onnx``, the ONNX Runtime check (``torch_top1``, ``onnx_top1``,
    ``max_logit_diff``, ``n``). Everything is checked before ``out`` appears.
    """
    out = Path(out).expanduser().absolute()
    _check_out(out)
    if onnx and missing_onnx_packages():
        raise ConfigError(
            f"--onnx needs the packages {', '.join(missing_onnx_packages())}; install them with "
            f"pip install 'meal-lite[onnx]'."
        )
    student = load_trained_student(run)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")  # next to out: the final rename stays on one file system
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_for_hf(
            student.model, str(tmp), model_config={"label_names": list(student.class_names)},
            safe_serialization=True, data_config=dict(student.data_config),
        )
        _check_reload(student, tmp)
        result: dict[str, Any] = {}
        if onnx:
            write_onnx(student.model, student.data_config, tmp / ONNX_FILE)
            result = compare_onnx(student.model, tmp / ONNX_FILE, _val_loader(student))
            if result["torch_top1"] != result["onnx_top1"]:
                raise ModelError(
                    f"The ONNX model scores top-1 {result['onnx_top1']:.2f}% on the validation split but the student "
                    f"{result['torch_top1']:.2f}% (largest logit difference {result['max_logit_diff']:.3g}); please "
                    f"report this as a bug, with the student's architecture."
                )
        for file in tmp.iterdir():
            file.chmod(0o666 & ~_umask())  # as any file written here (safetensors writes its file private)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.update(
        out=str(out), files=sorted(p.name for p in out.iterdir()), architecture=student.config.student.name,
        num_classes=len(student.class_names), class_names=list(student.class_names),
    )
    log(f"exported {result['architecture']} ({result['num_classes']} classes) from {student.checkpoint} to {out}: "
        f"{', '.join(result['files'])}")
    if onnx:
        log(f"ONNX Runtime on the {result['n']} validation images: top-1 {result['onnx_top1']:.2f}% (student "
            f"{result['torch_top1']:.2f}%), largest logit difference {result['max_logit_diff']:.2e}")
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _val_loader(student: TrainedStudent) -> Any:
    """The run's validation split, transformed as in training's evaluation, for the ONNX check."""
    cfg = student.config
    try:
        val = build_datasets(cfg.data, student.data_config)["val"]
    except DataError as exc:
        raise DataError(
            f"The ONNX check scores the run's validation split, which cannot be read now ({first_line(exc, 200)}); "
            f"run the export where the run's data is, or leave out --onnx."
        ) from None
    return build_loader(val, cfg.data.eval_batch_size or cfg.data.batch_size, train=False, num_workers=cfg.data.num_workers)
