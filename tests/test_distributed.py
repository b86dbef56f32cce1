"""Multi-process training through torchrun/DDP, on CPU with the gloo backend (2 processes, tiny run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from meal_lite.checkpoint import load_checkpoint

from tiny_run import write_tiny_digits_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_torchrun_two_processes_train_and_only_rank0_writes(tmp_path):
    cfg_path = write_tiny_digits_config(tmp_path, epochs=2, batch_size=32, out=tmp_path / "run")
    env = dict(os.environ, HF_HUB_OFFLINE="1", MEAL_LITE_PROFILE="offline", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "meal_lite.cli", "train", str(cfg_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Rank-dependent work happens once: one printed config, one metrics line per epoch, one checkpoint.
    assert result.stdout.count("profile: offline\n") == 1
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 2
    assert not any(k.startswith("module.") for k in state["student"])  # saved unwrapped, not as DDP
