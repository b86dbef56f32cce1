"""Smaller runs: ``data.train_per_class`` / ``val_per_class`` / ``test_per_class`` and ``teacher_image_size``.

The imagenette profile is sized for two CPU cores with these settings (``bench/chapter_times.py``), so
what they keep is checked image by image here: the first images of each class, validation and test
disjoint, the test split made from the validation folder only where the dataset has none of its own, and
the teachers seeing the size they are given.
"""

from __future__ import annotations

from collections import Counter

import pytest
import timm
import torch

from fake_data import make_fake_imagenette
from meal_lite.config import load_config
from meal_lite.config.schema import TeacherConfig
from meal_lite.data.datasets import build_datasets
from meal_lite.data.digits import digits_datasets
from meal_lite.data.softlabels import teacher_config_identity
from meal_lite.data.subsets import every_nth, per_class, split_per_class
from meal_lite.errors import ConfigError
from meal_lite.experiments.baselines import baseline_path
from meal_lite.models.factory import create_teachers


def _files(dataset) -> list[str]:
    return [path for path, _ in dataset._samples]


@pytest.fixture
def imagenette(tmp_path):
    return make_fake_imagenette(tmp_path / "data", n_train=4, n_val=6)


def test_per_class_keeps_the_first_images_of_each_class_in_order():
    digits = digits_datasets(augment=False)["train"]
    cut = per_class(digits, 3)
    labels = [int(t) for t in digits.targets]
    expected = [i for i, label in enumerate(labels) if labels[: i + 1].count(label) <= 3]
    assert len(cut) == 30 and list(cut.indices) == [digits.indices[i] for i in expected]
    assert Counter(int(t) for t in cut.targets) == {k: 3 for k in range(10)}
    assert len(per_class(digits, 10_000)) == len(digits)  # a class smaller than the count keeps every image


def test_split_per_class_is_disjoint_keeps_at_most_half_and_caps_the_rest(imagenette):
    val = build_datasets(_plain(imagenette))["val"]
    first, second = split_per_class(val, 2, 3)
    assert Counter(first.targets) == {k: 2 for k in range(10)} and Counter(second.targets) == {k: 3 for k in range(10)}
    assert not set(_files(first)) & set(_files(second))
    by_class = {k: [p for p, label in val._samples if label == k] for k in range(10)}
    assert all(_files(first)[2 * k: 2 * k + 2] == by_class[k][:2] for k in range(10))  # the first two of each class
    head, rest = split_per_class(val, 100)  # at most half of each class, and every other image in the rest
    assert Counter(head.targets) == {k: 3 for k in range(10)} and len(head) + len(rest) == len(val)


def _plain(root):
    cfg = load_config(None, [f"data.root={root}", "data.download=false"], profile="imagenette")
    cfg.data.train_per_class = cfg.data.val_per_class = cfg.data.test_per_class = None
    return cfg.data


def test_build_datasets_makes_a_test_split_from_the_val_folder(imagenette):
    data = _plain(imagenette)
    whole = build_datasets(data)
    assert set(whole) == {"train", "val"}
    data.train_per_class, data.val_per_class, data.test_per_class = 2, 1, 4
    cut = build_datasets(data)
    assert set(cut) == {"train", "val", "test"}
    assert (len(cut["train"]), len(cut["val"]), len(cut["test"])) == (20, 10, 40)
    assert set(_files(cut["val"])) | set(_files(cut["test"])) <= set(_files(whole["val"]))
    assert not set(_files(cut["val"])) & set(_files(cut["test"]))
    assert set(_files(cut["train"])) <= set(_files(whole["train"]))


def test_the_digits_keep_their_own_test_split():
    cfg = load_config(None, ["data.train_per_class=5", "data.val_per_class=2", "data.test_per_class=3"], profile="offline")
    splits = build_datasets(cfg.data)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (50, 20, 30)
    assert not set(splits["val"].indices) & set(splits["test"].indices)


@pytest.mark.parametrize("override, needle", [
    ("data.train_per_class=0", "data.train_per_class"),
    ("data.val_per_class=-1", "data.val_per_class"),
    ("teacher_image_size=0", "teacher_image_size"),
    ("data.test_per_class=5", "set data.val_per_class too"),
])
def test_bad_sizes_are_one_sentence_before_anything_runs(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override], profile="offline")
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_a_class_with_one_validation_image_cannot_be_split(tmp_path):
    root = make_fake_imagenette(tmp_path / "data", n_train=1, n_val=1)
    data = _plain(root)
    data.val_per_class = 1
    with pytest.raises(ConfigError, match="at least two"):
        build_datasets(data)


def test_every_nth_is_a_selection():
    digits = digits_datasets(augment=False)["train"]
    assert list(every_nth(digits, 4).indices) == list(digits.indices[::4])


def test_teachers_see_the_teacher_image_size():
    seen = []
    specs = [TeacherConfig(name="resnet10t", pretrained=False)]
    data_config = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "input_size": (3, 40, 40)}
    for size in (None, 48):
        ensemble = create_teachers(specs, dataset="imagenette", data_config=data_config, image_size=size)
        (teacher,) = ensemble.teachers
        handle = teacher.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
        with torch.no_grad():
            ensemble(torch.zeros(2, 3, 40, 40))
        handle.remove()
    native = timm.data.resolve_model_data_config(timm.create_model("resnet10t", pretrained=False))["input_size"][-1]
    assert native != 48 and seen == [(native, native), (48, 48)]  # resnet10t's own input size, then the given one


def test_teacher_image_size_is_part_of_what_a_soft_label_cache_and_a_baseline_are_made_with():
    unset = load_config(None, profile="imagenette")
    unset.teacher_image_size = None
    set_ = load_config(None, ["teacher_image_size=96"], profile="imagenette")
    assert "image_size" not in teacher_config_identity(unset)
    assert teacher_config_identity(set_)["image_size"] == 96
    plain = load_config(None, ["loss.objective=ce"], profile="offline")
    smaller = load_config(None, ["loss.objective=ce", "data.train_per_class=5"], profile="offline")
    assert baseline_path(plain, "cpu", "/c") != baseline_path(smaller, "cpu", "/c")
