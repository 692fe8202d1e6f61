"""Keeping freed memory between scans: later extractions reuse it instead of page-faulting."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from v4runtime.streams import memory

# Extract one 256 x 256 PNG 30 times in a fresh process; print page faults per call over the last 20.
_FAULTS_PER_SCAN = textwrap.dedent(
    """
    import io, resource
    import numpy as np
    from PIL import Image
    from v4runtime.streams import extract_streams
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    for _ in range(10):
        extract_streams(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        extract_streams(data)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
    """
)


def _faults_per_scan(opt_out: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if opt_out:
        env[memory.OPT_OUT_ENV] = "0"
    else:
        env.pop(memory.OPT_OUT_ENV, None)
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_SCAN], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_later_scans_stop_page_faulting() -> None:
    """About 800 faults a file with glibc's defaults (3.4 MB of planes faulted back in); next to none once tuned."""
    if not memory._mallopt_thresholds():  # e.g. musl: nothing to tune, nothing to measure
        pytest.skip("this C library has no mallopt")
    tuned, default = _faults_per_scan(opt_out=False), _faults_per_scan(opt_out=True)
    assert default > 300
    assert tuned < default / 10


def test_opting_out_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_state", {})
    calls: list[bool] = []
    monkeypatch.setattr(memory, "_mallopt_thresholds", lambda: calls.append(True) or True)
    assert memory.keep_freed_memory({memory.OPT_OUT_ENV: "off"}) is False
    assert memory.keep_freed_memory({}) is False  # decided once per process
    assert calls == []


def test_tunes_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_state", {})
    calls: list[bool] = []
    monkeypatch.setattr(memory, "_mallopt_thresholds", lambda: calls.append(True) or True)
    assert memory.keep_freed_memory({}) is True
    assert memory.keep_freed_memory({}) is True
    assert calls == [True]
