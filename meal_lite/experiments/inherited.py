"""What a distilled student inherited from its teachers, beyond top-1.

Top-1 says how often a student is right; distillation claims more: that the student takes on the
ensemble's *function*. Four measurements make that visible, for any student against the ensemble:

* **agreement**: how often the student's top class is the ensemble's top class;
* **calibration**: the expected calibration error (ECE) - the gap between confidence and accuracy,
  averaged over equal-width confidence bins - and the bins themselves for a reliability plot;
* **mistake structure**: whether the student's wrong answers go where the ensemble puts its
  probability mass (for each true class, the ensemble's mean probabilities on the *other* classes are
  its notion of which classes look alike; the correlation of that with the student's off-diagonal
  confusions says whether the student errs "like the teachers");
* **target entropy**: how much the ensemble's targets carry beyond the label (0 nats: one-hot), on any
  set of images - the training views the student distils on, or the test split. That is
  :func:`meal_lite.core.losses.entropy` of the targets, the package's one entropy.

:func:`confusion_matrix` is the one confusion matrix of the package (chapter 5 draws differences of them).

Chapter 5 shows them side by side for the cross-entropy control and the distilled students.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from meal_lite.training.evaluate import model_outputs

__all__ = [
    "collect_outputs",
    "collect_teacher_logits",
    "agreement",
    "reliability_curve",
    "confusion_matrix",
    "mistake_similarity",
    "inheritance_report",
]


@torch.no_grad()
def collect_outputs(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities (N, C), labels (N,))`` of ``model`` over ``loader``, on the CPU.

    ``model`` may be a student (logits are softmaxed) or an object with ``targets(images)`` (the
    ensemble: its mean of probabilities is taken as it is).
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    if hasattr(model, "targets"):
        forward = lambda images: model.targets(images).probs  # noqa: E731
    else:
        forward = lambda images: torch.softmax(model(images).float(), dim=-1)  # noqa: E731
    probs, labels = [], []
    for p, y in model_outputs(forward, loader, device):
        probs.append(p.cpu())
        labels.append(y.cpu())
    if isinstance(model, nn.Module):
        model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


@torch.no_grad()
def collect_teacher_logits(ensemble: Any, loader: Iterable, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(every teacher's logits (K, N, C), labels (N,))`` of a frozen ensemble over ``loader``, on the CPU.

    One pass of the teachers gives each member's accuracy, the ensemble's (its mean of probabilities,
    :func:`~meal_lite.core.ensemble.average_teachers`) and its targets, so a caller that needs several of
    them runs the teachers once (on ImageNette they are most of a chapter's cost).
    """
    logits, labels = [], []
    for z, y in model_outputs(lambda images: torch.stack(list(ensemble.teacher_outputs(images))), loader, device):
        logits.append(z.cpu())
        labels.append(y.cpu())
    return torch.cat(logits, dim=1), torch.cat(labels)


def agreement(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """Percent of images on which ``probs`` and ``reference_probs`` have the same top class."""
    return 100.0 * (probs.argmax(dim=1) == reference_probs.argmax(dim=1)).float().mean().item()


def reliability_curve(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Confidence vs accuracy per confidence bin, and the expected calibration error (ECE, a fraction).

    Images are binned by the confidence of their top class into ``bins`` equal-width bins on [0, 1];
    ``ece = sum_b (n_b / N) |accuracy_b - confidence_b|``. Empty bins have NaN accuracy and confidence.
    """
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    acc, mean_conf, count = np.full(bins, np.nan), np.full(bins, np.nan), np.zeros(bins, dtype=int)
    for b in range(bins):
        mask = which == b
        count[b] = mask.sum()
        if count[b]:
            acc[b], mean_conf[b] = correct[mask].mean(), conf[mask].mean()
    ece = float(np.nansum(count / max(len(labels), 1) * np.abs(np.nan_to_num(acc) - np.nan_to_num(mean_conf))))
    return {"edges": edges, "accuracy": acc, "confidence": mean_conf, "count": count, "ece": ece}


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(matrix.shape[0], dtype=bool)]


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``M[i, j]``: how many images of true class ``i`` were predicted as ``j`` (integer counts)."""
    predicted, truth = np.asarray(predicted, dtype=np.int64), np.asarray(truth, dtype=np.int64)
    return np.bincount(num_classes * truth + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def mistake_similarity(probs: torch.Tensor, labels: torch.Tensor, ensemble_probs: torch.Tensor) -> dict[str, Any]:
    """How closely a model's mistakes follow the ensemble's notion of similar classes.

    ``confusions[i, j]``: images of true class ``i`` predicted as ``j`` (``j != i``), from ``probs``.
    ``similarity[i, j]``: the ensemble's mean probability of class ``j`` on images of true class ``i``.
    Returns both matrices, the Pearson correlation of their off-diagonal entries (NaN when the model
    makes no mistake), and ``on_ensemble_second``: the percent of the model's mistakes whose predicted
    class is the ensemble's second choice for that image.
    """
    num_classes = probs.shape[1]
    predicted = probs.argmax(dim=1).numpy()
    truth = labels.numpy()
    confusions = confusion_matrix(predicted, truth, num_classes)
    np.fill_diagonal(confusions, 0)
    similarity = np.zeros((num_classes, num_classes))
    ens = ensemble_probs.numpy()
    for c in range(num_classes):
        if (truth == c).any():
            similarity[c] = ens[truth == c].mean(axis=0)
    np.fill_diagonal(similarity, 0)
    wrong = predicted != truth
    second = np.argsort(-ens, axis=1)[:, 1]
    x, y = _off_diagonal(confusions).astype(float), _off_diagonal(similarity)
    corr = float(np.corrcoef(x, y)[0, 1]) if wrong.any() and x.std() > 0 and y.std() > 0 else float("nan")
    return {
        "confusions": confusions,
        "similarity": similarity,
        "correlation": corr,
        "mistakes": int(wrong.sum()),
        "on_ensemble_second": 100.0 * float((predicted[wrong] == second[wrong]).mean()) if wrong.any() else float("nan"),
    }


def inheritance_report(
    students: dict[str, nn.Module],
    ensemble: Any,
    loader: Iterable,
    device: torch.device | str = "cpu",
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """For each named student: top-1, agreement with the ensemble, ECE and mistake correlation on ``loader``.

    The ensemble's own top-1 and ECE are reported under ``"ensemble"``. Plain numbers only (JSON-ready).
    ``reference``: the ensemble's ``collect_outputs`` on ``loader``, when the caller already has them (the
    frozen teachers give the same outputs every time, so a protocol computes them once for all seeds).
    """
    ens_probs, labels = reference if reference is not None else collect_outputs(ensemble, loader, device)
    report = {"ensemble": {"top1": 100.0 * (ens_probs.argmax(1) == labels).float().mean().item(),
                           "ece": 100.0 * reliability_curve(ens_probs.numpy(), labels.numpy())["ece"]}}
    for name, model in students.items():
        probs, _ = collect_outputs(model, loader, device)
        mistakes = mistake_similarity(probs, labels, ens_probs)
        report[name] = {
            "top1": 100.0 * (probs.argmax(1) == labels).float().mean().item(),
            "agreement": agreement(probs, ens_probs),
            "ece": 100.0 * reliability_curve(probs.numpy(), labels.numpy())["ece"],
            "mistake_correlation": mistakes["correlation"],
            "mistakes_on_ensemble_second": mistakes["on_ensemble_second"],
            "mistakes": mistakes["mistakes"],
        }
    return report
