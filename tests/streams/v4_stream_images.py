"""Helpers for the streams tests: real image files made with Pillow in every format and mode."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def natural(width: int = 256, height: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with mild noise (LSBs look like a photo's, not constant)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(1, width - 1), yy * 255 / max(1, height - 1), (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    """Encode a Pillow image as ``fmt``."""
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def image_bytes(fmt: str, mode: str = "RGB", size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    """A natural-looking image of ``size`` in ``mode``, encoded as ``fmt``."""
    im = Image.fromarray(natural(*size))
    if mode == "P":
        im = im.quantize(64)
    elif mode == "RGBA":
        im = im.convert("RGBA")
        alpha = np.tile(np.linspace(0, 255, size[0]).astype(np.uint8), (size[1], 1))
        im.putalpha(Image.fromarray(alpha))
    elif mode != "RGB":
        im = im.convert(mode)
    if fmt == "WEBP" and "quality" not in options:
        options.setdefault("lossless", True)
    return encode(im, fmt, **options)


#: (format, mode) pairs every test of "all formats" runs over.
ALL_FORMATS: tuple[tuple[str, str], ...] = (
    ("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "L"), ("PNG", "LA"),
    ("GIF", "P"), ("WEBP", "RGB"), ("WEBP", "RGBA"), ("BMP", "RGB"), ("BMP", "P"), ("BMP", "L"),
)
