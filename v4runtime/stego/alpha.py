"""``alpha``: the payload's bits in the LSBs of the alpha channel, row by row from top-left."""

from __future__ import annotations

import numpy as np
from PIL import Image

from v4runtime.stego.codec import decode_for_extract, encode, samples_of
from v4runtime.stego.framing import from_bits, write_lsbs

FORMATS: tuple[str, ...] = ("PNG", "WEBP")


def capacity_bits(im: Image.Image) -> int:
    """Number of bits the cover can carry."""
    return im.width * im.height


def cover_samples(im: Image.Image) -> np.ndarray:
    """The alpha samples of ``im`` (made RGBA), row by row, in the order ``embed`` writes them."""
    return np.array(im.convert("RGBA"))[..., 3].reshape(-1)


def embed(im: Image.Image, data: bytes, fmt: str, bit_order: str) -> bytes:
    """Write ``data`` into the alpha LSBs of ``im`` (made RGBA) and encode as ``fmt`` (lossless)."""
    rgba = np.array(im.convert("RGBA"))
    alpha = write_lsbs(rgba[..., 3].reshape(-1), data, bit_order, what="alpha")
    rgba[..., 3] = alpha.reshape(rgba.shape[:2])
    return encode(Image.fromarray(rgba, "RGBA"), fmt)


def read(data: bytes, bit_order: str) -> bytes:
    """Return the bytes packed from every alpha LSB."""
    return from_bits(samples_of(decode_for_extract(data), "alpha"), bit_order)
