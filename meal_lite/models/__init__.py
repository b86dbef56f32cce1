"""Models by timm name: students, teachers, class subsets, input adapters, and where weights come from.

- :mod:`~meal_lite.models.factory` -- students and teachers from typed config sections;
- :mod:`~meal_lite.models.weights` -- local files, URLs and the Hugging Face hub, failing fast offline;
- :mod:`~meal_lite.models.runs` -- a training run's checkpoint read as a model: its config and student.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "adapt_to_dataset": "meal_lite.models.factory",
    "check_model_source": "meal_lite.models.factory",
    "ClassSubset": "meal_lite.models.factory",
    "create_model": "meal_lite.models.factory",
    "create_student": "meal_lite.models.factory",
    "create_teacher": "meal_lite.models.factory",
    "create_teachers": "meal_lite.models.factory",
    "drop_overlay_state": "meal_lite.models.weights",
    "file_overlay": "meal_lite.models.weights",
    "forget_cached_weights": "meal_lite.models.weights",
    "hub_overlay": "meal_lite.models.weights",
    "is_run_checkpoint": "meal_lite.models.runs",
    "key_report": "meal_lite.models.weights",
    "LOCAL_PRESETS": "meal_lite.models.factory",
    "model_data_config": "meal_lite.models.factory",
    "read_run_checkpoint": "meal_lite.models.runs",
    "read_state_dict": "meal_lite.models.weights",
    "run_checkpoint_config": "meal_lite.models.runs",
    "RUN_CHECKPOINT_KEYS": "meal_lite.models.runs",
    "TEACHER_PRESETS": "meal_lite.models.factory",
    "teacher_specs": "meal_lite.models.factory",
    "weights_hint": "meal_lite.models.weights",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
