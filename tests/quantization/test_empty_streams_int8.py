"""Empty-stream skipping applies to a QDQ INT8 model too, and changes none of its outputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

from v4runtime.model.empty_streams import EMPTY_WHEN_ABSENT, find_branches, skip_empty_streams
from v4runtime.streams import extract_streams
from v4runtime.streams.spec import STREAM_NAMES


def test_int8_outputs_are_unchanged_and_weights_stay_beside_their_convolutions(
    robust_int8: Path, images: Path
) -> None:
    model = onnx.load(str(robust_int8))
    branches = find_branches(model)
    # This detector's alpha feature shares a tensor with the LSB rates: that stream stays whole.
    assert {b.stream for b in branches} == set(EMPTY_WHEN_ABSENT) - {"alpha"}
    # The weight DequantizeLinear nodes move into the branch with their convolution, so onnxruntime
    # can still fuse them into integer kernels inside the If.
    palette_lsb = next(b for b in branches if b.stream == "palette_lsb")
    nodes = [model.graph.node[i] for i in palette_lsb.positions]
    assert any(n.op_type == "DequantizeLinear" and "palette_lsb" not in n.input for n in nodes)
    plain = ort.InferenceSession(str(robust_int8), providers=["CPUExecutionProvider"])
    skipping = ort.InferenceSession(skip_empty_streams(model).SerializeToString(), providers=["CPUExecutionProvider"])
    files = [p.read_bytes() for p in sorted(images.glob("**/*.png"))[:6]]
    gif = io.BytesIO()
    Image.open(io.BytesIO(files[1])).convert("RGB").quantize(32).save(gif, "GIF")
    files += [gif.getvalue(), files[2] + b"bytes after the image"]
    arrays = [extract_streams(data).as_inputs() for data in files]
    for stream in ("meta", "palette", "palette_lsb"):  # both paths of every branch run
        assert any(a[stream].any() for a in arrays) and any(not a[stream].any() for a in arrays)
    for batch in [[a] for a in arrays] + [arrays]:
        feeds = {n: np.stack([a[n] for a in batch]) for n in STREAM_NAMES}
        for x, y in zip(plain.run(None, feeds), skipping.run(None, feeds), strict=True):
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-6)
