"""Threshold calibration: the choice rule, a real scan of a corpus, and the card update."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from v4runtime.cli import main
from v4runtime.errors import ConfigError
from v4runtime.model.calibration import calibrate, choose_threshold, write_calibration
from v4runtime.model.card import card_path, read_card
from v4runtime.scanner import Scanner


def test_threshold_sits_just_above_the_highest_clean_score_that_must_stay_clean() -> None:
    scores = np.array([0.1, 0.2, 0.9, 0.95], dtype=np.float32)
    strict = choose_threshold(scores, target_fpr=0.0)
    assert strict > 0.95 and strict == pytest.approx(0.95, abs=1e-6)
    one_allowed = choose_threshold(scores, target_fpr=0.25)  # 1 of 4 may be flagged
    assert 0.9 < one_allowed < 0.95
    assert (scores >= one_allowed).sum() == 1
    assert choose_threshold(scores, target_fpr=0.0, floor=0.99) == 0.99  # never below the floor
    assert choose_threshold(np.ones(3, np.float32), target_fpr=0.0) == 1.0  # capped at 1


def test_allowed_count_survives_binary_floating_point() -> None:
    scores = np.linspace(0.999, 0.001, 10000).astype(np.float32)  # 0.0003 * 10000 is 2.9999999999999996
    threshold = choose_threshold(scores, target_fpr=0.0003)
    assert (scores >= threshold).sum() == 3


@pytest.mark.parametrize("target", [-0.1, 1.0])
def test_bad_targets_are_refused(target: float) -> None:
    with pytest.raises(ConfigError, match="target-fpr"):
        choose_threshold(np.array([0.5], np.float32), target)


def test_a_bad_target_is_refused_before_any_scanning(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="target-fpr"):  # not "corpus folder not found": checked first
        calibrate(None, tmp_path / "missing", target_fpr=2.0)


def test_no_clean_scores_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no readable clean files"):
        choose_threshold(np.array([], np.float32), 0.001)


@pytest.fixture
def model_copy(toy_model_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "toy.onnx"
    shutil.copy(toy_model_path, path)
    shutil.copy(card_path(toy_model_path), card_path(path))
    return path


def test_calibrate_scans_the_corpus_and_the_card_keeps_the_choice(model_copy: Path, corpus: Path) -> None:
    result = calibrate(model_copy, corpus, target_fpr=0.0, floor=0.0)
    with Scanner(model=model_copy, threshold=0.0) as scanner:
        clean = [scanner.scan(p).probability for p in sorted(corpus.glob("clean-*"))]
    assert result.clean == 6 and result.stego == 4 and result.unreadable == 1  # broken.png is left out
    assert result.threshold > max(clean) and result.false_positives == 0 and result.fpr == 0.0
    assert result.tpr is not None and 0.0 <= result.tpr <= 1.0
    write_calibration(model_copy, result, "v4runtime calibrate --data x")
    card = read_card(card_path(model_copy))
    assert card.threshold == result.threshold
    assert card.calibration["command"] == "v4runtime calibrate --data x" and card.calibration["clean"] == 6
    with Scanner(model=model_copy) as scanner:  # the sha256 check still passes; the new threshold applies
        assert scanner.threshold == result.threshold


def test_calibrate_command_prints_and_writes(model_copy: Path, corpus: Path, capsys) -> None:
    before = read_card(card_path(model_copy)).threshold
    assert main(["calibrate", "--data", str(corpus), "--model", str(model_copy), "--target-fpr", "0"]) == 0
    out = capsys.readouterr().out
    assert "threshold" in out and "clean 6: 0 at or above it" in out
    assert read_card(card_path(model_copy)).threshold == before  # printing only, without --write
    assert main(["calibrate", "--data", str(corpus), "--model", str(model_copy), "--target-fpr", "0", "--write"]) == 0
    assert "updated" in capsys.readouterr().out
    assert read_card(card_path(model_copy)).calibration["target_fpr"] == 0.0
