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
    """Encode ``im`` as ``fmt`` with an EXIF block whose UserComment carries ``data``."""
    if len(data) > MAX_COMMENT:
        raise EmbedError(
            f"payload does not fit: the frame is {len(data)} bytes, the EXIF UserComment holds at most {MAX_COMMENT}",
            reason="does_not_fit",
        )
    block = build_exif(ifd0, {USER_COMMENT: user_comment(data)}, thumbnail)
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



