"""Models by timm name (meal_lite.models.factory): class subsets, local weights, presets, per-teacher inputs, errors."""

from __future__ import annotations

import time
import types

import pytest
import timm
import torch

from meal_lite.models import factory as M
from meal_lite.config.schema import Config, DataConfig, ModelConfig, TeacherConfig
from meal_lite.data.digits import DIGITS_DATA_CONFIG
from meal_lite.data.imagefolders import IMAGENETTE_IMAGENET_INDICES
from meal_lite.core.ensemble import InputAdapter, TeacherEnsemble
from meal_lite.errors import ConfigError, ModelError

# ImageNette's classes in ImageNet-1k (tench ... parachute): the ranks of their wnids among the sorted
# 1000 ILSVRC-2012 wnids.
IMAGENETTE_IN1K = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def _save(model: torch.nn.Module, path, prefix: str = "", nest: str | None = None) -> str:
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({nest: state} if nest else state, path)
    return str(path)


def _cfg(**sections) -> Config:
    cfg = Config()
    for key, value in sections.items():
        setattr(cfg, key, value)
    return cfg


# ------------------------------------------------------------------------------------------------
# Class subset: ImageNet teachers on ImageNette


def test_teacher_from_local_file_keeps_the_ten_imagenette_logits(tmp_path):
    torch.manual_seed(0)
    full = timm.create_model("resnet10t", num_classes=1000).eval()  # random weights, 1000 classes
    path = _save(full, tmp_path / "resnet10t.pth", prefix="module.")  # DataParallel-style keys
    teacher, data_config = M.create_teacher(TeacherConfig("resnet10t", weights=path), dataset="imagenette")
    assert isinstance(teacher, M.ClassSubset) and teacher.num_classes == 10 and not teacher.training
    assert tuple(IMAGENETTE_IMAGENET_INDICES) == tuple(IMAGENETTE_IN1K)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = full(x)[:, IMAGENETTE_IN1K]
        got = teacher(x)
    assert got.shape == (3, 10)
    assert torch.equal(got, expected)
    assert data_config == timm.data.resolve_model_data_config(full)


def test_class_subset_exposes_inner_config_and_validates():
    inner = timm.create_model("test_resnet")
    sub = M.ClassSubset(inner, [3, 1, 2])
    assert sub.num_classes == 3 and sub.pretrained_cfg["mean"] == inner.pretrained_cfg["mean"]
    assert M.model_data_config(sub) == M.model_data_config(inner)
    assert "indices" not in sub.state_dict()  # the inner model's weights only
    with pytest.raises(ModelError, match=r"\[0, 1000\)"):
        M.ClassSubset(inner, [1000])


def test_adapt_to_dataset_rules():
    model = timm.create_model("test_resnet", num_classes=10)
    assert M.adapt_to_dataset(model, "imagenette", 10) is model
    assert isinstance(M.adapt_to_dataset(timm.create_model("test_resnet"), "imagenette", 10), M.ClassSubset)
    with pytest.raises(ModelError, match="predicts 1000 classes but the student predicts 10 \\(digits\\)"):
        M.adapt_to_dataset(timm.create_model("test_resnet"), "digits", 10, name="test_resnet")


# ------------------------------------------------------------------------------------------------
# Per-teacher preprocessing


def test_each_teacher_gets_its_own_normalisation_and_size():
    resnet, resnet_cfg = M.create_teacher(TeacherConfig("resnet10t", pretrained=False), dataset="imagenette")
    inception, inception_cfg = M.create_teacher(TeacherConfig("test_resnet", pretrained=False), dataset="imagenette")
    assert resnet_cfg["mean"] == (0.485, 0.456, 0.406)
    assert inception_cfg["mean"] == (0.5, 0.5, 0.5) and inception_cfg["std"] == (0.5, 0.5, 0.5)
    assert resnet_cfg["input_size"] != inception_cfg["input_size"]

    data_cfg = {**resnet_cfg, "input_size": (3, 32, 32)}
    raw = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1), torch.tensor(data_cfg["std"]).view(1, 3, 1, 1)
    batch = (raw - mean) / std
    to_inception = InputAdapter.from_configs(data_cfg, inception_cfg)
    to_resnet = InputAdapter.from_configs(data_cfg, resnet_cfg)
    a, b = to_inception(batch), to_resnet(batch)
    assert a.shape[-2:] == inception_cfg["input_size"][1:] and b.shape[-2:] == resnet_cfg["input_size"][1:]
    # Same size for both, then compare: the inception-style teacher sees (raw - 0.5) / 0.5.
    same_size = InputAdapter(data_cfg["mean"], data_cfg["std"], (0.5,) * 3, (0.5,) * 3)
    assert torch.allclose(same_size(batch), (raw - 0.5) / 0.5, atol=1e-5)
    assert not torch.allclose(same_size(batch), batch, atol=1e-3)


