"""The ONNX FLOP counter on a graph small enough to count by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from v4runtime.model.flops import graph_cost


def test_conv_matmul_and_relu_are_counted(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((8, 3, 4, 4), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(8, np.float32), "b")
    m = numpy_helper.from_array(np.ones((8 * 16 * 16, 10), np.float32), "m")
    shape = numpy_helper.from_array(np.array([-1, 8 * 16 * 16], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[4, 4]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "m"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              initializer=[w, b, m, shape])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    cost = graph_cost(path)
    conv_out = 8 * 16 * 16
    assert cost.flops_by_op["Conv"] == 2 * conv_out * 3 * 16 + conv_out
    assert cost.flops_by_op["Relu"] == conv_out
    assert cost.flops_by_op["MatMul"] == 2 * 10 * conv_out
    assert cost.flops_by_op["Reshape"] == 0
    assert cost.parameters == 8 * 3 * 16 + 8 + conv_out * 10  # the int64 shape is not a parameter
