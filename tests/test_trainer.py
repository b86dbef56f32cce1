"""Trainer: exact resume, optimiser groups and the official lr quirk, non-finite stops, evaluation."""

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from meal_lite.checkpoint import load_checkpoint
from meal_lite.errors import CheckpointError, ConfigError, NonFiniteLossError
from meal_lite.training.evaluate import evaluate
from meal_lite.core.objective import Objective
from meal_lite.training.trainer import build_optimizer
from tiny_run import NUM_CLASSES, KillAfter, TinyNet, make_trainer, tiny_config


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs"


def read_metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loader", ["sampler", "shuffle"])
def test_resume_after_kill_is_bit_identical(tmp_path, loader):
    straight = make_trainer(tiny_config(), tmp_path / "straight", loader=loader)
    straight.fit()

    killed = make_trainer(tiny_config(), tmp_path / "resumed", loader=loader, callbacks=[KillAfter(2)])
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2

    resumed = make_trainer(tiny_config(resume=True), tmp_path / "resumed", loader=loader)
    history = resumed.fit()
    assert [m["epoch"] for m in history] == [3, 4]
    assert_same_weights(straight.student, resumed.student)
    assert_same_weights(straight.discriminator, resumed.discriminator)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # milestone 3 crossed after resume
    # The resumed run also logs the same numbers as the straight one.
    ref, got = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [m["epoch"] for m in got] == [1, 2, 3, 4]
    for a, b in zip(ref, got):
        assert (a["train_loss"], a["val_top1"], a["disc_acc"]) == (b["train_loss"], b["val_top1"], b["disc_acc"])
    if loader == "sampler":
        assert resumed.train_loader.sampler.epochs_seen == [2, 3]


def test_resume_without_restoring_rng_differs(tmp_path, monkeypatch):
    """Guard for the test above: dropping the RNG restore must break bit-identity."""
    straight = make_trainer(tiny_config(), tmp_path / "a")
    straight.fit()
    killed = make_trainer(tiny_config(), tmp_path / "b", callbacks=[KillAfter(2)])
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    monkeypatch.setattr("meal_lite.training.trainer.set_rng_state", lambda state: None)
    resumed = make_trainer(tiny_config(resume=True), tmp_path / "b")
    resumed.fit()
    differs = any(
        not torch.equal(a, b) for a, b in zip(straight.student.state_dict().values(), resumed.student.state_dict().values())
    )
    assert differs


def test_resume_is_a_no_op_when_finished_and_fresh_without_checkpoint(tmp_path):
    make_trainer(tiny_config(epochs=1), tmp_path).fit()
    assert make_trainer(tiny_config(epochs=1, resume=True), tmp_path).fit() == []
    assert len(read_metrics(tmp_path)) == 1
    fresh = make_trainer(tiny_config(epochs=1, resume=True), tmp_path / "new").fit()
    assert [m["epoch"] for m in fresh] == [1]


def test_resume_into_a_different_model_is_a_checkpoint_error(tmp_path):
    make_trainer(tiny_config(epochs=1), tmp_path).fit()
    other = make_trainer(tiny_config(epochs=2, resume=True), tmp_path, student=TinyNet(num_classes=4).features)
    with pytest.raises(CheckpointError, match="does not fit this run"):
        other.fit()


def test_one_optimizer_two_groups():
    trainer = make_trainer(tiny_config(epochs=1))
    groups = trainer.optimizer.param_groups
    assert isinstance(trainer.optimizer, torch.optim.SGD) and len(groups) == 2
    assert [g["name"] for g in groups] == ["student", "discriminator"]
    assert [g["lr"] for g in groups] == [0.01, 1e-4]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 0.0 for g in groups)
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in trainer.student.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.discriminator.parameters()}


@pytest.mark.parametrize("follows, disc_lrs", [(False, [1e-4, 1e-5]), (True, [0.01, 0.001])])
def test_official_lr_overwrite_flag(follows, disc_lrs):
    cfg = tiny_config(epochs=2)
    cfg.optim.milestones = [1]
    cfg.discriminator.lr_follows_student = follows
    trainer = make_trainer(cfg)
    history = trainer.fit()
    assert [m["lr"] for m in history] == pytest.approx([0.01, 0.001])
    assert [m["disc_lr"] for m in history] == pytest.approx(disc_lrs)


def test_joint_step_updates_student_and_discriminator():
    trainer = make_trainer(tiny_config(epochs=1))
    outputs = []  # the discriminator's scores at every step, to recompute its accuracy by hand
    trainer.objective.trainable.register_forward_hook(lambda module, args, out: outputs.append(out[1].detach()))
    before_s = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    before_d = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in trainer.objective.teacher_source.state_dict().items()}
    metrics = trainer.fit()[0]
    assert not torch.equal(before_s["head.weight"], trainer.student.head.weight)
    assert any(not torch.equal(before_d[k], v) for k, v in trainer.discriminator.state_dict().items())
    for key, value in trainer.objective.teacher_source.state_dict().items():
        assert torch.equal(teacher_before[key], value), f"teacher {key} changed"
    assert metrics["train_loss"] == pytest.approx(metrics["train_kl"] + metrics["train_d_loss"], rel=1e-6)
    # Student rows come first in every batch and count as right when column 0 wins; teacher rows when 1 does.
    hits = rows = 0
    for out in outputs:
        n = out.shape[0] // 2
        hits += int((out[:n].argmax(1) == 0).sum() + (out[n:].argmax(1) == 1).sum())
        rows += out.shape[0]
    assert len(outputs) == 3 and rows == 96
    assert metrics["disc_acc"] == pytest.approx(100.0 * hits / rows)


