"""How long each chapter takes to execute, per profile, on this machine: the book's run-time table.

``--profile imagenette`` (the default): random weights cost the same time as trained ones, so a chapter's
cost can be measured without the network. The test suite's loopback stand-ins
(``tests/imagenette_standins.py``) serve an ``imagenette2-160.tgz`` of the release's full size (9,469
training and 3,925 validation JPEGs of the 160px release's sizes, generated here) and the profile's real
timm architectures with random weights. ``--profile offline``: the digits, nothing served, teachers and
baseline trained from an empty cache folder (what a reader's first ``make book`` does).

Every chapter runs in order, as a reader's ``jupyter-book build`` runs them: one kernel per chapter, each in
an empty folder, sharing one data folder and one cache folder, with every core of the machine. The first
chapter pays the download and extraction. Each chapter's wall time goes to
``bench/results/chapter_times-<profile>.json`` with the machine it ran on; a chapter that fails is
recorded with its error and the run goes on. ``bench/run_times.py`` turns the results into the README's
and the intro's table.

    python bench/chapter_times.py                        # imagenette, every chapter, full size (about an hour on 2 cores)
    python bench/chapter_times.py --profile offline      # the digits (about 8 minutes on 2 cores)
    python bench/chapter_times.py --chapters 01 02       # some chapters
    python bench/chapter_times.py --update --chapters 08  # re-measure chapter 8 in the results file, the rest kept
    python bench/chapter_times.py --train 2 --val 2 --out /tmp/smoke.json   # a smoke run at a tiny size
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the stand-ins live with the tests that use them

import nbformat  # noqa: E402
import torch  # noqa: E402
from jupyter_client import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

import imagenette_standins  # noqa: E402
from meal_lite.experiments.record import hardware  # noqa: E402
from standins import FULL_TRAIN, FULL_VAL  # noqa: E402

CHAPTERS = ("01_data", "02_ensemble", "03_kl_distillation", "03b_dark_knowledge", "04_discriminator", "05_meal_v2",
            "06_cached_soft_labels", "07_imagenet_many_gpus", "08_your_own_data")
RESULTS = ROOT / "bench" / "results"


def run_chapter(path: Path, timeout: float) -> dict:
    """Execute one chapter in an empty folder; its wall time, status and its five slowest cells."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="meal-lite-chapter-") as folder:
        # IPC sockets, not TCP ports: another process starting a kernel at the same moment cannot pick this one's ports.
        km = KernelManager(kernel_name="python3", transport="ipc", connection_file=str(Path(folder) / "kernel.json"))
        client = NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}})
        start = time.perf_counter()
        error, trace = None, []
        try:
            client.execute()
        except Exception as exc:  # a failed cell: record which one, and its traceback's end, and go on
            code = [c for c in nb.cells if c.cell_type == "code"]
            failed = next((i for i, c in enumerate(code)
                           if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
            error = (f"code cell {failed}: " if failed is not None else "") + f"{type(exc).__name__}: " + (text[-1] if text else "")
            trace = text[-40:]
        seconds = time.perf_counter() - start
    cells = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        timing = cell.get("metadata", {}).get("execution", {})
        began, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if began and ended:
            from datetime import datetime

            cells.append((i, (datetime.fromisoformat(ended.replace("Z", "+00:00"))
                              - datetime.fromisoformat(began.replace("Z", "+00:00"))).total_seconds()))
    slowest = sorted(cells, key=lambda c: -c[1])[:5]
    return {"seconds": round(seconds, 1), "status": "failed" if error else "ok", "error": error, "traceback_tail": trace,
            "slowest_code_cells": [{"cell": i, "seconds": round(s, 1)} for i, s in slowest]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", default=None, help="chapter prefixes (default: all, in order)")
    parser.add_argument("--train", type=int, default=None, help="training images per class (default: the release's)")
    parser.add_argument("--val", type=int, default=None, help="validation images per class (default: the release's)")
    parser.add_argument("--cell-timeout", type=float, default=3600)
    parser.add_argument("--profile", choices=("imagenette", "offline"), default="imagenette")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/chapter_times-<profile>.json")
    parser.add_argument("--update", action="store_true",
                        help="re-measure --chapters and replace their rows in --out, keeping the other chapters' rows "
                             "(the file lists each re-measured chapter with its date, and the table says so)")
    args = parser.parse_args(argv)
    if args.update and not args.chapters:
        parser.error("--update re-measures the chapters named by --chapters; name them, e.g. --update --chapters 08")
    chapters = [c for c in CHAPTERS if args.chapters is None or any(c.startswith(p) for p in args.chapters)]
    n_train = FULL_TRAIN if args.train is None else args.train
    n_val = FULL_VAL if args.val is None else args.val
    args.out = args.out or RESULTS / f"chapter_times-{args.profile}.json"
    earlier = None
    if args.update:
        if not args.out.is_file():
            parser.error(f"--update replaces rows of {args.out}, which does not exist; measure every chapter first")
        earlier = json.loads(args.out.read_text())
        if earlier["profile"] != args.profile:
            parser.error(f"{args.out} holds the {earlier['profile']} profile, not {args.profile}")
    started = time.perf_counter()
    if args.profile == "imagenette":
        state = imagenette_standins.start(lifetime=6 * 3600, n_train=n_train, n_val=n_val, workers=None)
    else:  # the digits: no server, an empty cache folder (teachers and baseline trained by the chapters)
        state = {}
        os.environ.update(MEAL_LITE_PROFILE="offline", HF_HUB_OFFLINE="1",
                          MEAL_LITE_CACHE=tempfile.mkdtemp(prefix="meal-lite-cache-"))
    archive_seconds = time.perf_counter() - started
    result = {
        "command": "python bench/chapter_times.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hardware": hardware(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "profile": args.profile,
        "images": {"train": sum(n_train) if not isinstance(n_train, int) else 10 * n_train,
                   "val": sum(n_val) if not isinstance(n_val, int) else 10 * n_val} if args.profile == "imagenette" else None,
        "setup_seconds": round(archive_seconds, 1),
        "date": time.strftime("%Y-%m-%d"),
        "chapters": {},
    }
    if earlier is not None:  # the earlier run, with the named chapters re-measured now
        result = {**earlier, "chapters": dict(earlier["chapters"]),
                  "remeasured": {**earlier.get("remeasured", {}),
                                 **{name: {"date": result["date"], "command": result["command"]} for name in chapters}}}
    print(f"{args.profile}: ready in {archive_seconds:.0f} s (stand-ins: archive and weights generated); {result['images']}", flush=True)
    try:
        for name in chapters:
            row = run_chapter(ROOT / "book" / f"{name}.ipynb", args.cell_timeout)
            result["chapters"][name] = row
            print(f"{name:28s} {row['seconds']:8.1f} s  {row['status']}  {row['error'] or ''}", flush=True)
            result["total_seconds"] = round(sum(r["seconds"] for r in result["chapters"].values()), 1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")  # after every chapter: a long run can be read early
    finally:
        if state:
            state["server"].stop()
            state["timer"].cancel()
    if state:  # each file fetched once (the archive: two GETs, torchvision follows redirects first)
        requests = sorted({path for method, path in state["server"].requests if method == "GET"})
        result["gets"] = {path: sum(1 for m, p in state["server"].requests if m == "GET" and p == path) for path in requests}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total {result.get('total_seconds', 0):.0f} s; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
