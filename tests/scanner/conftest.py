"""Fixtures for scanner tests: a real (tiny) ONNX detector with its card, and real image files."""

from __future__ import annotations

from pathlib import Path

import pytest
from scanfix import TAIL, build_toy_model, jpeg_bytes, png_bytes


@pytest.fixture(scope="session")
def toy_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy detector (flags bytes after the image end) with a valid card beside it."""
    from v4runtime.model.card import build_card, card_path, write_card

    path = build_toy_model(tmp_path_factory.mktemp("model") / "toy.onnx")
    write_card(build_card(path, name="toy", threshold=0.5), card_path(path))
    return path


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A folder with two clean files, one file with a payload after the image, and a sub-folder."""
    (tmp_path / "clean-a.png").write_bytes(png_bytes(0))
    (tmp_path / "clean-b.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "notes.txt").write_text("not an image, and not picked up from a folder")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "tail.png").write_bytes(png_bytes(2) + TAIL)
    return tmp_path
