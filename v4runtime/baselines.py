"""Baselines the V4 model is measured against, on the same streams and the same corpus.

- :class:`V3StyleDetector`: what the original V3 did: one hand-made score per method, one threshold
  per method, and special-case rules bolted on to push false positives down (ignore flat or
  patterned images, ignore noise that looks equalised everywhere, ignore zero padding after the
  image, whitelist blank EXIF comments...).
- :class:`ChiSquareDetector`: the classical chi-square attack of Westfeld and Pfitzmann on the
  R, G, B values in embedding order (pixel-interleaved, from the top-left pixel).

Both read only the eight stream arrays (:data:`v4runtime.streams.spec.STREAM_SPECS`), exactly what
the model receives, so the comparison is about the decision rule and not about the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from v4runtime.streams.spec import CAPABILITY_SLICE, METHODS

Streams = dict[str, np.ndarray]

#: Prefix lengths (values in embedding order) at which the chi-square attack is evaluated.
CHI_PREFIXES: tuple[int, ...] = (96, 384, 1536, 6144)


def chi_square_pvalue(values: np.ndarray) -> float:
    """Westfeld-Pfitzmann chi-square attack on 8-bit ``values``.

    Embedding in LSBs equalises the counts of each pair of values (2k, 2k+1). The statistic
    compares each even count with the pair's mean; the returned p-value is near 1 when the pairs
    are equalised (a payload is likely) and near 0 when they are not. Pairs with fewer than 5
    expected values are merged out, as the test requires.
    """
    from scipy.special import chdtrc

    if values.size < 16:
        return 0.0
    hist = np.bincount(values.astype(np.int64).ravel(), minlength=256)[:256].astype(np.float64)
    even, odd = hist[0::2], hist[1::2]
    expected = (even + odd) / 2
    keep = expected >= 5
    if keep.sum() < 2:
        return 0.0
    chi = float((((even[keep] - expected[keep]) ** 2) / expected[keep]).sum())
    return float(chdtrc(int(keep.sum()) - 1, chi))


def _window_order(plane: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Values of ``plane`` (C, H, W) where ``mask`` is set, pixel-interleaved in row-major order."""
    valid = mask.astype(bool)
    return np.moveaxis(plane, 0, -1)[valid].reshape(-1)


def _rgb_values(s: Streams) -> np.ndarray:
    return np.rint(_window_order(s["pixel"][0:3], s["pixel"][3]) * 255).astype(np.int64)


def _meta_bytes(s: Streams, channel: int) -> bytes:
    mask = s["meta"][channel + 1].astype(bool)
    return bytes(np.rint(s["meta"][channel][mask] * 255).astype(np.uint8).tolist())


@lru_cache(maxsize=1)
def _content_index() -> dict[str, int]:
    from v4runtime.streams.content import feature_names

    return {name: i for i, name in enumerate(feature_names())}


@lru_cache(maxsize=1)
def _format_index() -> dict[str, int]:
    from v4runtime.streams.features import FORMAT_FEATURE_NAMES

    return {name: i for i, name in enumerate(FORMAT_FEATURE_NAMES)}


#: Bit-stream methods and the ``content`` prefix of their features.
_BIT_METHODS = {"lsb.rgb": "lsb", "alpha": "alpha", "palette": "palette"}


