"""MEAL V2 itself: the teacher ensemble, the distillation losses, the discriminator and the objective.

Read these four modules in this order, in one sitting; nothing else in meal-lite is MEAL V2:

- :mod:`~meal_lite.core.ensemble` -- frozen teachers averaged into the target (:func:`average_teachers`),
  and the teacher sources the objective reads targets from (online, shared, stored);
- :mod:`~meal_lite.core.losses` -- soft cross-entropy and its KL twin, temperature, entropy;
- :mod:`~meal_lite.core.discriminator` -- the three-layer discriminator, official and adversarial;
- :mod:`~meal_lite.core.objective` -- one training step's loss: targets, KL, discriminator, mixing.

Only :mod:`meal_lite.config.choices` and :mod:`meal_lite.errors` are imported from outside ``core``.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "average_teachers": "meal_lite.core.ensemble",
    "check_temperature": "meal_lite.core.losses",
    "cross_entropy": "meal_lite.core.losses",
    "declared_num_classes": "meal_lite.core.ensemble",
    "Discriminator": "meal_lite.core.discriminator",
    "discriminator_accuracy": "meal_lite.core.discriminator",
    "discriminator_bce": "meal_lite.core.discriminator",
    "discriminator_correct": "meal_lite.core.discriminator",
    "discriminator_loss": "meal_lite.core.discriminator",
    "discriminator_outputs": "meal_lite.core.discriminator",
    "discriminator_targets": "meal_lite.core.discriminator",
    "EnsembleClassifier": "meal_lite.core.ensemble",
    "EnsembleOutput": "meal_lite.core.ensemble",
    "entropy": "meal_lite.core.losses",
    "grad_reverse": "meal_lite.core.discriminator",
    "GradientReversal": "meal_lite.core.discriminator",
    "InputAdapter": "meal_lite.core.ensemble",
    "kl_divergence": "meal_lite.core.losses",
    "LOSS_FUNCTIONS": "meal_lite.core.objective",
    "make_discriminator": "meal_lite.core.discriminator",
    "make_mix": "meal_lite.core.objective",
    "METRICS": "meal_lite.core.objective",
    "Objective": "meal_lite.core.objective",
    "REDUCTIONS": "meal_lite.core.losses",
    "SharedTargets": "meal_lite.core.ensemble",
    "soft_cross_entropy": "meal_lite.core.losses",
    "soft_targets": "meal_lite.core.objective",
    "soften": "meal_lite.core.losses",
    "StoredTeacherOutputs": "meal_lite.core.ensemble",
    "StudentAndDiscriminator": "meal_lite.core.objective",
    "TeacherEnsemble": "meal_lite.core.ensemble",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
