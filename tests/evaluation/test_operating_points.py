"""Operating points: the TPR a model would give at other false-positive rates, and what each
method's TPR target would cost, from the evaluation's own scores."""

from __future__ import annotations

import numpy as np
import pytest

from v4runtime.evaluation import Sample, Verdict, detection_metrics
from v4runtime.operating_points import operating_points, render, threshold_for_fpr, threshold_for_tpr


def test_threshold_for_fpr_flags_exactly_the_allowed_clean_files() -> None:
    clean = np.linspace(0.05, 0.95, 10)
    for fpr, flagged in ((0.0, 0), (0.1, 1), (0.25, 2), (0.5, 5), (0.99, 9)):
        t = threshold_for_fpr(clean, fpr)
        assert np.count_nonzero(clean >= t) == flagged
        assert t > np.sort(clean)[::-1][flagged]  # just above the first score it must not flag
    assert threshold_for_fpr(clean, 1.0) == 0.0


def test_threshold_for_tpr_is_the_highest_that_keeps_the_share() -> None:
    stego = np.arange(1, 201) / 201  # 200 distinct scores
    t = threshold_for_tpr(stego, 0.995)  # at most one of 200 may be missed
    assert np.count_nonzero(stego >= t) == 199
    assert np.count_nonzero(stego >= np.nextafter(t, 1.0)) == 198  # any higher threshold misses two
    assert threshold_for_tpr(stego, 1.0) == stego.min()
    assert threshold_for_tpr(np.array([]), 0.995) is None


def _corpus() -> tuple[list[Sample], list[Verdict]]:
    """100 clean files scoring 0.00-0.99 (the model names lsb.rgb for every third); 10 lsb.rgb files >= 64 B scoring 0.50-0.95; a short payload and an
    unreadable file that must not count."""
    samples = [Sample(f"c{i}", "clean") for i in range(100)]
    verdicts = [Verdict(False, None, i / 100, top_method="lsb.rgb" if i % 3 == 0 else "palette") for i in range(100)]
    samples += [Sample(f"s{i}", "stego", "lsb.rgb", "png", 64 + i) for i in range(10)]
    verdicts += [Verdict(True, "lsb.rgb", 0.5 + 0.05 * i) for i in range(10)]
    samples += [Sample("short", "stego", "lsb.rgb", "png", 10), Sample("broken", "stego", "lsb.rgb", "png", 500)]
    verdicts += [Verdict(False, None, 0.0), Verdict(False, error="truncated")]
    return samples, verdicts


def test_operating_points_on_known_scores() -> None:
    samples, verdicts = _corpus()
    points = operating_points(samples, verdicts, min_payload=64, tpr_target=0.9, fpr_levels=(0.0, 0.05, 0.2))
    assert points is not None
    by_level = {p["fpr_level"]: p for p in points["levels"]}
    assert [by_level[level]["fpr"]["k"] for level in (0.0, 0.05, 0.2)] == [0, 5, 20]
    # clean scores reach 0.99: nothing above 0.99 flags no clean file and finds no stego file (max 0.95)
    assert by_level[0.0]["tpr_min64"]["lsb.rgb"]["k"] == 0
    # 5 clean files flagged: threshold just above 0.94, so only the 0.95 stego file is found
    assert by_level[0.05]["tpr_min64"]["lsb.rgb"]["k"] == 1
    assert by_level[0.2]["tpr_min64"]["lsb.rgb"]["k"] == 4  # above 0.79: 0.80, 0.85, 0.90, 0.95
    need = points["tpr_target_needs"]["lsb.rgb"]
    assert need["threshold"] == pytest.approx(0.55) and need["tpr"]["k"] == 9 and need["tpr"]["n"] == 10
    assert need["fpr"]["k"] == 45  # clean scores 0.55 .. 0.99
    # of those, the ones named lsb.rgb (every third: 0.57, 0.60, ..., 0.99)
    assert (need["fpr_named"]["k"], need["fpr_named"]["n"]) == (15, 100)


def test_clean_files_without_a_named_method_count_for_no_method() -> None:
    """A verdict without a method head (``top_method`` None) is in the FPR but named for no method."""
    samples, verdicts = _corpus()
    verdicts = [Verdict(v.is_stego, v.method, v.probability, v.error) for v in verdicts]
    need = operating_points(samples, verdicts, min_payload=64, tpr_target=0.9)["tpr_target_needs"]["lsb.rgb"]
    assert need["fpr"]["k"] == 45 and need["fpr_named"]["k"] == 0


def test_no_operating_points_without_scores_or_classes() -> None:
    samples, verdicts = _corpus()
    rules = [Verdict(v.is_stego, v.method, None, v.error) for v in verdicts]  # a rule-based baseline
    assert operating_points(samples, rules, min_payload=64, tpr_target=0.9) is None
    clean_only = [(s, v) for s, v in zip(samples, verdicts, strict=True) if not s.is_stego]
    assert operating_points(*zip(*clean_only, strict=True), min_payload=64, tpr_target=0.9) is None
    stego_only = [(s, v) for s, v in zip(samples, verdicts, strict=True) if s.is_stego]
    assert operating_points(*zip(*stego_only, strict=True), min_payload=64, tpr_target=0.9) is None


def test_render_starts_from_the_card_threshold() -> None:
    samples, verdicts = _corpus()
    card = detection_metrics(samples, [Verdict((v.probability or 0) >= 0.7 and v.error is None,
                                               (v.top_method or "lsb.rgb") if (v.probability or 0) >= 0.7 else None,
                                               v.probability, v.error) for v in verdicts])
    points = operating_points(samples, verdicts, min_payload=64, tpr_target=0.9, fpr_levels=(0.05,))
    text = "\n".join(render(points, 0.7, card))
    assert "| clean files flagged | threshold | lsb.rgb |" in text
    assert "| 30 (30.000%): the card's threshold | 0.7000 | 60.00% |" in text
    assert "| 5 (5.000%), at most 5.00% |" in text
    assert "| lsb.rgb | 0.5500 | 90.00% | 45 / 100 |" in text
    # the card's threshold (0.7) flags 30 clean files: 10 named lsb.rgb, 20 palette (the confusion's clean row)
    assert card["confusion"]["clean"]["palette"] == 20
    # a per-method rule: 0.55 for the 15 files named lsb.rgb above it, 0.7 for the 20 palette ones
    assert "| of them named this method | flagged with it for this method only |" in text
    assert text.splitlines()[-3].endswith("| 15 | 35 (35.000%) |")
