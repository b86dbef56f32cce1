"""Tiny, fast stand-ins for trainer tests: a conv net, a noisy dataset, an epoch-seeded sampler.

Everything runs on the CPU in well under a second per epoch. The dataset adds noise and random flips
drawn from torch's global RNG (like real augmentation), so an exact resume must restore RNG states.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from meal_lite.config.schema import Config
from meal_lite.core.discriminator import make_discriminator
from meal_lite.core.ensemble import TeacherEnsemble
from meal_lite.core.objective import Objective
from meal_lite.training.trainer import Trainer

NUM_CLASSES = 4


class TinyNet(nn.Module):
    """Conv + BatchNorm + linear classifier for 1x8x8 images."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 6 * 6, num_classes)
        self.poison = False  # tests flip this to make the output NaN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out * float("nan") if self.poison else out


class NoisyDigits(Dataset):
    """Fixed random 'images' plus per-access noise and flips from the global torch RNG."""

    def __init__(self, n: int = 48, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 8, generator=g)
        self.y = torch.randint(0, NUM_CLASSES, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i] + 0.1 * torch.randn(1, 8, 8)
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img, self.y[i]


class EpochSampler(Sampler):
    """Shuffles with a generator seeded by (seed, epoch); records the epochs it was set to."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch, self.epochs_seen = n, seed, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def tiny_config(**train) -> Config:
    """CPU config: 4 epochs, lr drop after epoch 3, no progress bars."""
    cfg = Config()
    cfg.train.device = "cpu"
    cfg.train.progress = False
    cfg.train.epochs = 4
    cfg.optim.milestones = [3]
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def make_trainer(cfg: Config, out_dir=None, *, callbacks=(), loader: str = "sampler", student=None) -> Trainer:
    """Seed, build student/teachers/discriminator/loaders exactly the same way every time."""
    torch.manual_seed(cfg.train.seed)
    student = student or TinyNet()
    teachers = TeacherEnsemble([TinyNet(), TinyNet()]) if cfg.loss.objective != "ce" else None
    disc = make_discriminator(NUM_CLASSES, cfg.discriminator.mode) if cfg.loss.objective == "meal" else None
    train_set = NoisyDigits()
    if loader == "sampler":
        train_loader = DataLoader(train_set, batch_size=16, sampler=EpochSampler(len(train_set)))
    else:  # RandomSampler drawing its seed from the global torch RNG
        train_loader = DataLoader(train_set, batch_size=16, shuffle=True)
    val_loader = DataLoader(NoisyDigits(n=16, seed=1), batch_size=8)
    objective = Objective.from_config(student, teachers, cfg, NUM_CLASSES, discriminator=disc)
    return Trainer(objective, train_loader, val_loader, cfg=cfg, out_dir=out_dir, callbacks=callbacks)


class KillAfter:
    """Callback simulating a kill right after epoch ``epoch``'s checkpoint was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, trainer, epoch, metrics) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def write_tiny_digits_config(folder, *, epochs=1, batch_size=16, out=None, seed=0):
    """A digits run config (JSON is YAML) with a tiny student and two random-weight local teachers."""
    import json

    import timm

    teachers = []
    for i in range(2):
        torch.manual_seed(seed + i)
        path = folder / f"teacher{i}.pt"
        torch.save(timm.create_model("mobilenetv3_small_050", num_classes=10, in_chans=1).state_dict(), path)
        teachers.append({"name": "mobilenetv3_small_050", "pretrained": False, "weights": str(path)})
    train = {"epochs": epochs, "device": "cpu", "progress": False, "limit_batches": 2 if epochs == 1 else 3}
    if out is not None:
        train["out"] = str(out)
    config = {
        "profile": "offline",
        "data": {"dataset": "digits", "image_size": 32, "batch_size": batch_size, "num_workers": 0},
        "student": {"name": "mobilenetv3_small_050", "pretrained": False},
        "teachers": teachers,
        "optim": {"lr": 0.01, "milestones": [1]},
        "train": train,
    }
    path = folder / "tiny.yaml"
    path.write_text(json.dumps(config))
    return path
