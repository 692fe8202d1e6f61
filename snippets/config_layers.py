"""Show how v4runtime layers its settings: code defaults, then a YAML file, then V4_* variables.

Run it with ``python snippets/config_layers.py``; it prints where each effective value came from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from v4runtime.config import load_settings


def layers() -> list[tuple[str, str, int]]:
    """Return (layer, monitor.db_url, monitor.port) after each layer is applied."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "v4.yaml"
        config.write_text("monitor:\n  db_url: sqlite:///from-file.db\n  port: 9000\n")
        steps = [
            ("defaults", load_settings(environ={})),
            ("+ YAML file", load_settings(config, environ={})),
            ("+ environment", load_settings(config, environ={"V4_MONITOR__PORT": "9100"})),
        ]
    return [(name, s.monitor.db_url, s.monitor.port) for name, s in steps]


if __name__ == "__main__":
    for name, db_url, port in layers():
        print(f"{name:<14} db_url={db_url:<26} port={port}")
