"""Decode the first frame of an image into 8-bit sample arrays, with typed errors.

The result keeps what the stego methods touch, in their native form: RGB samples, the alpha
channel (any transparency: RGBA, LA, PA, and P/L/RGB with a ``tRNS`` entry), palette indices and
the palette itself. Nothing is resized: streams look at the top-left window and whole-image
statistics, so the embedding origin is never cropped away.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from v4runtime.errors import ImageError
from v4runtime.streams.containers import Container, gif_without_comments

#: Default pixel cap (width x height); larger images are refused as possible decompression bombs.
DEFAULT_MAX_PIXELS = 40_000_000

_UNSUPPORTED_MODES = {
    "CMYK": "CMYK images are not supported (the LSB planes are defined on RGB samples); convert to RGB",
    "I": "32-bit integer images are not supported; convert to 8-bit",
    "F": "floating-point images are not supported; convert to 8-bit",
    "YCbCr": "YCbCr images are not supported; convert to RGB",
    "LAB": "LAB images are not supported; convert to RGB",
    "HSV": "HSV images are not supported; convert to RGB",
}


@dataclass
class Decoded:
    """The first frame of an image as 8-bit arrays.

    Attributes:
        mode: Pillow mode of the decoded frame (after ``1`` -> ``L``).
        size: ``(width, height)``.
        bands: R, G, B as three ``(H, W)`` uint8 arrays (grey and palette images expanded).
            Separate planes because every stream reads them plane by plane (cheap windows).
        alpha: ``(H, W)`` uint8 alpha, or ``None`` without transparency.
        indices: ``(H, W)`` uint8 palette indices, or ``None`` without a palette.
        palette: ``(n, 3)`` uint8 palette entries, or ``None``.
        frames: Number of frames Pillow reports.
        histograms: Whole-image 256-bin histograms (``rgb`` summed over R, G, B; ``alpha``;
            ``indices``), computed by Pillow in C because they dominate the cost of the
            chi-square statistics on large images.
    """

    mode: str
    size: tuple[int, int]
    bands: tuple[np.ndarray, np.ndarray, np.ndarray]
    alpha: np.ndarray | None
    indices: np.ndarray | None
    palette: np.ndarray | None
    frames: int
    histograms: dict[str, np.ndarray]

    def interleaved(self, samples: int) -> np.ndarray:
        """Return the first ``samples`` R, G, B samples in pixel-interleaved, row-major order."""
        width = self.bands[0].shape[1]
        rows = min(self.bands[0].shape[0], -(-samples // (3 * width)))
        return np.stack([b[:rows] for b in self.bands], axis=-1).reshape(-1)[:samples]


def _open(data: bytes, container: Container, max_pixels: int) -> Image.Image:
    if container.comments:  # Pillow's comment reader is quadratic; the pixels never need it
        data = gif_without_comments(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt-EXIF and similar notes from Pillow: not our errors
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[container.format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image exceeds Pillow's pixel limit: {exc}", reason="too_many_pixels") from exc
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise ImageError(f"cannot read {container.format} header: {exc}", reason="corrupt") from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})", reason="corrupt")
    if width * height > max_pixels:
        raise ImageError(
            f"image has {width}x{height} = {width * height} pixels, over the cap of {max_pixels}",
            reason="too_many_pixels",
        )
    return im


def decode(data: bytes, container: Container, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode the first frame of ``data`` (already walked into ``container``).

    Raises:
        ImageError: ``too_many_pixels``, ``unsupported_mode``, ``truncated`` or ``corrupt``.
    """
    im = _open(data, container, max_pixels)
    if container.format == "PNG" and container.bit_depth == 16:
        raise ImageError(
            "16-bit PNG is not supported (LSB planes are defined on 8-bit samples); convert to 8-bit",
            reason="unsupported_mode",
        )
    mode = im.mode
    if mode in _UNSUPPORTED_MODES or mode.startswith("I;"):
        raise ImageError(_UNSUPPORTED_MODES.get(mode, f"mode {mode} is not supported"), reason="unsupported_mode")
    frames = int(getattr(im, "n_frames", 1) or 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd palettes/transparency; not errors
            im.load()
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() or "end of file" in str(exc).lower() else "corrupt"
        raise ImageError(f"cannot decode {container.format} pixels: {exc}", reason=reason) from exc
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise ImageError(f"image too large to decode: {exc}", reason="too_many_pixels") from exc
    except Exception as exc:  # SyntaxError, ValueError, struct.error, EOFError... from malformed data
        raise ImageError(f"cannot decode {container.format} pixels: {exc}", reason="corrupt") from exc
    try:
        return _arrays(im, container, frames)
    except ImageError:
        raise
    except Exception as exc:  # pragma: no cover - defensive: never let a decoder quirk crash a scan
        raise ImageError(f"cannot convert {container.format} {im.mode} pixels: {exc}", reason="corrupt") from exc


def _arrays(im: Image.Image, container: Container, frames: int) -> Decoded:
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    transparency = im.info.get("transparency")
    alpha = indices = palette = None
    if container.format == "GIF" and mode in ("L", "LA"):
        # Pillow decodes a GIF whose palette is the grey ramp as L: the grey values are the indices.
        arr = np.asarray(im)
        indices = arr if mode == "L" else np.ascontiguousarray(arr[..., 0])
        palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
        mode = "P" if mode == "L" else "PA"
        if arr.ndim == 3:
            alpha = np.ascontiguousarray(arr[..., 1])
        elif isinstance(transparency, int):
            alpha = np.where(indices == transparency, 0, 255).astype(np.uint8)
        bands = (indices, indices, indices)
    elif mode in ("P", "PA"):
        arr = np.asarray(im)
        indices = arr if mode == "P" else np.ascontiguousarray(arr[..., 0])
        raw = im.getpalette("RGB") or [0, 0, 0]
        palette = np.asarray(raw, dtype=np.uint8).reshape(-1, 3)[:256]
        full = np.zeros((256, 3), np.uint8)
        full[: len(palette)] = palette
        bands = tuple(np.take(np.ascontiguousarray(full[:, c]), indices) for c in range(3))
        if mode == "PA":
            alpha = np.ascontiguousarray(arr[..., 1])
        elif isinstance(transparency, bytes):
            table = np.full(256, 255, dtype=np.uint8)
            table[: len(transparency)] = np.frombuffer(transparency[:256], dtype=np.uint8)
            alpha = np.take(table, indices)
        elif isinstance(transparency, int):
            alpha = np.where(indices == transparency, 0, 255).astype(np.uint8)
    elif mode in ("L", "LA"):
        grey = np.asarray(im.getchannel(0))
        bands = (grey, grey, grey)
        if mode == "LA":
            alpha = np.asarray(im.getchannel(1))
        elif isinstance(transparency, int):
            alpha = np.where(grey == transparency, 0, 255).astype(np.uint8)
    elif mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        split = [np.asarray(b) for b in im.split()]
        bands = (split[0], split[1], split[2])
        if mode in ("RGBA", "RGBa"):
            alpha = split[3]
        elif isinstance(transparency, tuple) and len(transparency) >= 3:
            r, g, b = (int(v) for v in transparency[:3])
            alpha = np.where((bands[0] == r) & (bands[1] == g) & (bands[2] == b), 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"mode {mode} is not supported", reason="unsupported_mode")
    hist = _histograms(im, alpha, indices, palette)
    return Decoded(mode, im.size, bands, alpha, indices, palette, frames, hist)  # type: ignore[arg-type]


def _histograms(
    im: Image.Image, alpha: np.ndarray | None, indices: np.ndarray | None, palette: np.ndarray | None
) -> dict[str, np.ndarray]:
    bands = np.asarray(im.histogram(), dtype=np.int64).reshape(-1, 256)
    out: dict[str, np.ndarray] = {}
    if indices is not None and palette is not None:
        index_hist = bands[0]
        out["indices"] = index_hist
        full = np.zeros((256, 3), np.int64)
        full[: len(palette)] = palette
        rgb = sum(np.bincount(full[:, c], weights=index_hist, minlength=256) for c in range(3))
        out["rgb"] = np.asarray(rgb, dtype=np.int64)
    elif im.mode in ("L", "LA"):
        out["rgb"] = bands[0] * 3
    else:
        out["rgb"] = bands[:3].sum(axis=0)
    if alpha is not None:
        if im.mode in ("RGBA", "LA", "PA", "RGBa") and len(bands) in (2, 4):
            out["alpha"] = bands[-1]
        else:
            out["alpha"] = np.bincount(alpha.reshape(-1), minlength=256)
    return out
