"""Hostile files that used to hang the extractor: each now reads quickly or gets a typed error.

Each test names what the file did before its fix. Timings are bounded with a wide margin (the
old code took many times longer) so they hold on a slow, shared machine.
"""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from v4_stream_images import encode, natural

from v4runtime.errors import ImageError
from v4runtime.streams import extract_streams
from v4runtime.streams.containers import (
    MAX_JPEG_HEADER_FILL,
    MAX_JPEG_MARKERS,
    MAX_JPEG_SCANS,
    MAX_PNG_CHUNKS,
    gif_without_comments,
    parse_container,
)

_PLANES = ("pixel", "lsb", "alpha", "palette", "palette_lsb", "content")


def _gif_with_comment(comment: bytes) -> tuple[bytes, bytes]:
    """A two-frame GIF with transparency, and the same file with ``comment`` extensions inserted."""
    frames = [Image.fromarray(natural(24, 20, seed=i)).quantize(16) for i in range(2)]
    clean = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], transparency=3)
    first_image = clean.index(b"\x2c", 13 + 3 * 16)  # after the global table: the first descriptor
    return clean, clean[:first_image] + comment + clean[first_image:-1] + comment + clean[-1:]


@pytest.mark.timeout(60)
def test_gif_comment_in_tiny_sub_blocks_is_read_fast_and_changes_no_plane() -> None:
    """Pillow joins comment sub-blocks with ``bytes +=``: 1M one-byte sub-blocks took ~30 s, now < 5 s."""
    comment = b"\x21\xfe" + b"\x01A" * 1_000_000 + b"\x00"
    clean, data = _gif_with_comment(comment)
    assert parse_container(data).comments == 2
    start = time.perf_counter()
    streams = extract_streams(data)
    assert time.perf_counter() - start < 5.0
    reference = extract_streams(clean)
    for name in _PLANES:
        assert np.array_equal(getattr(streams, name), getattr(reference, name)), name
    assert streams.info.frames == reference.info.frames == 2
    assert streams.info.has_alpha


@pytest.mark.timeout(60)
def test_gif_with_many_comment_extensions_is_read_fast() -> None:
    """Each comment extension also appended to one growing ``bytes``: 1M of them took minutes."""
    _, data = _gif_with_comment(b"\x21\xfe\x00" * 500_000)
    start = time.perf_counter()
    assert extract_streams(data).info.format == "GIF"
    assert time.perf_counter() - start < 5.0


def test_gif_without_comments_keeps_every_other_byte() -> None:
    clean, data = _gif_with_comment(b"\x21\xfe\x03abc\x02de\x00")
    assert gif_without_comments(data) == clean
    assert gif_without_comments(clean) == clean
    app = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # other extensions stay
    assert gif_without_comments(clean[:-1] + app + clean[-1:]) == clean[:-1] + app + clean[-1:]


@pytest.mark.timeout(60)
def test_jpeg_fill_bytes_are_skipped_in_c() -> None:
    """0xFF fill in a scan or before a marker was walked byte by byte in Python (~0.4 s per MB)."""
    jpeg = encode(Image.fromarray(natural(16, 16)), "JPEG")
    for data in (jpeg[:-2] + b"\xff" * 20_000_000 + jpeg[-2:], jpeg[:2] + b"\xff" * MAX_JPEG_HEADER_FILL + jpeg[2:]):
        start = time.perf_counter()
        container = parse_container(data)
        assert time.perf_counter() - start < 0.5
        assert container.image_end == len(data)
    stuffed = jpeg[:-2] + b"\xff\x00\xff\xd3\xff\xff\xff\x00" * 100 + jpeg[-2:]
    assert parse_container(stuffed).image_end == len(stuffed)
    with pytest.raises(ImageError) as info:
        parse_container(jpeg[:-2] + b"\xff\x00\xff\xff\xff")
    assert info.value.reason == "truncated"


