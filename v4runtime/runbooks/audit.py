"""The audit log: one JSON object per line, appended by every run, shown by ``runbook log``.

Events: ``run_start``, ``confirm``, ``step`` (one per attempt), ``step_skipped``, ``rollback``,
``cwd_recreated`` (before a rollback, when a step removed the working directory), ``interrupted``,
``rehearsal`` and ``run_end``. Commands and outputs are stored as SHA-256 digests of their
masked text, never in clear, so the log holds no secrets and stays small.

A run that dies mid-write (SIGKILL, full disk) can leave its last line cut off: the next
append starts a new line first, and :func:`read` names such a line in a warning and reads on.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import json
import os
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from v4runtime.errors import RunbookError

#: Environment variable that overrides the default log location.
LOG_ENV = "V4_RUNBOOK_LOG"


def default_path() -> Path:
    """``$V4_RUNBOOK_LOG``, else ``$XDG_STATE_HOME/v4runtime/runbook-audit.jsonl`` (``~/.local/state``)."""
    if os.environ.get(LOG_ENV):
        return Path(os.environ[LOG_ENV])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "v4runtime" / "runbook-audit.jsonl"


def sha256(text: str) -> str:
    """Hex SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def who() -> str:
    """``user@host`` of the operator running the runbook."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class AuditLog:
    """Appends events of one run to a JSONL file (one ``write`` per line).

    Only :meth:`start` raises when the file cannot be written: then nothing has run yet. Once the
    run is under way a failed write must not stop it (its rollbacks least of all): :meth:`event`
    reports the failure on ``fallback`` (stderr) once and prints every event it could not write
    there as a JSON line, so none is lost; :attr:`error` and :attr:`lost` tell the caller.
    """

    def __init__(self, path: Path, run_id: str, runbook: str, fallback: TextIO | None = None) -> None:
        self.path = path
        self.run_id = run_id
        self.runbook = runbook
        self.who = who()
        self.fallback = fallback
        #: Why the first event could not be written (``None`` while every write succeeded).
        self.error: str | None = None
        #: How many events could not be written (each printed to ``fallback`` instead).
        self.lost = 0
        self._repaired = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunbookError(f"cannot create audit log directory {path.parent}: {exc.strerror}") from None

    def start(self, **fields: Any) -> dict[str, Any]:
        """Append the ``run_start`` event.

        Raises:
            RunbookError: the log cannot be written (nothing has run yet, so the run is refused).
        """
        record = self._record("run_start", fields)
        try:
            self._append(record)
        except OSError as exc:
            raise RunbookError(f"cannot write audit log {self.path}: {exc.strerror or exc}") from None
        return record

    def event(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event; returns the record. Never raises: a failed write goes to ``fallback``."""
        record = self._record(event, fields)
        try:
            self._append(record)
        except OSError as exc:
            self._lose(record, exc)
        return record

    def _record(self, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "when": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "run_id": self.run_id,
            "runbook": self.runbook,
            "event": event,
            "who": self.who,
            **fields,
        }

    def _append(self, record: dict[str, Any]) -> None:
        """Write the record as one line with a single ``write`` (O_APPEND: concurrent runs interleave whole lines)."""
        line = json.dumps(record, sort_keys=False) + "\n"
        if _ends_mid_line(self.path):  # an earlier writer died mid-line: do not glue this event onto it
            line = "\n" + line
            if not self._repaired:
                self._repaired = True
                self._say(
                    f"warning: audit log {self.path} ended in an incomplete line (a run was cut off while "
                    "writing it); the next event starts a new line"
                )
        data = line.encode("utf-8")
        # O_NONBLOCK: a FIFO nobody reads fails (ENXIO) instead of hanging the run.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):  # a full disk may take part of a line; the next append starts a new one
            raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written")

    def _lose(self, record: dict[str, Any], exc: OSError) -> None:
        """Report a failed write (the reason once) and print the event so it is not lost."""
        self.lost += 1
        if self.error is None:
            self.error = f"cannot write audit log {self.path}: {exc.strerror or exc}"
            self._say(
                f"error: {self.error}; the run goes on (rollbacks included) and every event that cannot "
                "be written is printed on stderr as a JSON line"
            )
        self._say(json.dumps(record, sort_keys=False))

    def _say(self, text: str) -> None:
        """Print a line on ``fallback``; a terminal that went away must not stop the run either."""
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.fallback or sys.stderr, flush=True)


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` is a non-empty regular file whose last byte is not a newline."""
    try:
        info = path.stat()  # before opening: opening a FIFO to read would block
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return False
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:  # missing (a new log) or unreadable: the append itself will tell
        return False


def read(
    path: Path, run_id: str | None = None, warn: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the events in ``path`` (only those of ``run_id`` when given); skips no line silently.

    A line that is not a JSON object (an event cut off when its run crashed mid-write) is named
    in a warning, passed to ``warn`` (default: printed on stderr), and skipped; the events
    around it are still read. When a whole event was glued onto such a line (runs before the
    writer started a new line after a cut-off one), that event is recovered.

    Raises:
        RunbookError: the file is missing.
    """
    if not path.is_file():
        raise RunbookError(f"no audit log at {path} (set {LOG_ENV} or pass --log)")
    warn = warn or _warn
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record, cut = _parse(line)
            if record is None:
                warn(
                    f"{path}:{number}: not a JSON object (an event cut off mid-write?), skipped: {line.strip()[:60]!r}"
                )
                continue
            if cut:
                warn(
                    f"{path}:{number}: begins with an event cut off mid-write (skipped); the next event is read"
                )
            if run_id is None or str(record.get("run_id", "")).startswith(run_id):
                yield record


#: How every event line starts (``json.dumps`` of a record: ``when`` comes first).
_EVENT_START = '{"when": '


def _parse(line: str) -> tuple[dict[str, Any] | None, bool]:
    """The event on ``line`` and whether a cut-off event precedes it on the line; ``(None, False)`` for none."""
    with contextlib.suppress(json.JSONDecodeError):
        record = json.loads(line)
        return (record if isinstance(record, dict) else None), False
    at = line.find(_EVENT_START, 1)
    while (
        at != -1
    ):  # a whole event glued onto a cut-off one (appended by a writer that did not repair the line)
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line[at:])
            if isinstance(record, dict):
                return record, True
        at = line.find(_EVENT_START, at + 1)
    return None, False


def _warn(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"warning: {message}", file=sys.stderr, flush=True)
