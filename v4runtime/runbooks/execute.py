"""Running one shell command for a runbook: own process group, timeout, clean kill.

Each command runs as ``bash -c`` in a new session (``start_new_session=True``), so it and
every process it starts share one process group that the terminal's Ctrl-C does not reach:
the runner decides what to stop. On timeout or interruption the whole group gets SIGTERM,
then SIGKILL after a grace period, so no grandchild survives. Output goes to a file rather
than a pipe: a step may leave a server running in the background, and a pipe would stay open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: Seconds between SIGTERM and SIGKILL when a process group is stopped.
KILL_GRACE = 2.0
#: Prepended to every command: stop at the first failing line or pipeline stage.
PRELUDE = "set -eo pipefail\n"
#: Most bytes of a command's output kept in memory: the first and last half, the middle elided.
MAX_OUTPUT = 4 << 20


@dataclass(frozen=True)
class Completed:
    """Result of one command."""

    exit_code: int
    output: str
    duration: float
    timed_out: bool = False


class Interrupted(Exception):
    """Raised when the run was interrupted (SIGINT/SIGTERM) while a command ran; the group is gone."""

    def __init__(self, completed: Completed) -> None:
        super().__init__("interrupted")
        self.completed = completed


def kill_group(pgid: int, grace: float = KILL_GRACE, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL whatever is left.

    A Ctrl-C/SIGTERM that arrives during the grace period (an impatient second Ctrl-C) cuts
    it short: the group is SIGKILLed at once, the leader reaped, and the interrupt re-raised.
    """
    interrupted = False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            try:
                if _gone_within(pgid, grace, proc):
                    break
            except KeyboardInterrupt:
                interrupted = True
    if proc is not None:
        proc.wait()
    if interrupted:
        raise KeyboardInterrupt


def _gone_within(pgid: int, grace: float, proc: subprocess.Popen[bytes] | None) -> bool:
    """Wait up to ``grace`` seconds for every member of the group to exit; True when they did."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is None:
            time.sleep(0.05)
            continue
        try:  # leader gone; are other members left?
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def run_command(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    tick: Callable[[float], None] | None = None,
) -> Completed:
    """Run ``command`` with bash in its own process group and return exit code and output.

    Args:
        command: shell text (parameters already substituted).
        cwd: working directory.
        env: complete environment of the command.
        timeout: seconds before the whole process group is killed (exit code 124).
        tick: called about ten times a second with the elapsed time (progress display).

    Raises:
        Interrupted: on KeyboardInterrupt while waiting; the process group has been killed.
    """
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            ["bash", "-c", PRELUDE + command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            while True:
                try:
                    proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - start
                    if tick is not None:
                        tick(elapsed)
                    if elapsed >= timeout:
                        timed_out = True
                        kill_group(proc.pid, proc=proc)
                        break
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):  # a second one: kill_group escalated to SIGKILL
                kill_group(proc.pid, proc=proc)
            raise Interrupted(_completed(out, proc, start, False, interrupted=True)) from None
        return _completed(out, proc, start, timed_out)


def read_output(out: BinaryIO, limit: int = MAX_OUTPUT) -> str:
    """The captured output as text (invalid UTF-8 replaced); beyond ``limit`` bytes only head and tail."""
    size = out.seek(0, os.SEEK_END)
    out.seek(0)
    if size <= limit:
        return out.read().decode("utf-8", errors="replace")
    head = out.read(limit // 2)
    out.seek(size - limit // 2)
    tail = out.read()
    marker = f"\n[... {size - len(head) - len(tail)} bytes of output omitted ...]\n"
    return head.decode("utf-8", errors="replace") + marker + tail.decode("utf-8", errors="replace")


def _completed(
    out: BinaryIO, proc: subprocess.Popen[bytes], start: float, timed_out: bool, interrupted: bool = False
) -> Completed:
    text = read_output(out)
    code = proc.returncode if proc.returncode is not None else -1
    if timed_out:
        code = 124
    elif interrupted:
        code = 130
    elif code < 0:  # killed by a signal: shell convention 128 + signal number
        code = 128 - code
    return Completed(code, text, time.monotonic() - start, timed_out)
