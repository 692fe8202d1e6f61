"""More hostile input against real servers: out-of-range dates, one request_id from concurrent requests,
stalled bodies, bad settings, malformed JSON and Unix-time strings. Each failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from v4runtime.config import MonitorSettings, load_settings
from v4runtime.errors import ConfigError
from v4runtime.monitoring.app import create_app
from v4runtime.monitoring.auth import Authenticator
from v4runtime.serving import head_timeout_protocol

from .conftest import Server
from .test_hostile import assert_envelope

#: UTC values of the two hostile dates below: year 10000 and year 0, as an old server stored them.
YEAR_10000 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() + 86400 - 60
YEAR_0 = datetime(1, 1, 1, tzinfo=UTC).timestamp() - 3600
BODY_TIMEOUT = 1.0
#: Seconds the in-process server gives a request head (v4runtime.serving.HEADER_TIMEOUT_S, shortened).
HEAD_TIMEOUT = 1.0


# Helpers ------------------------------------------------------------------------------------------
def _execute(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement on the server's database, behind its back (``?`` placeholders)."""
    if db_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn, conn:
            conn.execute(sql, params)
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


def _an_alert(url: str) -> int:
    """The id of an alert, made by 25 failed scans (ErrorRateHigh goes pending at the next evaluation)."""
    failed = [{"model_version": "v4-ranges", "latency_ms": 500, "error": "boom"}] * 25
    assert httpx.post(f"{url}/v1/metrics/log", json={"events": failed}).status_code == 202
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts = httpx.get(f"{url}/v1/alerts/recent").json()["alerts"]
        if alerts:
            return int(alerts[0]["id"])
        time.sleep(0.1)
    raise AssertionError("no alert within 20 s")


def _stored_alert(url: str, alert_id: int, limit: int = 1000) -> dict[str, Any]:
    """The alert as the API answers it now; the read cache keys on the query, so a ``limit`` not used
    before gets a fresh answer (no waiting out the cache's second after a write behind its back)."""
    response = httpx.get(f"{url}/v1/alerts/recent", params={"limit": limit})
    assert response.status_code == 200, response.text
    return next(a for a in response.json()["alerts"] if a["id"] == alert_id)


