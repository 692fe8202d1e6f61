"""Run the monitoring API with uvicorn on one host and port (``v4runtime monitor serve``)."""

from __future__ import annotations

import sys
from pathlib import Path

from v4runtime.config import MonitorSettings
from v4runtime.serving import serve_app


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in creds else url


def serve(settings: MonitorSettings, *, port_file: str | Path | None = None, log_level: str = "warning") -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status.

    Once the socket is bound, prints ``listening on http://HOST:PORT`` and writes the port to
    ``port_file`` (useful with ``--port 0``).
    """
    from v4runtime.monitoring.app import create_app

    auth_on = bool(settings.read_tokens or settings.write_tokens)
    if not auth_on:
        print("warning: no read/write tokens configured; the API is open to any local caller", file=sys.stderr)
    auth = "on" if auth_on else "OFF (no tokens configured)"
    return serve_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        port_file=port_file,
        log_level=log_level,
        banner=lambda url: f"v4runtime monitor: listening on {url} (store {_redact(settings.db_url)}, auth {auth})",
    )
