"""The evidence protocol's parts: levers, shared teacher targets, t-intervals and the inheritance measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meal_lite.config.schema import Config
from meal_lite.data.digits import DigitsDataset
from meal_lite.core.ensemble import EnsembleOutput
from meal_lite.errors import ConfigError
from meal_lite.experiments.inherited import agreement, mistake_similarity, reliability_curve, target_entropy
from meal_lite.core.objective import Objective, make_mix
from meal_lite.training.digits_teachers import DIGITS_TEACHERS, TeacherRecipe, recipe_key, teacher_config
from meal_lite.experiments.protocol import (
    PROFILE_SETTINGS,
    ProtocolSettings,
    continuation_config,
    paired_differences,
    run_config,
)
from meal_lite.core.ensemble import SharedTargets
from meal_lite.experiments.stats import t_interval


def test_t_interval_matches_hand_computation():
    # values 1, 2, 3: mean 2, sample std 1, t(0.975, 2) = 4.302652729911275
    low, high = t_interval({"mean": 2.0, "std": 1.0, "values": [1.0, 2.0, 3.0]})
    half = 4.302652729911275 / math.sqrt(3)
    assert low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    with pytest.raises(ValueError):
        t_interval({"mean": 1.0, "std": 0.0, "values": [1.0]})


def test_paired_differences_per_seed():
    values = {"control": [90.0, 91.0], "kl_only": [91.0, 91.5], "meal_v2": [92.0, 90.0]}
    paired = paired_differences(values)
    assert paired["meal_v2-control"]["values"] == [2.0, -1.0]
    assert paired["kl_only-control"]["values"] == [1.0, 0.5]
    assert paired["meal_v2-kl_only"]["values"] == [1.0, -1.5]
    assert paired["kl_only-control"]["std"] == pytest.approx(math.sqrt(0.125))


def test_run_config_levers_land_in_their_sections():
    cfg = run_config(
        Config(), objective="kl", epochs=8, lr=0.003, seed=5, temperature=4.0, augment_strength="strong",
        mixup_alpha=0.4, disc_lr_follows_student=True,
    )
    assert (cfg.loss.temperature, cfg.data.mixup_alpha, cfg.data.augment_strength) == (4.0, 0.4, "strong")
    assert cfg.discriminator.lr_follows_student is True
    assert cfg.optim.milestones == [6] and cfg.train.seed == 5 and cfg.optim.lr == 0.003
    with pytest.raises(ConfigError, match="Unknown protocol lever 'warp'"):
        run_config(Config(), objective="kl", epochs=1, lr=0.1, seed=0, warp=2)


def test_continuation_config_uses_each_arms_lr_and_shared_levers():
    settings = ProtocolSettings(lrs={"control": 0.003, "meal_v2": 0.03}, distill_lr=0.01, augment_strength="strong")
    cfgs = {row: continuation_config(Config(), settings, row, seed=2) for row in ("control", "kl_only", "meal_v2")}
    assert [cfgs[r].optim.lr for r in cfgs] == [0.003, 0.01, 0.03]
    assert [cfgs[r].loss.objective for r in cfgs] == ["ce", "kl", "meal"]
    assert {cfgs[r].data.augment_strength for r in cfgs} == {"strong"}
    assert {cfgs[r].train.seed for r in cfgs} == {1002}


def test_profile_settings_reproduce_the_official_discriminator_lr():
    assert PROFILE_SETTINGS["offline"].disc_lr_follows_student is True
    assert PROFILE_SETTINGS["offline"].seeds >= 5


class CountingSource:
    def __init__(self):
        self.calls = 0

    def targets(self, images, batch=None):
        self.calls += 1
        probs = torch.softmax(images.flatten(1)[:, :3], dim=1)
        return EnsembleOutput(probs=probs, logits=probs.log())


def test_shared_targets_run_the_teachers_once_per_distinct_batch():
    source = CountingSource()
    shared = SharedTargets(source)
    a, b = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    first = shared.targets(a)
    again = shared.targets(a.clone())
    other = shared.targets(b)
    assert source.calls == 2 and shared.hits == 1
    assert torch.equal(first.probs, again.probs) and not torch.equal(first.probs, other.probs)
    shared.clear()
    shared.targets(a)
    assert source.calls == 3


def test_strong_augmentation_moves_pixels_further_than_mild():
    torch.manual_seed(0)
    mild = DigitsDataset("train", augment=True, strength="mild")
    strong = DigitsDataset("train", augment=True, strength="strong")
    plain = DigitsDataset("train", augment=False)
    dist = {name: np.mean([(ds[i][0] - plain[i][0]).abs().mean().item() for i in range(64)]) for name, ds in
            (("mild", mild), ("strong", strong))}
    assert dist["strong"] > dist["mild"] > 0
    with pytest.raises(ConfigError, match="augment_strength 'wild'"):
        DigitsDataset("train", augment=True, strength="wild")


def test_mixup_mixes_images_and_labels_alike():
    mix = make_mix(0.4, 0.0, 1.0, num_classes=3)
    np.random.seed(0)
    images = torch.stack([torch.full((1, 2, 2), float(i)) for i in range(4)])
    labels = torch.tensor([0, 1, 2, 0])
    mixed, soft = mix(images.clone(), labels)
    lam = soft[0, 0].item()  # image 0 (class 0) is mixed with image 3 (class 0) -> soft label (1, 0, 0)
    lam1 = soft[1, 1].item()  # image 1 (class 1) with image 2 (class 2)
    assert soft[0, 0] == pytest.approx(1.0)
    assert mixed[1, 0, 0, 0].item() == pytest.approx(lam1 * 1 + (1 - lam1) * 2)
    assert soft[1].sum().item() == pytest.approx(1.0) and 0 < lam <= 1
    assert make_mix(0.0, 0.0, 1.0, 3) is None
    with pytest.raises(ConfigError):
        make_mix(-1.0, 0.0, 1.0, 3)
    with pytest.raises(ConfigError, match="set one of them to 0"):
        make_mix(0.4, 0.5, 1.0, 3)


def test_objective_mixes_only_in_training_mode():
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    source = CountingSource()
    objective = Objective(student, "kl", source, mix=make_mix(1.0, 0.0, 1.0, 3))
    images, labels = torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
    objective.train()
    np.random.seed(1)
    trained = objective(images, labels)["loss"]
    objective.eval()
    plain = objective(images, labels)["loss"]
    unmixed = Objective(student, "kl", source)(images, labels)["loss"]
    assert torch.allclose(plain, unmixed) and not torch.allclose(trained, unmixed)


def test_calibration_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    out = reliability_curve(probs, labels, bins=2)
    # bin [0.5, 1]: all four (confidences .9 .6 .7 .55, correct 1 0 1 0) -> |0.5 - 0.6875| = 0.1875
    assert out["count"].tolist() == [0, 4]
    assert out["ece"] == pytest.approx(0.1875)
    perfect = reliability_curve(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    assert perfect["ece"] == pytest.approx(0.0)


def test_agreement_entropy_and_mistakes_by_hand():
    ens = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1]])
    labels = torch.tensor([0, 1, 2, 0])
    student = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.2, 0.3, 0.5]])
    assert agreement(student, ens) == pytest.approx(50.0)
    ent = target_entropy(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert ent[0].item() == pytest.approx(0.0) and ent[1].item() == pytest.approx(math.log(2))
    m = mistake_similarity(student, labels, ens)
    assert m["mistakes"] == 2
    assert m["confusions"][0, 1] == 1 and m["confusions"][0, 2] == 1 and m["confusions"].trace() == 0
    # image 0's mistake (class 1) is the ensemble's second choice; image 3's (class 2) is its third
    assert m["on_ensemble_second"] == pytest.approx(50.0)
    assert m["similarity"][0, 1] == pytest.approx(0.25) and m["similarity"][0, 0] == 0


def test_teacher_recipes_reach_their_optimiser():
    convnext = {r.name: r for r in DIGITS_TEACHERS}["convnext_atto"]
    cfg = teacher_config(convnext, 32)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 2e-3, 0.05)
    assert teacher_config(TeacherRecipe("resnet10t"), 32).optim.name == "sgd"
    assert recipe_key(TeacherRecipe("resnet10t"), 32) != recipe_key(TeacherRecipe("resnet10t", optimizer="adamw"), 32)


def test_inheritance_report_with_precomputed_reference_is_the_same():
    from meal_lite.experiments.inherited import collect_outputs, inheritance_report

    torch.manual_seed(0)
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    student = torch.nn.Linear(4, 3)

    class Ensemble:
        def targets(self, images, batch=None):
            return EnsembleOutput(probs=torch.softmax(images[:, :3] * 2, dim=1))

    ensemble = Ensemble()
    plain = inheritance_report({"s": student}, ensemble, data)
    reused = inheritance_report({"s": student}, ensemble, data, reference=collect_outputs(ensemble, data))
    assert plain == reused
    assert plain["s"]["agreement"] == pytest.approx(agreement(collect_outputs(student, data)[0], collect_outputs(ensemble, data)[0]))
