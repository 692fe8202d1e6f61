"""Fixtures of the scan service tests: apps served by a real uvicorn on 127.0.0.1 (in a thread, for
settings and scanners the CLI does not take) and a real monitoring API on SQLite."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn


@pytest.fixture(scope="module")
def serve_in_thread() -> Iterator[Callable[[Any], str]]:
    """Serve ASGI apps with uvicorn on a free port, each in a thread; returns a function app -> URL.
    Every server started is stopped at the end of the module."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app: Any) -> str:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield serve
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def monitor_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real ``v4runtime monitor serve`` on SQLite, without auth: (URL, database file)."""
    workdir = tmp_path_factory.mktemp("monitor")
    db, port_file = workdir / "m.db", workdir / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "v4runtime", "monitor", "serve", "--db", f"sqlite:///{db}", "--port", "0",
         "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline, "monitoring API did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        while httpx.get(f"{url}/health/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "monitoring API is not ready"
            time.sleep(0.05)
        yield url, db
    finally:
        process.terminate()
        process.wait(timeout=30)
