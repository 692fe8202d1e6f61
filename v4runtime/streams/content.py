"""The ``content`` stream: statistics of the bit streams in embedding order, plus LSB steganalysis.

Sequential embedders write a framed payload from the top-left sample onwards, in a fixed order:
pixel-interleaved R, G, B LSBs for ``lsb.rgb``; alpha LSBs for ``alpha``; palette-index LSBs for
``palette``. For each of these three bit streams the first :data:`HEAD_BYTES` bytes are rebuilt
in both packings (LSB-first and MSB-first) and described by :data:`BYTE_FEATURES`. Whole-image
chi-square (Westfeld-Pfitzmann pairs of values) and sample-pairs (Dumitrescu-Wu-Wang) estimates
follow, then a head profile that compares the start of each bit stream with what follows it: a
short unsignalled payload (random bytes, no marker) leaves no trace in whole-image statistics, but
it turns the LSBs of its first samples into noise where the rest of the stream is still smooth.
Two more head profiles (:mod:`v4runtime.streams.neighbours`) judge the first samples of the RGB
stream against their channels or their neighbours: channel agreement of grey pictures and the
weighted-stego estimate. Last, a noise run per bit stream finds where a payload of a few kilobytes
ends, and a change-point test (:mod:`v4runtime.streams.payload_end`) finds where a payload of any
length ends. Layout, 166 values in [0, 1]:

- ``[0:54]``: for each stream in :data:`BIT_STREAMS`, 18 values: present, ones ratio, then the
  8 :data:`BYTE_FEATURES` for LSB-first, then the same 8 for MSB-first.
- ``[54:60]``: chi-square p-value (whole image, head of the stream) for RGB, alpha, indices.
- ``[60:62]``: sample-pairs embedding-rate estimate for RGB and alpha.
- ``[62]``: fraction of horizontally adjacent RGB samples with equal LSBs.
- ``[63]``: log2 of the number of samples / 32.
- ``[64:112]``: for each stream in :data:`BIT_STREAMS`, for each window ``n`` in
  :data:`HEAD_WINDOWS`, 4 values for the samples ``[0, n)`` and then ``[n, 2n)``: the share of
  close neighbour pairs that differ only in the LSB (0.5 when LSBs are noise), and the share of
  neighbour pairs that are close (how much evidence that ratio rests on).
- ``[112:124]``: per window ``n`` in :data:`NEIGHBOUR_WINDOWS` of the RGB stream, for the head
  then the next ``n`` samples: the share of grey pixels (channels equal above the LSB) whose LSBs
  differ, and the share of grey pixels.
- ``[124:136]``: per window of the RGB stream, for the head then the next ``n`` samples: the
  weighted-stego estimate (0.25: nothing replaced, 0.75: every LSB replaced) and its evidence
  (near 1 on smooth content, near 0 on noise). These two blocks are neutral (0, and 0.25 with
  no evidence) for palette pictures, which cannot carry ``lsb.rgb``.
- ``[136:148]``: for each stream in :data:`BIT_STREAMS`, where a long payload ends (see
  :func:`noise_run_profile`): the share of :data:`PROFILE_BLOCKS` leading blocks of
  :data:`BLOCK_SAMPLES` samples whose LSB flip ratio is that of noise, the close-pair share in
  them, the flip ratio of the first block after them, and how far below 0.5 it lies.
- ``[148:166]``: for each stream in :data:`BIT_STREAMS`, the
  :data:`~v4runtime.streams.payload_end.PAYLOAD_END_VALUES` of the payload-end test: how much
  better "noise up to a boundary, the cover after it" explains the LSBs than one ratio
  throughout, where that boundary lies, and the close-pair share and flip ratios around it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from v4runtime.streams.neighbours import grey_profile, neutral_grey, neutral_ws, ws_profile
from v4runtime.streams.payload_end import PAYLOAD_END_VALUES, flip_z, payload_end_profile
from v4runtime.streams.spec import CONTENT_FEATURES

#: Framing marker written by the stego embedders (``AI42``) and looked for here.
MARKER = b"AI42"
#: Bytes of each bit stream examined from its start.
HEAD_BYTES = 4096
#: The three bit streams, in layout order.
BIT_STREAMS: tuple[str, ...] = ("lsb", "alpha", "palette")
#: Names of the per-packing byte features, in layout order.
BYTE_FEATURES: tuple[str, ...] = (
    "printable_head",  # printable-ASCII ratio of the first 64 bytes
    "printable",  # printable-ASCII ratio of the first HEAD_BYTES bytes
    "marker_at_start",  # AI42 at offset 0
    "marker_anywhere",  # AI42 within the first HEAD_BYTES bytes
    "entropy",  # byte entropy / 8
    "printable_run",  # length of the printable run from offset 0 / 256, clipped
    "nul_terminated",  # a NUL ends a printable run of MIN_TEXT_RUN+ bytes from the start (after a marker)
    "zero_bytes",  # fraction of NUL bytes
)
PER_STREAM = 2 + 2 * len(BYTE_FEATURES)
#: Prefix windows (samples of a bit stream) of the head profile; each is compared with the next ``n``.
HEAD_WINDOWS: tuple[int, ...] = (512, 2048, 8192, 16384)
PROFILE_PER_STREAM = 4 * len(HEAD_WINDOWS)
#: Samples per block of the noise-run profile, and blocks read from the start of each bit stream.
BLOCK_SAMPLES = 4096
PROFILE_BLOCKS = 16
NOISE_RUN_VALUES: tuple[str, ...] = ("noise_run_blocks", "noise_run_close_pairs", "after_run_flip_ratio", "after_run_step")
#: A block joins the noise run when it has this many close pairs and a flip ratio within
#: NOISE_Z standard errors of 0.5; the step after the run is scaled by STEP_Z_SCALE.
MIN_BLOCK_PAIRS = 32
NOISE_Z = 4.5
STEP_Z_SCALE = 20.0
#: Samples of the pixel-interleaved RGB stream the content stream reads from its start.
RGB_HEAD_SAMPLES = max(HEAD_BYTES * 8, PROFILE_BLOCKS * BLOCK_SAMPLES)
#: Windows of the neighbour profiles: a payload long enough to fill a larger one already fills
#: the 8192-sample window, and the smaller set halves the rows these profiles read.
NEIGHBOUR_WINDOWS: tuple[int, ...] = HEAD_WINDOWS[:3]
#: Shortest printable run that counts as NUL-terminated text. Noise makes a printable byte about
#: 37% of the time, so a 4-byte run then a NUL turned up in about 1 clean file in 2,000, and those
#: files scored as confidently as real payloads; 12 bytes takes that to about 1 in 10 million.
MIN_TEXT_RUN = 12

_PRINTABLE = np.zeros(256, dtype=bool)
_PRINTABLE[0x20:0x7F] = True
_PRINTABLE[[9, 10, 13]] = True
_LOG2 = np.zeros(HEAD_BYTES + 1)
_LOG2[1:] = np.log2(np.arange(1, HEAD_BYTES + 1))


def feature_names() -> list[str]:
    """Return the names of the ``content`` vector, in order (used by the docs and tests)."""
    names: list[str] = []
    for stream in BIT_STREAMS:
        names += [f"{stream}.present", f"{stream}.ones_ratio"]
        for order in ("lsb_first", "msb_first"):
            names += [f"{stream}.{order}.{f}" for f in BYTE_FEATURES]
    names += [f"chi2.{s}.{w}" for s in BIT_STREAMS for w in ("image", "head")]
    names += ["spa.lsb", "spa.alpha", "lsb.neighbour_agreement", "log2_samples"]
    for stream in BIT_STREAMS:
        for n in HEAD_WINDOWS:
            for part in ("head", "next"):
                names += [f"{stream}.{part}{n}.lsb_flip_ratio", f"{stream}.{part}{n}.close_pairs"]
    for stream, statistic, evidence in (
        ("lsb", "grey_lsb_differ", "grey_pixels"),
        ("lsb", "weighted_stego", "weighted_stego_evidence"),
    ):
        names += [f"{stream}.{part}{n}.{value}" for n in NEIGHBOUR_WINDOWS for part in ("head", "next")
                  for value in (statistic, evidence)]
    names += [f"{stream}.{value}" for stream in BIT_STREAMS for value in NOISE_RUN_VALUES]
    names += [f"{stream}.{value}" for stream in BIT_STREAMS for value in PAYLOAD_END_VALUES]
    assert len(names) == CONTENT_FEATURES
    return names


def _byte_features(data: np.ndarray) -> list[float]:
    n = len(data)
    if n == 0:
        return [0.0] * len(BYTE_FEATURES)
    printable = _PRINTABLE[data]
    raw = data.tobytes()
    counts = np.bincount(data, minlength=256)
    p = counts[counts > 0]
    entropy = float(np.log2(n) - (p * _LOG2[p]).sum() / n) if n <= HEAD_BYTES else 0.0
    start = len(MARKER) if raw.startswith(MARKER) else 0
    not_printable = np.flatnonzero(~printable[start:])
    run = int(not_printable[0]) if len(not_printable) else n - start
    terminated = run >= MIN_TEXT_RUN and start + run < n and raw[start + run] == 0
    return [
        float(printable[:64].mean()),
        float(printable.mean()),
        float(raw.startswith(MARKER)),
        float(raw.find(MARKER) >= 0),
        entropy / 8.0,
        min(run / 256.0, 1.0),
        float(terminated),
        float(counts[0]) / n,
    ]


def bit_stream_features(samples: np.ndarray | None) -> list[float]:
    """Features of one bit stream given its samples in embedding order (1-D uint8)."""
    if samples is None or samples.size == 0:
        return [0.0] * PER_STREAM
    bits = samples[: HEAD_BYTES * 8] & 1
    usable = (len(bits) // 8) * 8
    out = [1.0, float(bits.mean())]
    for order in ("little", "big"):  # little = LSB-first packing
        out += _byte_features(np.packbits(bits[:usable], bitorder=order))
    return out


def chi_square_p(samples: np.ndarray | None, hist: np.ndarray | None = None) -> float:
    """Westfeld-Pfitzmann chi-square attack: probability that pairs of values are equalised.

    Near 1 when LSB replacement has evened out each pair (2k, 2k+1) of the histogram. Pass
    ``hist`` (256 bins) instead of ``samples`` when it is already known.
    """
    if hist is None:
        if samples is None or samples.size < 64:
            return 0.0
        hist = np.bincount(samples.reshape(-1).astype(np.intp), minlength=256)  # faster than from uint8
    hist = np.asarray(hist, dtype=np.float64)
    even, odd = hist[0::2], hist[1::2]
    expected = (even + odd) / 2.0
    keep = expected > 4  # cells with too few samples make the statistic meaningless
    df = int(keep.sum()) - 1
    if df < 1:
        return 0.0
    chi = float((((even[keep] - expected[keep]) ** 2) / expected[keep]).sum())
    # Wilson-Hilferty approximation of the chi-square survival function (no SciPy needed).
    k = 2.0 / (9.0 * df)
    z = ((chi / df) ** (1.0 / 3.0) - (1.0 - k)) / math.sqrt(k)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def sample_pairs(planes: list[np.ndarray] | tuple[np.ndarray, ...], max_pairs: int = 1 << 18) -> float:
    """Sample-pairs analysis (Dumitrescu, Wu, Wang): estimated LSB embedding rate in [0, 1].

    ``planes`` are ``(H, W)`` uint8 arrays; horizontally adjacent samples of each form the pairs.
    Rows are subsampled evenly above ``max_pairs`` pairs per plane to bound the cost.
    """
    n = x = y = close = 0
    for plane in planes:
        if plane.ndim != 2 or plane.shape[1] < 2:
            continue
        step = max(1, plane.shape[0] * (plane.shape[1] - 1) // max_pairs)
        rows = plane[::step]
        u = rows[:, :-1]
        v = rows[:, 1:]
        differ = u != v
        x_mask = differ & ((v > u) != (v & 1).astype(bool))
        nx = int(np.count_nonzero(x_mask))
        n += u.size
        x += nx
        y += int(np.count_nonzero(differ)) - nx
        close += int(np.count_nonzero((u >> 1) == (v >> 1)))
    return _spa_root(n, x, y, close)


def _spa_root(n: int, x: int, y: int, close: int) -> float:
    """Smallest root of the sample-pairs quadratic, clipped to [0, 1]."""
    a = close / 2.0
    b = 2.0 * x - n
    c = float(y - x)
    if a == 0:
        return 0.0
    disc = b * b - 4 * a * c
    if disc < 0:
        return 0.0
    roots = ((-b + math.sqrt(disc)) / (2 * a), (-b - math.sqrt(disc)) / (2 * a))
    return float(min(max(min(roots, key=abs), 0.0), 1.0))


def _pair_statistics(planes: list[np.ndarray] | tuple[np.ndarray, ...], max_pairs: int = 1 << 15) -> tuple[float, float]:
    """Sample-pairs estimate and LSB neighbour agreement of ``planes`` in one pass over the pairs.

    ``u ^ v`` gives both: ``(u >> 1) == (v >> 1)`` is ``u ^ v < 2``, equal LSBs is ``(u ^ v) & 1 == 0``.
    """
    n = x = y = close = differ_lsb = 0
    for plane in planes:
        if plane.shape[1] < 2:
            continue
        step = max(1, plane.shape[0] * (plane.shape[1] - 1) // max_pairs)
        rows = plane[::step]
        u = rows[:, :-1]
        v = rows[:, 1:]
        w = u ^ v
        differ = w != 0
        x_mask = (v > u) != (v & 1).view(bool)
        x_mask &= differ
        nx = int(np.count_nonzero(x_mask))
        n += w.size
        x += nx
        y += int(np.count_nonzero(differ)) - nx
        close += int(np.count_nonzero(w < 2))
        differ_lsb += int(np.count_nonzero(w & 1))
    return _spa_root(n, x, y, close), (1.0 - differ_lsb / n) if n else 0.0


@functools.lru_cache(maxsize=64)
def _off_row_pairs(length: int, row_length: int, step: int) -> np.ndarray:
    """Indexes of the pairs ``(i, i + step)``, ``i < length``, that straddle two rows (cached per width)."""
    index = np.arange(length)
    return index[(index % row_length) >= row_length - step]


def _pair_codes(s: np.ndarray, row_length: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """``s[i] ^ s[i + step]`` for every pair in ``s``, and the indexes of pairs across a row edge.

    Those pairs get code 2: neither close (code < 2) nor flipped in the LSB alone (code 1).
    """
    length = max(len(s) - step, 0)
    codes = s[:length] ^ s[step : step + length]
    off_row = _off_row_pairs(length, row_length, step)
    codes[off_row] = 2
    return codes, off_row


def lsb_flip_z(stream: np.ndarray, row_length: int, step: int) -> float:
    """:func:`flip_z` over every close neighbour pair of ``stream`` (pairs as in :func:`head_profile`).

    Large on smooth content, whose close pairs are mostly equal; near 0 where the LSBs are noise,
    be it the cover's own noise or a random payload.
    """
    codes, _ = _pair_codes(stream, row_length, step)
    return flip_z(int(np.count_nonzero(codes == 1)), int(np.count_nonzero(codes < 2)))


def head_profile(stream: np.ndarray | None, row_length: int, step: int) -> list[float]:
    """Compare neighbour pairs at the start of a bit stream with those right after it.

    Pairs are samples ``(i, i + step)`` on the same row (``step`` is 3 for pixel-interleaved RGB, so
    a pair is one channel of two adjacent pixels). A pair is *close* when the two samples differ at
    most in their LSB. In smooth content close pairs are mostly equal; LSB replacement with
    random bits makes half of them differ in the LSB alone. Returns :data:`PROFILE_PER_STREAM`
    values (see the module docstring).
    """
    if stream is None or row_length <= step or len(stream) <= step:
        return [0.0] * PROFILE_PER_STREAM
    xor, off_row = _pair_codes(stream[: 2 * HEAD_WINDOWS[-1]], row_length, step)
    close = xor < 2
    flipped = xor == 1
    out: list[float] = []
    for n in HEAD_WINDOWS:
        for lo, hi in ((0, n), (n, 2 * n)):
            pairs = len(xor[lo:hi]) - int(np.count_nonzero((off_row >= lo) & (off_row < hi)))
            near = int(np.count_nonzero(close[lo:hi]))
            flips = int(np.count_nonzero(flipped[lo:hi]))
            out += [flips / near if near else 0.0, near / pairs if pairs else 0.0]
    return out


def stream_pair_codes(stream: np.ndarray, row_length: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair codes (see :func:`_pair_codes`) of the first ``PROFILE_BLOCKS * BLOCK_SAMPLES`` samples, which
    both the noise run and the payload-end test read."""
    return _pair_codes(stream[: PROFILE_BLOCKS * BLOCK_SAMPLES], row_length, step)


