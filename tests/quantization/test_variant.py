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


def test_same_generic_name_but_another_cpu_generation_is_fp32() -> None:
    zen4 = {**_report(True, 0.6, cpu="AMD EPYC"), "host": {"cpu_model": "AMD EPYC", "cpu_id": "family 25 model 17 stepping 1"}}
    zen5 = HostFeatures(machine="x86_64", cpu_model="AMD EPYC", flags=("avx2",), vnni=True,
                        cpu_id="family 26 model 2 stepping 1")
    variant, reason = choose_variant(zen4, zen5)
    assert variant == "fp32" and "family 25 model 17" in reason and "family 26 model 2" in reason
    assert choose_variant(zen4, HostFeatures("x86_64", "AMD EPYC", ("avx2",), True, "family 25 model 17 stepping 1"))[0] == "int8"
    # a report or host that does not say (older reports, non-x86) falls back to the model name alone
    assert choose_variant({**zen4, "host": {"cpu_model": "AMD EPYC"}}, zen5)[0] == "int8"
    assert choose_variant(zen4, HostFeatures("x86_64", "AMD EPYC", ("avx2",), True))[0] == "int8"


def test_host_features_reads_the_cpu_generation(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nstepping\t: 1\n"
                       "flags\t\t: avx2\n\nprocessor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\nmodel name\t: AMD EPYC\n")
    host = host_features(cpuinfo)
    assert host.cpu_model == "AMD EPYC" and host.cpu_id == "family 26 model 2 stepping 1"
    cpuinfo.write_text(CPUINFO.format(extra=""))  # no family line (e.g. ARM): unknown, not guessed
    assert host_features(cpuinfo).cpu_id == ""


def test_cpu_name_adds_the_generation_only_where_recorded() -> None:
    from v4runtime.quantization.host import cpu_name

    assert cpu_name({"cpu_model": "AMD EPYC", "cpu_id": "family 26 model 2 stepping 1"}) == \
        "AMD EPYC family 26 model 2 stepping 1"
    assert cpu_name({"cpu_model": "AMD EPYC", "cpu_id": ""}) == cpu_name({"cpu_model": "AMD EPYC"}) == "AMD EPYC"
