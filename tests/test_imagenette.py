"""The ImageNette path end to end: evaluate_checkpoint, `meal-lite eval`, training, early failures.

Everything runs on a generated ImageNette folder (real JPEGs, torchvision's layout) with tiny
random-weight timm models loaded from local files, at 32 px, on the CPU, without a network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from fake_data import make_fake_imagenet, make_fake_imagenette
from meal_lite import cli
from meal_lite.config.schema import load_config
from meal_lite.data.imagefolders import IMAGENETTE_IMAGENET_INDICES, imagenette_datasets
from meal_lite.training.pipeline import train_from_config
from meal_lite.errors import ConfigError, DataError, MealLiteError, ModelError
from meal_lite.training.eval_checkpoint import evaluate_checkpoint

# ImageNette's ten classes in ImageNet-1k (tench, English springer, ..., parachute): the ranks of their
# wnids among the sorted 1000 ILSVRC-2012 wnids.
IMAGENETTE_IN1K = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


@pytest.fixture(scope="module")
def imagenette_root(tmp_path_factory):
    return make_fake_imagenette(tmp_path_factory.mktemp("data"), n_train=4, n_val=2)


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """Two tiny random-weight ImageNet (1000-class) teachers saved as local files."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    paths = {}
    for name in ("resnet10t", "test_resnet"):
        model = timm.create_model(name, num_classes=1000)
        paths[name] = str(folder / f"{name}.pth")
        torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, paths[name])
    return paths


def _expected_accuracy(model, root, size=32):
    cfg = {**timm.data.resolve_model_data_config(model), "input_size": (3, size, size)}
    val = imagenette_datasets(root, data_config=cfg, download=False)["val"]
    xs, ys = zip(*(val[i] for i in range(len(val))))
    with torch.no_grad():
        logits = model.eval()(torch.stack(xs))[:, IMAGENETTE_IN1K]
    y = torch.tensor(ys)
    top1 = (logits.argmax(1) == y).float().mean().item() * 100
    top5 = (logits.topk(5, 1).indices == y[:, None]).any(1).float().mean().item() * 100
    return top1, top5


# ------------------------------------------------------------------------------------------------
# Evaluation of released-style checkpoints


def test_evaluate_checkpoint_with_module_prefix_on_imagenette(imagenette_root, tmp_path, capsys):
    torch.manual_seed(3)
    model = timm.create_model("test_resnet")  # 1000 outputs, like a released MEAL V2 ImageNet student
    path = tmp_path / "mealv2_style.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    result = evaluate_checkpoint(
        "test_resnet", path, dataset="imagenette", data_root=imagenette_root, image_size=32,
        batch_size=8, num_workers=0, device="cpu", download=False,
    )
    assert set(result) == {"top1", "top5", "n", "model", "dataset", "image_size"} and result["n"] == 20
    assert (result["model"], result["dataset"], result["image_size"]) == ("test_resnet", "imagenette", 32)
    top1, top5 = _expected_accuracy(model, imagenette_root)  # on the ten ImageNette logits
    assert result["top1"] == pytest.approx(top1) and result["top5"] == pytest.approx(top5)
    line = capsys.readouterr().out
    assert "top-1" in line and "top-5" in line and "over 20 images" in line


def test_evaluate_checkpoint_on_imagenet_folder(tmp_path):
    root = make_fake_imagenet(tmp_path / "imagenet")
    model = timm.create_model("test_resnet")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    result = evaluate_checkpoint(
        "test_resnet", str(path), dataset="imagenet", data_root=root, image_size=32, batch_size=250,
        num_workers=0, device="cpu", verbose=False,
    )
    assert result["n"] == 1000 and 0 <= result["top1"] <= result["top5"] <= 100


def test_evaluate_checkpoint_class_count_mismatch(imagenette_root, tmp_path):
    path = tmp_path / "w7.pth"
    torch.save(timm.create_model("test_resnet", num_classes=7).state_dict(), path)
    with pytest.raises(ModelError, match="Model 'test_resnet' predicts 7 classes but the imagenette data has 10"):
        evaluate_checkpoint("test_resnet", path, data_root=imagenette_root, image_size=32, num_workers=0, download=False)


