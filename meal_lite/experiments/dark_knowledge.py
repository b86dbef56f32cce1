"""Dark knowledge: a student distilled without a single labelled 3 still recognises 3s.

Hinton, Vinyals & Dean (2015, section 3) removed every 3 from MNIST's transfer set and distilled a
student from a teacher that had seen all ten digits: the student still recognised most test 3s, and
almost all of them once the 3-logit's bias was raised by a value chosen without test data. A student
trained on the same images' *labels* can never predict a 3. Whatever it learns about 3s comes from the
teacher's small probabilities on other digits ("this 5 looks a bit like a 3"): the dark knowledge that
MEAL V2 relies on when it drops labels altogether.

The experiment, on the offline digits with the cached teachers (trained on all ten digits):

1. the *transfer set* is the training split minus every image of the held-out class
   (:class:`TransferSet`);
2. each epoch's augmented view of every transfer image is drawn once (:class:`~meal_lite.data.loaders.SeededViews`
   with a fixed view seed) and pushed through the teachers once (:func:`precompute_views`). Every arm and
   every seed then trains on exactly these views, and the ensemble's forward passes are shared by all of
   them instead of being repeated per arm and seed. Seeds vary the student's (and discriminator's)
   initial weights and the batch order, not the views;
3. per seed, from-scratch students of the configured architecture, on identical batches, with the
   package's :class:`~meal_lite.core.objective.Objective` and :meth:`~meal_lite.training.trainer.Trainer.train_step`:
   the arms of :mod:`meal_lite.experiments.arms`: ``ce`` (labels of the transfer set), ``kl_T<t>`` (the
   ``kl`` arm at temperature ``t``: soft cross-entropy to the ensemble, Hinton's ``T**2`` scaling) and
   ``meal`` (soft cross-entropy at T = 1 plus the discriminator, MEAL V2).
   The arms of a seed run side by side in one loop over one loader (:func:`train_arms`); on a CPU, groups
   of arms run in worker processes with one thread each, because these small students use a second
   thread poorly and a second process well (``bench/dark_knowledge_cost.py`` measures both);
4. every student is scored on the test split before and after adding a bias to the held-out class's
   logit. The bias is chosen by :func:`~meal_lite.experiments.bias.choose_bias` from VALIDATION logits only (the value that
   maximises validation accuracy over a grid); the test split is read only after the choice
   (:func:`~meal_lite.experiments.bias.score_student`). Every arm gets the same treatment, ``ce`` included, and the report gives the
   paired difference (distilled minus ``ce``, after the bias) with a 95% t-interval where
   :mod:`meal_lite.experiments.stats`' rule allows one (5 seeds or more, a nonzero spread).

:func:`run_dark_knowledge` runs it all and returns the report; :mod:`meal_lite.experiments.dark_knowledge_report` is
the command (``meal-lite dark-knowledge``) that prints, writes and plots it.
"""

from __future__ import annotations

import math
import resource
import time
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from meal_lite.experiments.arms import arm_objective, kl_arm
from meal_lite.experiments.bias import score_student
from meal_lite.config.schema import Config
from meal_lite.core.ensemble import StoredTeacherOutputs, TeacherEnsemble, average_teachers
from meal_lite.errors import ConfigError
from meal_lite.data.loaders import SeededViews, build_loader
from meal_lite.core.losses import soften
from meal_lite.core.objective import Objective, soft_targets
from meal_lite.experiments.protocol import Experiment, run_config
from meal_lite.experiments.record import hardware
from meal_lite.experiments.stats import paired_differences, seeds_text, summarize, t_interval
from meal_lite.training.assemble import build_student, seed_everything
from meal_lite.training.trainer import Trainer
from meal_lite.training.workers import cpu_pool, resolve_workers

__all__ = [
    "HELD_OUT_METRICS",
    "PAIRED_METRICS",
    "DarkKnowledgeSettings",
    "arm_names",
    "TransferSet",
    "PrecomputedViews",
    "draw_views",
    "precompute_views",
    "held_out_mass",
    "arm_config",
    "train_arms",
    "run_dark_knowledge",
]

#: The four numbers reported per student (percent of the test split); the bias chosen is reported beside them.
HELD_OUT_METRICS = ("held_out_acc", "held_out_acc_bias", "overall_acc", "overall_acc_bias")
#: The metrics whose paired differences with ``ce`` the report gives (after the bias: the fair comparison).
PAIRED_METRICS = ("held_out_acc_bias", "overall_acc_bias")


