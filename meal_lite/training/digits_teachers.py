"""The offline profile's teachers: their recipes and the on-disk cache that keeps them between runs.

MEAL V2 distils from ImageNet-pretrained teachers, which cannot be downloaded without a network. The
offline profile keeps the method and swaps the world: three teachers of *different* architectures
(an ensemble helps most when its members make different mistakes) are trained with cross-entropy on
scikit-learn's handwritten digits, once, and stored under ``data/cache/``. The file name carries a
hash of everything that shaped the weights (architecture, recipe, image size, split), so a change of
recipe trains afresh instead of silently reusing stale teachers, and a second run, a book chapter or
a test reuses them in a second.

This module knows the recipes and the cache; the training itself is the package's one way to train
a student, :func:`meal_lite.training.assemble.train_student`: :func:`digits_ensemble` trains the missing
teachers through it (side by side in one-thread worker processes) and returns the frozen ensemble.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from meal_lite import settings
from meal_lite.config.schema import Config, DataConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig
from meal_lite.core.ensemble import TeacherEnsemble
from meal_lite.data.datasets import build_datasets
from meal_lite.data.digits import DIGITS_SPLIT, digits_data_config
from meal_lite.models.factory import create_model
from meal_lite.training.assemble import train_student
from meal_lite.checkpoint import load_checkpoint, save_checkpoint
from meal_lite.training.workers import cpu_pool, one_thread, resolve_workers

__all__ = [
    "CACHE_ENV_VAR",
    "RECIPE_VERSION",
    "TeacherRecipe",
    "DIGITS_TEACHERS",
    "default_cache_dir",
    "recipe_key",
    "teacher_path",
    "teacher_config",
    "load_cached_teacher",
    "save_teacher",
    "digits_ensemble",
    "train_digits_teacher",
]

CACHE_ENV_VAR = settings.CACHE
# Bump when the training code changes in a way that changes the teachers' weights.
# 2: teachers train with one torch thread (meal_lite.training.workers), so their weights no longer depend on the core count.
RECIPE_VERSION = 2


@dataclass(frozen=True)
class TeacherRecipe:
    """How one digits teacher is trained: a timm architecture and a short cross-entropy schedule."""

    name: str
    epochs: int = 12
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "sgd"
    weight_decay: float = 0.0


# Three families, each a different inductive bias: a ResNet (plain convolutions), a RegNet (grouped
# convolutions found by architecture search) and a ConvNeXt (large depthwise kernels, LayerNorm).
# All three train in seconds per epoch at 32 px on two CPU cores and reach 90-99% on the digits.
DIGITS_TEACHERS: tuple[TeacherRecipe, ...] = (
    TeacherRecipe("resnet10t"),
    TeacherRecipe("regnetx_002"),
    # ConvNeXt is made for AdamW with weight decay: with the others' SGD recipe it stops near 90% on
    # the validation digits and the ensemble merely ties its best member; with AdamW it reaches ~96%
    # and the ensemble moves ahead of every member (logged in bench/evidence_search.md).
    TeacherRecipe("convnext_atto", lr=2e-3, optimizer="adamw", weight_decay=0.05),
)


def default_cache_dir() -> Path:
    """Where cached teachers live: ``$MEAL_LITE_CACHE``, else the project's ``data/cache``.

    The project root is found by walking up from the working directory (a notebook runs in ``book/``,
    the CLI in the root: both find the same cache). Outside a checkout, ``~/.cache/meal-lite``.
    """
    if settings.cache_dir() is not None:
        return settings.cache_dir()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "meal_lite").is_dir():
            return folder / "data" / "cache"
    return Path.home() / ".cache" / "meal-lite"


def recipe_key(recipe: TeacherRecipe, image_size: int) -> str:
    """A short hash of everything that determines a cached teacher's weights."""
    payload = {
        "recipe": asdict(recipe),
        "image_size": int(image_size),
        "split": list(DIGITS_SPLIT),
        "version": RECIPE_VERSION,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def teacher_path(recipe: TeacherRecipe, image_size: int, cache_dir: str | Path | None = None) -> Path:
    """The cache file of one teacher (it may not exist yet)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / f"digits-{recipe.name}-{recipe_key(recipe, image_size)}.pt"


def teacher_config(recipe: TeacherRecipe, image_size: int) -> Config:
    """The :class:`~meal_lite.config.schema.Config` that trains one digits teacher with cross-entropy (in memory)."""
    return Config(
        profile="offline",
        data=DataConfig(
            dataset="digits", image_size=image_size, batch_size=recipe.batch_size, eval_batch_size=256, num_workers=0
        ),
        student=ModelConfig(name=recipe.name, pretrained=False),
        loss=LossConfig(objective="ce"),
        # Step the lr down for the last third, like the paper's step regime.
        optim=OptimConfig(
            name=recipe.optimizer, lr=recipe.lr, weight_decay=recipe.weight_decay,
            milestones=[max(1, (2 * recipe.epochs) // 3)],
        ),
        train=TrainConfig(epochs=recipe.epochs, seed=recipe.seed, device="cpu", out="", progress=False),
    )


def load_cached_teacher(recipe: TeacherRecipe, image_size: int, cache_dir: str | Path | None = None) -> nn.Module | None:
    """The cached teacher of ``recipe`` in eval mode, or None when it was never trained."""
    path = teacher_path(recipe, image_size, cache_dir)
    if not path.is_file():
        return None
    model = create_model(recipe.name, num_classes=10, in_chans=1)
    model.load_state_dict(load_checkpoint(path)["model"])
    return model.eval()


def save_teacher(
    model: nn.Module, recipe: TeacherRecipe, image_size: int, history: Any, cache_dir: str | Path | None = None
) -> Path:
    """Store a freshly trained teacher (atomically) where :func:`load_cached_teacher` finds it."""
    path = teacher_path(recipe, image_size, cache_dir)
    state = {"model": model.state_dict(), "recipe": asdict(recipe), "image_size": image_size, "history": history}
    return save_checkpoint(state, path)


def digits_ensemble(
    image_size: int = 32,
    *,
    recipes: Sequence[TeacherRecipe] | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
    workers: int | None = None,
) -> TeacherEnsemble:
    """The frozen ensemble of locally trained digits teachers: from the cache, else trained now and cached.

    ``recipes`` defaults to :data:`DIGITS_TEACHERS` (looked up at call time). Teachers
    and student share the digits normalisation, so no input adapter is needed. Missing teachers are
    trained with one torch thread each, side by side in ``workers`` processes (default: 2 on a CPU with
    two or more cores; see :mod:`meal_lite.training.workers`), so their weights do not depend on the core count.
    """
    recipes = DIGITS_TEACHERS if recipes is None else tuple(recipes)
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir  # the workers' too
    missing = [r for r in recipes if not teacher_path(r, image_size, cache_dir).is_file()]
    for recipe in missing:
        if verbose:
            print(f"training digits teacher {recipe.name} ({recipe.epochs} epochs), cached as "
                  f"{teacher_path(recipe, image_size, cache_dir)}", flush=True)
    workers = min(resolve_workers(workers, "cpu"), len(missing))
    if workers > 1:
        # Largest first (parameter count as the proxy for cost), so the last teacher to start is a small one.
        missing.sort(key=lambda r: -sum(p.numel() for p in create_model(r.name, num_classes=10, in_chans=1).parameters()))
        with cpu_pool(workers) as pool:
            list(pool.map(train_digits_teacher, missing, [image_size] * len(missing), [cache_dir] * len(missing)))
    else:
        for recipe in missing:
            with one_thread():
                train_digits_teacher(recipe, image_size, cache_dir)
    models = [load_cached_teacher(recipe, image_size, cache_dir) for recipe in recipes]
    config = digits_data_config(image_size)
    return TeacherEnsemble(models, names=[r.name for r in recipes], data_configs=[config] * len(models))


def train_digits_teacher(recipe: TeacherRecipe, image_size: int, cache_dir: str | Path | None = None) -> Path:
    """Train one digits teacher with cross-entropy (its recipe, on the training split) and cache it; returns the file."""
    cfg = teacher_config(recipe, image_size)
    trainer, history = train_student(cfg, build_datasets(cfg.data, digits_data_config(image_size)))
    return save_teacher(trainer.student.eval(), recipe, image_size, history, cache_dir)
