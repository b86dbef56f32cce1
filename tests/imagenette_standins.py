"""A pytest plugin that runs the chapters in the ``imagenette`` profile against loopback stand-ins of its two
servers: ``make test-imagenette``.

With ``--imagenette-standins`` the controller process (the only one when pytest-xdist is off) starts a
:class:`~standins.StandInServer` on 127.0.0.1 before any worker or notebook kernel starts, and stops it
at the end of the run; it serves

- fast.ai's ``imagenette2-160.tgz``, generated small (:data:`TRAIN_PER_CLASS` training and
  :data:`VAL_PER_CLASS` validation images per class, in the release's layout);
- ``model.safetensors`` of every model the chapters ask for in that profile (:func:`served_models`: the
  profile's student and teacher preset, and the models chapter 8 fine-tunes), the real timm
  architectures with random weights.

Everything reaches the chapters through the environment, which the workers and the notebook kernels
inherit: ``MEAL_LITE_PROFILE=imagenette``, ``HF_ENDPOINT`` and ``MEAL_LITE_IMAGENETTE_URL``/``_MD5`` (the
stand-ins), fresh ``HF_HOME``/``TORCH_HOME`` and teacher cache, and one ``MEAL_LITE_DATA_HOME`` that every
kernel resolves ``data.root`` against, wherever it starts (``chapters_from_wheel`` starts each in an empty
folder of its own). ``HF_HUB_OFFLINE`` and any proxy are removed: the only network is 127.0.0.1. Nothing
of meal-lite is replaced: torchvision, huggingface_hub and timm download through their own code.

Chapters run in parallel workers share the data folder and the hub cache: two chapters that start at
once download the archive one at a time (meal-lite's lock in the data folder, then the folder is there)
and each hub file once (huggingface_hub's lock). The server counts its requests: at the end the run fails
if a file was fetched (GET) more than once, or if a chapter asked for a hub file the stand-in does not
serve; the counts are printed in the terminal summary.

The teacher cache starts with the offline profile's cached digits teachers and shared baseline, copied
(never moved) from ``$MEAL_LITE_CACHE`` or the default cache folders when they exist: section 3.7 runs
on the digits in either profile. Without them it trains them, as a first ``make test`` does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = "/imagenette2-160.tgz"
#: 20 training and 20 validation images: the chapters' cost grows with them; the profile splits each class
#: of the val folder into validation and test images (data.val_per_class), so every class needs two.
TRAIN_PER_CLASS = 2
VAL_PER_CLASS = 2
#: GET requests of one download of the archive: torchvision's ``download_url`` first opens the URL to follow
#: redirects (a GET whose body it does not read), then downloads it.
ARCHIVE_GETS_PER_DOWNLOAD = 2
#: Models chapter 8 fine-tunes in this profile (its cells name them); the profile's own come from its config.
CHAPTER_MODELS = ("resnet50.a1_in1k", "efficientnet_b0.ra_in1k", "resnet18.a1_in1k", "convnext_tiny.fb_in1k")
#: The server stops answering after this many seconds, whatever the run is doing.
DEFAULT_LIFETIME = 1800.0

#: The chapters that take longest in this run first (from ``--durations``), so that the two workers of
#: ``--dist loadfile --no-loadscope-reorder`` finish close together; the order changes no result.
LONGEST_FIRST = (
    "book/05_meal_v2.ipynb",
    "book/06_cached_soft_labels.ipynb",
    "book/03_kl_distillation.ipynb",
    "book/03b_dark_knowledge.ipynb",
    "book/04_discriminator.ipynb",
    "book/08_your_own_data.ipynb",
    "book/02_ensemble.ipynb",
    "book/07_imagenet_many_gpus.ipynb",
)

_STATE: dict = {}


def pytest_addoption(parser):
    parser.addoption(
        "--imagenette-standins", action="store_true", default=False,
        help="run in the imagenette profile against loopback stand-ins of fast.ai's archive host and the "
             "Hugging Face hub, started and stopped by this run",
    )
    parser.addoption(
        "--standins-lifetime", type=float, default=DEFAULT_LIFETIME, metavar="SECONDS",
        help=f"stop the stand-in server after SECONDS (default {DEFAULT_LIFETIME:g})",
    )


def served_models() -> tuple[str, ...]:
    """Every timm model the chapters load pretrained in the imagenette profile."""
    from meal_lite.config import load_config
    from meal_lite.models import TEACHER_PRESETS

    cfg = load_config(None, profile="imagenette")
    return (cfg.student.name, *TEACHER_PRESETS[cfg.teacher_preset], *CHAPTER_MODELS)


def seed_cache(cache: Path) -> list[str]:
    """Copy the offline profile's cached digits teachers and shared baselines into ``cache``; their names."""
    from meal_lite import settings

    sources = [settings.cache_dir()] if settings.cache_dir() is not None else [
        REPO_ROOT / "data" / "cache", Path.home() / ".cache" / "meal-lite"]
    copied = []
    for source in sources:
        for path in sorted(source.glob("*.pt")) if source.is_dir() else []:
            if path.name.startswith(("digits-", "baseline-")) and not (cache / path.name).exists():
                shutil.copy2(path, cache / path.name)
                copied.append(path.name)
    return copied


