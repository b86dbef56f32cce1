"""Accuracy against R: does a student trained from R cached crops per image match one taught online?

Beyer et al. (2022, "Knowledge distillation: a good teacher is patient and consistent") found that
teacher outputs precomputed on a *fixed* set of views overfit: the student memorises the few views it
is shown again and again, while a teacher run on fresh views keeps teaching. A soft-label cache is such
a fixed set, of ``R`` crops per image. :func:`accuracy_vs_crops` measures where that starts here: the
same schedule and seeds,

- **online**: the teachers run on a fresh crop of every image every epoch (:class:`FreshCrops`: crop
  ``e`` of the cache's seeded crop stream in epoch ``e``, so the same crops a cache with ``R > e``
  stores; with as many stored crops as epochs, a cache replays exactly the online crops and differs only
  by its top-k and float16);
- **cached, R crops**: a cache of ``R`` crops per image, crop ``e mod R`` replayed in epoch ``e``, so
  each stored crop is seen ``epochs / R`` times.

The student starts from scratch and trains with the cached mode's MEAL V2 objective in every arm
(discriminator on probabilities), so the only difference between arms is where the target comes from.
To keep it to minutes on two CPU cores it trains on every ``every``-th training image; accuracy is
measured on the held-out test split.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from meal_lite.data.datasets import DatasetSplits
from meal_lite.data.loaders import SeededViews
from meal_lite.experiments.protocol import Experiment, run_config
from meal_lite.experiments.record import hardware
from meal_lite.experiments.stats import paired_differences, summarize
from meal_lite.training.assemble import train_student
from meal_lite.training.softlabel_cache import generate_cache
from meal_lite.data.subsets import every_nth
from meal_lite.data.softlabels import CropSpec, base_item, crop_spec, draw_crop, render_crop, replay_cache

__all__ = ["FreshCrops", "every_nth", "accuracy_vs_crops"]


class FreshCrops(SeededViews):
    """The online counterpart of :class:`~meal_lite.data.softlabels.CachedCrops`: crop ``epoch`` of image ``i``,
    drawn now from the cache's seeded stream (``seed`` = ``soft_labels.seed``), a new crop every epoch."""

    def __init__(self, dataset: Dataset, spec: CropSpec, seed: int = 0) -> None:
        super().__init__(dataset, seed)
        self.spec = spec

    def view(self, index: int, epoch: int):
        image, label = base_item(self.dataset, index)
        box, flip = draw_crop(image, self.spec, self.seed, index, epoch)
        return render_crop(image, box, flip, self.spec), label


def _splits(datasets: DatasetSplits, train: Dataset) -> DatasetSplits:
    return DatasetSplits({**datasets, "train": train}, num_classes=datasets.num_classes, data_config=datasets.data_config,
                         class_names=datasets.class_names, dataset=datasets.dataset)


def accuracy_vs_crops(
    experiment: Experiment,
    crops: Sequence[int] = (1, 10, 50),
    *,
    seeds: int = 3,
    epochs: int = 12,
    every: int = 5,
    lr: float = 0.05,
    batch_size: int | None = None,
    top_k: int = 5,
    online: bool = True,
    cache_root: str | Path | None = None,
) -> dict:
    """Test top-1 of students taught online and from caches of ``R`` in ``crops`` (see the module docstring)."""
    started = time.perf_counter()
    cache_root = Path(cache_root or tempfile.mkdtemp(prefix="meal-lite-crops-"))
    datasets = _splits(experiment.datasets, every_nth(experiment.datasets["train"], every))
    base = copy.deepcopy(experiment.cfg)
    base.discriminator.input = "probs"
    base.soft_labels.top_k = top_k
    base.data.batch_size = batch_size or base.data.batch_size
    rows = (["online"] if online else []) + [f"R={r}" for r in crops]
    sources: dict[str, tuple[DatasetSplits, Any]] = {}
    manifests = {}
    for r in crops:
        cfg = copy.deepcopy(base)
        cfg.soft_labels.path, cfg.soft_labels.crops = str(cache_root / f"R{r}"), r
        manifests[r] = generate_cache(cfg, datasets=datasets, teachers=experiment.teachers, verbose=False)
        sources[f"R={r}"] = replay_cache(cfg, datasets)
        experiment.log(f"  cache R={r}: {manifests[r]['records']} crops, mean tail mass beyond top-{top_k} "
                       f"{manifests[r]['tail_mass_mean']:.1e}  ({time.perf_counter() - started:.0f} s)")
    if online:
        fresh = FreshCrops(datasets["train"], crop_spec(datasets["train"], datasets.data_config), base.soft_labels.seed)
        sources["online"] = (_splits(datasets, fresh), experiment.teachers)
    values: dict[str, list[float]] = {row: [] for row in rows}
    for seed in range(seeds):
        for row in rows:
            cfg = run_config(base, objective="meal", epochs=epochs, lr=lr, seed=seed)
            splits, source = sources[row]
            trainer, _ = train_student(cfg, splits, teacher_source=source, val_loader=None)
            values[row].append(experiment.evaluate(trainer.student.eval())["top1"])
        experiment.log(f"  seed {seed}: " + ", ".join(f"{row} {values[row][-1]:.2f}" for row in rows)
                       + f"  ({time.perf_counter() - started:.0f} s)")
    paired = paired_differences(values, [(row, "online") for row in rows[1:]]) if online else {}
    return {
        "metric": f"top-1 (%) on the held-out '{experiment.eval_split}' split; std is the sample std over seeds",
        "rows": {row: summarize(values[row]) for row in rows},
        "paired_differences": paired,
        "times_each_crop_is_seen": {f"R={r}": epochs / min(r, epochs) for r in crops},
        "settings": {"crops": list(crops), "seeds": seeds, "epochs": epochs, "train_images": len(datasets["train"]),
                     "every": every, "lr": lr, "batch_size": base.data.batch_size, "top_k": top_k, "objective": "meal, discriminator.input=probs",
                     "student": base.student.name, "teachers": list(experiment.teachers.teacher_names),
                     "crop": crop_spec(datasets["train"], datasets.data_config).as_dict()},
        "bytes_per_crop": manifests[crops[0]]["bytes_per_crop"],
        "hardware": hardware(experiment.device),
        "wall_seconds": time.perf_counter() - started,
    }
