"""configs/imagenet/: one config per row of the paper's table, each with its published numbers and launch line."""

import re
from pathlib import Path

import pytest
import timm

from meal_lite.training.batching import plan_batches
from meal_lite.config.schema import load_config
from meal_lite.models.factory import teacher_specs

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "configs" / "imagenet"

# The paper's table (REFERENCE.md section 3): config file -> (student timm name, px, teachers, top-1, top-5).
PAPER = {
    "resnet50-224": ("resnet50", 224, "paper-224", "80.67", "95.09"),
    "resnet50-380": ("resnet50", 380, "paper-380", "81.72", "95.81"),
    "resnet50-cutmix": ("resnet50", 224, "paper-224", "80.98", "95.35"),
    "mobilenetv3-small-075": ("tf_mobilenetv3_small_075", 224, "paper-224", "67.60", "87.23"),
    "mobilenetv3-small-100": ("tf_mobilenetv3_small_100", 224, "paper-224", "69.65", "88.71"),
    "mobilenetv3-large-100": ("tf_mobilenetv3_large_100", 224, "paper-224", "76.92", "93.32"),
    "efficientnet-b0": ("tf_efficientnet_b0", 224, "paper-224", "78.29", "93.95"),
    "resnet18": ("resnet18", 224, "paper-224", "73.19", "90.82"),
}


def test_every_row_of_the_table_has_a_config_and_nothing_else_is_there():
    assert sorted(p.stem for p in FOLDER.glob("*.yaml")) == sorted(PAPER)


@pytest.mark.parametrize("stem", sorted(PAPER))
def test_config_is_the_papers_row_with_the_official_settings(stem):
    path = FOLDER / f"{stem}.yaml"
    student, size, preset, top1, top5 = PAPER[stem]
    cfg = load_config(path)
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert re.search(rf"Published: {top1} top-1 / {top5} top-5", header), header[:300]
    assert f"train configs/imagenet/{stem}.yaml" in header
    assert "torchrun" in header
    # The models exist in timm: architecture names and, where a tag is pinned, the pretrained tag.
    assert cfg.student.name.split(".")[0] == student and timm.list_models(student) == [student]
    if "." in cfg.student.name:
        assert cfg.student.name in timm.list_pretrained(cfg.student.name)
    assert cfg.teacher_preset == preset
    for spec in teacher_specs(cfg.teachers, cfg.teacher_preset):
        assert timm.list_models(spec.name.split(".")[0]) and spec.name in timm.list_pretrained(spec.name)
    # The official run: 180 epochs, SGD 0.9, no wd, 0.01 -> 0.001 at 100, global batch 512, lr overwrite.
    assert (cfg.train.epochs, cfg.optim.name, cfg.optim.momentum, cfg.optim.weight_decay) == (180, "sgd", 0.9, 0.0)
    assert (cfg.optim.lr, cfg.optim.milestones, cfg.optim.gamma) == (0.01, [100], 0.1)
    assert cfg.data.global_batch == 512 and cfg.optim.reference_batch == 512
    assert cfg.data.image_size == size and cfg.data.dataset == "imagenet"
    assert cfg.loss.objective == "meal" and cfg.loss.temperature == 1.0 and cfg.discriminator.mode == "official"
    assert cfg.discriminator.input == "logits" and cfg.discriminator.lr_follows_student
    assert (cfg.data.cutmix_prob > 0) == (stem == "resnet50-cutmix")
    assert cfg.train.checkpoint_every and cfg.student.pretrained
    for world in (1, 8, 16):
        plan = plan_batches(cfg, world)
        assert plan.world_size * plan.per_process * plan.accum_steps == 512 and plan.lr_scale == 1.0
        assert plan.per_process <= cfg.data.max_batch_per_process


def test_configs_write_to_their_own_folders():
    outs = [load_config(p).train.out for p in FOLDER.glob("*.yaml")]
    assert len(set(outs)) == len(outs)
