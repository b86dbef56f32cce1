"""meal-lite: MEAL V2 ensemble knowledge distillation, small enough to read and real enough to use.

The public API is the names below (``from meal_lite import Trainer``); each subpackage documents its
own, one concern each, imports pointing downward only::

    meal_lite.core         MEAL V2 itself: ensemble, losses, discriminator, objective
    meal_lite.data         datasets, transforms, seeded loaders, the soft-label format
    meal_lite.models       timm students and teachers, where weights come from
    meal_lite.config       typed configuration, profiles, the lists of choices
    meal_lite.training     the Trainer, run assembly, checkpoints, DDP, evaluation
    meal_lite.experiments  the book's protocol, dark knowledge, cache study, statistics
    meal_lite.book         chapter setup, figures and tables for the book
    meal_lite.cli          the ``meal-lite`` command

and, below them all, ``errors``, ``settings`` (every environment variable), ``files`` (atomic
writes), ``network`` (one probe) and ``checkpoint`` (reading and writing checkpoints).
Names are imported lazily, so ``import meal_lite`` is instant and the command line starts fast.
"""

from meal_lite.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # core: MEAL V2
    "TeacherEnsemble": "meal_lite.core.ensemble",
    "EnsembleOutput": "meal_lite.core.ensemble",
    "average_teachers": "meal_lite.core.ensemble",
    "soft_cross_entropy": "meal_lite.core.losses",
    "kl_divergence": "meal_lite.core.losses",
    "cross_entropy": "meal_lite.core.losses",
    "soften": "meal_lite.core.losses",
    "entropy": "meal_lite.core.losses",
    "Discriminator": "meal_lite.core.discriminator",
    "make_discriminator": "meal_lite.core.discriminator",
    "discriminator_loss": "meal_lite.core.discriminator",
    "Objective": "meal_lite.core.objective",
    "soft_targets": "meal_lite.core.objective",
    # data and models
    "build_datasets": "meal_lite.data.datasets",
    "build_loader": "meal_lite.data.loaders",
    "create_model": "meal_lite.models.factory",
    "create_student": "meal_lite.models.factory",
    "create_teachers": "meal_lite.models.factory",
    # configuration
    "Config": "meal_lite.config.schema",
    "load_config": "meal_lite.config.schema",
    "format_config": "meal_lite.config.schema",
    "resolve_profile": "meal_lite.config.profiles",
    # training
    "Trainer": "meal_lite.training.trainer",
    "train_student": "meal_lite.training.assemble",
    "build_student": "meal_lite.training.assemble",
    "build_loaders": "meal_lite.training.assemble",
    "build_teachers": "meal_lite.training.pipeline",
    "train_from_config": "meal_lite.training.pipeline",
    "digits_ensemble": "meal_lite.training.digits_teachers",
    "evaluate": "meal_lite.training.evaluate",
    "evaluate_checkpoint": "meal_lite.training.eval_checkpoint",
    "load_checkpoint": "meal_lite.checkpoint",
    # errors
    "MealLiteError": "meal_lite.errors",
    "ConfigError": "meal_lite.errors",
    "DataError": "meal_lite.errors",
    "ModelError": "meal_lite.errors",
    "CheckpointError": "meal_lite.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
