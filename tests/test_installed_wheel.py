"""The wheel a Colab reader installs, and the plugin that runs every chapter from it.

``make test`` runs every chapter from the installed wheel in a folder outside the repository
(``tests/chapters_from_wheel.py``, ``--chapters-from-wheel``). These tests check the two things that run
rests on: the wheel carries everything the chapters read (the paper's configurations, the committed full
runs), and a kernel started the plugin's way imports ``meal_lite`` from the installed copy - and a kernel
that would import the checkout instead is refused before its first cell.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nbval.kernel
import pytest

from chapters_from_wheel import SITE_ENV, WHEEL_ENV, as_a_reader, build_wheel, install_wheel

pytestmark = pytest.mark.wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``--chapters-from-wheel`` built for this run, else one built here."""
    if os.environ.get(WHEEL_ENV):
        return Path(os.environ[WHEEL_ENV])
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_what_the_chapters_read_and_nothing_of_the_checkout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "meal_lite/config/imagenet/resnet50-224.yaml" in names and "meal_lite/config/defaults/offline.yaml" in names
    assert not any(name.startswith(("book/", "tests/", "configs/", "scripts/")) for name in names)
    # The committed full runs the chapters show (meal_lite.experiments.committed_result) travel with it.
    results = {name.rsplit("/", 1)[1] for name in names if name.startswith("meal_lite/experiments/results/")}
    assert results == {"demo.json", "dark_knowledge.json", "evidence_search.json", "cache_accuracy.json"}, results


def _started(site: Path):
    return as_a_reader(site)(
        startup_timeout=120, kernel_name=nbval.kernel.CURRENT_ENV_KERNEL_NAME)


def test_a_reader_kernel_imports_the_installed_wheel_outside_the_repository(wheel, tmp_path):
    site = Path(os.environ[SITE_ENV]) if os.environ.get(SITE_ENV) else install_wheel(wheel, tmp_path / "site")
    km, kc = _started(site)
    try:
        seen = []
        code = ("import os, meal_lite\nfrom meal_lite.config import paper_configs\n"
                "print(os.path.realpath(meal_lite.__file__)); print(os.getcwd()); print(len(paper_configs()))")
        reply = kc.execute_interactive(code, output_hook=lambda m: seen.append(m["content"].get("text", "")),
                                       timeout=120)
        assert reply["content"]["status"] == "ok"
        where, cwd, configs = "".join(seen).split()
        assert where.startswith(os.path.realpath(site) + os.sep), where
        repo = os.path.realpath(Path(__file__).resolve().parents[1])
        assert not os.path.realpath(cwd).startswith(repo + os.sep) and not os.listdir(cwd), cwd
        assert int(configs) == 8
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_kernel_that_would_import_the_checkout_is_refused(tmp_path):
    empty_site = tmp_path / "site"  # no meal_lite here: the kernel falls back to the editable checkout
    empty_site.mkdir()
    with pytest.raises(RuntimeError, match="did not run from the installed wheel"):
        _started(empty_site)
