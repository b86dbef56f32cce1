"""``bench/evidence_search.py --profile imagenette``: the validation search that is to choose the imagenette
profile's protocol settings, end to end against the loopback stand-ins.

The choice itself needs ImageNette's real images and ImageNet-pretrained weights, which this project's
machine cannot download; this test proves that the search runs on the imagenette profile through the real
download code, reads only the validation split and writes its own log, so that a machine with a network
only has to run it. Run by ``make test-imagenette`` (``--imagenette-standins``), at the smallest lengths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from book_utils import REPO_ROOT
from meal_lite.data.imagefolders import IMAGENETTE_CLASSES

pytestmark = pytest.mark.usefixtures("imagenette_standins_only")


def test_the_search_runs_on_imagenettes_validation_split_into_its_own_log(tmp_path):
    from imagenette_standins import VAL_PER_CLASS

    from meal_lite.config import load_config

    log = tmp_path / "search.json"
    command = [sys.executable, str(REPO_ROOT / "bench" / "evidence_search.py"), "--profile", "imagenette",
               "--config", "mild", "--seeds", "1", "--baseline-epochs", "1", "--distill-epochs", "1", "--log", str(log)]
    result = subprocess.run(command, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (record,) = json.loads(log.read_text())
    assert record["split"] == "val" and record["config"] == "mild" and record["teacher_recipe_version"] is None
    assert record["settings"]["seeds"] == 1 and record["settings"]["baseline_epochs"] == 1
    assert set(record["chosen_lr"]) == {"ce", "kl", "meal"} and set(record["chosen_lr"].values()) <= set(record["lr_grid"])
    # Both grid points were measured on the validation split, and only there (the protocol logs its split)...
    assert result.stdout.count("measured on split 'val'") == len(record["lr_grid"])
    assert "measured on split 'test'" not in result.stdout
    # ...and every top-1 is a whole number of the profile's validation images (the val folder's first
    # val_per_class of each class, as many as the stand-in archive holds).
    data = load_config(None, profile="imagenette").data
    val_images = len(IMAGENETTE_CLASSES) * min(data.val_per_class, VAL_PER_CLASS // 2)
    for lr, rows in record["val_by_lr"].items():
        for arm, row in rows.items():
            (value,) = row["values"]
            assert value * val_images / 100 == pytest.approx(round(value * val_images / 100), abs=1e-6), (lr, arm)
    summary = log.with_suffix(".md").read_text()
    assert f"ImageNette, validation split ({val_images} images)" in summary and "| mild |" in summary
    assert "| pretrained |" in summary
