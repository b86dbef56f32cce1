"""Experiments built on the package: the book's protocol, dark knowledge, cache study, statistics.

- :mod:`~meal_lite.experiments.protocol` and :mod:`~meal_lite.experiments.demo` -- does boosting beat
  more training on labels? (``meal-lite demo``);
- :mod:`~meal_lite.experiments.dark_knowledge`, :mod:`~meal_lite.experiments.dark_knowledge_report`,
  :mod:`~meal_lite.experiments.bias` -- the held-out digit (``meal-lite dark-knowledge``);
- :mod:`~meal_lite.experiments.cache_study` -- accuracy against the number of cached crops;
- :mod:`~meal_lite.experiments.inherited` -- what a student inherits beyond top-1;
- :mod:`~meal_lite.experiments.plots` -- matplotlib figures shared by the demo and the book;
- :mod:`~meal_lite.experiments.stats` -- summaries over seeds, paired differences, intervals, verdicts.
"""

from meal_lite.lazy import lazy_exports

_EXPORTS = {
    "accuracies": "meal_lite.experiments.bias",
    "accuracy_vs_crops": "meal_lite.experiments.cache_study",
    "agreement": "meal_lite.experiments.inherited",
    "arm_config": "meal_lite.experiments.dark_knowledge",
    "arm_names": "meal_lite.experiments.dark_knowledge",
    "base_config": "meal_lite.experiments.protocol",
    "BOOK_SETTINGS": "meal_lite.experiments.protocol",
    "choose_bias": "meal_lite.experiments.bias",
    "collect_outputs": "meal_lite.experiments.inherited",
    "continuation_config": "meal_lite.experiments.protocol",
    "CONTINUATIONS": "meal_lite.experiments.protocol",
    "dark_knowledge_table": "meal_lite.experiments.dark_knowledge_report",
    "DarkKnowledgeSettings": "meal_lite.experiments.dark_knowledge",
    "demo_table": "meal_lite.experiments.demo",
    "draw_views": "meal_lite.experiments.dark_knowledge",
    "every_nth": "meal_lite.experiments.cache_study",
    "Experiment": "meal_lite.experiments.protocol",
    "FreshCrops": "meal_lite.experiments.cache_study",
    "held_out_mass": "meal_lite.experiments.dark_knowledge",
    "inheritance_report": "meal_lite.experiments.inherited",
    "METRICS": "meal_lite.experiments.dark_knowledge",
    "mistake_similarity": "meal_lite.experiments.inherited",
    "paired_difference": "meal_lite.experiments.bias",
    "paired_differences": "meal_lite.experiments.protocol",
    "plot_confusion": "meal_lite.experiments.plots",
    "plot_demo_curves": "meal_lite.experiments.plots",
    "plot_held_out": "meal_lite.experiments.dark_knowledge_report",
    "plot_reliability": "meal_lite.experiments.plots",
    "precompute_views": "meal_lite.experiments.dark_knowledge",
    "PrecomputedViews": "meal_lite.experiments.dark_knowledge",
    "prepare_experiment": "meal_lite.experiments.protocol",
    "PROFILE_SETTINGS": "meal_lite.experiments.protocol",
    "ProtocolSettings": "meal_lite.experiments.protocol",
    "reliability_curve": "meal_lite.experiments.inherited",
    "results_json": "meal_lite.experiments.dark_knowledge_report",
    "ROW_COLORS": "meal_lite.experiments.plots",
    "ROW_LABELS": "meal_lite.experiments.plots",
    "ROWS": "meal_lite.experiments.protocol",
    "run_command": "meal_lite.experiments.dark_knowledge_report",
    "run_config": "meal_lite.experiments.protocol",
    "run_dark_knowledge": "meal_lite.experiments.dark_knowledge",
    "run_demo": "meal_lite.experiments.demo",
    "run_protocol": "meal_lite.experiments.protocol",
    "score_student": "meal_lite.experiments.bias",
    "split_logits": "meal_lite.experiments.bias",
    "summarize": "meal_lite.experiments.stats",
    "t_interval": "meal_lite.experiments.stats",
    "target_entropy": "meal_lite.experiments.inherited",
    "train_arms": "meal_lite.experiments.dark_knowledge",
    "TransferSet": "meal_lite.experiments.dark_knowledge",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
