"""What one image costs in the imagenette profile, per model and pass: counted FLOPs and measured rates.

The units every imagenette chapter is made of, measured side by side in one run on this machine, with the
profile's real architectures and random weights (timm ``pretrained=False``: nothing is downloaded, and a
model's cost does not depend on its weights' values):

- **teachers**: each teacher of the profile's preset, forward only, at the size its
  :class:`~meal_lite.core.ensemble.InputAdapter` resizes to (its native size) and, for comparison, at
  the data's own 160 px;
- **student**: the profile's student at the profile's image size, a training step (forward, backward,
  SGD update; cross-entropy) and an evaluation forward;
- **data**: decoding one JPEG of the 160px release (213 x 160) and transforming it for training, in one
  process (a Colab runtime has two such cores for its DataLoader workers).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs; backward
included for the training step). The measured rate gives the FLOPs per second this CPU achieved on each
model. The T4 column is an estimate, not a measurement: counted FLOPs divided by :data:`T4_FLOPS`, the
T4's FP32 peak from NVIDIA's T4 datasheet (8.1 TFLOPS; its FP16 tensor cores peak at 65 TFLOPS, which
mixed precision can use, so the FP32 figure at full use is the round number we divide by), and never
faster than the data pipeline on two cores. Timed rounds are interleaved (one batch of every unit per
round), so a noisy moment slows every unit alike.

    python bench/imagenette_cost.py            # writes bench/results/imagenette_cost.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from meal_lite.config import load_config
from meal_lite.core.ensemble import InputAdapter
from meal_lite.data.transforms import build_transforms
from meal_lite.experiments.record import hardware
from meal_lite.models import TEACHER_PRESETS
from meal_lite.models.factory import create_model, model_data_config

#: NVIDIA T4 datasheet: 8.1 TFLOPS single precision (FP32), 65 TFLOPS mixed precision (FP16/FP32).
T4_FLOPS = 8.1e12
T4_SOURCE = "NVIDIA T4 Tensor Core GPU datasheet: 8.1 TFLOPS FP32, 65 TFLOPS FP16 mixed precision"
#: ImageNette's 160px release: 9,469 training and 3,925 validation images.
IMAGENETTE_TRAIN, IMAGENETTE_VAL = 9_469, 3_925
OUT = Path(__file__).parent / "results" / "imagenette_cost.json"


def flops(fn, *args) -> int:
    """FLOPs of one call of ``fn(*args)``, counted by torch (backward included if ``fn`` runs one)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def units(size: int, batch: int, eval_batch: int) -> dict:
    """name -> (callable taking no argument that processes one batch, images per call, description)."""
    cfg = load_config(None, profile="imagenette")
    out = {}
    x_eval = torch.randn(eval_batch, 3, size, size)
    for name in TEACHER_PRESETS[cfg.teacher_preset]:
        model = create_model(name, pretrained=False).eval()
        native = model_data_config(model)["input_size"][-1]
        for label, dst in ((f"native {native} px", native), ("160 px", None)):
            adapter = InputAdapter((0.5,) * 3, (0.5,) * 3, (0.5,) * 3, (0.5,) * 3, dst_size=dst)

            def forward(model=model, adapter=adapter):
                with torch.inference_mode():
                    model(adapter(x_eval))

            out[f"teacher {name} ({label})"] = (forward, eval_batch)
    student = create_model(cfg.student.name, pretrained=False, num_classes=10)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def train_step():
        student.train()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(student(x), y).backward()
        optimizer.step()

    def eval_step():
        student.eval()
        with torch.inference_mode():
            student(x_eval)

    out[f"student {cfg.student.name} train step ({size} px)"] = (train_step, batch)
    out[f"student {cfg.student.name} eval ({size} px)"] = (eval_step, eval_batch)
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (160, 213, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    transform = build_transforms(model_data_config(student) | {"input_size": (3, size, size)}, train=True)

    def data_step():
        for _ in range(batch):
            transform(Image.open(io.BytesIO(jpeg)).convert("RGB"))

    out[f"data: decode + train transform, one process ({size} px)"] = (data_step, batch)
    return out


def measure(rounds: int, size: int, batch: int, eval_batch: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    todo = units(size, batch, eval_batch)
    counted = {name: (flops(fn) if not name.startswith("data") else 0) for name, (fn, _) in todo.items()}
    for fn, _ in todo.values():  # warm-up: first calls allocate
        fn()
    seconds = {name: [] for name in todo}
    for _ in range(rounds):
        for name, (fn, n) in todo.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    rows = {}
    for name, (_, n) in todo.items():
        per_image = float(np.median(seconds[name])) / n
        f = counted[name] / n
        rows[name] = {
            "gflops_per_image": round(f / 1e9, 3),
            "images_per_s": round(1 / per_image, 2),
            "cpu_gflops_per_s": round(f / per_image / 1e9, 1) if f else None,
            "t4_images_per_s_estimate": round(T4_FLOPS / f, 0) if f else None,
        }
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cfg = load_config(None, profile="imagenette")
    size, batch = cfg.data.image_size, cfg.data.batch_size
    rows = measure(args.rounds, size, batch, eval_batch=32, threads=args.threads)
    result = {
        "command": " ".join(["python bench/imagenette_cost.py", *(argv if argv is not None else sys.argv[1:])]),
        "hardware": hardware(torch.device("cpu")),
        "threads": args.threads,
        "rounds": args.rounds,
        "batch": batch,
        "t4_flops": T4_FLOPS,
        "t4_source": T4_SOURCE,
        "imagenette_images": {"train": IMAGENETTE_TRAIN, "val": IMAGENETTE_VAL},
        "units": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, rows))
    print(f"{'unit':{width}s}  GFLOP/img  img/s here  GFLOP/s here  T4 img/s (est.)")
    for name, r in rows.items():
        print(f"{name:{width}s}  {r['gflops_per_image']:9.3f}  {r['images_per_s']:10.2f}  "
              f"{r['cpu_gflops_per_s'] or '':>12}  {r['t4_images_per_s_estimate'] or '':>15}")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
