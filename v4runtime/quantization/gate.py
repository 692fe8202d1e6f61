"""The INT8 gate: run the FP32 and INT8 detectors on the same images and compare their decisions.

The gate is what off-the-shelf quantisation tooling lacks: it accepts an INT8 model only if it does
not raise the false-positive rate (default tolerance +0.01 percentage points), does not lower the
true-positive rate of any embedding method by more than 0.1 pp, and agrees with FP32 on at least
99.9% of decisions. It also measures, in the same run on this CPU, the INT8/FP32 latency ratio that
``choose_variant`` uses.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from v4runtime.errors import QuantizationError
from v4runtime.quantization.feeds import Feeds, check_model_inputs, image_feeds, locate_model
from v4runtime.quantization.host import host_features
from v4runtime.quantization.labels import load_image_set, require_both_classes
from v4runtime.quantization.quantize import (
    preprocess,
    read_quantization_metadata,
    select_balanced,
    sha256_file,
)
from v4runtime.quantization.stats import paired_difference_interval, wilson_interval
from v4runtime.quantization.variant import choose_variant
from v4runtime.streams.spec import METHODS, OUTPUT_STEGO

#: Images the SQNR analysis of a failed gate runs (disagreeing images first).
DEBUG_SAMPLES = 8


@dataclass(frozen=True)
class Tolerances:
    """What the gate accepts.

    The checks compare point estimates on the verification images; the report adds each
    difference's 95% interval, which shows how small a change the corpus could resolve.

    Attributes:
        max_dfpr_pp: Largest allowed FPR increase, in percentage points.
        min_dtpr_pp: Smallest allowed TPR change per method, in percentage points (negative = loss).
        min_agreement_pct: Smallest allowed decision agreement, in percent.
    """

    max_dfpr_pp: float = 0.01
    min_dtpr_pp: float = -0.1
    min_agreement_pct: float = 99.9


@dataclass
class GateReport:
    """Everything the gate measured; ``as_dict()`` is the JSON report.

    Attributes:
        passed: True when every check passed.
        checks: One entry per check: name, value, limit, comparison, passed.
        images: Counts of images (total, clean, stego, per method).
        threshold: Decision threshold on the stego probability.
        agreement_pct: Share of images where FP32 and INT8 decide the same.
        fpr: FPR of each model (percent, Wilson 95% interval) and the paired difference in pp.
        tpr: Per method: TPR of each model and the paired difference in pp.
        probability: Largest and mean absolute stego-probability difference.
        size: File sizes and the FP32/INT8 ratio.
        latency: Median/p95 inference milliseconds per image for each model, and INT8/FP32 ratio.
        host: CPU features of the host that measured the latency.
        variant: ``choose_variant`` on this report and host: variant and reason.
        quantization: The INT8 model's quantisation metadata.
        worst_layers: On failure, the layers with the lowest SQNR (worst first).
        models: Paths and sha256 of both models.
    """

    passed: bool
    checks: list[dict]
    images: dict
    threshold: float
    agreement_pct: float
    fpr: dict
    tpr: dict
    probability: dict
    size: dict
    latency: dict
    host: dict
    variant: dict = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)
    worst_layers: list[dict] = field(default_factory=list)
    models: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The report as a JSON-ready dict."""
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        """Write the report as indented JSON.

        Raises:
            QuantizationError: the file or its folder cannot be written.
        """
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise QuantizationError(f"cannot write the report {path}: {exc.strerror or exc}") from None


def _session(path: Path):
    """A single-threaded session from the scanner's factory (the one place sessions are made).

    One thread: per-image latency, not parallel speed-up, is what the ratio compares.
    """
    from v4runtime.scanner import create_session

    return create_session(path, intra_op_threads=1)


def _timed_probability(session, feeds: Feeds, repeats: int) -> tuple[float, float]:
    """Run a session ``repeats`` times; return (stego probability, fastest run in ms)."""
    best = float("inf")
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = session.run([OUTPUT_STEGO], feeds)
        best = min(best, time.perf_counter() - start)
    return float(np.asarray(out[0]).reshape(-1)[0]), best * 1000.0


def default_threshold(model: Path) -> tuple[float, str]:
    """The decision threshold from the model card beside the model, else 0.5."""
    card = model.with_name(model.name.removesuffix(".onnx") + ".card.json")
    if card.is_file():
        try:
            value = json.loads(card.read_text(encoding="utf-8")).get("threshold")
        except (OSError, json.JSONDecodeError, AttributeError):
            value = None
        if isinstance(value, int | float):
            return float(value), f"model card {card.name}"
    return 0.5, "default 0.5"


