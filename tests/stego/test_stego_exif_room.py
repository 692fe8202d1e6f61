"""The ``exif`` method in JPEG: the payload shares one APP1 segment (65533 bytes) with the tags and thumbnail.

``capacity()`` said 59995 bytes whatever the tags, and ``embed`` then failed with Pillow's bare
``ValueError: EXIF data is too long``. Now capacity counts them, and what does not fit is an
:class:`~v4runtime.errors.EmbedError` with reason ``does_not_fit``, like every other method.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from v4runtime.errors import EmbedError
from v4runtime.stego import capacity, embed, extract
from v4runtime.stego.exif_block import MAKE, MODEL

COVER = Image.new("RGB", (32, 32), (40, 90, 160))


def _thumbnail(size: int) -> bytes:
    """JPEG bytes of about ``size`` bytes (a real thumbnail, padded with a comment)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 12)).save(buf, "JPEG", comment=b"c" * max(0, size - 700))
    return buf.getvalue()


EXTRAS = [
    pytest.param({"exif_tags": {MAKE: "M" * 6000}}, id="long-make"),
    pytest.param({"exif_tags": {MAKE: "Canon", MODEL: b"\x01" * 20_001}}, id="odd-sized-tags"),
    pytest.param({"thumbnail": _thumbnail(30_001)}, id="thumbnail"),
    pytest.param({"exif_tags": {MAKE: "Canon"}, "thumbnail": _thumbnail(9_000)}, id="both"),
]


@pytest.mark.parametrize("extra", EXTRAS)
@pytest.mark.parametrize(("marker", "terminator"), [(True, True), (False, False), (True, False)])
def test_capacity_is_exact_with_tags_and_thumbnail(extra: dict[str, object], marker: bool, terminator: bool) -> None:
    room = capacity(COVER, "exif", "JPEG", marker=marker, terminator=terminator, **extra)  # type: ignore[arg-type]
    assert 0 < room < 59_995
    payload = b"a" * room
    data = embed(COVER, payload, "exif", "JPEG", marker=marker, terminator=terminator, **extra)  # type: ignore[arg-type]
    assert extract(data, "exif", marker=marker, length=room) == payload
    with pytest.raises(EmbedError) as info:
        embed(COVER, payload + b"a", "exif", "JPEG", marker=marker, terminator=terminator, **extra)  # type: ignore[arg-type]
    assert info.value.reason == "does_not_fit"
    assert f"holds at most {room + (4 if marker else 0) + (1 if terminator else 0)}" in str(info.value)


def test_the_audit_cases_are_typed_errors() -> None:
    """The two calls of the audit: a payload of the capacity with a long Make tag, and a thumbnail
    larger than a segment on its own (capacity 0)."""
    room = capacity(COVER, "exif", "JPEG")
    with pytest.raises(EmbedError) as info:
        embed(COVER, b"a" * room, "exif", "JPEG", exif_tags={MAKE: "M" * 6000})
    assert info.value.reason == "does_not_fit"
    big = b"\xff" * 70_000
    assert capacity(COVER, "exif", "JPEG", thumbnail=big) == 0
    with pytest.raises(EmbedError) as info:
        embed(COVER, b"a" * 10, "exif", "JPEG", thumbnail=big)
    assert info.value.reason == "does_not_fit"
    assert "share its JPEG APP1 segment" in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_other_formats_keep_their_room(fmt: str) -> None:
    """PNG and WebP store EXIF in a chunk of up to 2 GB: only the UserComment's own limit applies."""
    tags = {MAKE: "M" * 6000}
    assert capacity(COVER, "exif", fmt, exif_tags=tags) == capacity(COVER, "exif", fmt) == 59_995
    payload = b"a" * 59_995
    assert extract(embed(COVER, payload, "exif", fmt, exif_tags=tags, lossless=True), "exif") == payload


def test_without_tags_the_jpeg_capacity_is_unchanged() -> None:
    assert capacity(COVER, "exif", "JPEG") == 59_995
    assert capacity(COVER, "exif", "JPEG", marker=False, terminator=False) == 60_000
