"""Distillation losses against hand-computed values and their defining identities.

Expected numbers are written out with plain ``math`` formulas (softmax done by hand), never by calling
the function under test.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from meal_lite.errors import ConfigError, ModelError
from meal_lite.core.losses import cross_entropy, entropy, kl_divergence, soft_cross_entropy, soften

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_soft_cross_entropy_hand_values_batch_mean():
    # Row 0: logits (0, ln 3) -> softmax (1/4, 3/4); target (1/2, 1/2).
    # Row 1: logits (ln 2, 0) -> softmax (2/3, 1/3); target (1, 0).
    z = torch.tensor([[0.0, LN3], [LN2, 0.0]])
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    row0 = -(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4))  # 0.836988...
    row1 = -math.log(2 / 3)  # 0.405465...
    assert soft_cross_entropy(z, p).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert soft_cross_entropy(z, p, reduction="sum").item() == pytest.approx(row0 + row1, abs=1e-6)
    per = soft_cross_entropy(z, p, reduction="none")
    assert per.shape == (2,)
    assert per.tolist() == pytest.approx([row0, row1], abs=1e-6)
    assert (row0 + row1) / 2 == pytest.approx(0.621227, abs=1e-6)


def test_kl_hand_values_and_zero_probabilities():
    # Uniform student over 2 classes, target (1/4, 3/4): KL = ln 2 - H(target).
    z = torch.tensor([[0.0, 0.0]])
    p = torch.tensor([[0.25, 0.75]])
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # 0.562335...
    assert kl_divergence(z, p).item() == pytest.approx(LN2 - h, abs=1e-6)  # 0.130812...
    assert soft_cross_entropy(z, p).item() == pytest.approx(LN2, abs=1e-6)

    # One-hot target (zeros in it): logits (0, ln 2, 0) -> softmax (1/4, 1/2, 1/4); KL = CE = -ln(1/2).
    z3 = torch.tensor([[0.0, LN2, 0.0]], requires_grad=True)
    p3 = torch.tensor([[0.0, 1.0, 0.0]])
    kl = kl_divergence(z3, p3)
    assert torch.isfinite(kl)
    assert kl.item() == pytest.approx(LN2, abs=1e-6)
    kl.backward()
    assert torch.isfinite(z3.grad).all()
    # d/dz = softmax - p = (1/4, -1/2, 1/4)
    assert z3.grad.tolist()[0] == pytest.approx([0.25, -0.5, 0.25], abs=1e-6)


def test_kl_is_zero_when_student_matches_target():
    torch.manual_seed(0)
    z = torch.randn(5, 7)
    p = torch.softmax(z, dim=1)
    assert kl_divergence(z, p).abs().item() < 1e-6
    assert kl_divergence(z, p, reduction="none").abs().max().item() < 1e-6
    # The soft CE does not vanish there: it equals the target's entropy.
    assert soft_cross_entropy(z, p).item() > 0.1


def test_soft_ce_minus_kl_is_mean_target_entropy():
    torch.manual_seed(1)
    z = torch.randn(6, 5)
    p = torch.softmax(torch.randn(6, 5) * 2, dim=1)
    p[0] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])  # a zero-entropy row with zero entries
    by_hand = []
    for row in p.tolist():
        by_hand.append(-sum(q * math.log(q) for q in row if q > 0))
    diff = soft_cross_entropy(z, p) - kl_divergence(z, p)
    assert diff.item() == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-5)
    assert entropy(p).tolist() == pytest.approx(by_hand, abs=1e-5)


def test_entropy_hand_values():
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    assert entropy(probs).tolist() == pytest.approx([math.log(4), 0.0, LN2], abs=1e-6)


def test_gradient_of_soft_ce_is_softmax_minus_target_over_n():
    torch.manual_seed(2)
    n, c = 4, 6
    z = torch.randn(n, c, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.randn(n, c, dtype=torch.float64), dim=1)
    soft_cross_entropy(z, p).backward()
    formula = (torch.softmax(z.detach().float(), dim=1) - p.float()) / n
    torch.testing.assert_close(z.grad.float(), formula, atol=1e-6, rtol=1e-5)

    # KL has the same gradient (the entropy term is constant for the student).
    z2 = z.detach().clone().requires_grad_(True)
    kl_divergence(z2, p).backward()
    torch.testing.assert_close(z2.grad, z.grad, atol=1e-6, rtol=1e-5)


def test_gradient_with_temperature():
    # d/dz [T^2 * CE(softmax(z/T), p)] / N = T * (softmax(z/T) - p) / N
    torch.manual_seed(3)
    n, c, t = 3, 4, 2.5
    z = torch.randn(n, c, requires_grad=True)
    p = torch.softmax(torch.randn(n, c), dim=1)
    soft_cross_entropy(z, p, temperature=t).backward()
    formula = t * (torch.softmax(z.detach() / t, dim=1) - p) / n
    torch.testing.assert_close(z.grad, formula, atol=1e-6, rtol=1e-5)


def test_temperature_squared_scaling_hand_value():
    # T = 2, logits (0, 2 ln 3) -> z/T = (0, ln 3) -> softmax (1/4, 3/4); target (1/2, 1/2).
    z = torch.tensor([[0.0, 2 * LN3]])
    p = torch.tensor([[0.5, 0.5]])
    ce_at_t = -(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4))
    assert soft_cross_entropy(z, p, temperature=2.0).item() == pytest.approx(4 * ce_at_t, abs=1e-5)
    kl_at_t = ce_at_t - LN2  # entropy of (1/2, 1/2) is ln 2
    assert kl_divergence(z, p, temperature=2.0).item() == pytest.approx(4 * kl_at_t, abs=1e-5)
    # T = 1 is the plain (official) loss, no scaling.
    assert soft_cross_entropy(z, p, temperature=1.0).item() == pytest.approx(
        -(0.5 * math.log(1 / 10) + 0.5 * math.log(9 / 10)), abs=1e-5
    )


def test_soften_hand_values():
    z = torch.tensor([[0.0, 2 * LN2]])  # softmax at T=2: (1/3, 2/3)
    assert soften(z, 2.0).tolist()[0] == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    p = torch.tensor([[0.2, 0.8, 0.0]])  # sqrt, renormalised: (1/3, 2/3, 0)
    assert soften(p, 2.0, is_probs=True).tolist()[0] == pytest.approx([1 / 3, 2 / 3, 0.0], abs=1e-6)


def test_losses_are_float32_under_low_precision_inputs():
    z = torch.randn(3, 4).bfloat16()
    p = torch.softmax(torch.randn(3, 4), dim=1)
    assert soft_cross_entropy(z, p).dtype == torch.float32
    assert kl_divergence(z, p).dtype == torch.float32


def test_cross_entropy_alias():
    z = torch.tensor([[0.0, LN3]])
    assert cross_entropy(z, torch.tensor([1])).item() == pytest.approx(-math.log(3 / 4), abs=1e-6)
    assert torch.equal(cross_entropy(z, torch.tensor([0])), F.cross_entropy(z, torch.tensor([0])))


def test_bad_arguments_raise_clear_errors():
    z, p = torch.zeros(2, 3), torch.full((2, 3), 1 / 3)
    with pytest.raises(ConfigError, match="reduction"):
        soft_cross_entropy(z, p, reduction="avg")
    with pytest.raises(ConfigError, match="temperature"):
        kl_divergence(z, p, temperature=0.0)
    with pytest.raises(ModelError, match="class count"):
        soft_cross_entropy(z, torch.full((2, 4), 0.25))
