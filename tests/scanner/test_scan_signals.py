"""A scan stopped from outside (``kill``, ``timeout``, a supervisor) leaves no worker processes behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scanfix import children, png_bytes

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process parents from /proc")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture()
def many_files(tmp_path: Path) -> Path:
    """3,000 files (hard links to one small PNG): enough work to still be scanning when stopped."""
    folder = tmp_path / "many"
    folder.mkdir()
    (folder / "f0000.png").write_bytes(png_bytes(3))
    for i in range(1, 3000):
        os.link(folder / "f0000.png", folder / f"f{i:04d}.png")
    return folder


def _start_scan(folder: Path, model: Path, out: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Start a 2-process scan and wait until both workers are scanning."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "v4runtime", "scan", str(folder), "--workers", "2", "--jsonl", "--model", str(model)],
        stdout=out.open("wb"), stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = children(proc.pid)
        if len(workers) >= 2 and out.stat().st_size > 0:
            return proc, workers
        assert proc.poll() is None, "the scan ended before it could be stopped"
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the scan never started two workers")


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.timeout(120)
def test_workers_exit_when_the_scan_is_killed(toy_model_path: Path, many_files: Path, tmp_path: Path) -> None:
    """SIGKILL runs no cleanup in the scan; its workers notice their parent is gone and exit on their own."""
    proc, workers = _start_scan(many_files, toy_model_path, tmp_path / "out.jsonl")
    proc.kill()
    proc.wait(timeout=30)
    leftover = _gone_within(workers, 10)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], "worker processes outlived the killed scan"


@pytest.mark.timeout(120)
def test_sigterm_stops_the_scan_like_ctrl_c(toy_model_path: Path, many_files: Path, tmp_path: Path) -> None:
    """`timeout` and supervisors send SIGTERM: the scan shuts its pool down and says so, exit 143."""
    proc, workers = _start_scan(many_files, toy_model_path, tmp_path / "out.jsonl")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)  # returns only once no process holds stderr: the workers too
    assert proc.returncode == 143
    assert err.decode().strip().splitlines()[-1] == "terminated"
    assert _gone_within(workers, 5) == []
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert 0 < len(lines) < 3000  # stopped part-way, every line written whole
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