@dataclass
class V3StyleDetector:
    """Per-method scores and thresholds plus special-case rules, as the original V3 post-processing.

    It reads the hand-made features of the ``content`` and ``format`` streams (and the tail bytes
    of ``meta``). Scores, each in [0, 1], and the special cases that zero them:

    - ``lsb.rgb``, ``alpha``, ``palette`` (bit streams in embedding order): 1 when the ``AI42``
      marker starts the stream in either packing; otherwise the larger of the printable-ASCII
      ratio of the first 64 bytes and the chi-square p-value of the stream's head. Special cases:
      a low-entropy head (flat or patterned graphics, whose LSBs spell repeated bytes such as
      ``UUUU``) and, for the chi-square part, an image whose whole LSB plane is as equalised as its
      head (sensor noise, not a payload) or whose neighbouring LSBs mostly agree (smooth synthetic
      images) are ignored.
    - ``exif``: a UserComment of at least 8 bytes; shorter (blank camera) comments are whitelisted.
    - ``raw``: bytes after the end of the image, unless fewer than 4 or all zero (padding).

    A score at or above its method's threshold flags the file (methods the capability mask rules
    out are skipped). The method reported is the one furthest above its threshold.
    """

    thresholds: dict[str, float] = field(
        default_factory=lambda: {"alpha": 0.95, "palette": 0.95, "lsb.rgb": 0.95, "exif": 0.5, "raw": 0.5}
    )
    min_entropy: float = 0.35
    min_comment_bytes: int = 8

    def scores(self, s: Streams) -> dict[str, float]:
        """The per-method scores of one file, after the special-case rules."""
        c, f = s["content"], s["format"]
        ci, fi = _content_index(), _format_index()
        capable = f[CAPABILITY_SLICE] > 0.5
        out = dict.fromkeys(METHODS, 0.0)
        for method, stream in _BIT_METHODS.items():
            if not capable[METHODS.index(method)] or c[ci[f"{stream}.present"]] < 0.5:
                continue
            packings = ("lsb_first", "msb_first")
            if any(c[ci[f"{stream}.{p}.marker_at_start"]] > 0.5 for p in packings):
                out[method] = 1.0
                continue
            if max(c[ci[f"{stream}.{p}.entropy"]] for p in packings) < self.min_entropy:
                continue  # special case: flat or patterned graphics
            printable = max(float(c[ci[f"{stream}.{p}.printable_head"]]) for p in packings)
            chi_key = {"lsb": "chi2.lsb", "alpha": "chi2.alpha", "palette": "chi2.palette"}[stream]
            chi_head, chi_image = float(c[ci[f"{chi_key}.head"]]), float(c[ci[f"{chi_key}.image"]])
            if chi_image >= 0.5 * chi_head:
                chi_head = 0.0  # special case: equalised everywhere = noise, not a payload at the start
            if stream == "lsb" and c[ci["lsb.neighbour_agreement"]] > 0.9:
                chi_head = 0.0  # special case: smooth synthetic images
            out[method] = max(printable, chi_head)
        if capable[METHODS.index("exif")]:
            comment_bytes = 2 ** (float(f[fi["exif_user_comment_log"]]) * 16) - 1
            if comment_bytes >= self.min_comment_bytes + 0.5:  # special case: blank camera comments
                out["exif"] = 1.0
        tail = _meta_bytes(s, 2)
        if len(tail) >= 4 and any(tail):  # special case: zero padding after the image
            out["raw"] = 1.0
        return out

    def decide(self, s: Streams) -> tuple[bool, str | None, float]:
        """``(is_stego, method, score)`` for one file."""
        scores = self.scores(s)
        over = {m: v for m, v in scores.items() if v >= self.thresholds[m]}
        if not over:
            return False, None, max(scores.values())
        method = max(over, key=lambda m: over[m] - self.thresholds[m])
        return True, method, over[method]


@dataclass
class ChiSquareDetector:
    """The classical chi-square attack on R, G, B values in embedding order.

    The p-value is computed on growing prefixes (:data:`CHI_PREFIXES` values) and the largest is
    the score; a file is flagged when it reaches ``threshold``. It has no notion of method beyond
    ``lsb.rgb``, the only method it is designed for.
    """

    threshold: float = 0.95

    def score(self, s: Streams) -> float:
        """Largest chi-square p-value over the prefixes."""
        values = _rgb_values(s)
        return max((chi_square_pvalue(values[:n]) for n in CHI_PREFIXES if n <= max(values.size, 16)),
                   default=0.0)

    def decide(self, s: Streams) -> tuple[bool, str | None, float]:
        """``(is_stego, method, score)`` for one file."""
        score = self.score(s)
        return score >= self.threshold, ("lsb.rgb" if score >= self.threshold else None), score


__all__ = ["ChiSquareDetector", "V3StyleDetector", "chi_square_pvalue"]
