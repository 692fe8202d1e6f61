"""Loading covers and encoding images in a format, shared by the embedding methods."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image

from v4runtime.errors import EmbedError, ExtractError
from v4runtime.files import read_file

#: The formats the methods write, by Pillow name.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")

Cover = Image.Image | bytes | bytearray | memoryview | str | os.PathLike[str]
_BYTES_LIKE = (bytes, bytearray, memoryview)


def normalise_format(fmt: str) -> str:
    """Return the Pillow name of ``fmt`` (``jpg``, ``png``, ``webp``... accepted)."""
    name = fmt.upper().lstrip(".")
    name = {"JPG": "JPEG"}.get(name, name)
    if name not in FORMATS:
        raise EmbedError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", reason="bad_format")
    return name


def _open_checked(data: bytes) -> Image.Image:
    """Open and load the first frame; over Pillow's pixel limit is an error, not a warning.

    Pillow only warns between ``MAX_IMAGE_PIXELS`` and twice that: a 560 KB PNG of 12000 x 12000
    RGBA pixels then took 1.7 GB and 6 s to extract from.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
        im.seek(0)
        im.load()
    return im


def load_cover(cover: Cover) -> Image.Image:
    """Return the first frame of ``cover`` as a loaded Pillow image (``1``/CMYK/16-bit made 8-bit).

    Raises:
        EmbedError: ``bad_cover``: unreadable, no pixels (0 wide or high), or a mode with no
            8-bit conversion.
    """
    if isinstance(cover, Image.Image):
        im = cover
    else:
        try:
            im = _open_checked(bytes(cover) if isinstance(cover, _BYTES_LIKE) else read_file(cover))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise EmbedError(f"the cover image is too large: {exc}", reason="too_many_pixels") from exc
        except Exception as exc:
            raise EmbedError(f"cannot read the cover image: {exc}", reason="bad_cover") from exc
    if im.width <= 0 or im.height <= 0:  # a Pillow image can be empty; no format can store it
        raise EmbedError(f"the cover image has no pixels ({im.width}x{im.height})", reason="bad_cover")
    try:
        if im.mode in ("1", "I;16", "I;16B", "I;16L", "I", "F"):
            im = im.convert("L")
        elif im.mode == "La":  # premultiplied: Pillow converts it to LA only
            im = im.convert("LA")
        elif im.mode not in ("L", "LA", "P", "PA", "RGB", "RGBA"):
            im = im.convert("RGB")
    except ValueError as exc:
        raise EmbedError(f"cannot convert a {im.mode} cover to 8-bit samples: {exc}", reason="bad_cover") from exc
    return im


def quantize(im: Image.Image, colours: int = 256, *, dither: bool = False) -> Image.Image:
    """Reduce ``im`` to a palette of at most ``colours`` entries (fast octree; optional dithering)."""
    pal = im.convert("RGB").quantize(colours, method=Image.Quantize.FASTOCTREE)
    if dither:  # remap onto the same palette with Floyd-Steinberg error diffusion
        pal = im.convert("RGB").quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG)
    return pal


def prepare(im: Image.Image, fmt: str) -> Image.Image:
    """Convert ``im`` to a mode ``fmt`` stores as is."""
    has_alpha = im.mode in ("LA", "PA", "RGBA") or "transparency" in im.info
    if fmt == "JPEG":
        return im if im.mode in ("L", "RGB") else im.convert("RGB")
    if fmt == "GIF":
        return im if im.mode in ("P", "L") else quantize(im)
    if fmt == "BMP":
        return im if im.mode in ("L", "P", "RGB") else im.convert("RGB")
    if fmt == "WEBP":
        if im.mode in ("RGB", "RGBA"):
            return im
        return im.convert("RGBA" if has_alpha else "RGB")
    if im.mode == "PA":  # PNG
        return im.convert("RGBA")
    return im


def encode(im: Image.Image, fmt: str, *, lossless: bool = True, quality: int = 90, exif: bytes | None = None) -> bytes:
    """Encode ``im`` as ``fmt``; WebP is lossless (exact) unless ``lossless`` is false."""
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if exif:
        options["exif"] = b"Exif\x00\x00" + exif  # Pillow strips the prefix for PNG and WebP
    if fmt == "JPEG":
        options["quality"] = quality
    elif fmt == "WEBP":
        # method 0: the fastest lossless effort; the pixels are exact whatever the effort.
        options.update(lossless=True, exact=True, method=0) if lossless else options.update(quality=quality)
    elif fmt == "GIF":
        # Pillow's GIF writer drops palette entries no pixel uses and renumbers the others, which
        # shifts every index above a dropped entry and destroys a payload in the index LSBs.
        options["optimize"] = False
    im.save(buf, fmt, **options)
    return buf.getvalue()


def decode_for_extract(data: bytes) -> Image.Image:
    """Open and load the first frame of a stego image, or raise :class:`ExtractError`."""
    try:
        im = _open_checked(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ExtractError(f"the image is too large: {exc}", reason="too_many_pixels") from exc
    except Exception as exc:
        raise ExtractError(f"cannot decode the image: {exc}", reason="bad_image") from exc
    return im


def as_bytes(data: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bytes:
    """Return file bytes for a path or bytes (``bytearray`` and ``memoryview`` too).

    Raises:
        ImageError: The path is missing, not a regular file, too large or unreadable.
    """
    return bytes(data) if isinstance(data, _BYTES_LIKE) else read_file(data)


def samples_of(im: Image.Image, plane: str) -> np.ndarray:
    """Return the 1-D sample stream of ``plane`` (``alpha``, ``indices``, ``rgb``) in embedding order."""
    if plane == "alpha":
        if im.mode not in ("RGBA", "LA", "PA"):
            raise ExtractError(f"{im.format} {im.mode} image has no alpha channel", reason="no_carrier")
        return np.asarray(im.getchannel("A")).reshape(-1)
    if plane == "indices":
        # Pillow reads a GIF or BMP whose palette is the grey ramp (entry i = (i, i, i)) as L: the
        # grey values are the indices. ``palette`` writes such a palette for every L cover.
        if im.mode == "P" or (im.format in ("GIF", "BMP") and im.mode == "L"):
            return np.asarray(im).reshape(-1)
        raise ExtractError(f"{im.format} {im.mode} image has no palette indices", reason="no_carrier")
    if im.mode not in ("RGB", "RGBA"):
        raise ExtractError(f"{im.format} {im.mode} image has no R, G, B samples", reason="no_carrier")
    return np.asarray(im)[..., :3].reshape(-1)
