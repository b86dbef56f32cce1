"""The meal-lite command line: a real tiny training run in a subprocess, one-line errors, wiring."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import meal_lite.experiments
from meal_lite.checkpoint import load_checkpoint
from meal_lite.cli import main, split_config_args
from meal_lite.errors import ConfigError

from tiny_run import write_tiny_digits_config

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "meal-lite"


def run_cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MEAL_LITE_PROFILE="offline", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "meal_lite.cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_digits_config(tmp_path_factory):
    """A digits run with a tiny timm student and two random-weight local teachers (no network)."""
    return write_tiny_digits_config(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def trained_run(tiny_digits_config):
    """One real ``python -m meal_lite.cli train`` run: (completed process, output folder)."""
    folder = tiny_digits_config.parent
    out = folder / "run"
    result = run_cli("train", tiny_digits_config, f"train.out={out}", "discriminator.lr_follows_student=true",
                     cwd=folder)
    return result, out


def test_train_end_to_end_in_a_subprocess(trained_run):
    result, out = trained_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("profile: offline\n")  # the resolved config prints itself first
    assert "lr_follows_student: true" in result.stdout and f"out: {out}" in result.stdout
    assert "done:" in result.stdout
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["epoch"] == 1 and metrics["disc_lr"] == metrics["lr"] == 0.01
    # The epoch's loss is its KL plus the discriminator's BCE (discriminator.weight 1): sums of the same
    # per-batch parts, so they agree to rounding; the BCE of any discriminator output is positive.
    assert metrics["train_kl"] > 0 and metrics["train_d_loss"] > 0
    assert metrics["train_loss"] == pytest.approx(metrics["train_kl"] + metrics["train_d_loss"], rel=1e-6)
    assert 0 <= metrics["disc_acc"] <= 100 and metrics["seconds"] > 0
    assert 0 <= metrics["val_top1"] <= metrics["val_top5"] <= 100  # top-5 counts every top-1 hit
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and state["config"]["student"]["name"] == "mobilenetv3_small_050"
    assert {"student", "discriminator", "optimizer", "scheduler", "scaler", "rng"} <= set(state)
    assert len(state["optimizer"]["param_groups"]) == 2


def test_eval_scores_a_trained_checkpoint(trained_run, tmp_path, capsys):
    result, out = trained_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert main(["eval", "--model", "mobilenetv3_small_050", "--weights", str(out / "last.pt"),
                 "--data-root", str(tmp_path), "--dataset", "digits", "--num-workers", "0"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("mobilenetv3_small_050 on digits val at 32 px: top-1 ") and "(200 images)" in line


def test_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: three}\nteacher_preset: digits\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "meal_lite.cli"]
    result = subprocess.run([*command, "train", str(bad)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert "'train.epochs'" in lines[0] and "expects int" in lines[0] and "'three'" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "cache"])
def test_a_bad_config_is_refused_before_torch_is_imported(command, tmp_path):
    # A mistyped key is answered at once, not after the seconds torch takes to import.
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochz: 3}\n")
    probe = ("import sys\nfrom meal_lite.cli import main\n"
             f"code = main([{command!r}, {str(bad)!r}])\nprint(code, 'torch' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "Unknown config key 'train.epochz'" in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "missing.yaml"], "Config file 'missing.yaml' does not exist"),
        (["config", "train.epochz=3"], "Unknown config key 'train.epochz'"),
        (["config", "--profile", "offline", "optim.lr=fast"], "'optim.lr' from the command line expects float"),
        (["train", "--profile", "offline", "train.epochs=1", "oops"], "is not a section.key=value override"),
    ],
)
def test_errors_are_one_line_exit_2(args, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_failure_before_training_writes_nothing(tiny_digits_config, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "never"
    assert main(["train", str(tiny_digits_config), f"train.out={out}", "student.name=no_such_model_xyz"]) == 2
    assert "no_such_model_xyz" in capsys.readouterr().err
    assert not out.exists()
    missing_data = ["data.dataset=imagenette", f"data.root={tmp_path / 'nodata'}", "data.download=false"]
    assert main(["train", str(tiny_digits_config), f"train.out={out}", *missing_data]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists()


def test_existing_run_needs_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "last.pt").write_bytes(b"x")
    assert main(["train", "--profile", "offline", "train.out=old"]) == 2
    assert "train.resume=true" in capsys.readouterr().err


def test_config_prints_resolved_config_and_profile_flag_wins(monkeypatch, capsys):
    monkeypatch.setenv("MEAL_LITE_PROFILE", "offline")
    assert main(["config", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "dataset: digits" in out and "epochs: 3" in out
    assert main(["config", "--profile", "imagenette"]) == 0
    assert "dataset: imagenette" in capsys.readouterr().out


def test_split_config_args(tmp_path):
    assert split_config_args([]) == (None, [])
    assert split_config_args(["a.yaml", "train.epochs=2"]) == ("a.yaml", ["train.epochs=2"])
    assert split_config_args(["train.epochs=2"]) == (None, ["train.epochs=2"])
    with pytest.raises(ConfigError):
        split_config_args(["a.yaml", "b.yaml"])


def test_eval_delegates_and_prints(monkeypatch, capsys):
    calls = {}

    def fake_evaluate_checkpoint(model_name, weights, **kwargs):
        calls.update(model_name=model_name, weights=weights, **kwargs)
        return {"top1": 80.5, "top5": 95.25, "n": 3925, "model": model_name, "dataset": "imagenette", "image_size": 224}

    fake = types.ModuleType("meal_lite.training.eval_checkpoint")
    fake.evaluate_checkpoint = fake_evaluate_checkpoint
    monkeypatch.setitem(sys.modules, "meal_lite.training.eval_checkpoint", fake)
    code = main(["eval", "--model", "resnet50", "--weights", "w.pt", "--data-root", "data",
                 "--dataset", "imagenette", "--batch-size", "8"])
    assert code == 0
    assert calls["model_name"] == "resnet50" and calls["weights"] == "w.pt" and calls["batch_size"] == 8
    out = capsys.readouterr().out
    assert "top-1 80.50%" in out and "top-5 95.25%" in out and "resnet50 on imagenette val at 224 px" in out
    # Settings not given are left to evaluate_checkpoint (the checkpoint's own run configuration).
    assert calls["image_size"] is None and calls["imagenette_size"] is None


def test_eval_requires_its_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--model", "resnet50"])
    assert info.value.code == 2


def test_demo_delegates(monkeypatch):
    calls = []
    fake = types.ModuleType("meal_lite.experiments.demo")
    fake.main = lambda argv: calls.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "meal_lite.experiments.demo", fake)
    monkeypatch.setattr(meal_lite.experiments, "demo", fake, raising=False)
    assert main(["demo", "--out", "runs/x", "--seeds", "2", "data.batch_size=8"]) == 0
    assert main(["demo"]) == 0
    assert calls == [["--out", "runs/x", "--seeds", "2", "data.batch_size=8"], []]  # each call's own arguments