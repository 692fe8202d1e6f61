"""Multi-picture JPEG (MPO, CIPA DC-007): the images its MP index declares are part of the file.

Cameras write stereo pairs and previews this way, and Pillow writes one with ``save_all=True``.
The second image follows the first one's EOI; counted as a tail it made every such photo look
like ``raw`` stego. Only the images the index declares, each a whole JPEG right after the previous
one, extend the image: anything else after the first EOI is still the tail.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image
from v4_stream_images import encode, natural

from v4runtime.stego import raw
from v4runtime.streams import extract_streams
from v4runtime.streams.containers import parse_container

TAIL = b"AI42 a note appended after the last picture\x00"


def _mpo(size: tuple[int, int] = (160, 120)) -> bytes:
    """A real two-picture MPO written by Pillow: the picture and a half-size preview."""
    im = Image.fromarray(natural(*size, seed=3))
    return encode(im, "MPO", save_all=True, append_images=[im.resize((size[0] // 2, size[1] // 2))])


def _entries_at(data: bytes) -> tuple[int, str, int]:
    """``(MP header offset, struct byte order, offset of the MP entry list in the file)``."""
    header = data.index(b"MPF\x00") + 4
    order = "<" if data[header : header + 2] == b"II" else ">"
    ifd = header + struct.unpack_from(order + "I", data, header + 4)[0]
    for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
        tag, _, _, at = struct.unpack_from(order + "HHII", data, ifd + 2 + 12 * i)
        if tag == 0xB002:
            return header, order, header + at
    raise AssertionError("no MP entry list")


def _second_image_at(data: bytes) -> int:
    header, order, entries = _entries_at(data)
    return header + struct.unpack_from(order + "I", data, entries + 16 + 8)[0]


def _insert_before_second(data: bytes, filler: bytes) -> bytes:
    """``data`` with ``filler`` between the two pictures and the index moved to match."""
    header, order, entries = _entries_at(data)
    second = _second_image_at(data)
    out = bytearray(data[:second] + filler + data[second:])
    struct.pack_into(order + "I", out, entries + 16 + 8, second + len(filler) - header)
    return bytes(out)


def test_pillow_writes_a_real_mpo() -> None:
    data = _mpo()
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, getattr(im, "n_frames", 1)) == ("MPO", 2)
    assert data[_second_image_at(data) : _second_image_at(data) + 3] == b"\xff\xd8\xff"


def test_declared_pictures_are_not_a_tail() -> None:
    data = _mpo()
    assert parse_container(data).image_end == len(data)
    streams = extract_streams(data)
    assert streams.info.tail_length == 0 and "tail" not in streams.info.flags
    assert not streams.meta[2:].any()


def test_a_tail_after_the_last_declared_picture_is_found() -> None:
    data = _mpo()
    streams = extract_streams(data + TAIL)
    assert (streams.info.image_end, streams.info.tail_length) == (len(data), len(TAIL))
    window = np.round(streams.meta[2, : len(TAIL)] * 255).astype(np.uint8).tobytes()
    assert window == TAIL
    assert raw.read(data + TAIL) == TAIL


def test_fill_between_the_pictures_is_allowed() -> None:
    data = _insert_before_second(_mpo(), b"\x00" * 7 + b"\xff" * 5)
    assert parse_container(data).image_end == len(data)


@pytest.mark.parametrize("filler", [b"hidden payload", b"\x00\x00x"])
def test_data_between_the_pictures_stays_in_the_tail(filler: bytes) -> None:
    """An index cannot make a payload part of the image by declaring a picture after it."""
    mpo = _mpo()
    data = _insert_before_second(mpo, filler)
    assert parse_container(data).image_end == _second_image_at(mpo)  # Pillow writes the pictures back to back
    assert raw.read(data).startswith(filler)


def test_a_declared_picture_that_is_not_a_jpeg_stays_in_the_tail() -> None:
    mpo = _mpo()
    second = _second_image_at(mpo)
    forged = mpo[:second] + b"AI42 not a picture at all\x00" + mpo[second + 26 :]
    assert parse_container(forged).image_end == second
    truncated = mpo[: second + 200]  # the declared picture is cut short: not a whole JPEG
    assert parse_container(truncated).image_end == second


def test_a_broken_index_changes_nothing() -> None:
    """An MP index that points outside its segment or the file: the tail starts at the first EOI, as before."""
    mpo = _mpo()
    second = _second_image_at(mpo)
    header, order, entries = _entries_at(mpo)
    for patch_at, value in ((header + 4, 0xFFFF), (entries + 16 + 8, 0x7FFF_FFF0), (header, 0)):
        broken = bytearray(mpo)
        struct.pack_into(order + "I", broken, patch_at, value)
        assert parse_container(bytes(broken)).image_end == second


def test_a_jpeg_without_an_index_ends_at_its_first_eoi() -> None:
    """Only files with an MPF segment change: two JPEGs concatenated are a picture and a tail."""
    first = encode(Image.fromarray(natural(64, 48)), "JPEG")
    second = encode(Image.fromarray(natural(32, 24)), "JPEG")
    assert parse_container(first + second).image_end == len(first)
    assert extract_streams(first + second).info.tail_length == len(second)
