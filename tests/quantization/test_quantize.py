"""``quantize_model``: QDQ S8S8 output, metadata, sizes, and no output on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from quant_fixtures import build_detector, write_image_set

from v4runtime.errors import QuantizationError
from v4runtime.quantization import quantize_model, read_quantization_metadata
from v4runtime.quantization.feeds import image_feeds
from v4runtime.quantization.quantize import sha256_file
from v4runtime.streams.spec import OUTPUT_STEGO, STREAM_SPECS


def _dq_weight_scales(model: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 weight, scale) of every DequantizeLinear on a constant weight matrix/kernel."""
    proto = onnx.load(str(model))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return [
        (inits[n.input[0]], inits[n.input[1]])
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8
        and inits[n.input[0]].ndim >= 2
    ]


def test_output_is_qdq_s8s8_per_channel_and_much_smaller(robust: Path, robust_int8: Path) -> None:
    proto = onnx.load(str(robust_int8))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops  # QDQ, not QLinearConv
    zero_points = [
        numpy_helper.to_array(t) for t in proto.graph.initializer if t.name.endswith("zero_point")
    ]
    dtypes = {z.dtype for z in zero_points}
    assert np.dtype(np.int8) in dtypes and np.dtype(np.uint8) not in dtypes  # S8S8 (int32 only for biases)
    scales = _dq_weight_scales(robust_int8)
    assert scales and all(s.size == w.shape[0] for w, s in scales)  # one scale per output channel
    ratio = robust.stat().st_size / robust_int8.stat().st_size
    assert ratio >= 3.5


def test_metadata_records_settings_and_exact_sizes(robust: Path, robust_int8: Path) -> None:
    meta = read_quantization_metadata(robust_int8)
    assert meta["format"] == "QDQ" and meta["activation_type"] == meta["weight_type"] == "QInt8"
    assert meta["per_channel"] == "true" and meta["calibration_method"] == "minmax"
    assert (meta["calibration_clean"], meta["calibration_stego"]) == ("12", "12")
    assert int(meta["int8_size_bytes"]) == robust_int8.stat().st_size
    assert int(meta["fp32_size_bytes"]) == robust.stat().st_size
    assert meta["fp32_sha256"] == sha256_file(robust)
    assert meta["float_head"] == "true"
    assert "stego_sigmoid" in json.loads(meta["excluded_nodes"])
    assert read_quantization_metadata(robust) == {}


def test_int8_runs_and_tracks_fp32(robust: Path, robust_int8: Path, images: Path) -> None:
    feeds = image_feeds(next(images.glob("stego-*.png")))
    p32 = ort.InferenceSession(str(robust)).run([OUTPUT_STEGO], feeds)[0]
    p8 = ort.InferenceSession(str(robust_int8)).run([OUTPUT_STEGO], feeds)[0]
    assert p32.shape == p8.shape == (1,)
    assert abs(float(p32[0]) - float(p8[0])) < 0.05


def test_no_per_channel_entropy_and_u8_activations(robust: Path, images: Path, tmp_path: Path) -> None:
    out = quantize_model(robust, images, tmp_path / "m.onnx", per_channel=False, method="entropy", max_images=8,
                         activations="u8")
    assert all(s.size == 1 for _, s in _dq_weight_scales(out.output))
    meta = read_quantization_metadata(out.output)
    assert (meta["per_channel"], meta["calibration_method"], meta["calibration_images"]) == ("false", "entropy", "8")
    assert meta["activation_type"] == "QUInt8"
    zero_points = [numpy_helper.to_array(t) for t in onnx.load(str(out.output)).graph.initializer
                   if t.name.endswith("zero_point")]
    assert np.dtype(np.uint8) in {z.dtype for z in zero_points}  # U8 activations, S8 weights


