"""The held-out-digit experiment: its transfer set, its stored teacher outputs, the bias chosen on
validation data only, and `meal-lite dark-knowledge` end to end on tiny settings."""

import json
import math

import matplotlib.pyplot as plt
import pytest
import torch

from meal_lite import cli
from meal_lite.core.ensemble import StoredTeacherOutputs
from meal_lite.experiments import bias
from meal_lite.experiments.dark_knowledge import (
    HELD_OUT_METRICS,
    DarkKnowledgeSettings,
    PrecomputedViews,
    TransferSet,
    held_out_mass,
    precompute_views,
    run_dark_knowledge,
)
from meal_lite.data.digits import DigitsDataset
from meal_lite.errors import ConfigError
from meal_lite.data.loaders import SeededViews
from meal_lite.experiments.protocol import Experiment, base_config
from meal_lite.training.digits_teachers import digits_ensemble

@pytest.mark.parametrize("held_out", [3, 7])
def test_the_transfer_set_holds_every_training_image_but_the_held_out_class(held_out):
    train = DigitsDataset("train", augment=True)
    transfer = TransferSet(train, held_out)
    labels = [transfer[i][1] for i in range(len(transfer))]  # every item, as the loader would read it
    assert held_out not in labels
    assert len(transfer) == len(train) - train.targets.count(held_out)
    assert sorted(set(labels)) == [d for d in range(10) if d != held_out]
    assert labels == transfer.targets


def test_a_held_out_class_that_does_not_exist_is_refused():
    with pytest.raises(ConfigError, match="--held-out 10"):
        TransferSet(DigitsDataset("train"), 10)


def test_choose_bias_on_a_hand_computed_example():
    # Class 2 held out: a bias b on logit 2 wins or loses each row at a threshold, worked out by hand.
    logits = torch.tensor([
        [2.0, 0.0, 1.0],   # label 2: right when b > 1.0
        [0.0, 4.0, 1.0],   # label 2: right when b > 3.0
        [3.0, 0.0, 1.0],   # label 0: right while b < 2.0
        [0.0, 1.5, 1.0],   # label 1: right while b < 0.5
    ])
    labels = torch.tensor([2, 2, 0, 1])
    # b = 0: rows 3, 4 right (50%); b = 0.75: row 3 only (25%); b = 1.5: rows 1, 3 (50%); b = 2.5: row 1
    # (25%); b = 3.5: rows 1, 2 (50%). Best 50%, first reached at b = 0 (ties go to the smallest bias).
    assert bias.choose_bias(logits, labels, 2, [0.0, 0.75, 1.5, 2.5, 3.5]) == 0.0
    # Without the zero: 1.5 and 3.5 tie at 50%; the smaller wins.
    assert bias.choose_bias(logits, labels, 2, [3.5, 0.75, 1.5, 2.5]) == 1.5
    # A fifth image, a 2 right when b > 0.2: b = 0 -> 2/5, 0.75 -> 2/5, 1.5 -> 3/5, 2.5 -> 2/5, 3.5 -> 3/5.
    logits5 = torch.cat([logits, torch.tensor([[1.2, 0.0, 1.0]])])
    labels5 = torch.cat([labels, torch.tensor([2])])
    assert bias.choose_bias(logits5, labels5, 2, [0.0, 0.75, 1.5, 2.5, 3.5]) == 1.5
    assert bias.accuracies(logits5, labels5, 2, 1.5) == pytest.approx((100 * 2 / 3, 60.0))
    assert bias.accuracies(logits5, labels5, 2, 0.0) == pytest.approx((0.0, 40.0))


