"""The contract between stream extraction and the detector.

Shapes and dtypes of the eight streams are fixed here, in one place, and used by the stream
extractor (which must produce exactly these), the model (whose ONNX inputs have these names and
shapes, plus a leading batch axis) and the scanner. The V4 Architecture Guide documents each stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The five embedding methods, in the order of the model's method head and the capability mask.
METHODS: tuple[str, ...] = ("alpha", "palette", "lsb.rgb", "exif", "raw")

#: Side of the square view used for every plane-shaped stream (top-left window of the image).
VIEW = 256

#: Length of each byte window (EXIF, tail) in the ``meta`` stream.
META_WINDOW = 2048

#: Length of the ``format`` and ``content`` feature vectors.
FORMAT_FEATURES = 32
CONTENT_FEATURES = 166


@dataclass(frozen=True)
class StreamSpec:
    """Name, shape (without batch axis) and dtype of one model input."""

    name: str
    shape: tuple[int, ...]
    dtype: type = np.float32
    summary: str = ""


#: The eight streams, in the order of the model's inputs.
STREAM_SPECS: tuple[StreamSpec, ...] = (
    StreamSpec("pixel", (4, VIEW, VIEW), summary="R, G, B in [0, 1] of the top-left window; validity mask"),
    StreamSpec("meta", (4, META_WINDOW), summary="EXIF bytes/255 and mask; bytes after the image end/255 and mask"),
    StreamSpec("alpha", (3, VIEW, VIEW), summary="alpha/255, alpha LSB, validity mask"),
    StreamSpec("lsb", (4, VIEW, VIEW), summary="LSB of R, G, B; validity mask"),
    StreamSpec("palette", (4, 256), summary="palette entries R, G, B / 255 and a presence flag"),
    StreamSpec("palette_lsb", (2, VIEW, VIEW), summary="LSB of palette indices; validity mask"),
    StreamSpec("format", (FORMAT_FEATURES,), summary="bounded format features; [0:5] is the capability mask"),
    StreamSpec("content", (CONTENT_FEATURES,), summary="bit-stream and LSB statistics in embedding order"),
)

STREAM_NAMES: tuple[str, ...] = tuple(s.name for s in STREAM_SPECS)

#: ``format[CAPABILITY_SLICE]`` is the capability mask (1.0 where the file can carry the method).
CAPABILITY_SLICE = slice(0, len(METHODS))

#: Names of the detector's ONNX outputs.
OUTPUT_STEGO = "stego_probability"  # (N,) probability that the file carries a payload
OUTPUT_METHODS = "method_probabilities"  # (N, 5) masked softmax over METHODS
OUTPUT_GATES = "gate_weights"  # (N, 8) fusion gate weight per stream, in STREAM_NAMES order


def input_shapes(batch: int | None = None) -> dict[str, tuple[int, ...]]:
    """Return ``{stream name: shape}``; with ``batch`` the shape gets a leading batch axis."""
    lead = () if batch is None else (batch,)
    return {s.name: lead + s.shape for s in STREAM_SPECS}


def zero_inputs(batch: int) -> dict[str, np.ndarray]:
    """Return all-zero float32 model inputs for ``batch`` images (warm-up, shape checks)."""
    return {s.name: np.zeros((batch, *s.shape), dtype=s.dtype) for s in STREAM_SPECS}


def stack_inputs(items: list[dict[str, np.ndarray]] | tuple[dict[str, np.ndarray], ...]) -> dict[str, np.ndarray]:
    """Stack per-image input dicts (no batch axis) into batch arrays, checking names and shapes.

    Raises:
        ValueError: ``items`` is empty, or a stream is missing or has the wrong shape.
    """
    if not items:
        raise ValueError("cannot stack an empty list of inputs")
    out: dict[str, np.ndarray] = {}
    for spec in STREAM_SPECS:
        arrays = []
        for i, item in enumerate(items):
            if spec.name not in item:
                raise ValueError(f"input {i} has no stream {spec.name!r}")
            arr = item[spec.name]
            if arr.shape != spec.shape:
                raise ValueError(f"input {i}: stream {spec.name!r} has shape {arr.shape}, expected {spec.shape}")
            arrays.append(arr)
        out[spec.name] = np.stack(arrays).astype(spec.dtype, copy=False)
    return out
