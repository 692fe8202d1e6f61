"""Test fixtures: small labelled image sets and hand-built ONNX detectors with the real signature.

The detectors are built with ``onnx.helper`` (no PyTorch) and follow ``v4runtime.streams.spec``: eight
named inputs with a dynamic batch axis and the three named outputs. Their stego decision is a real,
hand-set LSB detector: the mean horizontal LSB transition rate of R, G, B (smooth images flip LSBs
rarely; random LSB embedding flips half of them). A wide MLP on the other streams feeds the method
head so that most of the file is weights, as in a trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from v4runtime.streams.spec import METHODS, OUTPUT_GATES, OUTPUT_METHODS, OUTPUT_STEGO, STREAM_SPECS

SIDE = 256


def _smooth_image(rng: np.random.Generator, alpha: bool) -> np.ndarray:
    """A smooth RGB(A) picture: a gentle gradient, so LSB transitions are rare."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    channels = []
    for _ in range(3):
        gx, gy = rng.uniform(-0.08, 0.08, size=2)
        channels.append(rng.uniform(60, 190) + gx * x + gy * y)
    if alpha:
        channels.append(np.full((SIDE, SIDE), 128.0))
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def write_image_set(
    folder: Path,
    *,
    clean: int,
    stego: int,
    seed: int = 0,
    manifest: bool = True,
    alpha_outliers: int = 0,
) -> Path:
    """Write PNGs (clean, and stego with random LSBs in R, G, B) and a ``manifest.jsonl``.

    Args:
        folder: Target folder (created).
        clean: Number of clean images.
        stego: Number of ``lsb.rgb`` stego images.
        seed: Random seed.
        manifest: Write ``manifest.jsonl``.
        alpha_outliers: The first N clean images are RGBA (an activation outlier for the fragile model).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(clean + stego):
        is_stego = index >= clean
        pixels = _smooth_image(rng, alpha=index < alpha_outliers)
        if is_stego:
            bits = rng.integers(0, 2, size=pixels[..., :3].shape, dtype=np.uint8)
            pixels[..., :3] = (pixels[..., :3] & 0xFE) | bits
        name = f"{'stego' if is_stego else 'clean'}-{index:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        records.append(
            {"path": name, "label": "stego" if is_stego else "clean", "method": "lsb.rgb" if is_stego else None}
        )
    if manifest:
        with open(folder / "manifest.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
    return folder


class _Graph:
    """Tiny helper that accumulates nodes and initializers."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.name(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{out}_node", **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, kernel: tuple[int, ...], stride: tuple[int, ...], prefix: str) -> str:
        w = self.rng.normal(0, 0.5 / np.sqrt(cin * np.prod(kernel)), size=(cout, cin, *kernel)).astype(np.float32)
        b = np.zeros(cout, dtype=np.float32)
        return self.op(
            "Conv", [x, self.const(f"{prefix}_w", w), self.const(f"{prefix}_b", b)], prefix,
            kernel_shape=list(kernel), strides=list(stride),
        )

    def gemm(self, x: str, w: np.ndarray, b: np.ndarray, prefix: str) -> str:
        return self.op(
            "Gemm", [x, self.const(f"{prefix}_w", w.astype(np.float32)), self.const(f"{prefix}_b", b.astype(np.float32))],
            prefix, transB=1,
        )

    def dense(self, x: str, cin: int, cout: int, prefix: str) -> str:
        w = self.rng.normal(0, 1.0 / np.sqrt(cin), size=(cout, cin))
        return self.op("Relu", [self.gemm(x, w, np.zeros(cout), prefix)])

    def pool(self, x: str) -> str:
        return self.op("Flatten", [self.op("GlobalAveragePool", [x])])