def test_held_out_mass_by_hand():
    # 2 views (a 0 and a 1), 2 epochs, 2 teachers, 3 classes; class 2 is the held-out one. Logits are logs
    # of whole numbers, so softmax(z) is a ratio of them and softmax(z / 2) a ratio of their square roots.
    log = lambda *xs: [math.log(x) for x in xs]  # noqa: E731
    epoch0 = [[log(6, 3, 1), log(2, 1, 1)],   # view 0 (a 0): P(2) = 1/10 and 1/4 at T = 1
              [log(1, 8, 1), log(1, 1, 2)]]   # view 1 (a 1): P(2) = 1/10 and 2/4
    epoch1 = [[[0.0] * 3] * 2] * 2            # all-equal logits: P(2) = 1/3 at any T
    data = PrecomputedViews([None, None], torch.zeros(2, 2, 1), torch.tensor([0, 1]), torch.tensor([epoch0, epoch1]))
    mass = held_out_mass(data, 2, [1.0, 2.0])
    r2, r3, r6, r8 = (math.sqrt(x) for x in (2, 3, 6, 8))
    by_hand = {  # per view: the mean over the two teachers of their P(class 2)
        "T1": {"0": ((1 / 10 + 1 / 4) / 2 + 1 / 3) / 2, "1": ((1 / 10 + 2 / 4) / 2 + 1 / 3) / 2},
        "T2": {"0": ((1 / (r6 + r3 + 1) + 1 / (r2 + 2)) / 2 + 1 / 3) / 2, "1": ((1 / (r8 + 2) + r2 / (r2 + 2)) / 2 + 1 / 3) / 2},
    }
    assert set(mass) == {"T1", "T2"}
    for key, digits in by_hand.items():
        total = sum(digits.values())  # one view of each digit per epoch: the total mass is the sum of the two means
        assert mass[key]["temperature"] == float(key[1:])
        assert mass[key]["by_digit"] == pytest.approx(digits, rel=1e-6)
        assert mass[key]["mean"] == pytest.approx(total / 2, rel=1e-6)
        assert mass[key]["share"] == pytest.approx({d: v / total for d, v in digits.items()}, rel=1e-6)


def test_a_temperature_that_is_not_positive_is_refused_before_training():
    with pytest.raises(ConfigError, match="temperature must be positive, got -1.0"):
        DarkKnowledgeSettings(temperatures=(1.0, -1.0))
    with pytest.raises(ConfigError, match="No temperature"):
        DarkKnowledgeSettings(temperatures=())


def test_stored_views_and_teacher_outputs_are_what_the_ensemble_gives(tiny_teachers):
    teachers = digits_ensemble(verbose=False)
    transfer = TransferSet(DigitsDataset("train", augment=True), 3)
    data = precompute_views(transfer, teachers, epochs=2, view_seed=5)
    seeded = SeededViews(transfer, 5)
    for epoch in (0, 1):
        for i in (0, 17, len(transfer) - 1):
            image, label, _ = data.view(i, epoch)
            assert torch.equal(image, seeded.view(i, epoch)[0]) and int(label) == transfer.targets[i]
    data.set_epoch(1)
    batch = [data[i] for i in range(8)]
    images = torch.stack([b[0] for b in batch])
    stored = StoredTeacherOutputs().targets(images, (images, None, torch.stack([b[2] for b in batch])))
    direct = teachers(images)
    for a, b in ((stored.probs, direct.probs), (stored.logits, direct.logits), (stored.teacher_logits, direct.teacher_logits)):
        assert torch.allclose(a, b, atol=1e-5)


class Gate:
    """Open only between a bias choice and the next read of the validation split."""

    def __init__(self):
        self.open = False
        self.test_reads = 0


class GuardedSplit(torch.utils.data.Dataset):
    def __init__(self, dataset, gate, role):
        self.dataset, self.gate, self.role = dataset, gate, role
        self.targets = dataset.targets

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if self.role == "val":
            self.gate.open = False  # a new student's choice starts: the test split is closed again
        elif not self.gate.open:
            raise AssertionError("the test split was read before the bias was chosen")
        else:
            self.gate.test_reads += 1
        return self.dataset[i]


def test_the_bias_is_chosen_without_reading_the_test_split(tiny_teachers, monkeypatch):
    experiment = Experiment(base_config("offline"), verbose=False)
    gate = Gate()
    experiment.datasets["val"] = GuardedSplit(experiment.datasets["val"], gate, "val")
    experiment.datasets["test"] = GuardedSplit(experiment.datasets["test"], gate, "test")
    chosen = []
    real_choice = bias.choose_bias

    def choice_then_open(*args, **kwargs):
        assert not gate.open
        value = real_choice(*args, **kwargs)
        chosen.append(value)
        gate.open = True
        return value

    monkeypatch.setattr(bias, "choose_bias", choice_then_open)
    # The guard works: reading the test split before any choice raises.
    with pytest.raises(AssertionError, match="before the bias was chosen"):
        experiment.datasets["test"][0]
    settings = DarkKnowledgeSettings(seeds=1, epochs=1, temperatures=(4.0,), meal=False, workers=1)
    report = run_dark_knowledge(experiment, settings)
    assert len(chosen) == 2  # one choice per student (ce, kl_T4)
    assert gate.test_reads == 2 * len(experiment.datasets["test"])
    assert [report["rows"][arm]["bias"]["values"][0] for arm in ("ce", "kl_T4")] == chosen


