"""The payload-end test: where a random payload of any length ends, and what it says of covers without one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from v4runtime.stego import embed
from v4runtime.streams import extract_streams
from v4runtime.streams.content import feature_names, stream_pair_codes
from v4runtime.streams.payload_end import (
    GRID,
    NOISE_Z_HALF,
    PAYLOAD_END_VALUES,
    SCAN_SAMPLES,
    payload_end_profile,
)

WIDTH = 256


def _profile(stream: np.ndarray) -> dict[str, float]:
    values = payload_end_profile(*stream_pair_codes(stream, WIDTH, 1))
    return dict(zip(PAYLOAD_END_VALUES, values, strict=True))


def _smooth_indices(seed: int) -> np.ndarray:
    """A 256 x 256 index plane of flat runs: neighbours on a row are mostly equal."""
    rng = np.random.default_rng(seed)
    runs = rng.integers(4, 40, 4096)
    values = rng.integers(0, 128, 4096).astype(np.uint8) * 2
    return np.repeat(values, runs)[: WIDTH * WIDTH]


def _found_end(end_length: float) -> float:
    """The boundary the test reported, back from its log2 / log2(SCAN_SAMPLES) scale."""
    return 2 ** (end_length * math.log2(SCAN_SAMPLES))


@pytest.mark.parametrize("bits", [760, 2408, 9000, 30000])
def test_finds_where_a_random_payload_ends(bits: int) -> None:
    stream = _smooth_indices(bits)
    stream[:bits] = (stream[:bits] & 0xFE) | np.random.default_rng(7).integers(0, 2, bits).astype(np.uint8)
    found = _profile(stream)
    assert abs(_found_end(found["end_length"]) - bits) <= 2 * GRID
    assert found["end_llr"] > 0.5  # thousands of nats better than one ratio throughout
    assert found["end_before_flip_ratio"] == pytest.approx(0.5, abs=0.05)
    assert found["end_after_flip_ratio"] < 0.05
    assert found["end_before_noise_z"] < 0.5  # within NOISE_Z_HALF standard errors of one half


def test_a_smooth_cover_has_no_end() -> None:
    """No boundary makes a head of equal neighbours look like noise: the ratio is clipped to 0."""
    assert _profile(_smooth_indices(1))["end_llr"] == 0.0


def test_noise_everywhere_has_no_boundary_worth_the_name() -> None:
    noise = np.random.default_rng(3).integers(0, 2, WIDTH * WIDTH).astype(np.uint8) + 100
    found = _profile(noise)
    assert found["end_llr"] < 0.5  # a ratio of at most e**4 nats: chance, not a payload
    assert found["end_before_close_pairs"] == 1.0


def test_a_head_that_alternates_more_than_noise_is_told_from_a_payload() -> None:
    """A dithered top (LSBs alternating 2 times in 3) favours a boundary, but lies far from one half."""
    stream = _smooth_indices(2)
    head = 6000
    pattern = np.resize(np.array([0, 1, 1, 0, 0, 1], dtype=np.uint8), head)  # 2 flips in every 3 pairs
    stream[:head] = (stream[:head] & 0xFE) | pattern
    found = _profile(stream)
    assert found["end_llr"] > 0.3 and abs(_found_end(found["end_length"]) - head) <= 2 * GRID
    z = abs(found["end_before_flip_ratio"] - 0.5) * 2 * math.sqrt(found["end_before_close_pairs"] * head)
    assert found["end_before_noise_z"] == pytest.approx(z / (z + NOISE_Z_HALF), rel=0.02)
    assert found["end_before_noise_z"] > 0.8  # about 25 standard errors; a payload lies within 2


def test_too_short_a_stream_gives_zeros() -> None:
    assert list(_profile(np.zeros(2 * GRID - 1, dtype=np.uint8)).values()) == [0.0] * len(PAYLOAD_END_VALUES)


def test_content_vector_carries_the_test_for_palette_payloads() -> None:
    """End to end: a 300-byte palette payload, no marker, is found at its frame length (2,408 bits)."""
    rng = np.random.default_rng(11)
    cover = Image.fromarray(_smooth_indices(4).reshape(WIDTH, WIDTH), "P")
    cover.putpalette(rng.integers(0, 256, 768).astype(np.uint8).tobytes())
    stego = embed(cover, rng.bytes(300), "palette", "PNG", marker=False)
    content = dict(zip(feature_names(), extract_streams(stego).content.tolist(), strict=True))
    assert abs(_found_end(content["palette.end_length"]) - 2408) <= 2 * GRID
    assert content["palette.end_llr"] > 0.5 and content["alpha.end_llr"] == 0.0  # no alpha: no stream
