"""Regression tests for the container parsing defects of the original pipeline."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from v4_stream_images import encode, image_bytes, natural

from v4runtime.errors import ImageError
from v4runtime.stego.exif_block import MAKE, build_exif
from v4runtime.streams import extract_streams
from v4runtime.streams.containers import parse_container

TAIL = b"AI42 secret; with a semicolon \xff\xd9 and an EOI\x00"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP"])
def test_tail_is_exactly_the_appended_bytes(fmt: str) -> None:
    data = image_bytes(fmt, "P" if fmt == "GIF" else "RGB")
    streams = extract_streams(data + TAIL)
    assert streams.info.tail_length == len(TAIL)
    assert streams.info.image_end == len(data)
    window = np.round(streams.meta[2, : len(TAIL)] * 255).astype(np.uint8).tobytes()
    assert window == TAIL
    assert streams.meta[3, : len(TAIL)].all() and not streams.meta[3, len(TAIL) :].any()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP"])
def test_clean_file_has_no_tail(fmt: str) -> None:
    streams = extract_streams(image_bytes(fmt, "P" if fmt == "GIF" else "RGB"))
    assert streams.info.tail_length == 0
    assert not streams.meta[2:].any()


def test_jpeg_exif_thumbnail_eoi_is_not_the_end() -> None:
    """An EXIF thumbnail carries its own FFD9; a marker search would stop inside APP1."""
    thumb = encode(Image.fromarray(natural(40, 30)), "JPEG")
    exif = build_exif({MAKE: "Canon"}, {}, thumb)
    data = encode(Image.fromarray(natural()), "JPEG", exif=b"Exif\x00\x00" + exif)
    assert data.find(b"\xff\xd9") < len(data) - 2  # the thumbnail's EOI comes first
    streams = extract_streams(data + b"tail")
    assert streams.info.tail_length == 4
    assert streams.info.exif_length == len(exif)


def test_progressive_jpeg_walks_every_scan() -> None:
    data = encode(Image.fromarray(natural()), "JPEG", progressive=True)
    container = parse_container(data + b"xyz")
    assert container.progressive and container.image_end == len(data)


def test_png_tail_keeps_its_first_four_bytes() -> None:
    """The original cut after IEND's type, losing the CRC-sized first 4 tail bytes."""
    data = image_bytes("PNG")
    window = extract_streams(data + b"ABCDEFGH").meta[2, :8]
    assert np.round(window * 255).astype(np.uint8).tobytes() == b"ABCDEFGH"


def test_gif_payload_with_semicolons_in_tail_and_data() -> None:
    data = image_bytes("GIF", "P")
    tail = b";;;" * 10
    assert extract_streams(data + tail).info.tail_length == len(tail)


@pytest.mark.parametrize("length", [1, 2, 7, 99, 100, 3000])
def test_webp_any_tail_length(length: int) -> None:
    data = image_bytes("WEBP", quality=80)
    assert extract_streams(data + b"t" * length).info.tail_length == length


def test_bmp_tail_from_header_size() -> None:
    data = image_bytes("BMP", "P")
    assert extract_streams(data + b"BM-tail").info.tail_length == 7


def test_exif_and_tail_have_separate_windows() -> None:
    """A large camera EXIF cannot push the tail out of the meta stream."""
    exif = build_exif({MAKE: "X" * 20000}, {}, None)
    data = encode(Image.fromarray(natural()), "JPEG", exif=b"Exif\x00\x00" + exif)
    streams = extract_streams(data + b"AI42hidden")
    assert streams.meta[1].all()  # EXIF window full
    assert np.round(streams.meta[2, :10] * 255).astype(np.uint8).tobytes() == b"AI42hidden"


def test_png_text_chunks_and_trns_are_counted() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "hello")
    info.add_itxt("Title", "world")
    container = parse_container(encode(Image.fromarray(natural(32, 32)), "PNG", pnginfo=info))
    assert container.text_chunks == 2


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP"])
def test_truncation_at_every_region_is_an_image_error(fmt: str) -> None:
    data = image_bytes(fmt, "P" if fmt == "GIF" else "RGB")
    for cut in sorted({1, 3, 8, 13, 20, 40, len(data) // 3, len(data) // 2, len(data) - 3, len(data) - 1}):
        with pytest.raises(ImageError) as info:
            extract_streams(data[:cut])
        assert info.value.reason in {"truncated", "corrupt", "not_an_image"}, (cut, info.value.reason)


def test_animated_webp_is_flagged() -> None:
    frames = [Image.fromarray(natural(32, 32, seed=i)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    streams = extract_streams(buf.getvalue())
    assert streams.info.multi_frame and streams.info.frames == 3
