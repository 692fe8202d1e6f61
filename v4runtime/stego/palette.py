"""``palette``: the payload's bits in the LSBs of the palette indices, row by row from top-left."""

from __future__ import annotations

import numpy as np
from PIL import Image

from v4runtime.stego.codec import decode_for_extract, encode, quantize, samples_of
from v4runtime.stego.framing import from_bits, write_lsbs

FORMATS: tuple[str, ...] = ("GIF", "BMP", "PNG")


def capacity_bits(im: Image.Image) -> int:
    """Number of bits the cover can carry."""
    return im.width * im.height


def to_palette(im: Image.Image) -> tuple[np.ndarray, list[int]]:
    """Return ``(indices, palette)`` of ``im`` with an even number of palette entries.

    Flipping an index LSB maps entry ``2k`` to ``2k + 1`` and back, so an odd-sized palette gets
    its last entry duplicated (the picture does not change) to keep every flip valid.
    """
    if im.mode == "P":
        pal = im
    elif im.mode == "L":
        pal = im.convert("P")
    else:
        pal = quantize(im)
    indices = np.array(pal)
    palette = list(pal.getpalette("RGB") or [0, 0, 0])
    entries = max(len(palette) // 3, int(indices.max()) + 1)
    palette = (palette + [0, 0, 0] * entries)[: 3 * entries]
    if entries % 2:
        palette += palette[-3:]
    return indices, palette


def cover_samples(im: Image.Image) -> np.ndarray:
    """The palette indices of ``im`` (see :func:`to_palette`), row by row, in the order ``embed`` writes them."""
    return to_palette(im)[0].reshape(-1)


def embed(im: Image.Image, data: bytes, fmt: str, bit_order: str) -> bytes:
    """Write ``data`` into the index LSBs of ``im`` (made P) and encode as ``fmt``."""
    indices, palette = to_palette(im)
    flat = write_lsbs(indices.reshape(-1), data, bit_order, what="palette-index")
    out = Image.fromarray(flat.reshape(indices.shape), "P")
    out.putpalette(palette)
    return encode(out, fmt)


def read(data: bytes, bit_order: str) -> bytes:
    """Return the bytes packed from every palette-index LSB."""
    return from_bits(samples_of(decode_for_extract(data), "indices"), bit_order)
