"""Container parsing: where each format's image ends, its EXIF block, and a few header facts.

The end of the image is found by walking each format's structure, never by searching for a
marker (an EXIF thumbnail carries its own JPEG EOI, a GIF payload may contain ``;``):

- JPEG: markers are walked segment by segment; entropy-coded scans are skipped to the next
  real marker; the image ends at the EOI that follows the last scan. A multi-picture JPEG (an
  APP2 ``MPF`` index) ends after the last image its index declares (see :func:`_mpo_end`).
- PNG: chunks are walked to ``IEND``; the image ends after IEND's 4-byte CRC.
- GIF: blocks and sub-blocks are walked to the ``0x3B`` trailer.
- WebP: the RIFF header's size field gives the end (any tail length).
- BMP: the file header's size field gives the end.

Everything after the end is the *tail*. Truncated or malformed structures raise
:class:`~v4runtime.errors.ImageError` with reason ``truncated`` or ``corrupt``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from v4runtime.errors import ImageError

#: Formats the pipeline accepts, by the name Pillow uses.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_PREFIX = b"Exif\x00\x00"


@dataclass
class Container:
    """What the container walk learned about a file (no pixels decoded).

    Attributes:
        format: One of :data:`FORMATS`.
        image_end: Offset one past the last byte of the image; ``data[image_end:]`` is the tail.
        exif: The EXIF block (TIFF header onwards, without the ``Exif\\0\\0`` prefix), or ``b""``.
        frames: Number of frames seen (GIF image descriptors, APNG ``acTL``, WebP ``ANMF``).
        text_chunks: Number of PNG text chunks (``tEXt``, ``zTXt``, ``iTXt``).
        has_trns: A PNG ``tRNS`` chunk is present.
        has_icc: An ICC profile is embedded.
        lossless: WebP is VP8L (lossless); PNG, GIF and BMP are always lossless.
        progressive: JPEG uses a progressive scan.
        bit_depth: PNG bit depth, or bits per pixel for BMP; 8 otherwise.
    """

    format: str
    image_end: int
    exif: bytes = b""
    frames: int = 1
    text_chunks: int = 0
    has_trns: bool = False
    has_icc: bool = False
    lossless: bool = True
    progressive: bool = False
    bit_depth: int = 8
    extra: dict[str, int] = field(default_factory=dict)
    #: Number of GIF comment extensions (see :func:`gif_without_comments`).
    comments: int = 0


def sniff_format(data: bytes) -> str | None:
    """Return the format named by the file's magic bytes, or ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == _PNG_SIGNATURE:
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    return None


def _truncated(fmt: str, what: str) -> ImageError:
    return ImageError(f"truncated {fmt} file: {what}", reason="truncated")


def _corrupt(fmt: str, what: str) -> ImageError:
    return ImageError(f"corrupt {fmt} file: {what}", reason="corrupt")