def _rates(first: np.ndarray, second: np.ndarray) -> dict:
    """Rates of two paired decision vectors (percent) and their paired difference (pp)."""
    n = int(first.size)
    both = int(np.sum(first & second))
    only_first = int(np.sum(first & ~second))
    only_second = int(np.sum(~first & second))
    neither = n - both - only_first - only_second
    delta, low, high = paired_difference_interval(both, only_first, only_second, neither)
    k8, k32 = both + only_first, both + only_second
    return {
        "n": n,
        "int8_pct": 100.0 * k8 / n if n else None,
        "fp32_pct": 100.0 * k32 / n if n else None,
        "int8_ci95_pct": [100.0 * x for x in wilson_interval(k8, n)],
        "fp32_ci95_pct": [100.0 * x for x in wilson_interval(k32, n)],
        "delta_pp": 100.0 * delta if n else 0.0,
        "delta_ci95_pp": [100.0 * low, 100.0 * high],
        "only_int8": only_first,
        "only_fp32": only_second,
    }


def _initializer_bytes(model: Path) -> int:
    """Bytes of a model's initializers (weights, biases, scales): the part quantisation shrinks.

    The rest of the file (graph structure, names, QDQ nodes) does not shrink, and in QDQ format
    grows, so on a small model the file ratio stays well below 4.
    """
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    return sum(len(t.SerializeToString()) for t in proto.graph.initializer)


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _check_arguments(tolerances: Tolerances, threshold: float | None, max_images: int | None, repeats: int,
                     worst_k: int) -> None:
    """Refuse settings the gate cannot mean (before any model is loaded)."""
    rules = [
        (math.isfinite(tolerances.max_dfpr_pp), f"--max-dfpr-pp must be a number, got {tolerances.max_dfpr_pp}"),
        (math.isfinite(tolerances.min_dtpr_pp), f"--min-dtpr-pp must be a number, got {tolerances.min_dtpr_pp}"),
        (math.isfinite(tolerances.min_agreement_pct),
         f"--min-agreement must be a number, got {tolerances.min_agreement_pct}"),
        (threshold is None or 0.0 <= threshold <= 1.0, f"--threshold must be within [0, 1], got {threshold}"),
        (max_images is None or max_images >= 2, f"--max-images must be at least 2, got {max_images}"),
        (repeats >= 1, f"--repeats must be at least 1, got {repeats}"),
        (worst_k >= 0, f"--worst must be >= 0, got {worst_k}"),
    ]
    for ok, message in rules:
        if not ok:
            raise QuantizationError(message)


