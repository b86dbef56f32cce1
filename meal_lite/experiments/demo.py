"""`meal-lite demo`: the paper's protocol at laptop scale, end to end, with an honest results table.

The protocol itself (what is trained, evaluated and compared) is :mod:`meal_lite.experiments.protocol`; this module
is the command around it: it runs the protocol for the profile, prints the table, and writes
``results.json`` and ``curves.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt

from meal_lite.files import write_json
from meal_lite.errors import ConfigError
from meal_lite.experiments.plots import plot_demo_curves
from meal_lite.config.profiles import resolve_profile
from meal_lite.experiments.protocol import Experiment, base_config, prepare_experiment, run_protocol
from meal_lite.experiments.protocol_settings import PROFILE_SETTINGS, ProtocolSettings
from meal_lite.experiments.arms import ARM_LABELS, ARMS
from meal_lite.experiments.record import provenance
from meal_lite.experiments.stats import interval_text, spread_text

__all__ = ["run_demo", "demo_table", "read_demo_results"]


def run_demo(
    profile: str | None = None,
    settings: ProtocolSettings | None = None,
    out_dir: str | Path = "runs/demo",
    overrides: Sequence[str] = (),
    verbose: bool = True,
    experiment: Experiment | None = None,
    keep_models: bool = False,
    workers: int | None = None,
    command: str | None = None,
) -> dict:
    """Run the protocol and write ``results.json`` and ``curves.png`` into ``out_dir``; returns the report.

    ``experiment`` reuses an existing :class:`~meal_lite.experiments.protocol.Experiment` (a notebook that already
    loaded the data and teachers). With ``keep_models`` the returned report also holds ``models``: the
    last seed's trained students by row, and ``reference``: the ensemble's probabilities and the labels on
    the measured split, for inspection (neither is written to disk). ``workers``:
    processes for the seeds (default: 2 on a CPU with two or more cores; see :mod:`meal_lite.training.workers`).
    ``command`` is recorded in the report with the date and the hardware (the CLI passes its command line).
    """
    if experiment is not None and overrides:
        raise ConfigError("run_demo got both an experiment and config overrides; apply the overrides to experiment.cfg instead.")
    started = time.perf_counter()
    made = provenance(command or "meal_lite.experiments.demo.run_demo, called from Python")
    profile = resolve_profile(profile)
    settings = settings or PROFILE_SETTINGS[profile]
    experiment = experiment or prepare_experiment(base_config(profile, overrides), settings, verbose, workers)
    report = run_protocol(experiment, settings, profile=profile, keep_models=keep_models, workers=workers)
    report.update(made)
    report["wall_seconds"] = wall = time.perf_counter() - started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    details = {k: v for k, v in report.items() if k not in ("models", "reference")}
    # results.json keeps the flat shape too: each row name maps to {mean, std, values}.
    write_json(out_dir / "results.json", {**report["rows"], "wall_seconds": wall, "details": details})
    plt.close(plot_demo_curves(report, settings, out_dir / "curves.png"))
    if verbose:
        print(demo_table(report))
        print(f"wrote {out_dir / 'results.json'} and {out_dir / 'curves.png'} in {wall:.0f} s")
    return report


def read_demo_results(path: str | Path | dict) -> dict:
    """The report a ``results.json`` of ``meal-lite demo`` was written from (its ``details``), for
    :func:`demo_table` and :func:`~meal_lite.experiments.plots.plot_demo_curves`: how the book shows the
    committed full run. ``path`` is the file, or its contents already loaded (``committed_result("demo")``)."""
    results = path if isinstance(path, dict) else json.loads(Path(path).read_text())
    return results["details"]


def demo_table(report: dict) -> str:
    """The results table as aligned text: row (and the arm's label), mean +- std of top-1, per-seed values;
    then the paired differences with their interval, or the reason for none (:mod:`meal_lite.experiments.stats`)."""
    rows = report["rows"]
    names = {key: f"{key}: {ARM_LABELS[key]}" if key in ARMS else key for key in rows}  # an arm's name, then its label
    width = max(len(name) for name in [*names.values(), *(f"paired {key}" for key in report["paired_differences"])])
    lines = [f"{'row':{width}s} {'top-1 (%)':>16s}   per seed", "-" * (width + 60)]
    for key, value in rows.items():
        name = names[key]
        lines.append(f"{name:{width}s} {spread_text(value):>16s}   " + " ".join(f"{v:.2f}" for v in value["values"]))
    lines.append("-" * (width + 60))
    for key, value in report["paired_differences"].items():
        lines.append(
            f"{'paired ' + key:{width}s} {spread_text(value, '+.2f'):>16s}   " + " ".join(f"{v:+.2f}" for v in value["values"]) + "   " + interval_text(value)
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="meal-lite demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--profile", default=None, help="offline or imagenette (default: $MEAL_LITE_PROFILE)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    parser.add_argument("--baseline-epochs", type=int, default=None)
    parser.add_argument("--distill-epochs", type=int, default=None)
    parser.add_argument("--discriminator-mode", choices=("official", "adversarial"), default=None)
    parser.add_argument("--workers", type=int, default=None,
                        help="one-thread processes for the seeds (default: $MEAL_LITE_WORKERS, else 2 on a CPU, 1 on a GPU)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.batch_size=128")
    args = parser.parse_args(list(argv) if argv is not None else None)
    profile = resolve_profile(args.profile)
    changes = {
        "seeds": args.seeds,
        "baseline_epochs": args.baseline_epochs,
        "distill_epochs": args.distill_epochs,
        "discriminator_mode": args.discriminator_mode,
    }
    settings = replace(PROFILE_SETTINGS[profile], **{k: v for k, v in changes.items() if v is not None})
    command = "meal-lite demo " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    return run_demo(profile, settings, args.out, args.overrides, workers=args.workers, command=command)


if __name__ == "__main__":
    main()
