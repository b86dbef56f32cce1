"""Shared test setup: no network, ever, and a quiet, small torch."""

import os

# Set before timm / huggingface_hub are imported anywhere, so a stray pretrained=True fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MEAL_LITE_PROFILE", "offline")


import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402


@pytest.fixture(autouse=True)
def _trainings_in_this_process(monkeypatch):
    """Unit tests train tiny models: a pool's start-up would cost more than it saves. Tests of the pool
    (tests/test_workers.py, the dark-knowledge pool test) ask for workers explicitly; the chapters, run by
    nbval outside this folder, keep the default."""
    monkeypatch.setenv("MEAL_LITE_WORKERS", "1")


@pytest.fixture
def imagenette_standins_only(request):
    """Skip unless the run serves the loopback stand-ins (``make test-imagenette``: ``--imagenette-standins``)."""
    if not request.config.getoption("imagenette_standins", False):
        pytest.skip("needs the loopback stand-ins of make test-imagenette")


# The files that take longest, first. `make test` hands whole files to two workers in collection order
# (--dist loadfile --no-loadscope-reorder): started first, the long chapters and tests run side by side
# and the short files fill the gaps at the end, instead of one long chapter running alone at the end.
# The browser test builds the book from every executed chapter, so it comes after them all (a chapter
# missing from this list still runs before it); placed before the short files, it overlaps with them on
# the other worker. The order changes no result (every file is independent); the list is from
# `pytest --durations=0`.
LONGEST_FIRST = (
    "book/05_meal_v2.ipynb",
    "book/03b_dark_knowledge.ipynb",
    "tests/test_workers.py",
    "book/03_kl_distillation.ipynb",
    "book/04_discriminator.ipynb",
    "tests/test_dark_knowledge.py",
    "book/07_imagenet_many_gpus.ipynb",
    "tests/test_elastic.py",
    "book/08_your_own_data.ipynb",
    "tests/test_standins.py",
    "book/06_cached_soft_labels.ipynb",
    "book/02_ensemble.ipynb",
    "book/01_data.ipynb",
    "tests/test_offline_demo.py",
    "tests/test_softlabels.py",
    "tests/test_book_browser.py",
    "tests/test_distributed.py",
)
BROWSER = LONGEST_FIRST.index("tests/test_book_browser.py")


def _rank(nodeid: str, rank: dict[str, int]) -> float:
    name = nodeid.split("::")[0]
    if name in rank:
        return rank[name]
    return BROWSER - 0.5 if name.endswith(".ipynb") else len(rank)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: _rank(item.nodeid, rank))  # stable: cells stay in order


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
    """The tiny teachers, trained once for the whole run (one thread, in the first process that needs them).

    Under pytest-xdist the workers share one folder: the first to take the lock trains, the others wait and
    load. Tests that run an experiment may also keep baselines there (every writer writes through a temp
    file and a rename, and one-thread training gives every writer the same bytes)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = shared / "tiny-teachers"
    with FileLock(str(shared / "tiny-teachers.lock"), timeout=600):
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
