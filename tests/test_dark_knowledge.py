"""The held-out-digit experiment: its transfer set, its stored teacher outputs, the bias chosen on
validation data only, and `meal-lite dark-knowledge` end to end on tiny settings."""

import json

import matplotlib.pyplot as plt
import pytest
import torch

from meal_lite import cli
from meal_lite.core.ensemble import StoredTeacherOutputs
from meal_lite.experiments import bias
from meal_lite.experiments.dark_knowledge import (
    METRICS,
    DarkKnowledgeSettings,
    TransferSet,
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


def test_paired_difference_has_a_student_t_interval():
    d = bias.paired_difference([3.0, 5.0, 7.0], [1.0, 1.0, 1.0])
    assert d["values"] == [2.0, 4.0, 6.0] and d["mean"] == 4.0 and d["std"] == 2.0
    half = 4.302652729911275 * 2.0 / 3**0.5  # t(0.975, 2 dof) * sd / sqrt(n)
    assert d["ci95"] == pytest.approx([4.0 - half, 4.0 + half])


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
    settings = DarkKnowledgeSettings(seeds=1, epochs=1, temperatures=(4.0,), meal_v2=False, workers=1)
    report = run_dark_knowledge(experiment, settings)
    assert len(chosen) == 2  # one choice per student (ce, kl_T4)
    assert gate.test_reads == 2 * len(experiment.datasets["test"])
    assert [report["rows"][arm]["bias"]["values"][0] for arm in ("ce", "kl_T4")] == chosen


def test_dark_knowledge_cli_writes_every_row(tiny_teachers, tmp_path, capsys):
    out = tmp_path / "dk"
    assert cli.main(["dark-knowledge", "--out", str(out), "--seeds", "2", "--epochs", "1", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    arms = ["ce", "kl_T1", "kl_T2", "kl_T4", "kl_T8", "meal_v2"]
    test_threes = DigitsDataset("test").targets.count(3)
    for arm in arms:
        assert arm in printed
        for metric in METRICS:
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
            assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    assert set(results["mass"]) == {"T1", "T2", "T4", "T8"}
    masses = [results["mass"][k]["mean"] for k in ("T1", "T2", "T4", "T8")]
    # Softening moves every target toward uniform: the T = 8 mass on the absent class is nearer 1/10
    # than the T = 1 mass (trained teachers start below 1/10 and rise; these one-epoch ones may not).
    assert all(0 < m < 1 for m in masses) and abs(masses[-1] - 0.1) <= abs(masses[0] - 0.1)
    assert sum(results["mass"]["T1"]["share"].values()) == pytest.approx(1.0)
    assert "3" not in results["mass"]["T1"]["by_digit"]
    image = plt.imread(out / "held_out_vs_T.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_worker_processes_train_exactly_what_one_process_trains(tiny_teachers):
    experiment = Experiment(base_config("offline"), verbose=False)
    settings = dict(seeds=1, epochs=1, temperatures=(2.0,), meal_v2=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count, so that float sums run in the same order
    try:
        alone = run_dark_knowledge(experiment, DarkKnowledgeSettings(**settings, workers=1))
    finally:
        torch.set_num_threads(threads)
    pooled = run_dark_knowledge(experiment, DarkKnowledgeSettings(**settings, workers=2))
    assert pooled["workers"] == 2
    assert pooled["rows"] == alone["rows"] and pooled["mass"] == alone["mass"]
