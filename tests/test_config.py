"""Config loading: YAML + dotted overrides, one-sentence errors, the shipped configs all load."""

from pathlib import Path

import pytest
import yaml

from meal_lite.config.schema import (
    Config,
    TeacherConfig,
    config_from_dict,
    config_to_dict,
    format_config,
    load_config,
)
from meal_lite.errors import ConfigError
from meal_lite.config.profiles import profile_config_path

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith((".", "?")) and message.count(". ") == 0


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.01, 0.9, 0.0)
    assert (cfg.optim.milestones, cfg.optim.gamma, cfg.train.epochs) == ([100], 0.1, 180)
    assert (cfg.discriminator.lr, cfg.discriminator.mode, cfg.discriminator.lr_follows_student) == (1e-4, "official", False)
    assert cfg.loss.temperature == 1.0 and cfg.loss.objective == "meal"


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "data: {dataset: digits, image_size: 32}\nteacher_preset: digits\noptim: {lr: 1e-3}\n")
    cfg = load_config(path, ["train.epochs=3", "optim.milestones=[2, 4]", "student.name=resnet18",
                             "discriminator.lr_follows_student=true", "data.eval_batch_size=null"])
    assert cfg.data.dataset == "digits" and cfg.data.image_size == 32
    assert cfg.optim.lr == pytest.approx(1e-3)  # YAML reads "1e-3" as a string; floats accept it
    assert cfg.train.epochs == 3 and cfg.optim.milestones == [2, 4]
    assert cfg.student.name == "resnet18" and cfg.discriminator.lr_follows_student is True
    assert cfg.data.eval_batch_size is None
    assert isinstance(cfg.optim.momentum, float)


def test_int_accepted_for_float_and_teacher_shorthand(tmp_path):
    path = write(tmp_path, "optim: {lr: 1}\nteachers: [resnet18, {name: resnet34, pretrained: false}]\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.teachers == [TeacherConfig("resnet18"), TeacherConfig("resnet34", pretrained=False)]


def test_unknown_key_in_yaml_lists_valid_keys(tmp_path):
    path = write(tmp_path, "train: {epoch: 3}\nteacher_preset: digits\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "'train.epoch'" in message and str(path) in message
    assert "did you mean 'train.epochs'" in message
    for key in ("epochs", "seed", "device", "amp", "resume", "out"):
        assert key in message
    assert one_sentence(message), message


def test_unknown_key_from_command_line(tmp_path):
    path = write(tmp_path, "teacher_preset: digits\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optimm.lr=0.1"])
    message = str(info.value)
    assert "'optimm'" in message and "command line" in message and "optim" in message and "train" in message
    with pytest.raises(ConfigError, match="below 'train.epochs'"):
        load_config(path, ["train.epochs.x=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["train.epochs"])


@pytest.mark.parametrize(
    "override, key, expected, given",
    [
        ("train.epochs=three", "train.epochs", "int", "'three'"),
        ("train.epochs=2.5", "train.epochs", "int", "2.5"),
        ("train.resume=1", "train.resume", "bool", "1"),
        ("optim.lr=fast", "optim.lr", "float", "'fast'"),
        ("optim.lr=.nan", "optim.lr", "float", "nan"),
        ("optim.milestones=[a]", "optim.milestones", "list of int", "['a']"),
        ("data.image_size=big", "data.image_size", "int or null", "'big'"),
    ],
)
def test_wrong_type_names_key_type_and_value(tmp_path, override, key, expected, given):
    path = write(tmp_path, "teacher_preset: digits\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    message = str(info.value)
    assert f"'{key}'" in message and f"expects {expected}," in message and given in message
    assert one_sentence(message), message


def test_wrong_type_in_yaml(tmp_path):
    path = write(tmp_path, "data: {batch_size: '64'}\nteacher_preset: digits\n")
    with pytest.raises(ConfigError, match=r"'data.batch_size' in .*run.yaml expects int, but was given '64'"):
        load_config(path)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message and "configs/" in message
    assert one_sentence(message), message


def test_invalid_values(tmp_path):
    path = write(tmp_path, "teacher_preset: digits\n")
    with pytest.raises(ConfigError, match="'loss.objective' must be one of ce, kl, meal"):
        load_config(path, ["loss.objective=mse"])
    with pytest.raises(ConfigError, match="'optim.lr' must be > 0"):
        load_config(path, ["optim.lr=0"])
    with pytest.raises(ConfigError, match="'train.epochs' must be >= 1"):
        load_config(path, ["train.epochs=0"])
    with pytest.raises(ConfigError, match="increasing"):
        load_config(path, ["optim.milestones=[5, 2]"])
    with pytest.raises(ConfigError, match="needs teachers"):
        load_config(path, ["teacher_preset=null"])
    assert load_config(path, ["teacher_preset=null", "loss.objective=ce"]).loss.objective == "ce"


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: {epochs: [1\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_profiles_select_packaged_defaults(monkeypatch):
    monkeypatch.setenv("MEAL_LITE_PROFILE", "offline")
    offline = load_config(None)
    assert offline.profile == "offline" and offline.data.dataset == "digits" and offline.data.image_size == 32
    assert offline.student.name == "mobilenetv3_small_050" and offline.student.pretrained is False
    assert offline.teacher_preset == "digits"
    imagenette = load_config(None, profile="imagenette")  # explicit beats the environment
    assert imagenette.profile == "imagenette" and imagenette.data.dataset == "imagenette"
    assert imagenette.data.imagenette_size == "160px" and imagenette.student.name == "resnet18"
    assert imagenette.teacher_preset == "imagenette-small"
    assert profile_config_path("offline").is_file()
    with pytest.raises(ConfigError, match="Unknown profile"):
        load_config(None, profile="cloud")


SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_example_configs_load_and_say_how_to_launch_them(path):
    import timm

    from meal_lite.models.factory import teacher_specs

    cfg = load_config(path)
    # Its header shows the command that runs it, naming this very file.
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert f"train {path.relative_to(ROOT).as_posix()}" in header
    # Every model it names is a real timm model (a typo would only surface on a GPU hours later).
    for name in [cfg.student.name] + [t.name for t in teacher_specs(cfg.teachers, cfg.teacher_preset)]:
        assert timm.is_model(name.split(".")[0]), name


def test_shipped_example_configs_write_to_different_folders():
    outs = [load_config(path).train.out for path in SHIPPED]
    assert len(set(outs)) == len(outs)


def test_paper_config_has_the_papers_settings():
    cfg = load_config(ROOT / "configs" / "imagenet" / "resnet50-224.yaml")
    assert cfg.train.epochs == 180 and cfg.optim.lr == 0.01 and cfg.optim.milestones == [100]
    assert cfg.optim.gamma == 0.1 and cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 0.0
    assert cfg.teacher_preset == "paper-224" and cfg.student.name == "resnet50.ram_in1k" and cfg.student.pretrained
    assert cfg.discriminator.lr == 1e-4 and cfg.data.image_size == 224


def test_format_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, "teachers: [resnet18]\n"), ["optim.milestones=[2,4]"])
    text = format_config(cfg)
    assert "milestones: [2, 4]" in text and "teachers:" in text
    assert config_from_dict(yaml.safe_load(text)) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
