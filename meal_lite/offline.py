"""The offline profile's teachers: small timm models trained locally on the digits, then cached.

MEAL V2 distils from ImageNet-pretrained teachers, which cannot be downloaded without a network. The
offline profile keeps the method and swaps the world: three teachers of *different* architectures
(an ensemble helps most when its members make different mistakes) are trained with cross-entropy on
scikit-learn's handwritten digits, once, and stored under ``data/cache/``. The file name carries a
hash of everything that shaped the weights (architecture, recipe, image size, split), so a change of
recipe trains afresh instead of silently reusing stale teachers, and a second run, a book chapter or
a test reuses them in a second.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint

CACHE_ENV_VAR = "MEAL_LITE_CACHE"
# Bump when the training code changes in a way that changes the teachers' weights.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class TeacherRecipe:
    """How one digits teacher is trained: a timm architecture and a short cross-entropy schedule."""

    name: str
    epochs: int = 12
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0


# Three families, each a different inductive bias: a ResNet (plain convolutions), a RegNet (grouped
# convolutions found by architecture search) and a ConvNeXt (large depthwise kernels, LayerNorm).
# All three train in seconds per epoch at 32 px on two CPU cores and reach 95-99% on the digits.
DIGITS_TEACHERS: tuple[TeacherRecipe, ...] = (
    TeacherRecipe("resnet10t"),
    TeacherRecipe("regnetx_002"),
    TeacherRecipe("convnext_atto"),
)


def default_cache_dir() -> Path:
    """Where cached teachers live: ``$MEAL_LITE_CACHE``, else the project's ``data/cache``.

    The project root is found by walking up from the working directory (a notebook runs in ``book/``,
    the CLI in the root: both find the same cache). Outside a checkout, ``~/.cache/meal-lite``.
    """
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "meal_lite").is_dir():
            return folder / "data" / "cache"
    return Path.home() / ".cache" / "meal-lite"


def recipe_key(recipe: TeacherRecipe, image_size: int) -> str:
    """A short hash of everything that determines a cached teacher's weights."""
    from .data import DIGITS_SPLIT

    payload = {
        "recipe": asdict(recipe),
        "image_size": int(image_size),
        "split": list(DIGITS_SPLIT),
        "version": RECIPE_VERSION,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def teacher_config(recipe: TeacherRecipe, image_size: int, out: str | None = None):
    """The :class:`~meal_lite.config.Config` that trains one digits teacher with cross-entropy."""
    from .config import Config, DataConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig

    return Config(
        profile="offline",
        data=DataConfig(dataset="digits", image_size=image_size, batch_size=recipe.batch_size, num_workers=0),
        student=ModelConfig(name=recipe.name, pretrained=False),
        loss=LossConfig(objective="ce"),
        # Step the lr down for the last third, like the paper's step regime.
        optim=OptimConfig(lr=recipe.lr, milestones=[max(1, (2 * recipe.epochs) // 3)]),
        train=TrainConfig(epochs=recipe.epochs, seed=recipe.seed, device="cpu", out=out or "", progress=False),
    )


def train_digits_model(cfg, *, init_state: Mapping[str, torch.Tensor] | None = None, val: bool = True):
    """Train the model named by ``cfg.student`` on the digits with ``cfg``; returns ``(model, history)``.

    This is the small in-memory cousin of :func:`meal_lite.trainer.train_from_config` used by the demo
    and the teacher cache: no files are written. ``init_state`` starts from given weights (how MEAL V2
    boosts a pretrained student).
    """
    from .data import build_datasets, build_loader
    from .models import create_student
    from .trainer import Trainer, seed_everything

    seed_everything(cfg.train.seed)
    model, data_config = create_student(cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    datasets = build_datasets(cfg.data, data_config)
    train_loader = build_loader(datasets["train"], cfg.data.batch_size, train=True, num_workers=0, seed=cfg.train.seed)
    val_loader = build_loader(datasets["val"], 256, train=False, num_workers=0) if val else None
    teachers = None
    if cfg.loss.objective != "ce":
        teachers = digits_teachers(cfg, num_classes=10, data_config=data_config)
    trainer = Trainer(model, train_loader, val_loader, teacher_source=teachers, cfg=cfg, out_dir=None, verbose=False)
    history = trainer.fit()
    return trainer.student.eval(), history


def load_or_train_teacher(
    recipe: TeacherRecipe, image_size: int = 32, cache_dir: str | Path | None = None, verbose: bool = True
) -> nn.Module:
    """One digits teacher, from the cache when its recipe was trained before, else trained now and cached."""
    from .models import create_model

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"digits-{recipe.name}-{recipe_key(recipe, image_size)}.pt"
    if path.is_file():
        state = load_checkpoint(path)
        model = create_model(recipe.name, num_classes=10, in_chans=1)
        model.load_state_dict(state["model"])
        return model.eval()
    if verbose:
        print(f"training digits teacher {recipe.name} ({recipe.epochs} epochs), cached as {path}", flush=True)
    model, history = train_digits_model(teacher_config(recipe, image_size))
    save_checkpoint(
        {"model": model.state_dict(), "recipe": asdict(recipe), "image_size": image_size, "history": history}, path
    )
    return model


def digits_teachers(
    cfg: Any = None,
    num_classes: int = 10,
    data_config: Mapping[str, Any] | None = None,
    *,
    recipes: Sequence[TeacherRecipe] | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
):
    """The frozen :class:`~meal_lite.ensemble.TeacherEnsemble` of locally trained digits teachers.

    ``recipes`` defaults to :data:`DIGITS_TEACHERS` (looked up at call time).

    This is what the ``digits`` teacher preset resolves to. The image size comes from ``data_config``
    (or ``cfg.data.image_size``); teachers and student share the digits normalisation, so no input
    adapter is needed.
    """
    from .data import DIGITS_DEFAULT_SIZE
    from .ensemble import TeacherEnsemble
    from .errors import ConfigError

    if num_classes != 10:
        raise ConfigError(f"The digits teachers have 10 classes but the run asks for {num_classes}; use data.dataset=digits.")
    if data_config is not None:
        image_size = int(data_config["input_size"][-1])
    elif cfg is not None and getattr(cfg.data, "image_size", None):
        image_size = int(cfg.data.image_size)
    else:
        image_size = DIGITS_DEFAULT_SIZE
    recipes = DIGITS_TEACHERS if recipes is None else tuple(recipes)
    models = [load_or_train_teacher(r, image_size, cache_dir, verbose) for r in recipes]
    temperature = float(getattr(getattr(cfg, "loss", None), "temperature", 1.0)) if cfg is not None else 1.0
    ensemble = TeacherEnsemble(models, temperature=temperature)
    ensemble.teacher_names = [r.name for r in recipes]
    ensemble.teacher_data_configs = [copy.deepcopy(dict(data_config)) if data_config else None for _ in recipes]
    return ensemble