@dataclass
class DarkKnowledgeSettings:
    """What the experiment trains and how the bias is chosen (the CLI's defaults)."""

    held_out: int = 3
    seeds: int = 5
    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    meal: bool = True  # the meal arm (MEAL V2) beside the kl sweep
    # The augmented views are drawn with this seed, the same for every arm and every seed.
    view_seed: int = 0
    # Candidate biases for the held-out logit: start, stop (inclusive), step.
    bias_grid: tuple[float, float, float] = (0.0, 30.0, 0.25)
    # Worker processes (None: $MEAL_LITE_WORKERS, else 2 on a CPU with 2+ cores, 1 on a GPU; meal_lite.training.workers).
    workers: int | None = None
    arms: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("dark-knowledge needs seeds >= 1, epochs >= 1 and batch_size >= 2; raise the value given.")
        if not self.temperatures:
            raise ConfigError("No temperature was given for the kl arms; give at least one, e.g. 1 2 4 8.")
        for t in self.temperatures:
            soften(torch.zeros(1), t)  # the one temperature check (ConfigError), before anything trains
        self.temperatures = tuple(float(t) for t in self.temperatures)
        self.arms = arm_names(self.temperatures, self.meal)

    def grid(self) -> np.ndarray:
        start, stop, step = self.bias_grid
        if not step > 0 or stop < start:
            raise ConfigError(f"bias_grid must be (start, stop, step) with step > 0 and stop >= start, got {self.bias_grid!r}.")
        return start + step * np.arange(int(math.floor((stop - start) / step + 1e-9)) + 1)


def arm_names(temperatures: Sequence[float], meal: bool = True) -> tuple[str, ...]:
    """``("ce", "kl_T1", "kl_T2", ..., "meal")``: the rows of the report, in order."""
    names = ["ce"] + [kl_arm(t) for t in temperatures]
    return tuple(names + ["meal"] if meal else names)


