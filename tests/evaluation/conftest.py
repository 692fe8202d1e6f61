"""Fixtures for evaluation tests: the scanner tests' toy detector and a small labelled corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scanner"))

from scanfix import TAIL, build_toy_model, jpeg_bytes, png_bytes  # noqa: E402


@pytest.fixture(scope="session")
def toy_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy detector (flags bytes after the image end) with a valid card beside it."""
    from v4runtime.model.card import build_card, card_path, write_card

    path = build_toy_model(tmp_path_factory.mktemp("model") / "toy.onnx")
    write_card(build_card(path, name="toy", threshold=0.5), card_path(path))
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus with a manifest: 6 clean files, 4 `raw` stego files (tails of 20-200 B), 1 broken file."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for i in range(6):
        name, data, fmt = (f"clean-{i}.png", png_bytes(i), "png") if i % 2 else (f"clean-{i}.jpg", jpeg_bytes(i), "jpeg")
        (root / name).write_bytes(data)
        rows.append({"path": name, "label": "clean", "method": None, "format": fmt, "payload_size": None})
    for i, size in enumerate((20, 70, 120, 200)):
        name = f"stego-{i}.png"
        (root / name).write_bytes(png_bytes(10 + i) + (TAIL * 5)[:size])
        rows.append({"path": name, "label": "stego", "method": "raw", "format": "png", "payload_size": size})
    (root / "broken.png").write_bytes(png_bytes(99)[:50])
    rows.append({"path": "broken.png", "label": "clean", "method": None, "format": "png", "payload_size": None})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
