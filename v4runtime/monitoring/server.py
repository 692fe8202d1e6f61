"""Run the monitoring API with uvicorn on one host and port (``v4runtime monitor serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from v4runtime.config import MonitorSettings

log = logging.getLogger(__name__)


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in creds else url


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture (which re-raises SIGTERM after shutdown): we stop on
    SIGINT/SIGTERM ourselves and exit 0 after a graceful shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        """Begin a graceful shutdown."""
        self.should_exit = True


def serve(settings: MonitorSettings, *, port_file: str | Path | None = None, log_level: str = "warning") -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status.

    Once the socket is bound, prints ``listening on http://HOST:PORT`` and writes the port to
    ``port_file`` (useful with ``--port 0``).
    """
    from v4runtime.monitoring.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, access_log=False,
        lifespan="on", timeout_graceful_shutdown=10,
    )
    server = _Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        if port_file is not None:
            tmp = Path(f"{port_file}.tmp")
            tmp.write_text(f"{port}\n", encoding="utf-8")
            os.replace(tmp, port_file)
        auth = "on" if (settings.read_tokens or settings.write_tokens) else "OFF (no tokens configured)"
        print(
            f"v4runtime monitor: listening on http://{settings.host}:{port} "
            f"(store {_redact(settings.db_url)}, auth {auth})",
            flush=True,
        )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)
        watcher = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    if not (settings.read_tokens or settings.write_tokens):
        print("warning: no read/write tokens configured; the API is open to any local caller", file=sys.stderr)
    try:  # uvloop when installed (Linux/macOS): a faster event loop than asyncio's default
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    if port_file is not None:
        Path(port_file).unlink(missing_ok=True)
    return 0 if server.started else 1
