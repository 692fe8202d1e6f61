"""What this host's CPU offers for INT8 inference.

INT8 is only worth shipping where it is faster. x86-64 CPUs with VNNI (AVX512-VNNI or AVX-VNNI) have a
fused 8-bit dot product; without it onnxruntime emulates 8-bit products with 16-bit arithmetic, and a
small network can end up slower in INT8 than in FP32. The report states which case this host is.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: CPU flags (as spelled in /proc/cpuinfo) that give a native 8-bit dot product.
VNNI_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class HostFeatures:
    """CPU facts relevant to the INT8/FP32 choice.

    Attributes:
        machine: ``platform.machine()``, e.g. ``x86_64`` or ``aarch64``.
        cpu_model: The CPU's model name, when known.
        flags: The VNNI-related and AVX flags found.
        vnni: True when the CPU has a native 8-bit dot product (VNNI, or dot-product on ARM).
        cpu_id: ``family F model M stepping S`` on x86 (empty when unknown). Cloud CPUs often report
            a generic model name ("AMD EPYC") for several generations; this tells them apart.
    """

    machine: str
    cpu_model: str
    flags: tuple[str, ...]
    vnni: bool
    cpu_id: str = ""

    def as_dict(self) -> dict:
        """The features as a JSON-ready dict."""
        return {**asdict(self), "flags": list(self.flags)}


def host_features(cpuinfo: str | Path = "/proc/cpuinfo") -> HostFeatures:
    """Read this host's CPU features.

    Args:
        cpuinfo: Path of the Linux cpuinfo file (tests pass a fixture).

    Returns:
        The features; on systems without ``/proc/cpuinfo`` ``flags`` is empty and ``vnni`` False.
    """
    machine = platform.machine()
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return HostFeatures(machine=machine, cpu_model=platform.processor(), flags=(), vnni=False)
    model = ""
    ids: dict[str, str] = {}
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("cpu family", "model", "stepping") and key not in ids:  # the first CPU's
            ids[key] = value.strip()
        elif key in ("flags", "features"):  # x86 / ARM spelling
            words = set(value.split())
            found |= words & {*VNNI_FLAGS, "avx2", "avx512f", "asimddp"}
    vnni = bool(found & {*VNNI_FLAGS, "asimddp"})
    cpu_id = (f"family {ids['cpu family']} model {ids['model']} stepping {ids.get('stepping', '?')}"
              if "cpu family" in ids and "model" in ids else "")
    return HostFeatures(machine=machine, cpu_model=model, flags=tuple(sorted(found)), vnni=vnni, cpu_id=cpu_id)


def cpu_name(record: Mapping[str, Any]) -> str:
    """A host record's ``cpu_model``, followed by its ``cpu_id`` where the record has one
    (``AMD EPYC family 26 model 2 stepping 1``): how reports name the CPU they ran on."""
    cpu_id = record.get("cpu_id")
    return f"{record['cpu_model']} {cpu_id}" if cpu_id else str(record["cpu_model"])
