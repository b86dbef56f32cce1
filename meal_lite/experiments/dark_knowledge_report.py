"""`meal-lite dark-knowledge`: the held-out-digit experiment's command, table and plot.

The experiment itself is :mod:`meal_lite.experiments.dark_knowledge`; this module runs it on the offline digits
with the cached teachers, prints the table (like ``meal-lite demo``), and writes ``results.json`` and
``held_out_vs_T.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt

from meal_lite.experiments.arms import arm_label, kl_arm
from meal_lite.experiments.dark_knowledge import HELD_OUT_METRICS, PAIRED_METRICS, DarkKnowledgeSettings, run_dark_knowledge
from meal_lite.files import write_json
from meal_lite.errors import ConfigError
from meal_lite.experiments.protocol import Experiment, base_config
from meal_lite.experiments.record import provenance
from meal_lite.experiments.stats import interval_text, seeds_text, spread_text

__all__ = ["run_command", "dark_knowledge_table", "plot_held_out", "results_json", "read_dark_knowledge_results"]

COLUMNS = {
    "held_out_acc": "held-out",
    "held_out_acc_bias": "held-out+bias",
    "overall_acc": "overall",
    "overall_acc_bias": "overall+bias",
}


def dark_knowledge_table(report: dict) -> str:
    """The results as aligned text: one row per arm (mean +- std over seeds), each
    paired difference with its per-seed values and, on the line below, its interval
    or the reason for none (:mod:`meal_lite.experiments.stats`), then the mass.

    At five seeds no line is wider than the book's 88-character column."""
    h = report["held_out"]
    rule = "-" * 82
    lines = [
        f"class {h} held out: {report['test_held_out_images']} of the "
        f"{report['test_images']} test images are {h}s",
        f"accuracy (%), mean +- std over {seeds_text(report['settings']['seeds'])}"
        if report["settings"]["seeds"] > 1 else "accuracy (%) of 1 seed (no spread)",
        f"{'arm':8s}" + "".join(f"{title:>15s}" for title in COLUMNS.values())
        + f"{'bias':>14s}",
        rule,
    ]
    for arm, row in report["rows"].items():
        cells = "".join(f"{spread_text(row[m], '.1f'):>15s}" for m in HELD_OUT_METRICS)
        lines.append(f"{arm:8s}{cells}{spread_text(row['bias'], '.1f'):>14s}")
    lines.append(rule)
    lines.append(
        "paired difference vs ce after the bias: mean, per seed; 95% t-interval"
    )
    for key, diff in report["paired_differences"].items():
        for metric in PAIRED_METRICS:
            d = diff[metric]
            per_seed = " ".join(f"{v:+6.1f}" for v in d["values"])
            name = COLUMNS[metric]
            lines.append(f"  {key:9s} {name:13s} {d['mean']:+6.1f}  {per_seed}")
            lines.append(f"{'':26s}{interval_text(d, digits=1)}")
    lines.append(
        f"ensemble's mean probability of class {h} over the training views, "
        "top carriers' shares"
    )
    for key, m in report["mass"].items():
        top = sorted(m["share"].items(), key=lambda kv: -kv[1])[:4]
        carriers = ", ".join(f"{d}s {100 * s:.0f}%" for d, s in top)
        lines.append(f"  {key:4s} {m['mean']:.4f}   {carriers}")
    return "\n".join(lines)


