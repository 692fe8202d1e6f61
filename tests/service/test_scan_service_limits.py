"""The scan service's bound on concurrent scans and its wait queue, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from v4runtime.scanner import Scanner, ScanResult
from v4runtime.service.app import create_scan_app

HOLD_S = 10.0  # longest a gated scan waits for its gate: a failing test still ends


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


class _GatedScanner(Scanner):
    """The real scanner, whose scans wait for ``gate`` once started: a scan held for as long as a test
    needs, and a count of the scans that ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)
        self.running = self.most = 0
        self._lock = threading.Lock()

    def scan(self, source: str | Path | bytes) -> ScanResult:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.started.release()
        try:
            self.gate.wait(HOLD_S)
            return super().scan(source)
        finally:
            with self._lock:
                self.running -= 1


def _wait_for(url: str, **expected: int) -> dict[str, Any]:
    """The /health counters once they hold ``expected`` (within 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        counters = httpx.get(f"{url}/health").json()["counters"]
        if all(counters[key] == value for key, value in expected.items()):
            return counters
        assert time.monotonic() < deadline, counters
        time.sleep(0.02)


def _refused_before_its_body(port: int) -> bytes:
    """Send only the head of a scan of 1 MB; the whole answer (the server closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nX-Request-ID: over\r\nContent-Length: 1000000\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.timeout(60)  # the scanner's start included; the scans themselves take well under 10 s
def test_scan_beyond_the_limit_and_the_queue_is_503_overloaded_and_the_held_ones_complete(serve_in_thread) -> None:
    scanner = _GatedScanner()
    url = serve_in_thread(create_scan_app(scanner, max_scans=1, scan_queue=1))
    image, start = _png(), time.monotonic()

    def post(request_id: str) -> httpx.Response:
        return httpx.post(f"{url}/v1/scan", content=image, headers={"X-Request-ID": request_id}, timeout=HOLD_S + 5)

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(post, "held")
        assert scanner.started.acquire(timeout=5), "the first scan did not start"
        queued = pool.submit(post, "queued")
        _wait_for(url, scans_running=1, scans_waiting=1)

        answer = _refused_before_its_body(int(url.rsplit(":", 1)[1]))
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        assert lines[0].startswith(b"http/1.1 503"), answer[:300]
        assert b"retry-after: 1" in lines and b"x-request-id: over" in lines and b"connection: close" in lines
        assert b'"code":"overloaded"' in body and b'"request_id":"over"' in body
        assert scanner.running == 1  # the queued request waits for the slot, it does not scan alongside

        scanner.gate.set()
        assert [held.result().status_code, queued.result().status_code] == [200, 200]
    assert [held.result().json()["request_id"], queued.result().json()["request_id"]] == ["held", "queued"]
    assert scanner.most == 1
    counters = _wait_for(url, scans_running=0, scans_waiting=0)
    assert counters["overloaded"] == 1 and counters["scans"] == 2
    assert httpx.post(f"{url}/v1/scan", content=image).status_code == 200  # the places were given back
    assert time.monotonic() - start < 10
