"""The streams of committed image files match a record of the extractor the shipped model was trained with.

The model was trained on the features these modules compute, so a change to any of them (a
refactor, a faster formula, a new numpy) that moves a feature moves every probability the model
gives, and its calibrated threshold no longer holds. This test pins the extractor's output on a
fixed set of real files (clean and stego, every format and mode the methods use) to a record:
the planes exactly (they are 8-bit samples scaled to float32), the ``format``, ``content`` and
``meta`` vectors within 1e-6 (numpy may sum floats in another order on another CPU).

The files are committed rather than generated, so a new Pillow encoder cannot change them. When a
change to the features is intended, retrain the model (see the detector page), then rewrite the
record::

    python tests/streams/test_feature_record.py --write
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from v4runtime.streams import extract_streams
from v4runtime.streams.spec import STREAM_NAMES

HERE = Path(__file__).with_name("feature_record")
RECORD = HERE / "record.json"
#: Streams holding 8-bit samples scaled to float32: compared bit for bit.
EXACT = ("pixel", "lsb", "alpha", "palette_lsb", "palette", "meta")
#: Streams of computed statistics: compared within TOLERANCE.
COMPUTED = ("format", "content")
TOLERANCE = 1e-6
SIZE = 128
#: The committed files: clean pictures in every format and mode the methods use, then one stego
#: file per method (text and random payloads, both bit orders).
FILES = (
    "smooth.png", "noisy.png", "smooth.bmp", "smooth.jpg", "noisy.webp", "grey.png", "palette.png",
    "palette.gif", "rgba.png", "stego-lsb-text.png", "stego-lsb-random.bmp", "stego-alpha-text.png",
    "stego-palette-random.gif", "stego-exif.jpg", "stego-raw.png",
)


def _natural(seed: int, noise: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([xx * 2.0, yy * 2.0, (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def _encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _cases() -> dict[str, bytes]:
    """The files of the record, by name (used only to write the record)."""
    from v4runtime.stego import embed

    smooth = Image.fromarray(_natural(1, 2.0))
    noisy = Image.fromarray(_natural(2, 12.0))
    rgba = smooth.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, SIZE).astype(np.uint8), (SIZE, 1))))
    palette = smooth.quantize(64)
    rng = np.random.default_rng(3)
    random_bytes = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    text = "a short note, hidden in the least significant bits of the picture, for the record."
    return {
        "smooth.png": _encode(smooth, "PNG"),
        "noisy.png": _encode(noisy, "PNG"),
        "smooth.bmp": _encode(smooth, "BMP"),
        "smooth.jpg": _encode(smooth, "JPEG", quality=90),
        "noisy.webp": _encode(noisy, "WEBP", lossless=True),
        "grey.png": _encode(smooth.convert("L"), "PNG"),
        "palette.png": _encode(palette, "PNG"),
        "palette.gif": _encode(noisy.quantize(256), "GIF"),
        "rgba.png": _encode(rgba, "PNG"),
        "stego-lsb-text.png": embed(smooth, text, "lsb.rgb", "PNG"),
        "stego-lsb-random.bmp": embed(smooth, random_bytes, "lsb.rgb", "BMP", marker=False, terminator=False),
        "stego-alpha-text.png": embed(rgba, text, "alpha", "PNG", bit_order="msb-first"),
        "stego-palette-random.gif": embed(palette, random_bytes[:200], "palette", "GIF", marker=False),
        "stego-exif.jpg": embed(smooth, text, "exif", "JPEG"),
        "stego-raw.png": embed(smooth, text, "raw", "PNG"),
    }


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def _describe(data: bytes) -> dict[str, object]:
    streams = extract_streams(data)
    entry: dict[str, object] = {"sha256": hashlib.sha256(data).hexdigest()}
    entry.update({name: _digest(getattr(streams, name)) for name in EXACT})
    entry.update({name: [float(v) for v in getattr(streams, name)] for name in COMPUTED})
    return entry


def write_record() -> None:
    """Write the files and the record of their streams (after an intended change of the features)."""
    HERE.mkdir(exist_ok=True)
    record = {}
    cases = _cases()
    assert tuple(cases) == FILES
    for name, data in cases.items():
        (HERE / name).write_bytes(data)
        record[name] = _describe(data)
    RECORD.write_text(json.dumps(record, indent=1) + "\n")


def _record() -> dict[str, dict]:
    return json.loads(RECORD.read_text())


def test_the_record_covers_every_stream_and_file() -> None:
    assert set(EXACT + COMPUTED) == set(STREAM_NAMES)
    assert tuple(_record()) == FILES


@pytest.mark.parametrize("name", FILES)
def test_streams_match_the_record(name: str) -> None:
    expected = _record()[name]
    data = (HERE / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["sha256"], f"{name} itself changed"
    streams = extract_streams(data)
    for stream in EXACT:
        assert _digest(getattr(streams, stream)) == expected[stream], f"{name}: stream {stream} changed"
    for stream in COMPUTED:
        actual = getattr(streams, stream)
        moved = np.flatnonzero(np.abs(actual - np.asarray(expected[stream], np.float32)) > TOLERANCE)
        assert not len(moved), f"{name}: {stream} moved at {moved.tolist()}: the model was trained on the record"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the files and the record")
    if parser.parse_args().write:
        write_record()
        print(f"wrote {RECORD}")
    else:
        sys.exit(pytest.main([__file__, "-q"]))
