"""A small, bounded reader for the TIFF structure inside an EXIF block.

Only what the pipeline needs: the EXIF sub-IFD's UserComment and whether IFD1 (the thumbnail
directory) exists. Offsets are checked against the block; malformed data yields empty results,
never an exception or a loop (each IFD is visited at most once).
"""

from __future__ import annotations

import struct

EXIF_IFD_POINTER = 0x8769
USER_COMMENT = 0x9286
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def _entries(tiff: bytes, offset: int, endian: str) -> tuple[dict[int, tuple[int, int, int]], int]:
    """Return ``({tag: (type, count, value_or_offset_pos)}, next_ifd_offset)`` for one IFD."""
    if offset < 8 or offset + 2 > len(tiff):
        return {}, 0
    (count,) = struct.unpack(endian + "H", tiff[offset : offset + 2])
    entries: dict[int, tuple[int, int, int]] = {}
    pos = offset + 2
    for _ in range(min(count, 512)):
        if pos + 12 > len(tiff):
            return entries, 0
        tag, typ, n = struct.unpack(endian + "HHI", tiff[pos : pos + 8])
        entries[tag] = (typ, n, pos + 8)
        pos += 12
    nxt = struct.unpack(endian + "I", tiff[pos : pos + 4])[0] if pos + 4 <= len(tiff) else 0
    return entries, nxt


def _value_bytes(tiff: bytes, entry: tuple[int, int, int], endian: str) -> bytes:
    typ, n, pos = entry
    size = _TYPE_SIZES.get(typ, 1) * n
    if size <= 4:
        return tiff[pos : pos + size]
    (offset,) = struct.unpack(endian + "I", tiff[pos : pos + 4])
    if offset + size > len(tiff):
        return b""
    return tiff[offset : offset + size]


def read_exif(tiff: bytes) -> tuple[bytes | None, bool]:
    """Return ``(user_comment_bytes_or_None, has_ifd1)`` for an EXIF block (TIFF header onwards)."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None, False
    endian = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack(endian + "I", tiff[4:8])
    entries, nxt = _entries(tiff, ifd0, endian)
    comment = None
    pointer = entries.get(EXIF_IFD_POINTER)
    if pointer is not None:
        raw = _value_bytes(tiff, pointer, endian)
        if len(raw) == 4:
            (sub,) = struct.unpack(endian + "I", raw)
            if sub != ifd0:
                sub_entries, _ = _entries(tiff, sub, endian)
                if USER_COMMENT in sub_entries:
                    comment = _value_bytes(tiff, sub_entries[USER_COMMENT], endian)
    has_ifd1 = bool(nxt) and nxt != ifd0 and nxt + 2 <= len(tiff)
    return comment, has_ifd1
