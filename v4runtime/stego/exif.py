"""``exif``: the frame in the EXIF UserComment field, after its 8-byte character-code prefix."""

from __future__ import annotations

from collections.abc import Mapping

from PIL import Image

from v4runtime.errors import EmbedError, ExtractError, ImageError
from v4runtime.stego.codec import encode, prepare
from v4runtime.stego.exif_block import USER_COMMENT, Value, build_exif, user_comment
from v4runtime.streams.containers import parse_container
from v4runtime.streams.tiff import read_exif

FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")
#: A JPEG APP1 segment holds at most 65533 bytes; keep room for the other tags.
MAX_COMMENT = 60_000
#: Largest EXIF block (TIFF header onwards) a JPEG holds: one APP1 segment of 65533 bytes after
#: its ``Exif\0\0`` prefix (Pillow refuses more with a bare ``ValueError``).
MAX_JPEG_BLOCK = 65_533 - 6


def max_frame(fmt: str, ifd0: Mapping[int, Value] | None = None, thumbnail: bytes | None = None) -> int:
    """Largest frame (marker + payload + terminator) the UserComment can take in ``fmt``.

    In JPEG the tags and thumbnail share the APP1 segment with the comment, so they take room from it.
    """
    if fmt != "JPEG":
        return MAX_COMMENT
    # The block with an empty frame; the frame adds its length, padded to an even number of bytes.
    room = MAX_JPEG_BLOCK - len(_block(b"", ifd0, thumbnail))
    return max(0, min(MAX_COMMENT, room - room % 2))


def _block(data: bytes, ifd0: Mapping[int, Value] | None, thumbnail: bytes | None) -> bytes:
    return build_exif(ifd0, {USER_COMMENT: user_comment(data)}, None if thumbnail is None else bytes(thumbnail))


def embed(
    im: Image.Image,
    data: bytes,
    fmt: str,
    *,
    ifd0: Mapping[int, Value] | None = None,
    thumbnail: bytes | None = None,
    lossless: bool = False,
    quality: int = 90,
) -> bytes:
    """Encode ``im`` as ``fmt`` with an EXIF block whose UserComment carries ``data``.

    Raises:
        EmbedError: ``does_not_fit``: the frame is over :func:`max_frame` (in JPEG, the frame, the
            tags and the thumbnail together are over one APP1 segment).
    """
    room = max_frame(fmt, ifd0, thumbnail)
    if len(data) > room:
        shared = " (the other tags and the thumbnail share its JPEG APP1 segment)" if room < MAX_COMMENT else ""
        raise EmbedError(
            f"payload does not fit: the frame is {len(data)} bytes, the EXIF UserComment holds at most {room}{shared}",
            reason="does_not_fit",
        )
    block = _block(data, ifd0, thumbnail)
    return encode(prepare(im, fmt), fmt, exif=block, lossless=lossless, quality=quality)


def read(data: bytes) -> bytes:
    """Return the UserComment bytes after the 8-byte character code."""
    try:
        exif = parse_container(data).exif
    except ImageError as exc:
        raise ExtractError(f"cannot parse the image: {exc}", reason="bad_image") from exc
    comment, _ = read_exif(exif)
    if comment is None:
        raise ExtractError("the image has no EXIF UserComment", reason="no_carrier")
    return comment[8:]



