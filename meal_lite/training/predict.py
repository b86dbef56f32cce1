"""``meal-lite predict``: the most likely classes of image files, from a run folder or an exported model.

A model is either a run folder (``train.out``, whose ``last.pt`` holds the student and the run's
configuration: :func:`meal_lite.training.export.load_trained_student`) or a folder written by
``meal-lite export`` (timm's hub layout, loaded with plain ``timm.create_model("local-dir:...")``).
Either way the images go through the model's own *evaluation* transform - resize, centre crop,
normalise, from the data config it was trained with - and the answer is the top classes by name with
their softmax probabilities.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import timm
import timm.data
import torch
from PIL import Image
from torch import nn

from meal_lite.data.transforms import build_transforms
from meal_lite.errors import DataError, ModelError, first_line
from meal_lite.training.export import load_trained_student
from meal_lite.training.recorder import CHECKPOINT_NAME

__all__ = ["Predictor", "load_predictor", "predict_images", "format_predictions"]

_EXPORT_CONFIG = "config.json"


@dataclass
class Predictor:
    """A classifier ready for image files: the model (eval mode), its data config and class names."""

    model: nn.Module
    data_config: dict[str, Any]
    class_names: tuple[str, ...]
    source: str

    @property
    def transform(self) -> Callable:
        """The evaluation transform of the data config (resize, centre crop, normalise)."""
        return build_transforms(self.data_config, train=False)


def load_predictor(location: str | os.PathLike) -> Predictor:
    """A :class:`Predictor` from a run folder (or its ``last.pt``) or an exported model folder."""
    path = Path(location).expanduser()
    if path.is_dir() and (path / _EXPORT_CONFIG).is_file():
        try:
            model = timm.create_model(f"local-dir:{path}", pretrained=True).eval()
        except Exception as exc:
            raise ModelError(
                f"timm cannot load the exported model in '{path}' ({first_line(exc)}); export it again with meal-lite export."
            ) from None
        names = model.pretrained_cfg.get("label_names") or [str(i) for i in range(model.num_classes)]
        return Predictor(model, dict(timm.data.resolve_model_data_config(model)), tuple(names), str(path))
    if (path.is_dir() and (path / CHECKPOINT_NAME).is_file()) or path.is_file():
        student = load_trained_student(path)
        return Predictor(student.model, student.data_config, student.class_names, str(student.checkpoint))
    raise ModelError(
        f"'{path}' is neither a run folder (with {CHECKPOINT_NAME}) nor an exported model folder (with {_EXPORT_CONFIG}); "
        f"give the train.out of a meal-lite train run or the --out of meal-lite export."
    )


def _read_image(path: str | os.PathLike, channels: int) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"Cannot read image file '{path}' ({first_line(exc, 120)}); give an image file (JPEG, PNG...).") from None


@torch.no_grad()
def predict_images(
    predictor: Predictor, images: Sequence[str | os.PathLike], top: int = 5
) -> list[list[tuple[str, float]]]:
    """For each image file, its ``top`` classes (at most the class count) as ``(name, probability)``, best first."""
    if not images:
        raise DataError("No image given; name one or more image files to classify.")
    channels = int(predictor.data_config["input_size"][0])
    transform = predictor.transform
    batch = torch.stack([transform(_read_image(path, channels)) for path in images])
    probs = predictor.model.eval()(batch).float().softmax(dim=1)
    k = min(top, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [
        [(predictor.class_names[i], p) for i, p in zip(row_indices.tolist(), row_values.tolist())]
        for row_indices, row_values in zip(indices, values)
    ]


def format_predictions(images: Sequence[str | os.PathLike], predictions: Sequence[Sequence[tuple[str, float]]]) -> str:
    """The predictions as text: each image's path, then one ``rank. name probability`` line per class."""
    lines = []
    for path, ranked in zip(images, predictions):
        lines.append(str(path))
        width = max(len(name) for name, _ in ranked)
        lines += [f"  {rank}. {name:<{width}s}  {100 * p:6.2f}%" for rank, (name, p) in enumerate(ranked, 1)]
    return "\n".join(lines) + "\n"
