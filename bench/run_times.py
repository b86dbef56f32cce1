"""The book's run-time table, per chapter, profile and hardware, from the measurements in ``bench/results``.

Columns:

- **offline, 2 CPU cores** (when measured): ``bench/results/chapter_times-offline.json`` (``python
  bench/chapter_times.py --profile offline``: the digits, from an empty cache folder);
- **imagenette, 2 CPU cores**: ``bench/results/chapter_times-imagenette.json`` (``python
  bench/chapter_times.py``: ImageNette at its full size and the profile's real architectures, served by
  loopback stand-ins with random weights, which cost what trained ones cost);
- **imagenette, Colab T4 (estimate)**: not measured. Each chapter's time here divided by the smallest
  speed-up a T4 gives over this CPU on any of the profile's units (``bench/results/imagenette_cost.json``:
  counted FLOPs over the T4's FP32 peak of 8.1 TFLOPS from NVIDIA's datasheet, against the rate
  measured here; a training step is further capped by two cores decoding JPEGs, a Colab runtime's
  CPU). Downloads are not included (ImageNette-160 is 94 MB; the weights are about 200 MB).

``python bench/run_times.py`` prints the table; ``tests/test_run_times.py`` checks that the README and the
intro show exactly this table.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: Chapter files and the names the table gives them.
CHAPTERS = {
    "01_data": "1 Data",
    "02_ensemble": "2 The teacher ensemble",
    "03_kl_distillation": "3 KL distillation",
    "03b_dark_knowledge": "3.7 Dark knowledge (digits in both profiles)",
    "04_discriminator": "4 The discriminator",
    "05_meal_v2": "5 MEAL V2, the protocol",
    "06_cached_soft_labels": "6 Cached soft labels",
    "07_imagenet_many_gpus": "7 ImageNet on many GPUs",
    "08_your_own_data": "8 Your own data",
}
#: A Colab runtime's CPU cores, which decode the training JPEGs for the GPU.
COLAB_CORES = 2


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def t4_speedup(cost: dict) -> tuple[float, str]:
    """The smallest estimated T4 / this-CPU speed ratio over the profile's units, and the unit that sets it."""
    units = cost["units"]
    data_rate = next(u["images_per_s"] for name, u in units.items() if name.startswith("data")) * COLAB_CORES
    ratios = {}
    for name, unit in units.items():
        if unit["t4_images_per_s_estimate"] is None:
            continue
        t4 = unit["t4_images_per_s_estimate"]
        if "train step" in name:
            t4 = min(t4, data_rate)
        ratios[name] = t4 / unit["images_per_s"]
    slowest = min(ratios, key=ratios.get)
    return ratios[slowest], slowest


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def table() -> str:
    """The markdown table (the offline column only when ``chapter_times-offline.json`` was measured)."""
    imagenette, cost = load("chapter_times-imagenette.json"), load("imagenette_cost.json")
    offline = load("chapter_times-offline.json") if (RESULTS / "chapter_times-offline.json").is_file() else None
    speedup, unit = t4_speedup(cost)
    columns = ["chapter"] + (["offline: digits, 2 CPU cores"] if offline else []) + [
        "imagenette: full-size ImageNette, 2 CPU cores", "imagenette: Colab T4, estimated"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    runs = ([offline] if offline else []) + [imagenette]
    totals = [0.0] * len(runs)
    for key, label in CHAPTERS.items():
        cells = []
        for i, run in enumerate(runs):
            row = run["chapters"][key]
            if row["status"] != "ok":
                raise SystemExit(f"{key} failed in a measured run ({row['error']}); measure again before publishing the table")
            totals[i] += row["seconds"]
            cells.append(minutes(row["seconds"]))
        cells.append(minutes(imagenette["chapters"][key]["seconds"] / speedup))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **whole book** | " + " | ".join(f"**{minutes(t)}**" for t in [*totals, totals[-1] / speedup]) + " |")
    cpu = imagenette["hardware"].get("cpu", "this machine's CPU")
    commands = ("`python bench/chapter_times.py --profile offline` and " if offline else "") + "`python bench/chapter_times.py`"
    lines += [
        "",
        f"Measured with {commands} on {cpu} (2 cores, {imagenette['threads']} torch threads, no GPU); the T4 "
        f"column divides each imagenette time by {speedup:.0f}, the smallest estimated T4 speed-up over this CPU "
        f"among the profile's units (set by the {unit}; `bench/imagenette_cost.py`), downloads not included.",
    ]
    again = imagenette.get("remeasured", {})
    if again:  # rows replaced by `chapter_times.py --update`: said, with their dates
        names = ", ".join(CHAPTERS[c].split(" ", 1)[0] for c in again)
        dates = ", ".join(sorted({r["date"] for r in again.values()}))
        lines[-1] += (f" Chapter {names}'s imagenette time was measured again alone after a change to it ({dates}, "
                      "`python bench/chapter_times.py --update --chapters ...`); the other rows are from the whole run.")
    if offline:
        lines[-1] += (f" The offline column ({offline['date']}) starts from an empty cache folder, as a reader's first "
                      "`make book` does: chapter 2 trains the digits teachers, later builds read them back.")
    return "\n".join(lines)


def units_table() -> str:
    """What one image costs in each unit of the imagenette profile (``bench/imagenette_cost.py``)."""
    cost = load("imagenette_cost.json")
    lines = ["| unit (one image) | GFLOP | images/s, 2 CPU cores | images/s, T4 (estimated) |", "|---|---|---|---|"]
    for name, unit in cost["units"].items():
        flops = f"{unit['gflops_per_image']:.2f}" if unit["gflops_per_image"] else "-"
        t4 = f"{unit['t4_images_per_s_estimate']:.0f}" if unit["t4_images_per_s_estimate"] else "-"
        lines.append(f"| {name} | {flops} | {unit['images_per_s']:.1f} | {t4} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
    print()
    print(units_table())
