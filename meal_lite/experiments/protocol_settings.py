"""The protocol's settings: its rows and pairs, the lengths and rates of its runs, per profile.

:mod:`meal_lite.experiments.protocol` runs the protocol; this module says what it runs, so that a reader
(or ``bench/evidence_search.py``, which chose these values on the validation split) finds every number
of ``meal-lite demo`` and chapter 5 in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from meal_lite.experiments.arms import ARMS

__all__ = ["ROWS", "CONTINUATIONS", "PAIRS", "ProtocolSettings", "PROFILE_SETTINGS", "BOOK_SETTINGS"]

#: The continuations from the baseline: one per objective, each named by it (``ce`` is the control).
CONTINUATIONS = ARMS
#: The report's rows after the teachers and the ensemble.
ROWS = ("baseline", *CONTINUATIONS)
#: The paired differences the report gives, ``(a, b)`` for ``a`` minus ``b`` seed by seed.
PAIRS = (("meal", "ce"), ("kl", "ce"), ("meal", "kl"))


@dataclass
class ProtocolSettings:
    """Lengths, learning rates and levers of the protocol's student runs (teachers have their own recipe).

    The baseline is trained on labels with the profile's own recipe (mild augmentation, no mixing) for
    ``baseline_epochs``, the length at which its validation accuracy plateaus (``bench/evidence_search.py``
    measures it). The three continuations share everything but the loss: ``distill_epochs``, the
    step schedule, ``augment_strength``, ``mixup_alpha``, data order and views. Each arm's lr is in
    ``lrs`` (picked for each arm from the same grid, on the validation split); ``distill_lr`` is used
    for an arm missing from ``lrs``.
    """

    seeds: int = 3
    baseline_epochs: int = 8
    distill_epochs: int = 8
    baseline_lr: float = 0.05
    # Boosting starts from a trained student, so it uses a smaller lr, as MEAL V2 does (0.01 on a
    # pretrained ResNet-50), dropped tenfold for the last quarter like the paper's 0.01 -> 0.001 step.
    distill_lr: float = 0.01
    discriminator_mode: str = "official"
    lrs: dict[str, float] = field(default_factory=dict)
    temperature: float = 1.0
    augment_strength: str = "mild"
    mixup_alpha: float = 0.0
    # The official code's per-epoch lr overwrite: the discriminator trains at the student's lr.
    disc_lr_follows_student: bool = True
    # True: ONE baseline (seed 0) is every seed's starting point, as the paper boosts one pretrained
    # ResNet-50; the seeds then vary the continuations (data order, views, mixing, discriminator init).
    # False: each seed trains its own baseline (a further source of variance, and seeds x the cost).
    shared_baseline: bool = True

    def lr_for(self, row: str) -> float:
        """The learning rate of continuation ``row`` (``ce``, ``kl`` or ``meal``)."""
        return float(self.lrs.get(row, self.distill_lr))


# Per profile: offline sized for a few minutes on two CPU cores; imagenette for a single Colab GPU.
PROFILE_SETTINGS = {
    # Chosen on the validation split by bench/evidence_search.py (every configuration it tried is in
    # experiments/results/evidence_search.json): the baseline's length is where its validation curve plateaus (16
    # epochs did not, 24 did), and each continuation's lr is that arm's best of the same grid.
    # (mild augmentation, no mixing, T = 1: MEAL V2's own recipe; strong augmentation + mixup cost every
    # arm 7-13 points of validation accuracy; T = 4 gained nothing). 4 continuation epochs keep
    # `meal-lite demo` within 5 minutes.
    "offline": ProtocolSettings(
        seeds=5, baseline_epochs=24, distill_epochs=4, lrs={"ce": 0.003, "kl": 0.003, "meal": 0.003}
    ),
    # Sized, not yet chosen on the validation split (that needs the real ImageNette and pretrained weights,
    # which this project's machine cannot download): the lengths that keep chapter 5 within the book's hour
    # on two CPU cores (bench/chapter_times.py measures it), the paper's boosting lr.
    "imagenette": ProtocolSettings(seeds=3, baseline_epochs=4, distill_epochs=3, baseline_lr=0.01, distill_lr=0.001),
}
# What chapter 5 runs live, inside the book's and the tests' time budgets: on the offline profile one
# seed of `meal-lite demo`'s protocol, an illustration shown beside the committed five-seed run (the
# chapter says so); the imagenette profile runs the full protocol.
BOOK_SETTINGS = {
    "offline": replace(PROFILE_SETTINGS["offline"], seeds=1),
    "imagenette": PROFILE_SETTINGS["imagenette"],
}
