"""`meal-lite demo`: the paper's protocol at laptop scale, end to end, with an honest results table.

MEAL V2's claim is that distilling from an ensemble boosts a student *beyond* what more training on
labels would give. The demo tests exactly that, on the profile's data:

1. the teachers (digits: trained locally and cached; imagenette: ImageNet-pretrained timm models);
2. each teacher and the ensemble evaluated on held-out data (the ensemble should beat its members);
3. a student baseline trained with cross-entropy on hard labels (MEAL V2's "pretrained student");
4. from that baseline, the same number of further epochs three ways: more cross-entropy (the fair
   control), KL to the ensemble only, and full MEAL V2 (KL + discriminator);
5. steps 3-4 repeated over several seeds: mean, std and the *paired* per-seed differences against the
   control, because the seeds share their baselines and a paired difference removes that variance.

Numbers are measured on the held-out test split (digits) or ImageNette's val split; nothing is tuned
on them. ``results.json`` and ``curves.png`` land in ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

ROWS = ("baseline", "control", "kl_only", "meal_v2")
CONTINUATIONS = {"control": "ce", "kl_only": "kl", "meal_v2": "meal"}


@dataclass
class DemoSettings:
    """Lengths and learning rates of the demo's student runs (teachers have their own recipe)."""

    seeds: int = 3
    baseline_epochs: int = 8
    distill_epochs: int = 8
    baseline_lr: float = 0.05
    # Boosting starts from a trained student, so it uses a smaller lr, as MEAL V2 does (0.01 on a
    # pretrained ResNet-50), dropped tenfold for the last quarter like the paper's 0.01 -> 0.001 step.
    distill_lr: float = 0.01
    discriminator_mode: str = "official"


# Per profile: the offline one is sized to finish in a few minutes on two CPU cores; the imagenette one
# for a single Colab GPU.
PROFILE_SETTINGS = {
    "offline": DemoSettings(),
    "imagenette": DemoSettings(seeds=3, baseline_epochs=5, distill_epochs=5, baseline_lr=0.01, distill_lr=0.001),
}


def base_config(profile: str | None = None, overrides: Sequence[str] = ()):
    """The profile's packaged configuration, with ``overrides`` applied and progress bars off."""
    from .config import load_config

    cfg = load_config(None, overrides, profile=profile)
    cfg.train.progress = False
    return cfg