def _progressive_with_scans(total: int) -> bytes:
    """An 8 x 8 progressive JPEG whose last scan is repeated until it has ``total`` scans."""
    data = encode(Image.fromarray(natural(8, 8)[..., 0]), "JPEG", progressive=True)
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    last = data[starts[-1] : -2]
    return data[:-2] + last * (total - len(starts)) + data[-2:]


def test_jpeg_with_more_scans_than_any_encoder_writes_is_refused() -> None:
    """libjpeg decodes every progressive scan over the whole picture: 5,000 extra tiny scans on a
    6000 x 6000 JPEG took 23 s; a 256 MB file of them, hours."""
    assert extract_streams(_progressive_with_scans(MAX_JPEG_SCANS)).info.format == "JPEG"
    with pytest.raises(ImageError) as info:
        extract_streams(_progressive_with_scans(MAX_JPEG_SCANS + 1))
    assert info.value.reason == "corrupt"
    assert "scans" in str(info.value)


def _png_chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.timeout(60)
def test_png_with_a_million_empty_chunks_is_refused_fast() -> None:
    """Pillow keeps every unknown chunk: 1 M empty ones took 6 s and 160 MB, and the byte cap allows 20 M."""
    png = encode(Image.fromarray(natural(16, 16)), "PNG")
    iend = png.rindex(b"IEND") - 4
    filler = _png_chunk(b"prVt")
    at_cap = png[:iend] + filler * (MAX_PNG_CHUNKS - 3) + png[iend:]  # IHDR, IDAT and IEND count too
    assert extract_streams(at_cap).info.format == "PNG"
    start = time.perf_counter()
    with pytest.raises(ImageError) as info:
        extract_streams(png[:iend] + filler * 1_000_000 + png[iend:])
    assert info.value.reason == "corrupt" and "chunks" in str(info.value)
    assert time.perf_counter() - start < 5


@pytest.mark.timeout(60)
@pytest.mark.parametrize("filler", [b"\xff\xe5\x00\x02", b"\xff\x01"], ids=["empty-app-segments", "standalone-markers"])
def test_jpeg_with_a_million_markers_is_refused_fast(filler: bytes) -> None:
    """A million empty APP segments took Pillow 2 s and 168 MB; standalone markers cost our own walk a loop each."""
    jpeg = encode(Image.fromarray(natural(16, 16)), "JPEG")
    at_half_the_cap = jpeg[:2] + filler * (MAX_JPEG_MARKERS // 2) + jpeg[2:]
    assert parse_container(at_half_the_cap).image_end == len(at_half_the_cap)
    start = time.perf_counter()
    with pytest.raises(ImageError) as info:
        parse_container(jpeg[:2] + filler * 1_000_000 + jpeg[2:])
    assert info.value.reason == "corrupt" and "markers" in str(info.value)
    assert time.perf_counter() - start < 5


@pytest.mark.timeout(60)
def test_jpeg_with_megabytes_of_fill_before_its_first_scan_is_refused_fast() -> None:
    """Pillow parses the header in Python: 4 MB of 0xFF fill before a marker took 2 s, a 32 MB upload 16 s."""
    jpeg = encode(Image.fromarray(natural(16, 16)), "JPEG")
    assert extract_streams(jpeg[:2] + b"\xff" * MAX_JPEG_HEADER_FILL + jpeg[2:]).info.format == "JPEG"
    many_runs = jpeg[:2] + (b"\xff" * 60_000 + b"\xff\xe5\x00\x02") * 4 + jpeg[2:]  # the runs add up
    for data in (jpeg[:2] + b"\xff" * 4_000_000 + jpeg[2:], many_runs):
        start = time.perf_counter()
        with pytest.raises(ImageError) as info:
            extract_streams(data)
        assert info.value.reason == "corrupt" and "fill bytes" in str(info.value)
        assert time.perf_counter() - start < 1
    tail = jpeg[:-2] + b"\xff" * 4_000_000 + jpeg[-2:]  # after the scan libjpeg skips it in C: still read
    assert extract_streams(tail).info.format == "JPEG"