class TransferSet(Dataset):
    """``dataset`` without any image of class ``held_out``: what the students are
    trained on.

    ``indices`` are the kept positions in ``dataset``; ``targets`` their labels. Items
    are the dataset's own (augmentation included).
    """

    def __init__(self, dataset: Dataset, held_out: int) -> None:
        targets = list(getattr(dataset, "targets"))
        classes = getattr(dataset, "num_classes", None) or len(set(targets))
        if not 0 <= int(held_out) < classes:
            raise ConfigError(
                f"--held-out {held_out} is not a class of this dataset; "
                f"use a class index from 0 to {classes - 1}."
            )
        self.dataset = dataset
        self.held_out = int(held_out)
        self.num_classes = classes
        self.indices = [i for i, t in enumerate(targets) if int(t) != self.held_out]
        self.targets = [int(targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


class PrecomputedViews(SeededViews):
    """Stored views: item ``i`` in epoch ``e`` is ``(views[e, i], label i, teacher logits[e, i])``.

    A :class:`~meal_lite.data.loaders.SeededViews`, so :func:`~meal_lite.data.loaders.build_loader` uses it as it is
    and :func:`~meal_lite.data.loaders.set_loader_epoch` tells it the epoch; the views were drawn by a
    ``SeededViews`` beforehand (:func:`precompute_views`), so they are the same pixels it would give.
    """

    def __init__(self, transfer: TransferSet, views: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor) -> None:
        super().__init__(transfer, seed=0)
        self.views, self.labels, self.teacher_logits = views, labels, teacher_logits

    def view(self, index: int, epoch: int):
        if epoch >= self.views.shape[0]:
            raise ConfigError(f"Views were drawn for {self.views.shape[0]} epochs, not {epoch + 1}; precompute more epochs.")
        return self.views[epoch, index], self.labels[index], self.teacher_logits[epoch, index]


@torch.no_grad()
def draw_views(
    transfer: TransferSet, teachers: TeacherEnsemble, epochs: Sequence[int], view_seed: int, device: Any = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``epochs``' view of every transfer image, ``(E, n, C, H, W)``, and the teachers' logits on them, ``(E, n, K, classes)``."""
    seeded = SeededViews(transfer, view_seed)
    n = len(transfer)
    views = torch.stack([torch.stack([seeded.view(i, e)[0] for i in range(n)]) for e in epochs])
    teachers = teachers.to(device).eval()
    logits = []
    for epoch_views in views:
        chunks = [torch.stack(teachers.teacher_outputs(epoch_views[s : s + 256].to(device))).float().cpu() for s in range(0, n, 256)]
        logits.append(torch.cat(chunks, dim=1).transpose(0, 1))  # (n, K, C)
    return views, torch.stack(logits).contiguous()


def precompute_views(
    transfer: TransferSet, teachers: TeacherEnsemble, epochs: int, view_seed: int, device: Any = "cpu"
) -> PrecomputedViews:
    """Draw every epoch's view of every transfer image once and run the teachers on it once."""
    views, logits = draw_views(transfer, teachers, range(epochs), view_seed, device)
    return PrecomputedViews(transfer, views, torch.tensor(transfer.targets, dtype=torch.long), logits)


def held_out_mass(data: PrecomputedViews, held_out: int, temperatures: Sequence[float]) -> dict:
    """The ensemble's mean probability of ``held_out`` over the training views, at each temperature.

    Per temperature: ``mean`` over all views (of all epochs), ``by_digit`` (mean over the views of
    each true digit) and ``share`` (the fraction of the total mass each true digit carries), digits as
    string keys. The targets the students were trained on, softened as the objective softens them.
    """
    logits = data.teacher_logits.float()  # (E, n, K, C)
    ensemble = average_teachers(logits.permute(2, 0, 1, 3))  # teachers first: (K, E, n, C)
    labels = data.labels.expand(logits.shape[0], -1)  # (E, n)
    table = {}
    for t in temperatures:
        mass = soft_targets(ensemble, t)[..., held_out]  # (E, n): the targets the objective trains on
        digits = sorted(set(data.labels.tolist()))
        by_digit = {str(d): mass[labels == d].mean().item() for d in digits}
        total = mass.sum().item()
        share = {str(d): (mass[labels == d].sum().item() / total if total > 0 else 0.0) for d in digits}
        table[f"T{t:g}"] = {"temperature": t, "mean": mass.mean().item(), "by_digit": by_digit, "share": share}
    return table


# --------------------------------------------------------------------------------------------------
# Training the arms


def arm_config(cfg: Config, arm: str, settings: DarkKnowledgeSettings, seed: int) -> Config:
    """The run configuration of one arm: its objective and temperature, the settings' schedule."""
    objective, temperature = arm_objective(arm)
    run = run_config(cfg, objective=objective, epochs=settings.epochs, lr=settings.lr, seed=seed)
    run.loss.temperature = temperature
    run.data.batch_size = settings.batch_size
    run.train.progress = False
    return run


def train_arms(cfg: Config, data: PrecomputedViews, arms: Sequence[str], seed: int, settings: DarkKnowledgeSettings, num_classes: int) -> dict:
    """Train the ``arms`` of one seed, one after the other; returns ``{arm: student state_dict}``.

    Every arm starts from the same initial student weights (seeded with ``seed``) and takes the same
    batches (order seeded with ``seed``, views and teacher logits stored in ``data``), through the
    Trainer's own epoch loop (:meth:`~meal_lite.training.trainer.Trainer.fit`).
    """
    states = {}
    for arm in arms:
        run = arm_config(cfg, arm, settings, seed)
        seed_everything(seed)  # same initial weights in every arm of this seed
        student, _ = build_student(run, num_classes)
        source = None if run.loss.objective == "ce" else StoredTeacherOutputs()
        loader = build_loader(data, settings.batch_size, train=True, seed=seed, num_workers=0)
        trainer = Trainer(Objective.from_config(student, source, run, num_classes), loader, None, cfg=run, verbose=False)
        trainer.fit()
        states[arm] = {k: v.detach().cpu().clone() for k, v in trainer.student.state_dict().items()}
    return states


_WORKER: dict[str, Any] = {}


def _init_worker(shared: dict) -> None:
    _WORKER.update(shared)


def _views_task(epochs: range) -> tuple[int, torch.Tensor, torch.Tensor]:
    w = _WORKER
    return (epochs.start, *draw_views(w["transfer"], w["teachers"], epochs, w["settings"].view_seed))


def _train_task(seed: int, arms: Sequence[str], data: PrecomputedViews) -> tuple[int, dict]:
    w = _WORKER
    return seed, train_arms(w["cfg"], data, arms, seed, w["settings"], w["num_classes"])


def _tasks(settings: DarkKnowledgeSettings, workers: int) -> list[tuple[int, tuple[str, ...]]]:
    """(seed, arms) tasks: each seed's arms cut into ``workers`` groups, so the workers stay evenly loaded."""
    size = math.ceil(len(settings.arms) / workers)
    return [(seed, settings.arms[i : i + size]) for seed in range(settings.seeds) for i in range(0, len(settings.arms), size)]


def _compute(experiment: Experiment, transfer: TransferSet, settings: DarkKnowledgeSettings, workers: int) -> tuple[PrecomputedViews, dict, dict]:
    """The stored views, ``{(seed, arm): state_dict}`` and the seconds each phase took.

    With ``workers > 1`` both phases run in that many spawned processes with one thread each: the
    views and teacher outputs split by epochs, then the (seed, arm group) trainings.
    """
    started = time.perf_counter()
    states: dict[tuple[int, str], dict] = {}
    tasks = _tasks(settings, workers)
    labels = torch.tensor(transfer.targets, dtype=torch.long)

    def collect(seed: int, result: dict) -> None:
        states.update({(seed, arm): state for arm, state in result.items()})
        experiment.log(f"  seed {seed}: trained {', '.join(result)}  ({time.perf_counter() - started:.0f} s)")

    if workers == 1:
        data = precompute_views(transfer, experiment.teachers, settings.epochs, settings.view_seed, experiment.device)
        views_seconds = time.perf_counter() - started
        experiment.log(f"  views and teacher outputs for {settings.epochs} epochs: {views_seconds:.0f} s")
        for seed, arms in tasks:
            collect(seed, train_arms(experiment.cfg, data, arms, seed, settings, experiment.num_classes))
        return data, states, {"views_and_teachers": views_seconds, "training": time.perf_counter() - started - views_seconds}
    shared = {"cfg": experiment.cfg, "settings": settings, "num_classes": experiment.num_classes,
              "transfer": transfer, "teachers": experiment.teachers}
    with cpu_pool(workers, _init_worker, (shared,)) as pool:
        # One epoch per task: a worker that gets less of a shared machine then holds up the others by one epoch at most.
        parts = sorted(pool.map(_views_task, [range(e, e + 1) for e in range(settings.epochs)]))
        data = PrecomputedViews(transfer, torch.cat([p[1] for p in parts]), labels, torch.cat([p[2] for p in parts]))
        views_seconds = time.perf_counter() - started
        experiment.log(f"  views and teacher outputs for {settings.epochs} epochs: {views_seconds:.0f} s")
        for future in as_completed([pool.submit(_train_task, seed, arms, data) for seed, arms in tasks]):
            collect(*future.result())
    return data, states, {"views_and_teachers": views_seconds, "training": time.perf_counter() - started - views_seconds}


# --------------------------------------------------------------------------------------------------
# The whole experiment


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _with_interval(summary: dict) -> dict:
    """``summary`` with ``ci95``: its 95% t-interval as a list, or None where the rule of
    :mod:`meal_lite.experiments.stats` gives none (fewer than 5 seeds, or zero spread)."""
    interval = t_interval(summary)
    return {**summary, "ci95": list(interval) if interval is not None else None}


def run_dark_knowledge(experiment: Experiment, settings: DarkKnowledgeSettings) -> dict:
    """Run the experiment on ``experiment``'s data and teachers; returns the report (see the module docstring)."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if experiment.teachers is None:
        raise ConfigError("The dark-knowledge experiment needs the teachers; build the Experiment with teachers=True.")
    if "test" not in experiment.datasets or experiment.datasets.get("val") is None:
        raise ConfigError("The dark-knowledge experiment needs separate val and test splits (the bias is chosen on val); use the offline digits data.")
    log, held_out = experiment.log, settings.held_out
    transfer = TransferSet(experiment.datasets["train"], held_out)
    workers = resolve_workers(settings.workers, experiment.device)
    log(f"dark knowledge: class {held_out} held out, transfer set {len(transfer)} of {len(transfer.dataset)} training images; "
        f"{seeds_text(settings.seeds)} x {len(settings.arms)} arms, {settings.epochs} epochs, {workers} worker(s)")
    data, states, seconds = _compute(experiment, transfer, settings, workers)
    grid = settings.grid()
    scores: dict[str, list[dict]] = {arm: [] for arm in settings.arms}
    for seed in range(settings.seeds):
        for arm in settings.arms:
            student, _ = build_student(arm_config(experiment.cfg, arm, settings, seed), experiment.num_classes)
            student.load_state_dict(states[(seed, arm)])
            score = score_student(student.to(experiment.device), experiment.datasets["val"], experiment.datasets["test"], held_out, grid, experiment.device)
            scores[arm].append(score)
    rows = {arm: {m: summarize([s[m] for s in scores[arm]]) for m in (*HELD_OUT_METRICS, "bias")} for arm in settings.arms}
    pairs = [(arm, "ce") for arm in settings.arms if arm != "ce"]
    by_metric = {m: paired_differences({arm: rows[arm][m]["values"] for arm in settings.arms}, pairs) for m in PAIRED_METRICS}
    paired = {key: {m: _with_interval(by_metric[m][key]) for m in PAIRED_METRICS} for key in by_metric[PAIRED_METRICS[0]]}
    test_labels = torch.tensor(experiment.datasets["test"].targets)
    return {
        "dataset": experiment.cfg.data.dataset,
        "held_out": held_out,
        "metric": "accuracy (%) on the test split; *_bias after adding the validation-chosen bias to the held-out logit",
        "rows": rows,
        "paired_differences": paired,
        "mass": held_out_mass(data, held_out, settings.temperatures),
        "test_images": int(len(test_labels)),
        "test_held_out_images": int((test_labels == held_out).sum()),
        "transfer_images": len(transfer),
        "settings": asdict(settings),
        "workers": workers,
        "student": experiment.cfg.student.name,
        "teachers": list(experiment.teachers.teacher_names),
        "hardware": hardware(experiment.device, workers=workers),
        "seconds": {**seconds, "total": time.perf_counter() - started, "cpu": cpu_seconds() - cpu_started},
    }
