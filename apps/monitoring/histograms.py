"""Fixed-bucket histograms for field metrics: buckets add up, so hourly rows merge exactly across hours and robots.

Quantiles read from them are exact up to the bucket they fall in (latency: 10% wide, confidence: 0.05 wide).
"""

import math

from apps.monitoring.models import CONFIDENCE_BINS, LATENCY_BINS, LATENCY_MIN_MS, LATENCY_RATIO

_LOG_RATIO = math.log(LATENCY_RATIO)


def confidence_bin(value: float) -> int:
    return min(CONFIDENCE_BINS - 1, max(0, int(value * CONFIDENCE_BINS)))


def confidence_bin_bounds(index: int) -> tuple[float, float]:
    return index / CONFIDENCE_BINS, (index + 1) / CONFIDENCE_BINS


def latency_bin(ms: float) -> int:
    """Bin 0 holds [0, 1 ms); bin i ≥ 1 holds [1.1^(i-1), 1.1^i) ms; the last bin holds everything above."""
    if ms < LATENCY_MIN_MS:
        return 0
    index = 1 + int(math.floor(math.log(ms / LATENCY_MIN_MS) / _LOG_RATIO + 1e-12))
    return min(LATENCY_BINS - 1, index)


def latency_bin_bounds(index: int) -> tuple[float, float]:
    if index <= 0:
        return 0.0, LATENCY_MIN_MS
    low = LATENCY_MIN_MS * LATENCY_RATIO ** (index - 1)
    high = math.inf if index >= LATENCY_BINS - 1 else LATENCY_MIN_MS * LATENCY_RATIO**index
    return low, high


def hist_add(into: dict, other: dict) -> dict:
    """Add a sparse histogram ({"bin": count}) into another, in place."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + count
    return into


def list_add(into: list, other: list) -> list:
    if len(into) < len(other):
        into.extend([0] * (len(other) - len(into)))
    for i, count in enumerate(other):
        into[i] += count
    return into


def _quantile_bin(counts: list[tuple[int, int]], q: float) -> int | None:
    """Nearest-rank quantile over (bin, count) pairs sorted by bin: the bin holding the ceil(q·n)-th value."""
    total = sum(count for _, count in counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in counts:
        seen += count
        if seen >= rank:
            return index
    return counts[-1][0]


def latency_quantile(hist: dict, q: float) -> float | None:
    """Estimate (ms) of the q-quantile: the geometric middle of the bin the nearest-rank value falls in."""
    index = _quantile_bin(sorted((int(k), v) for k, v in hist.items() if v), q)
    if index is None:
        return None
    low, high = latency_bin_bounds(index)
    if index == 0:
        return LATENCY_MIN_MS / 2
    if math.isinf(high):
        return low
    return math.sqrt(low * high)


def latency_quantile_bin(hist: dict, q: float) -> int | None:
    return _quantile_bin(sorted((int(k), v) for k, v in hist.items() if v), q)


def confidence_quantile(hist: list, q: float) -> float | None:
    index = _quantile_bin([(i, c) for i, c in enumerate(hist) if c], q)
    if index is None:
        return None
    low, high = confidence_bin_bounds(index)
    return (low + high) / 2
