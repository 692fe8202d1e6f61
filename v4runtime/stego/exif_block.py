"""Build EXIF blocks (TIFF structure) with IFD0, the EXIF sub-IFD and an optional thumbnail.

Pillow can write simple EXIF but not an IFD1 thumbnail; camera files have one, and a thumbnail
carries its own JPEG EOI inside the APP1 segment, which is exactly what a marker search trips
over. This writer produces what cameras produce, for the embedder and for hard negatives.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

# Tags used by the embedder and the corpus builder.
MAKE, MODEL, ORIENTATION, SOFTWARE, DATETIME = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128
EXIF_IFD, COMPRESSION, THUMB_OFFSET, THUMB_LENGTH = 0x8769, 0x0103, 0x0201, 0x0202
EXPOSURE_TIME, F_NUMBER, ISO, DATETIME_ORIGINAL, USER_COMMENT = 0x829A, 0x829D, 0x8827, 0x9003, 0x9286
FOCAL_LENGTH = 0x920A
GPS_IFD, INTEROP_IFD, SUB_IFDS = 0x8825, 0xA005, 0x014A
STRIP_OFFSETS, STRIP_BYTE_COUNTS, TILE_OFFSETS, TILE_BYTE_COUNTS = 0x0111, 0x0117, 0x0144, 0x0145

#: Tags whose values are offsets within the block or the sizes of what those point at, by name.
#: :func:`build_exif` lays the block out itself: a caller's value would be overwritten (the EXIF
#: sub-IFD pointer) or point at the wrong bytes, so ``embed`` refuses them in ``exif_tags``.
LAYOUT_TAGS: dict[int, str] = {
    STRIP_OFFSETS: "StripOffsets",
    STRIP_BYTE_COUNTS: "StripByteCounts",
    TILE_OFFSETS: "TileOffsets",
    TILE_BYTE_COUNTS: "TileByteCounts",
    SUB_IFDS: "SubIFDs",
    THUMB_OFFSET: "JPEGInterchangeFormat",
    THUMB_LENGTH: "JPEGInterchangeFormatLength",
    EXIF_IFD: "ExifIFDPointer",
    GPS_IFD: "GPSInfoIFDPointer",
    INTEROP_IFD: "InteroperabilityIFDPointer",
}

#: The 8-byte character-code prefixes of UserComment (EXIF 2.3, table 9).
CHARSET_ASCII = b"ASCII\x00\x00\x00"
CHARSET_UNDEFINED = b"\x00" * 8

Value = str | bytes | int | tuple[int, int]
_POINTERS = frozenset({EXIF_IFD, THUMB_OFFSET, THUMB_LENGTH})


def _encode(value: Value) -> tuple[int, int, bytes]:
    """Return ``(type, count, bytes)`` for a tag value (big-endian)."""
    if isinstance(value, str):
        raw = value.encode("ascii", "replace") + b"\x00"
        return 2, len(raw), raw
    if isinstance(value, bytes):
        return 7, len(value), value
    if isinstance(value, tuple):
        return 5, 1, struct.pack(">II", *value)
    if 0 <= value < 0x10000:
        return 3, 1, struct.pack(">H", value)
    return 4, 1, struct.pack(">I", value)


def _ifd(entries: Mapping[int, Value], start: int, next_ifd: int) -> bytes:
    """Serialise one IFD placed at ``start`` (offset in the TIFF block), data area right after it."""
    items = sorted(entries.items())
    data_at = start + 2 + 12 * len(items) + 4
    head = [struct.pack(">H", len(items))]
    data = []
    for tag, value in items:
        if tag in _POINTERS and isinstance(value, int):
            typ, count, raw = 4, 1, struct.pack(">I", value)  # offsets are always LONG
        else:
            typ, count, raw = _encode(value)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\x00")
        else:
            field = struct.pack(">I", data_at)
            if len(raw) & 1:
                raw += b"\x00"
            data.append(raw)
            data_at += len(raw)
        head.append(struct.pack(">HHI", tag, typ, count) + field)
    head.append(struct.pack(">I", next_ifd))
    return b"".join(head) + b"".join(data)


def build_exif(
    ifd0: Mapping[int, Value] | None = None,
    exif: Mapping[int, Value] | None = None,
    thumbnail: bytes | None = None,
) -> bytes:
    """Return an EXIF block (TIFF header onwards, big-endian), as Pillow's ``exif=`` accepts.

    Args:
        ifd0: Main image tags (Make, Model, DateTime, ...).
        exif: EXIF sub-IFD tags (DateTimeOriginal, UserComment, ...); written when non-empty.
        thumbnail: JPEG bytes stored through IFD1 (JPEGInterchangeFormat), as cameras do.
    """
    ifd0 = dict(ifd0 or {})
    exif = dict(exif or {})
    if exif:
        ifd0[EXIF_IFD] = 0  # pointers are inline LONGs: sizes do not depend on their values
    exif_at = 8 + len(_ifd(ifd0, 8, 0))
    ifd1_at = exif_at + (len(_ifd(exif, exif_at, 0)) if exif else 0)
    ifd1: dict[int, Value] = {}
    if thumbnail is not None:
        ifd1 = {COMPRESSION: 6, THUMB_OFFSET: 0, THUMB_LENGTH: len(thumbnail)}
        ifd1[THUMB_OFFSET] = ifd1_at + len(_ifd(ifd1, ifd1_at, 0))
    if exif:
        ifd0[EXIF_IFD] = exif_at
    parts = [b"MM\x00*", struct.pack(">I", 8), _ifd(ifd0, 8, ifd1_at if ifd1 else 0)]
    if exif:
        parts.append(_ifd(exif, exif_at, 0))
    if ifd1:
        parts += [_ifd(ifd1, ifd1_at, 0), thumbnail or b""]
    return b"".join(parts)


def user_comment(payload: bytes) -> bytes:
    """Return a UserComment value: the 8-byte character code (ASCII or undefined) + ``payload``."""
    printable = all(32 <= b < 127 or b in (9, 10, 13, 0) for b in payload)
    return (CHARSET_ASCII if printable else CHARSET_UNDEFINED) + payload
