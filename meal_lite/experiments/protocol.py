"""The experiment protocol: does boosting a student with the ensemble beat more training on labels?

MEAL V2's claim is that distilling from an ensemble boosts a student *beyond* what more training on
labels would give. The protocol tests exactly that, on the profile's data:

1. the teachers (digits: trained locally and cached; imagenette: ImageNet-pretrained timm models);
2. each teacher and the ensemble evaluated on held-out data (the ensemble should beat its members);
3. a student baseline trained with cross-entropy on hard labels to its validation plateau (MEAL V2's
   "pretrained student"; by default ONE baseline shared by every seed, as the paper boosts one model);
4. from that baseline, the same number of further epochs in three arms named by their objective
   (:mod:`meal_lite.experiments.arms`), identical but for the loss (same schedule, augmentation, input
   mixing, data order and views): ``ce``, more cross-entropy (the fair control, this book's addition),
   ``kl``, KL to the ensemble only, and ``meal``, full MEAL V2 (KL + discriminator);
5. step 4 repeated over several seeds: mean, std and the *paired* per-seed differences against the
   control (judged by :mod:`meal_lite.experiments.stats`' rule: a 95% t-interval from 5 seeds or more),
   and what each student inherited from the ensemble beyond top-1 (:mod:`meal_lite.experiments.inherited`).

Numbers are measured on the held-out test split (digits) or ImageNette's val split; nothing is tuned
on them. Settings are chosen with ``split="val"`` (``bench/evidence_search.py``, which logs every
configuration it tries in ``meal_lite/experiments/results/evidence_search.json``). :class:`Experiment` holds what every run of the protocol shares (data, loaders, teachers);
:func:`run_protocol` returns the report that ``meal-lite demo`` (:mod:`meal_lite.experiments.demo`) prints and
writes, and that the book's chapters read.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from concurrent.futures import as_completed
from dataclasses import asdict, replace
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from meal_lite.config.schema import Config, load_config
from meal_lite.data.datasets import build_datasets
from meal_lite.training.distributed import resolve_device
from meal_lite.core.ensemble import SharedTargets, average_teachers
from meal_lite.errors import ConfigError
from meal_lite.training.evaluate import evaluate
from meal_lite.experiments.inherited import collect_teacher_logits, inheritance_report
from meal_lite.data.loaders import build_loader
from meal_lite.config.profiles import resolve_profile
from meal_lite.training.assemble import build_student, train_student
from meal_lite.training.pipeline import build_teachers, check_teachers
from meal_lite.experiments.protocol_settings import CONTINUATIONS, PAIRS, ProtocolSettings
from meal_lite.experiments.baselines import baseline_path, load_cached_baseline, stored_or_trained
from meal_lite.experiments.record import hardware
from meal_lite.experiments.stats import paired_differences, summarize
from meal_lite.training.workers import cpu_pool, one_thread, resolve_workers

__all__ = [
    "base_config",
    "run_config",
    "Experiment",
    "prepare_experiment",
    "continuation_config",
    "run_protocol",
]

def base_config(profile: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """The profile's packaged configuration, with ``overrides`` applied and progress bars off."""
    cfg = load_config(None, overrides, profile=profile)
    cfg.train.progress = False
    return cfg


