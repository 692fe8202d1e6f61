"""Detection metrics, Wilson intervals and evaluation reports (JSON + Markdown).

The metric functions are pure: they take the corpus' ground truth (:class:`Sample`) and one
detector's verdicts (:class:`Verdict`) and return plain dicts, so the model, the baselines and the
ablated models are scored by the same code. :func:`render_markdown` turns a report into the
Markdown the documentation includes; nothing in it is typed by hand.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from v4runtime.errors import V4Error
from v4runtime.model.data import BIT_PLANE_METHODS
from v4runtime.operating_points import operating_points
from v4runtime.operating_points import render as render_operating_points
from v4runtime.streams.spec import METHODS

#: Image file suffixes picked up from a plain folder.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})

#: Payload-size buckets (bytes, inclusive lower bound, exclusive upper bound) for the TPR table.
PAYLOAD_BUCKETS: tuple[tuple[int, int], ...] = ((1, 64), (64, 256), (256, 1024), (1024, 4097))

#: Upper bounds of the ``cover_lsb_z`` buckets (see :mod:`v4runtime.datasets.detectability`): how
#: many standard errors of LSB structure the payload overwrote in its cover.
COVER_Z_BUCKETS: tuple[float, ...] = (4.0, 8.0, 16.0)

#: Longest list of false positives / unreadable files kept in a report.
MAX_LISTED = 200

#: Payloads at least this large are held to the TPR target.
TARGET_MIN_PAYLOAD = 64

CLEAN = "clean"


class EvaluationError(V4Error):
    """A corpus folder or manifest cannot be used for an evaluation."""


@dataclass(frozen=True)
class Sample:
    """Ground truth for one corpus file.

    Attributes:
        path: the file.
        label: ``"clean"`` or ``"stego"``.
        method: the embedding method for stego files, else ``None``.
        format: the container format (``png``, ``jpeg``, ...), lower case.
        payload_size: payload length in bytes for stego files.
        kind: for clean files, the corpus' hard-negative kind (``camera_exif``, ``natural_alpha``...)
            or ``ordinary``; used to break the FPR down.
        signal: for stego files, what a reader could find without a key: ``marker`` (the ``AI42``
            frame marker), ``text`` (a text payload without marker) or ``none`` (random bytes
            without marker, as an encrypted payload would be); ``None`` when the manifest does not say.
        cover: for stego files, what the payload was hidden in: ``photo`` or the kind of a
            procedural picture (``noise``, ``gradient``, ...); ``None`` when the manifest does not say.
        cover_lsb_z: for bit-plane stego files, the LSB structure the payload overwrote in its
            cover (manifest ``cover_lsb_z``); ``None`` when the manifest does not say.
        remaining_lsb_z: for unsignalled bit-plane stego files with a ``cover_lsb_z``, the same
            statistic over the samples after the frame, measured on the file
            (:func:`~v4runtime.datasets.detectability.remaining_lsb_z`); else ``None``.
    """

    path: str
    label: str
    method: str | None = None
    format: str | None = None
    payload_size: int | None = None
    kind: str | None = None
    signal: str | None = None
    cover: str | None = None
    cover_lsb_z: float | None = None
    remaining_lsb_z: float | None = None

    @property
    def is_stego(self) -> bool:
        """True for stego samples."""
        return self.label != CLEAN


@dataclass(frozen=True)
class Verdict:
    """One detector's decision on one file (``error`` set when the file could not be read).

    ``gates`` holds the model's fusion-gate weight per stream (``STREAM_NAMES`` order); baselines
    have none. ``top_method`` is the model's most likely method whatever the verdict (``method``
    is ``None`` below the threshold); baselines have none.
    """

    is_stego: bool
    method: str | None = None
    probability: float | None = None
    error: str | None = None
    gates: tuple[float, ...] | None = None
    top_method: str | None = None


# -- statistics ------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default).

    Returns ``(0.0, 1.0)`` when ``n`` is 0. Unlike the normal approximation it stays inside [0, 1]
    and gives a useful upper bound when no successes were seen (``3.84 / (n + 3.84)`` for 95 %).
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, {n}], got {successes}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges (no rounding residue)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def rate(successes: int, n: int) -> dict[str, Any]:
    """A proportion with its Wilson 95 % interval, as a dict."""
    low, high = wilson_interval(successes, n)
    return {"k": successes, "n": n, "rate": successes / n if n else None, "low": low, "high": high}


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` (``None`` for an empty sequence)."""
    if not values:
        return {f"p{q:g}": None for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


def payload_bucket(size: int | None) -> str | None:
    """Label of the payload-size bucket holding ``size`` (``"64-255 B"``), or ``None``."""
    if size is None:
        return None
    for low, high in PAYLOAD_BUCKETS:
        if low <= size < high:
            return f"{low}-{high - 1} B"
    return f">={PAYLOAD_BUCKETS[-1][1]} B"


#: Where the cover's LSBs were structured, by ``cover_lsb_z`` and ``remaining_lsb_z`` against
#: the first :data:`COVER_Z_BUCKETS` bound; the labels of :func:`lsb_structure`, in table order.
LSB_STRUCTURES: tuple[str, ...] = ("noise-like where written and after", "noise-like where written, smooth after",
                                   "smooth where written")


def lsb_structure(cover_z: float | None, remaining_z: float | None) -> str | None:
    """One of :data:`LSB_STRUCTURES`; ``None`` when a needed figure is missing."""
    if cover_z is None:
        return None
    if cover_z >= COVER_Z_BUCKETS[0]:
        return LSB_STRUCTURES[2]
    if remaining_z is None:
        return None
    return LSB_STRUCTURES[0] if remaining_z < COVER_Z_BUCKETS[0] else LSB_STRUCTURES[1]


def cover_z_bucket(z: float | None) -> str | None:
    """Label of the :data:`COVER_Z_BUCKETS` bucket holding ``z`` (``"4 <= z < 8"``), or ``None``."""
    if z is None:
        return None
    low = None
    for high in COVER_Z_BUCKETS:
        if z < high:
            return f"z < {high:g}" if low is None else f"{low:g} <= z < {high:g}"
        low = high
    return f"z >= {low:g}"


# -- metrics ---------------------------------------------------------------------------------------


def detection_metrics(samples: Sequence[Sample], verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """FPR, TPR (overall, per method, format, payload bucket), method accuracy, confusion matrix.

    Unreadable files are counted under ``errors`` and left out of the rates: an error is neither a
    detection nor a clean verdict, and the scanner reports it separately (exit status 2).
    """
    if len(samples) != len(verdicts):
        raise ValueError("samples and verdicts differ in length")
    errors: Counter[str] = Counter()
    fp = clean_n = 0
    tp: Counter[str] = Counter()
    pos: Counter[str] = Counter()
    by: dict[str, dict[str, list[int]]] = {"method": defaultdict(lambda: [0, 0]),
                                           "format": defaultdict(lambda: [0, 0]),
                                           "payload": defaultdict(lambda: [0, 0]),
                                           "method_target": defaultdict(lambda: [0, 0]),
                                           "method_signal": defaultdict(lambda: [0, 0]),
                                           "unsignalled_cover": defaultdict(lambda: [0, 0]),
                                           "unsignalled_cover_z": defaultdict(lambda: [0, 0]),
                                           "unsignalled_structure": defaultdict(lambda: [0, 0]),
                                           "clean_format": defaultdict(lambda: [0, 0]),
                                           "clean_kind": defaultdict(lambda: [0, 0])}
    classes = (CLEAN, *METHODS)
    confusion = {t: dict.fromkeys(classes, 0) for t in classes}
    method_correct = method_total = 0
    for s, v in zip(samples, verdicts, strict=True):
        if v.error is not None:
            errors["clean" if not s.is_stego else "stego"] += 1
            continue
        predicted = (v.method if v.method in METHODS else METHODS[-1]) if v.is_stego else CLEAN
        truth = s.method if s.is_stego and s.method in METHODS else (CLEAN if not s.is_stego else "raw")
        confusion[truth][predicted] += 1
        if not s.is_stego:
            clean_n += 1
            fp += int(v.is_stego)
            for table, key in (("clean_format", s.format or "?"), ("clean_kind", s.kind or "?")):
                by[table][key][0] += int(v.is_stego)
                by[table][key][1] += 1
            continue
        pos["all"] += 1
        tp["all"] += int(v.is_stego)
        keys = [("method", s.method or "?"), ("format", s.format or "?"),
                ("payload", payload_bucket(s.payload_size) or "?")]
        if s.payload_size is not None and s.payload_size >= TARGET_MIN_PAYLOAD:
            keys.append(("method_target", s.method or "?"))
            if s.signal is not None:
                keys.append(("method_signal", f"{s.method or '?'}, {s.signal}"))
            if s.signal == "none" and s.method in BIT_PLANE_METHODS and s.cover is not None:
                keys.append(("unsignalled_cover", f"{s.method}, {s.cover}"))
            if s.signal == "none" and s.method in BIT_PLANE_METHODS and s.cover_lsb_z is not None:
                keys.append(("unsignalled_cover_z", f"{s.method}, {cover_z_bucket(s.cover_lsb_z)}"))
                where = lsb_structure(s.cover_lsb_z, s.remaining_lsb_z)
                if where is not None:
                    keys.append(("unsignalled_structure", f"{s.method}, {where}"))
        for table, key in keys:
            by[table][key][0] += int(v.is_stego)
            by[table][key][1] += 1
        if v.is_stego:
            method_total += 1
            method_correct += int(v.method == s.method)

    def order(key: str) -> tuple[int, str]:
        head = key.split("-")[0]
        return (int(head), key) if head.isdigit() else (-1, key)  # payload buckets by size, others by name

    z_labels = [cover_z_bucket(z) for z in (-math.inf, *COVER_Z_BUCKETS)]

    def z_order(key: str) -> tuple[str, int]:
        method, _, bucket = key.partition(", ")
        return method, z_labels.index(bucket)

    def structure_order(key: str) -> tuple[str, int]:
        method, _, where = key.partition(", ")
        return method, LSB_STRUCTURES.index(where)

    def table(name: str, key: Any = order) -> dict[str, Any]:
        return {k: rate(*by[name][k]) for k in sorted(by[name], key=key)}

    metrics = {
        "clean": clean_n,
        "stego": pos["all"],
        "errors": dict(errors),
        "fpr": rate(fp, clean_n),
        "fpr_by_format": table("clean_format"),
        "fpr_by_kind": table("clean_kind"),
        "tpr": rate(tp["all"], pos["all"]),
        "tpr_by_method": table("method"),
        "tpr_by_method_min64": table("method_target"),
        "tpr_by_method_signal_min64": table("method_signal"),
        "tpr_unsignalled_by_cover_min64": table("unsignalled_cover"),
        "tpr_unsignalled_by_cover_z_min64": table("unsignalled_cover_z", z_order),
        "tpr_unsignalled_by_structure_min64": table("unsignalled_structure", structure_order),
        "tpr_by_format": table("format"),
        "tpr_by_payload": table("payload"),
        "method_accuracy": rate(method_correct, method_total),
        "confusion": confusion,
    }
    gates = gate_summary(samples, verdicts)
    if gates:
        metrics["gates"] = gates
    return metrics


def gate_summary(samples: Sequence[Sample], verdicts: Sequence[Verdict]) -> dict[str, dict[str, float]]:
    """Per stream: the mean gate weight on clean and on stego files, and the share of files whose
    largest weight it has; empty when the verdicts carry no gate weights (baselines)."""
    from v4runtime.streams.spec import STREAM_NAMES

    rows: dict[bool, list[tuple[float, ...]]] = {True: [], False: []}
    for s, v in zip(samples, verdicts, strict=True):
        if v.gates is not None and v.error is None:
            rows[s.is_stego].append(v.gates)
    every = rows[True] + rows[False]
    if not every:
        return {}
    top = Counter(int(np.argmax(g)) for g in every)
    summary: dict[str, dict[str, float]] = {}
    for i, name in enumerate(STREAM_NAMES):
        summary[name] = {
            "clean": float(np.mean([g[i] for g in rows[False]])) if rows[False] else 0.0,
            "stego": float(np.mean([g[i] for g in rows[True]])) if rows[True] else 0.0,
            "largest": top[i] / len(every),
        }
    return summary


def latency_metrics(timings: Iterable[dict[str, float]]) -> dict[str, Any]:
    """Percentiles of each timing key (``read_ms``, ``streams_ms``, ``inference_ms``, ``total_ms``)."""
    columns: dict[str, list[float]] = defaultdict(list)
    for t in timings:
        for key, value in t.items():
            columns[key].append(float(value))
    return {key: percentiles(values) for key, values in columns.items()}


# -- corpus ----------------------------------------------------------------------------------------


def _is_stego_label(label: Any) -> bool:
    """Manifest labels: 1/0 (``v4runtime dataset build``), or ``"stego"``/``"clean"``."""
    if isinstance(label, bool | int):
        return bool(label)
    text = str(label).strip().lower()
    if text in ("1", "stego", "true"):
        return True
    if text in ("0", CLEAN, "false", "cover"):
        return False
    raise ValueError(f"unknown label {label!r}")


def _manifest_sample(root: Path, row: dict[str, Any]) -> Sample:
    stego = _is_stego_label(row["label"])
    size = row.get("payload_size")
    fmt = row.get("format")
    return Sample(
        path=str(root / row["path"]),
        label="stego" if stego else CLEAN,
        method=row.get("method") if stego else None,
        format=str(fmt).lower() if fmt else None,
        payload_size=int(size) if stego and size not in (None, "") else None,
        kind=(row.get("hard_negative") or "ordinary") if not stego else None,
        signal=_signal(row) if stego else None,
        cover=_cover(row) if stego else None,
        cover_lsb_z=float(row["cover_lsb_z"]) if stego and row.get("cover_lsb_z") is not None else None,
        remaining_lsb_z=_remaining_lsb_z(root, row) if stego else None,
    )


def _remaining_lsb_z(root: Path, row: dict[str, Any]) -> float | None:
    """:func:`~v4runtime.datasets.detectability.remaining_lsb_z` for unsignalled bit-plane payloads of
    at least :data:`TARGET_MIN_PAYLOAD` bytes whose row records ``cover_lsb_z`` (one extra decode each)."""
    from v4runtime.datasets.detectability import remaining_lsb_z

    size = row.get("payload_size")
    if (row.get("cover_lsb_z") is None or row.get("method") not in BIT_PLANE_METHODS or _signal(row) != "none"
            or not isinstance(size, int) or size < TARGET_MIN_PAYLOAD):
        return None
    frame_bytes = size + 1  # no marker; the NUL terminator (v4runtime.stego.framing)
    return remaining_lsb_z(root / row["path"], str(row["method"]), frame_bytes)


def _cover(row: dict[str, Any]) -> str | None:
    """``photo`` or the procedural kind, from a manifest row's ``source`` (``procedural:noise``...)."""
    source = row.get("source")
    if not source:
        return None
    kind, _, name = str(source).partition(":")
    return name if kind == "procedural" and name else "photo"


def _signal(row: dict[str, Any]) -> str | None:
    """``marker``, ``text`` or ``none`` from a manifest row's ``marker`` and ``payload_kind``."""
    if row.get("marker"):
        return "marker"
    kind = row.get("payload_kind")
    if kind == "text":
        return "text"
    if kind == "random":
        return "none"
    return None


def corpus_meta(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``corpus_seed`` and ``manifest_sha256`` from the ``corpus.json`` that ``v4runtime dataset build``
    writes; empty for a plain folder of images."""
    summary = Path(data_dir) / "corpus.json"
    if not summary.is_file():
        return {}
    try:
        corpus = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON
        raise EvaluationError(f"cannot read {summary}: {exc} (rebuild the corpus, or remove the file)") from None
    if not isinstance(corpus, dict):
        raise EvaluationError(f"{summary} is not a corpus summary (expected a JSON object)")
    return {"corpus_seed": corpus.get("seed"), "manifest_sha256": corpus.get("manifest_sha256")}


def load_corpus(data_dir: str | os.PathLike[str]) -> list[Sample]:
    """Samples of a corpus folder.

    A folder with a ``manifest.jsonl`` (from ``v4runtime dataset build``) gives labelled samples;
    a plain folder of images gives clean samples (format from the file suffix).

    Raises:
        EvaluationError: the folder is missing, the manifest is malformed, or no image is found.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise EvaluationError(f"corpus folder not found: {root}")
    manifest = root / "manifest.jsonl"
    samples: list[Sample] = []
    if manifest.is_file():
        try:
            lines = manifest.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"cannot read {manifest}: {exc}") from None
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                samples.append(_manifest_sample(root, json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise EvaluationError(f"{manifest}:{lineno}: bad manifest row ({exc})") from exc
    else:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                fmt = path.suffix.lower().lstrip(".").replace("jpg", "jpeg")
                samples.append(Sample(path=str(path), label=CLEAN, format=fmt))
    if not samples:
        raise EvaluationError(f"no images found in {root} (and no manifest.jsonl)")
    return samples


# -- rendering -------------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 2) -> str:
    """A proportion as a percentage string (``"n/a"`` for ``None``)."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def fmt_rate(r: dict[str, Any], digits: int = 2) -> str:
    """``"1.23% (k/n, 95% CI 0.50%-2.10%)"``."""
    if not r["n"]:
        return "n/a (0 files)"
    return f"{pct(r['rate'], digits)} ({r['k']}/{r['n']}, 95% CI {pct(r['low'], digits)}-{pct(r['high'], digits)})"


def _rate_table(title: str, rows: dict[str, Any], key_name: str) -> list[str]:
    if not rows:
        return []
    lines = [f"**{title}**", "", f"| {key_name} | rate | detected / files | 95% CI |", "|---|---:|---:|---|"]
    for key, r in rows.items():
        lines.append(f"| {key} | {pct(r['rate'])} | {r['k']} / {r['n']} | {pct(r['low'])}-{pct(r['high'])} |")
    return [*lines, ""]


def render_detector_markdown(name: str, m: dict[str, Any]) -> list[str]:
    """Markdown lines for one detector's metrics."""
    lines = [
        f"| metric ({name}) | value |",
        "|---|---|",
        f"| clean files | {m['clean']} |",
        f"| stego files | {m['stego']} |",
        f"| unreadable | {sum(m['errors'].values())} |",
        f"| false-positive rate | {fmt_rate(m['fpr'], 3)} |",
        f"| true-positive rate | {fmt_rate(m['tpr'])} |",
        f"| method accuracy on detected stego | {fmt_rate(m['method_accuracy'])} |",
        "",
    ]
    lines += _rate_table("TPR per method", m["tpr_by_method"], "method")
    lines += _rate_table(f"TPR per method, payloads >= {TARGET_MIN_PAYLOAD} B", m["tpr_by_method_min64"], "method")
    optional = (  # tables from manifests that record the payload signal and the cover
        ("tpr_by_method_signal_min64", "method, signal",
         f"TPR per method and payload signal, payloads >= {TARGET_MIN_PAYLOAD} B (marker: AI42 frame marker; "
         "text: text without marker; none: random bytes without marker)"),
        ("tpr_unsignalled_by_cover_min64", "method, cover",
         f"TPR of unsignalled payloads (random bytes, no marker) >= {TARGET_MIN_PAYLOAD} B in sample LSBs, "
         "per method and cover (photo: a crop of a bundled photograph; the others: procedural pictures)"),
        ("tpr_unsignalled_by_cover_z_min64", "method, cover structure",
         f"TPR of the same unsignalled payloads >= {TARGET_MIN_PAYLOAD} B per method and by how much LSB structure "
         "the payload overwrote (z: standard errors by which the cover's LSB flip ratio lay below 0.5, the ratio "
         "of noise, over the samples the frame replaced; near 0, random bits replaced what was already noise)"),
        ("tpr_unsignalled_by_structure_min64", "method, LSB structure",
         f"TPR of the same unsignalled payloads >= {TARGET_MIN_PAYLOAD} B per method and by where the cover's LSBs "
         f"were structured: the z above over the samples the frame replaced, and the same z over the rest of the "
         f"bit stream, measured on the file (smooth: z >= {COVER_Z_BUCKETS[0]:g}; noise-like: below)"),
    )
    for key, key_name, title in optional:
        if m.get(key):
            lines += _rate_table(title, m[key], key_name)
    lines += _rate_table("TPR per format", m["tpr_by_format"], "format")
    if m.get("gates"):
        lines += ["**Fusion gate weight per stream** (the `explanation` of each verdict: mean weight on clean and on "
                  "stego files, and the share of files whose largest weight is that stream's)", "",
                  "| stream | mean, clean | mean, stego | largest for |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {g['clean']:.3f} | {g['stego']:.3f} | {pct(g['largest'], 1)} |"
                  for name, g in m["gates"].items()]
        lines.append("")
    lines += _rate_table("TPR per payload size", m["tpr_by_payload"], "payload")
    lines += _rate_table("FPR per format (clean files)", m["fpr_by_format"], "format")
    if set(m.get("fpr_by_kind", {})) - {"?"}:
        lines += _rate_table("FPR per kind of clean file (hard negatives)", m["fpr_by_kind"], "kind")
    return lines


def render_confusion(confusion: dict[str, dict[str, int]]) -> list[str]:
    """A confusion matrix as a Markdown table (rows: truth, columns: prediction)."""
    classes = list(confusion)
    lines = ["| truth \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for t in classes:
        lines.append(f"| {t} | " + " | ".join(str(confusion[t][p]) for p in classes) + " |")
    return [*lines, ""]


def render_latency(latency: dict[str, Any]) -> list[str]:
    """Latency percentiles as a Markdown table."""
    lines = ["| stage | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|"]
    for stage, p in latency.items():
        cells = " | ".join("n/a" if p[k] is None else f"{p[k]:.2f}" for k in ("p50", "p95", "p99"))
        lines.append(f"| {stage.removesuffix('_ms')} | {cells} |")
    return [*lines, ""]


#: The issue's targets: FPR, its 95 % upper bound, per-method TPR at >= 64 B, method accuracy.
TARGETS = {"fpr": 0.0005, "fpr_upper95": 0.001, "tpr_min64": 0.995, "method_accuracy": 0.99}


def render_targets(m: dict[str, Any]) -> list[str]:
    """A table of the targets, the measured value and whether it is met (generated, never typed)."""

    def row(name: str, value: float | None, target: str, ok: bool | None) -> str:
        verdict = "n/a" if ok is None else ("met" if ok else "**not met**")
        return f"| {name} | {pct(value, 3)} | {target} | {verdict} |"

    lines = ["| target | measured | required | |", "|---|---:|---:|---|"]
    fpr = m["fpr"]
    if fpr["n"] and not m["stego"]:  # a real-image set: the target is no false positive at all
        lines.append(f"| false positives on {fpr['n']} clean files | {fpr['k']} | 0 | "
                     f"{'met' if fpr['k'] == 0 else '**not met**'} |")
    elif fpr["n"]:
        lines.append(row("false-positive rate", fpr["rate"], f"<= {pct(TARGETS['fpr'], 2)}",
                         fpr["rate"] <= TARGETS["fpr"]))
        lines.append(row("FPR, Wilson 95% upper bound", fpr["high"], f"<= {pct(TARGETS['fpr_upper95'], 2)}",
                         fpr["high"] <= TARGETS["fpr_upper95"]))
    for method, r in m["tpr_by_method_min64"].items():
        lines.append(row(f"TPR {method}, payloads >= {TARGET_MIN_PAYLOAD} B", r["rate"],
                         f">= {pct(TARGETS['tpr_min64'], 1)}", None if r["rate"] is None else r["rate"] >= TARGETS["tpr_min64"]))
    acc = m["method_accuracy"]
    if acc["n"]:
        lines.append(row("method accuracy on detected stego", acc["rate"], f">= {pct(TARGETS['method_accuracy'], 0)}",
                         acc["rate"] >= TARGETS["method_accuracy"]))
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown report for an evaluation (the model's metrics, confusion matrix, latency)."""
    meta = report["meta"]
    seed = f", built with seed {meta['corpus_seed']}" if meta.get("corpus_seed") is not None else ""
    lines = [
        f"Model `{meta['model']}` (sha256 `{meta['model_sha256'][:12]}…`), threshold {meta['threshold']:.4f}, "
        f"corpus `{meta['corpus']}` ({meta['files']} files{seed}), command `{meta['command']}`.",
        "",
    ]
    lines += ["**Targets**", ""]
    lines += render_targets(report["model"])
    if report.get("operating_points"):
        lines += render_operating_points(report["operating_points"], meta["threshold"], report["model"])
    lines += render_detector_markdown("model", report["model"])
    lines += ["**Confusion matrix** (unreadable files excluded)", ""]
    lines += render_confusion(report["model"]["confusion"])
    workers = meta.get("workers", 1)
    lines += [f"**Latency per file during this evaluation** (batches of 8, {workers} worker process"
              f"{'es' if workers > 1 else ''}, on a machine shared with other jobs; the single-file figures are "
              "under Latency and throughput)", ""]
    lines += render_latency(report["latency"])
    fps = report.get("false_positives", [])
    if fps:
        lines += ["**Clean files flagged (false positives)**", "", "| file | probability |", "|---|---:|"]
        lines += [f"| `{fp['path']}` | {fp['probability']:.4f} |" for fp in fps]
        lines.append("")
    if report.get("errors"):
        lines += ["**Unreadable files**", "", "| file | reason |", "|---|---|"]
        lines += [f"| `{e['path']}` | {e['reason']} |" for e in report["errors"]]
        lines.append("")
    return "\n".join(lines)


def render_files(report: dict[str, Any], stem: str) -> dict[str, str]:
    """Every Markdown file of a report, by file name (``<stem>.md``, ``-comparison``, ``-ablation``)."""
    files = {f"{stem}.md": render_markdown(report) + "\n"}
    if "baselines" in report:
        files[f"{stem}-comparison.md"] = render_comparison(report)
    if "ablation" in report:
        files[f"{stem}-ablation.md"] = render_ablation(report)
    return files


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str], stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and the Markdown files of :func:`render_files` into ``out_dir``.

    All of them or none (see :func:`v4runtime.bench.write_reports`): a full disk or a Ctrl-C while
    writing leaves the previous reports, never a cut-off one. Returns the JSON and main Markdown paths.

    Raises:
        EvaluationError: ``out_dir`` cannot be made or written (a file in the way, no permission).
    """
    from v4runtime.bench import write_reports
    from v4runtime.errors import ConfigError

    out = Path(out_dir)
    json_path = out / f"{stem}.json"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"cannot write the reports to {out}: {exc.strerror or exc} ({exc.filename})") from None
    files = {json_path: json.dumps(report, indent=2) + "\n"}  # key order = table order
    files.update({out / name: text for name, text in render_files(report, stem).items()})
    try:
        write_reports(files)
    except ConfigError as exc:
        raise EvaluationError(f"cannot write the reports to {out}: {exc}") from None
    return json_path, out / f"{stem}.md"


__all__ = [
    "EvaluationError",
    "evaluate",
    "render_ablation",
    "render_comparison",
    "Sample",
    "Verdict",
    "detection_metrics",
    "latency_metrics",
    "load_corpus",
    "payload_bucket",
    "percentiles",
    "rate",
    "render_files",
    "render_markdown",
    "wilson_interval",
    "write_report",
]


# -- running an evaluation -------------------------------------------------------------------------


def _model_verdicts(out: dict[str, np.ndarray], threshold: float) -> list[Verdict]:
    from v4runtime.streams.spec import OUTPUT_METHODS, OUTPUT_STEGO

    probs = np.asarray(out[OUTPUT_STEGO], dtype=np.float64).reshape(-1)
    methods = np.asarray(out[OUTPUT_METHODS]).reshape(len(probs), len(METHODS))
    tops = [METHODS[int(np.argmax(m))] for m in methods]
    return [
        Verdict(bool(p >= threshold), top if p >= threshold else None, float(p), top_method=top)
        for p, top in zip(probs, tops, strict=True)
    ]


_ChunkResult = tuple[list[Verdict], dict[str, list[Verdict]], dict[str, list[Verdict]],
                     list[dict[str, float]], list[dict[str, Any]], "SkippingCheck"]


@dataclass
class SkippingCheck:
    """The scanner's session (empty-stream encoders skipped) against the whole graph, file by file."""

    files: int = 0
    max_abs_diff: float = 0.0
    decisions_changed: int = 0

    def add(self, other: SkippingCheck) -> None:
        """Fold another chunk's check into this one."""
        self.files += other.files
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)
        self.decisions_changed += other.decisions_changed


class _EvalState:
    """One process' scanner and baselines; scores one chunk of files at a time."""

    def __init__(self, scanner: Any, baselines: bool, ablation: bool, ablation_stride: int = 1) -> None:
        from v4runtime.baselines import ChiSquareDetector, V3StyleDetector
        from v4runtime.scanner import create_session

        self.scanner, self.baselines, self.ablation = scanner, baselines, ablation
        self.ablation_stride = max(1, ablation_stride)
        self.detectors = {"V3-style": V3StyleDetector(), "chi-square": ChiSquareDetector()}
        # The whole graph, every encoder run: what the scanner's rewritten session must agree with.
        self.whole_graph = create_session(scanner.model_path, skip_empty_streams=False)

    def _check_skipping(self, ok: list[dict[str, np.ndarray]], verdicts: list[Verdict]) -> SkippingCheck:
        from v4runtime.streams.spec import OUTPUT_STEGO, stack_inputs

        if not ok or self.scanner.zero_streams:
            return SkippingCheck()
        whole = np.asarray(self.whole_graph.run([OUTPUT_STEGO], stack_inputs(ok))[0], np.float64).reshape(-1)
        skipped = np.asarray([v.probability for v in verdicts], np.float64)
        threshold = self.scanner.threshold
        return SkippingCheck(len(ok), float(np.abs(whole - skipped).max()),
                             int(((whole >= threshold) != (skipped >= threshold)).sum()))

    def run(self, item: tuple[int, list[str]]) -> _ChunkResult:
        from v4runtime.streams.spec import STREAM_NAMES

        index, paths = item
        scanner = self.scanner
        prepared = [scanner.prepare(p) for p in paths]
        scanner.infer(prepared, keep_arrays=True)
        ok = [p.arrays for p in prepared if p.arrays is not None]
        unreadable = Verdict(False, error="unreadable")
        abl: dict[str, list[Verdict]] = {}
        if self.ablation and index % self.ablation_stride == 0:
            for name in STREAM_NAMES:
                found = iter(_model_verdicts(scanner.run_model(ok, zero_streams={name}), scanner.threshold)
                             if ok else [])
                abl[name] = [next(found) if p.arrays is not None else unreadable for p in prepared]
        base: dict[str, list[Verdict]] = {k: [] for k in self.detectors} if self.baselines else {}
        c_model: list[Verdict] = []
        c_time: list[dict[str, float]] = []
        c_err: list[dict[str, Any]] = []
        for p in prepared:
            r = p.result
            if r.error is not None or p.arrays is None:
                c_model.append(Verdict(False, error=r.error))
                c_err.append({"path": r.path, "error": r.error, "reason": r.error_reason})
                for vs in base.values():
                    vs.append(Verdict(False, error=r.error))
                continue
            gates = tuple(r.explanation.values()) if r.explanation else None
            probabilities = r.method_probabilities
            top = max(probabilities, key=probabilities.__getitem__) if probabilities else None
            c_model.append(Verdict(r.is_stego, r.method, r.probability, gates=gates, top_method=top))
            c_time.append({**vars(r.timings), "total_ms": r.timings.total_ms})
            for key in base:
                flag, method, score = self.detectors[key].decide(p.arrays)
                base[key].append(Verdict(flag, method, score))
        check = self._check_skipping(ok, [v for v in c_model if v.error is None])
        for p in prepared:
            p.arrays = None
        return c_model, base, abl, c_time, c_err, check


_WORKER_STATE: _EvalState | None = None


def _eval_init(model_path: str, threshold: float, baselines: bool, ablation: bool, stride: int) -> None:
    from v4runtime.scanner import Scanner
    from v4runtime.workers import exit_with_parent, ignore_interrupts

    global _WORKER_STATE
    # Ctrl-C signals the terminal's whole process group: the parent stops the evaluation and shuts
    # the pool down; a worker interrupted on its own would only print a traceback.
    ignore_interrupts()
    exit_with_parent()
    _WORKER_STATE = _EvalState(Scanner(model=model_path, threshold=threshold), baselines, ablation, stride)


def _eval_chunk_in_worker(item: tuple[int, list[str]]) -> _ChunkResult:
    assert _WORKER_STATE is not None, "evaluation worker not initialised"
    return _WORKER_STATE.run(item)


@contextmanager
def _chunk_results(
    scanner: Any, items: list[tuple[int, list[str]]], workers: int, baselines: bool, ablation: bool, stride: int
) -> Iterator[Iterable[_ChunkResult]]:
    """The results of ``items``, in order: from ``workers`` processes when there is more than one chunk, else here.

    The pool is shut down when the block ends, however it ends (Ctrl-C included): nothing is left running.
    """
    from concurrent.futures import ProcessPoolExecutor

    from v4runtime.scanner import _mp_context
    from v4runtime.workers import signals_deferred

    if workers <= 1 or len(items) <= 1:
        state = _EvalState(scanner, baselines, ablation, stride)
        yield (state.run(item) for item in items)
        return
    # stream extraction holds the GIL: worker processes (one session each) scale, threads do not
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=_mp_context(), initializer=_eval_init,
        initargs=(str(scanner.model_path), scanner.threshold, baselines, ablation, stride),
    )
    try:
        with signals_deferred():  # map's first submit forks the workers: start them whole, SIGINT blocked
            results = pool.map(_eval_chunk_in_worker, items, chunksize=4)
        yield results
    finally:
        pool.shutdown(cancel_futures=True)


def evaluate(
    scanner: Any,
    samples: Sequence[Sample],
    *,
    baselines: bool = True,
    ablation: bool = True,
    workers: int = 1,
    batch_size: int = 8,
    progress: Any = None,
    root: str | os.PathLike[str] | None = None,
    ablation_stride: int = 1,
) -> dict[str, Any]:
    """Scan every sample once and score the model, the baselines and the stream ablation.

    Each file is read and turned into streams once; the same arrays feed the model, the model with
    each stream zeroed in turn (the ablation), and the baselines, so every detector is measured on
    exactly the same inputs.

    Args:
        scanner: a :class:`v4runtime.scanner.Scanner`.
        samples: the corpus (see :func:`load_corpus`).
        baselines: also score :class:`~v4runtime.baselines.V3StyleDetector` and
            :class:`~v4runtime.baselines.ChiSquareDetector`.
        ablation: also run the model with each stream zeroed.
        workers: worker processes (each with its own scanner, created once); 1 = this process.
        batch_size: files per inference call.
        progress: optional callable, called with the number of files finished in each batch.
        root: corpus folder; paths in the report's lists are made relative to it.
        ablation_stride: run the ablation on every n-th batch only (it costs eight more inferences
            per file); its deltas compare against the full model on the same files.

    Returns:
        ``{"model": metrics, "latency": ..., "baselines": {...}, "ablation": {...}, "errors": [...]}``.

    Raises:
        EvaluationError: ``workers`` or ``ablation_stride`` below 1.
    """
    from v4runtime.streams.spec import STREAM_NAMES

    if workers < 1:
        raise EvaluationError(f"--workers must be at least 1, got {workers}")
    if ablation_stride < 1:
        raise EvaluationError(f"--ablation-stride must be at least 1, got {ablation_stride}")
    model_v: list[Verdict] = []
    base_v: dict[str, list[Verdict]] = {"V3-style": [], "chi-square": []}
    abl_v: dict[str, list[Verdict]] = {name: [] for name in STREAM_NAMES}
    timings: list[dict[str, float]] = []
    errors: list[dict[str, Any]] = []
    chunks = [[s.path for s in samples[i : i + batch_size]] for i in range(0, len(samples), batch_size)]
    items = list(enumerate(chunks))
    abl_samples: list[Sample] = []
    abl_model: list[Verdict] = []
    skipping = SkippingCheck()
    with _chunk_results(scanner, items, workers, baselines, ablation, ablation_stride) as results:
        for (index, chunk), (c_model, base, abl, c_time, c_err, check) in zip(items, results, strict=True):
            skipping.add(check)
            if abl:
                start = index * batch_size
                abl_samples += samples[start : start + len(chunk)]
                abl_model += c_model
            model_v += c_model
            for key, vs in base.items():
                base_v[key] += vs
            for key, vs in abl.items():
                abl_v[key] += vs
            timings += c_time
            errors += c_err
            if progress is not None:
                progress(len(chunk))

    model_m = detection_metrics(samples, model_v)
    flagged_clean = [
        {"path": _rel(s.path, root), "probability": v.probability}
        for s, v in zip(samples, model_v, strict=True)
        if not s.is_stego and v.error is None and v.is_stego
    ]
    report: dict[str, Any] = {
        "model": model_m,
        "latency": latency_metrics(timings),
        "false_positives": flagged_clean[:MAX_LISTED],
        "errors": [{**e, "path": _rel(e["path"], root)} for e in errors[:MAX_LISTED]],
        "empty_stream_skipping": vars(skipping),
    }
    points = operating_points(samples, model_v, min_payload=TARGET_MIN_PAYLOAD, tpr_target=TARGETS["tpr_min64"])
    if points is not None:
        report["operating_points"] = points
    if baselines:
        report["baselines"] = {}
        for key, vs in base_v.items():
            m = detection_metrics(samples, vs)
            m["false_positives"] = [
                _rel(s.path, root) for s, v in zip(samples, vs, strict=True)
                if not s.is_stego and v.error is None and v.is_stego
            ][:MAX_LISTED]
            report["baselines"][key] = m
    if ablation:
        base_m = detection_metrics(abl_samples, abl_model)
        report["ablation"] = {}
        report["ablation_base"] = {"files": len(abl_samples), "stride": ablation_stride,
                                   "fpr": base_m["fpr"], "tpr": base_m["tpr"]}
        for name, vs in abl_v.items():
            m = detection_metrics(abl_samples, vs)
            report["ablation"][name] = {
                "fpr": m["fpr"],
                "tpr": m["tpr"],
                "delta_fpr_pp": _delta_pp(m["fpr"], base_m["fpr"]),
                "delta_tpr_pp": _delta_pp(m["tpr"], base_m["tpr"]),
            }
    return report


def _rel(path: str, root: str | os.PathLike[str] | None) -> str:
    if root is None:
        return path
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path


def _delta_pp(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a["rate"] is None or b["rate"] is None:
        return None
    return 100 * (a["rate"] - b["rate"])


def render_comparison(report: dict[str, Any]) -> str:
    """Markdown: the model beside the V3-style and chi-square baselines, same corpus."""
    detectors = {"V4 model": report["model"], **report.get("baselines", {})}
    has_stego = report["model"]["stego"] > 0
    if has_stego:
        lines = ["| detector | FPR (95% CI) | TPR (95% CI) | method accuracy |", "|---|---|---|---|"]
    else:
        lines = ["| detector | FPR (95% CI) |", "|---|---|"]
    for name, m in detectors.items():
        cells = [fmt_rate(m["fpr"], 3)]
        if has_stego:
            cells += [fmt_rate(m["tpr"]), pct(m["method_accuracy"]["rate"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if has_stego:
        lines += ["", f"**TPR per method, payloads >= {TARGET_MIN_PAYLOAD} B**", ""]
        methods = sorted({k for m in detectors.values() for k in m["tpr_by_method_min64"]})
        lines += ["| method | " + " | ".join(detectors) + " |", "|---|" + "---:|" * len(detectors)]
        for method in methods:
            cells = [pct(m["tpr_by_method_min64"].get(method, {}).get("rate")) for m in detectors.values()]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        kinds = sorted({k for m in detectors.values() for k in m.get("fpr_by_kind", {})} - {"?"})
        if kinds:
            lines += ["", "**FPR per kind of clean file**", ""]
            lines += ["| kind | " + " | ".join(detectors) + " |", "|---|" + "---:|" * len(detectors)]
            for kind in kinds:
                cells = []
                for m in detectors.values():
                    r = m.get("fpr_by_kind", {}).get(kind)
                    cells.append(f"{r['k']} / {r['n']}" if r else "n/a")
                lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines += ["", _comparison_reading(detectors)]
    else:
        lines += ["", "Clean files flagged by each baseline:", ""]
        for name, m in report.get("baselines", {}).items():
            names = ", ".join(f"`{p}`" for p in m.get("false_positives", [])) or "none"
            lines.append(f"- {name}: {names}")
    return "\n".join(lines) + "\n"


def _comparison_reading(detectors: dict[str, dict[str, Any]]) -> str:
    """One generated sentence per baseline: fewer/more false positives, higher/lower TPR than the model."""
    model = detectors["V4 model"]
    parts = []
    for name, m in detectors.items():
        if name == "V4 model":
            continue
        fp = "fewer" if model["fpr"]["k"] < m["fpr"]["k"] else "as many" if model["fpr"]["k"] == m["fpr"]["k"] else "more"
        tp = "higher" if model["tpr"]["k"] > m["tpr"]["k"] else "the same" if model["tpr"]["k"] == m["tpr"]["k"] else "lower"
        parts.append(f"compared with {name}, the V4 model has {fp} false positives ({model['fpr']['k']} vs "
                     f"{m['fpr']['k']}) and {tp} TPR ({pct(model['tpr']['rate'])} vs {pct(m['tpr']['rate'])})")
    return "On this corpus, " + "; ".join(parts) + "." if parts else ""


def render_ablation(report: dict[str, Any]) -> str:
    """Markdown: FPR and TPR with each stream zeroed, and the change against the full model."""
    base = report.get("ablation_base", report["model"])
    files = base.get("files", report["model"]["clean"] + report["model"]["stego"])
    stride = base.get("stride", 1)
    note = f"Measured on {files} files" + (f" (1 batch in {stride} of the corpus)" if stride > 1 else "") + "."
    lines = [
        note,
        "",
        "| stream zeroed | FPR | false positives | TPR | ΔFPR (pp) | ΔTPR (pp) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| none (full model) | {pct(base['fpr']['rate'], 3)} | {base['fpr']['k']} | {pct(base['tpr']['rate'])} "
        "| 0 | 0 |",
    ]
    for name, a in report.get("ablation", {}).items():
        d_fpr = "n/a" if a["delta_fpr_pp"] is None else f"{a['delta_fpr_pp']:+.3f}"
        d_tpr = "n/a" if a["delta_tpr_pp"] is None else f"{a['delta_tpr_pp']:+.2f}"
        lines.append(f"| {name} | {pct(a['fpr']['rate'], 3)} | {a['fpr']['k']} | {pct(a['tpr']['rate'])} "
                     f"| {d_fpr} | {d_tpr} |")
    idle = [name for name, a in report.get("ablation", {}).items()
            if a["fpr"]["k"] == base["fpr"]["k"] and a["tpr"]["k"] == base["tpr"]["k"]]
    if idle:
        lines += ["", "Zeroing " + ", ".join(f"`{n}`" for n in idle) + " changes no decision on these files: on this "
                  "corpus the model does not rely on " + ("that stream." if len(idle) == 1 else "those streams.")]
    lines += _skipping_lines(report.get("empty_stream_skipping"))
    return "\n".join(lines) + "\n"


def _skipping_lines(check: dict[str, Any] | None) -> list[str]:
    """The check that skipping the encoders of all-zero streams changes nothing, in words."""
    if not check or not check.get("files"):
        return []
    return ["", f"The scanner skips the encoders of all-zero streams; the whole graph, run beside it on all "
            f"{check['files']} readable files, differs from it by at most {check['max_abs_diff']:.1e} in stego "
            f"probability and changes {check['decisions_changed']} decisions."]


def card_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a report, as stored in a model card's ``metrics``."""
    m = report["model"]
    out: dict[str, Any] = {
        "files": report["meta"]["files"],
        "clean": m["clean"],
        "stego": m["stego"],
        "unreadable": sum(m["errors"].values()),
        "fpr": m["fpr"]["rate"],
        "fpr_upper95": m["fpr"]["high"],
        "false_positives": m["fpr"]["k"],
        "tpr": m["tpr"]["rate"],
        "method_accuracy": m["method_accuracy"]["rate"],
        "tpr_min64": {k: v["rate"] for k, v in m["tpr_by_method_min64"].items()},
    }
    for key in ("corpus_seed", "manifest_sha256"):
        if report["meta"].get(key) is not None:
            out[key] = report["meta"][key]
    # no latency here: evaluation runs share the machine; `v4runtime bench scan` is the latency figure
    return out


def update_card(scanner: Any, report: dict[str, Any], key: str) -> Path:
    """Store :func:`card_metrics` under ``metrics[key]`` in the scanner model's card; returns its path.

    The ONNX file is untouched, so its sha256 (checked against the card) still matches.
    """
    from v4runtime.model.card import card_path, read_card, write_card

    path = card_path(scanner.model_path)
    card = read_card(path)
    card.metrics[key] = card_metrics(report)
    return write_card(card, path)