def block_counts(
    stream: np.ndarray, row_length: int, step: int, pair_codes: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs, close pairs and LSB-only pairs in each of :data:`PROFILE_BLOCKS` blocks of a bit stream.

    Block ``k`` holds the pairs ``(i, i + step)`` on one row with
    ``k * BLOCK_SAMPLES <= i < (k + 1) * BLOCK_SAMPLES``; blocks past the end of the stream are empty.
    ``pair_codes`` is :func:`stream_pair_codes` of the stream when already computed.
    """
    codes, off_row = pair_codes if pair_codes is not None else stream_pair_codes(stream, row_length, step)
    padded = np.full(PROFILE_BLOCKS * BLOCK_SAMPLES, 2, dtype=np.uint8)  # 2: no pair past the end
    padded[: len(codes)] = codes
    blocks = padded.reshape(PROFILE_BLOCKS, BLOCK_SAMPLES)
    in_stream = np.clip(len(codes) - BLOCK_SAMPLES * np.arange(PROFILE_BLOCKS), 0, BLOCK_SAMPLES)
    pairs = in_stream - np.bincount(off_row // BLOCK_SAMPLES, minlength=PROFILE_BLOCKS)
    return pairs, np.count_nonzero(blocks < 2, axis=1), np.count_nonzero(blocks == 1, axis=1)


def noise_run_profile(
    stream: np.ndarray | None, row_length: int, step: int, pair_codes: tuple[np.ndarray, np.ndarray] | None = None
) -> list[float]:
    """Where a payload of up to ``PROFILE_BLOCKS * BLOCK_SAMPLES`` bits ends, from consecutive blocks.

    A random payload of a few kilobytes fills every head window of :func:`head_profile`, so the
    contrast that profile looks for lies inside it. Blocks see it instead: in every block the
    payload covers, half of the close pairs differ in the LSB alone (flip ratio 0.5, the ratio of
    noise); in the first block after it the ratio falls to the cover's own. Returns the four
    :data:`NOISE_RUN_VALUES`: the share of leading blocks whose ratio is within :data:`NOISE_Z`
    standard errors of 0.5 (the noise run), the share of close pairs among their pairs, the flip
    ratio of the block after the run, and how many standard errors below 0.5 it lies
    (/ :data:`STEP_Z_SCALE`, clipped to [0, 1]). A cover that is noise everywhere gives a run of
    every block and no step; a clean smooth cover gives no run and a large step at block 0.
    """
    if stream is None or row_length <= step or len(stream) <= step:
        return [0.0] * len(NOISE_RUN_VALUES)
    pairs, near, flips = block_counts(stream, row_length, step, pair_codes)
    run = 0
    while run < PROFILE_BLOCKS and near[run] >= MIN_BLOCK_PAIRS:
        if abs(flips[run] / near[run] - 0.5) > NOISE_Z * 0.5 / math.sqrt(near[run]):
            break
        run += 1
    run_pairs = int(pairs[:run].sum())
    evidence = int(near[:run].sum()) / run_pairs if run_pairs else 0.0
    after = step_z = 0.0
    if run < PROFILE_BLOCKS and near[run] > 0:
        after = float(flips[run] / near[run])
        step_z = flip_z(int(flips[run]), int(near[run])) / STEP_Z_SCALE
    return [run / PROFILE_BLOCKS, evidence, after, min(max(step_z, 0.0), 1.0)]


def content_features(
    bands: tuple[np.ndarray, ...] | list[np.ndarray],
    rgb_head: np.ndarray,
    alpha: np.ndarray | None,
    indices: np.ndarray | None,
    histograms: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Build the ``content`` vector (see module docstring).

    Args:
        bands: R, G, B planes ``(H, W)`` uint8 of the whole image.
        rgb_head: The first samples of the pixel-interleaved R, G, B stream (at least
            :data:`RGB_HEAD_SAMPLES` when the image has that many).
        alpha: Alpha plane or ``None``.
        indices: Palette-index plane or ``None``.
        histograms: Precomputed whole-image histograms (keys ``rgb``, ``alpha``, ``indices``).
    """
    histograms = histograms or {}
    head = HEAD_BYTES * 8
    alpha_stream = alpha.reshape(-1) if alpha is not None else None
    index_stream = indices.reshape(-1) if indices is not None else None
    out: list[float] = []
    for stream in (rgb_head, alpha_stream, index_stream):
        out += bit_stream_features(stream)
    rgb_hist = histograms.get("rgb")
    if rgb_hist is None:
        rgb_hist = sum(np.bincount(b.reshape(-1), minlength=256) for b in bands)
    out.append(chi_square_p(None, rgb_hist))
    out.append(chi_square_p(rgb_head[:head]))
    for key, stream in (("alpha", alpha_stream), ("indices", index_stream)):
        if stream is None:
            out += [0.0, 0.0]
            continue
        out.append(chi_square_p(stream, histograms.get(key)))
        out.append(chi_square_p(stream[:head]))
    spa, agreement = _pair_statistics(bands)
    out.append(spa)
    out.append(sample_pairs([alpha]) if alpha is not None else 0.0)
    out.append(agreement)
    out.append(min(math.log2(max(1, 3 * bands[0].size)) / 32.0, 1.0))
    width = bands[0].shape[1]
    out += head_profile(rgb_head, 3 * width, 3)
    out += head_profile(alpha_stream, width, 1)
    out += head_profile(index_stream, width, 1)
    if indices is None:
        out += grey_profile(bands, NEIGHBOUR_WINDOWS)
        out += ws_profile(bands, NEIGHBOUR_WINDOWS)
    else:  # a palette picture cannot carry lsb.rgb, and its R, G, B are palette colours
        out += neutral_grey(NEIGHBOUR_WINDOWS) + neutral_ws(NEIGHBOUR_WINDOWS)
    ends: list[float] = []
    for stream, row_length, step in ((rgb_head, 3 * width, 3), (alpha_stream, width, 1), (index_stream, width, 1)):
        if stream is None or row_length <= step or len(stream) <= step:
            out += [0.0] * len(NOISE_RUN_VALUES)
            ends += [0.0] * len(PAYLOAD_END_VALUES)
            continue
        codes = stream_pair_codes(stream, row_length, step)
        out += noise_run_profile(stream, row_length, step, codes)
        ends += payload_end_profile(*codes)
    out += ends
    return np.asarray(out, dtype=np.float32)