def verify_quantization(
    fp32: str | Path,
    int8: str | Path,
    data: str | Path,
    *,
    tolerances: Tolerances | None = None,
    threshold: float | None = None,
    max_images: int | None = None,
    repeats: int = 3,
    worst_k: int = 5,
) -> GateReport:
    """Run the gate: both models on the same labelled images, compared check by check.

    Args:
        fp32: The FP32 detector (a path, or a shipped model's name such as ``v4-default``).
        int8: Its INT8 quantisation (a path or a name).
        data: Folder of clean and stego images with ``manifest.jsonl``.
        tolerances: Gate limits (defaults: ΔFPR <= +0.01 pp, ΔTPR >= -0.1 pp, agreement >= 99.9%).
        threshold: Decision threshold; None reads it from the model card beside ``fp32`` (else 0.5).
        max_images: Use at most this many images (evenly spread, both classes kept); None for all.
        repeats: Timed runs per image and model (the fastest counts).
        worst_k: On failure, how many lowest-SQNR layers to name.

    Returns:
        The report; ``report.passed`` says whether the INT8 model may be deployed.

    Raises:
        QuantizationError: A model has the wrong inputs or does not load, the folder is unusable or
            not labelled, holds one class only, an image cannot be read, or a setting is out of range
            (threshold outside [0, 1], fewer than 2 images, fewer than 1 repeat, negative ``worst_k``).
    """
    tolerances = tolerances or Tolerances()
    _check_arguments(tolerances, threshold, max_images, repeats, worst_k)
    names = {"fp32": str(fp32), "int8": str(int8)}
    fp32, int8 = locate_model(fp32), locate_model(int8)
    check_model_inputs(fp32)
    check_model_inputs(int8)
    image_set = load_image_set(data)
    require_both_classes(image_set, purpose="verification")
    images = select_balanced(image_set.images, max_images) if max_images else list(image_set.images)
    if threshold is None:
        threshold, threshold_source = default_threshold(fp32)
    else:
        threshold_source = "--threshold"
    s32, s8 = _session(fp32), _session(int8)

    p32, p8, t32, t8 = [], [], [], []
    for index, image in enumerate(images):
        feeds = image_feeds(image.path)
        if index == 0:  # warm both sessions up before timing anything
            _timed_probability(s32, feeds, 2)
            _timed_probability(s8, feeds, 2)
        # Alternate which model runs first so cache warmth does not favour one of them.
        order = ((s32, p32, t32), (s8, p8, t8)) if index % 2 == 0 else ((s8, p8, t8), (s32, p32, t32))
        for session, probs, times in order:
            prob, ms = _timed_probability(session, feeds, repeats)
            probs.append(prob)
            times.append(ms)

    prob32, prob8 = np.asarray(p32), np.asarray(p8)
    d32, d8 = prob32 >= threshold, prob8 >= threshold
    stego = np.asarray([im.is_stego is True for im in images])
    methods = np.asarray([im.method or "" for im in images])
    agreement = 100.0 * float(np.mean(d32 == d8))
    fpr = _rates(d8[~stego], d32[~stego])
    tpr = {m: _rates(d8[stego & (methods == m)], d32[stego & (methods == m)]) for m in METHODS}
    tpr = {m: r for m, r in tpr.items() if r["n"]}
    other = stego & ~np.isin(methods, METHODS)
    if other.any():
        tpr["unspecified"] = _rates(d8[other], d32[other])
    diff = np.abs(prob8 - prob32)

    checks = [
        {"name": "agreement_pct", "value": agreement, "limit": tolerances.min_agreement_pct, "op": ">="},
        {"name": "delta_fpr_pp", "value": fpr["delta_pp"], "limit": tolerances.max_dfpr_pp, "op": "<="},
    ]
    checks += [
        {"name": f"delta_tpr_pp[{m}]", "value": r["delta_pp"], "limit": tolerances.min_dtpr_pp, "op": ">="}
        for m, r in tpr.items()
    ]
    for check in checks:
        value, limit = check["value"], check["limit"]
        check["passed"] = bool(value >= limit - 1e-9 if check["op"] == ">=" else value <= limit + 1e-9)
    passed = all(c["passed"] for c in checks)

    fp32_bytes, int8_bytes = fp32.stat().st_size, int8.stat().st_size
    med32, med8 = statistics.median(t32), statistics.median(t8)
    host = host_features()
    report = GateReport(
        passed=passed,
        checks=checks,
        images={
            "total": len(images),
            "clean": int((~stego).sum()),
            "stego": int(stego.sum()),
            "per_method": {m: r["n"] for m, r in tpr.items()},
            "folder": str(image_set.root),
            "manifest_sha256": sha256_file(image_set.root / "manifest.jsonl"),
        },
        threshold=float(threshold),
        agreement_pct=agreement,
        fpr=fpr,
        tpr=tpr,
        probability={"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())},
        size={
            "fp32_bytes": fp32_bytes,
            "int8_bytes": int8_bytes,
            "ratio": fp32_bytes / int8_bytes,
            "fp32_initializer_bytes": _initializer_bytes(fp32),
            "int8_initializer_bytes": _initializer_bytes(int8),
        },
        latency={
            "fp32_median_ms": med32,
            "int8_median_ms": med8,
            "fp32_p95_ms": _percentile(t32, 95),
            "int8_p95_ms": _percentile(t8, 95),
            "ratio": med8 / med32,
            "threads": 1,
            "repeats": repeats,
            "what": "inference only; streams extracted once and fed to both models",
        },
        host=host.as_dict(),
        quantization=read_quantization_metadata(int8),
        models={**names, "threshold_source": threshold_source},
    )
    report.models.update(fp32_sha256=sha256_file(fp32), int8_sha256=sha256_file(int8))
    variant, reason = choose_variant(report.as_dict(), host)
    report.variant = {"choice": variant, "reason": reason}
    if not passed and worst_k > 0:
        disagree = [images[i].path for i in np.flatnonzero(d32 != d8)]
        rest = [im.path for im in images if im.path not in set(disagree)]
        report.worst_layers = worst_layers(fp32, int8, (disagree + rest)[:DEBUG_SAMPLES], worst_k)
    return report


def worst_layers(fp32: Path, int8: Path, samples: Sequence[Path], k: int) -> list[dict]:
    """Name the ``k`` layers of an INT8 model with the lowest SQNR against its FP32 source.

    The FP32 model is pre-processed again (deterministically) so tensor names match the INT8 graph.
    When the graphs cannot be matched (for example an INT8 model made by another tool) the list holds
    one entry with ``node`` None and the reason; the gate verdict never depends on this analysis.
    """
    from v4runtime.quantization.layer_loss import layer_losses

    with tempfile.TemporaryDirectory(prefix="v4-gate-") as tmp:
        pre = Path(tmp) / "fp32.pre.onnx"
        try:
            preprocess(fp32, pre)
            return [loss.as_dict() for loss in layer_losses(pre, int8, samples, top=k)]
        except QuantizationError:
            raise
        except Exception as exc:  # the debugging utilities assert on graphs they cannot match
            return [{"node": None, "error": f"SQNR analysis unavailable: {exc}"}]
