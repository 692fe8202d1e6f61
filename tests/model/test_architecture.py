"""The network: budgets, output shapes, masked method softmax, gate weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from v4runtime.model.architecture import V4Detector, parameter_count  # noqa: E402
from v4runtime.model.export import example_inputs  # noqa: E402
from v4runtime.model.flops import graph_cost  # noqa: E402
from v4runtime.streams.spec import METHODS, STREAM_NAMES  # noqa: E402


def _run(model: V4Detector, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    with torch.no_grad():
        return tuple(t.numpy() for t in model.eval()(*(torch.from_numpy(arrays[n]) for n in STREAM_NAMES)))


def test_budgets_are_met_and_counts_agree(exported) -> None:
    model, path = exported
    cost = graph_cost(path)
    assert cost.parameters == parameter_count(model)
    assert cost.parameters <= 2_000_000
    assert 1_000_000 < cost.flops <= 50_000_000
    assert cost.flops_by_op["Conv"] > 0.9 * cost.flops  # the plane encoders dominate, as designed


def test_output_shapes_and_ranges() -> None:
    torch.manual_seed(1)
    prob, methods, gates = _run(V4Detector(), example_inputs(batch=4))
    assert prob.shape == (4,) and methods.shape == (4, len(METHODS)) and gates.shape == (4, len(STREAM_NAMES))
    assert ((prob > 0) & (prob < 1)).all()
    np.testing.assert_allclose(gates.sum(1), 1.0, rtol=1e-5)
    assert (gates > 0).all()


def test_method_softmax_is_masked_by_the_capability_mask() -> None:
    torch.manual_seed(2)
    arrays = example_inputs(batch=3)
    arrays["format"][:, :5] = np.array([[1, 0, 1, 0, 1], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]], np.float32)
    _, methods, _ = _run(V4Detector(), arrays)
    assert (methods[arrays["format"][:, :5] == 0] == 0.0).all()
    np.testing.assert_allclose(methods.sum(1), 1.0, rtol=1e-5)
    assert methods[1, 4] == pytest.approx(1.0)  # only "raw" possible


def test_feature_stats_rejects_plane_streams() -> None:
    with pytest.raises(ValueError, match="not a vector stream"):
        V4Detector().set_feature_stats("pixel", torch.zeros(1), torch.ones(1))
