"""Summaries over seeds, paired differences, and the one rule for intervals and verdicts.

Every experiment (the protocol, dark knowledge, the cache study, the validation search) summarises its
per-seed values with :func:`summarize` and compares two arms seed by seed with
:func:`paired_differences`. Every page, CLI table and README figure then judges a difference with the
same rule, here:

* an interval needs at least :data:`MIN_SEEDS` seeds and a spread: from fewer seeds, or when every seed
  gave the same value (sample std 0, where a t-interval would collapse to a point), :func:`t_interval`
  returns None and :func:`no_interval_reason` says why;
* a verdict (:func:`verdict`) is a sentence generated from the numbers it quotes: the mean, the number
  of seeds and, where the rule allows one, the 95% Student-t interval and on which side of zero it lies;
  without an interval it says "too few seeds to tell" (or that the spread is zero) and claims nothing.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Mapping, Sequence

from scipy.stats import t as student_t

__all__ = [
    "MIN_SEEDS",
    "seeds_text",
    "spread_text",
    "summarize",
    "paired_differences",
    "no_interval_reason",
    "t_interval",
    "interval_text",
    "judge",
    "verdict",
]

#: The fewest seeds an interval (and so a verdict) is computed from.
MIN_SEEDS = 5


def seeds_text(n: int) -> str:
    """``"1 seed"``, ``"5 seeds"``: how every table, title and sentence counts seeds."""
    return f"{n} seed{'s' if n != 1 else ''}"


def spread_text(summary: Mapping[str, Any], spec: str = ".2f", sep: str = "+-") -> str:
    """``"97.20 +- 0.32"``: a summary's mean and standard deviation in ``spec``; from one seed the mean
    alone, since there is no spread to show and ``+- 0.00`` would read as certainty."""
    mean = format(summary["mean"], spec)
    if len(summary["values"]) == 1:
        return mean
    return f"{mean} {sep} {format(summary['std'], spec.lstrip('+'))}"


def summarize(values: Sequence[float]) -> dict:
    """``{"mean", "std", "values"}`` of per-seed values (sample std; 0 for a single value)."""
    values = list(values)
    mean = statistics.fmean(values)
    if not all(math.isfinite(v) for v in values):
        # A measure undefined on some seed (a correlation over mistakes that never vary is NaN): the
        # summary is undefined too. statistics.stdev cannot say so: on Python 3.11 it raises
        # AttributeError ('float' object has no attribute 'numerator') for a NaN or an infinity.
        return {"mean": mean, "std": math.nan, "values": values}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def paired_differences(values: Mapping[str, Sequence[float]], pairs: Iterable[tuple[str, str]]) -> dict:
    """``{"a-b": summarize(a - b seed by seed)}`` for each pair ``(a, b)`` whose arms both have values.

    Seed ``i`` of ``a`` minus seed ``i`` of ``b``: within a seed the arms share what the seed draws (a
    starting point, data order, views), so the difference removes that luck from the comparison.
    """
    return {f"{a}-{b}": summarize([x - y for x, y in zip(values[a], values[b])]) for a, b in pairs if values.get(a) and values.get(b)}


def no_interval_reason(summary: Mapping[str, Any]) -> str | None:
    """Why the rule gives ``summary`` no interval (a seed's value undefined, too few seeds, or zero spread),
    or None when it gives one."""
    n = len(summary["values"])
    undefined = sum(not math.isfinite(v) for v in summary["values"])
    if undefined:
        return f"no interval: the value is undefined (not a finite number) on {seeds_text(undefined)} of {n}"
    if n < MIN_SEEDS:
        return f"too few seeds to tell ({seeds_text(n)}; an interval needs at least {MIN_SEEDS})"
    if summary["std"] == 0:
        return f"too few seeds to tell: all {n} seeds gave the same value (zero spread), so there is no interval"
    return None


def t_interval(summary: Mapping[str, Any], confidence: float = 0.95) -> tuple[float, float] | None:
    """Two-sided Student-t interval for the mean of ``summary["values"]``, or None where the rule gives none.

    ``mean -+ t(1/2 + confidence/2, n - 1) * std / sqrt(n)``, with the sample std.
    """
    if no_interval_reason(summary) is not None:
        return None
    n = len(summary["values"])
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * summary["std"] / math.sqrt(n)
    return summary["mean"] - half, summary["mean"] + half


def interval_text(summary: Mapping[str, Any], digits: int = 2) -> str:
    """``"95% t-interval [lo, hi]"``, or the reason there is none."""
    interval = t_interval(summary)
    if interval is None:
        return no_interval_reason(summary)
    return f"95% t-interval [{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"


def judge(summary: Mapping[str, Any]) -> str | None:
    """``"above"`` / ``"below"`` (the interval lies above / below zero), ``"contains zero"``, or None (no interval)."""
    interval = t_interval(summary)
    if interval is None:
        return None
    low, high = interval
    return "above" if low > 0 else "below" if high < 0 else "contains zero"


def verdict(summary: Mapping[str, Any], subject: str, reference: str, unit: str = "points", digits: int = 2) -> str:
    """One sentence on the paired difference ``summary`` (``subject`` minus ``reference``), from its numbers only."""
    n, mean = len(summary["values"]), summary["mean"]
    side = "ahead of" if mean > 0 else "behind" if mean < 0 else "level with"
    size = f"{abs(mean):.{digits}f} {unit} " if mean != 0 else ""
    text = f"{subject} is {size}{side} {reference} on average over {seeds_text(n)}"
    call = judge(summary)
    if call is None:
        return f"{text}: {no_interval_reason(summary)}."
    text += f" ({interval_text(summary, digits)})"
    if call == "above":
        return f"{text}: the interval lies above zero, so the lead is larger than the seed-to-seed noise."
    if call == "below":
        return f"{text}: the interval lies below zero, so the gap is larger than the seed-to-seed noise."
    return f"{text}: the interval contains zero, so this run cannot tell the two apart."
