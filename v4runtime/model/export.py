"""ONNX export of the detector and the PyTorch-vs-onnxruntime parity check (needs ``train``).

Uses the ``torch.export``-based exporter (the default since PyTorch 2.9; the TorchScript exporter
is deprecated): named inputs and outputs from :mod:`v4runtime.streams.spec`, one dynamic batch
axis shared by every input and output, opset 18, weights stored inside the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from v4runtime.errors import ModelError
from v4runtime.model.architecture import V4Detector
from v4runtime.streams.spec import OUTPUT_GATES, OUTPUT_METHODS, OUTPUT_STEGO, STREAM_NAMES, STREAM_SPECS

#: ONNX opset of the exported graph.
OPSET = 18
#: Output names, in the order ``V4Detector.forward`` returns them.
OUTPUT_NAMES: tuple[str, ...] = (OUTPUT_STEGO, OUTPUT_METHODS, OUTPUT_GATES)
#: Largest tolerated absolute difference between PyTorch and onnxruntime outputs.
PARITY_TOLERANCE = 1e-4


def example_inputs(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs with the contract's shapes (valid masks, a full capability mask)."""
    rng = np.random.default_rng(seed)
    arrays = {s.name: rng.random((batch, *s.shape), dtype=np.float32) for s in STREAM_SPECS}
    # A mix of capable/incapable methods exercises the masked softmax.
    arrays["format"][:, :5] = (rng.random((batch, 5)) > 0.3).astype(np.float32)
    return arrays


def export_onnx(model: V4Detector, path: str | Path) -> Path:
    """Export ``model`` (put in eval mode) to ``path`` and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    inputs = tuple(torch.from_numpy(a) for a in example_inputs(batch=2).values())
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = {name: {0: batch} for name in STREAM_NAMES}
    # The exporter is chatty (progress lines, deprecation warnings); keep the CLI output ours.
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), _quiet_torch_logs():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            inputs,
            input_names=list(STREAM_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ModelError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    _strip_debug_metadata(path)
    return path


def _strip_debug_metadata(path: Path) -> None:
    """Drop per-node stack traces and FX dumps (local paths, bulk); keep module name scopes,
    which the FLOP counter uses to attribute cost to each stream's encoder."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        keep = [(p.key, p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
        del node.metadata_props[:]
        for key, value in keep:
            node.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_torch_logs():  # noqa: ANN202 - context manager
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def parity(model: V4Detector, path: str | Path, batch: int = 3, seed: int = 1) -> float:
    """Largest absolute difference between PyTorch and onnxruntime on random inputs.

    Raises:
        ModelError: if the difference exceeds :data:`PARITY_TOLERANCE`.
    """
    import onnxruntime as ort

    arrays = example_inputs(batch=batch, seed=seed)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), arrays)
    with torch.no_grad():
        want = model.eval()(*(torch.from_numpy(a) for a in arrays.values()))
    diff = max(float(np.max(np.abs(g - w.numpy()))) for g, w in zip(got, want, strict=True))
    if not diff <= PARITY_TOLERANCE:
        raise ModelError(f"ONNX export of {path} differs from PyTorch by {diff:.3g} (> {PARITY_TOLERANCE})")
    return diff
