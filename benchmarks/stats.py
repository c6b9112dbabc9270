"""Medians and spreads: how the benchmark reports a figure it measured several times."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return round(float(statistics.median(values)), 4)


def spread(values: Sequence[float]) -> dict[str, float | int] | None:
    """min, max, and how far they lie from the median, as a fraction of it."""
    if not values:
        return None
    mid = statistics.median(values)
    low, high = min(values), max(values)
    return {
        "n": len(values),
        "min": round(low, 4),
        "max": round(high, 4),
        "below": round((mid - low) / mid, 3) if mid else 0.0,
        "above": round((high - mid) / mid, 3) if mid else 0.0,
    }
