"""Running one shell command for a runbook: own process group, timeout, clean kill, bounded output.

Each command runs as ``bash -c`` in a new session (``start_new_session=True``), so it and
every process it starts share one process group that the terminal's Ctrl-C does not reach:
the runner decides what to stop. On timeout or interruption the whole group gets SIGTERM,
then SIGKILL after a grace period, so no grandchild survives.

Output (stdout and stderr together) goes to a pipe that the runner reads while the command
runs, keeping only the first and last ``MAX_OUTPUT // 2`` bytes in memory and counting the
rest: a step that prints gigabytes costs neither disk (nothing is written to a file) nor
memory. A step may leave a server running in the background: when the command ends while such
a process still holds the pipe, the pipe is handed to a detached ``cat`` that discards it, so
that process is neither blocked on a full pipe nor killed by SIGPIPE when the runner exits.

A command that cannot be started at all (its working directory is gone, ``bash`` is not on
``PATH``, the command is longer than the kernel takes, no file descriptor or process is left)
is not an exception: it comes back as a :class:`Completed` with ``exit_code`` ``None`` and the
OS error in ``error``, so whoever runs it takes its ordinary failure path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Seconds between SIGTERM and SIGKILL when a process group is stopped.
KILL_GRACE = 2.0
#: Prepended to every command: stop at the first failing line or pipeline stage.
PRELUDE = "set -eo pipefail\n"
#: Most bytes of a command's output kept in memory: the first and last half, the middle elided.
MAX_OUTPUT = 4 << 20
#: Bytes read from the output pipe at a time.
CHUNK = 1 << 20
#: Seconds between checks of the command (and progress ticks).
POLL = 0.1
#: Most seconds spent reading what is left in the pipe once the command has ended.
DRAIN_TIME = 1.0

#: Detached drains (see :func:`_drain_detached`), kept so they are reaped rather than left as zombies.
_drains: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class Completed:
    """Result of one command; ``output`` is at most ``MAX_OUTPUT`` bytes of it, ``omitted`` the rest.

    ``exit_code`` is ``None`` when the command could not be started; ``error`` then says why.
    """

    exit_code: int | None
    output: str
    duration: float
    timed_out: bool = False
    output_bytes: int = 0
    omitted: int = 0
    error: str | None = None


class Interrupted(Exception):
    """Raised when the run was interrupted (SIGINT/SIGTERM) while a command ran; the group is gone."""

    def __init__(self, completed: Completed) -> None:
        super().__init__("interrupted")
        self.completed = completed


class Capture:
    """The first and last ``limit // 2`` bytes of a stream and how many bytes it had: memory stays bounded."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        """Take the next piece of the stream."""
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > self.half:
            del self.tail[: len(self.tail) - self.half]

    @property
    def omitted(self) -> int:
        """Bytes of the middle that were not kept."""
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        """What was kept as text (invalid UTF-8 replaced), with a marker where bytes were omitted."""
        if not self.omitted:
            return (self.head + self.tail).decode("utf-8", errors="replace")
        marker = f"\n[... {self.omitted} bytes of output omitted ...]\n"
        return self.head.decode("utf-8", errors="replace") + marker + self.tail.decode("utf-8", errors="replace")


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
    started: Callable[[int], None] | None = None,
) -> Completed:
    """Run ``command`` with bash in its own process group and return exit code and output.

    Args:
        command: shell text (parameters already substituted).
        cwd: working directory.
        env: complete environment of the command.
        timeout: seconds before the whole process group is killed (exit code 124).
        tick: called about ten times a second with the elapsed time (progress display).
        started: called with the command's process group id once it runs (the runner notes it in
            its lock file, see :mod:`v4runtime.runbooks.lock`).

    Returns a :class:`Completed` with ``exit_code`` ``None`` and the reason in ``error`` when the
    command could not be started (nothing ran).

    Raises:
        Interrupted: on KeyboardInterrupt while waiting; the process group has been killed.
    """
    start = time.monotonic()
    try:
        read_fd, write_fd = os.pipe()
    except OSError as exc:  # EMFILE/ENFILE
        return _not_started(f"cannot create the output pipe: {_reason(exc)}", start)
    try:
        proc = subprocess.Popen(
            ["bash", "-c", PRELUDE + command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:  # no cwd, no bash, E2BIG, EAGAIN, EMFILE, ENOMEM; a NUL byte
        os.close(read_fd)
        return _not_started(_launch_error(exc, cwd), start)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # only the command's processes hold the write end now: EOF once they are gone
    capture = Capture()
    try:
        if started is not None:
            started(proc.pid)  # start_new_session: the pid is the group id
        timed_out = _pump(proc, read_fd, capture, start, timeout, tick)
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):  # a second one: kill_group escalated to SIGKILL
            kill_group(proc.pid, proc=proc)
        _finish(read_fd, capture)
        raise Interrupted(_completed(capture, proc, start, False, interrupted=True)) from None
    _finish(read_fd, capture)
    return _completed(capture, proc, start, timed_out)


def _reason(exc: OSError) -> str:
    """``strerror (ENAME)`` of an OS error, e.g. ``No such file or directory (ENOENT)``."""
    name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    return f"{exc.strerror or exc}" + (f" ({name})" if name else "")


def _launch_error(exc: OSError | ValueError, cwd: Path) -> str:
    """Why ``bash`` could not be started in ``cwd``, naming the directory or program concerned."""
    if not isinstance(exc, OSError):
        return str(exc)
    if exc.filename is not None and str(exc.filename) == str(cwd):
        return f"working directory {cwd}: {_reason(exc)}"
    if exc.filename is not None:
        return f"{exc.filename}: {_reason(exc)}"
    return _reason(exc)


def _not_started(error: str, start: float) -> Completed:
    return Completed(None, "", time.monotonic() - start, error=error)


def _pump(
    proc: subprocess.Popen[bytes],
    fd: int,
    capture: Capture,
    start: float,
    timeout: float,
    tick: Callable[[float], None] | None,
) -> bool:
    """Read output until the command exits or times out; True when it timed out (group killed)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pipe_open = True
    last_tick = start
    while proc.poll() is None:
        if pipe_open:
            if poller.poll(int(POLL * 1000)):
                chunk = os.read(fd, CHUNK)
                capture.add(chunk)
                pipe_open = bool(chunk)  # EOF: the command closed its output yet runs on; just wait
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL)
        now = time.monotonic()
        if tick is not None and now - last_tick >= POLL:
            last_tick = now
            tick(now - start)
        if now - start >= timeout:
            kill_group(proc.pid, proc=proc)
            return True
    return False


def _finish(fd: int, capture: Capture) -> None:
    """Read what is left in the pipe, then close it; hand it to a drain when a background process still holds it."""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + DRAIN_TIME
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:  # still held open (a background process), nothing to read now
                break
            if not chunk:  # EOF: nothing holds the pipe any more
                return
            capture.add(chunk)
        _drain_detached(fd)
    finally:
        os.close(fd)


def _drain_detached(fd: int) -> None:
    """Let a ``cat`` in its own session read (and discard) the pipe for as long as anything writes to it."""
    _drains[:] = [drain for drain in _drains if drain.poll() is None]  # reap the finished ones
    os.set_blocking(fd, True)
    with contextlib.suppress(OSError):  # no cat: the background process gets SIGPIPE, as with no reader
        _drains.append(
            subprocess.Popen(
                ["cat"], stdin=fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        )


def _completed(
    capture: Capture, proc: subprocess.Popen[bytes], start: float, timed_out: bool, interrupted: bool = False
) -> Completed:
    code = proc.returncode if proc.returncode is not None else -1
    if timed_out:
        code = 124
    elif interrupted:
        code = 130
    elif code < 0:  # killed by a signal: shell convention 128 + signal number
        code = 128 - code
    duration = time.monotonic() - start
    return Completed(code, capture.text(), duration, timed_out, capture.total, capture.omitted)
