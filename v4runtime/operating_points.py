"""The model's scores at other thresholds than the card's: what a TPR target would cost in FPR.

An evaluation reports one operating point, the card's threshold. The same probabilities answer
the planning questions around it: at a given false-positive rate on this corpus, which TPR per
method (payloads >= 64 B) would the model give, and how many clean files would each method's
TPR target flag, and how many of those the model names that method for (what a threshold applied
only to the files named that method would flag instead). Computed from the evaluation's own
verdicts; no rescan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from v4runtime.evaluation import Sample, Verdict

#: False-positive rates on the corpus's clean files at which the TPR is reported.
FPR_LEVELS = (0.0001, 0.0005, 0.001, 0.005, 0.01)


def threshold_for_fpr(clean: np.ndarray, fpr: float) -> float:
    """The lowest threshold that flags at most ``floor(fpr * n)`` of the clean scores (``p >= t`` flags).

    Just above the (k+1)-th highest clean score; 0.0 when every clean file may be flagged.
    """
    allowed = math.floor(fpr * len(clean) + 1e-9)
    if allowed >= len(clean):
        return 0.0
    ranked = np.sort(clean)[::-1]
    return float(np.nextafter(ranked[allowed], np.inf))


def threshold_for_tpr(stego: np.ndarray, tpr: float) -> float | None:
    """The highest threshold that still detects a share ``tpr`` of the stego scores; None without any."""
    if len(stego) == 0:
        return None
    missed = math.floor((1 - tpr) * len(stego) + 1e-9)
    return float(np.sort(stego)[missed])


def _scores(samples: Sequence[Sample], verdicts: Sequence[Verdict], min_payload: int
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
    """Clean scores, the method the model names for each clean file, and stego scores per method
    (payloads >= ``min_payload``); None when a verdict has no probability (a rule-based baseline)."""
    clean: list[float] = []
    named: list[str] = []
    stego: dict[str, list[float]] = {}
    for s, v in zip(samples, verdicts, strict=True):
        if v.error is not None:
            continue
        if v.probability is None:
            return None
        if not s.is_stego:
            clean.append(v.probability)
            named.append(v.top_method or "")
        elif s.payload_size is not None and s.payload_size >= min_payload:
            stego.setdefault(s.method or "?", []).append(v.probability)
    return (np.asarray(clean, dtype=np.float64), np.asarray(named, dtype=object),
            {m: np.asarray(p, dtype=np.float64) for m, p in sorted(stego.items())})


def operating_points(samples: Sequence[Sample], verdicts: Sequence[Verdict], *, min_payload: int,
                     tpr_target: float, fpr_levels: Sequence[float] = FPR_LEVELS) -> dict[str, Any] | None:
    """TPR per method at ``fpr_levels``, and the threshold and FPR each method's ``tpr_target`` needs.

    None when the corpus has no clean files or no stego files at ``min_payload`` bytes or more, or
    when the verdicts carry no probabilities.
    """
    from v4runtime.evaluation import rate

    scores = _scores(samples, verdicts, min_payload)
    if scores is None:
        return None
    clean, named, stego = scores
    if len(clean) == 0 or not stego:
        return None

    def at(threshold: float) -> dict[str, Any]:
        return {"threshold": threshold,
                "fpr": rate(int(np.count_nonzero(clean >= threshold)), len(clean)),
                "tpr_min64": {m: rate(int(np.count_nonzero(p >= threshold)), len(p)) for m, p in stego.items()}}

    levels = [{"fpr_level": level, **at(threshold_for_fpr(clean, level))} for level in fpr_levels]
    needed = {}
    for method, p in stego.items():
        threshold = threshold_for_tpr(p, tpr_target)
        assert threshold is not None  # every method listed has scores
        flagged = clean >= threshold
        needed[method] = {"threshold": threshold, "tpr": rate(int(np.count_nonzero(p >= threshold)), len(p)),
                          "fpr": rate(int(np.count_nonzero(flagged)), len(clean)),
                          "fpr_named": rate(int(np.count_nonzero(flagged & (named == method))), len(clean))}
    return {"tpr_target": tpr_target, "min_payload": min_payload, "levels": levels, "tpr_target_needs": needed}


def render(points: dict[str, Any], card_threshold: float, card: dict[str, Any]) -> list[str]:
    """Markdown lines: the TPR per method at each FPR level (the card's threshold first), then the
    threshold and FPR each method's TPR target needs. ``card`` is the model's metrics at its threshold."""
    from v4runtime.evaluation import pct

    methods = list(points["tpr_target_needs"])
    bytes_ = points["min_payload"]
    lines = [f"**Operating points** (the same scores at other thresholds: for each false-positive rate on this "
             f"corpus's clean files, the lowest threshold that keeps to it and the TPR per method at payloads >= "
             f"{bytes_} B it would give)", "",
             "| clean files flagged | threshold | " + " | ".join(methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]

    def row(label: str, threshold: float, tprs: dict[str, Any]) -> str:
        cells = " | ".join(pct(tprs[m]["rate"]) if m in tprs else "n/a" for m in methods)
        return f"| {label} | {threshold:.4f} | {cells} |"

    fpr = card["fpr"]
    lines.append(row(f"{fpr['k']} ({pct(fpr['rate'], 3)}): the card's threshold", card_threshold,
                     card["tpr_by_method_min64"]))
    for level in points["levels"]:
        r = level["fpr"]
        lines.append(row(f"{r['k']} ({pct(r['rate'], 3)}), at most {pct(level['fpr_level'], 2)}",
                         level["threshold"], level["tpr_min64"]))
    lines += ["", f"**Threshold each method would need for TPR >= {pct(points['tpr_target'], 1)} at payloads >= "
              f"{bytes_} B**, and the clean files of this corpus it would flag (any file scoring at or above it)",
              "", "| method | threshold | TPR | clean files flagged | FPR (95% CI) | of them named this method | "
              "flagged with it for this method only |", "|---|---:|---:|---:|---|---:|---:|"]
    card_flagged = (card.get("confusion") or {}).get("clean", {})  # clean files the card's threshold flags, per method
    for method, need in points["tpr_target_needs"].items():
        r = need["fpr"]
        named = need.get("fpr_named")
        if named is None:
            per_method = "n/a"
        else:
            k = named["k"] + sum(v for m, v in card_flagged.items() if m not in ("clean", method))
            per_method = f"{k} ({pct(k / named['n'], 3)})"
        lines.append(f"| {method} | {need['threshold']:.4f} | {pct(need['tpr']['rate'])} | {r['k']} / {r['n']} | "
                     f"{pct(r['rate'], 3)} ({pct(r['low'], 3)}-{pct(r['high'], 3)}) | "
                     f"{'n/a' if named is None else named['k']} | {per_method} |")
    lines += ["", "*Of them named this method*: the clean files at or above that threshold whose most likely "
              "method (the model's method head) is this one. *Flagged with it for this method only*: the clean "
              "files a per-method rule would flag, that threshold for the files named this method and the card's "
              "for the others (those named this method, plus the card's false positives named another method)."]
    return [*lines, ""]