def test_dark_knowledge_cli_writes_every_row(tiny_teachers, tmp_path, capsys):
    out = tmp_path / "dk"
    # Two temperatures (four arms, not the default six) keep the run short; every row asked for is checked.
    argv = ["dark-knowledge", "--out", str(out), "--seeds", "2", "--epochs", "1", "--workers", "1", "--temperatures", "1", "8"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    arms = ["ce", "kl_T1", "kl_T8", "meal"]
    assert not {"kl_T2", "kl_T4"} & set(results)  # only the arms asked for
    test_threes = DigitsDataset("test").targets.count(3)
    for arm in arms:
        assert arm in printed
        for metric in HELD_OUT_METRICS:
            row = results[arm][metric]
            assert set(row) == {"mean", "std", "values"} and len(row["values"]) == 2
            assert row["mean"] == pytest.approx(sum(row["values"]) / 2)
            if metric.startswith("held_out"):  # a share of the test 3s: a whole number of them
                for v in row["values"]:
                    assert v * test_threes / 100 == pytest.approx(round(v * test_threes / 100), abs=1e-6)
    # Trained on labels without a single 3, the CE student never predicts a 3 before the bias.
    assert results["ce"]["held_out_acc"]["values"] == [0.0, 0.0]
    for arm in arms[1:]:
        for metric in ("held_out_acc_bias", "overall_acc_bias"):
            diff = results["paired_differences"][f"{arm}-ce"][metric]
            expected = [a - b for a, b in zip(results[arm][metric]["values"], results["ce"][metric]["values"])]
            assert diff["values"] == pytest.approx(expected)
            assert diff["ci95"] is None  # two seeds: no interval (meal_lite.experiments.stats' rule)
    assert printed.count("too few seeds to tell (2 seeds; an interval needs at least 5)") == 2 * (len(arms) - 1)
    details = results["details"]
    assert details["command"] == f"meal-lite dark-knowledge --out {out} --seeds 2 --epochs 1 --workers 1 --temperatures 1 8"
    assert details["date"][:2] == "20" and details["hardware"]["cpus"] >= 1
    # The mass on class 3, recomputed here from the one epoch's views: mean over teachers of softmax(z / T)[3].
    teachers = digits_ensemble(verbose=False)
    transfer = TransferSet(Experiment(base_config("offline"), verbose=False, teachers=False).datasets["train"], 3)
    views = SeededViews(transfer, DarkKnowledgeSettings().view_seed)
    images = torch.stack([views.view(i, 0)[0] for i in range(len(transfer))])
    labels = torch.tensor(transfer.targets)
    with torch.no_grad():
        logits = [torch.cat(z) for z in zip(*(teachers.teacher_outputs(images[s : s + 256]) for s in range(0, len(images), 256)))]
    assert set(results["mass"]) == {"T1", "T8"}
    for t in (1, 8):
        p3 = torch.stack([torch.softmax(z.double() / t, dim=1)[:, 3] for z in logits]).mean(0)
        mass = results["mass"][f"T{t}"]
        assert mass["mean"] == pytest.approx(p3.mean().item(), rel=1e-4)
        assert sorted(mass["by_digit"]) == [str(d) for d in range(10) if d != 3]
        for d, value in mass["by_digit"].items():
            assert value == pytest.approx(p3[labels == int(d)].mean().item(), rel=1e-4)
            assert mass["share"][d] == pytest.approx(p3[labels == int(d)].sum().item() / p3.sum().item(), rel=1e-4)
    image = plt.imread(out / "held_out_vs_T.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_worker_processes_train_exactly_what_one_process_trains(tiny_teachers):
    experiment = Experiment(base_config("offline"), verbose=False)
    settings = dict(seeds=1, epochs=1, temperatures=(2.0,), meal=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count, so that float sums run in the same order
    try:
        alone = run_dark_knowledge(experiment, DarkKnowledgeSettings(**settings, workers=1))
    finally:
        torch.set_num_threads(threads)
    pooled = run_dark_knowledge(experiment, DarkKnowledgeSettings(**settings, workers=2))
    assert pooled["workers"] == 2
    assert pooled["rows"] == alone["rows"] and pooled["mass"] == alone["mass"]
