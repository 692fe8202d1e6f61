"""The ``cover_lsb_z`` manifest field: the LSB structure a sequential payload overwrites."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from v4runtime.datasets.detectability import overwritten_lsb_z
from v4runtime.errors import EmbedError
from v4runtime.stego import cover_samples, embed
from v4runtime.stego.codec import samples_of
from v4runtime.streams.content import lsb_flip_z

RNG_SEED = 11


def _smooth(size: int = 96) -> Image.Image:
    """A gentle horizontal gradient: neighbouring samples are equal or one apart, LSBs are structured."""
    ramp = np.linspace(40, 80, size).astype(np.uint8)
    return Image.fromarray(np.dstack([np.tile(ramp, (size, 1))] * 3), "RGB")


def _noise(size: int = 96) -> Image.Image:
    """Every sample's LSB is a fair coin, independent of its neighbours."""
    rng = np.random.default_rng(RNG_SEED)
    base = np.full((size, size, 3), 120, dtype=np.uint8)
    return Image.fromarray(base | rng.integers(0, 2, base.shape, dtype=np.uint8), "RGB")


def test_smooth_cover_has_structure_and_a_random_payload_erases_it() -> None:
    cover = _smooth()
    payload = np.random.default_rng(RNG_SEED).bytes(600)
    frame_bytes = len(payload) + 1  # no marker, NUL terminator
    before = overwritten_lsb_z(cover, "lsb.rgb", frame_bytes)
    stego = Image.open(io.BytesIO(embed(cover, payload, "lsb.rgb", "PNG", marker=False)))
    after = lsb_flip_z(samples_of(stego, "rgb")[: 8 * frame_bytes], 3 * cover.width, 3)
    assert before is not None and before > 20  # thousands of close pairs, few flipped
    assert abs(after) < 4  # the overwritten region is noise now


def test_noise_cover_has_nothing_to_erase() -> None:
    z = overwritten_lsb_z(_noise(), "lsb.rgb", 600)
    assert z is not None and abs(z) < 4


def test_region_is_the_frame_only() -> None:
    # Left half noise, right half flat: a short frame inside the first row's noisy half sees noise.
    cover = np.full((64, 64), 100, dtype=np.uint8)
    cover[:, :32] |= np.random.default_rng(RNG_SEED).integers(0, 2, (64, 32), dtype=np.uint8)
    rgba = Image.fromarray(np.dstack([cover] * 3 + [cover]), "RGBA")
    assert abs(overwritten_lsb_z(rgba, "alpha", 4) or 0.0) < 4  # 32 samples, all in the noisy half
    assert (overwritten_lsb_z(rgba, "alpha", 64 * 64 // 8) or 0.0) > 10  # the whole plane: flat half counts


def test_palette_samples_are_the_indices_embed_writes() -> None:
    cover = _smooth().quantize(16)
    samples, row_length, step = cover_samples(cover, "palette")
    assert (row_length, step) == (cover.width, 1)
    assert np.array_equal(samples, np.asarray(cover).reshape(-1))


def test_byte_methods_have_no_sample_plane() -> None:
    assert overwritten_lsb_z(_smooth(), "exif", 100) is None
    with pytest.raises(EmbedError):
        cover_samples(_smooth(), "raw")


def test_no_close_pairs_is_no_evidence() -> None:
    stripes = np.zeros((8, 8, 3), dtype=np.uint8)
    stripes[:, 1::2] = 200  # every horizontal neighbour pair differs by far more than the LSB
    assert overwritten_lsb_z(Image.fromarray(stripes, "RGB"), "lsb.rgb", 24) == 0.0
