"""Parameter and FLOP counts read from an ONNX graph (no PyTorch needed).

The graph's shapes are inferred with the batch axis fixed to 1, then every node is costed:
convolutions and matrix products at 2 FLOPs per multiply-accumulate, element-wise and
reduction operators at one FLOP per element they touch. Shape-only operators cost nothing.
The figures are what the model card and the architecture guide report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import numpy_helper, shape_inference

from v4runtime.errors import ModelError

#: Operators that only move or reshape data.
_FREE = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Shape", "Gather", "Slice", "Constant",
    "Identity", "Transpose", "Cast", "Expand", "ConstantOfShape", "Split", "Range",
}
#: Element-wise operators, costed per output element (Softmax: exp, sum, divide).
_ELEMENTWISE = {"Relu": 1, "Sigmoid": 4, "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Clip": 1,
                "Greater": 1, "Where": 1, "Max": 1, "Min": 1, "Neg": 1, "Softmax": 3, "Exp": 1}
_REDUCE = {"ReduceMean", "ReduceMax", "ReduceSum", "GlobalAveragePool", "GlobalMaxPool"}


@dataclass(frozen=True)
class GraphCost:
    """Trainable-size and compute figures for one model, per image."""

    parameters: int
    flops: int
    flops_by_op: dict[str, int]
    #: Per component of the network (``encoders.pixel``, ``gate``, ``trunk``, ...): (parameters, FLOPs).
    components: dict[str, tuple[int, int]] = field(default_factory=dict)


def _shape(value_info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not value_info.type.tensor_type.HasField("shape"):
        return None
    out = []
    for d in dims:
        if not d.HasField("dim_value"):
            return None
        out.append(d.dim_value)
    return tuple(out)


def _with_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return shape_inference.infer_shapes(model, data_prop=True)


def graph_cost(path: str | Path) -> GraphCost:
    """Count parameters (float initializers with at least one axis, i.e. weights and biases
    but not scalar constants) and FLOPs per image of the ONNX model at ``path``."""
    model = _with_batch_one(onnx.load(str(path)))
    graph = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        shape = _shape(value)
        if shape is not None:
            shapes[value.name] = shape
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for name, array in weights.items():
        shapes[name] = tuple(array.shape)
    # Standardisation statistics are buffers, not trained parameters.
    buffers = {n for n in weights if n.endswith((".mean", ".inv_std"))}
    parameters = sum(int(a.size) for n, a in weights.items() if n not in buffers and a.ndim >= 1 and a.dtype.kind == "f")

    components: dict[str, list[int]] = {}
    for name, array in weights.items():
        if name not in buffers and array.ndim >= 1 and array.dtype.kind == "f":
            components.setdefault(_component_of_weight(name), [0, 0])[0] += int(array.size)
    by_op: dict[str, int] = {}
    for node in graph.node:
        cost = _node_cost(node, shapes)
        by_op[node.op_type] = by_op.get(node.op_type, 0) + cost
        components.setdefault(_component_of_node(node), [0, 0])[1] += cost
    return GraphCost(parameters=parameters, flops=sum(by_op.values()), flops_by_op=dict(sorted(by_op.items())),
                     components={k: (v[0], v[1]) for k, v in components.items()})


def _component_of_weight(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "encoders" else parts[0]


def _component_of_node(node: onnx.NodeProto) -> str:
    # The torch.export-based exporter records the module path of every node.
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s.strip(" '\"") for s in prop.value.strip("[]").split(",")]
            # ['', module, submodule..., op]: a top-level op has no module between '' and itself.
            if len(scopes) > 2 and scopes[1]:
                return _component_of_weight(scopes[1] + "." + scopes[2])
    return "fusion and masking"


def _numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _node_cost(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    op = node.op_type
    if op in ("Conv", "MatMul", "Gemm") and (node.input[0] not in shapes or node.output[0] not in shapes):
        raise ModelError(f"cannot count FLOPs: shapes around {op} node {node.name!r} are unknown", reason="flops")
    out = shapes.get(node.output[0]) if node.output else None
    if op in _FREE:
        return 0
    if op == "Conv":
        weight = shapes[node.input[1]]
        macs_per_output = math.prod(weight[1:])  # (Cin / groups) * kernel
        bias = _numel(out) if len(node.input) > 2 and node.input[2] else 0
        return 2 * _numel(out) * macs_per_output + bias
    if op in ("MatMul", "Gemm"):
        a = shapes[node.input[0]]
        k = a[-1] if not (op == "Gemm" and _trans_a(node)) else a[0]
        bias = _numel(out) if op == "Gemm" and len(node.input) > 2 else 0
        return 2 * _numel(out) * k + bias
    if op in _REDUCE:
        return _numel(shapes.get(node.input[0]))
    if op in _ELEMENTWISE:
        return _ELEMENTWISE[op] * _numel(out)
    # Unknown operator: cost one FLOP per output element rather than silently nothing.
    return _numel(out)


def _trans_a(node: onnx.NodeProto) -> bool:
    return any(a.name == "transA" and a.i == 1 for a in node.attribute)
