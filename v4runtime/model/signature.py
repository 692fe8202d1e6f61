"""The detector's expected ONNX signature, and a check of a model file against it (no PyTorch).

Expected: exactly the inputs of :data:`v4runtime.streams.spec.STREAM_SPECS`, in order, float32,
each with a leading batch axis; and the three named outputs of the spec.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from v4runtime.errors import ModelError
from v4runtime.streams.spec import (
    METHODS,
    OUTPUT_GATES,
    OUTPUT_METHODS,
    OUTPUT_STEGO,
    STREAM_NAMES,
    STREAM_SPECS,
)

#: Output name -> shape after the batch axis.
EXPECTED_OUTPUTS: dict[str, tuple[int, ...]] = {
    OUTPUT_STEGO: (),
    OUTPUT_METHODS: (len(METHODS),),
    OUTPUT_GATES: (len(STREAM_NAMES),),
}


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def signature_problems(model: onnx.ModelProto) -> list[str]:
    """Every way ``model``'s inputs and outputs differ from the contract (empty when it matches)."""
    problems: list[str] = []
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    names = tuple(v.name for v in inputs)
    if names != STREAM_NAMES:
        problems.append(f"inputs are {list(names)}, expected {list(STREAM_NAMES)}")
    by_name = {v.name: v for v in inputs}
    for spec in STREAM_SPECS:
        value = by_name.get(spec.name)
        if value is None:
            continue
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"input {spec.name!r} is not float32")
        dims = _dims(value)
        if len(dims) != len(spec.shape) + 1 or tuple(dims[1:]) != spec.shape:
            problems.append(f"input {spec.name!r} has shape {dims}, expected [N, {', '.join(map(str, spec.shape))}]")
    outputs = {v.name: v for v in model.graph.output}
    for name, shape in EXPECTED_OUTPUTS.items():
        value = outputs.get(name)
        if value is None:
            problems.append(f"output {name!r} is missing (outputs: {sorted(outputs)})")
            continue
        dims = _dims(value)
        if dims and (len(dims) != len(shape) + 1 or tuple(dims[1:]) != shape):
            problems.append(f"output {name!r} has shape {dims}, expected [N{''.join(f', {d}' for d in shape)}]")
    return problems


def check_signature(path: str | Path) -> onnx.ModelProto:
    """Load the ONNX file at ``path`` and check its signature.

    Raises:
        ModelError: the file is not a readable ONNX model, or its signature differs.
    """
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError/OSError variants; report them uniformly
        raise ModelError(f"{path} is not a readable ONNX model: {exc}", reason="not_onnx") from None
    if not model.graph.node:
        raise ModelError(f"{path} is not a readable ONNX model: the graph is empty", reason="not_onnx")
    problems = signature_problems(model)
    if problems:
        raise ModelError(f"{path} does not have the detector's signature: " + "; ".join(problems),
                         reason="signature_mismatch")
    return model
