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
from meal_lite.experiments.inherited import agreement, collect_outputs, confusion_matrix, inheritance_report, mistake_similarity, reliability_curve
from meal_lite.core.objective import Objective, make_mix
from meal_lite.training.digits_teachers import DIGITS_TEACHERS, TeacherRecipe, recipe_key, teacher_config
from meal_lite.experiments.arms import arm_label, arm_objective, rename_legacy
from meal_lite.experiments.protocol import continuation_config, run_config
from meal_lite.experiments.protocol_settings import PAIRS, PROFILE_SETTINGS, ProtocolSettings
from meal_lite.core.ensemble import SharedTargets
from meal_lite.experiments.stats import interval_text, paired_differences, seeds_text, spread_text, summarize, t_interval, verdict
from meal_lite.training.trainer import Trainer


def test_t_interval_matches_hand_computation():
    # values 1..5: mean 3, sample std sqrt(2.5), t(0.975, 4) = 2.7764451051977987 (a t table's 2.776)
    low, high = t_interval(summarize([1.0, 2.0, 3.0, 4.0, 5.0]))
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert low == pytest.approx(3 - half, rel=1e-12) and high == pytest.approx(3 + half, rel=1e-12)
    assert (round(low, 4), round(high, 4)) == (1.0368, 4.9632)


def test_no_interval_and_no_verdict_from_fewer_than_five_seeds_or_zero_spread():
    four = summarize([1.0, 2.0, 3.0, 4.0])
    assert t_interval(four) is None
    assert verdict(four, "MEAL V2", "the control") == (
        "MEAL V2 is 2.50 points ahead of the control on average over 4 seeds: "
        "too few seeds to tell (4 seeds; an interval needs at least 5).")
    flat = summarize([-0.2] * 5)  # chapter 5 once printed "[-0.20, -0.20]: the interval lies below zero" from this
    assert t_interval(flat) is None and "zero spread" in interval_text(flat)
    assert verdict(flat, "MEAL V2", "the control").startswith("MEAL V2 is 0.20 points behind the control on average over 5 seeds: too few seeds to tell")
    above = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert verdict(above, "kl", "ce", digits=2) == (
        "kl is 3.00 points ahead of ce on average over 5 seeds (95% t-interval [+1.04, +4.96]): "
        "the interval lies above zero, so the lead is larger than the seed-to-seed noise.")
    assert verdict(summarize([-1.0, 1.0, 0.5, -0.5, 0.0]), "kl", "ce") == (
        "kl is level with ce on average over 5 seeds (95% t-interval [-0.98, +0.98]): "
        "the interval contains zero, so this run cannot tell the two apart.")


def test_paired_differences_per_seed():
    values = {"ce": [90.0, 91.0], "kl": [91.0, 91.5], "meal": [92.0, 90.0]}
    paired = paired_differences(values, PAIRS)
    assert list(paired) == ["meal-ce", "kl-ce", "meal-kl"]
    assert paired["meal-ce"]["values"] == [2.0, -1.0]
    assert paired["kl-ce"]["values"] == [1.0, 0.5]
    assert paired["meal-kl"]["values"] == [1.0, -1.5]
    assert paired["kl-ce"]["std"] == pytest.approx(math.sqrt(0.125))
    assert paired_differences({"ce": [1.0], "kl": []}, PAIRS) == {}  # an arm that did not run: no pair


def test_arm_names_labels_and_the_legacy_log():
    assert [arm_objective(a) for a in ("ce", "kl", "meal", "kl_T4", "kl_T0.5")] == [
        ("ce", 1.0), ("kl", 1.0), ("meal", 1.0), ("kl", 4.0), ("kl", 0.5)]
    with pytest.raises(ConfigError, match="Unknown arm 'meal_v2'"):
        arm_objective("meal_v2")
    assert arm_label("kl_T4") == "KL to the ensemble, T = 4"
    assert arm_label("meal-ce") == "MEAL V2 (KL + discriminator) minus control (CE on labels)"
    old = {"chosen_lr": {"control": 0.003, "kl_only": 0.01}, "paired_differences": {"meal_v2-control": {"values": [0.5]}},
           "records": [{"meal_v2-kl_only": 1}], "R=1-online": 2}
    assert rename_legacy(old) == {"chosen_lr": {"ce": 0.003, "kl": 0.01}, "paired_differences": {"meal-ce": {"values": [0.5]}},
                                  "records": [{"meal-kl": 1}], "R=1-online": 2}


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
    settings = ProtocolSettings(lrs={"ce": 0.003, "meal": 0.03}, distill_lr=0.01, augment_strength="strong")
    cfgs = {row: continuation_config(Config(), settings, row, seed=2) for row in ("ce", "kl", "meal")}
    assert [cfgs[r].optim.lr for r in cfgs] == [0.003, 0.01, 0.03]
    assert [cfgs[r].loss.objective for r in cfgs] == ["ce", "kl", "meal"]
    assert {cfgs[r].data.augment_strength for r in cfgs} == {"strong"}
    assert {cfgs[r].train.seed for r in cfgs} == {1002}


