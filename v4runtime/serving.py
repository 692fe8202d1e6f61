"""Run an ASGI app with uvicorn on one host and port, the same way for every v4runtime server.

Stops gracefully on SIGINT/SIGTERM with exit status 0, prints one ``listening on`` line once the
socket is bound, and can write the bound port to a file (useful with ``--port 0``).

Slow or idle clients cannot hold the server: a request head (request line and headers) must arrive
within :data:`HEADER_TIMEOUT_S` of its first byte, or of the connection opening, else the connection
is closed; and at most :data:`CONNECTION_LIMIT` connections and requests are served at once, beyond
which uvicorn answers ``503`` at once. Body stalls are the edge middleware's
(:mod:`v4runtime.monitoring.middleware`).
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
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from v4runtime.errors import ConfigError
from v4runtime.monitoring.middleware import end_waiting_body_reads

#: Seconds a client may take to send a request head (slow-loris: a head sent a byte at a time).
HEADER_TIMEOUT_S = 10.0
#: Connections and requests served at once; more get uvicorn's plain ``503`` (file descriptors stay free).
CONNECTION_LIMIT = 1000


def head_timeout_protocol(timeout_s: float | None = None) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request head takes over ``timeout_s``
    (:data:`HEADER_TIMEOUT_S` when None).

    uvicorn times only idle kept-alive connections, and only once a first response was sent: a
    client that connects and sends nothing, or its headers a byte at a time, holds a connection
    (and a file descriptor) for ever.
    """

    limit = HEADER_TIMEOUT_S if timeout_s is None else timeout_s

    class HeadTimeoutProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first bytes of another request on a kept-alive connection
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(limit, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadTimeoutProtocol


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
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=10,
        http=head_timeout_protocol(), limit_concurrency=CONNECTION_LIMIT,
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