def parse_container(data: bytes) -> Container:
    """Walk the file's structure and return a :class:`Container`.

    Raises:
        ImageError: ``empty``, ``not_an_image``, ``truncated`` or ``corrupt``.
    """
    if not data:
        raise ImageError("empty file", reason="empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError("not an image in a supported format (JPEG, PNG, GIF, WebP, BMP)", reason="not_an_image")
    return _PARSERS[fmt](data)


# --------------------------------------------------------------------------------------------- JPEG
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
#: Most scans (SOS segments) a JPEG may have. Encoders write at most a few dozen; libjpeg decodes
#: every scan of a progressive file over the whole image, so thousands of tiny scans make a bomb
#: of decoding time (5,000 extra scans of 84 bytes on a 6000 x 6000 picture: 23 s instead of 0.5 s).
#: libjpeg-turbo recommends a limit of 500 to its users; this one is twice that.
MAX_JPEG_SCANS = 1000
# The first marker after entropy-coded data: 0xFF followed by anything but stuffing (0x00), a
# restart marker (0xD0-0xD7) or fill (0xFF). Searched in C: a Python loop over 0xFF bytes took
# 0.4 s per megabyte of fill.
#: Most markers (segments and standalone markers) a JPEG may have, scans excluded. Real files have
#: a few dozen. Pillow keeps every APP segment and spends microseconds on each: a file of a million
#: empty segments took 2 s and 168 MB, and the byte cap allows a hundred times that.
MAX_JPEG_MARKERS = 10_000
#: Most 0xFF fill bytes a JPEG may have before its first scan, all runs together. Encoders write
#: none or a few; Pillow reads the header in Python, about 0.5 s per megabyte of fill (16 s for
#: one 32 MB upload to the scan service). After the first scan libjpeg skips fill in C.
MAX_JPEG_HEADER_FILL = 65_536
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NOT_FILL = re.compile(rb"[^\xff]")


@dataclass
class _JpegWalk:
    """One JPEG image walked from its SOI to its EOI."""

    end: int
    exif: bytes = b""
    has_icc: bool = False
    progressive: bool = False
    #: ``(start, end)`` of the first APP2 ``MPF`` segment's MP header (its TIFF header onwards).
    mpf: tuple[int, int] | None = None


def _parse_jpeg(data: bytes) -> Container:
    head = _walk_jpeg(data, 0)
    end = head.end if head.mpf is None else _mpo_end(data, head.mpf, head.end)
    return Container("JPEG", end, exif=head.exif, has_icc=head.has_icc, progressive=head.progressive,
                     lossless=False)


def _walk_jpeg(data: bytes, start: int) -> _JpegWalk:
    """Walk the JPEG whose SOI is at ``start`` to the EOI after its last scan."""
    n = len(data)
    pos = start + 2
    walk = _JpegWalk(end=n)
    scans = markers = header_fill = 0
    while True:
        if pos >= n:
            raise _truncated("JPEG", "no EOI marker after the last segment")
        markers += 1
        if markers > MAX_JPEG_MARKERS + MAX_JPEG_SCANS:
            raise _corrupt("JPEG", f"more than {MAX_JPEG_MARKERS} markers (a parsing-time bomb)")
        if data[pos] != 0xFF:
            # Extraneous bytes between segments: libjpeg skips to the next 0xFF, and so do we.
            nxt = data.find(b"\xff", pos)
            if nxt < 0:
                raise _truncated("JPEG", "no EOI marker after the last segment")
            pos = nxt
        fill_end = _NOT_FILL.search(data, pos)  # fill bytes may precede a marker
        if not scans:
            header_fill += (fill_end.start() if fill_end else n) - pos - 1  # the marker's own 0xFF is not fill
            if header_fill > MAX_JPEG_HEADER_FILL:
                raise _corrupt("JPEG", f"more than {MAX_JPEG_HEADER_FILL} fill bytes before the first scan "
                                       "(a parsing-time bomb)")
        pos = fill_end.start() if fill_end else n
        if pos >= n:
            raise _truncated("JPEG", "file ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            if not scans:
                raise _corrupt("JPEG", "EOI before any scan")
            walk.end = pos
            return walk
        if marker in _STANDALONE:
            continue
        if pos + 2 > n:
            raise _truncated("JPEG", "file ends inside a segment length")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise _corrupt("JPEG", f"segment length {length} at offset {pos}")
        end = pos + length
        if end > n:
            raise _truncated("JPEG", f"segment 0x{marker:02X} runs past the end of the file")
        if marker == 0xE1 and not walk.exif and data[pos + 2 : pos + 8] == _EXIF_PREFIX:
            walk.exif = data[pos + 8 : end]
        elif marker == 0xE2 and data[pos + 2 : pos + 14] == b"ICC_PROFILE\x00":
            walk.has_icc = True
        elif marker == 0xE2 and walk.mpf is None and data[pos + 2 : pos + 6] == _MPF_PREFIX:
            walk.mpf = (pos + 6, end)
        elif marker in (0xC2, 0xC6, 0xCA, 0xCE):
            walk.progressive = True
        pos = end
        if marker == 0xDA:  # start of scan: skip entropy-coded data to the next real marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _corrupt("JPEG", f"more than {MAX_JPEG_SCANS} scans (a decoding-time bomb)")
            pos = _skip_scan(data, pos)


# Multi-picture JPEG (CIPA DC-007, "MPO"): stereo pairs, previews. The first image's APP2 "MPF"
# segment holds an MP index (a TIFF structure) whose MP entries give each image's size and offset,
# counted from the MP header; the other images follow the first one's EOI. They are part of the
# file, not a tail: the image ends after the last one declared.
_MPF_PREFIX = b"MPF\x00"
_MP_ENTRY_TAG = 0xB002
_MP_ENTRY_SIZE = 16
#: Most images of an MP index that are walked; cameras write two or three.
MAX_MPO_IMAGES = 64
#: Bytes allowed between two images of an MPO: only fill (0x00 or 0xFF) may sit there.
_NOT_PADDING = re.compile(rb"[^\x00\xff]")


def _mpo_end(data: bytes, mpf: tuple[int, int], first_end: int) -> int:
    """End of the last image an MP index declares, each one walked like the first.

    The images are taken in file order from the first one's EOI: each must start after nothing
    but fill and be a whole JPEG. The first that is not (a gap holding data, a bad offset, a
    broken image) ends the walk, so undeclared or unparsable bytes stay in the tail: an index
    cannot hide a payload by declaring it, only a real JPEG can be declared.
    """
    end = first_end
    for start in sorted(_mp_image_offsets(data, mpf)):
        if start < end:  # inside an image already walked (the first one's own entry, a duplicate)
            continue
        if _NOT_PADDING.search(data, end, start) or data[start : start + 3] != b"\xff\xd8\xff":
            break
        try:
            end = _walk_jpeg(data, start).end
        except ImageError:
            break
    return end


def _mp_image_offsets(data: bytes, mpf: tuple[int, int]) -> list[int]:
    """File offsets of the images an MP index declares after the first; ``[]`` when it is malformed."""
    header, segment_end = mpf
    index = data[header:segment_end]
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(index[:4])
    if order is None:
        return []
    try:
        ifd = struct.unpack_from(order + "I", index, 4)[0]
        count = struct.unpack_from(order + "H", index, ifd)[0]
        for i in range(count):
            tag, _, size, at = struct.unpack_from(order + "HHII", index, ifd + 2 + 12 * i)
            if tag == _MP_ENTRY_TAG:
                break
        else:
            return []
        entries = min(size // _MP_ENTRY_SIZE, MAX_MPO_IMAGES)
        offsets = [struct.unpack_from(order + "I", index, at + _MP_ENTRY_SIZE * k + 8)[0] for k in range(entries)]
    except struct.error:  # an index that runs past its segment: not a multi-picture file
        return []
    return [header + offset for offset in offsets if offset]  # the first image's offset is 0


def _skip_scan(data: bytes, pos: int) -> int:
    """Return the offset of the first marker after entropy-coded data starting at ``pos``."""
    found = _SCAN_END.search(data, pos)
    if found is None:
        raise _truncated("JPEG", "scan data has no terminating marker")
    return found.start()


# ---------------------------------------------------------------------------------------------- PNG
#: Most chunks a PNG may have. A large image written in small IDAT chunks, or an APNG of tens of
#: thousands of frames, stays well below; Pillow keeps every unknown chunk and spends microseconds
#: on each, so a file of a million empty chunks took 6 s and 160 MB.
MAX_PNG_CHUNKS = 250_000


def _parse_png(data: bytes) -> Container:
    n = len(data)
    pos = 8
    exif = b""
    text = 0
    frames = 1
    has_trns = has_icc = False
    bit_depth = 8
    first = True
    chunks = 0
    while True:
        if pos + 8 > n:
            raise _truncated("PNG", "no IEND chunk")
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _corrupt("PNG", f"more than {MAX_PNG_CHUNKS} chunks (a parsing-time bomb)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF:
            raise _corrupt("PNG", f"chunk length {length}")
        body = pos + 8
        end = body + length + 4  # data + CRC
        if end > n:
            raise _truncated("PNG", f"chunk {ctype!r} runs past the end of the file")
        if first:
            if ctype != b"IHDR" or length < 13:
                raise _corrupt("PNG", "first chunk is not IHDR")
            bit_depth = data[body + 8]
            first = False
        if ctype == b"IEND":
            return Container(
                "PNG", end, exif=exif, frames=frames, text_chunks=text, has_trns=has_trns,
                has_icc=has_icc, bit_depth=bit_depth,
            )
        if ctype == b"eXIf" and not exif:
            exif = data[body : body + length]
            if exif.startswith(_EXIF_PREFIX):
                exif = exif[len(_EXIF_PREFIX) :]
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            text += 1
        elif ctype == b"tRNS":
            has_trns = True
        elif ctype == b"iCCP":
            has_icc = True
        elif ctype == b"acTL" and length >= 8:
            frames = max(1, struct.unpack(">I", data[body : body + 4])[0])
        pos = end


# ---------------------------------------------------------------------------------------------- GIF
def _skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while True:
        if pos >= n:
            raise _truncated("GIF", "file ends inside data sub-blocks")
        size = data[pos]
        pos += 1
        if size == 0:
            return pos
        pos += size


def _parse_gif(data: bytes) -> Container:
    n = len(data)
    if n < 13:
        raise _truncated("GIF", "no logical screen descriptor")
    packed = data[10]
    pos = 13
    if packed & 0x80:
        pos += 3 * (2 << (packed & 0x07))
    frames = comments = 0
    while True:
        if pos >= n:
            raise _truncated("GIF", "no trailer")
        block = data[pos]
        if block == 0x3B:  # trailer
            if frames == 0:
                raise _corrupt("GIF", "no image")
            return Container("GIF", pos + 1, frames=frames, comments=comments)
        if block == 0x21:  # extension: label, then sub-blocks
            comments += data[pos + 1 : pos + 2] == b"\xfe"
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor (9 bytes), optional local table, LZW size, sub-blocks
            if pos + 10 > n:
                raise _truncated("GIF", "file ends inside an image descriptor")
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 << (local & 0x07))
            pos = _skip_sub_blocks(data, pos + 1)
            frames += 1
        else:
            raise _corrupt("GIF", f"unknown block 0x{block:02X} at offset {pos}")


def gif_without_comments(data: bytes) -> bytes:
    """Return a GIF (already walked by :func:`parse_container`) with its comment extensions cut out.

    Comments only ever set Pillow's ``info["comment"]``, and Pillow builds it with ``bytes +=``
    per sub-block and per comment: quadratic, so a 10 MB comment in 255-byte sub-blocks took
    100 s to open and one in 1-byte sub-blocks hours. Everything else is copied byte for byte.
    """
    out = bytearray()
    packed = data[10]
    pos = 13 + (3 * (2 << (packed & 0x07)) if packed & 0x80 else 0)
    kept = 0  # data[kept:pos] is still to copy
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:
            start = pos
            pos = _skip_sub_blocks(data, pos + 2)
            if data[start + 1] == 0xFE:
                out += data[kept:start]
                kept = pos
        else:  # image descriptor
            local = data[pos + 9]
            pos += 10 + (3 * (2 << (local & 0x07)) if local & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)
    out += data[kept:]
    return bytes(out)


# --------------------------------------------------------------------------------------------- WebP
def _parse_webp(data: bytes) -> Container:
    n = len(data)
    if n < 12:
        raise _truncated("WebP", "no RIFF header")
    riff_size = struct.unpack("<I", data[4:8])[0]
    end = 8 + riff_size
    if riff_size < 4:
        raise _corrupt("WebP", f"RIFF size {riff_size}")
    if end > n:
        raise _truncated("WebP", "RIFF size runs past the end of the file")
    pos = 12
    exif = b""
    frames = 0
    lossless = False
    has_icc = False
    while pos + 8 <= end:
        fourcc = data[pos : pos + 4]
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if body + size > end:
            raise _truncated("WebP", f"chunk {fourcc!r} runs past the RIFF size")
        if fourcc == b"EXIF" and not exif:
            exif = data[body : body + size]
            if exif.startswith(_EXIF_PREFIX):
                exif = exif[len(_EXIF_PREFIX) :]
        elif fourcc == b"VP8L":
            lossless = True
            frames = max(frames, 1)
        elif fourcc == b"VP8 ":
            frames = max(frames, 1)
        elif fourcc == b"ANMF":
            frames += 1
            if data[body + 16 : body + 20] == b"VP8L":  # the frame header is 16 bytes
                lossless = True
        elif fourcc == b"ICCP":
            has_icc = True
        pos = body + size + (size & 1)
    if frames == 0:
        raise _corrupt("WebP", "no image chunk")
    return Container("WEBP", end, exif=exif, frames=frames, lossless=lossless, has_icc=has_icc)


# ---------------------------------------------------------------------------------------------- BMP
def _parse_bmp(data: bytes) -> Container:
    n = len(data)
    if n < 30:
        raise _truncated("BMP", "no file and info header")
    file_size, _, offset, header_size = struct.unpack("<I4sII", data[2:18])
    if header_size < 12:
        raise _corrupt("BMP", f"info header size {header_size}")
    if header_size == 12:
        width, height, _, bpp = struct.unpack("<hhHH", data[18:26])
        compression = 0
        image_size = 0
    else:
        if n < 54:
            raise _truncated("BMP", "info header")
        width, height, _, bpp, compression, image_size = struct.unpack("<iiHHII", data[18:38])
    stride = ((abs(width) * bpp + 31) // 32) * 4
    computed = offset + (image_size if compression not in (0, 3, 6) and image_size else stride * abs(height))
    # The header's file size is authoritative; writers that leave it 0 fall back to the pixel array end.
    end = file_size if file_size >= computed or (file_size and compression not in (0, 3, 6)) else computed
    if end > n or computed > n:
        raise _truncated("BMP", "pixel data runs past the end of the file")
    return Container("BMP", end, bit_depth=bpp)


_PARSERS = {"JPEG": _parse_jpeg, "PNG": _parse_png, "GIF": _parse_gif, "WEBP": _parse_webp, "BMP": _parse_bmp}
