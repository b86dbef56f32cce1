"""Summaries over seeds: mean, sample std and per-seed values, and the Student-t interval of a mean.

The one home of these two for the whole package: the protocol's paired differences, the dark-knowledge
experiment's and the cache study's rows are all summarised and given intervals here.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from scipy.stats import t as student_t

__all__ = ["summarize", "t_interval"]


def summarize(values: Sequence[float]) -> dict:
    """``{"mean", "std", "values"}`` of per-seed values (sample std; 0 for a single value)."""
    values = list(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def t_interval(summary: Mapping[str, Any], confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval for the mean of ``summary["values"]`` (needs two or more values)."""
    n = len(summary["values"])
    if n < 2:
        raise ValueError("A t-interval needs at least two seeds.")
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * summary["std"] / math.sqrt(n)
    return summary["mean"] - half, summary["mean"] + half
