"""The validation search behind the book's evidence (issue: "show MEAL V2 teaching the student, honestly").

Every configuration tried is run here, on the VALIDATION split of the offline digits, and appended with
its numbers to ``meal_lite/experiments/results/evidence_search.json`` (package data, so that the book
shows it wherever the package is installed: ``committed_result("evidence_search")``; summarised in
``bench/evidence_search.md``), so the choice of the protocol's settings
(:data:`meal_lite.experiments.protocol_settings.PROFILE_SETTINGS`) can be audited.
The test split is never read here; ``meal-lite demo`` measures it once with the chosen settings.

For each configuration (a set of levers: augmentation strength, input mixing, temperature, epochs):

* one baseline (shared by every seed, as in the protocol) is trained with labels (the profile's recipe)
  for ``baseline_epochs``, and its validation curve is kept, to check the plateau criterion
  (see :func:`plateau`);
* each continuation arm (``ce`` = more cross-entropy, the control; ``kl``; ``meal`` = MEAL V2; see
  :mod:`meal_lite.experiments.arms`) is trained from that baseline with every learning rate of the same
  grid; each arm keeps its best lr by mean validation top-1, so no arm is tuned more than another;
* the paired per-seed differences at the chosen lrs are reported, with their 95% t-intervals where the
  rule of :mod:`meal_lite.experiments.stats` gives one (5 seeds or more, a nonzero spread).

The log's first records were written when the arms were called ``control``, ``kl_only`` and ``meal_v2``;
:func:`load_log` renames them (:func:`meal_lite.experiments.arms.rename_legacy`), numbers untouched.

Usage (about 10-30 minutes per configuration on 2 CPU cores)::

    MEAL_LITE_PROFILE=offline python bench/evidence_search.py --config mild --config strong_mixup

``--profile imagenette`` runs the same search on ImageNette's validation images with the profile's
ImageNet-pretrained teachers and student, into its own log (``bench/results/evidence_search-imagenette.json``
and ``.md``): the choice of ``PROFILE_SETTINGS["imagenette"]`` needs it, and it needs the real images and
weights (a network; a GPU for the profile's full lengths). Trailing ``section.key=value`` arguments
override the profile's config (``data.train_per_class=...``); ``--log`` writes elsewhere::

    python bench/evidence_search.py --profile imagenette --config mild --seeds 5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from meal_lite.core.ensemble import EnsembleClassifier
from meal_lite.files import write_json, write_text
from meal_lite.training.digits_teachers import RECIPE_VERSION
from meal_lite.experiments.arms import ARM_LABELS, ARMS, rename_legacy
from meal_lite.experiments.protocol import Experiment, base_config, run_protocol
from meal_lite.experiments.protocol_settings import PAIRS, PROFILE_SETTINGS
from meal_lite.experiments.record import hardware
from meal_lite.experiments.stats import paired_differences, t_interval
from meal_lite.training.workers import cpu_pool, resolve_workers

HERE = Path(__file__).resolve().parent
LOG = HERE.parent / "meal_lite" / "experiments" / "results" / "evidence_search.json"  # the packaged log
SUMMARY = HERE / "evidence_search.md"
#: Each profile's log and its generated summary (the offline one ships with the package: the book shows it).
LOGS = {"offline": (LOG, SUMMARY),
        "imagenette": (HERE / "results" / "evidence_search-imagenette.json", HERE / "evidence_search-imagenette.md")}
LR_GRID = (0.003, 0.01)

# The configurations, each a change of levers from the profile's settings (in the order tried).
CONFIGS: dict[str, dict] = {
    "mild": {},  # MEAL V2 as published: the baseline's mild augmentation, no mixing, T = 1
    "strong": {"augment_strength": "strong"},  # views on which teachers disagree; consistent teaching
    "strong_mixup": {"augment_strength": "strong", "mixup_alpha": 0.4},  # + function matching
    "mild_T4": {"temperature": 4.0},
}


def plateau(curve_means: list[float], window: int = 4, tolerance: float = 1.0) -> bool:
    """The plateau criterion: the last ``window`` epochs' mean validation top-1 lie within ``tolerance`` points."""
    tail = curve_means[-window:]
    return max(tail) - min(tail) <= tolerance


def teacher_recipe(experiment: Experiment) -> int | None:
    """The digits teachers' recipe version (1: trained with 2 threads; 2: with one, meal_lite.training.workers);
    None for a profile whose teachers are pretrained (imagenette)."""
    return RECIPE_VERSION if experiment.cfg.profile == "offline" else None


