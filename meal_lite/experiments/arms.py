"""The arms of every experiment, named by their objective (``ce``, ``kl``, ``meal``), and their display labels.

An arm trains a student with one ``loss.objective`` (:data:`meal_lite.config.choices.OBJECTIVES`), and it
carries that name everywhere: in results files, CLI tables, plots, the book and the README.

- ``ce``: cross-entropy on the labels, the control that every distilled arm is compared with;
- ``kl``: soft cross-entropy to the ensemble's probabilities;
- ``meal``: ``kl`` plus the discriminator, MEAL V2.

The protocol (:mod:`~meal_lite.experiments.protocol`) adds its ``baseline`` row, the label-trained student
the three arms continue from. The dark-knowledge experiment sweeps the temperature of the ``kl`` arm and
names each sweep point ``kl_T<t>``, the ``kl`` arm at temperature ``t`` (:func:`kl_arm`); its T = 1 point
is ``kl_T1``, not ``kl``, so that every row of the sweep says its temperature in the same way.

:data:`ARM_LABELS` is the one mapping from these names to display labels; :func:`arm_label` extends it to
the rows built from them (``kl_T4``, ``teacher:<name>``, ``ensemble``, the pair key ``meal-ce``).
:func:`rename_legacy` maps the names of logs written before the arms were named by their objective
(``control``, ``kl_only``, ``meal_v2``: ``committed_result("evidence_search")``) to these, numbers untouched.
"""

from __future__ import annotations

from typing import Any

from meal_lite.config.choices import OBJECTIVES
from meal_lite.errors import ConfigError

__all__ = ["ARMS", "ARM_LABELS", "LEGACY_ARMS", "kl_arm", "arm_objective", "arm_label", "pair_key", "split_pair", "rename_legacy"]

#: The arms, in the order tables list them: the objectives themselves.
ARMS = OBJECTIVES
#: Display label of each arm (and of the protocol's baseline row): every table, plot, chapter and the README.
ARM_LABELS = {
    "baseline": "baseline (CE on labels, to its plateau)",
    "ce": "control (CE on labels)",
    "kl": "KL to the ensemble",
    "meal": "MEAL V2 (KL + discriminator)",
}
#: Names the arms had in logs written before they were named by their objective.
LEGACY_ARMS = {"control": "ce", "kl_only": "kl", "meal_v2": "meal"}


def kl_arm(temperature: float) -> str:
    """The name of the ``kl`` arm at ``temperature`` in a temperature sweep: ``kl_T4`` for 4.0."""
    return f"kl_T{float(temperature):g}"


def arm_objective(name: str) -> tuple[str, float]:
    """``(loss.objective, temperature)`` of arm ``name``: ``ce``/``kl``/``meal`` at T = 1, ``kl_T<t>`` at t."""
    if name.startswith("kl_T"):
        try:
            return "kl", float(name[4:])
        except ValueError:
            pass
    if name not in ARMS:
        raise ConfigError(f"Unknown arm {name!r}; use ce, kl, meal or kl_T<temperature> (e.g. kl_T4).")
    return name, 1.0


def arm_label(name: str) -> str:
    """The display label of a row: an arm, ``kl_T<t>``, the baseline, ``teacher:<name>``, ``ensemble`` or a pair ``a-b``."""
    if name in ARM_LABELS:
        return ARM_LABELS[name]
    if name.startswith("kl_T"):
        return f"{ARM_LABELS['kl']}, T = {name[4:]}"
    if name.startswith("teacher:"):
        return f"teacher {name.split(':', 1)[1]}"
    if name == "ensemble":
        return "ensemble of the teachers"
    if "-" in name:
        a, b = split_pair(name)
        return f"{arm_label(a)} minus {arm_label(b)}"
    return name


def pair_key(a: str, b: str) -> str:
    """The key of the paired difference ``a`` minus ``b``: ``"meal-ce"``."""
    return f"{a}-{b}"


def split_pair(key: str) -> tuple[str, str]:
    """``(a, b)`` of a pair key ``"a-b"`` (the last ``-`` separates them)."""
    a, _, b = key.rpartition("-")
    return a, b


def _renamed(name: str) -> str:
    if name in LEGACY_ARMS:
        return LEGACY_ARMS[name]
    a, sep, b = name.rpartition("-")
    if sep and (a in LEGACY_ARMS or b in LEGACY_ARMS):
        return pair_key(LEGACY_ARMS.get(a, a), LEGACY_ARMS.get(b, b))
    return name


def rename_legacy(record: Any) -> Any:
    """``record`` (JSON-like) with every key that is a legacy arm name, or a pair of them, renamed; values as they were."""
    if isinstance(record, dict):
        return {_renamed(k) if isinstance(k, str) else k: rename_legacy(v) for k, v in record.items()}
    if isinstance(record, list):
        return [rename_legacy(v) for v in record]
    return record
