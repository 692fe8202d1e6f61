"""``lsb.rgb``: the payload's bits in the LSBs of R, G, B, pixel-interleaved, row by row from top-left."""

from __future__ import annotations

import numpy as np
from PIL import Image

from v4runtime.stego.codec import decode_for_extract, encode, samples_of
from v4runtime.stego.framing import from_bits, write_lsbs

FORMATS: tuple[str, ...] = ("PNG", "BMP", "WEBP")


def capacity_bits(im: Image.Image) -> int:
    """Number of bits the cover can carry."""
    return 3 * im.width * im.height


def cover_samples(im: Image.Image) -> np.ndarray:
    """The R, G, B samples of ``im`` (made RGB), pixel-interleaved, in the order ``embed`` writes them."""
    return np.array(im.convert("RGB")).reshape(-1)


def embed(im: Image.Image, data: bytes, fmt: str, bit_order: str) -> bytes:
    """Write ``data`` into the R, G, B LSBs of ``im`` (made RGB) and encode as ``fmt`` (lossless)."""
    flat = write_lsbs(cover_samples(im), data, bit_order, what="R, G, B")
    return encode(Image.fromarray(flat.reshape(im.height, im.width, 3), "RGB"), fmt)


def read(data: bytes, bit_order: str) -> bytes:
    """Return the bytes packed from every R, G, B LSB in pixel-interleaved order."""
    return from_bits(samples_of(decode_for_extract(data), "rgb"), bit_order)
