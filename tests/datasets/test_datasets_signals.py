"""A dataset build stopped with SIGTERM cleans up like Ctrl-C: the earlier corpus stays, no workers are left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v4runtime.datasets import build_corpus


@pytest.mark.timeout(180)
def test_sigterm_during_a_rebuild_keeps_the_earlier_corpus(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    build_corpus(out, clean=3, stego=2, seed=1, size=48)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "v4runtime", "dataset", "build", "--out", str(out), "--clean", "4000",
         "--stego", "1000", "--seed", "9", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".building") for p in out.iterdir()) and time.monotonic() < deadline:
        assert proc.poll() is None, "the build ended before it could be stopped"
        time.sleep(0.05)
    time.sleep(1.0)  # let the workers write some images into the staging folder
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)  # waits for every process holding stderr, workers included
    assert proc.returncode == 143, err.decode()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # same files, same bytes; the staging folder is gone