def test_the_offline_meal_continuation_trains_its_discriminator_at_the_students_lr():
    # The official code's per-epoch overwrite, which the offline protocol reproduces: after an epoch's start
    # the discriminator's param group holds the student's lr (the profile's 0.003), not discriminator.lr.
    cfg = continuation_config(Config(), PROFILE_SETTINGS["offline"], "meal", seed=0)
    cfg.train.device, cfg.train.amp, cfg.train.progress = "cpu", "off", False
    assert cfg.discriminator.lr != 0.003
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    trainer = Trainer(Objective.from_config(student, CountingSource(), cfg, 3), [(torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]))],
                      None, cfg=cfg, verbose=False)
    metrics = trainer.train_one_epoch(0)
    assert (metrics["lr"], metrics["disc_lr"]) == (0.003, 0.003)


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
    with pytest.raises(ConfigError, match="'data.augment_strength' must be one of mild, strong, but was given 'wild'"):
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


def test_agreement_confusions_and_mistakes_by_hand():
    ens = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1]])
    labels = torch.tensor([0, 1, 2, 0])
    student = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.2, 0.3, 0.5]])
    assert agreement(student, ens) == pytest.approx(50.0)
    m = mistake_similarity(student, labels, ens)
    assert m["mistakes"] == 2
    assert m["confusions"][0, 1] == 1 and m["confusions"][0, 2] == 1 and m["confusions"].trace() == 0
    # image 0's mistake (class 1) is the ensemble's second choice; image 3's (class 2) is its third
    assert m["on_ensemble_second"] == pytest.approx(50.0)
    assert m["similarity"][0, 1] == pytest.approx(0.25) and m["similarity"][0, 0] == 0
    # The full confusion matrix (diagonal included): rows are true classes 0, 1, 2; columns predictions.
    full = confusion_matrix(student.argmax(1).numpy(), labels.numpy(), 3)
    assert full.tolist() == [[0, 1, 1], [0, 1, 0], [0, 0, 1]]


def test_teacher_recipes_reach_their_optimiser():
    convnext = {r.name: r for r in DIGITS_TEACHERS}["convnext_atto"]
    cfg = teacher_config(convnext, 32)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 2e-3, 0.05)
    assert teacher_config(TeacherRecipe("resnet10t"), 32).optim.name == "sgd"
    assert recipe_key(TeacherRecipe("resnet10t"), 32) != recipe_key(TeacherRecipe("resnet10t", optimizer="adamw"), 32)


def test_inheritance_report_by_hand():
    # A student that picks the largest input, an ensemble that picks the largest of the inputs rotated by one
    # class; six images whose top-1, agreement and mistakes are counted by hand.
    images = torch.tensor([[3.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 3.0], [3.0, 0.0, 1.0], [0.0, 1.0, 3.0], [1.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0, 0, 0])
    data = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    student = torch.nn.Linear(3, 3)
    with torch.no_grad():
        student.weight.copy_(torch.eye(3))
        student.bias.zero_()

    class Ensemble:  # class j gets input j + 1 (mod 3): its top class is the student's minus one (mod 3)
        def targets(self, images, batch=None):
            return EnsembleOutput(probs=torch.softmax(images[:, [1, 2, 0]] * 4, dim=1))

    # student predicts 0, 1, 2, 0, 2, 1 -> right on images 0-3: 4 of 6; the ensemble predicts 2, 0, 1, 2, 1, 0:
    # right on image 5 only; the two never agree.
    plain = inheritance_report({"s": student}, Ensemble(), data)
    assert plain["s"]["top1"] == pytest.approx(100 * 4 / 6) and plain["ensemble"]["top1"] == pytest.approx(100 / 6)
    assert plain["s"]["agreement"] == 0.0 and plain["s"]["mistakes"] == 2
    reused = inheritance_report({"s": student}, Ensemble(), data, reference=collect_outputs(Ensemble(), data))
    assert plain == reused


def test_seeds_are_counted_in_words_that_agree_with_the_number():
    assert [seeds_text(n) for n in (1, 2, 5)] == ["1 seed", "2 seeds", "5 seeds"]
    assert verdict(summarize([0.5]), "kl", "ce").endswith("(1 seed; an interval needs at least 5).")


def test_a_spread_is_shown_only_where_there_is_one():
    assert spread_text({"mean": 97.2, "std": 0.0, "values": [97.2]}) == "97.20"  # one seed: no "+- 0.00"
    assert spread_text(summarize([1.0, 2.0, 3.0]), ".1f") == "2.0 +- 1.0"
    assert spread_text(summarize([-1.0, 1.0]), "+.2f", sep="±") == "+0.00 ± 1.41"


def test_a_measure_undefined_on_a_seed_gives_an_undefined_summary_and_no_interval():
    # A correlation over mistakes that never vary is NaN; the summary says so instead of crashing
    # (statistics.stdev raises AttributeError for NaN on Python 3.11) or judging it.
    nan = summarize([0.5, float("nan"), 0.25, 0.1, 0.3])
    assert math.isnan(nan["mean"]) and math.isnan(nan["std"])
    assert t_interval(nan) is None
    assert interval_text(nan) == "no interval: the value is undefined (not a finite number) on 1 seed of 5"
    assert "no interval: the value is undefined" in verdict(nan, "kl", "ce")
    assert math.isnan(summarize([float("inf")])["std"])
    # finite values are untouched: sample std of 1, 2, 3 is 1
    assert summarize([1.0, 2.0, 3.0])["std"] == 1.0
