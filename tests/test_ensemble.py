"""TeacherEnsemble averaging, freezing, class-count checks, and InputAdapter arithmetic."""

import math

import pytest
import torch
from torch import nn

from meal_lite.core.ensemble import EnsembleOutput, InputAdapter, TeacherEnsemble
from meal_lite.errors import ModelError
from meal_lite.core.losses import soft_cross_entropy

LN8 = math.log(8.0)


def fixed_teacher(logits, in_features=4):
    """A teacher that returns the same logits for every input (zero weights, bias = logits)."""
    lin = nn.Linear(in_features, len(logits))
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor(logits))
    return lin


def bn_teacher(seed, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, classes))


def test_mean_of_softmaxes_not_softmax_of_mean_logits():
    # Teacher A: logits (0, 0, 0) -> (1/3, 1/3, 1/3). Teacher B: (ln 8, 0, 0) -> (8/10, 1/10, 1/10).
    ens = TeacherEnsemble([fixed_teacher([0.0, 0.0, 0.0]), fixed_teacher([LN8, 0.0, 0.0])])
    out = ens(torch.randn(2, 4))
    assert isinstance(out, EnsembleOutput)
    mean_probs = [(1 / 3 + 8 / 10) / 2, (1 / 3 + 1 / 10) / 2, (1 / 3 + 1 / 10) / 2]  # (17/30, 13/60, 13/60)
    for row in out.probs.tolist():
        assert row == pytest.approx(mean_probs, abs=1e-6)
    # Softmax of the mean logits (ln 8 / 2, 0, 0) = (2 sqrt 2, 1, 1) / (2 sqrt 2 + 2): a different answer.
    wrong = [2 * math.sqrt(2) / (2 * math.sqrt(2) + 2), 1 / (2 * math.sqrt(2) + 2), 1 / (2 * math.sqrt(2) + 2)]
    assert abs(mean_probs[0] - wrong[0]) > 0.01
    assert out.probs[0, 0].item() != pytest.approx(wrong[0], abs=1e-3)
    # Mean logits are averaged as logits.
    for row in out.logits.tolist():
        assert row == pytest.approx([LN8 / 2, 0.0, 0.0], abs=1e-6)
    assert out.teacher_logits.shape == (2, 2, 3)
    assert out.teacher_logits[1, 0].tolist() == pytest.approx([LN8, 0.0, 0.0], abs=1e-6)
    assert out.probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_averaging_random_teachers_matches_formula():
    torch.manual_seed(0)
    teachers = [nn.Linear(4, 5) for _ in range(3)]
    x = torch.randn(6, 4)
    out = TeacherEnsemble(teachers)(x)
    with torch.no_grad():
        zs = [t(x) for t in teachers]
    torch.testing.assert_close(out.probs, sum(torch.softmax(z, 1) for z in zs) / 3)
    torch.testing.assert_close(out.logits, sum(zs) / 3)
    assert not out.probs.requires_grad and not out.logits.requires_grad


def test_a_freshly_trained_teacher_never_moves_under_any_optimiser():
    """A teacher trained a moment ago still holds its last .grad; joining an ensemble must drop it."""
    torch.manual_seed(3)
    teacher = bn_teacher(3)
    teacher(torch.randn(8, 4)).sum().backward()  # the last step of its own training left gradients behind
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in teacher.parameters())
    ens = TeacherEnsemble([teacher])
    assert all(p.grad is None for p in ens.parameters())
    before = {k: v.clone() for k, v in ens.state_dict().items()}
    for optimizer in (torch.optim.SGD(ens.parameters(), lr=1.0, momentum=0.9, weight_decay=0.1),
                      torch.optim.AdamW(ens.parameters(), lr=1.0)):
        optimizer.step()
    for key, value in ens.state_dict().items():
        assert torch.equal(before[key], value), key


def test_targets_equals_forward():
    torch.manual_seed(1)
    ens = TeacherEnsemble([bn_teacher(1), bn_teacher(2)])
    x = torch.randn(5, 4)
    a = ens(x)
    b = ens.targets(x, (x, torch.zeros(5, dtype=torch.long)))
    c = ens.targets(x)
    for other in (b, c):
        assert torch.equal(a.probs, other.probs)
        assert torch.equal(a.logits, other.logits)
        assert torch.equal(a.teacher_logits, other.teacher_logits)


def _all_teacher_modules(ens):
    return [m for t in ens.teachers for m in t.modules()]


def test_teachers_frozen_and_eval_after_train_calls():
    ens = TeacherEnsemble([bn_teacher(1), bn_teacher(2)])
    assert all(not p.requires_grad for p in ens.teachers.parameters())
    assert all(not m.training for m in _all_teacher_modules(ens))

    ens.train()
    assert ens.training
    assert all(not m.training for m in _all_teacher_modules(ens))

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = nn.Linear(4, 3)
            self.wrapper = nn.Sequential(ens)  # nested one level deeper on purpose

    parent = Parent()
    parent.eval()
    parent.train()
    assert parent.student.training and ens.training
    assert all(not m.training for m in _all_teacher_modules(ens))
    # Dropout really is off: two passes agree exactly.
    x = torch.randn(3, 4)
    assert torch.equal(ens(x).probs, ens(x).probs)


