"""Experiments built on the package: the book's protocol, dark knowledge, cache study, statistics.

- :mod:`~meal_lite.experiments.arms` -- the arms ``ce``, ``kl``, ``meal`` (named by their objective) and
  their display labels;
- :mod:`~meal_lite.experiments.protocol` and :mod:`~meal_lite.experiments.demo` -- does boosting beat
  more training on labels? (``meal-lite demo``);
- :mod:`~meal_lite.experiments.dark_knowledge`, :mod:`~meal_lite.experiments.dark_knowledge_report`,
  :mod:`~meal_lite.experiments.bias` -- the held-out digit (``meal-lite dark-knowledge``);
- :mod:`~meal_lite.experiments.cache_study` -- accuracy against the number of cached crops;
- :mod:`~meal_lite.experiments.inherited` -- what a student inherits beyond top-1;
- :mod:`~meal_lite.experiments.plots` -- matplotlib figures shared by the demo and the book;
- :mod:`~meal_lite.experiments.stats` -- summaries over seeds, paired differences, and the one rule for
  intervals and verdicts;
- :mod:`~meal_lite.experiments.record` -- the hardware, command and date a result was made with.
- :mod:`~meal_lite.experiments.committed` -- the committed full runs the book shows, shipped as package data.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "accuracies": "meal_lite.experiments.bias",
    "accuracy_vs_crops": "meal_lite.experiments.cache_study",
    "agreement": "meal_lite.experiments.inherited",
    "ARM_COLORS": "meal_lite.experiments.plots",
    "arm_config": "meal_lite.experiments.dark_knowledge",
    "arm_label": "meal_lite.experiments.arms",
    "ARM_LABELS": "meal_lite.experiments.arms",
    "arm_names": "meal_lite.experiments.dark_knowledge",
    "arm_objective": "meal_lite.experiments.arms",
    "ARMS": "meal_lite.experiments.arms",
    "base_config": "meal_lite.experiments.protocol",
    "baseline_path": "meal_lite.experiments.baselines",
    "BASELINE_VERSION": "meal_lite.experiments.baselines",
    "BOOK_SETTINGS": "meal_lite.experiments.protocol_settings",
    "choose_bias": "meal_lite.experiments.bias",
    "collect_outputs": "meal_lite.experiments.inherited",
    "collect_teacher_logits": "meal_lite.experiments.inherited",
    "committed_result": "meal_lite.experiments.committed",
    "confusion_matrix": "meal_lite.experiments.inherited",
    "continuation_config": "meal_lite.experiments.protocol",
    "CONTINUATIONS": "meal_lite.experiments.protocol_settings",
    "dark_knowledge_table": "meal_lite.experiments.dark_knowledge_report",
    "DarkKnowledgeSettings": "meal_lite.experiments.dark_knowledge",
    "demo_table": "meal_lite.experiments.demo",
    "draw_views": "meal_lite.experiments.dark_knowledge",
    "every_nth": "meal_lite.data.subsets",
    "Experiment": "meal_lite.experiments.protocol",
    "FreshCrops": "meal_lite.experiments.cache_study",
    "hardware": "meal_lite.experiments.record",
    "held_out_mass": "meal_lite.experiments.dark_knowledge",
    "HELD_OUT_METRICS": "meal_lite.experiments.dark_knowledge",
    "inheritance_report": "meal_lite.experiments.inherited",
    "interval_text": "meal_lite.experiments.stats",
    "judge": "meal_lite.experiments.stats",
    "kl_arm": "meal_lite.experiments.arms",
    "LEGACY_ARMS": "meal_lite.experiments.arms",
    "load_cached_baseline": "meal_lite.experiments.baselines",
    "MIN_SEEDS": "meal_lite.experiments.stats",
    "mistake_similarity": "meal_lite.experiments.inherited",
    "no_interval_reason": "meal_lite.experiments.stats",
    "pair_key": "meal_lite.experiments.arms",
    "paired_differences": "meal_lite.experiments.stats",
    "PAIRED_METRICS": "meal_lite.experiments.dark_knowledge",
    "PAIRS": "meal_lite.experiments.protocol_settings",
    "plot_confusion": "meal_lite.experiments.plots",
    "plot_demo_curves": "meal_lite.experiments.plots",
    "plot_held_out": "meal_lite.experiments.dark_knowledge_report",
    "plot_reliability": "meal_lite.experiments.plots",
    "precompute_views": "meal_lite.experiments.dark_knowledge",
    "PrecomputedViews": "meal_lite.experiments.dark_knowledge",
    "prepare_experiment": "meal_lite.experiments.protocol",
    "PROFILE_SETTINGS": "meal_lite.experiments.protocol_settings",
    "ProtocolSettings": "meal_lite.experiments.protocol_settings",
    "provenance": "meal_lite.experiments.record",
    "read_dark_knowledge_results": "meal_lite.experiments.dark_knowledge_report",
    "read_demo_results": "meal_lite.experiments.demo",
    "reliability_curve": "meal_lite.experiments.inherited",
    "rename_legacy": "meal_lite.experiments.arms",
    "results_json": "meal_lite.experiments.dark_knowledge_report",
    "ROWS": "meal_lite.experiments.protocol_settings",
    "run_command": "meal_lite.experiments.dark_knowledge_report",
    "run_config": "meal_lite.experiments.protocol",
    "run_dark_knowledge": "meal_lite.experiments.dark_knowledge",
    "run_demo": "meal_lite.experiments.demo",
    "run_protocol": "meal_lite.experiments.protocol",
    "save_baseline": "meal_lite.experiments.baselines",
    "score_student": "meal_lite.experiments.bias",
    "seeds_text": "meal_lite.experiments.stats",
    "split_logits": "meal_lite.experiments.bias",
    "split_pair": "meal_lite.experiments.arms",
    "spread_text": "meal_lite.experiments.stats",
    "stored_or_trained": "meal_lite.experiments.baselines",
    "summarize": "meal_lite.experiments.stats",
    "t_interval": "meal_lite.experiments.stats",
    "top1_of": "meal_lite.experiments.protocol",
    "train_arms": "meal_lite.experiments.dark_knowledge",
    "TransferSet": "meal_lite.experiments.dark_knowledge",
    "verdict": "meal_lite.experiments.stats",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
