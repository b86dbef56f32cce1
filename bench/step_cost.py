"""What one MEAL V2 training step costs next to a plain cross-entropy step of the same student.

Timing lives here, never in the tests. Runs the package's own public step (``Trainer.train_step``) (loss, ensemble,
discriminator, one joint optimiser) on random images and prints images per second for the
objectives ``ce``, ``kl`` and ``meal``, plus the ratio to ``ce``.

    python bench/step_cost.py                       # resnet18 student, resnet50 + resnet34 teachers, 128 px
    python bench/step_cost.py --student mobilenetv3_small_050 --teachers resnet10t regnetx_002 --size 32 --in-chans 1
"""

from __future__ import annotations

import argparse
import time

import torch

from meal_lite.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig
from meal_lite.ensemble import TeacherEnsemble
from meal_lite.models import create_model
from meal_lite.objective import Objective
from meal_lite.trainer import Trainer


def measure(objective: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    n = args.classes
    cfg = Config(
        profile="offline",
        data=DataConfig(dataset="digits", batch_size=args.batch),
        student=ModelConfig(name=args.student, pretrained=False),
        loss=LossConfig(objective=objective),
        train=TrainConfig(epochs=1, device=args.device, progress=False),
    )
    student = create_model(args.student, num_classes=n, in_chans=args.in_chans)
    teachers = TeacherEnsemble([create_model(t, num_classes=n, in_chans=args.in_chans) for t in args.teachers])
    images = torch.randn(args.batch, args.in_chans, args.size, args.size)
    labels = torch.randint(0, n, (args.batch,))
    batches = [(images, labels)] * (args.warmup + args.steps)
    trainer = Trainer(Objective(student, objective, teachers, num_classes=n), batches, cfg=cfg, verbose=False)
    trainer.objective.train()
    for batch in batches[: args.warmup]:
        trainer.train_step(batch)
    started = time.perf_counter()
    for batch in batches[args.warmup :]:
        trainer.train_step(batch)
    return args.batch * args.steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--teachers", nargs="+", default=["resnet50", "resnet34"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"student {args.student}, teachers {' + '.join(args.teachers)}, {args.size} px, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    base = None
    for objective in ("ce", "kl", "meal"):
        rate = measure(objective, args)
        base = base or rate
        print(f"  {objective:5s} {rate:8.1f} img/s   step time x{base / rate:.2f} of ce")


if __name__ == "__main__":
    main()
