"""Scan events keep one per scan in the monitoring API even when callers reuse an X-Request-ID
(a correlation id, not an idempotency key): both servers run as ``v4runtime ... serve`` subprocesses."""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from PIL import Image


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(out, "PNG")
    return out.getvalue()


def _start(argv: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server with ``--port 0``; the process and its URL once the port file is written."""
    port_file = workdir / f"port-{argv[0]}"
    process = subprocess.Popen([sys.executable, "-m", "v4runtime", *argv, "--port", "0", "--port-file", str(port_file)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert process.poll() is None and time.monotonic() < deadline, f"{argv[0]} server did not start"
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text().strip()}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A monitoring API on SQLite and a scan service reporting to it: (scan URL, monitoring URL, db)."""
    db = tmp_path / "m.db"
    monitor, monitor_url = _start(["monitor", "serve", "--db", f"sqlite:///{db}"], tmp_path)
    scanner, scan_url = _start(["service", "serve", "--monitor-url", monitor_url], tmp_path)
    try:
        yield scan_url, monitor_url, db
    finally:
        for process in (scanner, monitor):
            process.terminate()
            process.wait(timeout=30)


def test_scans_sharing_an_x_request_id_are_each_counted_and_keep_it_as_a_prefix(
    stack: tuple[str, str, Path],
) -> None:
    scan_url, monitor_url, db = stack
    image, long_id = _png(), "L" * 100
    with httpx.Client(base_url=scan_url, timeout=30) as client:
        answers = [client.post("/v1/scan", content=image, headers={"X-Request-ID": rid})
                   for rid in ("job-42", "job-42", "job-42", long_id)]
        answers.append(client.post("/v1/scan", content=image))
        assert [r.status_code for r in answers] == [200] * 5
        deadline = time.monotonic() + 20
        while client.get("/health").json()["counters"]["monitor_events_sent"] < 5:
            assert time.monotonic() < deadline, client.get("/health").json()["counters"]
            time.sleep(0.1)
    assert httpx.get(f"{monitor_url}/v1/metrics/stats", params={"window": "5m"}).json()["events"] == 5
    with closing(sqlite3.connect(db)) as conn:
        stored = {row[0] for row in conn.execute("SELECT request_id FROM events")}
    assert len([i for i in stored if re.fullmatch(r"job-42\.[0-9a-f]{16}", i)]) == 3
    assert len([i for i in stored if re.fullmatch(rf"{long_id[:47]}\.[0-9a-f]{{16}}", i)]) == 1
    # An id the service generated is unique already: the event carries it as it is.
    generated = answers[-1].headers["x-request-id"]
    assert answers[-1].json()["request_id"] == generated and generated in stored
