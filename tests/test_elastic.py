"""Many processes on CPU (torchrun, gloo, offline digits): global batch equivalence and surviving a SIGKILL.

One tiny run, three ways, with the same config (2 epochs of 4 steps, global batch 32, a checkpoint
every 2 steps): one process with batch 32; two processes with 8 images each and 2 accumulated
micro-batches; and two processes where rank 1 SIGKILLs itself mid-epoch under ``--max-restarts 1``.
The student is ``test_efficientnet_gn`` (timm's GroupNorm EfficientNet): BatchNorm-free, so a batch
split over processes gives the gradient of the whole batch without SyncBatchNorm.

torchrun runs with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: with the store shared between the
rendezvous and the workers (torch's default), restarted workers can read their peers' addresses of the
previous attempt and fail to connect (pytorch/pytorch#135712); meal-lite's launch commands set it too.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from meal_lite.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")


def write_config(folder: Path) -> Path:
    """Digits, a BatchNorm-free student, two random-weight local teachers, global batch 32."""
    teachers = []
    for i in range(2):
        torch.manual_seed(i)
        path = folder / f"teacher{i}.pt"
        torch.save(timm.create_model("mobilenetv3_small_050", num_classes=10, in_chans=1).state_dict(), path)
        teachers.append({"name": "mobilenetv3_small_050", "pretrained": False, "weights": str(path)})
    config = {
        "profile": "offline",
        "data": {"dataset": "digits", "image_size": 32, "global_batch": 32, "num_workers": 0},
        "student": {"name": "test_efficientnet_gn", "pretrained": False},
        "teachers": teachers,
        "discriminator": {"lr_follows_student": True},
        "optim": {"lr": 0.05, "reference_batch": 32, "milestones": [1]},
        "train": {"epochs": 2, "device": "cpu", "progress": False, "limit_batches": 4, "checkpoint_every": 2,
                  "resume": True, "eval_every": 2},
    }
    path = folder / "tiny.yaml"
    path.write_text(json.dumps(config))
    return path


def launch(folder: Path, out: str, procs: int, *overrides: str, env: dict | None = None, restarts: int = 0):
    base = dict(os.environ, HF_HUB_OFFLINE="1", MEAL_LITE_PROFILE="offline", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
                TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    command = [sys.executable, "-m", "meal_lite.cli", "train", str(folder / "tiny.yaml"), f"train.out={out}", *overrides]
    if procs > 1:
        command[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                        f"--max-restarts={restarts}", "-m", "meal_lite.cli"]
    result = subprocess.run(command, cwd=folder, env={**base, **(env or {})}, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result, load_checkpoint(folder / out / "last.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("elastic")
    write_config(folder)
    return folder, launch(folder, "two", 2, "data.max_batch_per_process=8")


def test_two_processes_equal_one_process_with_the_whole_batch(runs):
    folder, (two_out, two) = runs
    assert "global 32 = 2 process(es) x 8 per process x 2 accumulation step(s)" in two_out.stdout
    _, one = launch(folder, "one", 1)
    assert (one["epoch"], two["epoch"], two["world_size"]) == (2, 2, 2)
    for part in ("student", "discriminator"):
        for key, value in one[part].items():
            torch.testing.assert_close(two[part][key], value, rtol=1e-4, atol=1e-5, msg=f"{part}.{key}")


def test_sigkill_mid_epoch_restarts_from_the_last_checkpoint_and_ends_equal(runs):
    folder, (_, straight) = runs
    # Rank 1 dies right after global step 7 (epoch 2, step 3); the last checkpoint is epoch 2, step 2.
    drill = {"MEAL_LITE_KILL_AT_STEP": "7", "MEAL_LITE_KILL_RANK": "1"}
    result, killed = launch(folder, "killed", 2, "data.max_batch_per_process=8", env=drill, restarts=1)
    assert "resumed from" in result.stdout and "after step 2 of epoch 2" in result.stdout
    assert "SIGKILL" in result.stderr or "Signals.SIGKILL" in result.stderr or "-9" in result.stderr
    for part in ("student", "discriminator"):
        for key, value in straight[part].items():
            assert torch.equal(killed[part][key], value), f"{part}.{key}"
    lines = (folder / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
