"""Image sets and their classes: manifest parsing and the refusal of unusable sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from quant_fixtures import write_image_set

from v4runtime.errors import QuantizationError
from v4runtime.quantization.labels import load_image_set, require_both_classes
from v4runtime.quantization.quantize import select_balanced


def test_manifest_gives_classes_and_methods(images: Path) -> None:
    image_set = load_image_set(images)
    assert image_set.labelled
    assert (image_set.n_clean, image_set.n_stego) == (12, 12)
    assert {im.method for im in image_set.images if im.is_stego} == {"lsb.rgb"}
    assert all(im.method is None for im in image_set.images if not im.is_stego)
    require_both_classes(image_set, purpose="calibration")  # does not raise


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"file": "a.png", "is_stego": True, "method": "exif"}, (True, "exif")),
        ({"path": "a.png", "label": "clean", "method": "exif"}, (False, None)),
        ({"path": "a.png", "method": None}, (False, None)),
        ({"path": "a.png", "method": "alpha"}, (True, "alpha")),
    ],
)
def test_manifest_spellings(tmp_path: Path, images: Path, record: dict, expected: tuple) -> None:
    shutil.copy(next(images.glob("*.png")), tmp_path / "a.png")
    header = {"type": "header", "seed": 1}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    (image,) = load_image_set(tmp_path).images
    assert (image.is_stego, image.method) == expected


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json\n", "not a JSON object"),
        ('{"path": "missing.png", "label": "clean"}\n', "do not exist"),
        ('{"path": "a.png", "label": "maybe"}\n', "unknown label"),
        ('{"label": "clean"}\n', "no image path"),
    ],
)
def test_bad_manifest_is_a_clear_error(tmp_path: Path, images: Path, content: str, message: str) -> None:
    shutil.copy(next(images.glob("*.png")), tmp_path / "a.png")
    (tmp_path / "manifest.jsonl").write_text(content)
    with pytest.raises(QuantizationError, match=message):
        load_image_set(tmp_path)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="does not exist"):
        load_image_set(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(QuantizationError, match="holds no images"):
        load_image_set(tmp_path)


def test_unlabelled_folder_needs_the_override(tmp_path: Path) -> None:
    write_image_set(tmp_path, clean=2, stego=2, manifest=False)
    image_set = load_image_set(tmp_path)
    assert not image_set.labelled and len(image_set.images) == 4
    with pytest.raises(QuantizationError, match="--unlabelled-ok"):
        require_both_classes(image_set, purpose="calibration")
    require_both_classes(image_set, purpose="calibration", allow_unlabelled=True)


def test_one_class_set_is_refused(tmp_path: Path) -> None:
    write_image_set(tmp_path, clean=3, stego=0)
    with pytest.raises(QuantizationError, match="clean images only"):
        require_both_classes(load_image_set(tmp_path), purpose="calibration")


def test_balanced_selection_keeps_both_classes(images: Path) -> None:
    chosen = select_balanced(load_image_set(images).images, 5)
    assert 4 <= len(chosen) <= 6
    assert {im.is_stego for im in chosen} == {True, False}
    assert select_balanced(load_image_set(images).images, 100) == list(load_image_set(images).images)
