"""Property tests: extract(embed(x)) == x on every valid (method, format, bit order)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from v4runtime.stego import embed, extract, valid_combinations

COMBOS = valid_combinations()


def _cover() -> Image.Image:
    # 184 x 184: capacity of the alpha and palette planes is 4232 bytes, enough for 4 KiB + framing.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:184, 0:184]
    rgb = np.stack([xx, yy, (xx * yy) % 256], axis=-1) + rng.normal(0, 3, (184, 184, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


COVER = _cover()
#: Palette covers are quantised once here rather than inside every embed call (keeps the suite fast).
COVER_P = COVER.quantize(256)
SLOW = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _for(method: str, fmt: str) -> Image.Image:
    return COVER_P if method == "palette" or fmt == "GIF" else COVER


def test_every_method_and_format_is_covered() -> None:
    assert {(m, f) for m, f, _ in COMBOS} == {
        ("alpha", "PNG"), ("alpha", "WEBP"), ("palette", "GIF"), ("palette", "BMP"), ("palette", "PNG"),
        ("lsb.rgb", "PNG"), ("lsb.rgb", "BMP"), ("lsb.rgb", "WEBP"), ("exif", "JPEG"), ("exif", "PNG"),
        ("exif", "WEBP"), *(("raw", f) for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP")),
    }
    assert len([c for c in COMBOS if c[2] is not None]) == 16  # 8 bit-plane pairs x 2 orders


@pytest.mark.parametrize(("method", "fmt", "order"), COMBOS, ids=[f"{m}-{f}-{o}" for m, f, o in COMBOS])
@SLOW
@given(payload=st.binary(min_size=1, max_size=4096), marker=st.booleans())
def test_binary_roundtrip(method: str, fmt: str, order: str | None, payload: bytes, marker: bool) -> None:
    data = embed(_for(method, fmt), payload, method, fmt, bit_order=order or "lsb-first", marker=marker)
    assert extract(data, method, bit_order=order or "lsb-first", marker=marker, length=len(payload)) == payload


@pytest.mark.parametrize(("method", "fmt", "order"), COMBOS, ids=[f"{m}-{f}-{o}" for m, f, o in COMBOS])
@settings(max_examples=2, deadline=None)
@given(text=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=1000))
def test_text_roundtrip_to_the_nul_terminator(method: str, fmt: str, order: str | None, text: str) -> None:
    data = embed(_for(method, fmt), text, method, fmt, bit_order=order or "lsb-first")
    assert extract(data, method, bit_order=order or "lsb-first").decode("utf-8") == text


@pytest.mark.parametrize("size", [4096])
def test_payload_size_bounds_on_every_combination(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    for method, fmt, order in COMBOS:
        data = embed(_for(method, fmt), payload, method, fmt, bit_order=order or "lsb-first")
        assert extract(data, method, bit_order=order or "lsb-first", length=size) == payload, (method, fmt, order)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "BMP"])
def test_palette_payload_survives_an_entry_the_payload_leaves_unused(fmt: str) -> None:
    """Regression: Pillow's GIF writer dropped palette entries no pixel used and renumbered the rest,
    which shifted the index LSBs of every pixel above them (held-out palette GIFs lost their
    payload this way). Here entry 3 is used only by the first pixel, whose LSB the payload flips to 2."""
    indices = np.full((64, 64), 6, np.uint8)
    indices[0, 0] = 3
    indices[32:, :] = 9
    cover = Image.fromarray(indices, "P")
    cover.putpalette([v for i in range(16) for v in (i * 16, 255 - i * 16, (i * 37) % 256)])
    payload = b"\x00" + b"hidden text in the palette"  # first bit 0 (either order): pixel 0 becomes 2
    for order in ("lsb-first", "msb-first"):
        data = embed(cover, payload, "palette", fmt, bit_order=order, terminator=False)
        assert extract(data, "palette", bit_order=order, length=len(payload)) == payload
