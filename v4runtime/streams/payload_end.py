"""Where a sequential payload ends, at any length: a change-point test on the LSBs of a bit stream.

A random payload of ``L`` bits turns the first ``L`` samples of a bit stream into noise: among
close neighbour pairs (samples that differ at most in the LSB) half differ in the LSB alone,
the flip ratio of noise. After ``L`` the cover's own ratio returns, well below one half on smooth
or synthetic content. The head windows of :func:`v4runtime.streams.content.head_profile` see
that contrast only when ``L`` falls near one of their fixed sizes, and the blocks of
:func:`v4runtime.streams.content.noise_run_profile` only when the payload fills a whole block; a
payload of a few hundred bytes falls between both.

This test places the boundary itself. For every candidate end ``L`` (a multiple of
:data:`GRID` samples) it weighs two explanations of the pairs in the first
:data:`SCAN_SAMPLES` samples by their binomial log-likelihood: *a payload ended at L* (flip
ratio exactly one half before ``L``, the cover's own after it) against *one ratio throughout*.
The best ``L`` and its log-likelihood ratio describe the stream. Noise everywhere gives a ratio
near 0 (both explanations fit); a smooth clean cover gives a negative one at every ``L`` (its
head is not noise); a dithered head whose LSBs alternate more than noise does is penalised for
the same reason; a payload on a smooth cover gives a large one, at its length. A cover whose top
is noisier than the rest (dithered sky, texture) also favours a boundary; what tells it from a
payload is how far its ratio before the boundary lies from one half, reported as well.
"""

from __future__ import annotations

import math

import numpy as np

#: Candidate ends are multiples of GRID samples; the scan covers the first SCAN_SAMPLES samples.
GRID = 32  # one 32-bit word of packed flags per candidate (see _block_counts)
SCAN_SAMPLES = 1 << 16
#: The log-likelihood ratio is reported as log1p(ratio) / LLR_LOG_SCALE, clipped to [0, 1]:
#: a ratio of e**8 (about 3,000 nats) or more reads as 1.
LLR_LOG_SCALE = 8.0
#: Names of the values, in layout order.
PAYLOAD_END_VALUES: tuple[str, ...] = (
    "end_llr",  # how much better "noise up to L, then the cover" explains the pairs (scaled)
    "end_length",  # log2(L) / log2(SCAN_SAMPLES) at the best L
    "end_before_close_pairs",  # share of close pairs among the pairs before L
    "end_before_flip_ratio",  # flip ratio before L (0.5 for a payload)
    "end_after_flip_ratio",  # flip ratio after L (the cover's own)
    "end_before_noise_z",  # |z| / (|z| + NOISE_Z_HALF) of the ratio before L against 0.5: 0 for noise
)
#: Standard errors at which ``end_before_noise_z`` reads 0.5. A random payload's flip ratio lies
#: within about 2 of one half however long it is; a head that is merely noisier than the rest of
#: the cover (dithering, texture) lies many more away once it spans thousands of pairs.
NOISE_Z_HALF = 4.0


def flip_z(flips: float, near: float) -> float:
    """How many standard errors the LSB flip ratio ``flips / near`` lies below 0.5, the ratio of noise.

    0 without close pairs: no evidence either way.
    """
    return (0.5 - flips / near) * 2 * math.sqrt(near) if near else 0.0


def _log_likelihood(flips: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Binomial log-likelihood of ``flips`` among ``near`` pairs at their own best ratio (0 log 0 = 0)."""
    p = np.divide(flips, near, out=np.zeros_like(flips), where=near > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ones = np.where(flips > 0, flips * np.log(p), 0.0)
        zeros = np.where(near - flips > 0, (near - flips) * np.log1p(-p), 0.0)
    return ones + zeros


def _block_counts(flags: np.ndarray) -> np.ndarray:
    """How many of each consecutive GRID (32) flags are set."""
    return np.bitwise_count(np.packbits(flags).view(np.uint32))


def payload_end_profile(codes: np.ndarray, off_row: np.ndarray) -> list[float]:
    """The :data:`PAYLOAD_END_VALUES` of a bit stream from its pair codes.

    Args:
        codes: ``s[i] ^ s[i + step]`` for the pairs of the first samples of the stream, with
            pairs across a row edge set to 2 (as :func:`v4runtime.streams.content._pair_codes`
            returns them): 1 is a pair that differs in the LSB alone, below 2 a close pair.
        off_row: The indexes of the pairs across a row edge.
    """
    length = min(len(codes), SCAN_SAMPLES)
    if length < 2 * GRID:
        return [0.0] * len(PAYLOAD_END_VALUES)
    ends = np.arange(GRID, length, GRID)
    # Counts per GRID-sample block, then running sums over the 2,048 blocks rather than over
    # every pair; a block's count is the popcount of its 32 flags packed into one word.
    blocks = codes[: len(ends) * GRID]
    near_before = np.cumsum(_block_counts(blocks < 2)).astype(np.float64)
    flips_before = np.cumsum(_block_counts(blocks == 1)).astype(np.float64)
    rest = codes[len(ends) * GRID : length]
    total_near = near_before[-1] + np.count_nonzero(rest < 2)
    total_flips = flips_before[-1] + np.count_nonzero(rest == 1)
    near_after = total_near - near_before
    flips_after = total_flips - flips_before
    payload = near_before * math.log(0.5) + _log_likelihood(flips_after, near_after)
    one_ratio = _log_likelihood(np.array([total_flips]), np.array([total_near]))[0]
    ratio = payload - one_ratio
    best = int(np.argmax(ratio))
    end = int(ends[best])
    pairs_before = end - int(np.count_nonzero(off_row < end))
    near_b, flips_b = near_before[best], flips_before[best]
    near_a, flips_a = near_after[best], flips_after[best]
    noise_z = abs(flip_z(flips_b, near_b))
    return [
        min(math.log1p(max(float(ratio[best]), 0.0)) / LLR_LOG_SCALE, 1.0),
        math.log2(end) / math.log2(SCAN_SAMPLES),
        near_b / pairs_before if pairs_before > 0 else 0.0,
        flips_b / near_b if near_b else 0.0,
        flips_a / near_a if near_a else 0.0,
        noise_z / (noise_z + NOISE_Z_HALF),
    ]
