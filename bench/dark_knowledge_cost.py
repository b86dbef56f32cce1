"""Where the time of `meal-lite dark-knowledge` goes, and what sharing the teachers' work saves.

Timing lives here, never in the tests. Measures, on the offline digits with the cached teachers and
the package's own pieces, the CPU seconds of one epoch of each part of the experiment:

- drawing the augmented views of the transfer set (``SeededViews``);
- the three teachers' forward passes on those views;
- one student epoch of ``Trainer.train_step`` per arm kind (``ce``, ``kl`` at T=4, ``meal``), the
  teacher outputs read from the batch as the experiment does;

each in this process with ONE thread, as a worker of the experiment runs it, measured as process CPU
time (which a machine shared with other jobs inflates far less than wall time). From those it prints
the experiment's CPU cost two ways, side by side: "per arm" (every arm of every seed draws its own views
and runs the teachers itself, as a loop over ``train_student`` would) and "shared" (views and teacher
outputs computed once for all arms and seeds). Then the wall time of one student epoch with one thread
and with two, which is why the experiment runs two one-thread workers instead of one two-thread process.

    python bench/dark_knowledge_cost.py [--epochs 10] [--seeds 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from meal_lite.experiments.dark_knowledge import (
    DarkKnowledgeSettings,
    StoredTeacherOutputs,
    TransferSet,
    arm_config,
    draw_views,
    precompute_views,
)
from meal_lite.data.loaders import SeededViews, build_loader, set_loader_epoch
from meal_lite.core.objective import Objective
from meal_lite.experiments.protocol import Experiment, base_config
from meal_lite.training.assemble import build_student, seed_everything
from meal_lite.training.trainer import Trainer


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def wall(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def student_epoch(experiment: Experiment, data, arm: str, settings: DarkKnowledgeSettings):
    run = arm_config(experiment.cfg, arm, settings, seed=0)
    seed_everything(0)
    student, _ = build_student(run, experiment.num_classes)
    source = None if run.loss.objective == "ce" else StoredTeacherOutputs()
    loader = build_loader(data, settings.batch_size, train=True, seed=0)
    trainer = Trainer(Objective.from_config(student, source, run, experiment.num_classes), loader, None, cfg=run, verbose=False)

    def epoch():
        set_loader_epoch(loader, 0)
        trainer.objective.train()
        for step, batch in enumerate(loader):
            trainer.train_step(batch, step=step)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DarkKnowledgeSettings().epochs)
    parser.add_argument("--seeds", type=int, default=DarkKnowledgeSettings().seeds)
    args = parser.parse_args()
    torch.set_num_threads(1)
    experiment = Experiment(base_config("offline"), verbose=False)
    settings = DarkKnowledgeSettings(seeds=args.seeds, epochs=1)
    transfer = TransferSet(experiment.datasets["train"], settings.held_out)
    seeded = SeededViews(transfer, 0)
    t_views = cpu(lambda: [seeded.view(i, 0) for i in range(len(transfer))])
    t_teachers = cpu(lambda: draw_views(transfer, experiment.teachers, [0], 0)) - t_views
    data = precompute_views(transfer, experiment.teachers, 1, 0)
    t_arm = {}
    for arm in ("ce", "kl_T4", "meal"):
        epoch = student_epoch(experiment, data, arm, settings)
        epoch()  # warm-up
        t_arm[arm] = cpu(epoch)
    arms = DarkKnowledgeSettings(seeds=args.seeds).arms
    per_arm_student = sum(t_arm[a if a in ("ce", "meal") else "kl_T4"] for a in arms)  # every kl_T<t> costs what kl_T4 does
    runs = args.seeds * args.epochs
    naive = runs * (per_arm_student + len(arms) * t_views + (len(arms) - 1) * t_teachers)  # ce needs no teachers
    shared = runs * per_arm_student + args.epochs * (t_views + t_teachers)
    print(f"one epoch of the {len(transfer)}-image transfer set, CPU seconds, one thread:")
    print(f"  views {t_views:.2f}   teachers {t_teachers:.2f}   " + "   ".join(f"{a} {t:.2f}" for a, t in t_arm.items()))
    print(f"{len(arms)} arms x {args.seeds} seeds x {args.epochs} epochs, CPU seconds:")
    print(f"  per arm (views and teachers in every run): {naive:.0f}")
    print(f"  shared (views and teachers once):          {shared:.0f}   ratio {naive / shared:.2f}x")
    print(f"  shared, in 2 one-thread workers: at least {shared / 2:.0f} s of wall time on 2 free cores")
    epoch = student_epoch(experiment, data, "ce", settings)
    epoch()
    one = wall(epoch)
    torch.set_num_threads(2)
    epoch()
    two = wall(epoch)
    print(f"one ce student epoch, wall: 1 thread {one:.2f} s, 2 threads {two:.2f} s (speed-up {one / two:.2f}x; "
          f"two one-thread processes: up to 2x)")


if __name__ == "__main__":
    main()
