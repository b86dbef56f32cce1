"""``meal-lite demo`` in the imagenette profile, end to end against the loopback stand-ins.

Run by ``make test-imagenette`` (``--imagenette-standins``): the plugin's server stands in for fast.ai's
archive host and the Hugging Face hub, and its environment (data folder, hub cache, teacher cache) is the
one the chapters share, so the demo downloads nothing the chapters already fetched (the plugin fails the
run if any file is fetched twice). The command runs as a reader types it, in a subprocess, from an empty
folder; only its lengths are cut to the smallest (two seeds, one epoch each) so that it fits the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from meal_lite.data.imagefolders import IMAGENETTE_CLASSES


pytestmark = pytest.mark.usefixtures("imagenette_standins_only")


def test_demo_runs_the_protocol_on_imagenette(tmp_path):
    from imagenette_standins import TRAIN_PER_CLASS, VAL_PER_CLASS

    out = tmp_path / "demo"
    command = [sys.executable, "-m", "meal_lite.cli", "demo", "--out", str(out), "--seeds", "2",
               "--baseline-epochs", "1", "--distill-epochs", "1", "--workers", "1"]
    result = subprocess.run(command, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert os.environ["MEAL_LITE_PROFILE"] == "imagenette"
    results = json.loads((out / "results.json").read_text())
    # The profile's test split: the val folder's images after the first val_per_class of each class.
    from meal_lite.config import load_config

    data = load_config(None, profile="imagenette").data
    test_images = len(IMAGENETTE_CLASSES) * (VAL_PER_CLASS - min(data.val_per_class, VAL_PER_CLASS // 2))
    assert TRAIN_PER_CLASS >= 1 and test_images > 0
    for row in ("ensemble", "baseline", "ce", "kl", "meal"):
        for value in results[row]["values"]:  # a top-1 on the test images: a whole number of them
            assert value * test_images / 100 == pytest.approx(round(value * test_images / 100), abs=1e-6), (row, value)
    for row in ("ce", "kl", "meal"):
        assert len(results[row]["values"]) == 2
    assert result.stdout.count("too few seeds to tell (2 seeds; an interval needs at least 5)") == 3
    assert "imagenette" in result.stdout
