"""The scan service in-process (real uvicorn on 127.0.0.1, real scanner) with settings the CLI
does not expose: a short body timeout and a monitoring API that accepts connections but never answers."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from PIL import Image

from v4runtime.client import MonitoringClient
from v4runtime.scanner import Scanner
from v4runtime.service.app import create_scan_app

BODY_TIMEOUT = 1.0


def _png(size: int = 64) -> bytes:
    image = Image.new("RGB", (size, size))
    image.putdata([((x * 7) % 256, (y * 5) % 256, (x ^ y) % 256) for y in range(size) for x in range(size)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def black_hole() -> Iterator[str]:
    """A monitoring API that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture(scope="module")
def served(black_hole: str) -> Iterator[tuple[str, MonitoringClient]]:
    monitor = MonitoringClient(black_hole, timeout=30.0, flush_interval=0.05, max_retries=0)
    app = create_scan_app(Scanner(), monitor, body_timeout_s=BODY_TIMEOUT)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", monitor
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        monitor.close(timeout=0)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_stalled_upload_and_lying_content_length_get_408_within_the_timeout(served: tuple[str, MonitoringClient]) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 10) as sock:
        sock.sendall(b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + _png()[:100])
        start = time.monotonic()
        answer = _read_all(sock)  # the server closes the connection after answering
        elapsed = time.monotonic() - start
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in head.lower()
    assert b'"code":"request_timeout"' in body
    assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + 5


def test_scans_answer_quickly_while_the_monitoring_api_hangs(served: tuple[str, MonitoringClient]) -> None:
    url, _ = served
    image = _png()
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(5):
            start = time.monotonic()
            response = client.post("/v1/scan", content=image, headers={"X-Request-ID": f"slow-{i}"})
            assert response.status_code == 200 and time.monotonic() - start < 5
        counters = client.get("/health").json()["counters"]
    # Nothing got through, nothing was lost: the events are in flight or buffered (how many of each
    # depends on when the sender thread took its batch, so only their absence from "dropped" is fixed).
    assert counters["monitor_events_sent"] == 0 and counters["monitor_events_dropped"] == 0


def test_invalid_request_id_does_not_lose_the_monitoring_event(served: tuple[str, MonitoringClient]) -> None:
    url, monitor = served
    response = httpx.post(f"{url}/v1/scan", content=_png(), headers={"X-Request-ID": "not a valid id!"})
    assert response.status_code == 200
    assert response.json()["request_id"] == response.headers["x-request-id"] != "not a valid id!"
    assert monitor.counters.invalid == 0
    assert httpx.get(f"{url}/health").json()["counters"]["monitor_events_invalid"] == 0