def plot_held_out(report: dict, path: str | Path | None = None, ax: Any = None):
    """Held-out class accuracy against the temperature, without and with the bias (mean +- std over seeds)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0))
    rows = report["rows"]
    temps = [t for t in report["settings"]["temperatures"]]
    for metric, style, label in (("held_out_acc", "o--", "no bias"), ("held_out_acc_bias", "o-", "validation-chosen bias")):
        means = [rows[kl_arm(t)][metric]["mean"] for t in temps]
        stds = [rows[kl_arm(t)][metric]["std"] for t in temps]
        ax.errorbar(temps, means, yerr=stds, fmt=style, capsize=3, label=f"{arm_label('kl')}, {label}")
    ce = rows["ce"]["held_out_acc_bias"]
    ax.axhline(ce["mean"], color="0.3", ls=":", label=f"{arm_label('ce')}, with bias ({ce['mean']:.1f}%)")
    if "meal" in rows:
        for metric, marker in (("held_out_acc", "x"), ("held_out_acc_bias", "s")):
            ax.plot([1.0], [rows["meal"][metric]["mean"]], marker, color="tab:green", ms=8,
                    label=f"{arm_label('meal')} at T = 1, " + ("no bias" if metric == "held_out_acc" else "with bias"))
    ax.set_xscale("log", base=2)
    ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.set_xlabel("distillation temperature T")
    ax.set_ylabel(f"test accuracy on the held-out class {report['held_out']} (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(f"A digit never seen labelled ({seeds_text(report['settings']['seeds'])})")
    ax.legend(loc="best")
    ax.figure.tight_layout()
    if path is not None:
        ax.figure.savefig(path, dpi=120)
    return ax.figure


def results_json(report: dict) -> dict:
    """What ``results.json`` holds: one entry per arm (its four metrics and bias), then the rest."""
    return {**report["rows"], "paired_differences": report["paired_differences"], "mass": report["mass"],
            "details": {k: v for k, v in report.items() if k not in ("rows", "paired_differences", "mass")}}


def read_dark_knowledge_results(path: str | Path | dict) -> dict:
    """The report a ``results.json`` of ``meal-lite dark-knowledge`` was written from (:func:`results_json` undone),
    for :func:`dark_knowledge_table` and :func:`plot_held_out`: how the book shows the committed full run.
    ``path`` is the file, or its contents already loaded (``committed_result("dark_knowledge")``)."""
    results = path if isinstance(path, dict) else json.loads(Path(path).read_text())
    details = results["details"]
    rows = {arm: results[arm] for arm in details["settings"]["arms"]}
    return {**details, "rows": rows, "paired_differences": results["paired_differences"], "mass": results["mass"]}


def run_command(
    settings: DarkKnowledgeSettings, out_dir: str | Path, verbose: bool = True, experiment: Experiment | None = None,
    command: str | None = None,
) -> dict:
    """Run the experiment on the offline digits and write ``results.json`` and ``held_out_vs_T.png``.

    ``command`` is recorded in the report with the date and the hardware (the CLI passes its command line).
    """
    started = time.perf_counter()
    made = provenance(command or "meal_lite.experiments.dark_knowledge_report.run_command, called from Python")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder to write results.json and the plot into.")
    experiment = experiment or Experiment(base_config("offline"), verbose)
    report = run_dark_knowledge(experiment, settings)
    report.update(made)
    report["wall_seconds"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results_json(report))
    plt.close(plot_held_out(report, out_dir / "held_out_vs_T.png"))
    if verbose:
        print(dark_knowledge_table(report))
        print(f"wrote {out_dir / 'results.json'} and {out_dir / 'held_out_vs_T.png'} in {report['wall_seconds']:.0f} s "
              f"({report['seconds']['cpu']:.0f} CPU seconds in {report['workers']} worker(s))")
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    defaults = DarkKnowledgeSettings()
    parser = argparse.ArgumentParser(prog="meal-lite dark-knowledge", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder for results.json and held_out_vs_T.png")
    parser.add_argument("--held-out", type=int, default=defaults.held_out, help=f"digit left out of the transfer set (default {defaults.held_out})")
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help=f"number of seeds (default {defaults.seeds})")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"training epochs of every student (default {defaults.epochs})")
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(defaults.temperatures), help="KL arms' temperatures (default 1 2 4 8)")
    parser.add_argument("--no-meal", dest="meal", action="store_false", help="leave out the meal arm (MEAL V2)")
    parser.add_argument("--workers", type=int, default=None, help="one-thread worker processes (default: $MEAL_LITE_WORKERS, else 2 on a CPU, 1 on a GPU)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    settings = DarkKnowledgeSettings(held_out=args.held_out, seeds=args.seeds, epochs=args.epochs,
                                     temperatures=tuple(args.temperatures), meal=args.meal, workers=args.workers)
    command = "meal-lite dark-knowledge " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    return run_command(settings, args.out, command=command)


if __name__ == "__main__":
    main()