def test_optimiser_step_leaves_teachers_bit_identical():
    torch.manual_seed(3)
    ens = TeacherEnsemble([bn_teacher(1), bn_teacher(2)])

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = nn.Linear(4, 3)
            self.ensemble = ens

    parent = Parent()
    before = {k: v.clone() for k, v in ens.state_dict().items()}
    student_before = parent.student.weight.detach().clone()
    # Deliberately careless: ALL parameters (teachers included) go into the optimiser, with weight decay.
    opt = torch.optim.SGD(parent.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    parent.train()
    for _ in range(3):
        x = torch.randn(8, 4)
        target = parent.ensemble.targets(x, (x,))
        loss = soft_cross_entropy(parent.student(x), target.probs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = ens.state_dict()
    assert any("running_mean" in k for k in after)
    assert set(before) == set(after)
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"teacher tensor {k} changed"
    assert all(p.grad is None for p in ens.parameters())
    assert not torch.equal(student_before, parent.student.weight)  # the student did learn


def test_class_count_mismatch_declared_raises_at_construction():
    a, b = nn.Linear(4, 3), nn.Linear(4, 5)
    a.num_classes, b.num_classes = 3, 5
    with pytest.raises(ModelError, match="different numbers of classes"):
        TeacherEnsemble([a, b])


def test_class_count_mismatch_found_at_forward():
    ens = TeacherEnsemble([nn.Linear(4, 3), nn.Linear(4, 5)])
    with pytest.raises(ModelError, match="different shapes"):
        ens(torch.randn(2, 4))


def test_num_classes_property():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    a.num_classes = b.num_classes = 3
    assert TeacherEnsemble([a, b]).num_classes == 3

    undeclared = TeacherEnsemble([nn.Linear(4, 6)])
    with pytest.raises(ModelError, match="num_classes"):
        undeclared.num_classes
    undeclared(torch.randn(1, 4))
    assert undeclared.num_classes == 6


def test_empty_or_misaligned_arguments():
    with pytest.raises(ModelError, match="at least one teacher"):
        TeacherEnsemble([])
    with pytest.raises(ModelError, match="one per teacher"):
        TeacherEnsemble([nn.Linear(4, 3)], input_adapters=[None, None])


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def test_input_adapter_identity_when_configs_equal():
    ad = InputAdapter(IMAGENET_MEAN, IMAGENET_STD, IMAGENET_MEAN, IMAGENET_STD)
    assert ad.is_identity
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(ad(x), x)
    cfg = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": (3, 5, 5)}
    assert InputAdapter.from_configs(cfg, dict(cfg)).is_identity


def test_input_adapter_affine_when_mean_std_differ():
    ad = InputAdapter(HALF, HALF, IMAGENET_MEAN, IMAGENET_STD)
    assert not ad.is_identity
    torch.manual_seed(0)
    raw = torch.rand(2, 3, 4, 4)
    m_src, s_src = torch.tensor(HALF).view(1, 3, 1, 1), torch.tensor(HALF).view(1, 3, 1, 1)
    m_dst, s_dst = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (raw - m_src) / s_src
    torch.testing.assert_close(ad(x), (raw - m_dst) / s_dst, atol=1e-5, rtol=1e-5)
    # One pixel by hand: raw 1.0 in every channel -> x = 1.0 -> ((1 - mean_c) / std_c).
    y = ad(torch.ones(1, 3, 1, 1)).flatten().tolist()
    assert y == pytest.approx([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], abs=1e-5)
    assert y[0] == pytest.approx(2.248908, abs=1e-5)


def test_input_adapter_resizes_when_input_size_differs():
    data_cfg = {"mean": HALF, "std": HALF, "input_size": (3, 8, 8)}
    teacher_cfg = {"mean": HALF, "std": HALF, "input_size": (3, 12, 12)}
    ad = InputAdapter.from_configs(data_cfg, teacher_cfg)
    assert ad.dst_size == (12, 12) and not ad.is_identity
    out = ad(torch.full((2, 3, 8, 8), 0.7))
    assert out.shape == (2, 3, 12, 12)
    torch.testing.assert_close(out, torch.full((2, 3, 12, 12), 0.7))  # a flat image stays flat
    # Same size in both configs -> no resize at all.
    assert InputAdapter.from_configs(data_cfg, dict(data_cfg, input_size=(3, 8, 8))).dst_size is None
    # An explicit size equal to the batch's leaves it alone.
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(InputAdapter(HALF, HALF, HALF, HALF, dst_size=6)(x), x)


def test_input_adapter_channel_mismatch_raises():
    with pytest.raises(ModelError, match="channel"):
        InputAdapter((0.5,), (0.5,), IMAGENET_MEAN, IMAGENET_STD)


def test_ensemble_applies_each_teachers_adapter():
    class SpatialMean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))  # (N, 3) "logits"

    ad = InputAdapter(HALF, HALF, IMAGENET_MEAN, IMAGENET_STD, dst_size=(4, 4))
    ens = TeacherEnsemble([SpatialMean(), SpatialMean()], input_adapters=[ad, None])
    x = torch.randn(2, 3, 6, 6)
    first, second = ens.teacher_outputs(x)
    torch.testing.assert_close(first, ad(x).mean(dim=(2, 3)))
    torch.testing.assert_close(second, x.mean(dim=(2, 3)))
