"""One live run of a runbook at a time: an exclusive ``flock`` on a lock file beside the audit log.

The lock file is ``runbook-<name>.lock`` in the audit log's directory, the runner's state
directory: runs that share that state exclude each other, other runbooks run freely. The
kernel drops a ``flock`` when the process holding it dies, however it dies (SIGKILL
included), so a lock is never stale; the file stays behind and is simply locked again.

Steps do not inherit the lock (``os.open`` is O_CLOEXEC), so a server a step leaves running on
purpose does not keep it. But a step outlives a runner that is SIGKILLed (it runs in its own
session), so the runner also writes into the lock file the process group of the command it is
running, and clears it when the command ends. A run that takes the lock and finds a group noted
there that still has a live process refuses to start: a step of a dead run is still running.
The rest of what the file holds (PID, run id, operator) only serves the refusal messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from v4runtime.errors import RunbookError
from v4runtime.runbooks.audit import who


class RunbookLocked(RunbookError):
    """Another run of the same runbook holds its lock, or a step of a dead run still runs; nothing was run.

    ``pid`` is the runner holding it (``None`` when it has not written its PID yet), ``path``
    the lock file; ``pgid`` is the process group of the step still running after its runner
    died (``None`` when the lock is held by a live runner).
    """

    def __init__(self, runbook: str, path: Path, holder: dict[str, Any], *, orphaned: bool = False) -> None:
        pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
        self.pid = pid
        self.path = path
        self.pgid: int | None = holder.get("pgid") if orphaned else None
        message = _orphan_message(runbook, path, holder) if orphaned else _busy_message(runbook, path, holder)
        super().__init__(message, reason="locked")


def _busy_message(runbook: str, path: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
    by = f"PID {pid}, run {holder.get('run_id')}, {holder.get('who')}" if pid else "PID unknown"
    at = f"; now at step {holder['step']!r}" if holder.get("step") else ""
    return (
        f"runbook {runbook!r} is already running ({by}{at}); nothing was run. Wait for that run to end "
        f"(lock file {path})"
    )


def _orphan_message(runbook: str, path: Path, holder: dict[str, Any]) -> str:
    pgid = holder.get("pgid")
    return (
        f"runbook {runbook!r}: a step of an earlier run is still running (the {holder.get('command', 'run')} "
        f"command of step {holder.get('step')!r}, run {holder.get('run_id')}, {holder.get('who')}: process group "
        f"{pgid}), but its runner (PID {holder.get('pid')}) is gone; nothing was run. Wait for that step to end "
        f"(`pgrep -a -g {pgid}` lists it), or stop it with `kill -- -{pgid}` once you know it is safe "
        f"(lock file {path})"
    )


class RunLock:
    """The lock of a live run (what :func:`hold` yields): notes in the lock file which command runs.

    A write that fails (full disk) is ignored: the note only serves a later run's refusal.
    """

    def __init__(self, fd: int, holder: dict[str, Any]) -> None:
        self._fd = fd
        self._holder = holder
        self._write(holder)

    def running(self, step: str, command: str, pgid: int) -> None:
        """Note that ``command`` (``run``, ``verify`` or ``rollback``) of ``step`` runs as process group ``pgid``."""
        self._write({**self._holder, "step": step, "command": command, "pgid": pgid})

    def idle(self) -> None:
        """Note that no command runs (the last one ended; a server it left running does not count)."""
        self._write(self._holder)

    def _write(self, record: dict[str, Any]) -> None:
        # First line only is read (see _holder): written before the truncation, so a runner killed
        # in between leaves the new record, never an empty file.
        data = json.dumps(record).encode() + b"\n"
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))


def lock_path(log_path: Path, runbook: str) -> Path:
    """The lock file of ``runbook`` for runs that write the audit log ``log_path``."""
    return log_path.parent / f"runbook-{runbook}.lock"


@contextlib.contextmanager
def hold(path: Path, runbook: str, run_id: str) -> Iterator[RunLock]:
    """Hold the lock at ``path`` for the ``with`` block; yields the :class:`RunLock`.

    Raises:
        RunbookLocked: another process holds it (the call does not wait), or a command of a run
            whose runner died still runs (``pgid`` set).
        RunbookError: the lock file cannot be created.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not inherited (os.open is O_CLOEXEC): a server a step leaves running must not keep the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunbookError(f"cannot create runbook lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunbookLocked(runbook, path, _holder(fd)) from None
        previous = _holder(fd)
        if _still_running(previous):
            raise RunbookLocked(runbook, path, previous, orphaned=True)
        yield RunLock(fd, {"pid": os.getpid(), "run_id": run_id, "who": who()})
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> dict[str, Any]:
    """What the holder wrote into the lock file (first line); empty when it is unreadable or not written yet."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).split(b"\n", 1)[0] or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _still_running(holder: dict[str, Any]) -> bool:
    """True when the lock file notes a command's process group (its runner died) that still has a live process."""
    pgid = holder.get("pgid")
    return isinstance(pgid, int) and not isinstance(pgid, bool) and pgid > 1 and group_alive(pgid)


def group_alive(pgid: int) -> bool:
    """True while process group ``pgid`` has a process that is not a zombie (an orphan may stay un-reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        pass
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    return any(entry.name.isdigit() and _live_member(entry, pgid) for entry in proc.iterdir())


def _live_member(entry: Path, pgid: int) -> bool:
    """True when ``/proc/<pid>`` is a process of group ``pgid`` that is not a zombie."""
    try:
        # After "pid (comm)" (comm may hold spaces and parentheses): state, ppid, pgrp, ...
        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):  # exited meanwhile
        return False
    return len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z"
