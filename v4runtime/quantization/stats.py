"""Interval estimates for rates and for paired rate differences.

The gate compares two models on the same images, so the FPR difference is a difference of two
*paired* proportions; Newcombe's hybrid score interval (method 10 of Newcombe 1998) accounts for the
pairing, which a difference of two independent Wilson intervals would not.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    Args:
        successes: Number of successes.
        n: Number of trials (0 gives the uninformative interval (0, 1)).
        z: Normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)`` as fractions in [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(
    both: int, only_first: int, only_second: int, neither: int, z: float = Z95
) -> tuple[float, float, float]:
    """Difference of two paired proportions with Newcombe's hybrid score interval.

    For each item, the first and second classifier each say yes or no; the counts are the four
    cells of the 2x2 table. The difference is ``rate(first) - rate(second)``.

    Args:
        both: Items both said yes to.
        only_first: Items only the first said yes to.
        only_second: Items only the second said yes to.
        neither: Items neither said yes to.
        z: Normal quantile.

    Returns:
        ``(difference, low, high)`` as fractions.
    """
    n = both + only_first + only_second + neither
    if n == 0:
        return 0.0, -1.0, 1.0
    p1 = (both + only_first) / n
    p2 = (both + only_second) / n
    l1, u1 = wilson_interval(both + only_first, n, z)
    l2, u2 = wilson_interval(both + only_second, n, z)
    denom = math.sqrt(
        (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    )
    phi = (both * neither - only_first * only_second) / denom if denom else 0.0
    delta = p1 - p2
    low = delta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = delta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return delta, max(-1.0, low), min(1.0, high)
