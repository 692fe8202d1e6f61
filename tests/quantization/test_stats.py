"""Wilson and paired-difference intervals."""

from __future__ import annotations

import pytest

from v4runtime.quantization.stats import paired_difference_interval, wilson_interval


def test_wilson_known_values() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_paired_interval_reduces_to_independent_hybrid_when_uncorrelated() -> None:
    # (a, b, c, d) = (5, 5, 5, 5): phi = 0, so Newcombe's paired interval equals the independent
    # hybrid score interval built from the two Wilson intervals of 10/20.
    delta, low, high = paired_difference_interval(5, 5, 5, 5)
    lo, hi = wilson_interval(10, 20)
    half_low = ((0.5 - lo) ** 2 + (hi - 0.5) ** 2) ** 0.5
    assert delta == 0.0
    assert (low, high) == (pytest.approx(-half_low), pytest.approx(half_low))


def test_positive_correlation_narrows_the_interval() -> None:
    # Same marginal rates (30% vs 20%), once strongly paired and once independent-looking.
    paired = paired_difference_interval(20, 10, 0, 70)
    loose = paired_difference_interval(6, 24, 14, 56)
    assert paired[0] == pytest.approx(loose[0]) == pytest.approx(0.1)
    assert paired[2] - paired[1] < loose[2] - loose[1]
    assert paired[1] > 0.0  # ten discordant pairs all one way: the difference is resolved


def test_paired_interval_properties() -> None:
    delta, low, high = paired_difference_interval(0, 0, 0, 100)
    assert delta == 0.0 and low < 0.0 < high
    wide = paired_difference_interval(0, 1, 0, 99)
    narrow = paired_difference_interval(0, 10, 0, 990)
    assert wide[0] == pytest.approx(narrow[0])
    assert narrow[2] - narrow[1] < wide[2] - wide[1]
    d1, l1, h1 = paired_difference_interval(3, 7, 2, 88)
    d2, l2, h2 = paired_difference_interval(3, 2, 7, 88)
    assert (d1, l1, h1) == (pytest.approx(-d2), pytest.approx(-h2), pytest.approx(-l2))
