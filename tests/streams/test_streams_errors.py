"""Bad input: a typed ImageError with a reason, never a crash or a hang."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from v4_stream_images import encode, image_bytes, natural

from v4runtime.errors import ImageError
from v4runtime.streams import extract_streams


def _png(width: int, height: int, bit_depth: int = 8, colour: int = 2, body: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


def _reason(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ImageError) as info:
        extract_streams(data, **kwargs)
    assert str(info.value)  # a readable message
    return info.value.reason


def test_empty() -> None:
    assert _reason(b"") == "empty"


@pytest.mark.parametrize("data", [b"hello world", b"%PDF-1.7\n", b"\x00" * 100, b"II*\x00" + b"\x00" * 100])
def test_not_an_image(data: bytes) -> None:
    assert _reason(data) == "not_an_image"


def test_decompression_bomb_over_pillow_limit() -> None:
    # 100000 x 100000 header with almost no data: refused from the header, before any allocation.
    assert _reason(_png(100_000, 100_000)) == "too_many_pixels"


def test_pixel_cap_is_configurable() -> None:
    assert _reason(image_bytes("PNG", size=(64, 64)), max_pixels=1000) == "too_many_pixels"


def test_byte_cap() -> None:
    assert _reason(image_bytes("PNG"), max_bytes=100) == "too_large"


def test_16_bit_png_is_refused() -> None:
    data = encode(Image.fromarray(natural(16, 16)[..., 0].astype(np.uint16) * 257), "PNG")
    assert _reason(data) == "unsupported_mode"
    rgb16 = _png(4, 4, bit_depth=16, colour=2, body=b"\x00" + b"\x12\x34" * 12 * 4)
    assert _reason(rgb16) == "unsupported_mode"


def test_cmyk_jpeg_is_refused() -> None:
    data = encode(Image.fromarray(natural(32, 32)).convert("CMYK"), "JPEG")
    assert _reason(data) == "unsupported_mode"


def test_corrupt_pixel_data() -> None:
    assert _reason(_png(16, 16, body=b"\x00" * 5)) in {"truncated", "corrupt"}


def test_missing_path_and_directory(tmp_path) -> None:
    assert _reason(tmp_path / "nope.png") == "not_found"
    assert _reason(tmp_path) == "not_a_file"


def test_one_bit_png_is_read_as_grey() -> None:
    streams = extract_streams(encode(Image.fromarray(natural(16, 16)).convert("1"), "PNG"))
    assert streams.info.mode == "L"


def test_gif_with_unknown_block_is_corrupt() -> None:
    data = bytearray(image_bytes("GIF", "P"))
    buf = io.BytesIO(bytes(data))
    assert Image.open(buf).format == "GIF"
    data[-1] = 0x99  # trailer replaced by an unknown block type
    assert _reason(bytes(data)) in {"corrupt", "truncated"}
