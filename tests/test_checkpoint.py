"""Checkpoints: atomic writes survive interruptions, safe loads, state-dict forms, RNG round trips."""

import json
import os
import random

import numpy as np
import pytest
import torch

from meal_lite import checkpoint as ckpt
from meal_lite.errors import CheckpointError
from tiny_run import make_trainer, tiny_config


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "last.pt"
    ckpt.save_checkpoint({"w": torch.arange(3.0), "epoch": 2, "names": ["a"]}, path)
    state = ckpt.load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(3.0)) and state["epoch"] == 2 and state["names"] == ["a"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind


def _partial_save(obj, handle, *args, **kwargs):
    handle.write(b"PK\x03\x04 half a checkpoint")
    raise OSError("disk full")


@pytest.mark.parametrize("where", ["torch.save", "os.replace", "interrupt"])
def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint({"w": torch.ones(4), "epoch": 1}, path)
    before = path.read_bytes()
    if where == "torch.save":
        monkeypatch.setattr(torch, "save", _partial_save)
        expected = OSError
    elif where == "os.replace":
        def failing_replace(src, dst):
            raise OSError("rename failed")
        monkeypatch.setattr(os, "replace", failing_replace)
        expected = OSError
    else:
        def interrupted(obj, handle, *args, **kwargs):
            handle.write(b"partial")
            raise KeyboardInterrupt
        monkeypatch.setattr(torch, "save", interrupted)
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        ckpt.save_checkpoint({"w": torch.zeros(4), "epoch": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    state = ckpt.load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_trainer_checkpoint_interrupted_midway_keeps_last_epoch(tmp_path, monkeypatch):
    """Epoch 2's checkpoint write dies half way: last.pt still holds epoch 1 and resumes."""
    snapshots = {}

    def break_saving_after_epoch_1(trainer, epoch, metrics):
        snapshots["student"] = {k: v.clone() for k, v in trainer.student.state_dict().items()}
        monkeypatch.setattr(torch, "save", _partial_save)

    cfg = tiny_config(epochs=2)
    trainer = make_trainer(cfg, tmp_path, callbacks=[break_saving_after_epoch_1])
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    monkeypatch.undo()
    state = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    for key, value in snapshots["student"].items():
        assert torch.equal(state["student"][key], value)
    assert [p.name for p in tmp_path.glob("*.tmp-*")] == []
    # The run continues from epoch 1 (a stray partial temp file from a hard kill is ignored).
    (tmp_path / "last.pt.tmp-99999").write_bytes(b"partial")
    resumed = make_trainer(tiny_config(epochs=2, resume=True), tmp_path)
    history = resumed.fit()
    assert [m["epoch"] for m in history] == [2]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_load_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        ckpt.load_checkpoint(bad)
    truncated = tmp_path / "truncated.pt"
    ckpt.save_checkpoint({"w": torch.randn(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(truncated)


class NotAllowed:
    """A custom class: weights_only loading must refuse to unpickle it."""


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": NotAllowed()}, path)
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(path)


def test_strip_and_extract_state_dict():
    sd = {"module.fc.weight": torch.ones(1), "module.fc.bias": torch.zeros(1)}
    assert list(ckpt.strip_module_prefix(sd)) == ["fc.weight", "fc.bias"]
    mixed = {"module.a": torch.ones(1), "b": torch.ones(1)}
    assert list(ckpt.strip_module_prefix(mixed)) == ["module.a", "b"]
    for wrapped in (sd, {"state_dict": sd}, {"model": sd}, {"student": sd, "epoch": 3}):
        assert list(ckpt.extract_state_dict(wrapped)) == ["fc.weight", "fc.bias"]
    with pytest.raises(CheckpointError, match="No model weights"):
        ckpt.extract_state_dict({"epoch": 3})


def test_rng_state_round_trip_through_safe_load(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    ckpt.save_checkpoint({"rng": ckpt.get_rng_state()}, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.set_rng_state(ckpt.load_checkpoint(tmp_path / "rng.pt")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_scheduler_state_survives_safe_round_trip(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    ckpt.save_checkpoint({"s": ckpt.scheduler_state_to_safe(sched.state_dict())}, tmp_path / "s.pt")
    other = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50], gamma=0.1)
    other.load_state_dict(ckpt.scheduler_state_from_safe(ckpt.load_checkpoint(tmp_path / "s.pt")["s"]))
    assert other.milestones[2] == 1 and other.milestones[3] == 0
