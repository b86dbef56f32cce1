"""Distillation losses: soft cross-entropy to the ensemble's probabilities, and its KL twin.

MEAL V2 trains the student on one signal only: the mean of the teachers' probabilities ``p_e``. Its
loss is the *soft cross-entropy*

    L = -1/N * sum_i sum_c p_e(x_i)_c * log softmax(z_s(x_i))_c

which the paper calls a KL loss. The true KL divergence ``KL(p_e || p_s)`` is the same quantity minus
the entropy of ``p_e``; that entropy does not depend on the student, so both losses have the same
gradient, ``(softmax(z_s) - p_e) / N`` with respect to the student logits. The soft cross-entropy is
what the official code optimises (and what its training logs print); the KL is zero exactly when the
student matches the target, which makes it the easier number to read. Both are here, with the same
signature.

Temperature: both losses take ``temperature=T`` and return ``T**2`` times the loss on ``z_s / T``
(Hinton et al.'s scaling, which keeps gradient magnitudes comparable across temperatures). MEAL V2
uses ``T = 1``, where this is exactly the official loss. The *target* must already be at temperature
``T``: softening the teachers is the objective's job, in one place (:func:`meal_lite.core.objective.soft_targets`,
which uses :func:`soften` for targets that are probabilities).

The losses are computed in float32 whatever the input dtype, so they stay accurate under bf16/fp16
autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from meal_lite.errors import ConfigError, ModelError

__all__ = ["soft_cross_entropy", "kl_divergence", "entropy", "soften", "cross_entropy", "check_temperature", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float if it is positive; else the one-sentence error every caller gives."""
    if not temperature > 0:
        raise ConfigError(f"The distillation temperature must be positive, got {temperature!r}; use e.g. 1.0.")
    return float(temperature)


def _check(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"Unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}.")
    check_temperature(temperature)
    if student_logits.dim() != 2 or student_logits.shape != target_probs.shape:
        raise ModelError(
            f"Student logits of shape {tuple(student_logits.shape)} do not match target probabilities of "
            f"shape {tuple(target_probs.shape)}; both must be (batch, classes) with the same class count."
        )


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def soften(logits_or_probs: torch.Tensor, temperature: float = 1.0, *, is_probs: bool = False) -> torch.Tensor:
    """Probabilities at temperature ``T``: ``softmax(z / T)``.

    With ``is_probs=True`` the input is taken as probabilities ``p`` (at temperature 1) and the result
    is ``p**(1/T)`` renormalised, which equals ``softmax(log p / T)``; zero probabilities stay zero.
    """
    check_temperature(temperature)
    x = logits_or_probs.float()
    if is_probs:
        # log(0) = -inf, and softmax maps -inf to an exact 0: a class the target rules out stays ruled out.
        x = torch.log(x)
    return torch.softmax(x / temperature, dim=-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of ``probs``: ``-sum_c p_c log p_c``, shape ``(N,)``.

    Uses ``xlogy`` so that ``0 * log 0`` counts as 0.
    """
    p = probs.float()
    return -torch.special.xlogy(p, p).sum(dim=-1)


def soft_cross_entropy(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """MEAL V2's distillation loss: cross-entropy of the student against soft target
    probabilities.

    ``-1/N sum_i sum_c p_ic log softmax(z_s / T)_ic``, times ``T**2``. With ``T = 1``
    and ``reduction="mean"`` this is the official loss (a per-sample dot product,
    averaged over the batch). ``reduction="none"`` returns the ``(N,)`` per-sample
    losses (already scaled by ``T**2``).
    """
    _check(student_logits, target_probs, temperature, reduction)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    # Multiply, not xlogy: a zero target probability contributes exactly 0 even where
    # log p_s is very negative, and log_softmax never returns -inf for finite logits.
    per_sample = -(target_probs.float() * log_p_s).sum(dim=-1) * (temperature**2)
    return _reduce(per_sample, reduction)


def kl_divergence(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """True ``KL(p_target || softmax(z_s / T))``, batch-averaged, times ``T**2``.

    Equals :func:`soft_cross_entropy` minus the mean entropy of the target (times
    ``T**2``), so it has the same gradient w.r.t. the student, and it is 0 when the
    student's distribution equals the target. Target entries equal to 0 contribute 0
    (``xlogy``), never NaN.
    """
    _check(student_logits, target_probs, temperature, reduction)
    p = target_probs.float()
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    per_sample = (torch.special.xlogy(p, p) - p * log_p_s).sum(dim=-1) * (
        temperature**2
    )
    return _reduce(per_sample, reduction)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy on hard labels (the baseline / control objective, and evaluation loss)."""
    return F.cross_entropy(logits.float(), labels)
