"""The example programs under snippets/ that pages include, run as code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_config_layers_snippet_shows_each_layer() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "snippets" / "config_layers.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "V4_MONITOR__PORT": "1"},  # the snippet must ignore the caller's env
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows == [
        ["defaults", "db_url=sqlite:///v4-monitor.db", "port=8400"],
        ["+", "YAML", "file", "db_url=sqlite:///from-file.db", "port=9000"],
        ["+", "environment", "db_url=sqlite:///from-file.db", "port=9100"],
    ]
