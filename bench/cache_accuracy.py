"""Accuracy against R on the offline digits: online teaching vs caches of R = 1, 10, 50 crops per image.

Runs :func:`meal_lite.experiments.cache_study.accuracy_vs_crops` (the method and its reasons are in that module's
docstring) over several seeds and writes ``meal_lite/experiments/results/cache_accuracy.json`` (package data);
chapter 6 reads it with ``committed_result("cache_accuracy")``.

    MEAL_LITE_PROFILE=offline HF_HUB_OFFLINE=1 python bench/cache_accuracy.py   # about 6 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from meal_lite.experiments.cache_study import accuracy_vs_crops
from meal_lite.experiments.protocol import Experiment, base_config
from meal_lite.experiments.record import provenance
from meal_lite.experiments.stats import interval_text
from meal_lite.files import write_json

PACKAGED = Path(__file__).resolve().parent.parent / "meal_lite" / "experiments" / "results" / "cache_accuracy.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, nargs="+", default=[1, 10, 50])
    # The defaults made the committed cache_accuracy.json (378 s on 2 CPU cores): an epoch count long
    # enough for the student to fit its 549 images, so that repeated crops can be memorised.
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the offline profile's")
    parser.add_argument("--every", type=int, default=2, help="train on every n-th training image")
    parser.add_argument("--cache-root", default=None, help="reuse (or keep) the caches in this folder")
    parser.add_argument("--out", default=str(PACKAGED), help="default: the packaged result the book shows")
    args = parser.parse_args()
    made = provenance("python bench/cache_accuracy.py " + shlex.join(sys.argv[1:]))
    experiment = Experiment(base_config("offline"), verbose=True)
    report = accuracy_vs_crops(experiment, args.crops, seeds=args.seeds, epochs=args.epochs, every=args.every,
                                batch_size=args.batch_size, cache_root=args.cache_root)
    print("\narm      test top-1 (mean +- std over seeds)   paired difference to online")
    for row, value in report["rows"].items():
        diff = report["paired_differences"].get(f"{row}-online")
        extra = f"{diff['mean']:+.2f} +- {diff['std']:.2f}, {interval_text(diff)}" if diff else ""
        print(f"{row:8s} {value['mean']:6.2f} +- {value['std']:.2f}                      {extra}")
    write_json(args.out, made | report, indent=1)
    print(f"wrote {args.out} ({report['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