def run_config(cfg, *, objective: str, epochs: int, lr: float, seed: int, disc_mode: str = "official"):
    """A copy of ``cfg`` for one demo run."""
    cfg = copy.deepcopy(cfg)
    cfg.loss.objective = objective
    cfg.discriminator.mode = disc_mode
    cfg.optim.lr = lr
    cfg.optim.milestones = [max(1, (3 * epochs) // 4)]
    cfg.train.epochs = epochs
    cfg.train.seed = seed
    return cfg


class EnsembleClassifier(nn.Module):
    """The ensemble as a classifier: log of the averaged probabilities (argmax = ensemble prediction)."""

    def __init__(self, ensemble: nn.Module) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x).probs.clamp_min(1e-12).log()


def teacher_classifiers(ensemble) -> dict[str, nn.Module]:
    """``{name: classifier}`` for each teacher of an ensemble, to evaluate the members one by one.

    Each member becomes a one-teacher :class:`~meal_lite.ensemble.TeacherEnsemble` (same module, same
    input adapter) behind :class:`EnsembleClassifier`, so the ensemble's own freezing applies: no caller
    can put a teacher's BatchNorm back in training mode.
    """
    from .ensemble import TeacherEnsemble

    names = getattr(ensemble, "teacher_names", None) or [f"teacher{i}" for i in range(len(ensemble.teachers))]
    return {
        name: EnsembleClassifier(TeacherEnsemble([teacher], [adapter]))
        for name, teacher, adapter in zip(names, ensemble.teachers, ensemble.adapters)
    }


class DemoRunner:
    """Holds the data, the teachers and the held-out loader shared by every run of the demo."""

    def __init__(self, cfg, verbose: bool = True, verbose_epochs: bool = False) -> None:
        from .data import build_datasets, build_loader
        from .models import create_student, create_teachers
        from .trainer import resolve_device

        self.cfg = cfg
        self.verbose = verbose
        self.verbose_epochs = verbose_epochs  # one line per training epoch (off: one line per seed)
        self.device = resolve_device(cfg.train.device)
        _, self.data_config = create_student(cfg)
        self.datasets = build_datasets(cfg.data, self.data_config)
        self.num_classes = self.datasets.num_classes
        self.eval_split = "test" if "test" in self.datasets else "val"
        batch = cfg.data.eval_batch_size or cfg.data.batch_size
        self.val_loader = build_loader(self.datasets["val"], batch, train=False, num_workers=cfg.data.num_workers)
        self.eval_loader = build_loader(self.datasets[self.eval_split], batch, train=False, num_workers=cfg.data.num_workers)
        self.teachers = create_teachers(cfg, self.num_classes, self.datasets.data_config).to(self.device)

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def evaluate(self, model: nn.Module) -> dict:
        from .trainer import evaluate

        return evaluate(model.to(self.device), self.eval_loader, self.device, num_classes=self.num_classes)

    def train(self, cfg, init_state: dict | None = None) -> tuple[nn.Module, list[dict]]:
        """Train one student with ``cfg`` (from ``init_state`` if given); returns the model and its history."""
        from .data import build_loader
        from .models import create_student
        from .trainer import Trainer, seed_everything

        seed_everything(cfg.train.seed)
        student, _ = create_student(cfg, self.num_classes)
        if init_state is not None:
            student.load_state_dict(init_state)
        train_loader = build_loader(
            self.datasets["train"], cfg.data.batch_size, train=True, num_workers=cfg.data.num_workers, seed=cfg.train.seed
        )
        source = self.teachers if cfg.loss.objective != "ce" else None
        trainer = Trainer(
            student, train_loader, self.val_loader, teacher_source=source, cfg=cfg, out_dir=None, verbose=self.verbose_epochs
        )
        history = trainer.fit()
        return trainer.student.eval(), history


def _summary(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def run_demo(
    profile: str | None = None,
    settings: DemoSettings | None = None,
    out_dir: str | Path = "runs/demo",
    overrides: Sequence[str] = (),
    verbose: bool = True,
    runner: "DemoRunner | None" = None,
    keep_models: bool = False,
) -> dict:
    """Run the whole protocol and write ``results.json`` and ``curves.png`` into ``out_dir``.

    ``runner`` reuses an existing :class:`DemoRunner` (a notebook that already loaded the data and
    teachers). With ``keep_models`` the returned report also holds ``models``: the last seed's
    trained students by row, for inspection (they are not written to disk).
    """
    from .errors import ConfigError
    from .profiles import resolve_profile

    if runner is not None and overrides:
        raise ConfigError("run_demo got both a runner and config overrides; apply the overrides to runner.cfg instead.")
    started = time.perf_counter()
    profile = resolve_profile(profile)
    settings = settings or PROFILE_SETTINGS[profile]
    cfg = runner.cfg if runner is not None else base_config(profile, overrides)
    out_dir = Path(out_dir)
    runner = runner or DemoRunner(cfg, verbose)
    runner.log(f"meal-lite demo: profile {profile}, {cfg.data.dataset} data, held-out split '{runner.eval_split}'")
    runner.log(f"settings: {asdict(settings)}")

    results: dict[str, Any] = {}
    for name, model in teacher_classifiers(runner.teachers).items():
        results[f"teacher:{name}"] = _summary([runner.evaluate(model)["top1"]])
    results["ensemble"] = _summary([runner.evaluate(EnsembleClassifier(runner.teachers))["top1"]])
    for key, value in results.items():
        runner.log(f"  {key:28s} top-1 {value['mean']:.2f}")

    values = {row: [] for row in ROWS}
    curves = {row: [] for row in ROWS}
    models: dict[str, nn.Module] = {}
    for seed in range(settings.seeds):
        base_cfg = run_config(cfg, objective="ce", epochs=settings.baseline_epochs, lr=settings.baseline_lr, seed=seed)
        baseline, history = runner.train(base_cfg)
        values["baseline"].append(runner.evaluate(baseline)["top1"])
        models["baseline"] = baseline
        curves["baseline"].append([m.get("val_top1") for m in history])
        state = copy.deepcopy(baseline.state_dict())
        for row, objective in CONTINUATIONS.items():
            run_cfg = run_config(
                cfg,
                objective=objective,
                epochs=settings.distill_epochs,
                lr=settings.distill_lr,
                seed=1000 + seed,
                disc_mode=settings.discriminator_mode,
            )
            model, history = runner.train(run_cfg, init_state=state)
            values[row].append(runner.evaluate(model)["top1"])
            models[row] = model
            curves[row].append([m.get("val_top1") for m in history])
        runner.log(
            f"  seed {seed}: " + ", ".join(f"{row} {values[row][-1]:.2f}" for row in ROWS)
            + f"  ({time.perf_counter() - started:.0f} s)"
        )
    for row in ROWS:
        results[row] = _summary(values[row])
    paired = {
        f"{row}-control": _summary([a - b for a, b in zip(values[row], values["control"])])
        for row in ("kl_only", "meal_v2")
    }
    paired["meal_v2-kl_only"] = _summary([a - b for a, b in zip(values["meal_v2"], values["kl_only"])])
    wall = time.perf_counter() - started
    report = {
        "profile": profile,
        "dataset": cfg.data.dataset,
        "split": runner.eval_split,
        "metric": "top-1 accuracy (%) on the held-out split; std is the sample std over seeds",
        "rows": results,
        "paired_differences": paired,
        "curves": {row: curves[row] for row in ROWS},
        "settings": asdict(settings),
        "student": cfg.student.name,
        "teachers": list(getattr(runner.teachers, "teacher_names", [])),
        "hardware": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(runner.device),
            "torch": torch.__version__,
        },
        "wall_seconds": wall,
    }
    # results.json keeps the flat shape too: each row name maps to {mean, std, values}.
    flat = {**results, "wall_seconds": wall}
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "results.json", {**flat, "details": report})
    from .plots import plot_demo_curves

    import matplotlib.pyplot as plt

    plt.close(plot_demo_curves(report, settings, out_dir / "curves.png"))
    if verbose:
        print(format_table(report))
        print(f"wrote {out_dir / 'results.json'} and {out_dir / 'curves.png'} in {wall:.0f} s")
    if keep_models:
        report["models"] = models
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def format_table(report: dict) -> str:
    """The results table as aligned text: row, mean +- std of top-1, per-seed values."""
    rows = report["rows"]
    lines = [f"{'row':30s} {'top-1 (%)':>16s}   per seed", "-" * 72]
    for key, value in rows.items():
        spread = f"{value['mean']:6.2f} +- {value['std']:4.2f}" if len(value["values"]) > 1 else f"{value['mean']:6.2f}"
        lines.append(f"{key:30s} {spread:>16s}   " + " ".join(f"{v:.2f}" for v in value["values"]))
    lines.append("-" * 72)
    for key, value in report["paired_differences"].items():
        lines.append(
            f"{'paired ' + key:30s} {value['mean']:+6.2f} +- {value['std']:4.2f}   "
            + " ".join(f"{v:+.2f}" for v in value["values"])
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
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.batch_size=128")
    args = parser.parse_args(list(argv) if argv is not None else None)
    from .profiles import resolve_profile

    profile = resolve_profile(args.profile)
    settings = PROFILE_SETTINGS[profile]
    changes = {
        "seeds": args.seeds,
        "baseline_epochs": args.baseline_epochs,
        "distill_epochs": args.distill_epochs,
        "discriminator_mode": args.discriminator_mode,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    return run_demo(profile, settings, args.out, args.overrides)


if __name__ == "__main__":
    main()
