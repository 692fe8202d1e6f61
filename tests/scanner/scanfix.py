"""Test helpers: small real image files and a tiny, real ONNX detector with the V4 signature, for tests that must not wait for training.

It flags files with bytes after the end of the image: ``p = sigmoid(200 * mean(tail mask) - 3)``, so a
clean file scores about 0.05 and a 64-byte tail about 0.95. Method logits favour ``raw`` and are
masked by the capability mask; gate weights are a softmax over each stream's mean.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from v4runtime.streams.spec import OUTPUT_GATES, OUTPUT_METHODS, OUTPUT_STEGO, STREAM_SPECS


def build_toy_model(path: Path) -> Path:
    """Write the toy model to ``path`` and return it."""
    inputs = [
        helper.make_tensor_value_info(s.name, TensorProto.FLOAT, ["N", *s.shape]) for s in STREAM_SPECS
    ]
    inits = [
        numpy_helper.from_array(np.array([3], dtype=np.int64), "ch3"),
        numpy_helper.from_array(np.array([4], dtype=np.int64), "ch4"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "c0"),
        numpy_helper.from_array(np.array([5], dtype=np.int64), "c5"),
        numpy_helper.from_array(np.array(200.0, dtype=np.float32), "k"),
        numpy_helper.from_array(np.array(3.0, dtype=np.float32), "b"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e4, dtype=np.float32), "big"),
        numpy_helper.from_array(np.array([[0, 0, 0, 0, 3]], dtype=np.float32), "prior"),
    ]
    nodes = [
        helper.make_node("Slice", ["meta", "ch3", "ch4", "ax1"], ["tail_mask"]),
        helper.make_node("Flatten", ["tail_mask"], ["tail_flat"], axis=1),
        helper.make_node("ReduceMean", ["tail_flat"], ["tail_mean"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["tail_mean", "k"], ["z0"]),
        helper.make_node("Sub", ["z0", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], [OUTPUT_STEGO]),
        helper.make_node("Slice", ["format", "c0", "c5", "ax1"], ["cap"]),
        helper.make_node("Sub", ["cap", "one"], ["cap_m1"]),
        helper.make_node("Mul", ["cap_m1", "big"], ["mask_pen"]),
        helper.make_node("Add", ["prior", "mask_pen"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_METHODS], axis=1),
    ]
    means = []
    for s in STREAM_SPECS:
        nodes.append(helper.make_node("Flatten", [s.name], [f"{s.name}_f"], axis=1))
        nodes.append(helper.make_node("ReduceMean", [f"{s.name}_f"], [f"{s.name}_m"], axes=[1], keepdims=1))
        means.append(f"{s.name}_m")
    nodes.append(helper.make_node("Concat", means, ["gate_logits"], axis=1))
    nodes.append(helper.make_node("Softmax", ["gate_logits"], [OUTPUT_GATES], axis=1))
    outputs = [
        helper.make_tensor_value_info(OUTPUT_STEGO, TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info(OUTPUT_METHODS, TensorProto.FLOAT, ["N", 5]),
        helper.make_tensor_value_info(OUTPUT_GATES, TensorProto.FLOAT, ["N", len(STREAM_SPECS)]),
    ]
    graph = helper.make_graph(nodes, "v4-toy", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="v4-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


#: A PNG tail long enough for the toy model to flag the file (p ~ 0.99).
TAIL = b"AI42 hidden message after the end of the image\x00" * 3


def png_bytes(seed: int = 0, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    """A small noisy image encoded as PNG."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int = 1) -> bytes:
    """A small gradient image encoded as JPEG."""
    y, x = np.mgrid[0:40, 0:60]
    arr = np.stack([x * 4, y * 6, (x + y + seed) % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc: no extra dependency)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
