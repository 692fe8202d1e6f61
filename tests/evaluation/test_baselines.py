"""Baselines on real image files: the chi-square attack and the V3-style rules behave as documented."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from v4runtime.baselines import ChiSquareDetector, V3StyleDetector, chi_square_pvalue
from v4runtime.streams import extract_streams


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _embed_lsb(arr: np.ndarray, payload: bytes) -> np.ndarray:
    """Sequential LSB replacement from the top-left sample, pixel-interleaved (LSB-first bits)."""
    flat = arr.copy().reshape(-1)
    bits = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder="little")
    flat[: bits.size] = (flat[: bits.size] & 0xFE) | bits
    return flat.reshape(arr.shape)


def test_chi_square_pvalue_separates_equalised_pairs() -> None:
    rng = np.random.default_rng(0)
    skewed = rng.choice(np.arange(0, 256, 2), 5000)  # only even values: pairs maximally unequal
    assert chi_square_pvalue(skewed) < 1e-6
    equal = np.repeat(np.arange(40, 80), 50)  # each pair exactly equal
    assert chi_square_pvalue(equal) == pytest.approx(1.0)
    assert chi_square_pvalue(np.arange(5)) == 0.0  # too few values to test


def test_chi_square_detector_flags_random_lsb_payload_on_a_smooth_photo() -> None:
    rocket = skimage.data.rocket()[:256, :256]
    clean = extract_streams(_png(rocket)).as_inputs()
    stego = extract_streams(_png(_embed_lsb(rocket, np.random.default_rng(1).bytes(2000)))).as_inputs()
    det = ChiSquareDetector()
    assert not det.decide(clean)[0]
    flagged, method, score = det.decide(stego)
    assert flagged and method == "lsb.rgb" and score >= 0.95


def test_v3_style_marker_rule_and_special_cases() -> None:
    rocket = skimage.data.rocket()[:256, :256]
    v3 = V3StyleDetector()
    clean = extract_streams(_png(rocket)).as_inputs()
    assert v3.decide(clean)[0] is False
    marked = extract_streams(_png(_embed_lsb(rocket, b"AI42hello world\x00"))).as_inputs()
    assert v3.decide(marked)[:2] == (True, "lsb.rgb")
    # raw: a tail flags the file, zero padding is the special case that does not
    data = _png(rocket)
    assert v3.decide(extract_streams(data + b"secret payload").as_inputs())[:2] == (True, "raw")
    assert v3.decide(extract_streams(data + b"\x00" * 32).as_inputs())[0] is False
    # flat graphics: LSB patterns spell repeated bytes; the low-entropy rule ignores them
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, 1::2] = 1
    assert v3.scores(extract_streams(_png(stripes)).as_inputs())["lsb.rgb"] == 0.0
