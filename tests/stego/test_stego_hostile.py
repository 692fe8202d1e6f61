"""Odd covers and inputs for embed/extract: a typed error or a working round trip, never a crash."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from v4runtime.errors import EmbedError, ExtractError
from v4runtime.stego import embed, extract


def _png_1bit(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + b"\x00" * ((width + 7) // 8)) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("method", "fmt"), [("raw", "PNG"), ("raw", "WEBP"), ("palette", "GIF"), ("exif", "JPEG")])
@pytest.mark.parametrize("size", [(0, 0), (0, 5), (5, 0)])
def test_cover_without_pixels_is_a_bad_cover(method: str, fmt: str, size: tuple[int, int]) -> None:
    """A 0 x N Pillow image raised ValueError or MemoryError from the encoders."""
    with pytest.raises(EmbedError) as info:
        embed(Image.new("RGB", size), b"x", method, fmt)
    assert info.value.reason == "bad_cover"


def test_premultiplied_la_cover_is_accepted() -> None:
    """Mode La has no conversion to RGB: embed raised ValueError."""
    cover = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 2), dtype=np.uint8), "LA").convert("La")
    for method, fmt in (("alpha", "PNG"), ("lsb.rgb", "PNG"), ("raw", "GIF")):
        assert extract(embed(cover, b"hi", method, fmt), method) == b"hi"


def test_bytes_like_images_and_covers() -> None:
    """extract(bytearray) raised TypeError and embed(bytearray cover) refused a readable cover."""
    data = embed(Image.new("RGB", (8, 8)), b"hi", "lsb.rgb", "PNG")
    assert extract(bytearray(data), "lsb.rgb") == b"hi"
    assert extract(memoryview(data), "lsb.rgb") == b"hi"
    assert extract(embed(bytearray(data), b"yo", "raw", "BMP"), "raw") == b"yo"


@pytest.mark.parametrize("mode", ["L", "1"])
def test_palette_in_bmp_round_trips_for_grey_covers(mode: str) -> None:
    """A grey cover gets the grey-ramp palette, which Pillow reads back from BMP as L: extract
    said ``no_carrier`` for a file embed had just written."""
    cover = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)).convert(mode)
    assert extract(embed(cover, b"secret", "palette", "BMP"), "palette") == b"secret"


def test_pixel_bomb_is_refused_before_decoding() -> None:
    """10000 x 10000 (over Pillow's warning limit, under its error limit) in a 15 KB file: extract
    decoded all of it (100 MB as L; 1.7 GB for a 12000 x 12000 RGBA file) before failing."""
    bomb = _png_1bit(10_000, 10_000)
    assert len(bomb) < 50_000
    with pytest.raises(ExtractError) as info:
        extract(bomb, "lsb.rgb")
    assert info.value.reason == "too_many_pixels"
    with pytest.raises(EmbedError) as embed_info:
        embed(bomb, b"x", "raw", "PNG")
    assert embed_info.value.reason == "too_many_pixels"
    small = io.BytesIO()
    Image.new("1", (64, 64)).save(small, "PNG")
    with pytest.raises(ExtractError) as no_carrier:  # a readable image still gets the old answer
        extract(small.getvalue(), "lsb.rgb")
    assert no_carrier.value.reason == "no_carrier"
