"""Training: the Trainer, run assembly, checkpoints, batching over processes, evaluation.

- :mod:`~meal_lite.training.trainer` -- the Trainer: step, epoch, loop, checkpoint, exact resume;
- :mod:`~meal_lite.training.steps` -- the stateless pieces of a step (optimiser, schedule, sums);
- :mod:`~meal_lite.training.assemble` -- :func:`train_student`, the one way to train a student;
- :mod:`~meal_lite.training.pipeline` -- :func:`train_from_config`, a run as the command line starts it;
- :mod:`~meal_lite.training.evaluate` and :mod:`~meal_lite.training.eval_checkpoint` -- scoring;
- :mod:`~meal_lite.training.batching`, :mod:`~meal_lite.training.distributed`,
  :mod:`~meal_lite.training.faults` -- global batch, torchrun / DDP, the fault drill;
- :mod:`~meal_lite.training.recorder` -- what a run writes and prints, on the main process only;
- :mod:`~meal_lite.training.softlabel_cache` -- making a soft-label cache (``meal-lite cache``);
- :mod:`~meal_lite.training.export`, :mod:`~meal_lite.training.onnx_export`, :mod:`~meal_lite.training.predict` --
  a trained student in timm's hub layout and as ONNX (``meal-lite export``), and ``meal-lite predict``;
- :mod:`~meal_lite.training.digits_teachers`, :mod:`~meal_lite.training.workers` -- the offline
  profile's teachers, trained in one-thread worker processes.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "all_gather_objects": "meal_lite.training.distributed",
    "all_reduce_sum": "meal_lite.training.distributed",
    "autocast": "meal_lite.training.evaluate",
    "barrier": "meal_lite.training.distributed",
    "BatchPlan": "meal_lite.training.batching",
    "BEST_NAME": "meal_lite.training.recorder",
    "build_loaders": "meal_lite.training.assemble",
    "build_optimizer": "meal_lite.training.steps",
    "build_scheduler": "meal_lite.training.steps",
    "build_student": "meal_lite.training.assemble",
    "build_teachers": "meal_lite.training.pipeline",
    "CACHE_ENV_VAR": "meal_lite.training.digits_teachers",
    "cache_identity": "meal_lite.training.softlabel_cache",
    "Callback": "meal_lite.training.trainer",
    "check_finite": "meal_lite.training.steps",
    "check_teachers": "meal_lite.training.pipeline",
    "CHECKPOINT_FORMAT": "meal_lite.training.trainer",
    "CHECKPOINT_NAME": "meal_lite.training.recorder",
    "cleanup": "meal_lite.training.distributed",
    "collect_logits": "meal_lite.training.evaluate",
    "compare_onnx": "meal_lite.training.onnx_export",
    "cpu_pool": "meal_lite.training.workers",
    "default_cache_dir": "meal_lite.training.digits_teachers",
    "default_shard_images": "meal_lite.training.softlabel_cache",
    "describe_plan": "meal_lite.training.batching",
    "digits_ensemble": "meal_lite.training.digits_teachers",
    "DIGITS_TEACHERS": "meal_lite.training.digits_teachers",
    "DistributedContext": "meal_lite.training.distributed",
    "epoch_summary": "meal_lite.training.recorder",
    "EpochSums": "meal_lite.training.steps",
    "evaluate": "meal_lite.training.evaluate",
    "evaluate_checkpoint": "meal_lite.training.eval_checkpoint",
    "export_run": "meal_lite.training.export",
    "format_predictions": "meal_lite.training.predict",
    "generate_cache": "meal_lite.training.softlabel_cache",
    "init_distributed": "meal_lite.training.distributed",
    "KILL_AT_STEP": "meal_lite.training.faults",
    "KILL_RANK": "meal_lite.training.faults",
    "load_cached_teacher": "meal_lite.training.digits_teachers",
    "load_predictor": "meal_lite.training.predict",
    "load_trained_student": "meal_lite.training.export",
    "maybe_fail": "meal_lite.training.faults",
    "METRICS_NAME": "meal_lite.training.recorder",
    "missing_onnx_packages": "meal_lite.training.onnx_export",
    "model_outputs": "meal_lite.training.evaluate",
    "one_thread": "meal_lite.training.workers",
    "ONNX_FILE": "meal_lite.training.onnx_export",
    "ONNX_PACKAGES": "meal_lite.training.onnx_export",
    "overwrite_group_lrs": "meal_lite.training.steps",
    "plan_batches": "meal_lite.training.batching",
    "predict_images": "meal_lite.training.predict",
    "Predictor": "meal_lite.training.predict",
    "prepare_images": "meal_lite.training.evaluate",
    "recipe_key": "meal_lite.training.digits_teachers",
    "RECIPE_VERSION": "meal_lite.training.digits_teachers",
    "resolve_amp": "meal_lite.training.steps",
    "resolve_device": "meal_lite.training.distributed",
    "resolve_workers": "meal_lite.training.workers",
    "run_checkpoint_path": "meal_lite.training.export",
    "RunRecorder": "meal_lite.training.recorder",
    "save_teacher": "meal_lite.training.digits_teachers",
    "seed_everything": "meal_lite.training.assemble",
    "StepGroups": "meal_lite.training.steps",
    "stored_run_config": "meal_lite.training.eval_checkpoint",
    "sync_unless": "meal_lite.training.steps",
    "teacher_config": "meal_lite.training.digits_teachers",
    "teacher_path": "meal_lite.training.digits_teachers",
    "TeacherRecipe": "meal_lite.training.digits_teachers",
    "train_digits_teacher": "meal_lite.training.digits_teachers",
    "train_from_config": "meal_lite.training.pipeline",
    "train_student": "meal_lite.training.assemble",
    "TrainedStudent": "meal_lite.training.export",
    "Trainer": "meal_lite.training.trainer",
    "weights_sha256": "meal_lite.training.softlabel_cache",
    "WORKERS_ENV_VAR": "meal_lite.training.workers",
    "write_onnx": "meal_lite.training.onnx_export",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