def test_create_teachers_builds_adapted_frozen_ensemble(tmp_path):
    w1 = _save(timm.create_model("resnet10t"), tmp_path / "a.pth")
    w2 = _save(timm.create_model("test_resnet"), tmp_path / "b.pth", nest="state_dict")
    cfg = _cfg(
        data=DataConfig(dataset="imagenette", image_size=32),
        teachers=[TeacherConfig("resnet10t", pretrained=False, weights=w1), TeacherConfig("test_resnet", weights=w2)],
    )
    data_config = {**DIGITS_DATA_CONFIG, "input_size": (3, 32, 32), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    ensemble = M.create_teachers(cfg.teachers, dataset="imagenette", num_classes=10, data_config=data_config)
    assert isinstance(ensemble, TeacherEnsemble) and ensemble.num_classes == 10
    assert ensemble.teacher_names == ["resnet10t", "test_resnet"]
    assert [c["mean"] for c in ensemble.teacher_data_configs] == [(0.485, 0.456, 0.406), (0.5, 0.5, 0.5)]
    assert not ensemble.adapters[1].same_normalisation
    out = ensemble(torch.randn(2, 3, 32, 32))
    assert out.probs.shape == (2, 10) and torch.allclose(out.probs.sum(1), torch.ones(2))


# ------------------------------------------------------------------------------------------------
# Presets


def test_presets():
    assert M.TEACHER_PRESETS["paper-224"] == ("senet154.gluon_in1k", "resnet152s.gluon_in1k")
    assert M.TEACHER_PRESETS["paper-380"] == ("tf_efficientnet_b4.ns_jft_in1k", "tf_efficientnet_b4.aa_in1k")
    small = M.TEACHER_PRESETS["imagenette-small"]
    assert 2 <= len(small) <= 3
    for name in (n for names in M.TEACHER_PRESETS.values() for n in names):
        assert timm.is_model(name.split(".")[0]) and name in timm.list_pretrained(name), name
    cfg = _cfg(teacher_preset="paper-224")
    assert [t.name for t in M.teacher_specs(cfg.teachers, cfg.teacher_preset)] == list(M.TEACHER_PRESETS["paper-224"])
    cfg.teachers = [TeacherConfig("resnet10t")]
    assert [t.name for t in M.teacher_specs(cfg.teachers, cfg.teacher_preset)] == ["resnet10t"]  # an explicit list wins
    with pytest.raises(ConfigError, match="did you mean imagenette-small"):
        M.teacher_specs([], "imagenette-smal")


def test_digits_preset_delegates_to_the_local_teachers(monkeypatch):
    from meal_lite.training import pipeline as run

    calls = {}

    def digits_ensemble(image_size=32, **kwargs):
        calls.update(image_size=image_size, **kwargs)
        return "ensemble"

    monkeypatch.setattr(run, "digits_ensemble", digits_ensemble)
    cfg = _cfg(data=DataConfig(dataset="digits"), teacher_preset="digits")
    assert run.build_teachers(cfg, 10, {**DIGITS_DATA_CONFIG, "input_size": (1, 24, 24)}) == "ensemble"
    assert calls["image_size"] == 24
    with pytest.raises(ConfigError, match="digits teachers predict the 10 digits"):
        run.build_teachers(_cfg(data=DataConfig(dataset="imagenette"), teacher_preset="digits"), 10, DIGITS_DATA_CONFIG)


# ------------------------------------------------------------------------------------------------
# Students


def test_create_student_for_each_dataset(tmp_path):
    cfg = _cfg(data=DataConfig(dataset="digits", image_size=16), student=ModelConfig("test_resnet", pretrained=False))
    model, data_config = M.create_student(cfg.student, cfg.data, 10)
    assert model.num_classes == 10 and data_config["input_size"] == (1, 16, 16)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    cfg = _cfg(data=DataConfig(dataset="imagenette", image_size=48), student=ModelConfig("test_resnet", pretrained=False))
    model, data_config = M.create_student(cfg.student, cfg.data, 10)
    assert data_config["input_size"] == (3, 48, 48) and data_config["mean"] == (0.5, 0.5, 0.5)
    cfg.student.num_classes = 1000
    with pytest.raises(ConfigError, match="student.num_classes=1000 but the imagenette data has 10"):
        M.create_student(cfg.student, cfg.data, 10)


def test_student_starts_from_local_imagenet_weights_with_new_head(tmp_path):
    torch.manual_seed(0)
    imagenet = timm.create_model("test_resnet")
    path = _save(imagenet, tmp_path / "w.pth", prefix="module.")
    student = M.create_model("test_resnet", num_classes=10, weights=path)
    assert student.num_classes == 10
    assert torch.equal(student.conv1[0].weight, imagenet.conv1[0].weight)  # body loaded, head re-initialised
    one_channel = M.create_model("test_resnet", num_classes=10, weights=path, in_chans=1)
    assert one_channel.conv1[0].weight.shape[1] == 1


# ------------------------------------------------------------------------------------------------
# Local weights: files, nested checkpoints, URLs, safety


def test_weights_formats(tmp_path):
    torch.manual_seed(1)
    model = timm.create_model("test_resnet", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    expected = model.eval()(x)
    for i, (prefix, nest) in enumerate([("", None), ("module.", None), ("module.", "state_dict"), ("", "student")]):
        path = _save(model, tmp_path / f"w{i}.pt", prefix=prefix, nest=nest)
        loaded = M.create_model("test_resnet", weights=path).eval()  # class count read from the file
        assert loaded.num_classes == 10 and torch.equal(loaded(x), expected), (prefix, nest)
        assert "state_dict" not in loaded.pretrained_cfg
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    assert torch.equal(M.create_model("test_resnet", weights=tmp_path / "w.safetensors").eval()(x), expected)


def test_weights_from_url_use_torch_hub_cache(tmp_path, monkeypatch):
    model = timm.create_model("test_resnet", num_classes=10)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = "https://example.invalid/releases/MEALV2_test.pth"
    with pytest.raises(ModelError, match="Cannot download weights from https://example.invalid.*local path"):
        M.create_model("test_resnet", weights=url)  # not cached, HF_HUB_OFFLINE set: fails at once
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    _save(model, tmp_path / "hub" / "checkpoints" / "MEALV2_test.pth", prefix="module.")
    loaded = M.create_model("test_resnet", weights=url)  # real load_state_dict_from_url, from its cache
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_weights_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        M.create_model("test_resnet", weights=tmp_path / "missing.pth")
    other = _save(timm.create_model("resnet10t"), tmp_path / "r10.pth")
    with pytest.raises(ModelError, match=r"do not fit timm model 'test_resnet' \(\d+ missing, \d+ unexpected"):
        M.create_model("test_resnet", weights=other)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read safely"):
        M.create_model("test_resnet", weights=garbage)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_weights.pth")
    with pytest.raises(ModelError, match=r"No model weights found in '.*no_weights.pth' \(top level: epoch, lr\)"):
        M.create_model("test_resnet", weights=tmp_path / "no_weights.pth")
    # weights_only=True: a file that needs arbitrary code to unpickle is refused.
    torch.save({"fc.weight": torch.zeros(1), "hook": types.SimpleNamespace(a=1)}, tmp_path / "code.pth")
    with pytest.raises(ModelError, match="cannot be read safely"):
        M.create_model("test_resnet", weights=tmp_path / "code.pth")


def test_teacher_with_other_class_count_is_refused(tmp_path):
    path = _save(timm.create_model("test_resnet", num_classes=7), tmp_path / "t7.pth")
    cfg = _cfg(data=DataConfig(dataset="imagenette"), teachers=[TeacherConfig("test_resnet", weights=path)])
    with pytest.raises(ModelError, match="Teacher 'test_resnet' predicts 7 classes but the student predicts 10"):
        M.create_teachers(cfg.teachers, dataset="imagenette", num_classes=10, data_config=M.model_data_config(timm.create_model("test_resnet")))


# ------------------------------------------------------------------------------------------------
# Names and hub weights


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ModelError) as err:
        M.create_model("resnet5O")
    msg = str(err.value)
    assert "Unknown timm model 'resnet5O'" in msg and "resnet50" in msg and "timm.list_models()" in msg
    with pytest.raises(ModelError, match=r"'resnet50' has no weights tagged 'a9_in1k' \(did you mean resnet50\.\w+"):
        M.create_model("resnet50.a9_in1k")


def test_pretrained_offline_fails_fast_with_model_name():
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        M.create_model("resnet10t.c3_in1k", pretrained=True, role="teacher")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "'resnet10t.c3_in1k'" in msg and "HF_HUB_OFFLINE" in msg and "teachers[i].weights=" in msg


def test_pretrained_unreachable_network_fails_fast(monkeypatch):
    import huggingface_hub.constants
    import socket

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        M.create_model("test_resnet", pretrained=True, role="student")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "'test_resnet'" in msg and "huggingface.co cannot be reached" in msg and "student.weights=" in msg
    assert "MEAL_LITE_PROFILE=offline" in msg


def test_pretrained_weights_found_in_hf_cache_load_offline(tmp_path, monkeypatch):
    import huggingface_hub

    torch.manual_seed(2)
    reference = timm.create_model("test_resnet")
    cached = _save(reference, tmp_path / "pytorch_model.bin")
    seen = []

    def fake_cache(repo_id, filename, **kwargs):
        seen.append((repo_id, filename))
        return cached if filename == "pytorch_model.bin" else None

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", fake_cache)
    model = M.create_model("test_resnet", pretrained=True)  # HF_HUB_OFFLINE=1: only the cache can work
    assert torch.equal(model.fc.weight, reference.fc.weight)
    assert seen[0] == ("timm/test_resnet.r160_in1k", "model.safetensors")


def test_model_without_pretrained_weights():
    assert not timm.list_pretrained("cspresnet50d*")
    with pytest.raises(ModelError, match="timm has no pretrained weights for 'cspresnet50d'; set pretrained=false"):
        M.create_model("cspresnet50d", pretrained=True)
