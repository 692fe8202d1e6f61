"""Choosing which variant to deploy: INT8 only when it is both safe and faster here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from v4runtime.quantization.host import HostFeatures


def choose_variant(gate_report: Mapping[str, Any], host: HostFeatures) -> tuple[str, str]:
    """Pick ``"int8"`` or ``"fp32"`` and say why in one line.

    INT8 is chosen only when the gate passed AND the INT8 model measured faster than FP32 in the
    gate's own run on this host (latency ratio below 1). Everything else falls back to FP32.

    Args:
        gate_report: The gate report (``GateReport.as_dict()`` or the JSON written by
            ``v4runtime verify-quant --report``).
        host: This host's CPU features (``host_features()``).

    Returns:
        ``(variant, reason)``.
    """
    vnni = "with VNNI" if host.vnni else "without VNNI"
    if not gate_report.get("passed", False):
        failed = ", ".join(c["name"] for c in gate_report.get("checks", []) if not c.get("passed")) or "unknown"
        return "fp32", f"fp32: the INT8 gate failed ({failed})"
    latency = gate_report.get("latency") or {}
    ratio = latency.get("ratio")
    if ratio is None:
        return "fp32", "fp32: the gate report has no latency measurement, so INT8 is not known to be faster"
    measured_on = gate_report.get("host") or {}
    report_host = measured_on.get("cpu_model")
    if report_host and host.cpu_model and report_host != host.cpu_model:
        return "fp32", f"fp32: latency was measured on {report_host!r}, not on this CPU ({host.cpu_model!r})"
    # A generic model name ("AMD EPYC") covers several generations: compare family/model where both say.
    report_id = measured_on.get("cpu_id")
    if report_id and host.cpu_id and report_id != host.cpu_id:
        return "fp32", (f"fp32: latency was measured on {report_host or 'a CPU'} {report_id}, not on this CPU "
                        f"({host.cpu_model or 'unnamed'} {host.cpu_id})")
    if ratio < 1.0:
        return "int8", f"int8: gate passed and INT8 took {ratio:.2f}x the FP32 time on this CPU ({vnni})"
    return "fp32", f"fp32: gate passed but INT8 took {ratio:.2f}x the FP32 time on this CPU ({vnni})"
