"""Head-window statistics of the RGB stream that judge each sample against its channels or neighbours.

A short unsignalled payload (random bytes, no marker) turns the LSBs of the first samples of a
bit stream into noise. :func:`v4runtime.streams.content.head_profile` sees that where neighbours
on a row are nearly equal (flat and synthetic content); these two tests reach covers it cannot:

- :func:`grey_profile`: a grey picture stored as RGB has three equal channels; LSB replacement
  makes them differ, in the LSB alone and in the first pixels only.
- :func:`ws_profile`: the weighted-stego estimate (Fridrich and Goljan 2004, Ker and Böhme 2008)
  of the share of replaced LSBs, from how each sample's LSB correlates with its deviation from
  the mean of its neighbours: it works on smooth gradients and textures, whose neighbours
  rarely differ by 1 or less, where the head profile finds few close pairs to count.

Weighted stego compares a sample with its neighbours on the row and with the four around it (see
:func:`ws_profile` for why both). Both tests describe the RGB stream of ``lsb.rgb``, so
:func:`v4runtime.streams.content.content_features` leaves them neutral for palette pictures,
which cannot carry it and whose colours come from a palette.

Like the head profile, each is measured on the first ``n`` samples of the stream and on the ``n``
after them, for every window ``n``: a payload shows as a contrast between the two, a cover that
is noisy everywhere does not.
"""

from __future__ import annotations

import numpy as np

#: Values per window of each profile: (head, next) x (statistic, evidence).
GREY_PER_WINDOW = 4
WS_PER_WINDOW = 4
#: Weighted stego down-weights busy neighbourhoods: weight 1 / (WS_DAMPING + local variance).
WS_DAMPING = 5.0
#: Weight added to every estimate's denominator, as much as 32 perfectly smooth samples carry: it
#: pulls estimates that rest on a handful of samples (a window of mostly clipped pixels) to 0.
WS_PRIOR = 32 / WS_DAMPING
#: Deviations from the neighbours' mean are clipped to +-WS_RESIDUAL_CLIP. Replacing an LSB moves a
#: sample by at most 1, and where the weight is high the cover sits within a few levels of that
#: mean (grain of sigma 1.5 keeps almost all of its estimate at 4); a larger deviation is content
#: (an edge, a stray pixel). Unclipped, one stray pixel among equal neighbours (full weight, a
#: hundred levels off) outweighs hundreds of samples and reads as a payload in a flat picture.
WS_RESIDUAL_CLIP = 4.0


def neutral_grey(windows: tuple[int, ...]) -> list[float]:
    """What :func:`grey_profile` gives where it does not apply: no grey pixels, nothing differing."""
    return [0.0] * (GREY_PER_WINDOW * len(windows))


