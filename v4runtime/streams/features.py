"""The ``format`` stream: bounded format features and the capability mask.

``format[0:5]`` is the capability mask in :data:`~v4runtime.streams.spec.METHODS` order: 1.0
where the file can carry the method at all. The rest are bounded facts about the container
(every value in [0, 1]); :data:`FORMAT_FEATURE_NAMES` names each position.
"""

from __future__ import annotations

import math

import numpy as np

from v4runtime.streams.containers import FORMATS, Container
from v4runtime.streams.decode import Decoded
from v4runtime.streams.spec import FORMAT_FEATURES, METHODS, VIEW
from v4runtime.streams.tiff import read_exif

#: Names of the 32 ``format`` values, in order.
FORMAT_FEATURE_NAMES: tuple[str, ...] = (
    *(f"capable.{m}" for m in METHODS),
    *(f"format.{f.lower()}" for f in FORMATS),
    "has_alpha",
    "has_palette",
    "grayscale",
    "animated",
    "has_exif",
    "exif_length_log",  # log2(1 + bytes) / 20
    "has_tail",
    "tail_length_log",  # log2(1 + bytes) / 24
    "width_log",  # log2(width) / 16
    "height_log",  # log2(height) / 16
    "size.small",  # both sides < 256: the view is partly invalid
    "size.large",  # more than 1024 x 1024 pixels
    "window_coverage",  # valid fraction of the 256 x 256 view
    "palette_size",  # palette entries / 256
    "text_chunks",  # PNG text chunks / 8, clipped
    "has_icc",
    "lossless",
    "progressive",
    "has_trns",
    "file_size_log",  # log2(bytes) / 32
    "bytes_per_pixel",  # image bytes per pixel / 4, clipped
    "exif_user_comment_log",  # log2(1 + UserComment bytes) / 16
)
assert len(FORMAT_FEATURE_NAMES) == FORMAT_FEATURES


def capability(container: Container, decoded: Decoded) -> np.ndarray:
    """Return the capability mask: which of the five methods this file can carry at all."""
    fmt = container.format
    per_pixel_alpha = decoded.mode in ("RGBA", "LA", "PA", "RGBa")
    colour = decoded.mode in ("RGB", "RGBA", "RGBX", "RGBa")
    mask = {
        "alpha": per_pixel_alpha and (fmt == "PNG" or (fmt == "WEBP" and container.lossless)),
        "palette": decoded.indices is not None and fmt in ("GIF", "BMP", "PNG"),
        "lsb.rgb": colour and (fmt in ("PNG", "BMP") or (fmt == "WEBP" and container.lossless)),
        "exif": fmt in ("JPEG", "PNG", "WEBP"),
        "raw": True,
    }
    return np.asarray([float(mask[m]) for m in METHODS], dtype=np.float32)


def _log(value: int, scale: float) -> float:
    return min(math.log2(1 + value) / scale, 1.0)


def format_features(
    container: Container, decoded: Decoded, *, file_size: int, tail_length: int, capability_mask: np.ndarray
) -> np.ndarray:
    """Build the 32-value ``format`` vector (see :data:`FORMAT_FEATURE_NAMES`)."""
    width, height = decoded.size
    fmt = container.format
    values = [
        *capability_mask.tolist(),
        *(float(fmt == f) for f in FORMATS),
        float(decoded.alpha is not None),
        float(decoded.indices is not None),
        float(decoded.mode in ("L", "LA") or (decoded.palette is not None and _grey_palette(decoded.palette))),
        float(max(container.frames, decoded.frames) > 1),
        float(bool(container.exif)),
        _log(len(container.exif), 20),
        float(tail_length > 0),
        _log(tail_length, 24),
        min(math.log2(width) / 16, 1.0),
        min(math.log2(height) / 16, 1.0),
        float(width < VIEW and height < VIEW),
        float(width * height > 1024 * 1024),
        min(width, VIEW) * min(height, VIEW) / (VIEW * VIEW),
        (len(decoded.palette) / 256.0) if decoded.palette is not None else 0.0,
        min(container.text_chunks / 8.0, 1.0),
        float(container.has_icc),
        float(container.lossless),
        float(container.progressive),
        float(container.has_trns),
        min(math.log2(max(1, file_size)) / 32, 1.0),
        min(container.image_end / (width * height) / 4.0, 1.0),
        _log(len(read_exif(container.exif)[0] or b""), 16),
    ]
    return np.asarray(values, dtype=np.float32)


def _grey_palette(palette: np.ndarray) -> bool:
    return bool((palette[:, 0] == palette[:, 1]).all() and (palette[:, 1] == palette[:, 2]).all())
