"""The MEAL V2 discriminator: a three-layer MLP that tells student outputs from teacher outputs.

What the paper says: a binary classifier on the networks' final outputs, ``P_D(x) = sigmoid(f(x))``
with ``f`` three fully connected layers, trained with binary cross-entropy so that the student learns
to produce outputs the discriminator cannot tell from the teachers' -- an adversarial game.

What the official code does, and what produced the published numbers (the default here, ``"official"``):

- the layers are 1x1 convolutions used as an MLP, ``C -> C/8 -> C/64 -> 2`` (1000 -> 125 -> 15 -> 2);
  here they are ``nn.Linear`` layers with the same shapes;
- there is a ReLU after *every* layer, the last included, so the two output "logits" are never
  negative before ``BCEWithLogitsLoss`` (a quirk, kept with ``final_relu=True``);
- the loss is ``BCEWithLogitsLoss`` on two outputs per row with targets ``[1, 0]`` for student rows and
  ``[0, 1]`` for teacher rows, the student logits and the *mean teacher logits* stacked along the batch
  (the KL target, by contrast, is the mean of teacher *probabilities*: see ``ensemble.py``);
- there is no alternating update and no gradient reversal: one optimiser, one backward of
  ``kl_loss + d_loss``, so the student receives the gradient of the *same* BCE and *minimises* it along
  with the discriminator. The author describes it as a regulariser. ``mode="official"``.
- the optimiser gives the discriminator its own parameter group at lr 1e-4, but the official per-epoch
  learning-rate setter loops over *all* groups and so overwrites it with the student's lr at the start
  of every epoch. The trainer reproduces that only with ``discriminator.lr_follows_student: true``
  (default false: the discriminator starts at the 1e-4 the code intended and follows the same step
  schedule as the student, so it drops tenfold at each milestone too).

``mode="adversarial"`` is the paper's reading: the student logits pass through a gradient-reversal
layer, so one joint backward trains the discriminator to minimise the BCE while the student maximises
it (tries to fool it); the discriminator's own gradients are identical in both modes. Its final layer
has no ReLU (``make_discriminator``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meal_lite.config.choices import DISCRIMINATOR_MODES, check_choice
from meal_lite.errors import ConfigError, ModelError

__all__ = [
    "Discriminator",
    "GradientReversal",
    "grad_reverse",
    "discriminator_targets",
    "discriminator_outputs",
    "discriminator_bce",
    "discriminator_loss",
    "discriminator_correct",
    "discriminator_accuracy",
    "make_discriminator",
]



class Discriminator(nn.Module):
    """Three linear layers ``C -> max(C//r, w) -> max(C//r**2, w) -> 2`` with ReLUs
    between.

    ``final_relu=True`` adds the official code's ReLU after the last layer too.
    ``min_width`` keeps the hidden layers usable for small class counts (10 classes
    would otherwise give widths 1 and 0).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        reduction: int = 8,
        final_relu: bool = True,
        min_width: int = 8,
    ) -> None:
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ConfigError(
                f"The discriminator needs num_classes >= 2, got {num_classes!r}."
            )
        if not (isinstance(reduction, int) and reduction >= 1):
            raise ConfigError(
                "discriminator.reduction must be a positive integer, "
                f"got {reduction!r}."
            )
        if not (isinstance(min_width, int) and min_width >= 1):
            raise ConfigError(
                "The discriminator's min_width must be a positive integer, "
                f"got {min_width!r}."
            )
        self.num_classes = num_classes
        self.reduction = reduction
        self.final_relu = bool(final_relu)
        hidden1 = max(num_classes // reduction, min_width)
        hidden2 = max(num_classes // reduction**2, min_width)
        layers: list[nn.Module] = [
            nn.Linear(num_classes, hidden1),
            nn.ReLU(inplace=True),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(inplace=True),
            nn.Linear(hidden2, 2),
        ]
        if self.final_relu:
            # Official quirk: a ReLU on the output logits too, so BCE-with-logits never
            # sees a negative score. Kept in "official" mode because that is what the
            # published numbers were trained with.
            layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` class logits -> ``(N, 2)`` scores (column 0: "student", column 1:
        "teacher")."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ModelError(
                f"The discriminator expects (batch, {self.num_classes}) logits, "
                f"got {tuple(logits.shape)}; "
                "build it with the student's number of classes."
            )
        return self.net(logits)


class GradientReversal(torch.autograd.Function):
    """Identity on the forward pass; multiplies the gradient by ``-scale`` on the
    backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad_output, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, but gradients flowing back through it are multiplied by ``-scale``."""
    return GradientReversal.apply(x, scale)


def discriminator_targets(
    n_student: int, n_teacher: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """BCE targets for ``cat([student, teacher])``: ``[1, 0]`` per student row, ``[0, 1]`` per teacher row."""
    targets = torch.zeros(n_student + n_teacher, 2, device=device, dtype=dtype)
    targets[:n_student, 0] = 1.0
    targets[n_student:, 1] = 1.0
    return targets


def discriminator_outputs(
    disc: nn.Module,
    student_side: torch.Tensor,
    teacher_side: torch.Tensor,
    mode: str = "official",
) -> torch.Tensor:
    """``disc(cat([student, teacher]))``: the discriminator's ``(n_s + n_t, 2)`` scores,
    student rows first.

    ``teacher_side`` is detached: no gradient ever reaches the teachers. In
    ``"official"`` mode the student side enters as it is, so the student also descends
    the discriminator's loss (the joint regulariser). In ``"adversarial"`` mode it
    passes through :func:`grad_reverse`, so the student ascends the loss while the
    discriminator still descends it. Both sides are used in float32.
    """
    check_choice(mode, "discriminator.mode", DISCRIMINATOR_MODES)
    if (
        student_side.dim() != 2
        or teacher_side.dim() != 2
        or student_side.shape[1] != teacher_side.shape[1]
    ):
        raise ModelError(
            f"Student outputs {tuple(student_side.shape)} and teacher outputs "
            f"{tuple(teacher_side.shape)} "
            "must both be (batch, classes) with the same number of classes."
        )
    student = student_side.float()
    if mode == "adversarial":
        student = grad_reverse(student)
    return disc(torch.cat([student, teacher_side.detach().float()], dim=0))


def discriminator_bce(outputs: torch.Tensor, n_student: int) -> torch.Tensor:
    """``BCEWithLogits(outputs, targets)`` averaged over all rows and both columns (the official loss)."""
    targets = discriminator_targets(n_student, outputs.shape[0] - n_student, device=outputs.device, dtype=outputs.dtype)
    return F.binary_cross_entropy_with_logits(outputs, targets)


def discriminator_loss(
    disc: nn.Module,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mode: str = "official",
    *,
    return_outputs: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``BCEWithLogits(disc(cat([student, teacher])), targets)``, averaged over all rows and both columns.

    ``teacher_logits`` are the mean teacher logits (``EnsembleOutput.logits``); see
    :func:`discriminator_outputs` for what each mode does with the gradients. With
    ``return_outputs=True`` returns ``(loss, outputs)`` where ``outputs`` is the detached
    ``(n_s + n_t, 2)`` discriminator output, for :func:`discriminator_accuracy`.
    """
    outputs = discriminator_outputs(disc, student_logits, teacher_logits, mode)
    loss = discriminator_bce(outputs, student_logits.shape[0])
    if return_outputs:
        return loss, outputs.detach()
    return loss


@torch.no_grad()
def discriminator_correct(outputs: torch.Tensor, n_student: int) -> torch.Tensor:
    """Per row of ``disc(cat([student, teacher]))``: did the discriminator classify it right? (bool, no sync)

    Its first ``n_student`` rows are students (argmax column 0), the rest teachers (column 1). With the
    official final ReLU both scores can be 0; such ties count as "student" (argmax picks column 0).
    """
    truth = torch.ones(outputs.shape[0], dtype=torch.long, device=outputs.device)
    truth[:n_student] = 0
    return outputs.argmax(dim=1) == truth


def discriminator_accuracy(outputs: torch.Tensor, n_student: int) -> float:
    """Fraction of rows the discriminator classifies right (see :func:`discriminator_correct`)."""
    if outputs.shape[0] == 0:
        return float("nan")
    return discriminator_correct(outputs, n_student).float().mean().item()


def make_discriminator(
    num_classes: int, mode: str = "official", reduction: int = 8
) -> Discriminator:
    """The discriminator for ``mode``: the official one keeps the final ReLU, the
    adversarial one drops it."""
    check_choice(mode, "discriminator.mode", DISCRIMINATOR_MODES)
    return Discriminator(
        num_classes=num_classes, reduction=reduction, final_relu=(mode == "official")
    )
