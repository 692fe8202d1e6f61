"""Markdown rendering of the gate report, for the deployment guide and for humans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(pair: list[float], digits: int = 2) -> str:
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def render_markdown(report: Mapping[str, Any], *, title: str = "INT8 gate report") -> str:
    """Render a gate report (``GateReport.as_dict()`` or its JSON) as a Markdown fragment.

    Args:
        report: The report.
        title: Heading text (rendered as a bold line so the fragment can sit under any heading).

    Returns:
        Markdown text ending with a newline.
    """
    verdict = "PASSED" if report["passed"] else "FAILED"
    images = report["images"]
    lines = [
        f"**{title}: {verdict}** on {images['total']} images ({images['clean']} clean, "
        f"{images['stego']} stego), threshold {report['threshold']:.3f}.",
        "",
        "| Check | Value | Limit | Result |",
        "|---|---|---|---|",
    ]
    for check in report["checks"]:
        result = "pass" if check["passed"] else "**FAIL**"
        lines.append(f"| `{check['name']}` | {check['value']:.3f} | {check['op']} {check['limit']:g} | {result} |")
    fpr = report["fpr"]
    lines += [
        "",
        "| Rate | FP32 % | INT8 % | Δ pp (95% CI) | n |",
        "|---|---|---|---|---|",
        f"| FPR (clean) | {_fmt(fpr['fp32_pct'])} | {_fmt(fpr['int8_pct'])} | "
        f"{fpr['delta_pp']:+.2f} {_interval(fpr['delta_ci95_pp'])} | {fpr['n']} |",
    ]
    for method, rates in report["tpr"].items():
        lines.append(
            f"| TPR `{method}` | {_fmt(rates['fp32_pct'])} | {_fmt(rates['int8_pct'])} | "
            f"{rates['delta_pp']:+.2f} {_interval(rates['delta_ci95_pp'])} | {rates['n']} |"
        )
    size, latency, host = report["size"], report["latency"], report["host"]
    vnni = "has VNNI" if host["vnni"] else "has no VNNI"
    flags = ", ".join(host["flags"]) or "none found"
    lines += [
        "",
        f"- Decision agreement: {report['agreement_pct']:.2f}%; largest stego-probability difference "
        f"{report['probability']['max_abs_diff']:.4f} (mean {report['probability']['mean_abs_diff']:.4f}).",
        f"- Size: FP32 {size['fp32_bytes']:,} bytes, INT8 {size['int8_bytes']:,} bytes: "
        f"**{size['ratio']:.2f}x smaller**"
        + (
            f" (initializers alone: {size['fp32_initializer_bytes']:,} -> {size['int8_initializer_bytes']:,} bytes, "
            f"{size['fp32_initializer_bytes'] / size['int8_initializer_bytes']:.2f}x; the rest is graph structure)."
            if size.get("int8_initializer_bytes")
            else "."
        ),
        f"- Latency ({latency['what']}; {latency['threads']} thread; median over images of the best of "
        f"{latency['repeats']} runs): FP32 {latency['fp32_median_ms']:.3f} ms, INT8 {latency['int8_median_ms']:.3f} ms: "
        f"**INT8/FP32 = {latency['ratio']:.2f}**.",
        f"- Host: {host['cpu_model'] or host['machine']} ({vnni}; flags: {flags}).",
        f"- Variant choice on this host: {report['variant'].get('reason', 'n/a')}.",
    ]
    quant = report.get("quantization") or {}
    if quant:
        lines.append(
            f"- Quantisation: {quant.get('format')} {quant.get('activation_type')}/{quant.get('weight_type')}, "
            f"per-channel {quant.get('per_channel')}, reduce-range {quant.get('reduce_range')}, "
            f"calibration {quant.get('calibration_method')} on {quant.get('calibration_images')} images "
            f"({quant.get('calibration_clean')} clean, {quant.get('calibration_stego')} stego), "
            f"excluded nodes {quant.get('excluded_nodes')}."
        )
    if report.get("worst_layers"):
        lines += ["", "Layers losing the most (lowest SQNR first):", "", "| Node | Op | SQNR dB |", "|---|---|---|"]
        for layer in report["worst_layers"]:
            if layer.get("node") is None:
                lines.append(f"| n/a | | {layer.get('error', '')} |")
            else:
                lines.append(f"| `{layer['node']}` | {layer['op_type']} | {layer['sqnr_db']:.1f} |")
    return "\n".join(lines) + "\n"
