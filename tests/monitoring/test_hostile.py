"""Hostile input and failing dependencies against real servers: typed 4xx for bad input, 503 when the store
is gone, nothing acknowledged that is not stored, and a client that neither dies nor repeats a rollback."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from v4runtime import doctor
from v4runtime.client import MonitoringClient
from v4runtime.errors import MonitoringError
from v4runtime.monitoring.ingest import BatchWriter
from v4runtime.monitoring.schemas import InferenceEvent
from v4runtime.monitoring.store import open_store

from .conftest import PG_BASE, Unwritable

EVENT = {"model_version": "v4-hostile", "latency_ms": 3.0, "probability": 0.1, "prediction": "clean"}
SHA = "b" * 64


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error envelope with ``code`` and the request id of the answer."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["x-request-id"]
    return error


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that a test can cut (port closed, connections reset) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        """Listen again."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close the port and reset every forwarded connection (the database "goes away")."""
        assert self._listener is not None
        with contextlib.suppress(OSError):  # wakes the accept() blocked in the other thread (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._listener = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


# Bad input ---------------------------------------------------------------------------------------
def test_nul_characters_get_422_and_do_not_fail_other_callers(server_factory, store_url: str) -> None:
    # PostgreSQL cannot store U+0000: it used to fail the whole group commit (503 for everyone in it).
    server = server_factory(store_url)
    url = server.url
    good = [{**EVENT, "request_id": f"nul-ok-{i}"} for i in range(40)]

    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{url}/v1/metrics/log", json=body, timeout=10)

    with ThreadPoolExecutor(8) as pool:
        bad = [pool.submit(post, {**EVENT, "pod": "pod\x00-1"}) for _ in range(10)]
        oks = [pool.submit(post, event) for event in good]
        error = assert_envelope(bad[0].result(), 422, "validation_error")
        assert error["details"][0]["field"] == "pod" and "NUL" in error["message"]
        assert all(f.result().status_code == 422 for f in bad)
        assert [f.result().status_code for f in oks] == [202] * len(good)
    for field in ("method", "image_format", "error", "node"):
        assert_envelope(post({**EVENT, field: "\x00"}), 422, "validation_error")
    batch = post({"events": [EVENT, {**EVENT, "error": "a\x00"}]})
    assert assert_envelope(batch, 422, "validation_error")["details"][0]["field"] == "events[1].error"
    assert_envelope(httpx.post(f"{url}/v1/models/rollback", json={"reason": "\x00"}), 422, "validation_error")
    assert_envelope(httpx.post(f"{url}/v1/alerts/1/acknowledge", json={"by": "x\x00"}), 422, "validation_error")
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["events_ingested"] == len(good)


def test_integers_beyond_64_bits_get_422_not_500(server_factory, store_url: str) -> None:
    url = server_factory(store_url).url
    for size in (10**30, 2**63):
        response = httpx.post(f"{url}/v1/models/versions", json={"version": "huge", "sha256": SHA, "size_bytes": size})
        assert assert_envelope(response, 422, "validation_error")["details"][0]["field"] == "size_bytes"
    largest = httpx.post(f"{url}/v1/models/versions", json={"version": "huge", "sha256": SHA, "size_bytes": 2**63 - 1})
    assert largest.status_code == 201 and largest.json()["size_bytes"] == 2**63 - 1


def test_every_future_timestamp_of_a_batch_is_named(open_server) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    events = [EVENT, {**EVENT, "timestamp": ahead}, EVENT, {**EVENT, "timestamp": ahead}]
    error = assert_envelope(httpx.post(f"{open_server.url}/v1/metrics/log", json={"events": events}), 422,
                            "validation_error")
    assert [d["field"] for d in error["details"]] == ["events[1].timestamp", "events[3].timestamp"]


def test_events_older_than_the_retention_are_refused_not_accepted_then_pruned(open_server) -> None:
    """A 202 for an event the next retention pass deletes would lose it silently (default retention 30 days)."""
    old, recent = ((datetime.now(UTC) - timedelta(days=d)).isoformat() for d in (31, 29))
    events = [{**EVENT, "timestamp": recent}, {**EVENT, "timestamp": "0001-01-01T00:00:00+05:00"},
              {**EVENT, "timestamp": old}]
    error = assert_envelope(httpx.post(f"{open_server.url}/v1/metrics/log", json={"events": events}), 422,
                            "validation_error")
    assert [(d["field"], d["message"]) for d in error["details"]] == [
        ("events[1].timestamp", "older than the 30-day retention"), ("events[2].timestamp", "older than the 30-day retention")]
    accepted = httpx.post(f"{open_server.url}/v1/metrics/log", json={"events": events[:1]})
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 1


