"""A student as an ONNX file, written by torch's exporter and checked with ONNX Runtime.

``meal-lite export RUN --out DIR --onnx`` adds ``DIR/model.onnx``: one file (no external weights),
input ``images`` of shape ``(batch, C, H, W)`` with any batch size, output ``logits``, already
normalised input expected (the ``mean``/``std`` of ``config.json``). torch 2.x's ``torch.onnx.export``
traces the model with ``torch.export`` and needs the ``onnx`` and ``onnxscript`` packages; the check
needs ``onnxruntime``. All three are the optional extra ``meal-lite[onnx]``; without them everything
else in meal-lite works, and :func:`missing_onnx_packages` says what is missing.

The check (:func:`compare_onnx`) runs the student and the ONNX model on the same validation batches
and reports both top-1 accuracies and the largest absolute difference between their logits: float
kernels differ between runtimes, so equal logits are not expected, only differences far below the
gaps that decide a prediction.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from meal_lite.errors import ModelError, first_line

try:  # optional: the [onnx] extra
    import onnxruntime
except ImportError:  # pragma: no cover - depends on the installation
    onnxruntime = None

__all__ = ["ONNX_FILE", "ONNX_PACKAGES", "missing_onnx_packages", "write_onnx", "compare_onnx"]

ONNX_FILE = "model.onnx"
#: What torch's exporter (onnx, onnxscript) and the check (onnxruntime) need: the ``[onnx]`` extra.
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def missing_onnx_packages() -> list[str]:
    """The packages of :data:`ONNX_PACKAGES` that are not installed (an empty list when all are)."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def write_onnx(model: nn.Module, data_config: Mapping[str, Any], path: str | Path) -> Path:
    """Export ``model`` (eval mode) to ``path`` with ``torch.onnx.export``, batch size left free."""
    path = Path(path)
    example = torch.zeros((2, *data_config["input_size"]))
    try:
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # an operator the exporter does not know, a graph break...
        raise ModelError(
            f"torch's ONNX exporter cannot export this {type(model).__name__} ({first_line(exc, 200)}); export "
            f"without --onnx, the timm folder does not depend on it."
        ) from None
    return path


def compare_onnx(model: nn.Module, path: str | Path, loader: Iterable) -> dict[str, Any]:
    """The student and the ONNX model at ``path`` on the same batches of ``loader`` (CPU).

    Returns ``{"torch_top1", "onnx_top1"}`` (percent), ``max_logit_diff`` (the largest absolute logit
    difference), ``disagreements`` (images whose predicted class differs) and ``n`` (images).
    """
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    hits = torch.zeros(2, dtype=torch.long)
    worst, disagreements, n = 0.0, 0, 0
    for images, labels in loader:
        with torch.no_grad():
            expected = model(images).float()
        got = torch.from_numpy(session.run(["logits"], {"images": np.ascontiguousarray(images.numpy())})[0]).float()
        labels = torch.as_tensor(labels)
        hits += torch.stack([expected.argmax(1).eq(labels).sum(), got.argmax(1).eq(labels).sum()])
        disagreements += int(expected.argmax(1).ne(got.argmax(1)).sum())
        worst = max(worst, (expected - got).abs().max().item())
        n += labels.numel()
    torch_top1, onnx_top1 = (100.0 * hits / max(n, 1)).tolist()
    return {"torch_top1": torch_top1, "onnx_top1": onnx_top1, "max_logit_diff": worst, "disagreements": disagreements, "n": n}