def run_config(
    cfg: Config,
    *,
    objective: str,
    epochs: int,
    lr: float,
    seed: int,
    disc_mode: str = "official",
    **levers: Any,
) -> Config:
    """A copy of ``cfg`` for one run of the protocol.

    ``levers`` (optional) set ``temperature``, ``augment_strength``, ``mixup_alpha`` and
    ``disc_lr_follows_student`` in the copy's ``loss`` / ``data`` / ``discriminator`` sections.
    """
    cfg = copy.deepcopy(cfg)
    cfg.loss.objective = objective
    cfg.discriminator.mode = disc_mode
    cfg.optim.lr = lr
    cfg.optim.milestones = [max(1, (3 * epochs) // 4)]
    cfg.train.epochs = epochs
    cfg.train.seed = seed
    homes = {
        "temperature": cfg.loss, "mixup_alpha": cfg.data, "augment_strength": cfg.data,
        "disc_lr_follows_student": cfg.discriminator,
    }
    for name, value in levers.items():
        if name not in homes:
            raise ConfigError(f"Unknown protocol lever {name!r}; use one of {', '.join(homes)}.")
        setattr(homes[name], "lr_follows_student" if name == "disc_lr_follows_student" else name, value)
    return cfg


def continuation_config(cfg: Config, settings: ProtocolSettings, row: str, seed: int, lr: float | None = None) -> Config:
    """The configuration of continuation ``row`` for ``seed`` (lr from ``settings`` unless given)."""
    return run_config(
        cfg, objective=row, epochs=settings.distill_epochs,
        lr=settings.lr_for(row) if lr is None else lr, seed=1000 + seed, disc_mode=settings.discriminator_mode,
        temperature=settings.temperature, augment_strength=settings.augment_strength,
        mixup_alpha=settings.mixup_alpha, disc_lr_follows_student=settings.disc_lr_follows_student,
    )


class Experiment:
    """What every run of the protocol shares: the data, the held-out loaders and the frozen teachers."""

    def __init__(self, cfg: Config, verbose: bool = True, verbose_epochs: bool = False, teachers: bool = True) -> None:
        self.cfg = cfg
        self.verbose = verbose
        self.verbose_epochs = verbose_epochs  # one line per training epoch (off: one line per seed)
        self.device = resolve_device(cfg.train.device)
        _, self.data_config = build_student(cfg)
        self.datasets = build_datasets(cfg.data, self.data_config)
        self.num_classes = self.datasets.num_classes
        self.eval_split = "test" if "test" in self.datasets else "val"
        batch = cfg.data.eval_batch_size or cfg.data.batch_size
        self.val_loader = build_loader(self.datasets["val"], batch, train=False, num_workers=cfg.data.num_workers)
        self.eval_loader = build_loader(self.datasets[self.eval_split], batch, train=False, num_workers=cfg.data.num_workers)
        self._datasets: dict[str, Any] = {}
        self._baselines: dict[tuple, tuple[dict, list[dict]]] = {}
        self.cache_baselines = True  # baselines kept in the cache folder (meal_lite.experiments.baselines)
        self.teachers = None
        if teachers:
            self.teachers = build_teachers(cfg, self.num_classes, self.datasets.data_config, verbose=verbose).to(self.device)

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def evaluate(self, model: nn.Module, loader: Any = None) -> dict:
        """Loss, top-1 and top-5 of ``model`` on the held-out split (or ``loader``)."""
        return evaluate(model.to(self.device), loader or self.eval_loader, self.device, num_classes=self.num_classes)

    def datasets_for(self, cfg: Config) -> Any:
        """The splits ``cfg`` trains on: the experiment's own, or a copy whose training split is augmented
        at ``cfg.data.augment_strength`` (val and test are never augmented, so they are shared)."""
        strength = cfg.data.augment_strength
        if strength == self.cfg.data.augment_strength:
            return self.datasets
        if strength not in self._datasets:
            data = copy.deepcopy(self.cfg.data)
            data.augment_strength = strength
            self._datasets[strength] = build_datasets(data, self.data_config)
        return self._datasets[strength]

    def train(
        self, cfg: Config, init_state: Mapping[str, torch.Tensor] | None = None, teacher_source: Any = None
    ) -> tuple[nn.Module, list[dict]]:
        """Train one student with ``cfg`` (from ``init_state`` if given); returns the model and its history.

        The teachers are this experiment's ensemble unless ``teacher_source`` (e.g. a
        :class:`SharedTargets` around it) is given; a ``ce`` run uses none.
        """
        source = (teacher_source or self.teachers) if cfg.loss.objective != "ce" else None
        trainer, history = train_student(
            cfg, self.datasets_for(cfg), teacher_source=source, init_state=init_state, val_loader=self.val_loader,
            verbose=self.verbose_epochs,
        )
        return trainer.student.eval(), history

    def baseline(self, settings: ProtocolSettings, seed: int) -> tuple[nn.Module, list[dict]]:
        """Seed ``seed``'s baseline (labels only, the profile's recipe), trained once per experiment.

        With ``settings.shared_baseline`` every seed gets seed 0's baseline."""
        key, cfg = self.baseline_config(settings, seed)
        if key not in self._baselines:  # else from the cache folder, if this recipe was trained before
            self._baselines[key] = stored_or_trained(self.baseline_file(cfg), lambda: self.train_one_thread(cfg))
        state, history = self._baselines[key]
        return self.student_from(state), history

    def baseline_config(self, settings: ProtocolSettings, seed: int) -> tuple[tuple, Config]:
        key = (0 if settings.shared_baseline else seed, settings.baseline_epochs, settings.baseline_lr)
        return key, run_config(self.cfg, objective="ce", epochs=settings.baseline_epochs, lr=settings.baseline_lr, seed=key[0])

    def baseline_file(self, cfg: Config) -> Any:
        """Where the baseline of ``cfg`` is kept (``cache_baselines`` off: None, never kept)."""
        return baseline_path(cfg, self.device) if self.cache_baselines else None

    def train_one_thread(self, cfg: Config) -> tuple[nn.Module, list[dict]]:
        with self.cpu_thread():
            return self.train(cfg)

    def cpu_thread(self) -> Any:
        """On a CPU, one torch thread (as in a worker): the protocol's numbers then do not depend on the core count."""
        return one_thread() if self.device.type == "cpu" else contextlib.nullcontext()

    def student_from(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """A student of the configured architecture holding ``state``, in eval mode on the device."""
        model = build_student(self.cfg, self.num_classes)[0]
        model.load_state_dict(state)
        return model.to(self.device).eval()


def train_continuations(
    experiment: Experiment, settings: ProtocolSettings, seed: int, rows: Sequence[str], lrs: Mapping[str, float],
    state: Mapping[str, torch.Tensor], split: str,
) -> dict[str, tuple[dict, list, float]]:
    """Seed ``seed``'s continuations ``rows`` from the baseline weights ``state``.

    Per row: the trained weights, the validation curve and the top-1 on ``split``. The rows share one
    :class:`SharedTargets`, so the frozen teachers run once per batch for all of them.
    """
    shared = SharedTargets(experiment.teachers)
    loader = experiment.val_loader if split == "val" else experiment.eval_loader
    out = {}
    for row in rows:
        cfg = continuation_config(experiment.cfg, settings, row, seed, lr=lrs[row])
        with experiment.cpu_thread():
            model, history = experiment.train(cfg, init_state=state, teacher_source=shared)
        out[row] = (copy.deepcopy(model.state_dict()), [m.get("val_top1") for m in history], experiment.evaluate(model, loader)["top1"])
    return out


_WORKER: dict[str, Experiment] = {}


def _init_worker(cfg: Config, teachers: nn.Module | None) -> None:
    # A one-thread worker decodes its own images: DataLoader processes started from a worker would be spawned
    # afresh for every loader and epoch (seconds of imports each), while the pool already fills the cores.
    # The batches are the same (they depend on the seed and epoch only).
    cfg = copy.deepcopy(cfg)
    cfg.data.num_workers = 0
    experiment = Experiment(cfg, verbose=False, teachers=False)
    experiment.teachers = teachers  # the parent's frozen teachers (None for the baseline alone)
    _WORKER["experiment"] = experiment


def _baseline_task(settings: ProtocolSettings) -> tuple[dict, list[dict]]:
    model, history = _WORKER["experiment"].baseline(settings, 0)
    return model.state_dict(), history


def prepare_experiment(cfg: Config, settings: ProtocolSettings, verbose: bool = True, workers: int | None = None) -> Experiment:
    """The :class:`Experiment` of ``cfg`` with its teachers and the shared baseline ready.

    On a CPU with workers, a baseline that is not in the cache folder yet (it needs no teacher) trains in a
    one-thread process while this one builds the teachers (cached, or trained in their own workers).
    """
    if resolve_workers(workers, resolve_device(cfg.train.device)) == 1 or not settings.shared_baseline:
        return Experiment(cfg, verbose)
    experiment = Experiment(cfg, verbose, teachers=False)  # what can fail, in this process before any worker starts:
    check_teachers(cfg)  # data, student and the teachers' weights (a failed worker would print a traceback)
    key, baseline_cfg = experiment.baseline_config(settings, 0)
    stored = load_cached_baseline(experiment.baseline_file(baseline_cfg))
    with cpu_pool(1, _init_worker, (cfg, None)) if stored is None else contextlib.nullcontext() as pool:
        baseline = pool.submit(_baseline_task, settings) if stored is None else None
        experiment.teachers = build_teachers(cfg, experiment.num_classes, experiment.datasets.data_config, verbose=verbose).to(experiment.device)
        experiment._baselines[key] = stored or baseline.result()  # what experiment.baseline(settings, 0) gives
    return experiment


def _continuations_task(*args: Any) -> tuple[int, dict]:
    return args[1], train_continuations(_WORKER["experiment"], *args)


def all_continuations(
    experiment: Experiment, settings: ProtocolSettings, rows: Sequence[str], lrs: Mapping[str, float],
    states: Mapping[int, Mapping[str, torch.Tensor]], split: str, workers: int,
) -> dict[int, dict]:
    """``{seed: {row: (weights, curve, top1)}}`` for every seed, trained in this process or in ``workers``
    one-thread processes (:mod:`meal_lite.training.workers`; the same weights as a one-thread run here).

    A seed's rows that use the teachers form one task (they share the teachers' outputs), its ``ce``
    row another; in a pool the larger tasks go first, so that the workers finish close together.
    """
    taught = tuple(r for r in rows if r != "ce")
    alone = tuple(r for r in rows if r == "ce")
    tasks = [(seed, group) for seed in range(settings.seeds) for group in (taught, alone) if group]
    started, done = time.perf_counter(), {seed: {} for seed in range(settings.seeds)}

    def collect(seed: int, result: dict) -> None:
        done[seed].update(result)
        experiment.log(f"  seed {seed}: " + ", ".join(f"{row} {v[2]:.2f}" for row, v in result.items())
                       + f"  ({time.perf_counter() - started:.0f} s)")

    if workers == 1:
        for seed, group in tasks:
            collect(seed, train_continuations(experiment, settings, seed, group, lrs, states[seed], split))
        return done
    tasks.sort(key=lambda task: -len(task[1]))  # stable: seed order within each size
    with cpu_pool(workers, _init_worker, (experiment.cfg, experiment.teachers)) as pool:
        futures = [pool.submit(_continuations_task, settings, seed, group, lrs, states[seed], split) for seed, group in tasks]
        for future in as_completed(futures):
            collect(*future.result())
    return done


def top1_of(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 (percent) of logits or probabilities ``(N, C)`` against ``labels``."""
    return 100.0 * (outputs.argmax(1) == labels).double().mean().item()


def run_protocol(
    experiment: Experiment,
    settings: ProtocolSettings,
    *,
    profile: str | None = None,
    keep_models: bool = False,
    split: str | None = None,
    rows: Sequence[str] = tuple(CONTINUATIONS),
    lrs: Mapping[str, float] | None = None,
    workers: int | None = None,
) -> dict:
    """Run the whole protocol on ``experiment``; returns the report (rows, paired differences, curves).

    ``split`` is where every row is measured: the experiment's held-out split (test for the digits) by
    default, ``"val"`` while choosing settings. ``rows`` and ``lrs`` restrict the continuations and
    override their learning rates (the validation search uses both). With ``keep_models`` the report
    also holds ``models``: the last seed's trained students by row, and ``reference``: the ensemble's
    ``(probabilities, labels)`` on the split. ``workers``: processes for the
    seeds' continuations (:func:`meal_lite.training.workers.resolve_workers`; default 2 on a multi-core CPU).
    """
    started = time.perf_counter()
    cfg = experiment.cfg
    log = experiment.log
    split = split or experiment.eval_split
    loader = experiment.val_loader if split == "val" else experiment.eval_loader
    if split not in ("val", experiment.eval_split):
        raise ConfigError(f"Unknown split {split!r} for this protocol; use 'val' or {experiment.eval_split!r}.")
    log(f"meal-lite protocol: profile {resolve_profile(profile)}, {cfg.data.dataset} data, measured on split '{split}'")
    log(f"settings: {asdict(settings)}")
    if experiment.teachers is None:
        raise ConfigError("The protocol needs the teachers; build the Experiment with teachers=True.")
    workers = resolve_workers(workers, experiment.device)
    results: dict[str, Any] = {}
    # The frozen teachers run once over the split: each member's top-1, the ensemble's and the reference
    # outputs every seed's students are compared with all come from this one pass.
    teacher_logits, labels = collect_teacher_logits(experiment.teachers, loader, experiment.device)
    for name, logits in zip(experiment.teachers.teacher_names, teacher_logits):
        results[f"teacher:{name}"] = summarize([top1_of(logits, labels)])
    reference = (average_teachers(teacher_logits).probs, labels)
    results["ensemble"] = summarize([top1_of(reference[0], labels)])
    for key, value in results.items():
        log(f"  {key:28s} top-1 {value['mean']:.2f}")

    lrs = {row: settings.lr_for(row) for row in rows} | dict(lrs or {})
    names = ("baseline", *rows)
    values: dict[str, list[float]] = {row: [] for row in names}
    curves: dict[str, list] = {row: [] for row in names}
    baselines = [experiment.baseline(settings, seed) for seed in range(1 if settings.shared_baseline else settings.seeds)]
    for baseline, history in baselines:  # a shared baseline is one model: one value
        values["baseline"].append(experiment.evaluate(baseline, loader)["top1"])
        curves["baseline"].append([m.get("val_top1") for m in history])
    states = {seed: baselines[0 if settings.shared_baseline else seed][0].state_dict() for seed in range(settings.seeds)}
    log(f"  baseline top-1 {statistics.fmean(values['baseline']):.2f}; continuations in {workers} worker(s)")
    trained = all_continuations(experiment, settings, rows, lrs, states, split, workers)
    inherited: list[dict] = []
    models: dict[str, nn.Module] = {}
    for seed in range(settings.seeds):
        models = {"baseline": baselines[0 if settings.shared_baseline else seed][0]}
        for row in rows:
            weights, curve, top1 = trained[seed][row]
            values[row].append(top1)
            curves[row].append(curve)
            models[row] = experiment.student_from(weights)
        inherited.append(inheritance_report(models, experiment.teachers, loader, experiment.device, reference))
    for row in names:
        results[row] = summarize(values[row])
    report = {
        "profile": resolve_profile(profile),
        "dataset": cfg.data.dataset,
        "split": split,
        "metric": f"top-1 accuracy (%) on the {split} split; std is the sample std over seeds",
        "rows": results,
        "paired_differences": paired_differences(values, PAIRS),
        "curves": curves,
        # per row, per measure (agreement with the ensemble, ECE, ...): {mean, std, values} over seeds
        "inherited": {
            row: {k: summarize([seed[row][k] for seed in inherited]) for k in inherited[0][row]}
            for row in inherited[0]
        } if inherited else {},
        "settings": asdict(replace(settings, lrs=lrs)),
        "student": cfg.student.name,
        "teachers": list(experiment.teachers.teacher_names),
        # workers > 1: the continuations trained in that many one-thread processes
        "hardware": hardware(experiment.device, workers=workers),
        "wall_seconds": time.perf_counter() - started,
    }
    if keep_models:
        report["models"] = models
        report["reference"] = reference  # the ensemble's (probabilities, labels) on the split, computed once
    return report
