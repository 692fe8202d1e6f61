"""``keep_freed_memory``: extraction reuses freed planes instead of page-faulting fresh ones.

``extract_streams`` applies it itself; the probe's ``default`` mode swaps it for a no-op to
measure what a process without it pays.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from v4runtime import allocator

GLIBC = platform.libc_ver()[0] == "glibc"

# A fresh interpreter, so that no earlier large free has raised glibc's dynamic thresholds.
PROBE = """
import io, json, resource, sys
import numpy as np
from PIL import Image
import v4runtime.streams.extract as extract_module
from v4runtime import allocator
from v4runtime.streams import extract_streams

if sys.argv[1] == "default":
    extract_module.keep_freed_memory = lambda: None
rng = np.random.default_rng(0)
buf = io.BytesIO()
Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "PNG")
data = buf.getvalue()
for _ in range(5):
    extract_streams(data)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    extract_streams(data)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"kept": allocator._applied, "faults": faults}))
"""


def probe(mode: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and not k.startswith("GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's; elsewhere keep_freed_memory is a no-op")
def test_extraction_keeps_memory_and_spares_the_page_faults_of_fresh_planes() -> None:
    """A fresh process that only calls ``extract_streams`` has the thresholds set by it."""
    default, kept = probe("default"), probe("kept")
    assert default["kept"] is None and kept["kept"] is True
    assert isinstance(default["faults"], float) and isinstance(kept["faults"], float)
    if default["faults"] < 100:
        pytest.skip(f"this allocator already reuses the planes ({default['faults']:.0f} faults per file)")
    assert kept["faults"] < 20  # about 800 pages of planes per 256x256 file otherwise
    assert kept["faults"] < default["faults"] / 10


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_keep_freed_memory_is_applied_once_and_reports_it() -> None:
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True  # idempotent


def test_without_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without ``gnu_get_libc_version`` (musl, macOS) is left alone: False, no mallopt call."""

    class NotGlibc:
        def __init__(self, name: object) -> None:
            pass

        @property
        def mallopt(self) -> object:
            raise AssertionError("mallopt must not be called outside glibc")

        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(allocator.ctypes, "CDLL", NotGlibc)
    assert allocator._mallopt(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD) is False
