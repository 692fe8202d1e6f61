"""One live run of a runbook at a time: an exclusive ``flock`` on a lock file beside the audit log.

The lock file is ``runbook-<name>.lock`` in the audit log's directory, the runner's state
directory: runs that share that state exclude each other, other runbooks run freely. The
kernel drops a ``flock`` when the process holding it dies, however it dies (SIGKILL
included), so a lock is never stale; the file stays behind and is simply locked again. What
it holds (PID, run id, operator) only serves the message of the run that is refused.
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
    """Another run of the same runbook holds its lock; nothing was run.

    ``pid`` is the process holding it (``None`` when it has not written its PID yet), ``path``
    the lock file.
    """

    def __init__(self, runbook: str, path: Path, holder: dict[str, Any]) -> None:
        pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
        by = f"PID {pid}, run {holder.get('run_id')}, {holder.get('who')}" if pid else "PID unknown"
        super().__init__(
            f"runbook {runbook!r} is already running ({by}); nothing was run. Wait for that run to end "
            f"(lock file {path})",
            reason="locked",
        )
        self.pid = pid
        self.path = path


def lock_path(log_path: Path, runbook: str) -> Path:
    """The lock file of ``runbook`` for runs that write the audit log ``log_path``."""
    return log_path.parent / f"runbook-{runbook}.lock"


@contextlib.contextmanager
def hold(path: Path, runbook: str, run_id: str) -> Iterator[None]:
    """Hold the lock at ``path`` for the ``with`` block.

    Raises:
        RunbookLocked: another process holds it (the call does not wait).
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
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "run_id": run_id, "who": who()}).encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> dict[str, Any]:
    """What the holder wrote into the lock file; empty when it is unreadable or not written yet."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