def test_cli_eval(imagenette_root, tmp_path, capsys):
    model = timm.create_model("test_resnet")
    path = tmp_path / "w.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    code = cli.main([
        "eval", "--model", "test_resnet", "--weights", str(path), "--data-root", str(imagenette_root),
        "--dataset", "imagenette", "--image-size", "32", "--num-workers", "0", "--device", "cpu",
    ])
    out = capsys.readouterr()
    assert code == 0, out.err
    top1, _ = _expected_accuracy(model, imagenette_root)
    assert f"top-1 {top1:.2f}%" in out.out


def test_cli_eval_error_is_one_line(tmp_path, capsys):
    code = cli.main([
        "eval", "--model", "resnt50", "--weights", str(tmp_path / "x.pth"), "--data-root", str(tmp_path),
        "--dataset", "imagenette",
    ])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: Unknown timm model 'resnt50'") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------
# Training on ImageNette (needs H2's trainer)


def _overrides(root: Path, out: Path, teacher_files: dict, **extra: str) -> list[str]:
    teachers = ", ".join(
        f"{{name: {name}, pretrained: false, weights: '{path}'}}" for name, path in teacher_files.items()
    )
    values = {
        "data.dataset": "imagenette",
        "data.root": f"'{root}'",
        "data.download": "false",
        "data.image_size": "32",
        "data.batch_size": "8",
        "data.num_workers": "0",
        "student.name": "test_resnet",
        "student.pretrained": "false",
        "teachers": f"[{teachers}]",
        "loss.objective": "meal",
        "train.epochs": "1",
        "train.device": "cpu",
        "train.progress": "false",
        "train.out": f"'{out}'",
        "optim.milestones": "[1]",
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def test_train_end_to_end_on_imagenette_cli(imagenette_root, teacher_files, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--profile", "imagenette", *_overrides(imagenette_root, out, teacher_files)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (out / "last.pt").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["epoch"] == 1 and 0 <= metrics["val_top1"] <= 100
    # The checkpoint it wrote evaluates to the same accuracy through evaluate_checkpoint.
    result = evaluate_checkpoint(
        "test_resnet", out / "last.pt", data_root=imagenette_root, image_size=32, num_workers=0,
        batch_size=8, device="cpu", download=False, verbose=False,
    )
    # the run's own validation split: the first half of each class's val images (data.val_per_class)
    assert result["n"] == 10 and result["top1"] == pytest.approx(metrics["val_top1"])


def _train(overrides: list[str]):
    return train_from_config(load_config(None, overrides, profile="imagenette"))


@pytest.mark.parametrize(
    "case,extra,error,needle",
    [
        ("no data", {"data.root": "'{tmp}/nowhere'"}, DataError, "data.download is false"),
        ("unknown teacher", {"teachers": "[resnt18]"}, ModelError, "Unknown timm model 'resnt18'"),
        ("teacher classes", {"teachers": "[{{name: test_resnet, weights: '{w7}'}}]"}, ModelError, "predicts 7 classes"),
        ("student offline", {"student.pretrained": "true"}, ModelError, "Pretrained weights for 'test_resnet'"),
        ("bad preset", {"teachers": "[]", "teacher_preset": "imagenette-big"}, ConfigError, "Unknown teacher_preset"),
    ],
)
def test_failures_before_training_write_nothing(imagenette_root, teacher_files, tmp_path, case, extra, error, needle):
    w7 = tmp_path / "t7.pth"
    torch.save(timm.create_model("test_resnet", num_classes=7).state_dict(), w7)
    out = tmp_path / "run"
    extra = {k: v.format(tmp=tmp_path, w7=w7) for k, v in extra.items()}
    with pytest.raises(error) as err:
        _train(_overrides(imagenette_root, out, teacher_files, **extra))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, MealLiteError)
    assert not out.exists()


def test_subset_indices_constant_matches_reference():
    assert list(IMAGENETTE_IMAGENET_INDICES) == IMAGENETTE_IN1K