def search_one(experiment: Experiment, name: str, seeds: int, baseline_epochs: int, distill_epochs: int) -> dict:
    levers = CONFIGS[name]
    settings = replace(
        PROFILE_SETTINGS[experiment.cfg.profile], seeds=seeds, baseline_epochs=baseline_epochs, distill_epochs=distill_epochs,
        lrs={}, **levers,
    )
    started = time.perf_counter()
    by_lr: dict[float, dict] = {}
    for lr in LR_GRID:
        by_lr[lr] = run_protocol(experiment, settings, split="val", lrs={row: lr for row in ARMS})
    first = by_lr[LR_GRID[0]]
    curves = first["curves"]["baseline"]
    curve_means = [sum(c[e] for c in curves) / len(curves) for e in range(len(curves[0]))]
    chosen = {row: max(LR_GRID, key=lambda lr: by_lr[lr]["rows"][row]["mean"]) for row in ARMS}
    values = {"baseline": first["rows"]["baseline"]["values"]}
    values |= {row: by_lr[chosen[row]]["rows"][row]["values"] for row in ARMS}
    paired = paired_differences(values, PAIRS)
    teachers = {k: v["mean"] for k, v in first["rows"].items() if k.startswith("teacher:") or k == "ensemble"}
    return {
        "config": name,
        "student": experiment.cfg.student.name,
        "teacher_recipe_version": teacher_recipe(experiment),
        "levers": levers,
        "settings": asdict(settings),
        "split": "val",
        "lr_grid": list(LR_GRID),
        "val_by_lr": {str(lr): {row: by_lr[lr]["rows"][row] for row in ARMS} for lr in LR_GRID},
        "chosen_lr": chosen,
        "values_at_chosen_lr": values,
        "paired_differences": paired,
        "teachers_val": teachers,
        "baseline_val_curve_mean": curve_means,
        "baseline_plateaued": plateau(curve_means),
        "wall_seconds": time.perf_counter() - started,
        "hardware": hardware(experiment.device),
        # The machine's 1-minute load average at the end: above the core count, other jobs shared the cores
        # and wall_seconds is not a benchmark (the earliest records were made on a shared machine).
        "load_average": os.getloadavg()[0],
    }


def _student_baseline(profile: str, overrides: list[str], name: str, epochs: int, lr: float) -> dict:
    """One candidate student trained on labels (the profile's recipe) for ``epochs``: its validation curve."""
    experiment = Experiment(base_config(profile, [*overrides, f"student.name={name}"]), verbose=False, teachers=False)
    settings = replace(PROFILE_SETTINGS[profile], baseline_epochs=epochs, baseline_lr=lr)
    model, history = experiment.baseline(settings, 0)
    curve = [m.get("val_top1") for m in history]
    return {"student": name, "params": sum(p.numel() for p in model.parameters()), "val_curve": curve,
            "val_top1": experiment.evaluate(model, experiment.val_loader)["top1"]}


def scan_students(experiment: Experiment, names: list[str], epochs: int, lr: float, overrides: list[str] = ()) -> list[dict]:
    """The lever "a weaker student": each candidate's label-trained plateau on validation against the
    ensemble's validation top-1 (the protocol wants the ensemble at least 3 points ahead of the plateau)."""
    ensemble = experiment.evaluate(EnsembleClassifier(experiment.teachers), experiment.val_loader)["top1"]
    started = time.perf_counter()
    workers = min(resolve_workers(None, "cpu"), len(names))
    with cpu_pool(workers) as pool:
        found = list(pool.map(_student_baseline, [experiment.cfg.profile] * len(names), [list(overrides)] * len(names),
                              names, [epochs] * len(names), [lr] * len(names)))
    return [
        r | {"config": f"student_scan:{r['student']}", "kind": "student_scan", "split": "val", "epochs": epochs, "lr": lr,
             "plateaued": plateau(r["val_curve"]), "ensemble_val": ensemble, "gap": ensemble - r["val_top1"],
             "teacher_recipe_version": teacher_recipe(experiment),
             "wall_seconds_all": time.perf_counter() - started}
        for r in found
    ]


def load_log(path: Path = LOG) -> list[dict]:
    """The search log's records, arms under their current names (older records: renamed, numbers as logged)."""
    return rename_legacy(json.loads(path.read_text())) if path.exists() else []


