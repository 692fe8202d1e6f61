"""Framing, bit order, EXIF layout and the errors of embed/extract."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from v4runtime.errors import EmbedError, ExtractError
from v4runtime.stego import capacity, embed, extract
from v4runtime.stego.exif_block import CHARSET_ASCII, CHARSET_UNDEFINED, MAKE
from v4runtime.streams.containers import parse_container
from v4runtime.streams.tiff import read_exif

COVER = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))


def _lsbs(data: bytes, count: int) -> list[int]:
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).reshape(-1)
    return (arr[:count] & 1).tolist()


def test_bit_orders_write_the_bits_from_the_top_left() -> None:
    first = embed(COVER, b"A", "lsb.rgb", "PNG", bit_order="lsb-first", marker=False)
    assert _lsbs(first, 8) == [1, 0, 0, 0, 0, 0, 1, 0]  # 'A' = 0x41, bit 0 first
    first = embed(COVER, b"A", "lsb.rgb", "PNG", bit_order="msb-first", marker=False)
    assert _lsbs(first, 8) == [0, 1, 0, 0, 0, 0, 0, 1]


def test_frame_is_marker_payload_nul() -> None:
    data = embed(COVER, b"xy", "raw", "PNG")
    assert data.endswith(b"AI42xy\x00")
    assert embed(COVER, b"xy", "raw", "PNG", marker=False, terminator=False).endswith(b"xy")


def test_exif_user_comment_has_its_character_code_prefix() -> None:
    for payload, prefix in ((b"hello", CHARSET_ASCII), (b"\x01\x02\xfe", CHARSET_UNDEFINED)):
        data = embed(COVER, payload, "exif", "JPEG", exif_tags={MAKE: "Canon"})
        comment, _ = read_exif(parse_container(data).exif)
        assert comment == prefix + b"AI42" + payload + b"\x00"
        assert Image.open(io.BytesIO(data)).getexif()[MAKE] == "Canon"


def test_payload_that_does_not_fit_is_refused_with_the_numbers() -> None:
    room = capacity(COVER, "alpha", "PNG")
    assert room == 40 * 48 // 8 - 5
    embed(COVER, b"x" * room, "alpha", "PNG")  # exactly full is fine
    with pytest.raises(EmbedError, match="does not fit") as info:
        embed(COVER, b"x" * (room + 1), "alpha", "PNG")
    assert info.value.reason == "does_not_fit"
    with pytest.raises(EmbedError, match="does not fit"):
        embed(COVER, b"x" * 70_000, "exif", "JPEG")


@pytest.mark.parametrize(("method", "fmt"), [("alpha", "JPEG"), ("palette", "WEBP"), ("lsb.rgb", "GIF"), ("exif", "BMP")])
def test_method_not_valid_for_format(method: str, fmt: str) -> None:
    with pytest.raises(EmbedError, match="cannot be carried") as info:
        embed(COVER, b"x", method, fmt)
    assert info.value.reason == "method_not_valid_for_format"


def test_bad_arguments() -> None:
    with pytest.raises(EmbedError, match="unknown method"):
        embed(COVER, b"x", "dct", "PNG")
    with pytest.raises(EmbedError, match="unknown format"):
        embed(COVER, b"x", "raw", "TIFF")
    with pytest.raises(EmbedError, match="bit order"):
        embed(COVER, b"x", "lsb.rgb", "PNG", bit_order="middle-out")
    with pytest.raises(EmbedError, match="empty"):
        embed(COVER, b"", "raw", "PNG")
    assert embed(COVER, b"x", "raw", "jpg")[:2] == b"\xff\xd8"


def test_extract_errors() -> None:
    clean = io.BytesIO()
    COVER.save(clean, "PNG")
    with pytest.raises(ExtractError, match="marker"):
        extract(clean.getvalue(), "lsb.rgb")
    with pytest.raises(ExtractError, match="no EXIF UserComment"):
        extract(clean.getvalue(), "exif")
    with pytest.raises(ExtractError, match="no alpha"):
        extract(clean.getvalue(), "alpha")
    with pytest.raises(ExtractError, match="terminator"):
        extract(embed(COVER, b"abc", "raw", "PNG", terminator=False), "raw")
    with pytest.raises(ExtractError, match="fewer"):
        extract(embed(COVER, b"abc", "raw", "PNG"), "raw", length=100)


def test_odd_palette_is_padded_so_every_flip_is_valid() -> None:
    cover = COVER.quantize(7)
    data = embed(cover, b"\xff" * 100, "palette", "PNG", marker=False)
    assert extract(data, "palette", marker=False, length=100) == b"\xff" * 100
    assert len(Image.open(io.BytesIO(data)).getpalette()) // 3 % 2 == 0


def test_cover_from_bytes_and_path(tmp_path) -> None:
    buf = io.BytesIO()
    COVER.save(buf, "PNG")
    path = tmp_path / "c.png"
    path.write_bytes(buf.getvalue())
    for cover in (buf.getvalue(), path):
        assert extract(embed(cover, "hi", "lsb.rgb", "BMP"), "lsb.rgb") == b"hi"
    with pytest.raises(EmbedError, match="cannot read"):
        embed(b"not an image", "hi", "raw", "PNG")
