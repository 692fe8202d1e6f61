"""``extract_streams``: image bytes -> the eight model inputs, plus facts about the file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from v4runtime.allocator import keep_freed_memory
from v4runtime.errors import ImageError
from v4runtime.files import DEFAULT_MAX_BYTES, read_file
from v4runtime.streams.containers import Container, parse_container
from v4runtime.streams.content import RGB_HEAD_SAMPLES, content_features
from v4runtime.streams.decode import DEFAULT_MAX_PIXELS, Decoded, decode
from v4runtime.streams.features import capability, format_features
from v4runtime.streams.spec import CAPABILITY_SLICE, META_WINDOW, STREAM_NAMES, VIEW, stack_inputs

#: Every ``ImageError.reason`` that :func:`extract_streams` raises, with its meaning.
REASONS: dict[str, str] = {
    "empty": "the file has no bytes",
    "not_an_image": "the magic bytes are not JPEG, PNG, GIF, WebP or BMP",
    "truncated": "the container or the pixel data ends early",
    "corrupt": "the structure is malformed (bad lengths, unknown blocks, undecodable data)",
    "too_many_pixels": "width x height is over the pixel cap or Pillow's decompression-bomb limit",
    "too_large": "the file is over the byte cap",
    "unsupported_mode": "16-bit PNG, CMYK JPEG and other non-8-bit modes",
    "not_found": "the path does not exist",
    "not_a_file": "the path is a directory, a named pipe, a socket or a device, not a file",
    "unreadable": "the file cannot be read (permissions, I/O error)",
}


@dataclass(frozen=True)
class ImageInfo:
    """Facts about the file that are not model inputs (for reports, logs and datasets).

    Attributes:
        format: ``JPEG``, ``PNG``, ``GIF``, ``WEBP`` or ``BMP``.
        mode: Pillow mode of the first frame (``RGB``, ``RGBA``, ``P``, ``PA``, ``L``, ``LA``).
        size: ``(width, height)`` in pixels.
        frames: Number of frames; only the first is analysed.
        multi_frame: More than one frame (animated GIF/PNG/WebP); the streams describe frame 1.
        has_alpha: Any transparency (alpha channel or a ``tRNS``/transparency entry).
        palette_size: Palette entries, 0 without a palette.
        file_size: Bytes in the file.
        image_end: Offset where the image structure ends.
        tail_length: Bytes after the end of the image.
        exif_length: Bytes in the EXIF block.
        flags: Short notes, e.g. ``multi_frame``, ``tail``, ``exif``, ``small``.
    """

    format: str
    mode: str
    size: tuple[int, int]
    frames: int
    multi_frame: bool
    has_alpha: bool
    palette_size: int
    file_size: int
    image_end: int
    tail_length: int
    exif_length: int
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def animated(self) -> bool:
        """Alias of :attr:`multi_frame`."""
        return self.multi_frame


@dataclass(frozen=True)
class Streams:
    """The eight streams of one image (shapes in :data:`~v4runtime.streams.spec.STREAM_SPECS`).

    Attributes:
        pixel: ``(4, 256, 256)`` R, G, B in [0, 1] of the top-left window and a validity mask.
        meta: ``(4, 2048)`` EXIF bytes / 255 and mask; tail bytes / 255 and mask.
        alpha: ``(3, 256, 256)`` alpha / 255, alpha LSB, mask (all zero without transparency).
        lsb: ``(4, 256, 256)`` LSB of R, G, B and a validity mask.
        palette: ``(4, 256)`` palette R, G, B / 255 and a presence flag per entry.
        palette_lsb: ``(2, 256, 256)`` LSB of palette indices and a mask (zero without palette).
        format: ``(32,)`` format features; ``format[0:5]`` is the capability mask.
        content: ``(CONTENT_FEATURES,)`` bit-stream and LSB statistics in embedding order.
        capability: ``(5,)`` 1.0 where the file can carry each method, in METHODS order.
        info: Facts about the file (:class:`ImageInfo`).
    """

    pixel: np.ndarray
    meta: np.ndarray
    alpha: np.ndarray
    lsb: np.ndarray
    palette: np.ndarray
    palette_lsb: np.ndarray
    format: np.ndarray
    content: np.ndarray
    capability: np.ndarray
    info: ImageInfo

    def as_inputs(self) -> dict[str, np.ndarray]:
        """Return ``{stream name: array}`` in model input order, without a batch axis."""
        return {name: getattr(self, name) for name in STREAM_NAMES}


def stack_streams(items: Sequence[Streams]) -> dict[str, np.ndarray]:
    """Stack many :class:`Streams` into model-ready batch arrays (leading batch axis)."""
    return stack_inputs([s.as_inputs() for s in items])


def _read(source: str | os.PathLike[str] | bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    data = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else read_file(source, max_bytes)
    if len(data) > max_bytes:
        raise ImageError(f"{len(data)} bytes is over the limit of {max_bytes}", reason="too_large")
    return data


def _window(plane: np.ndarray, out: np.ndarray, scale: float | None) -> None:
    """Copy the top-left VIEW x VIEW window of ``plane`` (H, W[, C]) into ``out`` (C, VIEW, VIEW)."""
    h = min(plane.shape[0], VIEW)
    w = min(plane.shape[1], VIEW)
    win = plane[:h, :w]
    win = win[None] if win.ndim == 2 else win.transpose(2, 0, 1)
    if scale is None:
        np.bitwise_and(win, 1, out=out[:, :h, :w], casting="unsafe")
    else:
        np.multiply(win, scale, out=out[:, :h, :w], casting="unsafe")


def _blank(channels: int, h: int, w: int) -> np.ndarray:
    """A ``(channels, VIEW, VIEW)`` float32 array, zero outside the ``h`` x ``w`` window only.

    The window is overwritten by the caller, so zeroing it too would be a wasted pass over 1 MB.
    """
    out = np.empty((channels, VIEW, VIEW), np.float32)
    out[:, h:, :] = 0.0
    out[:, :h, w:] = 0.0
    return out


def _planes(decoded: Decoded) -> dict[str, np.ndarray]:
    height, width = decoded.bands[0].shape
    h, w = min(height, VIEW), min(width, VIEW)
    scale = np.float32(1.0 / 255.0)
    pixel = _blank(4, h, w)
    for c, band in enumerate(decoded.bands):
        _window(band, pixel[c : c + 1], scale)
    pixel[3, :h, :w] = 1.0
    lsb = _blank(4, h, w)
    for c, band in enumerate(decoded.bands):
        _window(band, lsb[c : c + 1], None)
    lsb[3, :h, :w] = 1.0
    alpha = np.zeros((3, VIEW, VIEW), np.float32)
    if decoded.alpha is not None:
        alpha = _blank(3, h, w)
        _window(decoded.alpha, alpha[0:1], scale)
        _window(decoded.alpha, alpha[1:2], None)
        alpha[2, :h, :w] = 1.0
    palette_lsb = np.zeros((2, VIEW, VIEW), np.float32)
    palette = np.zeros((4, 256), np.float32)
    if decoded.indices is not None:
        palette_lsb = _blank(2, h, w)
        _window(decoded.indices, palette_lsb[0:1], None)
        palette_lsb[1, :h, :w] = 1.0
    if decoded.palette is not None:
        entries = decoded.palette[:256]
        palette[:3, : len(entries)] = entries.T * scale
        palette[3, : len(entries)] = 1.0
    return {"pixel": pixel, "lsb": lsb, "alpha": alpha, "palette_lsb": palette_lsb, "palette": palette}


def _meta(exif: bytes, tail: bytes) -> np.ndarray:
    meta = np.zeros((4, META_WINDOW), np.float32)
    scale = np.float32(1.0 / 255.0)
    for row, data in ((0, exif), (2, tail)):
        window = np.frombuffer(data[:META_WINDOW], dtype=np.uint8)
        meta[row, : len(window)] = window * scale
        meta[row + 1, : len(window)] = 1.0
    return meta


def extract_streams(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Streams:
    """Extract the eight streams of an image file.

    Args:
        source: A path or the file's bytes (JPEG, PNG, GIF, WebP or BMP).
        max_pixels: Refuse images with more pixels (decompression-bomb guard).
        max_bytes: Refuse files larger than this.

    Returns:
        The :class:`Streams`; arrays are float32 with the shapes of ``STREAM_SPECS``.

    The first call in a process also calls :func:`v4runtime.allocator.keep_freed_memory` (glibc
    only): each file's freed planes are then reused for the next rather than handed back to the
    kernel and page-faulted in again, whoever calls this function in a loop.

    Raises:
        ImageError: With ``reason`` one of ``empty``, ``not_an_image``, ``truncated``, ``corrupt``,
            ``too_many_pixels``, ``too_large``, ``unsupported_mode``, ``not_found``, ``unreadable``.
    """
    keep_freed_memory()
    data = _read(source, max_bytes)
    container: Container = parse_container(data)
    decoded = decode(data, container, max_pixels=max_pixels)
    tail = data[container.image_end :]
    planes = _planes(decoded)
    cap = capability(container, decoded)
    fmt = format_features(
        container, decoded, file_size=len(data), tail_length=len(tail), capability_mask=cap
    )
    content = content_features(
        decoded.bands, decoded.interleaved(RGB_HEAD_SAMPLES), decoded.alpha, decoded.indices, decoded.histograms
    )
    frames = max(container.frames, decoded.frames)
    width, height = decoded.size
    flags = tuple(
        name
        for name, on in (
            ("multi_frame", frames > 1),
            ("tail", bool(tail)),
            ("exif", bool(container.exif)),
            ("small", width < VIEW or height < VIEW),
            ("alpha", decoded.alpha is not None),
            ("palette", decoded.indices is not None),
        )
        if on
    )
    info = ImageInfo(
        format=container.format,
        mode=decoded.mode,
        size=decoded.size,
        frames=frames,
        multi_frame=frames > 1,
        has_alpha=decoded.alpha is not None,
        palette_size=len(decoded.palette) if decoded.palette is not None else 0,
        file_size=len(data),
        image_end=container.image_end,
        tail_length=len(tail),
        exif_length=len(container.exif),
        flags=flags,
    )
    return Streams(
        meta=_meta(container.exif, tail),
        format=fmt,
        content=content,
        capability=fmt[CAPABILITY_SLICE].copy(),
        info=info,
        **planes,
    )
