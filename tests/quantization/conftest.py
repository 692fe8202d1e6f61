"""Shared fixtures of the quantisation tests: one labelled image set and hand-built detectors."""

from __future__ import annotations

from pathlib import Path

import pytest
from quant_fixtures import build_detector, write_image_set

from v4runtime.quantization import quantize_model


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 clean PNGs (the first RGBA) and 12 LSB stego PNGs, with manifest.jsonl."""
    return write_image_set(tmp_path_factory.mktemp("images"), clean=12, stego=12, alpha_outliers=1)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for models built once per session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def robust(models: Path) -> Path:
    """A detector whose decisions survive INT8."""
    return build_detector(models / "robust.onnx")


@pytest.fixture(scope="session")
def fragile(models: Path) -> Path:
    """A detector where one RGBA calibration image stretches the head's input range (MinMax)."""
    return build_detector(models / "fragile.onnx", outlier_gain=1000.0)


@pytest.fixture(scope="session")
def robust_int8(robust: Path, images: Path, models: Path) -> Path:
    """The robust detector quantised with default settings."""
    return quantize_model(robust, images, models / "robust.int8.onnx").output


@pytest.fixture(scope="session")
def fragile_int8(fragile: Path, images: Path, models: Path) -> Path:
    """The fragile detector quantised with its decision head quantised too (fails the gate)."""
    return quantize_model(fragile, images, models / "fragile.int8.onnx", float_head=False).output
