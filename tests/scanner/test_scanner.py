"""Scanner: one session per scanner, real ONNX inference, errors as results, batches and workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scanfix import TAIL, jpeg_bytes, png_bytes

import v4runtime.scanner as scanner_mod
from v4runtime.errors import ConfigError, ModelError
from v4runtime.scanner import Scanner
from v4runtime.streams.spec import METHODS, STREAM_NAMES


def test_scan_clean_and_tail(toy_model_path: Path) -> None:
    s = Scanner(toy_model_path)
    clean = s.scan(png_bytes(0))
    assert clean.error is None and clean.format == "PNG"
    assert not clean.is_stego and clean.method is None
    assert clean.probability is not None and clean.probability < 0.1
    stego = s.scan(png_bytes(0) + TAIL)
    assert stego.is_stego and stego.method == "raw"
    assert stego.probability is not None and stego.probability > 0.9
    assert set(stego.method_probabilities) == set(METHODS)
    assert sum(stego.method_probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert list(stego.explanation) == list(STREAM_NAMES)
    assert sum(stego.explanation.values()) == pytest.approx(1.0, abs=1e-5)
    t = stego.timings
    assert t.read_ms >= 0 and t.streams_ms > 0 and t.inference_ms > 0
    assert t.total_ms == pytest.approx(t.read_ms + t.streams_ms + t.inference_ms)


def test_capability_mask_reaches_the_method_output(toy_model_path: Path) -> None:
    """A JPEG cannot carry alpha/palette/lsb.rgb: those get (near) zero probability."""
    r = Scanner(toy_model_path).scan(jpeg_bytes())
    assert r.format == "JPEG"
    for method in ("alpha", "palette", "lsb.rgb"):
        assert r.method_probabilities[method] < 1e-3


def test_threshold_decides(toy_model_path: Path) -> None:
    data = png_bytes(0)
    assert Scanner(toy_model_path, threshold=0.0).scan(data).is_stego
    assert not Scanner(toy_model_path, threshold=1.0).scan(data + TAIL).is_stego
    with pytest.raises(ConfigError, match="threshold"):
        Scanner(toy_model_path, threshold=1.5)


def test_default_threshold_comes_from_the_card(toy_model_path: Path) -> None:
    s = Scanner(toy_model_path)
    assert s.threshold == s.card.threshold == 0.5
    assert s.model_name == "toy"


def test_bad_inputs_become_results(toy_model_path: Path, tmp_path: Path) -> None:
    s = Scanner(toy_model_path)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(0)[:100])
    cases = {b"": "empty", b"hello, not an image": "not_an_image"}
    for data, reason in cases.items():
        r = s.scan(data)
        assert r.error and r.error_reason == reason and not r.is_stego and r.probability is None
    r = s.scan(truncated)
    assert r.error and r.error_reason in ("truncated", "corrupt") and r.path == str(truncated)
    r = s.scan(tmp_path / "missing.png")
    assert r.error and r.error_reason == "not_found"


def test_one_session_per_scanner(toy_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original reloaded the model for every file; the scanner opens exactly one detection session
    (plus, while it opens it, one small probe that computes the embeddings of empty streams)."""
    import onnxruntime as ort

    created: list[Any] = []
    real = ort.InferenceSession

    def counting(*args: object, **kwargs: object) -> object:
        session = real(*args, **kwargs)
        created.append(session)
        return session

    monkeypatch.setattr(ort, "InferenceSession", counting)
    before = scanner_mod.SESSIONS_CREATED
    s = Scanner(toy_model_path)
    opened = len(created)
    files = [png_bytes(i) for i in range(6)]
    s.scan(files[0])
    s.scan_many(files, workers=2, batch_size=2)
    s.scan_many(files, workers=1)
    detection = [sess for sess in created if {i.name for i in sess.get_inputs()} == set(STREAM_NAMES)]
    assert len(detection) == 1 and detection[0] is s.session
    assert len(created) == opened <= 2  # nothing opened while scanning
    assert scanner_mod.SESSIONS_CREATED - before == 1


def test_scan_many_keeps_order_and_errors(toy_model_path: Path) -> None:
    s = Scanner(toy_model_path)
    items = [png_bytes(0), b"junk", png_bytes(1) + TAIL, jpeg_bytes(), b""]
    for workers, batch in ((1, 16), (2, 2), (3, 1)):
        results = s.scan_many(items, workers=workers, batch_size=batch)
        assert len(results) == len(items)
        assert [r.error is not None for r in results] == [False, True, False, False, True]
        assert [r.is_stego for r in results] == [False, False, True, False, False]


def test_batched_inference_matches_single(toy_model_path: Path) -> None:
    s = Scanner(toy_model_path)
    items = [png_bytes(i) + (TAIL[: 20 * i]) for i in range(5)]
    single = [s.scan(x).probability for x in items]
    batched = [r.probability for r in s.scan_many(items, batch_size=5)]
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_process_workers(toy_model_path: Path, image_dir: Path) -> None:
    """Process workers each open their own (single) session and give the same verdicts."""
    s = Scanner(toy_model_path)
    paths = sorted(str(p) for p in image_dir.rglob("*") if p.is_file())
    threads = s.scan_many(paths, workers=2, batch_size=1)
    procs = s.scan_many(paths, workers=2, batch_size=1, executor="process")
    again = s.scan_many(paths, workers=2, batch_size=1, executor="process")  # the pool is reused
    s.close()
    assert [r.probability for r in again] == [r.probability for r in procs]
    assert [(r.path, r.is_stego, r.error_reason) for r in procs] == [
        (r.path, r.is_stego, r.error_reason) for r in threads
    ]
    with pytest.raises(ConfigError, match="executor"):
        s.scan_many(paths, executor="fibres")


def test_zeroed_stream_changes_the_verdict(toy_model_path: Path) -> None:
    """The ablation switch feeds a stream as zeros: without `meta` the toy model sees no tail."""
    data = png_bytes(0) + TAIL
    assert Scanner(toy_model_path).scan(data).is_stego
    assert not Scanner(toy_model_path, zero_streams=["meta"]).scan(data).is_stego
    with pytest.raises(ConfigError, match="nope"):
        Scanner(toy_model_path, zero_streams=["nope"])


def test_model_errors(tmp_path: Path, toy_model_path: Path) -> None:
    with pytest.raises(ModelError):
        Scanner(tmp_path / "absent.onnx")
    bad = tmp_path / "toy.onnx"
    bad.write_bytes(toy_model_path.read_bytes() + b"\x00")
    (tmp_path / "toy.card.json").write_text(toy_model_path.with_name("toy.card.json").read_text())
    with pytest.raises(ModelError, match="sha256"):
        Scanner(bad)


def test_to_dict_is_json_ready(toy_model_path: Path) -> None:
    import json

    d = Scanner(toy_model_path).scan(png_bytes(3)).to_dict()
    assert json.loads(json.dumps(d))["timings"]["total_ms"] > 0
    assert {"path", "is_stego", "probability", "method", "error", "explanation"} <= set(d)
