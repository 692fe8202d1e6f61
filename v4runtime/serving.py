"""Run an ASGI app with uvicorn on one host and port, the same way for every v4runtime server.

Stops gracefully on SIGINT/SIGTERM with exit status 0, prints one ``listening on`` line once the
socket is bound, and can write the bound port to a file (useful with ``--port 0``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from v4runtime.errors import ConfigError
from v4runtime.monitoring.middleware import end_waiting_body_reads


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture (which re-raises SIGTERM after shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        """Begin a graceful shutdown: requests still waiting for their body get 503 after a short grace."""
        self.should_exit = True
        end_waiting_body_reads()


def serve_app(
    app: Any,
    *,
    host: str,
    port: int,
    port_file: str | Path | None = None,
    log_level: str = "warning",
    banner: Callable[[str], str] = lambda url: f"listening on {url}",
) -> int:
    """Serve ``app`` until SIGINT/SIGTERM; return the exit status (0 after a clean shutdown).

    Raises:
        ConfigError: ``port`` is outside 0-65535 (the socket layer would silently wrap it).
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be within 0-65535 (0 picks a free one), got {port}")
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=10
    )
    server = _Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        if port_file is not None:
            tmp = Path(f"{port_file}.tmp")
            tmp.write_text(f"{bound}\n", encoding="utf-8")
            os.replace(tmp, port_file)
        print(banner(f"http://{host}:{bound}"), flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)
        watcher = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    try:  # uvloop when installed (Linux/macOS): a faster event loop than asyncio's default
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    if port_file is not None:
        Path(port_file).unlink(missing_ok=True)
    return 0 if server.started else 1
