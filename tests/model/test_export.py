"""ONNX export: names, dynamic batch axis, PyTorch/onnxruntime parity."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from v4runtime.errors import ModelError  # noqa: E402
from v4runtime.model.export import OPSET, OUTPUT_NAMES, PARITY_TOLERANCE, example_inputs, parity  # noqa: E402
from v4runtime.model.signature import signature_problems  # noqa: E402
from v4runtime.streams.spec import STREAM_NAMES  # noqa: E402


def test_graph_has_named_inputs_outputs_and_dynamic_batch(exported) -> None:
    _, path = exported
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(STREAM_NAMES)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    for value in [*model.graph.input, *model.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        assert not first.HasField("dim_value"), f"{value.name} has a fixed batch axis"
    assert any(o.version >= 17 for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert OPSET >= 17
    assert signature_problems(model) == []


@pytest.mark.parametrize("batch", [1, 5])
def test_parity_within_tolerance(exported, batch: int) -> None:
    model, path = exported
    assert parity(model, path, batch=batch) <= PARITY_TOLERANCE


def test_parity_detects_a_different_model(exported) -> None:
    _, path = exported
    from v4runtime.model.architecture import V4Detector

    torch.manual_seed(123)
    with pytest.raises(ModelError, match="differs from PyTorch"):
        parity(V4Detector(), path)


def test_onnxruntime_outputs_are_probabilities(exported) -> None:
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    prob, methods, gates = session.run(list(OUTPUT_NAMES), example_inputs(batch=2, seed=5))
    assert prob.shape == (2,) and np.all((prob >= 0) & (prob <= 1))
    np.testing.assert_allclose(methods.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(gates.sum(1), 1.0, rtol=1e-5)
