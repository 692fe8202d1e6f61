"""Shared helpers for the runbook tests: write runbooks into a temp tree, run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def write_runbook(root: Path, name: str, text: str) -> Path:
    """Write ``runbooks/<name>.yml`` under ``root`` (dedented) and return its path."""
    folder = root / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def cli(args: list[str], cwd: Path, log: Path | None = None, timeout: float = 60, **kwargs: Any):
    """Run ``python -m v4runtime.runbooks ARGS`` (the real runbook CLI) in ``cwd``; stdin is not a TTY."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("V4_RUNBOOK_DIR", None)
    if log is not None:
        env["V4_RUNBOOK_LOG"] = str(log)
    return subprocess.run(
        [sys.executable, "-m", "v4runtime.runbooks", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_cli(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[str]:
    """Start ``python -m v4runtime.runbooks ARGS`` in the background (for tests that signal or kill it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "v4runtime.runbooks", *args],
        cwd=cwd,
        env={**os.environ, "V4_RUNBOOK_LOG": str(log)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events(log: Path) -> list[dict[str, Any]]:
    """All events of an audit log file."""
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's zombie may linger un-reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
