"""``raw``: the frame appended after the end of the image (found again by parsing the container)."""

from __future__ import annotations

from PIL import Image

from v4runtime.errors import ExtractError, ImageError
from v4runtime.stego.codec import encode, prepare
from v4runtime.streams.containers import parse_container

FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


def embed(im: Image.Image, data: bytes, fmt: str, *, lossless: bool = False, quality: int = 90) -> bytes:
    """Encode ``im`` as ``fmt`` and append ``data``."""
    return encode(prepare(im, fmt), fmt, lossless=lossless, quality=quality) + data


def read(data: bytes) -> bytes:
    """Return the bytes after the end of the image."""
    try:
        end = parse_container(data).image_end
    except ImageError as exc:
        raise ExtractError(f"cannot parse the image: {exc}", reason="bad_image") from exc
    return data[end:]
