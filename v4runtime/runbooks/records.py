"""Context for record templates (incident record, post-rollback verification) from the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from v4runtime.errors import RunbookError
from v4runtime.runbooks.audit import read


def run_context(log_path: Path, run_id: str) -> dict[str, Any]:
    """Summarise one run of the audit log for a template: ``{"run": {...}}``.

    ``run`` holds id, runbook, who, started, ended, status, failed_step, params, steps
    (one entry per attempt), rollbacks and events (all raw events).

    Raises:
        RunbookError: the run is not in the log, or ``run_id`` is an ambiguous prefix.
    """
    events = list(read(log_path, run_id))
    ids = sorted({str(e.get("run_id")) for e in events})
    if not ids:
        raise RunbookError(f"no run {run_id!r} in {log_path}")
    if len(ids) > 1:
        raise RunbookError(f"run id prefix {run_id!r} is ambiguous: {', '.join(ids)}")
    start = next((e for e in events if e.get("event") == "run_start"), events[0])
    end = next((e for e in events if e.get("event") == "run_end"), None)
    return {
        "run": {
            "id": ids[0],
            "runbook": start.get("runbook"),
            "who": start.get("who"),
            "started": start.get("when"),
            "ended": end.get("when") if end else None,
            "status": end.get("status") if end else "unfinished",
            "failed_step": end.get("failed_step") if end else None,
            "params": start.get("params", {}),
            "steps": [e for e in events if e.get("event") == "step"],
            "rollbacks": [e for e in events if e.get("event") == "rollback"],
            "events": events,
        }
    }
