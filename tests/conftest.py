"""Shared test setup: no network, ever, and a quiet, small torch."""

import os

# Set before timm / huggingface_hub are imported anywhere, so a stray pretrained=True fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MEAL_LITE_PROFILE", "offline")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _trainings_in_this_process(monkeypatch):
    """Unit tests train tiny models: a pool's start-up would cost more than it saves. Tests of the pool
    (tests/test_workers.py, the dark-knowledge pool test) ask for workers explicitly; the chapters, run by
    nbval outside this folder, keep the default."""
    monkeypatch.setenv("MEAL_LITE_WORKERS", "1")


# --------------------------------------------------------------------------------------------------
# Tiny digits teachers: two one-epoch recipes in a private cache, so that no test touches data/cache.

from meal_lite.training import digits_teachers as offline  # noqa: E402
from meal_lite.training.digits_teachers import TeacherRecipe  # noqa: E402
from meal_lite.training.digits_teachers import digits_ensemble  # noqa: E402

TINY_TEACHERS = (TeacherRecipe("resnet10t", epochs=1), TeacherRecipe("regnetx_002", epochs=1))


@pytest.fixture
def tiny_recipes():
    """The two one-epoch teacher recipes the fixtures below use."""
    return TINY_TEACHERS


@pytest.fixture(scope="session")
def trained_tiny_cache(tmp_path_factory):
    """The tiny teachers, trained once for the whole session (one thread, in this process)."""
    cache = tmp_path_factory.mktemp("tiny-teachers")
    digits_ensemble(recipes=TINY_TEACHERS, cache_dir=cache, verbose=False, workers=1)
    return cache


def _point_at(cache, monkeypatch):
    monkeypatch.setenv(offline.CACHE_ENV_VAR, str(cache))
    monkeypatch.setattr(offline, "DIGITS_TEACHERS", TINY_TEACHERS)
    return cache


@pytest.fixture
def tiny_teachers(trained_tiny_cache, monkeypatch):
    """The offline profile's teachers are the tiny ones, already trained (their cache folder)."""
    return _point_at(trained_tiny_cache, monkeypatch)


@pytest.fixture
def empty_tiny_teachers(tmp_path, monkeypatch):
    """The offline profile's teachers are the tiny ones, in an empty cache: the first use trains them."""
    return _point_at(tmp_path / "cache", monkeypatch)
