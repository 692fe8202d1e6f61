"""Fixtures of the model tests: one exported (untrained, seeded) detector per session."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """A seeded untrained ``V4Detector``, exported to ONNX with its card."""
    from v4runtime.model.architecture import V4Detector
    from v4runtime.model.card import build_card, card_path, write_card
    from v4runtime.model.export import export_onnx

    torch.manual_seed(0)
    model = V4Detector().eval()
    with torch.no_grad():  # like trained weights: untrained LayerNorms are identical, and the exporter
        for parameter in model.parameters():  # would store identical tensors once
            parameter.add_(torch.randn_like(parameter) * 1e-3)
    path = export_onnx(model, tmp_path_factory.mktemp("model") / "toy.onnx")
    write_card(build_card(path, name="toy", threshold=0.5), card_path(path))
    return model, path