@pytest.mark.parametrize("objective", ["ce", "kl"])
def test_objectives_without_discriminator(objective):
    cfg = tiny_config(epochs=1)
    cfg.loss.objective = objective
    trainer = make_trainer(cfg)
    assert trainer.discriminator is None and len(trainer.optimizer.param_groups) == 1
    metrics = trainer.fit()[0]
    assert metrics["train_d_loss"] is None and metrics["disc_acc"] is None
    assert (metrics["train_kl"] is None) == (objective == "ce")


def test_kl_objective_needs_a_teacher_source():
    cfg = tiny_config()
    cfg.loss.objective = "kl"
    with pytest.raises(ConfigError, match="needs a teacher source"):
        Objective.from_config(TinyNet(), None, cfg, NUM_CLASSES)


def test_nan_at_epoch_two_stops_with_last_good_checkpoint(tmp_path):
    saved = {}

    def poison_after_epoch_1(trainer, epoch, metrics):
        saved["student"] = {k: v.clone() for k, v in trainer.student.state_dict().items()}
        saved["bytes"] = (tmp_path / "last.pt").read_bytes()
        trainer.student.poison = True

    trainer = make_trainer(tiny_config(epochs=3), tmp_path, callbacks=[poison_after_epoch_1])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "epoch 2 step 1" in message and str(tmp_path / "last.pt") in message and "optim.lr" in message
    assert (tmp_path / "last.pt").read_bytes() == saved["bytes"]
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    for key, value in saved["student"].items():
        assert torch.equal(state["student"][key], value)
    assert [m["epoch"] for m in read_metrics(tmp_path)] == [1]


def test_huge_lr_stops_before_any_checkpoint(tmp_path):
    cfg = tiny_config(epochs=2)
    cfg.optim.lr = 1e30
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step \d+; the last good checkpoint is none"):
        make_trainer(cfg, tmp_path).fit()
    assert not (tmp_path / "last.pt").exists()


def test_evaluate_top1_top5_and_clipping():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x

    logits = torch.tensor([[9.0, 1, 2, 3, 4, 5, 6], [0.0, 9, 8, 7, 6, 5, 4], [0.0, 1, 2, 3, 4, 5, 6]])
    labels = torch.tensor([0, 5, 0])  # right at 1; 5th best (top-5 only); 7th (wrong)
    result = evaluate(Fixed(), DataLoader(TensorDataset(logits, labels), batch_size=2), "cpu")
    assert result["n"] == 3
    assert result["top1"] == pytest.approx(100 / 3) and result["top5"] == pytest.approx(200 / 3)
    three = torch.tensor([[1.0, 2, 3], [3.0, 2, 1]])
    result = evaluate(Fixed(), DataLoader(TensorDataset(three, torch.tensor([0, 2]))), "cpu")
    assert result["top1"] == 0.0 and result["top5"] == 100.0  # top-5 clipped to top-3


def test_no_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_trainer(tiny_config(epochs=1), None).fit()
    assert list(tmp_path.iterdir()) == []


def test_build_optimizer_adamw_and_without_discriminator():
    cfg = tiny_config()
    cfg.optim.name = "adamw"
    opt = build_optimizer(Objective(TinyNet(), "ce"), cfg.optim, cfg.discriminator)
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1


def test_channels_last_option_trains_on_cpu():
    cfg = tiny_config(epochs=1, channels_last=True)
    trainer = make_trainer(cfg)
    assert trainer.student.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    metrics = trainer.fit()[0]
    # The same run in the default layout: the layout changes how memory is read, not what is computed.
    plain = make_trainer(tiny_config(epochs=1))
    reference = plain.fit()[0]
    assert metrics["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)
    for a, b in zip(trainer.student.parameters(), plain.student.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_objective_softens_the_target_with_the_loss_temperature():
    cfg = tiny_config()
    cfg.loss.objective = "kl"
    cfg.loss.temperature = 4.0
    trainer = make_trainer(cfg)
    images, labels = next(iter(trainer.train_loader))
    teachers = list(trainer.objective.teacher_source.teachers)
    with torch.no_grad():
        z = torch.stack([t(images) for t in teachers])                    # (K, N, C) by hand
        expected = torch.softmax(z / 4.0, dim=-1).mean(dim=0)            # mean of the softened teachers
        target = trainer.objective.soft_targets(trainer.objective.teacher_source(images))
        torch.testing.assert_close(target, expected)
        assert not torch.allclose(target, torch.softmax(z, dim=-1).mean(dim=0), atol=1e-3)  # T really applied
        trainer.objective.eval()
        loss = trainer.objective(images, labels)["loss"]
        by_hand = -(expected * torch.log_softmax(trainer.student(images) / 4.0, dim=-1)).sum(1).mean() * 16.0
    torch.testing.assert_close(loss, by_hand)