def neutral_ws(windows: tuple[int, ...]) -> list[float]:
    """What :func:`ws_profile` gives where it does not apply: estimate 0 (0.25 mapped), no evidence."""
    return [0.25, 0.0] * (WS_PER_WINDOW // 2 * len(windows))


def _window_sums(values: np.ndarray, windows: tuple[int, ...]) -> list[tuple[float, float]]:
    """Sum of ``values`` over ``[0, n)`` and ``[n, 2n)`` for each window ``n`` (clipped to the data)."""
    length = len(values)
    ends = sorted({min(cut, length) for n in windows for cut in (n, 2 * n)} - {0})
    prefix = {0: 0.0}
    if ends:  # one pass over the segments between cuts, summed in float64, instead of a full cumsum
        segments = np.add.reduceat(values[: ends[-1]], [0, *ends[:-1]], dtype=np.float64)
        prefix.update(zip(ends, np.cumsum(segments).tolist(), strict=True))
    return [
        (prefix[min(n, length)], prefix[min(2 * n, length)] - prefix[min(n, length)])
        for n in windows
    ]


def _counts(length: int, windows: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(min(n, length), max(0, min(2 * n, length) - n)) for n in windows]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def grey_profile(bands: tuple[np.ndarray, ...] | list[np.ndarray], windows: tuple[int, ...]) -> list[float]:
    """Channel agreement of the first pixels; windows count R, G, B samples (3 per pixel).

    Per window and part (head, next): the share of *grey* pixels (channels equal above the LSB)
    whose LSBs differ, then the share of pixels that are grey (the evidence). A clean grey
    picture gives 0 and 1; a payload in its first pixels gives about 0.75 and 1.
    """
    pixels = -(-2 * max(windows) // 3)
    r, g, b = (np.ascontiguousarray(band).reshape(-1)[:pixels] for band in bands[:3])
    spread = (r ^ g) | (g ^ b)
    grey = spread < 2
    mixed = grey & (spread != 0)
    pixel_windows = tuple(max(1, n // 3) for n in windows)
    out: list[float] = []
    for (grey_head, grey_next), (mixed_head, mixed_next), (len_head, len_next) in zip(
        _window_sums(grey, pixel_windows), _window_sums(mixed, pixel_windows), _counts(len(r), pixel_windows),
        strict=True,
    ):
        out += [_ratio(mixed_head, grey_head), _ratio(grey_head, len_head)]
        out += [_ratio(mixed_next, grey_next), _ratio(grey_next, len_next)]
    return out


def _row_neighbours(x: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The left and right neighbours of each sample in the first ``rows`` rows of ``x`` (H, W, C), mirrored at row ends."""
    x = x[:rows]
    left = np.empty_like(x)
    left[:, 1:] = x[:, :-1]
    left[:, 0] = x[:, 1]
    right = np.empty_like(x)
    right[:, :-1] = x[:, 1:]
    right[:, -1] = x[:, -2]
    return left, right


def _column_neighbours(x: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours above and below each sample in the first ``rows`` rows of ``x`` (H, W, C), mirrored at the edges."""
    above = np.empty_like(x[:rows])
    above[1:] = x[: rows - 1]
    above[0] = x[1]
    below = np.empty_like(above)
    below[: len(x) - 1] = x[1 : rows + 1]
    if len(x) == rows:  # no row below the last one: mirror
        below[-1] = x[-2]
    return above, below


def _ws_estimates(
    x: np.ndarray, total: np.ndarray, squares: np.ndarray, count: int, usable: np.ndarray,
    lsb_sign: np.ndarray, windows: tuple[int, ...],
) -> list[float]:
    """Weighted-stego estimate and evidence per window part, predicting each sample by its neighbours' mean.

    ``total`` and ``squares`` are the sums of the ``count`` neighbours and of their squares.
    """
    scale = np.float32(1 / count)
    mean = total * scale  # sums of at most four squares of bytes are exact in float32
    variance = squares * scale
    variance -= mean * mean
    np.maximum(variance, 0, out=variance)
    variance += np.float32(WS_DAMPING)
    weight = np.divide(np.float32(1), variance, where=usable, out=np.zeros_like(variance)).reshape(-1)
    x_minus_mean = x - mean
    np.clip(x_minus_mean, -WS_RESIDUAL_CLIP, WS_RESIDUAL_CLIP, out=x_minus_mean)
    x_minus_mean *= lsb_sign
    weighted = x_minus_mean.reshape(-1) * weight
    out: list[float] = []
    for (num_head, num_next), (den_head, den_next), (len_head, len_next) in zip(
        _window_sums(weighted, windows), _window_sums(weight, windows), _counts(len(weight), windows), strict=True
    ):
        for num, den, length in ((num_head, den_head, len_head), (num_next, den_next, len_next)):
            estimate = 2 * num / (den + WS_PRIOR)  # a few weighted samples cannot make a large estimate
            out += [(min(max(estimate, -0.5), 1.5) + 0.5) / 2, WS_DAMPING * _ratio(den, length)]
    return out


def ws_profile(bands: tuple[np.ndarray, ...] | list[np.ndarray], windows: tuple[int, ...]) -> list[float]:
    """Weighted-stego estimates of the replaced share of the first R, G, B samples (pixel-interleaved).

    Per window and part (head, next): the estimate, clipped to [-0.5, 1.5] and mapped to [0, 1]
    (0.25: no payload, 0.75: every LSB replaced), then its evidence, the mean weight scaled to
    [0, 1] (1: smooth content; near 0 on noise or clipped content, where the estimate means little).

    Two predictors each give an estimate: the mean of the left and right neighbours, and the mean
    of all four. The four-neighbour one is the sharper, but a picture's first row is often a
    border or a line unlike the rows below it, and predicting it from the row below turns that
    line into a payload-like deviation in exactly the samples a head window looks at. A payload
    raises both estimates; such a line raises only the second. Each value is the smaller of the two.
    """
    height, width = bands[0].shape
    if width < 2 or height < 2:
        return neutral_ws(windows)
    rows = min(height, -(-2 * max(windows) // (3 * width)))
    block = np.stack([band[: min(height, rows + 1)] for band in bands[:3]], axis=-1)  # (rows[+1], W, RGB)
    x = block.astype(np.float32)
    left, right = _row_neighbours(x, rows)
    above, below = _column_neighbours(x, rows)
    x, block = x[:rows], block[:rows]
    lsb_sign = (block & 1).astype(np.float32) * 2 - 1  # x minus x with its LSB flipped
    # Clipped samples (0, 1, 254, 255) have neighbours on one side only: their deviation from the
    # mean has a sign fixed by their LSB, which would read as a payload.
    usable = (block >= 2) & (block <= 253)
    row_total = left + right
    row_squares = left * left + right * right
    along_row = _ws_estimates(x, row_total, row_squares, 2, usable, lsb_sign, windows)
    all_total = row_total + above + below
    all_squares = row_squares + above * above + below * below
    all_four = _ws_estimates(x, all_total, all_squares, 4, usable, lsb_sign, windows)
    return [min(a, b) for a, b in zip(along_row, all_four, strict=True)]