# 1. suppress_until outside datetime's range ----------------------------------------------------
def test_suppress_until_past_the_date_range_in_utc_is_422_and_stores_nothing(server_factory, store_url: str) -> None:
    url = server_factory(store_url).url
    alert_id = _an_alert(url)
    for limit, until in enumerate(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"], start=999):
        response = httpx.post(f"{url}/v1/alerts/{alert_id}/acknowledge", json={"by": "x", "suppress_until": until})
        error = assert_envelope(response, 422, "validation_error")
        assert [d["field"] for d in error["details"]] == ["suppress_until"]
        alert = _stored_alert(url, alert_id, limit)
        assert alert["acknowledged_by"] is None and alert["suppress_until"] is None


def test_a_stored_out_of_range_suppress_until_is_clamped_on_read_not_a_500(server_factory, store_url: str) -> None:
    server: Server = server_factory(store_url)
    alert_id = _an_alert(server.url)
    for limit, (epoch, shown) in enumerate([(YEAR_10000, "9999-12-31T23:59:59.999999Z"),
                                             (YEAR_0, "0001-01-01T00:00:00Z")], start=999):
        _execute(server.db_url, "UPDATE alerts SET suppress_until = ? WHERE id = ?", (epoch, alert_id))
        assert _stored_alert(server.url, alert_id, limit)["suppress_until"] == shown
        ack = httpx.post(f"{server.url}/v1/alerts/{alert_id}/acknowledge", json={"by": "fixer"})
        assert ack.status_code == 200 and ack.json()["suppress_until"] == shown, ack.text


# 3. One request_id from concurrent requests --------------------------------------------------------
@contextlib.contextmanager
def _writes_held(db_url: str) -> Iterator[None]:
    """Hold the events table's write lock from another connection: the server's group commit waits."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn = psycopg.connect(db_url)  # type: ignore[assignment]
        conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # reads go on; inserts wait
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


async def _queued(client: httpx.AsyncClient, url: str, depth: int) -> None:
    """Wait until ``depth`` requests wait for the batch writer (the health answer says, 200 or 503)."""
    deadline = time.monotonic() + 20
    while (await client.get(f"{url}/health")).json()["queue_depth"] < depth:
        assert time.monotonic() < deadline, "requests did not queue"
        await asyncio.sleep(0.05)


async def _post_in_one_group_commit(server: Server, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Post ``bodies`` concurrently so that they share one group commit (an earlier one holds the writer)."""
    async with httpx.AsyncClient(timeout=60) as client:
        with _writes_held(server.db_url):
            blocker = asyncio.ensure_future(client.post(
                f"{server.url}/v1/metrics/log", json={"model_version": "v4-blocker", "latency_ms": 1}))
            # The writer takes the blocker alone and waits for the lock; should it not have yet, the
            # blocker shares the next commit with the others, which is as good.
            await asyncio.sleep(0.2)
            posts = [asyncio.ensure_future(client.post(f"{server.url}/v1/metrics/log", json=b)) for b in bodies]
            await _queued(client, server.url, len(bodies))
        assert (await blocker).status_code == 202
        return list(await asyncio.gather(*posts))


def test_one_request_id_sent_by_requests_sharing_a_group_commit_is_accepted_by_one(
    server_factory, store_url: str
) -> None:
    server: Server = server_factory(store_url)
    single, paired = f"dup-{uuid.uuid4().hex}", f"pair-{uuid.uuid4().hex}"
    event = {"model_version": "v4-dups", "latency_ms": 3}
    bodies = [{**event, "request_id": single}] * 30
    bodies += [{"events": [{**event, "request_id": paired}] * 2}] * 10  # repeated within each request too
    answers = asyncio.run(_post_in_one_group_commit(server, bodies))
    assert {r.status_code for r in answers} == {202}
    results = [r.json() for r in answers]
    for ids, count in ((single, 1), (paired, 2)):
        mine = [r for r in results if r["ids"] == [ids] * count]
        assert sum(r["accepted"] for r in mine) == 1
        assert all(r["accepted"] + r["duplicates"] == count for r in mine)
    stats = httpx.get(f"{server.url}/v1/metrics/stats", params={"window": "5m", "model_version": "v4-dups"}).json()
    assert stats["events"] == 2


# 4. Stalled bodies -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stall_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The monitoring API in-process on real uvicorn, with the setting monitor.body_timeout_s at BODY_TIMEOUT."""
    settings = MonitorSettings(db_url=f"sqlite:///{tmp_path_factory.mktemp('stall')}/m.db", body_timeout_s=BODY_TIMEOUT)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                           http=head_timeout_protocol(HEAD_TIMEOUT)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _raw(url: str, request: bytes, pieces: Sequence[bytes] = (), gap_s: float = 0.0) -> tuple[bytes, float]:
    """Send ``request`` then ``pieces`` ``gap_s`` apart on one connection; the answer and its seconds."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BODY_TIMEOUT + 10) as sock:
        start = time.monotonic()
        sock.sendall(request)
        for piece in pieces:
            time.sleep(gap_s)
            sock.sendall(piece)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - start


@pytest.mark.parametrize("path", ["/v1/metrics/log", "/v1/alerts/1/acknowledge", "/v1/models/rollback",
                                  "/v1/models/versions"])
def test_a_body_shorter_than_its_content_length_gets_408_after_the_stall_timeout(stall_url: str, path: str) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    answer, elapsed = _raw(stall_url, head.encode() + b"{}")
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in status.lower()
    assert b'"code": "request_timeout"' in body or b'"code":"request_timeout"' in body, body
    assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + 5
    assert httpx.get(f"{stall_url}/health/live").status_code == 200


def _closed_after(url: str, pieces: Sequence[bytes], gap_s: float) -> float:
    """Seconds until the server closes a connection that sends ``pieces`` ``gap_s`` apart (then nothing)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HEAD_TIMEOUT * 10) as sock:
        start = time.monotonic()
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break  # closed while sending
            time.sleep(gap_s)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
        return time.monotonic() - start


