"""What one training step computes: the objective, from a batch to a loss and its named parts.

MEAL V2's step, as the official code takes it:

1. the teacher source gives targets for the batch (``source.targets(images, batch)``): the mean of
   the teachers' softmax ``probs`` and, online, the mean of their ``logits``;
2. the student's logits give ``kl``, the soft cross-entropy to ``probs`` softened at temperature ``T``;
3. with the discriminator (``kind="meal"``) the student's outputs and the teachers' are stacked and
   classified, giving ``d_loss`` (binary cross-entropy);
4. ``loss = kl + weight * d_loss``: ONE backward and ONE optimiser step for student and discriminator.

:class:`Objective` owns all of that - the teacher source, the temperature (the only place in meal-lite
where one is applied), soft cross-entropy or true KL, the discriminator and its mode - and returns a
dict: ``loss`` plus its named parts, for logging. The trainer calls it and never asks which kind it is.
``kind="ce"`` (plain cross-entropy on labels, the baseline and the control of an experiment) and
``kind="kl"`` (the ensemble without the discriminator) are the same object with parts left out.

Everything trainable (the student and the discriminator) sits in one module, :attr:`Objective.trainable`,
so a multi-GPU run wraps it in DDP once (:meth:`Objective.prepare_distributed`); the frozen teachers stay
outside it.

**Teacher side of the discriminator.** The official online code shows it the *mean teacher logits*
against the student's logits (``disc_input="logits"``). A cached soft-label source stores no logits,
only the ensemble's probabilities; FKD's MEAL V2 mode then shows the discriminator *probabilities*, the
student's softmax against the stored ensemble probabilities (``disc_input="probs"``).

**Input mixing** (``mix``, off in MEAL V2): timm's Mixup/CutMix applied to the training batch *before*
the teachers see it, so teachers and student are matched on the very same mixed image ("function
matching", Beyer et al. 2022); the labels of ``kind="ce"`` are mixed the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.data import Mixup
from torch import nn

from meal_lite.core.discriminator import discriminator_bce, discriminator_correct, discriminator_outputs, make_discriminator
from meal_lite.core.ensemble import EnsembleOutput
from meal_lite.config.choices import DISCRIMINATOR_INPUTS, DISTILLATION_LOSSES, OBJECTIVES, check_choice
from meal_lite.errors import ConfigError, ModelError
from meal_lite.core.losses import check_temperature, cross_entropy, kl_divergence, soft_cross_entropy, soften

__all__ = [
    "LOSS_FUNCTIONS",
    "METRICS",
    "StudentAndDiscriminator",
    "Objective",
    "soft_targets",
    "make_mix",
]

#: loss.distillation -> the loss function (the names are :data:`meal_lite.config.choices.DISTILLATION_LOSSES`)
LOSS_FUNCTIONS = {"soft_ce": soft_cross_entropy, "kl": kl_divergence}
#: The parts an objective may report, and the key each gets in a run's metrics (absent parts: None).
METRICS = {"loss": "train_loss", "kl": "train_kl", "d_loss": "train_d_loss", "disc_acc": "disc_acc"}


class StudentAndDiscriminator(nn.Module):
    """The trainable part of a step: the student, and the discriminator fed from the student's output.

    One module, so that DDP wraps (and all-reduces) both with one wrapper and one backward.
    ``forward(images, teacher_side)`` returns ``(student_logits, discriminator_outputs or None)``.
    """

    def __init__(
        self,
        student: nn.Module,
        discriminator: nn.Module | None = None,
        mode: str = "official",
        disc_input: str = "logits",
    ) -> None:
        super().__init__()
        self.student = student
        self.discriminator = discriminator
        self.mode = mode
        self.disc_input = disc_input

    def forward(self, images: torch.Tensor, teacher_side: torch.Tensor | None = None):
        logits = self.student(images)
        if self.discriminator is None or teacher_side is None:
            return logits, None
        student_side = logits.float()
        if self.disc_input == "probs":
            student_side = torch.softmax(student_side, dim=-1)
        # The discriminator is tiny; it runs in float32 even inside a mixed-precision step.
        with torch.autocast(images.device.type, enabled=False):
            outputs = discriminator_outputs(self.discriminator, student_side, teacher_side, self.mode)
        return logits, outputs


class Objective(nn.Module):
    """The loss of one step and its named parts; see the module docstring.

    Args:
        student: the model being trained.
        kind: ``ce`` (labels), ``kl`` (ensemble) or ``meal`` (ensemble + discriminator).
        teacher_source: any object with ``targets(images, batch) -> EnsembleOutput`` (needed unless
            ``kind="ce"``): the online :class:`~meal_lite.core.ensemble.TeacherEnsemble`, or a cached source.
        temperature: softens the target and the student alike (MEAL V2: 1), with Hinton's ``T**2`` scaling.
        distillation: ``soft_ce`` (the official loss) or ``kl`` (same gradient, minus the target entropy).
        discriminator: for ``kind="meal"``; built with :func:`~meal_lite.core.discriminator.make_discriminator`
            for ``num_classes`` when None.
        disc_mode: ``official`` (joint regulariser) or ``adversarial`` (gradient reversal).
        disc_weight: weight of ``d_loss`` in the total.
        disc_input: ``logits`` (online: mean teacher logits) or ``probs`` (cached: ensemble probabilities).
        mix: training-mode input mixing, ``(images, labels) -> (images, soft labels)`` (:func:`make_mix`).
    """

    def __init__(
        self,
        student: nn.Module,
        kind: str = "meal",
        teacher_source: Any = None,
        *,
        temperature: float = 1.0,
        distillation: str = "soft_ce",
        discriminator: nn.Module | None = None,
        disc_mode: str = "official",
        disc_weight: float = 1.0,
        disc_input: str = "logits",
        disc_reduction: int = 8,
        num_classes: int | None = None,
        mix: Any = None,
    ) -> None:
        super().__init__()
        check_choice(kind, "loss.objective", OBJECTIVES)
        check_choice(distillation, "loss.distillation", DISTILLATION_LOSSES)
        check_choice(disc_input, "discriminator.input", DISCRIMINATOR_INPUTS)
        check_temperature(temperature)
        if kind != "ce" and (teacher_source is None or not hasattr(teacher_source, "targets")):
            raise ConfigError(
                f"loss.objective={kind} needs a teacher source with a targets(images, batch) method "
                f"(e.g. a TeacherEnsemble); pass teacher_source= or use loss.objective=ce."
            )
        self.kind = kind
        self.temperature = float(temperature)
        self.distillation = distillation
        self.disc_weight = float(disc_weight)
        self.teacher_source = teacher_source if kind != "ce" else None
        self.mix = mix
        if kind == "meal" and discriminator is None:
            if num_classes is None:
                raise ModelError("Cannot tell the class count for the discriminator; pass num_classes= or discriminator=.")
            discriminator = make_discriminator(num_classes, disc_mode, disc_reduction)
        self.trainable = StudentAndDiscriminator(
            student, discriminator if kind == "meal" else None, disc_mode, disc_input
        )

    # -- the parts ---------------------------------------------------------------------------------
    @property
    def student(self) -> nn.Module:
        """The student, never wrapped (evaluate and save this one)."""
        return _unwrap(self.trainable).student

    @property
    def discriminator(self) -> nn.Module | None:
        """The discriminator (None unless ``kind="meal"``), never wrapped."""
        return _unwrap(self.trainable).discriminator

    def param_groups(self, student_lr: float, disc_lr: float) -> list[dict]:
        """Optimiser parameter groups: the student at ``student_lr``, then the discriminator at ``disc_lr``."""
        groups = [{"params": [p for p in self.student.parameters() if p.requires_grad], "lr": student_lr, "name": "student"}]
        if not groups[0]["params"]:
            raise ModelError("The student has no trainable parameters; check that it is not frozen.")
        if self.discriminator is not None:
            params = [p for p in self.discriminator.parameters() if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": disc_lr, "name": "discriminator"})
        return groups

    def prepare_distributed(self, device_ids: list[int] | None = None) -> "Objective":
        """Wrap everything trainable (student and discriminator together) in DDP, once."""
        if not isinstance(self.trainable, nn.parallel.DistributedDataParallel):
            self.trainable = nn.parallel.DistributedDataParallel(_unwrap(self.trainable), device_ids=device_ids)
        return self

    def train(self, mode: bool = True) -> "Objective":
        super().train(mode)
        if isinstance(self.teacher_source, nn.Module):
            self.teacher_source.eval()  # a TeacherEnsemble also does this itself; other sources may not
        return self

    # -- targets -----------------------------------------------------------------------------------
    def soft_targets(self, targets: EnsembleOutput) -> torch.Tensor:
        """The distillation target at the objective's temperature (see :func:`soft_targets`)."""
        return soft_targets(targets, self.temperature)

    # -- one step ----------------------------------------------------------------------------------
    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, batch: Any = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss": total, ...parts}`` for one batch; every value a 0-dim tensor (no
        host sync).

        ``batch`` is the whole batch tuple, handed to the teacher source (a cached
        source reads sample indices and crop parameters from it).
        """
        # timm mixes in place: mix a copy, the caller's batch stays as it was
        soft_labels = None
        if self.mix is not None and self.training:
            images, soft_labels = self.mix(images.clone(), labels)
        targets = (
            self.teacher_source.targets(images, batch)
            if self.teacher_source is not None
            else None
        )
        teacher_side = (
            _teacher_side(targets, _unwrap(self.trainable).disc_input)
            if self.discriminator is not None
            else None
        )
        logits, disc_out = self.trainable(images, teacher_side)
        logits = logits.float()
        if targets is None:  # labels: as they are, or mixed like the images
            loss = (
                cross_entropy(logits, labels)
                if soft_labels is None
                else soft_cross_entropy(logits, soft_labels.float())
            )
            return {"loss": loss}
        kl = LOSS_FUNCTIONS[self.distillation](
            logits, self.soft_targets(targets), temperature=self.temperature
        )
        if disc_out is None:
            return {"loss": kl, "kl": kl}
        n = logits.shape[0]
        d_loss = discriminator_bce(disc_out, n)
        disc_acc = 100.0 * discriminator_correct(disc_out.detach(), n).float().mean()
        return {
            "loss": kl + self.disc_weight * d_loss,
            "kl": kl,
            "d_loss": d_loss,
            "disc_acc": disc_acc,
        }

    def extra_repr(self) -> str:
        return f"kind={self.kind}, temperature={self.temperature}, distillation={self.distillation}, mix={self.mix is not None}"

    @classmethod
    def from_config(cls, student: nn.Module, teacher_source: Any, cfg: Any, num_classes: int | None, **kwargs: Any) -> "Objective":
        """The objective a run configuration describes (its ``loss`` and ``discriminator`` sections)."""
        return cls(
            student,
            cfg.loss.objective,
            teacher_source,
            temperature=cfg.loss.temperature,
            distillation=cfg.loss.distillation,
            disc_mode=cfg.discriminator.mode,
            disc_weight=cfg.discriminator.weight,
            disc_input=cfg.discriminator.input,
            disc_reduction=cfg.discriminator.reduction,
            num_classes=num_classes,
            mix=make_mix(cfg.data.mixup_alpha, cfg.data.cutmix_prob, cfg.data.cutmix_beta, num_classes),
            **kwargs,
        )


def make_mix(mixup_alpha: float, cutmix_prob: float, cutmix_beta: float, num_classes: int | None) -> Mixup | None:
    """The batch's input mixing (timm's ``Mixup`` in batch mode, no label smoothing), or None when off.

    ``mixup_alpha > 0``: Mixup on every batch, ``lam ~ Beta(alpha, alpha)`` ("function matching",
    Beyer et al. 2022). ``cutmix_prob > 0``: CutMix on that fraction of the batches, the kept area
    ``lam ~ Beta(beta, beta)`` (the paper's "ResNet-50 + CutMix" row; the official code mixes only the
    images, since the teachers label the mixed image). One lam and one box per batch, each image mixed
    with the batch's mirror image (``x.flip(0)``). It draws from NumPy's global RNG, which checkpoints
    save and restore, so a resumed run mixes the same way. It needs an even batch: training loaders
    drop their last incomplete batch.
    """
    if mixup_alpha < 0 or not 0 <= cutmix_prob <= 1 or cutmix_beta <= 0:
        raise ConfigError(
            f"Input mixing needs mixup_alpha >= 0, 0 <= cutmix_prob <= 1 and cutmix_beta > 0, got "
            f"{mixup_alpha}, {cutmix_prob} and {cutmix_beta}."
        )
    if mixup_alpha > 0 and cutmix_prob > 0:
        raise ConfigError("Mixup and CutMix are both asked for; meal-lite mixes a batch one way, so set one of them to 0.")
    if mixup_alpha == 0 and cutmix_prob == 0:
        return None
    if num_classes is None:
        raise ModelError("Input mixing needs the class count to mix labels; pass num_classes=.")
    if mixup_alpha > 0:
        return Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=0.0, mode="batch", label_smoothing=0.0, num_classes=num_classes)
    return Mixup(
        mixup_alpha=0.0, cutmix_alpha=cutmix_beta, prob=cutmix_prob, mode="batch", label_smoothing=0.0,
        num_classes=num_classes,
    )


def soft_targets(targets: EnsembleOutput, temperature: float) -> torch.Tensor:
    """The distillation target at temperature ``T``: the only place in meal-lite where T
    is applied.

    ``T = 1``: the ensemble's mean of probabilities as it is. Otherwise the mean of the
    teachers' softmax at ``T`` (``mean_t softmax(z_t / T)``) when the source kept the
    teachers' logits; a cached source keeps only the mean probabilities, which are
    softened as a whole (``p**(1/T)`` renormalised) - close to, but not the same as,
    averaging softened teachers.
    """
    if temperature == 1.0:
        return targets.probs
    if targets.teacher_logits is not None:
        return torch.softmax(targets.teacher_logits.float() / temperature, dim=-1).mean(
            dim=0
        )
    return soften(targets.probs, temperature, is_probs=True)


def _teacher_side(targets: EnsembleOutput, disc_input: str) -> torch.Tensor:
    """What the discriminator sees for the teachers: mean logits (online) or the ensemble's probabilities."""
    if disc_input == "probs":
        return targets.probs
    if targets.logits is None:
        raise ConfigError(
            "This teacher source stores no logits, so the discriminator cannot see mean teacher logits; "
            "use discriminator.input=probs (FKD's MEAL V2 mode)."
        )
    return targets.logits


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module