def test_registering_the_current_version_again_keeps_the_rollback_target(server_factory) -> None:
    # A retried "register v2 as current" used to retire v1, leaving nothing to roll back to.
    url = server_factory().url
    for version in ("v1", "v2", "v2"):
        response = httpx.post(f"{url}/v1/models/versions",
                              json={"version": version, "role": "current", "sha256": SHA, "size_bytes": 1})
        assert response.status_code == 201, response.text
    state = httpx.get(f"{url}/v1/models/versions").json()
    assert state["current"]["version"] == "v2" and state["previous"]["version"] == "v1"
    rolled = httpx.post(f"{url}/v1/models/rollback", json={})
    assert rolled.status_code == 200 and rolled.json()["current"]["version"] == "v1"


# Dead store --------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgresql_going_away_gives_503_everywhere_then_recovers(server_factory, pg_url: str) -> None:
    host, port = "127.0.0.1", int(PG_BASE.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy((host, port))
    server = server_factory(pg_url.replace(f"{host}:{port}", f"{host}:{proxy.port}"))
    url = server.url
    assert httpx.get(f"{url}/v1/metrics/stats").status_code == 200
    proxy.cut()
    calls = {
        "stats": lambda: httpx.get(f"{url}/v1/metrics/stats", params={"window": "5m"}),
        "alerts": lambda: httpx.get(f"{url}/v1/alerts/recent", params={"limit": 3}),
        "models": lambda: httpx.get(f"{url}/v1/models/versions"),
        "log": lambda: httpx.post(f"{url}/v1/metrics/log", json=EVENT),
        "ack": lambda: httpx.post(f"{url}/v1/alerts/1/acknowledge", json={}),
        "register": lambda: httpx.post(f"{url}/v1/models/versions",
                                       json={"version": "v9", "sha256": SHA, "size_bytes": 1}),
        "rollback": lambda: httpx.post(f"{url}/v1/models/rollback", json={}),
    }
    time.sleep(1.1)  # past the read cache's lifetime
    for name, call in calls.items():
        response = call()
        assert response.status_code == 503, (name, response.text)
        assert response.json()["error"]["code"] == "store_unavailable", name
        assert response.headers["retry-after"] == "1"
    assert httpx.get(f"{url}/health/ready").status_code == 503
    assert httpx.get(f"{url}/health").json()["dependencies"]["store"]["ok"] is False
    proxy.restore()
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/health/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{url}/v1/metrics/stats").status_code == 200
    assert httpx.post(f"{url}/v1/metrics/log", json=EVENT).status_code == 202
    proxy.cut()


def test_deleted_sqlite_file_is_refused_not_acknowledged(server_factory, tmp_path: Path) -> None:
    # Open connections kept writing into the unlinked file: 202s for events lost at the next restart.
    db = tmp_path / "gone.db"
    url = server_factory(f"sqlite:///{db}").url
    assert httpx.post(f"{url}/v1/metrics/log", json=EVENT).status_code == 202
    for path in tmp_path.glob("gone.db*"):
        path.unlink()
    error = assert_envelope(httpx.post(f"{url}/v1/metrics/log", json=EVENT), 503, "store_unavailable")
    assert "gone.db" in error["message"]
    health = httpx.get(f"{url}/health")
    assert health.status_code == 503 and health.json()["dependencies"]["store"]["ok"] is False
    assert httpx.get(f"{url}/health/ready").status_code == 503
    register = httpx.post(f"{url}/v1/models/versions", json={"version": "v1", "sha256": SHA, "size_bytes": 1})
    assert_envelope(register, 503, "store_unavailable")


def test_sqlite_file_that_cannot_be_written_is_a_503_naming_it_then_recovers(
    server_factory, tmp_path: Path, unwritable: Unwritable
) -> None:
    db = tmp_path / "ro.db"
    open_store(f"sqlite:///{db}").close()  # tables made; the server's connections will all be read-only
    unwritable.lock(db)
    url = server_factory(f"sqlite:///{db}", wait_for="/health/live").url  # it cannot be ready
    why = f"SQLite store {db}: attempt to write a readonly database"
    error = assert_envelope(httpx.post(f"{url}/v1/metrics/log", json=EVENT), 503, "store_unavailable")
    assert error["message"] == f"events not stored: {why}"
    register = httpx.post(f"{url}/v1/models/versions", json={"version": "v1", "sha256": SHA, "size_bytes": 1})
    assert assert_envelope(register, 503, "store_unavailable")["message"] == f"store unavailable: {why}"
    assert httpx.get(f"{url}/v1/metrics/stats").status_code == 200  # reads still work
    assert httpx.get(f"{url}/health/ready").json() == {
        "status": "not_ready", "detail": f"store: SQLite store {db}: ro.db is not writable"}
    # Writable again: accepted without a restart (no read-only connection stays in the pool).
    unwritable.unlock(db)
    assert httpx.get(f"{url}/health/ready").status_code == 200
    assert httpx.post(f"{url}/v1/metrics/log", json=EVENT).status_code == 202
    assert httpx.post(f"{url}/v1/models/versions", json={"version": "v1", "sha256": SHA, "size_bytes": 1}
                      ).status_code == 201


def _probe(url: str, path: str) -> tuple[int, dict[str, Any], float]:
    """Status, JSON body and seconds of one GET."""
    start = time.monotonic()
    response = httpx.get(f"{url}{path}", timeout=30)
    return response.status_code, response.json(), time.monotonic() - start


def test_readiness_is_503_while_the_sqlite_files_cannot_be_written_then_200_again(
    server_factory, tmp_path: Path, unwritable: Unwritable
) -> None:
    # The probe only read: a server whose file was made read-only said "ready" while new connections could
    # not write (and the WAL, which its old connections still wrote to, could not be checkpointed).
    db = tmp_path / "ready.db"
    url = server_factory(f"sqlite:///{db}").url
    assert httpx.post(f"{url}/v1/metrics/log", json=EVENT).status_code == 202
    for path in (db, db.with_name("ready.db-wal")):
        unwritable.lock(path)
        status, body, _ = _probe(url, "/health/ready")
        assert (status, body) == (503, {"status": "not_ready",
                                        "detail": f"store: SQLite store {db}: {path.name} is not writable"})
        status, health, _ = _probe(url, "/health")
        assert status == 503 and health["dependencies"]["store"] == {
            "ok": False, "detail": f"sqlite: SQLite store {db}: {path.name} is not writable", "latency_ms": None}
        doctor_check = doctor.monitor_api_status(url)  # the doctor reads /health: it sees it too
        assert (doctor_check.status, doctor_check.detail) == ("unhealthy", f"{url}/health answered 503 (failing: store)")
        assert _probe(url, "/health/live")[:2] == (200, {"status": "alive", "detail": None})  # unchanged
        unwritable.unlock(path)
        assert _probe(url, "/health/ready")[:2] == (200, {"status": "ready", "detail": None})
    # A read-only folder alone is no outage: the WAL files exist, and the server writes nothing else there.
    unwritable.lock(tmp_path)
    assert _probe(url, "/health/ready")[0] == 200
    assert httpx.post(f"{url}/v1/metrics/log", json=EVENT).status_code == 202
    unwritable.unlock(tmp_path)


def test_readiness_gives_up_on_a_locked_sqlite_database_within_about_a_second(server_factory, tmp_path: Path) -> None:
    # Another process holding the write lock would make every write wait out the 30 s lock timeout.
    db = tmp_path / "locked.db"
    url = server_factory(f"sqlite:///{db}").url
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # WAL mode: the write lock; readers go on
        deadline = time.monotonic() + 10
        while True:
            # A recent write check stands for up to a second; then the probe waits at most a second for the lock.
            status, body, seconds = _probe(url, "/health/ready")
            assert seconds < 3, seconds
            if status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (status, body) == (503, {"status": "not_ready",
                                        "detail": f"store: SQLite store {db}: database is locked"})
        assert _probe(url, "/health/live")[0] == 200
        assert httpx.get(f"{url}/v1/metrics/stats").status_code == 200  # reads are not blocked
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _probe(url, "/health/ready")[:2] == (200, {"status": "ready", "detail": None})


def test_a_failed_statement_does_not_poison_the_pooled_connection(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with pytest.raises(Exception, match="no_such_table"):
            store._query("SELECT * FROM no_such_table", ())
        for _ in range(3):  # the pool hands the same connection out again (LIFO)
            assert store.ping() >= 0
            assert store.recent_alerts(limit=1, severity=None, active_only=False) == []
    finally:
        store.close()


@pytest.mark.postgres
def test_group_commit_isolates_a_request_the_store_refuses(pg_url: str) -> None:
    store = open_store(pg_url)
    writer = BatchWriter(store)
    try:
        good = InferenceEvent(**EVENT, request_id="iso-good")
        # Past validation (which now refuses NUL): any data the database rejects.
        poison = InferenceEvent.model_construct(**{**good.model_dump(), "request_id": "iso-bad", "pod": "a\x00"})
        bad_future = writer.submit([poison])
        good_future = writer.submit([good])  # both queued before the writer starts: one group commit
        writer.start()
        assert good_future.result(10) == {"iso-good"}
        with pytest.raises(Exception, match="0x00"):
            bad_future.result(10)
        assert store.existing_ids(["iso-good", "iso-bad"]) == {"iso-good"}
    finally:
        writer.stop()
        store.close()


# Client ------------------------------------------------------------------------------------------
class _LoseFirstAnswer(httpx.HTTPTransport):
    """Real HTTP; the answer to the first POST to ``path`` is lost (a read timeout after the server acted)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == self.path:
            self.posts += 1
            if self.posts == 1:
                response.read()
                raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_client_does_not_repeat_a_rollback_whose_answer_was_lost(server_factory) -> None:
    url = server_factory().url
    for version in ("v1", "v2"):
        httpx.post(f"{url}/v1/models/versions",
                   json={"version": version, "role": "current", "sha256": SHA, "size_bytes": 1}).raise_for_status()
    transport = _LoseFirstAnswer("/v1/models/rollback")
    with MonitoringClient(url, transport=transport, backoff=0.01) as client:
        with pytest.raises(MonitoringError) as info:
            client.rollback(reason="bad canary")
        # Before: retried, and the server's 409 "no previous version" hid a rollback that had happened.
        assert info.value.reason == "unreachable" and "answer lost" in str(info.value)
        assert transport.posts == 1
        assert client.model_versions().current.version == "v1"


class _Scripted(http.server.BaseHTTPRequestHandler):
    """A real HTTP server that answers from a script (status, headers, body) and records what came."""

    script: list[tuple[int, dict[str, str], bytes]] = []
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self._answer()

    def do_GET(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        status, headers, body = self.script.pop(0) if self.script else (500, {}, b"")
        self.send_response(status)
        for key, value in {"content-length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    """A scripted server on 127.0.0.1 (a misbehaving proxy in front of the API)."""
    handler = type("Handler", (_Scripted,), {"script": [], "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_client_survives_unusable_retry_after_and_non_json_answers(scripted) -> None:
    url, handler = scripted
    accepted = json.dumps({"accepted": 2, "duplicates": 0, "ids": ["a", "b"]}).encode()
    handler.script += [(429, {"Retry-After": "-1"}, b""), (429, {"Retry-After": "nan"}, b""), (202, {}, accepted),
                       (200, {"content-type": "text/html"}, b"<html>login</html>"),
                       *[(502, {"content-type": "text/html"}, b"<html>bad gateway</html>")] * 4]
    client = MonitoringClient(url, flush_interval=0.01, backoff=0.01, max_retries=3)
    try:
        # Before: time.sleep(-1) raised in the sender thread, which died; every later event was lost.
        client.log(**EVENT)
        client.log(**EVENT)
        assert client.flush(timeout=10)
        assert client.counters.sent == 2 and client.counters.retries == 2
        with pytest.raises(MonitoringError) as info:  # before: a pydantic ValidationError escaped
            client.stats()
        assert info.value.reason == "invalid_response" and info.value.status_code == 200
        with pytest.raises(MonitoringError) as info:
            client.model_versions()
        assert info.value.reason == "http_502" and "bad gateway" in str(info.value)
    finally:
        client.close(timeout=1)


def test_one_event_the_server_refuses_costs_only_itself(open_server) -> None:
    # A scanner whose clock runs 2 h ahead: valid for the client's schema, refused by the server.
    ahead = datetime.now(UTC) + timedelta(hours=2)
    tag = f"v4-trim-{uuid.uuid4().hex[:6]}"
    with MonitoringClient(open_server.url, batch_size=50, flush_interval=5) as client:
        for i in range(50):
            client.log(model_version=tag, latency_ms=1.0, timestamp=ahead if i in (7, 30) else None)
        assert client.flush(timeout=10)
        counters = client.counters
        assert (counters.sent, counters.dropped) == (48, 2)  # before: (0, 50)
        assert client.stats("5m", model_version=tag).events == 48