def test_s16_activations_keep_int8_weights_and_track_fp32_closer(robust: Path, images: Path, tmp_path: Path) -> None:
    out = quantize_model(robust, images, tmp_path / "a16w8.onnx", max_images=8, activations="s16")
    meta = read_quantization_metadata(out.output)
    assert (meta["activation_type"], meta["weight_type"]) == ("QInt16", "QInt8")
    scales = _dq_weight_scales(out.output)
    assert scales and all(w.dtype == np.int8 for w, _ in scales)  # weights stay INT8: the size ratio holds
    zero_points = {numpy_helper.to_array(t).dtype for t in onnx.load(str(out.output)).graph.initializer
                   if t.name.endswith("zero_point")}
    assert np.dtype(np.int16) in zero_points
    feeds = image_feeds(next(images.glob("stego-*.png")))
    p32 = ort.InferenceSession(str(robust)).run([OUTPUT_STEGO], feeds)[0]
    p16 = ort.InferenceSession(str(out.output)).run([OUTPUT_STEGO], feeds)[0]
    assert abs(float(p32[0]) - float(p16[0])) < 0.01


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """An existing output file that a failed run must leave untouched."""
    path = tmp_path / "out" / "int8.onnx"
    path.parent.mkdir()
    path.write_bytes(b"previous model")
    return path


def _assert_untouched(sentinel: Path) -> None:
    assert sentinel.read_bytes() == b"previous model"
    assert [p.name for p in sentinel.parent.iterdir()] == [sentinel.name]  # no temp leftovers


def test_wrong_model_inputs(tmp_path: Path, images: Path, sentinel: Path) -> None:
    wrong = build_detector(tmp_path / "wrong.onnx", inputs=STREAM_SPECS[:-1])
    with pytest.raises(QuantizationError, match="missing \\['content'\\]"):
        quantize_model(wrong, images, sentinel)
    _assert_untouched(sentinel)
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(QuantizationError, match="not a readable ONNX model"):
        quantize_model(tmp_path / "garbage.onnx", images, sentinel)
    _assert_untouched(sentinel)


def test_empty_one_class_and_unlabelled_calibration(robust: Path, tmp_path: Path, sentinel: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QuantizationError, match="holds no images"):
        quantize_model(robust, empty, sentinel)
    one_class = write_image_set(tmp_path / "one", clean=0, stego=3)
    with pytest.raises(QuantizationError, match="stego images only"):
        quantize_model(robust, one_class, sentinel)
    unlabelled = write_image_set(tmp_path / "unlabelled", clean=2, stego=2, manifest=False)
    with pytest.raises(QuantizationError, match="manifest.jsonl"):
        quantize_model(robust, unlabelled, sentinel)
    _assert_untouched(sentinel)
    result = quantize_model(robust, unlabelled, sentinel, allow_unlabelled=True)
    assert read_quantization_metadata(result.output)["calibration_images"] == "4"


def test_unreadable_image_fails_midway_without_output(robust: Path, images: Path, tmp_path: Path, sentinel: Path) -> None:
    broken = write_image_set(tmp_path / "broken", clean=2, stego=2)
    (broken / "stego-003.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(QuantizationError, match="stego-003.png"):
        quantize_model(robust, broken, sentinel)
    _assert_untouched(sentinel)


def test_int8_card_lets_the_registry_load_the_int8_model(robust: Path, images: Path, tmp_path: Path) -> None:
    from v4runtime.model.card import build_card, read_card, write_card
    from v4runtime.model.registry import resolve_model

    fp32 = tmp_path / "det.onnx"
    fp32.write_bytes(robust.read_bytes())
    write_card(build_card(fp32, name="det", threshold=0.42), tmp_path / "det.card.json")
    result = quantize_model(fp32, images, tmp_path / "det.int8.onnx", max_images=6)
    assert result.card == tmp_path / "det.int8.card.json"
    resolved = resolve_model(result.output)  # sha256 and signature verified against the card
    assert resolved.card.threshold == 0.42 and resolved.card.name == "det.int8"
    assert resolved.card.training["quantization"]["fp32_sha256"] == sha256_file(fp32)
    assert read_card(result.card).metrics == {}


def test_output_may_not_overwrite_the_fp32_model(robust: Path, images: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    copy.write_bytes(robust.read_bytes())
    with pytest.raises(QuantizationError, match="is the FP32 model itself"):
        quantize_model(copy, images, tmp_path / "." / "model.onnx")
    assert copy.read_bytes() == robust.read_bytes()