def pytest_configure(config):
    if not config.getoption("imagenette_standins"):
        return
    if hasattr(config, "workerinput"):
        # An xdist worker inherits the controller's server and environment, but tests/conftest.py (loaded
        # when a file under tests/ runs here) sets HF_HUB_OFFLINE again on import, for the offline suite.
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.pop(name, None)
        return
    start(config.getoption("standins_lifetime"))


def serve(n_train=TRAIN_PER_CLASS, n_val=VAL_PER_CLASS):
    """A running :class:`~standins.StandInServer` with the archive at :data:`ARCHIVE` and every model's
    ``model.safetensors``; returns ``(server, archive bytes, {hub path: model name})``."""
    from standins import StandInServer, hub_repo, hub_weights, imagenette_archive

    archive = imagenette_archive(n_train=n_train, n_val=n_val)
    server = StandInServer()
    server.serve(ARCHIVE, archive)
    files = {}  # path -> the model it was made for (resnet18 and resnet18.a1_in1k share one repo)
    for name in served_models():
        path = f"/{hub_repo(name)}/resolve/main/model.safetensors"
        if path not in files:
            files[path] = name
            server.serve_hub_file(hub_repo(name), "model.safetensors", hub_weights(name)[0])
    return server, archive, files


def start(lifetime: float = DEFAULT_LIFETIME, n_train=TRAIN_PER_CLASS, n_val=VAL_PER_CLASS, workers: str | None = "1") -> dict:
    """Start the server, serve the archive and the hub files, point this process's environment at them.

    ``n_train``/``n_val``: images per class of the served archive (``bench/chapter_times.py`` serves the
    release's full size); ``workers``: ``MEAL_LITE_WORKERS`` for the chapters (None: the package's default).
    """
    from standins import CLIENT_ENV_DROPPED, md5

    root = Path(tempfile.mkdtemp(prefix="meal-lite-imagenette-"))
    homes = {name: root / name for name in ("hf", "torch", "cache", "data")}
    for folder in homes.values():
        folder.mkdir()
    copied = seed_cache(homes["cache"])
    server, archive, files = serve(n_train, n_val)
    timer = threading.Timer(lifetime, server.stop)
    timer.daemon = True
    timer.start()
    for name in CLIENT_ENV_DROPPED:
        os.environ.pop(name, None)
    os.environ.update(
        MEAL_LITE_PROFILE="imagenette", HF_ENDPOINT=server.url, MEAL_LITE_IMAGENETTE_URL=server.url + ARCHIVE,
        MEAL_LITE_IMAGENETTE_MD5=md5(archive), HF_HOME=str(homes["hf"]), TORCH_HOME=str(homes["torch"]),
        MEAL_LITE_CACHE=str(homes["cache"]), MEAL_LITE_DATA_HOME=str(homes["data"]),
        HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
    )
    if workers is not None:
        # One process per chapter, as on a GPU (Colab): the two pytest workers already fill two cores, and a
        # chapter's pool workers would start a DataLoader process per loader and epoch by spawning.
        os.environ["MEAL_LITE_WORKERS"] = workers
    _STATE.update(server=server, timer=timer, root=root, files=files, copied=copied)
    return _STATE


def pytest_collection_modifyitems(config, items):
    if config.getoption("imagenette_standins"):
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: cells stay in order


def problems() -> list[str]:
    """What the server's requests say went wrong: a file fetched twice, a hub file it does not serve."""
    server = _STATE["server"]
    gets = Counter(path for method, path in list(server.requests) if method == "GET")
    served = {ARCHIVE, *_STATE["files"]}
    once = {path: ARCHIVE_GETS_PER_DOWNLOAD if path == ARCHIVE else 1 for path in served}
    found = [f"{path} was fetched {n / once[path]:g} times ({n} GET requests)"
             for path, n in sorted(gets.items()) if path in served and n > once[path]]
    missing = sorted({path for _, path in list(server.requests) if "/resolve/" in path and path not in served})
    found += [f"{path} was asked for but the stand-in hub does not serve it" for path in missing]
    return found


def pytest_sessionfinish(session, exitstatus):
    if "server" in _STATE and problems() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if "server" not in _STATE:
        return
    server, write = _STATE["server"], terminalreporter.write_line
    terminalreporter.section("imagenette stand-ins")
    counts = Counter(list(server.requests))
    for path in (ARCHIVE, *_STATE["files"]):
        name = _STATE["files"].get(path, "ImageNette archive")
        write(f"{name:34s} GET {counts[('GET', path)]}  HEAD {counts[('HEAD', path)]}  {path}")
    other = sum(n for (_, path), n in counts.items() if path != ARCHIVE and path not in _STATE["files"])
    write(f"(one download of the archive is {ARCHIVE_GETS_PER_DOWNLOAD} GET requests: torchvision follows redirects first)")
    write(f"other requests (hub registry calls, unknown paths): {other}; total {server.count()}")
    write(f"digits teachers and baselines copied into the fresh cache: {len(_STATE['copied'])}")
    for line in problems():
        write(f"FAILED: {line}", red=True)


def pytest_unconfigure(config):
    if "server" in _STATE:
        _STATE["timer"].cancel()
        _STATE["server"].stop()
        shutil.rmtree(_STATE["root"], ignore_errors=True)
        _STATE.clear()
