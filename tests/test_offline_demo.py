"""The offline profile's teacher cache and the `meal-lite demo` protocol, on tiny settings."""

import json

import pytest
import torch

from meal_lite import offline
from meal_lite.offline import TeacherRecipe

TINY = (TeacherRecipe("resnet10t", epochs=1), TeacherRecipe("regnetx_002", epochs=1))


@pytest.fixture
def tiny_teachers(tmp_path, monkeypatch):
    """Two one-epoch digits teachers in a private cache, so nothing touches data/cache."""
    monkeypatch.setenv(offline.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(offline, "DIGITS_TEACHERS", TINY)
    return tmp_path / "cache"


def test_teacher_cache_trains_once_then_reuses(tiny_teachers, monkeypatch):
    first = offline.digits_teachers(verbose=False)
    files = sorted(p.name for p in tiny_teachers.iterdir())
    assert len(files) == 2 and all(f.startswith("digits-") and f.endswith(".pt") for f in files)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached teacher was trained again")

    monkeypatch.setattr(offline, "train_digits_model", no_training)
    second = offline.digits_teachers(verbose=False)
    for a, b in zip(first.teachers, second.teachers):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    # Teachers come back frozen and named.
    assert second.teacher_names == ["resnet10t", "regnetx_002"]
    assert not any(p.requires_grad for p in second.parameters())


def test_cache_key_follows_the_recipe():
    a = offline.recipe_key(TeacherRecipe("resnet10t", epochs=1), 32)
    assert a == offline.recipe_key(TeacherRecipe("resnet10t", epochs=1), 32)
    assert a != offline.recipe_key(TeacherRecipe("resnet10t", epochs=2), 32)
    assert a != offline.recipe_key(TeacherRecipe("resnet10t", epochs=1), 24)
    assert a != offline.recipe_key(TeacherRecipe("regnetx_002", epochs=1), 32)


def test_cache_dir_is_the_project_data_cache_from_any_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv(offline.CACHE_ENV_VAR, raising=False)
    (tmp_path / "meal_lite").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    assert offline.default_cache_dir() == tmp_path / "data" / "cache"


def test_demo_end_to_end_writes_results(tiny_teachers, tmp_path, capsys):
    from meal_lite import demo

    out = tmp_path / "demo"
    demo.main(["--profile", "offline", "--out", str(out), "--seeds", "2", "--baseline-epochs", "1", "--distill-epochs", "1"])
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    rows = ["teacher:resnet10t", "teacher:regnetx_002", "ensemble", "baseline", "control", "kl_only", "meal_v2"]
    for row in rows:
        assert set(results[row]) == {"mean", "std", "values"}
        assert all(0.0 <= v <= 100.0 for v in results[row]["values"])
        assert row in printed
    for row in ("baseline", "control", "kl_only", "meal_v2"):
        values = results[row]["values"]
        assert len(values) == 2
        assert results[row]["mean"] == pytest.approx(sum(values) / 2)
    paired = results["details"]["paired_differences"]["meal_v2-control"]["values"]
    expected = [a - b for a, b in zip(results["meal_v2"]["values"], results["control"]["values"])]
    assert paired == pytest.approx(expected)
    assert results["wall_seconds"] > 0
    assert (out / "curves.png").stat().st_size > 1000


def test_teacher_classifiers_never_put_a_teacher_in_train_mode(tiny_teachers):
    from meal_lite.demo import teacher_classifiers
    from meal_lite.trainer import evaluate

    ensemble = offline.digits_teachers(verbose=False)
    wrapped = teacher_classifiers(ensemble)
    batch = [(torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,)))]
    for model in wrapped.values():
        model.train()
        evaluate(model, batch, "cpu")
    assert not any(m.training for t in ensemble.teachers for m in t.modules())
