"""Worker processes that die or are interrupted: every file is still reported, and no traceback is shown.

A worker killed mid-scan (the OOM killer, SIGKILL) broke the whole pool: a BrokenProcessPool
traceback, status 1 ("stego found") and most files never reported. Ctrl-C while the pool started
printed the workers' own KeyboardInterrupt tracebacks.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from scanfix import children, png_bytes

import v4runtime.scanner as scanner_mod
from v4runtime.scanner import Scanner

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process parents from /proc")

_SCAN_CHUNK = scanner_mod._worker_scan_chunk


def _alive(pids: list[int], seconds: float) -> list[int]:
    """Those of ``pids`` still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "(Z)" not in _state(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] + ")"
    except OSError:
        return "(Z)"


def _folder(root: Path, files: int) -> Path:
    """``files`` small PNGs (hard links to one): enough work to still be scanning when a worker dies."""
    root.mkdir()
    (root / "f0000.png").write_bytes(png_bytes(3))
    for i in range(1, files):
        os.link(root / "f0000.png", root / f"f{i:04d}.png")
    return root


def _start(folder: Path, model: Path, out: Path, **popen: Any) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Start `scan --workers 2` and wait until both worker processes exist and results flow."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "v4runtime", "scan", str(folder), "--workers", "2", "--jsonl", "--model", str(model)],
        stdout=out.open("wb"), stderr=subprocess.PIPE, start_new_session=True, **popen,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = children(proc.pid)
        if len(workers) >= 2:
            return proc, workers
        assert proc.poll() is None, "the scan ended before its workers started"
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the scan never started two workers")


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_scan_is_replaced_and_its_files_scanned_again(toy_model_path: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "many", 1000)
    out = tmp_path / "out.jsonl"
    proc, workers = _start(folder, toy_model_path, out)
    while out.stat().st_size == 0 and proc.poll() is None:
        time.sleep(0.01)
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=150)
    stderr = err.decode()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in folder.iterdir())  # each once, in order
    assert [r for r in rows if r["error"] is not None] == []
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "a worker process died (killed by a signal, out of memory, or a crash):" in stderr
    assert "unfinished file(s) are scanned again in a new pool" in stderr
    assert _alive(workers, 10) == []


def _die_on_poison(task: tuple[int, list[Any]]) -> list[scanner_mod.ScanResult]:
    """Stands in for the worker's chunk scan: the worker dies on a chunk holding ``poison.png``,
    as it would in a decoder crash or the OOM killer's SIGKILL, every time it meets the file."""
    if any(str(source).endswith("poison.png") for source in task[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _SCAN_CHUNK(task)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="workers see the patch when forked")
@pytest.mark.timeout(120)
def test_a_file_that_kills_every_worker_is_reported_not_dropped(
    toy_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Scanned again once in a new pool, the batch kills that one too: its files come back as errors."""
    folder = _folder(tmp_path / "files", 200)
    os.replace(folder / "f0005.png", folder / "poison.png")
    sources = sorted(str(p) for p in folder.iterdir())
    monkeypatch.setattr(scanner_mod, "_worker_scan_chunk", _die_on_poison)
    with Scanner(toy_model_path) as scanner:
        results = scanner.scan_many(sources, workers=2, executor="process")
        healthy = [s for s in sources if not s.endswith("poison.png")][:20]
        again = scanner.scan_many(healthy, workers=2, executor="process")  # the scanner still works
    assert [r.path for r in results] == sources
    died = [r for r in results if r.error_reason == "worker_died"]
    poison = results[sources.index(str(folder / "poison.png"))]
    assert poison in died
    assert poison.error is not None and "died 2 times" in poison.error and poison.probability is None
    # only the batches in flight with the poison are lost, the rest of the scan goes on
    assert len(died) <= scanner_mod.IN_FLIGHT_PER_WORKER * 2 * scanner_mod.DISPATCH
    assert all(r.error is None for r in results if r not in died)
    assert [r.error for r in again] == [None] * 20
    assert "reported as not scanned (worker_died)" in caplog.text


@pytest.mark.timeout(180)
def test_ctrl_c_while_the_pool_starts_prints_no_worker_traceback(toy_model_path: Path, tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group, workers included: they ignore it, and
    the scan stops with status 130, leaving no worker behind."""
    folder = _folder(tmp_path / "files", 100)
    for run in range(3):
        proc, workers = _start(folder, toy_model_path, tmp_path / f"out{run}.jsonl",
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        stderr = err.decode()
        assert (proc.returncode, stderr.count("Traceback")) == (130, 0), stderr
        assert stderr.strip().splitlines()[-1] == "interrupted"
        assert _alive(workers, 10) == []


def test_signals_deferred_holds_ctrl_c_and_sigterm_until_the_block_ends() -> None:
    """A pool must start whole: an interrupt between its forks left workers that nobody stopped,
    and the scan's exit waited on them forever."""
    from v4runtime.workers import Terminated, signals_deferred, terminate_as_interrupt

    done = []
    with pytest.raises(KeyboardInterrupt), signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # twice: acted on once
        done.append("block")
    assert done == ["block"]
    with terminate_as_interrupt(), pytest.raises(Terminated), signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        done.append("again")
    assert done == ["block", "again"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
