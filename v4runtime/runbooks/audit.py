"""The audit log: one JSON object per line, appended by every run, shown by ``runbook log``.

Events: ``run_start``, ``confirm``, ``step`` (one per attempt), ``step_skipped``, ``rollback``,
``interrupted`` and ``run_end``. Commands and outputs are stored as SHA-256 digests of their
masked text, never in clear, so the log holds no secrets and stays small.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    """Appends events of one run to a JSONL file (one ``write`` per line, flushed at once)."""

    def __init__(self, path: Path, run_id: str, runbook: str) -> None:
        self.path = path
        self.run_id = run_id
        self.runbook = runbook
        self.who = who()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunbookError(f"cannot create audit log directory {path.parent}: {exc.strerror}") from None

    def event(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event; returns the record written."""
        record = {
            "when": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "run_id": self.run_id,
            "runbook": self.runbook,
            "event": event,
            "who": self.who,
            **fields,
        }
        line = json.dumps(record, sort_keys=False) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            raise RunbookError(f"cannot write audit log {self.path}: {exc.strerror}") from None
        return record


def read(path: Path, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the events in ``path`` (only those of ``run_id`` when given); skips no line silently.

    Raises:
        RunbookError: the file is missing or holds a line that is not a JSON object.
    """
    if not path.is_file():
        raise RunbookError(f"no audit log at {path} (set {LOG_ENV} or pass --log)")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise RunbookError(f"{path}:{number}: not a JSON line") from None
            if not isinstance(record, dict):
                raise RunbookError(f"{path}:{number}: not a JSON object")
            if run_id is None or str(record.get("run_id", "")).startswith(run_id):
                yield record