def write_markdown(records: list[dict], path: Path, data: str = "Offline digits, validation split (200 images)") -> None:
    arms = "Arms: " + "; ".join(f"`{arm}` {ARM_LABELS[arm]}" for arm in ARMS) + "."
    seeds = sorted({r["settings"]["seeds"] for r in records if r.get("kind") != "student_scan"})
    lines = [
        "# Validation search log (generated by bench/evidence_search.py; do not edit by hand)",
        "",
        f"{data}, mean over seeds; lr grid per arm "
        f"{list(LR_GRID)}, each arm's best lr in brackets. Paired differences at the chosen lrs, with a 95% "
        "t-interval only from 5 seeds or more (meal_lite.experiments.stats); every configuration here ran "
        f"{', '.join(map(str, seeds)) or 'none'}.",
        "",
        *(["Teachers v1: the teachers of the first records, trained with two threads; v2: trained with one thread",
           "(meal_lite.training.workers), the teachers of the published numbers. " + arms]
          if any(r.get("teacher_recipe_version", 1) for r in records) else ["Teachers: the profile's pretrained ones. " + arms]),
        "",
        "| config | student | teachers | levers | seeds | epochs (baseline + continuation) | ensemble / best teacher | baseline (plateau?) "
        "| ce | kl | meal | meal - ce | kl - ce |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    scans = [r for r in records if r.get("kind") == "student_scan"]
    for r in (r for r in records if r.get("kind") != "student_scan"):
        v, lr, p = r["values_at_chosen_lr"], r["chosen_lr"], r["paired_differences"]
        best = max(val for k, val in r["teachers_val"].items() if k.startswith("teacher:"))

        def mean(row: str) -> str:
            return f"{sum(v[row]) / len(v[row]):.2f}"

        def diff(key: str) -> str:
            interval = t_interval(p[key])  # the rule, not the interval an older record stored
            return f"{p[key]['mean']:+.2f}" + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")

        lines.append(
            f"| {r['config']} | {r.get('student', 'mobilenetv3_small_050')} | {teachers_label(r)} | "
            f"{json.dumps(r['levers'])} | {r['settings']['seeds']} | "
            f"{r['settings']['baseline_epochs']} + {r['settings']['distill_epochs']} | "
            f"{r['teachers_val']['ensemble']:.1f} / {best:.1f} | {mean('baseline')} ({'yes' if r['baseline_plateaued'] else 'no'}) | "
            f"{mean('ce')} ({lr['ce']}) | {mean('kl')} ({lr['kl']}) | {mean('meal')} ({lr['meal']}) | "
            f"{diff('meal-ce')} | {diff('kl-ce')} |"
        )
    if scans:
        lines += [
            "", "## Candidate students (the lever \"a weaker student\"): labels only, validation split", "",
            "| student | parameters | epochs, lr | val top-1 (last 4 epochs) | plateau? | ensemble | ensemble - student |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in scans:
            tail = ", ".join(f"{v:.1f}" for v in r["val_curve"][-4:])
            lines.append(f"| {r['student']} | {r['params']:,} | {r['epochs']}, {r['lr']} | {r['val_top1']:.1f} ({tail}) | "
                         f"{'yes' if r['plateaued'] else 'no'} | {r['ensemble_val']:.1f} | {r['gap']:+.1f} |")
    write_text(path, "\n".join(lines) + "\n")


def teachers_label(record: dict) -> str:
    version = record.get("teacher_recipe_version", 1)  # the first records predate the field: v1
    return f"v{version}" if version is not None else "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), default=[])
    parser.add_argument("--scan-students", nargs="+", default=[], metavar="TIMM_NAME",
                        help="train these students on labels to compare their validation plateau with the ensemble")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--profile", choices=sorted(LOGS), default="offline")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--distill-epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--student", default=None, help="timm name of another student (default: the profile's)")
    parser.add_argument("--log", type=Path, default=None, help="the JSON log to append to (default: the profile's; "
                        "its summary goes beside it, as .md)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="changes to the profile's config")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MEAL_LITE_PROFILE", args.profile)
    profile = PROFILE_SETTINGS[args.profile]
    baseline_epochs = args.baseline_epochs or profile.baseline_epochs
    distill_epochs = args.distill_epochs or profile.distill_epochs
    log, summary = (args.log, args.log.with_suffix(".md")) if args.log else LOGS[args.profile]
    overrides = list(args.overrides)
    experiment = Experiment(base_config(args.profile, [*overrides, *([f"student.name={args.student}"] if args.student else [])]),
                            verbose=True)
    data = (f"{'Offline digits' if args.profile == 'offline' else 'ImageNette'}, validation split "
            f"({len(experiment.datasets['val'])} images)")
    records = load_log(log)

    def write() -> None:
        write_json(log, records, indent=1)
        write_markdown(records, summary, data)

    if args.scan_students:
        records += scan_students(experiment, args.scan_students, baseline_epochs, profile.baseline_lr, overrides)
        write()
        print(summary.read_text())
    for name in args.config:
        record = search_one(experiment, name, args.seeds, baseline_epochs, distill_epochs)
        records.append(record)
        write()
        print(json.dumps({k: record[k] for k in ("config", "chosen_lr", "paired_differences", "baseline_plateaued")}, indent=1))


if __name__ == "__main__":
    main()
