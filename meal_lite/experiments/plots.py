"""Matplotlib figures shared by the demo and the book: training curves, calibration, confusion.

Each function draws on a given ``ax`` (or makes a figure) and returns the figure, so a notebook can
show it and the demo can save it. Only matplotlib and NumPy: no seaborn, no styling magic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from meal_lite.experiments.arms import ARM_LABELS, ARMS
from meal_lite.experiments.stats import seeds_text

__all__ = [
    "ARM_COLORS",
    "plot_demo_curves",
    "plot_reliability",
    "plot_confusion",
]

#: One colour per arm (labels: :data:`meal_lite.experiments.arms.ARM_LABELS`).
ARM_COLORS = {"baseline": "0.4", "ce": "tab:blue", "kl": "tab:orange", "meal": "tab:green"}


def _new_axes(ax=None, figsize=(6.4, 4.0)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def _mean_curve(curves: Sequence[Sequence[float | None]]) -> np.ndarray:
    arr = np.array([[np.nan if v is None else v for v in c] for c in curves], dtype=float)
    return np.nanmean(arr, axis=0) if arr.size else arr


def plot_demo_curves(report: Mapping[str, Any], settings: Any, path: str | Path | None = None, ax=None):
    """Validation top-1 per epoch: the baseline, then the three continuations from it, each the mean over
    its seeds (a shared baseline is one run; the title says how many of each were averaged)."""
    fig, ax = _new_axes(ax)
    curves = report["curves"]
    base = _mean_curve(curves["baseline"])
    n_base = len(base)
    ax.plot(np.arange(1, n_base + 1), base, color=ARM_COLORS["baseline"], label=ARM_LABELS["baseline"], marker="o", ms=3)
    arms = [row for row in ARMS if curves.get(row)]
    for row in arms:
        cont = _mean_curve(curves[row])
        x = np.arange(n_base, n_base + len(cont) + 1)
        ax.plot(x, np.concatenate([[base[-1]], cont]), color=ARM_COLORS[row], label=ARM_LABELS[row], marker="o", ms=3)
    ax.axvline(n_base, color="0.8", lw=1, ls="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    seeds = len(curves[arms[0]]) if arms else 0
    baselines = len(curves["baseline"])
    ax.set_title(f"{report.get('student', 'student')} on {report.get('dataset', '')}: continuations, mean of "
                 f"{seeds_text(seeds)}; baseline: {baselines} run{'s' if baselines != 1 else ''}", fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_reliability(curves: Mapping[str, dict], ax=None):
    """Reliability diagram: one line per model, the diagonal is perfect calibration."""
    fig, ax = _new_axes(ax, figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1, label="perfect calibration")
    for name, c in curves.items():
        ok = c["count"] > 0
        ax.plot(c["confidence"][ok], c["accuracy"][ok], marker="o", ms=4, label=f"{name} (ECE {100 * c['ece']:.1f}%)")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], ax=None, title: str = "", cmap: str = "RdBu"):
    """A confusion-matrix style heat map with a symmetric colour scale (for differences of matrices)."""
    fig, ax = _new_axes(ax, figsize=(5, 4.5))
    matrix = np.asarray(matrix)
    lim = max(1, np.abs(matrix).max())
    im = ax.imshow(matrix, cmap=cmap, vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90 if len(class_names) > 10 else 0)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(j, i, f"{matrix[i, j]:+d}" if cmap == "RdBu" else str(matrix[i, j]), ha="center", va="center")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig
