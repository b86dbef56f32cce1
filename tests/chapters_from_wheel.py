"""A pytest plugin that runs every chapter as a Colab reader has it: the package installed from a built
wheel (not editable), the kernel started in a folder outside the repository.

Why: a reader in Colab has ``pip install meal-lite @ git+...`` and one notebook, nothing else - no
``configs/``, no ``scripts/``, no checkout above the working directory. A chapter that reads a file of
the checkout works in ``make book`` and breaks there. With ``--chapters-from-wheel`` (``make test``
passes it) the chapters nbval runs are that test, at no extra cost: each chapter still runs once.

- The controller builds the wheel from a copy of what the wheel is made of (an in-tree build would
  leave ``build/`` in the checkout) and installs it with ``pip install --no-deps --target`` into a
  temporary folder: the dependencies are the test environment's own, the package is not. The folder
  reaches the xdist workers through :data:`SITE_ENV`.
- Every notebook kernel nbval starts gets ``PYTHONPATH`` pointing at that folder only, and starts in a
  fresh, empty temporary folder outside the repository.
- Before the first cell, the kernel is asked where ``meal_lite`` came from; a chapter whose kernel
  imported the checkout instead fails at its first cell.

The environment is otherwise the test run's own (profile, teacher cache), so the chapters see exactly
what ``make test`` sets for them. Enabled with ``-p chapters_from_wheel`` (``tests/`` is on ``pythonpath``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbval.kernel
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the folder the wheel was installed into, handed from the controller to the workers
SITE_ENV = "MEAL_LITE_TEST_WHEEL_SITE"
#: the built wheel itself (tests/test_installed_wheel.py reads its contents)
WHEEL_ENV = "MEAL_LITE_TEST_WHEEL"

#: run inside each chapter's kernel before its first cell
CHECK = """import os as _os, meal_lite as _m
_site = _os.path.realpath(_os.environ["MEAL_LITE_TEST_WHEEL_SITE"])
assert _os.path.realpath(_m.__file__).startswith(_site + _os.sep), (
    f"meal_lite was imported from {_m.__file__}, not from the installed wheel in {_site}")
del _os, _m, _site"""

_OWNED: list[Path] = []
#: nbval's own kernel start, kept before this plugin replaces it
NBVAL_START = nbval.kernel.start_new_kernel


def pytest_addoption(parser):
    parser.addoption(
        "--chapters-from-wheel", action="store_true", default=False,
        help="run every notebook from the package installed from a built wheel, in a folder outside the "
             "repository (as a Colab reader has it)",
    )


def build_wheel(folder: Path) -> Path:
    """Build the package's wheel from a copy of its sources into ``folder``; return the wheel's path."""
    source = folder / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "meal_lite", source / "meal_lite", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = folder / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(source), "-w", str(wheels)], check=True, timeout=300)
    (wheel,) = wheels.glob("meal_lite-*.whl")
    return wheel


def install_wheel(wheel: Path, site: Path) -> Path:
    """Install ``wheel`` (no dependencies, not editable) into the folder ``site``."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    return site


def pytest_configure(config):
    if not config.getoption("chapters_from_wheel"):
        return
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) builds it once
        root = Path(tempfile.mkdtemp(prefix="meal-lite-wheel-"))
        _OWNED.append(root)
        wheel = build_wheel(root)
        os.environ[WHEEL_ENV] = str(wheel)
        os.environ[SITE_ENV] = str(install_wheel(wheel, root / "site"))
    nbval.kernel.start_new_kernel = as_a_reader(Path(os.environ[SITE_ENV]))


def pytest_unconfigure(config):
    for root in _OWNED:
        shutil.rmtree(root, ignore_errors=True)


def as_a_reader(site: Path, start=NBVAL_START):
    """Wrap nbval's ``start_new_kernel`` (``start``) so that the kernel starts outside the repository, in an empty
    folder of its own, importing ``meal_lite`` from ``site``; it is checked before the first cell."""

    def start_as_a_reader(*args, **kwargs):
        reader = Path(tempfile.mkdtemp(prefix="meal-lite-reader-", dir=site.parent))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=str(site), **{SITE_ENV: str(site)})
        kwargs.update(cwd=str(reader), env=env)
        km, kc = start(*args, **kwargs)
        reply = kc.execute_interactive(CHECK, store_history=False, output_hook=lambda msg: None, timeout=120)
        if reply["content"]["status"] != "ok":
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            raise RuntimeError(f"the chapter's kernel did not run from the installed wheel: "
                               f"{reply['content'].get('evalue')}")
        return km, kc

    return start_as_a_reader
