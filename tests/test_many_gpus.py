"""Global batch, gradient accumulation, mid-epoch checkpoints, exact mid-epoch resume, CutMix (one process).

The multi-process halves (torchrun, DDP, SIGKILL) are in ``test_elastic.py``.
"""

import json

import pytest
import numpy as np
import torch
from torch import nn

from meal_lite.training.batching import describe_plan, plan_batches
from meal_lite.checkpoint import load_checkpoint, save_checkpoint
from meal_lite.config.schema import Config, load_config
from meal_lite.core.ensemble import TeacherEnsemble
from meal_lite.errors import CheckpointError, ConfigError
from meal_lite.data.loaders import build_loader
from meal_lite.core.objective import Objective, make_mix
from meal_lite.training.assemble import seed_everything
from meal_lite.training.trainer import Trainer
from tiny_run import NUM_CLASSES, NoisyDigits, TinyNet, tiny_config


class GroupNormNet(nn.Module):
    """A BatchNorm-free student: its gradient over a batch is the mean of per-sample gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 6 * 6, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.body(x))


def config(global_batch=32, max_batch=None, **train) -> Config:
    cfg = tiny_config(**train)
    cfg.data.global_batch, cfg.data.max_batch_per_process = global_batch, max_batch
    cfg.optim.reference_batch = 32
    cfg.optim.lr = 0.05
    cfg.discriminator.lr_follows_student = True
    return cfg


def trainer_for(cfg: Config, out_dir=None) -> Trainer:
    seed_everything(0)  # torch (weights) and NumPy (CutMix's draws), as a real run seeds them
    student, teachers = GroupNormNet(), TeacherEnsemble([TinyNet(), TinyNet()])
    objective = Objective.from_config(student, teachers, cfg, NUM_CLASSES)
    per_process = plan_batches(cfg, 1).per_process
    loader = build_loader(NoisyDigits(n=96), per_process, train=True, seed=cfg.train.seed)
    return Trainer(objective, loader, None, cfg=cfg, out_dir=out_dir, verbose=False)


def weights(trainer):
    return {**{f"s.{k}": v for k, v in trainer.student.state_dict().items()},
            **{f"d.{k}": v for k, v in trainer.discriminator.state_dict().items()}}


# -- the plan ------------------------------------------------------------------------------------------


def test_plan_derives_per_process_batch_and_accumulation_from_the_world_size():
    cfg = load_config(None, ["data.global_batch=512", "data.max_batch_per_process=64"], profile="offline")
    assert [(p.per_process, p.accum_steps) for p in (plan_batches(cfg, w) for w in (1, 2, 8, 16))] == [
        (64, 8), (64, 4), (64, 1), (32, 1)]
    assert plan_batches(cfg, 8).lr_scale == 1.0
    cfg.data.max_batch_per_process = 48  # 64 per process does not fit: 2 x 32, not 48 + 16
    assert (plan_batches(cfg, 8).per_process, plan_batches(cfg, 8).accum_steps) == (32, 2)
    cfg.data.global_batch = 256  # half the paper's batch: half its lrs
    plan = plan_batches(cfg, 4)
    assert plan.lr_scale == 0.5 and plan.world_size * plan.per_process * plan.accum_steps == 256
    text = describe_plan(plan, cfg)
    assert "global 256 = 4 process(es) x 32 per process x 2 accumulation step(s)" in text
    assert f"student lr {cfg.optim.lr * 0.5:g}" in text and all(line.startswith("#") for line in text.splitlines())


def test_plan_without_global_batch_keeps_the_per_process_batch_and_lr():
    cfg = load_config(None, ["data.batch_size=24"], profile="offline")
    plan = plan_batches(cfg, 3)
    assert (plan.global_batch, plan.per_process, plan.accum_steps, plan.lr_scale) == (72, 24, 1, 1.0)


def test_a_global_batch_that_does_not_split_is_one_sentence():
    cfg = load_config(None, ["data.global_batch=512"], profile="offline")
    with pytest.raises(ConfigError, match=r"cannot be split evenly over 3 processes; make it a multiple of 3") as err:
        plan_batches(cfg, 3)
    assert "\n" not in str(err.value)


def test_trainer_scales_both_learning_rates():
    trainer = trainer_for(config(global_batch=16))  # reference 32 -> x 0.5
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.025, trainer.cfg.discriminator.lr * 0.5]


# -- accumulation ---------------------------------------------------------------------------------------


def test_two_accumulated_micro_batches_equal_one_batch_of_both():
    one = trainer_for(config(global_batch=32, epochs=2))
    one.fit()
    accumulated = trainer_for(config(global_batch=32, max_batch=16, epochs=2))
    assert (accumulated.plan.per_process, accumulated.plan.accum_steps) == (16, 2)
    accumulated.fit()
    a, b = weights(one), weights(accumulated)
    assert not torch.equal(a["s.head.weight"], trainer_for(config()).student.head.weight)  # it trained
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


# -- mid-epoch checkpoints and exact resume -------------------------------------------------------------


class Crash(Exception):
    pass


def crash_at(step):
    def fail(rank, global_step):
        if global_step == step:
            raise Crash
    return fail


def resumable(**train):
    cfg = config(global_batch=32, max_batch=16, epochs=3, checkpoint_every=2, **train)
    cfg.optim.milestones = [2]
    cfg.data.cutmix_prob = 0.5  # CutMix draws from NumPy's global RNG: the resume must restore it exactly
    return cfg


def test_mid_epoch_resume_is_bit_identical(tmp_path, monkeypatch):
    straight = trainer_for(resumable(), tmp_path / "straight")
    straight.fit()
    monkeypatch.setattr("meal_lite.training.trainer.maybe_fail", crash_at(3 + 3 + 1))  # 3 steps an epoch: epoch 3 step 1
    with pytest.raises(Crash):
        trainer_for(resumable(), tmp_path / "resumed").fit()
    state = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (2, 0)  # step 1 is before the first mid-epoch save
    monkeypatch.setattr("meal_lite.training.trainer.maybe_fail", crash_at(3 + 2 + 1))  # epoch 2, after step 2's save
    with pytest.raises(Crash):
        trainer_for(resumable(), tmp_path / "resumed2").fit()
    state = load_checkpoint(tmp_path / "resumed2" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["world_size"]) == (1, 2, 1)
    monkeypatch.undo()
    resumed = trainer_for(resumable(resume=True), tmp_path / "resumed2")
    history = resumed.fit()
    assert [m["epoch"] for m in history] == [2, 3]
    a, b = weights(straight), weights(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ref = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in (tmp_path / "resumed2" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["epoch"], m["train_loss"], m["disc_acc"]) for m in got] == [(m["epoch"], m["train_loss"], m["disc_acc"]) for m in ref]


def test_mid_epoch_resume_without_the_rng_restore_differs(tmp_path, monkeypatch):
    """Guard for the test above: it can fail (CutMix's draws depend on the restored RNG)."""
    straight = trainer_for(resumable(), tmp_path / "straight")
    straight.fit()
    monkeypatch.setattr("meal_lite.training.trainer.maybe_fail", crash_at(3 + 2 + 1))
    with pytest.raises(Crash):
        trainer_for(resumable(), tmp_path / "resumed").fit()
    monkeypatch.undo()
    monkeypatch.setattr("meal_lite.training.trainer.set_rng_state", lambda state: None)
    resumed = trainer_for(resumable(resume=True), tmp_path / "resumed")
    resumed.fit()
    assert not torch.equal(straight.student.head.weight, resumed.student.head.weight)


def test_mid_epoch_checkpoint_of_another_world_size_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr("meal_lite.training.trainer.maybe_fail", crash_at(2))
    with pytest.raises(Crash):
        trainer_for(resumable(), tmp_path / "run").fit()
    monkeypatch.undo()
    path = tmp_path / "run" / "last.pt"
    state = load_checkpoint(path)
    assert state["step_in_epoch"] == 2
    state["world_size"] = 2  # as if written by a 2-process run
    save_checkpoint(state, path)
    trainer = trainer_for(resumable(resume=True), tmp_path / "run")
    before = trainer.student.head.weight.clone()
    with pytest.raises(CheckpointError) as err:
        trainer.fit()
    message = str(err.value)
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
    assert "written mid-epoch (epoch 1, step 2) by 2 process(es)" in message and "this run has 1" in message
    assert torch.equal(trainer.student.head.weight, before)  # refused before anything was restored


# -- CutMix -------------------------------------------------------------------------------------------


def test_cutmix_pastes_one_box_from_the_mirrored_batch():
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 16, 16).contiguous()
    labels = torch.tensor([0, 1, 2, 3])
    np.random.seed(3)
    mix = make_mix(0.0, 1.0, 1.0, num_classes=4)
    mixed, soft = mix(images.clone(), labels)
    changed = mixed != images
    assert changed.any()
    box = changed[0, 0] | changed[1, 0] | changed[2, 0] | changed[3, 0]
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one rectangle
    for i in range(4):  # inside the box image i holds image 3 - i (the mirrored batch), outside its own
        assert (mixed[i, 0][box] == 3 - i).all() and (mixed[i, 0][~box] == i).all()
        # the label is mixed by the pasted area, as a supervised CutMix run needs
        assert soft[i, i].item() == pytest.approx(1 - box.float().mean().item())
    assert make_mix(0.0, 0.0, 1.0, num_classes=4) is None


def test_one_way_of_mixing_and_none_with_cached_labels():
    with pytest.raises(ConfigError, match="set one of them to 0"):
        load_config(None, ["data.cutmix_prob=0.5", "data.mixup_alpha=0.2"], profile="offline")
    with pytest.raises(ConfigError, match="stored soft labels would not describe the mixed image"):
        load_config(None, ["data.cutmix_prob=0.5", "soft_labels.path=runs/x", "discriminator.input=probs"], profile="offline")


def test_meal_lite_config_prints_the_batch_split_and_still_loads(capsys, tmp_path):
    import yaml

    from meal_lite.cli import main

    from pathlib import Path

    path = str(Path(__file__).resolve().parents[1] / "configs" / "imagenet" / "resnet50-224.yaml")
    assert main(["config", "--world-size", "2", path, "data.global_batch=256"]) == 0
    text = capsys.readouterr().out
    assert "# batch: global 256 = 2 process(es) x 64 per process x 2 accumulation step(s)" in text
    assert "x 256/512 = 0.5 -> student lr 0.005" in text and "lr_follows_student" in text
    assert yaml.safe_load(text)["data"]["global_batch"] == 256  # the comments keep it loadable
