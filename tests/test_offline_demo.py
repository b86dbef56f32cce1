"""The offline profile's teacher cache and the `meal-lite demo` protocol, on tiny settings."""

import json
import time

import matplotlib.pyplot as plt
import pytest
import torch

from meal_lite.training import digits_teachers as offline
from meal_lite.training import assemble as run
from meal_lite.data.digits import DigitsDataset
from meal_lite.training.evaluate import evaluate
from meal_lite.training.digits_teachers import TeacherRecipe  # the cache-key test builds its own recipes


def test_teacher_cache_trains_once_then_reuses(empty_tiny_teachers, monkeypatch):
    first = offline.digits_ensemble(verbose=False)
    files = sorted(p.name for p in empty_tiny_teachers.iterdir())
    assert len(files) == 2 and all(f.startswith("digits-") and f.endswith(".pt") for f in files)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached teacher was trained again")

    monkeypatch.setattr(run, "train_student", no_training)
    second = offline.digits_ensemble(verbose=False)
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
    from meal_lite.experiments import demo

    out = tmp_path / "demo"
    started = time.perf_counter()
    demo.main(["--profile", "offline", "--out", str(out), "--seeds", "2", "--baseline-epochs", "1", "--distill-epochs", "1", "--workers", "1",
               "train.limit_batches=4"])  # a few steps per epoch: the test is about the protocol's shape
    elapsed = time.perf_counter() - started
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    rows = ["teacher:resnet10t", "teacher:regnetx_002", "ensemble", "baseline", "ce", "kl", "meal"]
    test_images = len(DigitsDataset("test"))
    for row in rows:
        assert set(results[row]) == {"mean", "std", "values"}
        for value in results[row]["values"]:  # an accuracy on the 500 test images: a whole number of them
            assert value * test_images / 100 == pytest.approx(round(value * test_images / 100), abs=1e-6)
        assert row in printed
    # The teacher rows: each cached teacher's top-1 on the test split, counted here image by image.
    test = DigitsDataset("test")
    images, labels = torch.stack([test[i][0] for i in range(len(test))]), torch.tensor(test.targets)
    ensemble = offline.digits_ensemble(verbose=False)
    with torch.no_grad():
        for name, logits in zip(ensemble.teacher_names, ensemble.teacher_outputs(images)):
            right = int((logits.argmax(1) == labels).sum())
            assert results[f"teacher:{name}"]["values"] == [pytest.approx(100 * right / len(test))]
    assert len(results["baseline"]["values"]) == 1  # one shared baseline, as the paper boosts one student
    for row in ("ce", "kl", "meal"):
        values = results[row]["values"]
        assert len(values) == 2
        assert results[row]["mean"] == pytest.approx(sum(values) / 2)
    for key in ("meal-ce", "kl-ce", "meal-kl"):
        assert set(results["details"]["paired_differences"][key]) == {"mean", "std", "values"}
        assert f"paired {key}" in printed
    assert printed.count("too few seeds to tell (2 seeds; an interval needs at least 5)") == 3  # no interval from 2 seeds
    assert "95% t-interval" not in printed
    inherited = results["details"]["inherited"]
    for row in ("ce", "kl", "meal"):
        assert inherited[row]["top1"]["values"] == pytest.approx(results[row]["values"])
        assert all(0 <= v <= 100 for v in inherited[row]["agreement"]["values"])
    paired = results["details"]["paired_differences"]["meal-ce"]["values"]
    expected = [a - b for a, b in zip(results["meal"]["values"], results["ce"]["values"])]
    assert paired == pytest.approx(expected)
    assert 0 < results["wall_seconds"] == results["details"]["wall_seconds"] <= elapsed
    assert results["details"]["command"] == ("meal-lite demo --profile offline --out " + str(out) + " --seeds 2 --baseline-epochs 1"
                                             " --distill-epochs 1 --workers 1 train.limit_batches=4")
    assert results["details"]["hardware"]["workers"] == 1
    image = plt.imread(out / "curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0  # a drawn figure


def test_ensemble_members_never_put_a_teacher_in_train_mode(tiny_teachers):
    ensemble = offline.digits_ensemble(verbose=False)
    wrapped = ensemble.members()
    batch = [(torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,)))]
    for model in wrapped.values():
        model.train()
        evaluate(model, batch, "cpu")
    assert not any(m.training for t in ensemble.teachers for m in t.modules())


def test_teachers_trained_from_an_empty_cache_never_move(empty_tiny_teachers):
    """The freezing bug chapter 2 once printed: fresh teachers kept their last .grad and an optimiser moved them."""
    assert not empty_tiny_teachers.exists()  # an empty cache: the teachers are trained in this call
    ensemble = offline.digits_ensemble(verbose=False)
    assert all(p.grad is None and not p.requires_grad for p in ensemble.parameters())
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10))
    model = torch.nn.ModuleDict({"student": student, "ensemble": ensemble})
    model.train()
    before = {k: v.clone() for k, v in ensemble.state_dict().items()}
    images = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        target_before = ensemble(images).probs
    # Every optimiser family torch has, with momentum / weight decay where they apply: weight decay or a
    # momentum buffer would move a parameter even with a zero gradient, but only if it had a .grad at all.
    optimizers = [
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda params: torch.optim.Adam(params, lr=0.1, weight_decay=0.1),
        lambda params: torch.optim.AdamW(params, lr=0.1),
        lambda params: torch.optim.RMSprop(params, lr=0.1, momentum=0.9),
        lambda params: torch.optim.Adagrad(params, lr=0.1),
    ]
    student_before = student[1].weight.detach().clone()
    for make in optimizers:
        optimizer = make(model.parameters())  # teachers included on purpose
        for _ in range(2):
            loss = -(ensemble(images).probs * torch.log_softmax(student(images), -1)).sum(1).mean()
            loss.backward()  # no zero_grad first: exactly the chapter's step, where a stale .grad would be applied
            optimizer.step()
        assert all(p.grad is None for p in ensemble.parameters()), type(optimizer).__name__
        assert all(torch.equal(before[k], v) for k, v in ensemble.state_dict().items()), type(optimizer).__name__
        assert torch.equal(ensemble(images).probs, target_before), type(optimizer).__name__
    assert not torch.equal(student_before, student[1].weight)  # the optimisers did step: the student moved
