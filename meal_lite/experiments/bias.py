"""Scoring a classifier with a bias on one class's logit, the bias chosen on validation data only.

A student that never saw a class labelled often ranks it second or third where it should be first: its
logit for that class is systematically too low. Hinton, Vinyals & Dean (2015) raised it by a constant
chosen without test data. :func:`choose_bias` picks that constant from VALIDATION logits and labels
alone (it is given nothing else), and :func:`score_student` reads the test split only after the choice.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from meal_lite.errors import ConfigError
from meal_lite.data.loaders import build_loader
from meal_lite.training.evaluate import collect_logits

__all__ = ["split_logits", "accuracies", "choose_bias", "score_student"]


def split_logits(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, C), labels (N,))`` of ``model`` on every image of ``dataset``, in order (CPU float32)."""
    return collect_logits(model, build_loader(dataset, 256, train=False), device)


def accuracies(logits: torch.Tensor, labels: torch.Tensor, held_out: int, bias: float = 0.0) -> tuple[float, float]:
    """``(held-out class accuracy, overall accuracy)`` in percent, with ``bias`` added to the held-out logit."""
    shifted = logits.clone()
    shifted[:, held_out] += bias
    correct = shifted.argmax(dim=1) == labels
    mask = labels == held_out
    # Counts, not float32 means: a share of 51 images is then exact to the last digit Python prints.
    held = 100.0 * int(correct[mask].sum()) / int(mask.sum()) if mask.any() else float("nan")
    return held, 100.0 * int(correct.sum()) / len(labels)


def choose_bias(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    held_out: int,
    grid: Sequence[float],
) -> float:
    """The bias for the held-out logit that maximises validation accuracy over ``grid``
    (VALIDATION data only).

    Ties go to the smallest bias in the grid: the least correction that does best. This
    function sees nothing but validation logits and labels, so the test split cannot
    leak into the choice.
    """
    best, best_acc = None, -1.0
    for b in sorted(float(x) for x in grid):
        acc = accuracies(val_logits, val_labels, held_out, b)[1]
        if acc > best_acc + 1e-9:
            best, best_acc = b, acc
    if best is None:
        raise ConfigError(
            "The bias grid is empty; give bias_grid a start, stop and positive step."
        )
    return best


def score_student(model: nn.Module, val_set: Dataset, test_set: Dataset, held_out: int, grid: Sequence[float], device: Any = "cpu") -> dict:
    """The four :data:`~meal_lite.experiments.dark_knowledge.HELD_OUT_METRICS` and the chosen bias of one student: the bias from ``val_set``, THEN the test split."""
    val_logits, val_labels = split_logits(model, val_set, device)
    bias = choose_bias(val_logits, val_labels, held_out, grid)
    test_logits, test_labels = split_logits(model, test_set, device)  # read only after the choice
    held, overall = accuracies(test_logits, test_labels, held_out)
    held_b, overall_b = accuracies(test_logits, test_labels, held_out, bias)
    return {"held_out_acc": held, "held_out_acc_bias": held_b, "overall_acc": overall, "overall_acc_bias": overall_b, "bias": bias}

