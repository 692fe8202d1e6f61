"""Behaviour of the shipped model on picture classes that once fooled it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from v4runtime.scanner import Scanner
from v4runtime.stego import embed


def _flat_with_a_stray_pixel(rng: np.random.Generator) -> Image.Image:
    """One colour everywhere but one pixel in the first row (a UI graphic, a favicon with a speck)."""
    pixels = np.tile(rng.integers(2, 254, 3), (256, 256, 1)).astype(np.uint8)
    pixels[0, int(rng.integers(0, 170))] = rng.integers(2, 254, 3)
    return Image.fromarray(pixels)


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def test_flat_pictures_with_a_stray_pixel_are_clean_and_their_stego_twins_are_not() -> None:
    """Before the weighted-stego deviations were clipped, the model flagged 46 of 200 such pictures
    as lsb.rgb stego: the stray pixel alone made the estimate of a payload in the first samples."""
    rng = np.random.default_rng(2026)
    covers = [_flat_with_a_stray_pixel(rng) for _ in range(24)]
    with Scanner() as scanner:
        clean = [scanner.scan(_png(im)) for im in covers]
        stego = [scanner.scan(embed(im, "a note hidden in a flat picture, sixty-four bytes or so long.", "lsb.rgb",
                                    "PNG")) for im in covers]
    assert [r.error for r in clean + stego] == [None] * 48
    assert [r.is_stego for r in clean] == [False] * 24
    assert [r.method for r in stego if r.is_stego] == ["lsb.rgb"] * 24
