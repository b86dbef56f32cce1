"""A chapter runs from the installed package alone: built as a wheel, installed (not editable) into a
folder of its own, and executed from a working directory outside the repository.

Why: a reader in Colab has `pip install meal-lite @ git+...` and one notebook, nothing else - no
`configs/`, no `scripts/`, no repository above the working directory. A chapter that reads a file of
the checkout works here and breaks there. This test builds the wheel from a copy of what the wheel is
made of, installs it with ``pip install --no-deps --target`` (the dependencies are the test
environment's own; the package is not), and runs chapter 1 under nbval with ``PYTHONPATH`` pointing at
the installed copy only, from a temporary folder that holds nothing but the notebook. A cell appended
to that copy asserts, inside the kernel, that ``meal_lite`` was imported from the installed folder, and
that the paper's configurations and the committed full runs the chapters show came with it.

Expensive (a wheel build and a kernel, about a minute on the 2-core development machine); deselect it
with ``-m "not wheel"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from book_utils import BOOK_DIR, REPO_ROOT

pytestmark = pytest.mark.wheel

CHAPTER = "01_data.ipynb"
CHECK = """import os
import meal_lite
from meal_lite.config import paper_configs
from meal_lite.experiments import committed_result
installed = os.path.realpath(os.environ["MEAL_LITE_WHEEL_DIR"])
assert os.path.realpath(meal_lite.__file__).startswith(installed + os.sep), meal_lite.__file__
assert len(paper_configs()) == 8 and all(p.is_file() for p in paper_configs())
assert committed_result("demo")["details"]["command"].startswith("meal-lite demo")
print("meal_lite imported from", os.path.dirname(meal_lite.__file__))"""


def build_wheel(tmp_path):
    """The wheel, built from a copy of its sources (an in-tree build would leave build/ in the checkout)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "meal_lite", source / "meal_lite", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(source), "-w", str(wheels)], check=True, timeout=300)
    (wheel,) = wheels.glob("meal_lite-*.whl")
    return wheel


def test_chapter_1_runs_from_the_installed_wheel_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "meal_lite/config/imagenet/resnet50-224.yaml" in names and "meal_lite/config/defaults/offline.yaml" in names
    assert not any(name.startswith(("book/", "tests/", "configs/", "scripts/")) for name in names)
    # The committed full runs the chapters show (meal_lite.experiments.committed_result) travel with it.
    results = {name.rsplit("/", 1)[1] for name in names if name.startswith("meal_lite/experiments/results/")}
    assert results == {"demo.json", "dark_knowledge.json", "evidence_search.json", "cache_accuracy.json"}, results

    installed = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(installed), str(wheel)], check=True, timeout=300)

    workdir = tmp_path / "reader"
    workdir.mkdir()
    nb = json.loads((BOOK_DIR / CHAPTER).read_text(encoding="utf-8"))
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "wheel-check", "metadata": {},
                        "outputs": [], "source": CHECK})
    (workdir / CHAPTER).write_text(json.dumps(nb), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "MEAL_LITE_", "PYTEST_"))}
    env.update(PYTHONPATH=str(installed), MEAL_LITE_WHEEL_DIR=str(installed), MEAL_LITE_PROFILE="offline",
               HF_HUB_OFFLINE="1", MEAL_LITE_CACHE=str(tmp_path / "teacher-cache"))
    # Before the kernel: the same interpreter and environment import the installed copy, not the checkout.
    where = subprocess.run([sys.executable, "-c", "import meal_lite; print(meal_lite.__file__)"], cwd=workdir,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.realpath(where).startswith(os.path.realpath(installed) + os.sep), where
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "--nbval-cell-timeout", "600", CHAPTER],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
