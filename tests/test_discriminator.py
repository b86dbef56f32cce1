"""Discriminator shapes, targets, and the gradient each training mode sends to the student."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from meal_lite.core.discriminator import (
    Discriminator,
    discriminator_accuracy,
    discriminator_loss,
    discriminator_targets,
    grad_reverse,
    make_discriminator,
)
from meal_lite.errors import ConfigError, ModelError


def linear_shapes(disc):
    return [(m.in_features, m.out_features) for m in disc.modules() if isinstance(m, nn.Linear)]


def test_official_shapes_1000_125_15_2():
    assert linear_shapes(Discriminator(1000, reduction=8)) == [(1000, 125), (125, 15), (15, 2)]
    assert Discriminator(1000)(torch.randn(3, 1000)).shape == (3, 2)


def test_min_width_for_few_classes():
    assert linear_shapes(Discriminator(10, reduction=8)) == [(10, 8), (8, 8), (8, 2)]
    assert linear_shapes(Discriminator(10, reduction=8, min_width=4)) == [(10, 4), (4, 4), (4, 2)]
    assert Discriminator(10)(torch.randn(4, 10)).shape == (4, 2)


def test_final_relu_iff_official():
    official, adversarial = make_discriminator(10, "official"), make_discriminator(10, "adversarial")
    assert isinstance(official.net[-1], nn.ReLU) and official.final_relu
    assert isinstance(adversarial.net[-1], nn.Linear) and not adversarial.final_relu
    assert sum(isinstance(m, nn.ReLU) for m in official.modules()) == 3
    assert sum(isinstance(m, nn.ReLU) for m in adversarial.modules()) == 2
    # Same last layer in both, chosen so that it outputs -1 whatever its input: ReLU(-1) = 0 in official mode.
    with torch.no_grad():
        for disc in (official, adversarial):
            last = [m for m in disc.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.zero_()
            last.bias.fill_(-1.0)
    x = torch.randn(4, 10)
    assert torch.equal(official(x), torch.zeros(4, 2))
    assert torch.equal(adversarial(x), torch.full((4, 2), -1.0))
    assert linear_shapes(make_discriminator(1000, "official")) == [(1000, 125), (125, 15), (15, 2)]


def test_targets_student_then_teacher_rows():
    t = discriminator_targets(2, 3)
    assert t.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    assert t.dtype == torch.float32


def _reference(disc, s, t):
    """Plain BCE-with-logits on stacked rows, targets written out by hand: [1,0] student, [0,1] teacher."""
    s = s.clone().requires_grad_(True)
    targets = torch.tensor([[1.0, 0.0]] * s.shape[0] + [[0.0, 1.0]] * t.shape[0])
    disc.zero_grad()
    loss = F.binary_cross_entropy_with_logits(disc(torch.cat([s, t])), targets)
    loss.backward()
    return loss.detach(), s.grad.clone(), [p.grad.clone() for p in disc.parameters()]


def _run(disc, s, t, mode):
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    disc.zero_grad()
    loss = discriminator_loss(disc, s, t, mode=mode)
    loss.backward()
    return loss.detach(), s.grad.clone(), [p.grad.clone() for p in disc.parameters()], t.grad


@pytest.mark.parametrize("final_relu", [False, True])
def test_gradient_signs_official_vs_adversarial(final_relu):
    torch.manual_seed(1)
    disc = Discriminator(10, final_relu=final_relu)
    s, t = torch.randn(3, 10) * 3, torch.randn(4, 10) * 3
    ref_loss, ref_grad_s, ref_grad_d = _reference(disc, s, t)
    assert ref_grad_s.abs().sum() > 0  # the comparison below means something

    off_loss, off_grad_s, off_grad_d, off_grad_t = _run(disc, s, t, "official")
    adv_loss, adv_grad_s, adv_grad_d, adv_grad_t = _run(disc, s, t, "adversarial")

    # Same value in both modes, equal to plain BCE.
    assert off_loss.item() == pytest.approx(ref_loss.item(), abs=1e-6)
    assert adv_loss.item() == pytest.approx(ref_loss.item(), abs=1e-6)
    # Official: the student gets the gradient of the same BCE (it descends it).
    torch.testing.assert_close(off_grad_s, ref_grad_s)
    # Adversarial: exactly the opposite gradient (it ascends it).
    torch.testing.assert_close(adv_grad_s, -ref_grad_s)
    # The discriminator's own gradients do not depend on the mode.
    for a, b, c in zip(off_grad_d, adv_grad_d, ref_grad_d):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)
    # Teacher logits never receive a gradient.
    assert off_grad_t is None and adv_grad_t is None


def test_student_step_descends_in_official_and_ascends_in_adversarial():
    torch.manual_seed(2)
    disc = Discriminator(10, final_relu=False)
    s0, t = torch.randn(3, 10), torch.randn(3, 10)

    def bce(s):
        with torch.no_grad():
            return discriminator_loss(disc, s, t).item()

    for mode, sign in (("official", -1), ("adversarial", +1)):
        s = s0.clone().requires_grad_(True)
        discriminator_loss(disc, s, t, mode=mode).backward()
        stepped = s0 - 1e-2 * s.grad  # a plain gradient-descent step on the student
        assert (bce(stepped) - bce(s0)) * sign > 0, mode


def test_grad_reverse():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = grad_reverse(x, scale=0.5)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [-1.5, -2.0]


def test_accuracy_and_outputs():
    outputs = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [5.0, 1.0]])  # rows 0-1 student, 2-3 teacher
    assert discriminator_accuracy(outputs, n_student=2) == pytest.approx(0.5)  # rows 0 and 2 right
    disc = Discriminator(10)
    loss, out = discriminator_loss(disc, torch.randn(2, 10), torch.randn(3, 10), return_outputs=True)
    assert out.shape == (5, 2) and not out.requires_grad and loss.dim() == 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="mode"):
        make_discriminator(10, "alternating")
    with pytest.raises(ConfigError, match="mode"):
        discriminator_loss(Discriminator(10), torch.randn(1, 10), torch.randn(1, 10), mode="gan")
    with pytest.raises(ModelError, match="10"):
        Discriminator(10)(torch.randn(2, 7))
