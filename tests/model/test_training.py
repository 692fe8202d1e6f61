"""Training loop: reproducibility, class balancing inputs, threshold calibration, scoring."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from v4runtime.errors import ConfigError  # noqa: E402
from v4runtime.model.data import StreamSet, split  # noqa: E402
from v4runtime.model.training import (  # noqa: E402
    DEFAULT_THRESHOLD,
    MAX_THRESHOLD,
    TrainConfig,
    calibrate_threshold,
    score,
    train,
    unsignalled_factor,
)
from v4runtime.streams.spec import STREAM_SPECS  # noqa: E402


def _synthetic(n: int = 40, seed: int = 0) -> StreamSet:
    rng = np.random.default_rng(seed)
    arrays = {s.name: (rng.integers(0, 256, (n, *s.shape), dtype=np.uint8) if len(s.shape) >= 2
                       else rng.random((n, *s.shape), dtype=np.float32)) for s in STREAM_SPECS}
    labels = (np.arange(n) % 2).astype(np.float32)
    methods = np.where(labels > 0, np.arange(n) % 5, -1)
    arrays["format"][:, :5] = 1.0
    return StreamSet(arrays, labels, methods, np.zeros(n, np.int64), ["PNG"] * n)


def _weights(model) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    data = _synthetic()
    config = TrainConfig(epochs=1, batch_size=16, seed=3)
    a = train(data, config, log=lambda _: None)
    b = train(data, config, log=lambda _: None)
    c = train(data, TrainConfig(epochs=1, batch_size=16, seed=4), log=lambda _: None)
    assert np.array_equal(_weights(a.model), _weights(b.model))
    assert not np.array_equal(_weights(a.model), _weights(c.model))
    assert a.history == b.history and len(a.history) == 1


def test_split_is_stratified_and_seeded() -> None:
    data = _synthetic(n=100)
    train_idx, val_idx = split(data, 0.2, seed=1)
    assert set(train_idx).isdisjoint(val_idx) and len(train_idx) + len(val_idx) == 100
    for stratum in np.unique(data.methods):
        assert (data.methods[val_idx] == stratum).any()
    assert np.array_equal(val_idx, split(data, 0.2, seed=1)[1])
    assert not np.array_equal(val_idx, split(data, 0.2, seed=2)[1])
    with pytest.raises(ConfigError, match="val-fraction"):
        split(data, 1.5, seed=1)


def test_threshold_calibration() -> None:
    labels = np.array([0, 0, 1, 1], np.float32)
    assert calibrate_threshold(np.array([0.1, 0.2, 0.9, 0.8], np.float32), labels) == DEFAULT_THRESHOLD
    raised = calibrate_threshold(np.array([0.1, 0.7, 0.9, 0.8], np.float32), labels)
    assert 0.7 < raised < 0.7001
    assert calibrate_threshold(np.array([0.1, 0.9999, 0.9, 0.8], np.float32), labels) == MAX_THRESHOLD


def test_score_counts_fpr_tpr_and_method_accuracy() -> None:
    probs = np.array([0.9, 0.1, 0.8, 0.2, 0.7], np.float32)
    labels = np.array([0, 0, 1, 1, 1], np.float32)
    methods = np.array([-1, -1, 2, 2, 0])
    mprobs = np.eye(5, dtype=np.float32)[[0, 0, 2, 2, 1]]
    s = score(probs, mprobs, labels, methods, 0.5)
    assert s.fpr == 0.5 and s.tpr == pytest.approx(2 / 3)
    assert s.tpr_by_method == {"alpha": 1.0, "lsb.rgb": 0.5}
    assert s.method_accuracy == 0.5  # lsb.rgb right, alpha (predicted palette) wrong


def test_training_needs_both_classes() -> None:
    data = _synthetic()
    data.labels[:] = 1.0
    with pytest.raises(ConfigError, match="both clean and stego"):
        train(data, TrainConfig(epochs=1), log=lambda _: None)


def test_unsignalled_weight_changes_the_fit() -> None:
    data = _synthetic()
    data.unsignalled = (data.labels > 0) & (np.arange(len(data)) % 4 == 1)
    full = train(data, TrainConfig(epochs=1, batch_size=16, unsignalled_weight=1.0), log=lambda _: None)
    light = train(data, TrainConfig(epochs=1, batch_size=16, unsignalled_weight=0.1), log=lambda _: None)
    assert not np.array_equal(_weights(full.model), _weights(light.model))


def test_structured_z_restores_the_full_weight_of_payloads_that_erased_structure() -> None:
    data = _synthetic()
    data.unsignalled = (data.labels > 0) & (np.arange(len(data)) % 4 == 1)
    data.cover_lsb_z = np.where(np.arange(len(data)) % 8 == 1, 30.0, 1.0).astype(np.float32)
    structured = data.unsignalled & (np.arange(len(data)) % 8 == 1)
    unrecorded = np.flatnonzero(structured)[0]
    data.cover_lsb_z[unrecorded] = np.nan  # not recorded: counts as unstructured
    structured[unrecorded] = False
    plain = unsignalled_factor(data, TrainConfig(unsignalled_weight=0.1))
    assert np.array_equal(plain, np.where(data.unsignalled, 0.1, 1.0))
    split_weights = unsignalled_factor(data, TrainConfig(unsignalled_weight=0.1, structured_z=8.0,
                                                         structured_weight=0.6))
    assert np.array_equal(split_weights, np.where(structured, 0.6, np.where(data.unsignalled, 0.1, 1.0)))
    assert structured.any() and (data.unsignalled & ~structured).any()
    light = train(data, TrainConfig(epochs=1, batch_size=16, unsignalled_weight=0.1), log=lambda _: None)
    mixed = train(data, TrainConfig(epochs=1, batch_size=16, unsignalled_weight=0.1, structured_z=8.0),
                  log=lambda _: None)
    assert not np.array_equal(_weights(light.model), _weights(mixed.model))


def test_stream_dropout_is_seeded_and_changes_the_fit() -> None:
    data = _synthetic()
    plain = train(data, TrainConfig(epochs=1, batch_size=16), log=lambda _: None)
    a = train(data, TrainConfig(epochs=1, batch_size=16, stream_dropout=0.5), log=lambda _: None)
    b = train(data, TrainConfig(epochs=1, batch_size=16, stream_dropout=0.5), log=lambda _: None)
    assert np.array_equal(_weights(a.model), _weights(b.model))
    assert not np.array_equal(_weights(a.model), _weights(plain.model))