def build_detector(path: Path, *, outlier_gain: float = 1.0, hidden: int = 768, seed: int = 0,
                   inputs: tuple = STREAM_SPECS) -> Path:
    """Write a hand-built detector ONNX model.

    Args:
        path: Output file.
        outlier_gain: Gain on the alpha feature that shares the head's input tensor with the LSB
            transition rates. 1 is harmless; 1000 makes one RGBA calibration image stretch the
            tensor's quantisation range so far that the rates quantise to zero (a fragile model).
        hidden: Width of the MLP feeding the method head (most of the weights).
        seed: Weight seed.
        inputs: Input specs (tests pass a wrong set to check the signature check).
    """
    g = _Graph(np.random.default_rng(seed))
    feats = []
    for spec in inputs:
        x = spec.name
        if len(spec.shape) == 3:
            h = g.op("Relu", [g.conv(x, spec.shape[0], 8, (4, 4), (4, 4), f"{x}_c1")])
            h = g.op("Relu", [g.conv(h, 8, 16, (4, 4), (4, 4), f"{x}_c2")])
            feats.append((g.pool(h), 16))
        elif len(spec.shape) == 2:
            h = g.op("Relu", [g.conv(x, spec.shape[0], 8, (8,), (8,), f"{x}_c1")])
            feats.append((g.pool(h), 8))
        else:
            feats.append((g.dense(x, spec.shape[0], 16, f"{x}_d"), 16))
    trunk = g.op("Concat", [f for f, _ in feats], axis=1)
    width = sum(n for _, n in feats)
    h = g.dense(trunk, width, hidden, "mlp1")
    h = g.dense(h, hidden, hidden, "mlp2")

    # LSB transitions: |lsb[c, y, x] - lsb[c, y, x+1]| for c in R, G, B as Relu(d) + Relu(-d).
    kernel = np.zeros((6, 4, 1, 2), dtype=np.float32)
    for c in range(3):
        kernel[c, c, 0] = [1, -1]
        kernel[c + 3, c, 0] = [-1, 1]
    diff = g.op("Conv", ["lsb", g.const("lsbdiff_w", kernel)], "lsbdiff", kernel_shape=[1, 2])
    rates = g.pool(g.op("Relu", [diff]))  # (N, 6); sum = 3 x transition rate
    alpha_mean = g.op("Mul", [g.pool(g.op("Slice", ["alpha", g.const("s0", np.array([0])), g.const("s1", np.array([1])), g.const("s2", np.array([1]))])),
                              g.const("gain", np.array(outlier_gain, dtype=np.float32))])
    head_in = g.op("Concat", [rates, alpha_mean], "head_in", axis=1)
    w = np.array([[40.0 / 3] * 6 + [0.0]])
    logit = g.gemm(head_in, w, np.array([-14.0]), "stego_head")
    g.nodes.append(helper.make_node("Sigmoid", [logit], ["stego_sig"], name="stego_sigmoid"))
    g.nodes.append(helper.make_node("Reshape", ["stego_sig", g.const("flat", np.array([-1]))], [OUTPUT_STEGO], name="stego_flat"))

    names = {s.name for s in inputs}
    if "format" in names:
        mask = g.op("Slice", ["format", g.const("m0", np.array([0])), g.const("m1", np.array([len(METHODS)])), g.const("m2", np.array([1]))])
        penalty = g.op("Mul", [g.op("Sub", [mask, g.const("one", np.array(1.0, dtype=np.float32))]), g.const("big", np.array(1e4, dtype=np.float32))])
        logits = g.op("Add", [g.gemm(h, g.rng.normal(0, 0.05, (len(METHODS), hidden)), np.zeros(len(METHODS)), "method_head"), penalty])
    else:
        logits = g.gemm(h, g.rng.normal(0, 0.05, (len(METHODS), hidden)), np.zeros(len(METHODS)), "method_head")
    g.nodes.append(helper.make_node("Softmax", [logits], [OUTPUT_METHODS], name="method_softmax", axis=1))
    gates = g.gemm(trunk, g.rng.normal(0, 0.05, (8, width)), np.zeros(8), "gate")
    g.nodes.append(helper.make_node("Softmax", [gates], [OUTPUT_GATES], name="gate_softmax", axis=1))

    graph = helper.make_graph(
        g.nodes,
        "fixture-detector",
        [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, ["N", *s.shape]) for s in inputs],
        [
            helper.make_tensor_value_info(OUTPUT_STEGO, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(OUTPUT_METHODS, TensorProto.FLOAT, ["N", len(METHODS)]),
            helper.make_tensor_value_info(OUTPUT_GATES, TensorProto.FLOAT, ["N", 8]),
        ],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="v4-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
