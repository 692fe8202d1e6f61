"""``embed`` and ``extract``: one entry point over the five methods."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from v4runtime.errors import EmbedError
from v4runtime.stego import alpha, exif, lsb_rgb, palette, raw
from v4runtime.stego.arguments import check_arguments
from v4runtime.stego.codec import Cover, as_bytes, load_cover, normalise_format
from v4runtime.stego.exif_block import Value
from v4runtime.stego.framing import BIT_ORDERS, as_payload, check_bit_order, frame, unframe
from v4runtime.streams.spec import METHODS

#: Formats each method can live in.
METHOD_FORMATS: dict[str, tuple[str, ...]] = {
    "alpha": alpha.FORMATS,
    "palette": palette.FORMATS,
    "lsb.rgb": lsb_rgb.FORMATS,
    "exif": exif.FORMATS,
    "raw": raw.FORMATS,
}
#: Methods that write bits into a sample plane (the only ones where bit order matters).
BIT_METHODS: tuple[str, ...] = ("alpha", "palette", "lsb.rgb")
_PLANES = {"alpha": alpha, "palette": palette, "lsb.rgb": lsb_rgb}


def valid_combinations() -> list[tuple[str, str, str | None]]:
    """Every valid ``(method, format, bit_order)``; bit order is ``None`` for byte methods."""
    out: list[tuple[str, str, str | None]] = []
    for method in METHODS:
        for fmt in METHOD_FORMATS[method]:
            orders: tuple[str | None, ...] = BIT_ORDERS if method in BIT_METHODS else (None,)
            out += [(method, fmt, order) for order in orders]
    return out


def check_method(method: str, fmt: str) -> str:
    """Return the normalised format, or raise :class:`EmbedError` for an invalid pair.

    Raises:
        EmbedError: Unknown method or format, the method not valid for the format, or an
            argument that is not a str.
    """
    check_arguments(method=method, fmt=fmt)
    if method not in METHOD_FORMATS:
        raise EmbedError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", reason="bad_method")
    name = normalise_format(fmt)
    if name not in METHOD_FORMATS[method]:
        raise EmbedError(
            f"method {method!r} cannot be carried by {name}; it applies to {', '.join(METHOD_FORMATS[method])}",
            reason="method_not_valid_for_format",
        )
    return name


def cover_samples(cover: Cover, method: str) -> tuple[np.ndarray, int, int]:
    """The samples a bit-plane ``method`` writes into, in writing order, with the pair geometry.

    Returns ``(samples, row_length, step)``: a row holds ``row_length`` samples, and the same
    channel of two adjacent pixels lies ``step`` samples apart (3 for ``lsb.rgb``, else 1).

    Raises:
        EmbedError: ``method`` does not write into a sample plane, an unreadable cover, or an
            argument of the wrong type.
    """
    check_arguments(cover=cover, method=method)
    if method not in _PLANES:
        raise EmbedError(f"{method!r} writes no sample plane; use one of {', '.join(BIT_METHODS)}", reason="bad_method")
    im = load_cover(cover)
    step = 3 if method == "lsb.rgb" else 1
    return _PLANES[method].cover_samples(im), step * im.width, step


def capacity(
    cover: Cover,
    method: str,
    fmt: str,
    *,
    marker: bool = True,
    terminator: bool = True,
    exif_tags: Mapping[int, Value] | None = None,
    thumbnail: bytes | None = None,
) -> int:
    """Largest payload in bytes that ``embed`` accepts for this cover, method and format.

    For ``exif``, pass the ``exif_tags`` and ``thumbnail`` you will give ``embed``: in JPEG they
    share one APP1 segment (65533 bytes) with the payload. The cover's own EXIF takes no room:
    ``embed`` writes a new block.

    Raises:
        EmbedError: As :func:`check_method`, an unreadable cover (bit-plane methods), or an
            argument of the wrong type.
    """
    check_arguments(cover=cover, method=method, fmt=fmt, marker=marker, terminator=terminator,
                    exif_tags=exif_tags, thumbnail=thumbnail)
    name = check_method(method, fmt)
    overhead = (4 if marker else 0) + (1 if terminator else 0)
    if method in _PLANES:
        bits = _PLANES[method].capacity_bits(load_cover(cover))
        return max(0, bits // 8 - overhead)
    if method == "exif":
        return max(0, exif.max_frame(name, exif_tags, thumbnail) - overhead)
    return 2**31


def embed(
    cover: Cover,
    payload: bytes | bytearray | memoryview | str,
    method: str,
    fmt: str,
    *,
    bit_order: str = "lsb-first",
    marker: bool = True,
    terminator: bool = True,
    exif_tags: Mapping[int, Value] | None = None,
    thumbnail: bytes | None = None,
    lossless: bool = False,
    quality: int = 90,
) -> bytes:
    """Hide ``payload`` in ``cover`` with ``method`` and return the encoded ``fmt`` file.

    Args:
        cover: A Pillow image, file bytes or a path (the first frame is used).
        payload: Bytes, or text (UTF-8 encoded).
        method: One of ``alpha``, ``palette``, ``lsb.rgb``, ``exif``, ``raw``.
        fmt: Output format (``PNG``, ``JPEG``, ``GIF``, ``WEBP``, ``BMP``; case-insensitive).
        bit_order: ``lsb-first`` or ``msb-first`` (bit-plane methods only).
        marker: Prefix the payload with ``AI42``.
        terminator: Append a NUL byte.
        exif_tags: Extra IFD0 tags for the ``exif`` method (e.g. camera Make/Model); not the
            offsets and sizes the EXIF writer sets itself (``exif_block.LAYOUT_TAGS``).
        thumbnail: JPEG thumbnail for the ``exif`` method (stored in IFD1).
        lossless: Lossless WebP for ``exif``/``raw`` (bit-plane methods always write lossless).
        quality: JPEG/lossy WebP quality for ``exif``/``raw``, 0 (worst) to 100.

    Raises:
        EmbedError: Unknown method/format/bit order, method not valid for the format, empty
            payload, a payload that does not fit, an argument of the wrong type or out of its range
            (the message names it, what it needs and what was given), or a layout tag in
            ``exif_tags``.
    """
    check_arguments(
        cover=cover, payload=payload, method=method, fmt=fmt, bit_order=bit_order, marker=marker,
        terminator=terminator, exif_tags=exif_tags, thumbnail=thumbnail, lossless=lossless, quality=quality,
    )
    name = check_method(method, fmt)
    check_bit_order(bit_order)
    quality = int(quality)  # Pillow takes a Python int only; numpy integers pass the check above
    data = frame(as_payload(payload), marker=marker, terminator=terminator)
    im = load_cover(cover)
    if method in _PLANES:
        return _PLANES[method].embed(im, data, name, bit_order)
    if method == "exif":
        return exif.embed(im, data, name, ifd0=exif_tags, thumbnail=thumbnail, lossless=lossless, quality=quality)
    return raw.embed(im, data, name, lossless=lossless, quality=quality)


def extract(
    image: bytes | bytearray | memoryview | str | os.PathLike[str],
    method: str,
    *,
    bit_order: str = "lsb-first",
    marker: bool = True,
    length: int | None = None,
) -> bytes:
    """Recover a payload hidden by :func:`embed`.

    Args:
        image: File bytes or a path.
        method: The method used to embed.
        bit_order: The bit order used to embed (bit-plane methods).
        marker: The frame starts with ``AI42``.
        length: Payload length (an int >= 0), for binary payloads that may contain NUL; without it
            the payload ends at the NUL terminator.

    Raises:
        ExtractError: No carrier, no marker, no terminator, or fewer bytes than ``length``.
        EmbedError: Unknown method or bit order, an argument of the wrong type, or a negative
            ``length`` (the message names the argument, what it needs and what was given).
        ImageError: ``image`` is a path that cannot be read.
    """
    check_arguments(image=image, method=method, bit_order=bit_order, marker=marker, length=length)
    if method not in METHOD_FORMATS:
        raise EmbedError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", reason="bad_method")
    check_bit_order(bit_order)
    data = as_bytes(image)
    if method in _PLANES:
        carrier = _PLANES[method].read(data, bit_order)
    elif method == "exif":
        carrier = exif.read(data)
    else:
        carrier = raw.read(data)
    return unframe(carrier, marker=marker, length=length)


