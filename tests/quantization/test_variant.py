"""Host features and the INT8/FP32 choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from v4runtime.quantization import HostFeatures, choose_variant, host_features

CPUINFO = """processor\t: 0
model name\t: Example CPU
flags\t\t: fpu sse2 avx2 {extra}
"""


@pytest.mark.parametrize("extra, vnni", [("avx512f avx512_vnni", True), ("avx_vnni", True), ("avx512f", False)])
def test_host_features_reads_vnni_flags(tmp_path: Path, extra: str, vnni: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    host = host_features(cpuinfo)
    assert host.vnni is vnni
    assert host.cpu_model == "Example CPU"
    assert "avx2" in host.flags


def test_host_features_without_cpuinfo(tmp_path: Path) -> None:
    host = host_features(tmp_path / "missing")
    assert host.flags == () and host.vnni is False


def _report(passed: bool, ratio: float | None, cpu: str = "Example CPU") -> dict:
    return {
        "passed": passed,
        "checks": [{"name": "delta_fpr_pp", "passed": passed}],
        "latency": {} if ratio is None else {"ratio": ratio},
        "host": {"cpu_model": cpu},
    }


HOST = HostFeatures(machine="x86_64", cpu_model="Example CPU", flags=("avx2",), vnni=False)


def test_int8_only_when_gate_passed_and_faster() -> None:
    variant, reason = choose_variant(_report(True, 0.6), HOST)
    assert variant == "int8" and "0.60x" in reason
    variant, reason = choose_variant(_report(True, 1.3), HOST)
    assert variant == "fp32" and "without VNNI" in reason and "1.30x" in reason
    variant, reason = choose_variant(_report(False, 0.5), HOST)
    assert variant == "fp32" and "gate failed (delta_fpr_pp)" in reason
    assert choose_variant(_report(True, None), HOST)[0] == "fp32"
    variant, reason = choose_variant(_report(True, 0.5, cpu="Other CPU"), HOST)
    assert variant == "fp32" and "Other CPU" in reason
    assert "\n" not in reason
