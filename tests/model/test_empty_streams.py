"""Skipping the encoders of all-zero streams changes no output of the shipped model, and really skips."""

from __future__ import annotations

import io
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from v4runtime.model.empty_streams import EMPTY_WHEN_ABSENT, find_branches, skip_empty_streams
from v4runtime.model.registry import resolve_model
from v4runtime.scanner import create_session
from v4runtime.stego import embed
from v4runtime.streams import extract_streams
from v4runtime.streams.spec import STREAM_NAMES


def _session(model: onnx.ModelProto):  # noqa: ANN202 - onnxruntime session
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _encode(im: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **save)
    return out.getvalue()


def _files() -> dict[str, bytes]:
    """Real files covering every combination the optional streams take in practice."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (200, 240, 4), dtype=np.uint8), "RGBA")
    exif = Image.Exif()
    exif[0x010F] = "V4 test camera"
    palette = rgb.quantize(64)
    transparent = palette.copy()
    transparent.info["transparency"] = 3
    return {
        "rgb png (no optional stream)": _encode(rgb, "PNG"),
        "rgba png (alpha)": _encode(rgba, "PNG"),
        "jpeg with exif (meta)": _encode(rgb, "JPEG", exif=exif.tobytes()),
        "png with a tail (meta)": _encode(rgb, "PNG") + b"appended bytes after IEND",
        "gif (palette)": _encode(palette, "GIF"),
        "png palette with transparency (alpha, palette)": _encode(transparent, "PNG"),
        "palette stego": embed(palette.convert("RGB"), "hidden in the palette indices", "palette", "PNG"),
    }


@pytest.fixture(scope="module")
def shipped() -> onnx.ModelProto:
    return onnx.load(str(resolve_model(None).path))


@pytest.fixture(scope="module")
def streams() -> dict[str, dict[str, np.ndarray]]:
    return {name: extract_streams(data).as_inputs() for name, data in _files().items()}


def test_the_four_optional_streams_are_found_in_the_shipped_model(shipped: onnx.ModelProto) -> None:
    branches = {b.stream: b for b in find_branches(shipped)}
    assert set(branches) == set(EMPTY_WHEN_ABSENT)
    # Each branch is that stream's encoder: its nodes read that input and no other.
    nodes = list(shipped.graph.node)
    for stream, branch in branches.items():
        read = {i for p in branch.positions for i in nodes[p].input}
        assert stream in read and not read & (set(STREAM_NAMES) - {stream})
    switches = [n.name for n in skip_empty_streams(shipped).graph.node if n.op_type == "If"]
    assert sorted(switches) == sorted(f"{s}__skip_if_empty" for s in EMPTY_WHEN_ABSENT)


def test_outputs_are_unchanged_on_real_files_one_by_one_and_batched(
    shipped: onnx.ModelProto, streams: dict[str, dict[str, np.ndarray]]
) -> None:
    plain, skipping = _session(shipped), _session(skip_empty_streams(shipped))
    empty = {name: [s for s in EMPTY_WHEN_ABSENT if not arrays[s].any()] for name, arrays in streams.items()}
    assert empty["rgb png (no optional stream)"] == list(EMPTY_WHEN_ABSENT)  # the skip path is exercised
    assert all(len(e) < len(EMPTY_WHEN_ABSENT) for name, e in empty.items() if "no optional" not in name)
    batches = [[arrays] for arrays in streams.values()] + [list(streams.values())]
    for batch in batches:
        feeds = {n: np.stack([arrays[n] for arrays in batch]) for n in STREAM_NAMES}
        for a, b in zip(plain.run(None, feeds), skipping.run(None, feeds), strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_an_empty_stream_takes_the_stored_embedding_and_a_present_one_runs_its_encoder(
    shipped: onnx.ModelProto, streams: dict[str, dict[str, np.ndarray]]
) -> None:
    """Poison one stored embedding with NaN: only files without that stream see it."""
    present_in = {"meta": "jpeg with exif (meta)", "alpha": "rgba png (alpha)",
                  "palette": "gif (palette)", "palette_lsb": "gif (palette)"}
    rewritten = skip_empty_streams(shipped)
    for stream, present in present_in.items():
        poisoned = onnx.ModelProto()
        poisoned.CopyFrom(rewritten)
        stored = next(t for t in poisoned.graph.initializer if t.name == f"{stream}__empty_value")
        stored.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(stored), np.nan), stored.name))
        session = _session(poisoned)
        for name in ("rgb png (no optional stream)", present):
            feeds = {n: a[None] for n, a in streams[name].items()}
            probability = session.run(["stego_probability"], feeds)[0][0]
            assert np.isnan(probability) == (name != present), (stream, name)


def _two_reader_model() -> onnx.ModelProto:
    """``alpha`` feeds the rest of the graph through two values: no single embedding stands in for it."""
    x = helper.make_tensor_value_info("alpha", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    nodes = [
        helper.make_node("Relu", ["alpha"], ["a"]),
        helper.make_node("Neg", ["alpha"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    return helper.make_model(helper.make_graph(nodes, "two", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])


def test_a_stream_read_through_two_values_is_left_whole() -> None:
    model = _two_reader_model()
    assert find_branches(model) == []
    assert [n.op_type for n in skip_empty_streams(model).graph.node] == ["Relu", "Neg", "Add"]


def test_create_session_runs_the_whole_graph_when_the_rewrite_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, shipped: onnx.ModelProto
) -> None:
    import v4runtime.model.empty_streams as module

    def broken(model: onnx.ModelProto) -> onnx.ModelProto:
        raise ValueError("unexpected graph")

    monkeypatch.setattr(module, "skip_empty_streams", broken)
    with caplog.at_level(logging.WARNING, logger="v4runtime.scanner"):
        session = create_session(resolve_model(None).path)
    assert "empty-stream skipping does not apply: unexpected graph" in caplog.text
    assert {i.name for i in session.get_inputs()} == set(STREAM_NAMES)