@pytest.mark.parametrize("pieces", [[], list(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")],
                         ids=["nothing sent", "head a byte at a time"])
def test_a_connection_whose_request_head_is_too_slow_is_closed(stall_url: str, pieces: list[int]) -> None:
    # Slow-loris: uvicorn kept such connections (and their file descriptors) open for ever.
    elapsed = _closed_after(stall_url, [bytes([b]) for b in pieces], gap_s=HEAD_TIMEOUT / 5)
    assert HEAD_TIMEOUT * 0.9 <= elapsed < HEAD_TIMEOUT * 3


def test_a_kept_alive_connection_may_idle_between_requests(stall_url: str) -> None:
    # The head limit starts with a request's first byte, so a quick request after a pause is served.
    with httpx.Client(base_url=stall_url) as client:
        assert client.get("/health/live").status_code == 200
        time.sleep(HEAD_TIMEOUT * 1.5)  # under uvicorn's 5 s keep-alive
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/live").status_code == 200


@contextlib.contextmanager
def _serve_with(tmp_path: Path, **constants: float) -> Iterator[str]:
    """``monitor serve`` in a subprocess with module constants of v4runtime.serving changed; its URL."""
    port_file = tmp_path / "port"
    changes = "; ".join(f"s.{name} = {value!r}" for name, value in constants.items())
    code = f"import sys, v4runtime.serving as s; {changes}; from v4runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "monitor", "serve", "--db", f"sqlite:///{tmp_path}/m.db",
                             "--port", "0", "--port-file", str(port_file)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        proc.wait(15)


def test_serve_closes_slow_heads_with_its_setting(tmp_path: Path) -> None:
    """``monitor serve`` runs the head-timeout protocol (the limit shortened for the test)."""
    with _serve_with(tmp_path, HEADER_TIMEOUT_S=0.5) as url:
        assert 0.4 <= _closed_after(url, [b"GET / HTTP/1.1\r\n"], 0.0) < 3


def test_serve_answers_503_past_its_connection_limit(tmp_path: Path) -> None:
    """Idle connections cannot use up the server's file descriptors: past the limit, 503 at once."""
    with _serve_with(tmp_path, CONNECTION_LIMIT=3) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)
            assert httpx.get(f"{url}/health/live", timeout=5).status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{url}/health/live", timeout=5).status_code == 200


def test_a_stalled_chunked_body_gets_408_and_a_slow_steady_one_is_served(stall_url: str) -> None:
    head = b"POST /v1/metrics/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer, _ = _raw(stall_url, head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    # The limit is on a stall, not on the whole upload: pieces closer together than it are fine.
    body = b'{"model_version": "v4-slow", "latency_ms": 1}'
    thirds = [body[i : i + 16] for i in range(0, len(body), 16)]
    request = head + f"Content-Length: {len(body)}\r\n\r\n".encode()
    answer, elapsed = _raw(stall_url, request, thirds, gap_s=BODY_TIMEOUT * 0.6)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert elapsed > BODY_TIMEOUT


# 5, 6. Settings that made every request fail --------------------------------------------------------
@pytest.mark.parametrize(("variable", "value", "message"), [
    ("V4_MONITOR__RATE_LIMIT_BURST", "0.5", "monitor.rate_limit_burst: must be at least 1"),
    ("V4_MONITOR__RATE_LIMIT_BURST", "0", "monitor.rate_limit_burst: must be at least 1"),
    ("V4_MONITOR__RETENTION_DAYS", "1000000", "monitor.retention_days: must be at most 36500 days"),
    ("V4_MONITOR__AGGREGATE_RETENTION_DAYS", "36501", "monitor.aggregate_retention_days: must be at most 36500"),
])
def test_settings_that_would_fail_every_request_stop_the_start(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={variable: value})
    done = subprocess.run(
        [sys.executable, "-m", "v4runtime", "monitor", "serve", "--db", f"sqlite:///{tmp_path}/m.db", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", variable: value}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_bounds_themselves_are_accepted_and_a_burst_below_one_is_refused_in_python() -> None:
    settings = load_settings(environ={"V4_MONITOR__RATE_LIMIT_BURST": "1", "V4_MONITOR__RETENTION_DAYS": "36500"})
    assert (settings.monitor.rate_limit_burst, settings.monitor.retention_days) == (1, 36500)
    with pytest.raises(ValueError, match="at least 1"):
        Authenticator([], [], rate_per_s=10, burst=0.5)


# 7, 8. Malformed JSON and Unix-time strings ---------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/metrics/log", "/v1/models/rollback", "/v1/alerts/1/acknowledge",
                                  "/v1/models/versions"])
def test_malformed_json_names_the_body_on_every_route(open_server: Server, path: str) -> None:
    response = httpx.post(f"{open_server.url}{path}", content=b'{"to_version": }',
                          headers={"content-type": "application/json"})
    error = assert_envelope(response, 422, "validation_error")
    assert error["details"][0]["field"] == "body" and error["message"].startswith("invalid field 'body'"), error


@pytest.mark.parametrize("stamp", ["1764690000", "1764690000.5", "-1", "0"])
def test_a_numeric_string_timestamp_is_refused_like_a_number(open_server: Server, stamp: str) -> None:
    event = {"model_version": "v4-unix", "latency_ms": 1}
    as_number = httpx.post(f"{open_server.url}/v1/metrics/log", json={**event, "timestamp": float(stamp)})
    as_string = httpx.post(f"{open_server.url}/v1/metrics/log", json={**event, "timestamp": stamp})
    number, string = (assert_envelope(r, 422, "validation_error") for r in (as_number, as_string))
    assert string["details"] == number["details"]
    assert string["details"][0]["field"] == "timestamp"
    batch = httpx.post(f"{open_server.url}/v1/metrics/log", json={"events": [{**event, "timestamp": stamp}]})
    assert assert_envelope(batch, 422, "validation_error")["details"][0]["field"] == "events[0].timestamp"
    ack = httpx.post(f"{open_server.url}/v1/alerts/1/acknowledge", json={"suppress_until": stamp})
    assert assert_envelope(ack, 422, "validation_error")["details"][0]["field"] == "suppress_until"


def test_sigterm_ends_a_stalled_upload_with_503_at_once_and_exits_cleanly(server_factory) -> None:
    # A body stalled when the server is told to stop used to hold the shutdown for uvicorn's 10 s grace,
    # then be cancelled: a plain-text 500, a CancelledError traceback in the log.
    server = server_factory()
    host, port = server.url.removeprefix("http://").split(":")
    head = b"POST /v1/metrics/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head + b"{}")
        time.sleep(0.3)  # the request is in the app, waiting for the rest of its body
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        answered_s = time.monotonic() - start
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"connection: close" in status.lower() and b"retry-after: 1" in status.lower()
    assert b"x-request-id" in status.lower()
    assert json.loads(body)["error"]["code"] == "shutting_down"
    assert answered_s < 3.0
    assert server.proc.wait(10) == 0
    log = (server.workdir / "server.log").read_text()
    assert "Traceback" not in log and "CancelledError" not in log, log
