"""Log-spaced latency buckets: the histogram kept per minute and the percentile estimate read from it.

Bucket 0 holds latencies up to ``BASE_MS``; bucket ``i`` holds ``(BASE_MS * RATIO**(i-1), BASE_MS * RATIO**i]``;
the last bucket is the overflow. With a ratio of 1.25 an interpolated percentile is within about 12% of the
exact one, and a minute's histogram is a fixed number of integer columns that add up across minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BASE_MS = 0.05
RATIO = 1.25
#: Number of finite upper bounds; bucket ``N_BOUNDS`` is the overflow (> about 64 s).
N_BOUNDS = 64
N_BUCKETS = N_BOUNDS + 1
#: Upper bound (ms) of each finite bucket.
BOUNDS_MS: tuple[float, ...] = tuple(BASE_MS * RATIO**i for i in range(N_BOUNDS))
_LOG_RATIO = math.log(RATIO)


def bucket_index(latency_ms: float) -> int:
    """Index of the bucket holding ``latency_ms``."""
    if latency_ms <= BASE_MS:
        return 0
    idx = math.ceil(math.log(latency_ms / BASE_MS) / _LOG_RATIO - 1e-9)
    return idx if idx < N_BOUNDS else N_BOUNDS


def percentile(hist: Sequence[int], q: float, max_ms: float | None = None) -> float | None:
    """Estimate the ``q`` quantile (0..1) from bucket counts; ``None`` when empty.

    Interpolates geometrically inside the bucket, and never reports more than the largest value seen.
    """
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    cumulative = 0
    for i, count in enumerate(hist):
        if count and cumulative + count >= rank:
            if i == 0:
                value = BASE_MS * max(rank, 0.0) / count
            elif i >= N_BOUNDS:
                value = BOUNDS_MS[-1]
            else:
                lo, hi = BOUNDS_MS[i - 1], BOUNDS_MS[i]
                frac = (rank - cumulative) / count
                value = lo * (hi / lo) ** frac
            if max_ms is not None:
                value = min(value, max_ms)
            return value
        cumulative += count
    return max_ms if max_ms is not None else BOUNDS_MS[-1]  # pragma: no cover - rounding only
