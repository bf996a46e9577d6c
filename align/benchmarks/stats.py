"""Figures with their standard errors (pure functions)."""

from __future__ import annotations

import math
from typing import Sequence


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); one value has stderr 0."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def ratio_stderr(numerators: Sequence[float], denominators: Sequence[float]) -> tuple[float, float]:
    """sum(a) / sum(b) over documents (bits per byte over a corpus) and its standard error by the
    delta method: documents are the sampling unit, long ones weigh more."""
    n = len(numerators)
    total_a, total_b = sum(numerators), sum(denominators)
    ratio = total_a / total_b
    if n < 2:
        return ratio, 0.0
    mean_b = total_b / n
    residual = sum((a - ratio * b) ** 2 for a, b in zip(numerators, denominators)) / (n - 1)
    return ratio, math.sqrt(residual / n) / mean_b
