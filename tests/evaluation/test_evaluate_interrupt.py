"""Ctrl-C during `v4runtime evaluate --workers 2`: status 130, one line on stderr, no process left, no report.

A terminal's Ctrl-C reaches the whole process group, the pool's workers included. They printed
their own KeyboardInterrupt tracebacks (in their initializer, or waiting for a task), and on a
terminal "interrupted" was glued to the end of the progress bar.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
from scanfix import children

pytestmark = [
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc"),
    pytest.mark.timeout(90),
]

FILES = 120


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus built by the real CLI: small images, enough of them to still be evaluating when interrupted."""
    out = tmp_path_factory.mktemp("interrupt") / "corpus"
    half = str(FILES // 2)
    subprocess.run(
        [sys.executable, "-m", "v4runtime", "dataset", "build", "--out", str(out), "--clean", half, "--stego", half,
         "--seed", "5", "--size", "64", "--workers", "1", "--no-progress"],
        check=True, capture_output=True, timeout=60,
    )
    return out


def _start(corpus: Path, reports: Path, stderr: int | IO[Any]) -> subprocess.Popen[bytes]:
    """`evaluate --workers 2` in a process group of its own (the test plays the terminal), SIGINT not ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "v4runtime", "evaluate", "--data", str(corpus), "--out-dir", str(reports),
         "--workers", "2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_workers(proc: subprocess.Popen[bytes]) -> None:
    """Until both worker processes exist (the pool has started)."""
    deadline = time.monotonic() + 30
    while len(children(proc.pid)) < 2:
        assert proc.poll() is None, "evaluate ended before its workers started"
        assert time.monotonic() < deadline, "evaluate never started two workers"
        time.sleep(0.01)


def _group(pgid: int, seconds: float = 5) -> list[int]:
    """Live (not zombie) members of process group ``pgid`` left after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except OSError:  # ended while we looked
                continue
            if int(pgrp) == pgid and state != "Z":
                members.append(int(stat.parent.name))
        if not members or time.monotonic() > deadline:
            return members
        time.sleep(0.05)


def _read_until(fd: int, proc: subprocess.Popen[bytes], done: Callable[[str], bool]) -> str:
    """What the terminal ``fd`` shows, read until ``done`` holds for it (or the process ends)."""
    text = ""
    deadline = time.monotonic() + 30
    while not done(text) and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                text += os.read(fd, 4096).decode(errors="replace")
            except OSError:  # EIO: every writer closed the terminal
                break
        elif proc.poll() is not None:
            break
    return text


def test_ctrl_c_as_the_workers_start_prints_one_line_and_leaves_nothing(small_corpus: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    proc = _start(small_corpus, reports, subprocess.PIPE)
    _wait_for_workers(proc)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, "interrupted\n")
    assert out == b""
    assert _group(proc.pid) == []
    assert list(reports.iterdir()) == []


def test_ctrl_c_mid_evaluation_on_a_terminal_prints_one_line_and_leaves_nothing(
    small_corpus: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    terminal, stderr = os.openpty()  # stderr a terminal: the progress bar shows when batches are scored
    try:
        proc = _start(small_corpus, reports, stderr)
    finally:
        os.close(stderr)
    try:
        shown = _read_until(terminal, proc, lambda text: re.search(rf"\] [1-9]\d*/{FILES} ", text) is not None)
        assert proc.poll() is None and re.search(rf"\] [1-9]\d*/{FILES} ", shown), shown
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        shown = (shown + _read_until(terminal, proc, lambda _: False)).replace("\r\n", "\n")
    finally:
        os.close(terminal)
    assert proc.returncode == 130, shown
    assert "Traceback" not in shown, shown
    assert shown.endswith("\ninterrupted\n") and shown.count("\n") == 2, shown  # the bar's line, then one line
    assert out == b""
    assert _group(proc.pid) == []
    assert list(reports.iterdir()) == []
