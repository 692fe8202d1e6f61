"""Both store backends, for real: idempotent group commits, minute aggregates, retention, alerts, models."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest

from v4runtime.errors import StoreError
from v4runtime.monitoring.aggregates import build_stats
from v4runtime.monitoring.schemas import InferenceEvent
from v4runtime.monitoring.store import AlertRecord, ModelRecord, Store, open_store

from .conftest import PG_BASE, Unwritable

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_events(n: int, *, start: datetime = T0, span_s: int = 3600, seed: int = 0) -> list[InferenceEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        error = rng.random() < 0.05
        stego = rng.random() < 0.2
        events.append(InferenceEvent(
            request_id=f"ev-{seed}-{i}", timestamp=start + timedelta(seconds=rng.uniform(0, span_s)),
            model_version=rng.choice(["v4-a", "v4-b"]), latency_ms=rng.lognormvariate(2.5, 0.6),
            probability=None if error else (0.9 if stego else 0.05), prediction=None if error else
            ("stego" if stego else "clean"), label=None if error or rng.random() < 0.5 else
            ("stego" if (stego if rng.random() < 0.9 else not stego) else "clean"),
            error="truncated" if error else None,
        ))
    return events


def test_group_commit_is_idempotent_and_aggregates_match_raw_events(store_url: str) -> None:
    store = open_store(store_url)
    try:
        events = make_events(3000)
        first = store.write_events(events[:2000])
        assert len(first.inserted) == 2000
        # A retried batch overlapping the first: only the new 1000 are stored and counted.
        second = store.write_events(events[1000:])
        assert len(second.inserted) == 1000
        assert store.count_events() == 3000
        assert store.existing_ids(["ev-0-0", "ev-0-2999", "nope"]) == {"ev-0-0", "ev-0-2999"}

        start = int(T0.timestamp())
        rows = store.read_minutes(start, start + 3600)
        assert 55 <= len(rows) <= 60  # one row per minute, whatever the number of events
        stats = build_stats(rows, start=start, end=start + 3600, window="1h", granularity_s=300,
                            granularity="5m", model_version=None)
        errors = [e for e in events if e.error]
        ok = [e for e in events if not e.error]
        assert stats.events == 3000 and stats.errors == len(errors)
        assert stats.stego_rate == pytest.approx(sum(e.prediction == "stego" for e in ok) / len(ok), abs=1e-6)
        negatives = [e for e in ok if e.label == "clean"]
        assert stats.fpr == pytest.approx(sum(e.prediction == "stego" for e in negatives) / len(negatives), abs=1e-6)
        exact = np.percentile([e.latency_ms for e in events], [50, 95, 99])
        for got, want in zip((stats.latency_ms.p50, stats.latency_ms.p95, stats.latency_ms.p99), exact, strict=True):
            assert got == pytest.approx(want, rel=0.12)
        assert len(stats.series) == 12 and sum(p.events for p in stats.series) == 3000

        only_a = build_stats(store.read_minutes(start, start + 3600, "v4-a"), start=start, end=start + 3600,
                             window="1h", granularity_s=60, granularity="1m", model_version="v4-a")
        assert only_a.events == sum(e.model_version == "v4-a" for e in events)
    finally:
        store.close()


def test_retention_prunes_old_events_and_minutes(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.write_events(make_events(200, start=T0 - timedelta(days=40), span_s=600, seed=1))
        store.write_events(make_events(100, start=T0, span_s=600, seed=2))
        deleted_events, deleted_minutes = store.prune(T0.timestamp() - 86400, T0.timestamp() - 86400)
        assert deleted_events == 200 and deleted_minutes > 0
        assert store.count_events() == 100
        assert store.read_minutes(0, int(T0.timestamp())) == []
    finally:
        store.close()


def test_alert_and_model_records_round_trip(store_url: str) -> None:
    store = open_store(store_url)
    try:
        alert = AlertRecord(id=0, fingerprint="abc", rule="R", status="pending", severity="warning", value=1.0,
                            threshold=0.5, labels={"alertname": "R"}, annotations={"summary": "s"},
                            starts_at=1.0, ends_at=None, updated_at=1.0)
        alert.id = store.insert_alert(alert)
        assert [a.id for a in store.active_alerts()] == [alert.id]
        alert.status, alert.ends_at, alert.updated_at = "resolved", 5.0, 5.0
        store.update_alert(alert)
        assert store.active_alerts() == []
        assert store.get_alert(alert.id).status == "resolved"  # type: ignore[union-attr]
        assert store.recent_alerts(limit=10, severity="critical", active_only=False) == []
        store.save_models([ModelRecord("v1", "current", "0" * 64, 10, 0.001, 0.9, 1.0, 1.0)])
        assert store.list_models()[0].fpr == pytest.approx(0.001)
    finally:
        store.close()


def test_bad_urls_raise_store_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="unsupported database URL"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="file path"):
        open_store("sqlite:///:memory:")
    with pytest.raises(StoreError, match="PostgreSQL"):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_fails_within_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener that accepts and never speaks (like a firewall that drops packets) is a 503 in seconds, not a hang."""
    import socket
    import time

    from v4runtime.monitoring.store import postgres

    assert "connect_timeout=5" in postgres.connection_info("postgresql://postgres@127.0.0.1:5432/v4")
    assert "connect_timeout=9" in postgres.connection_info("postgresql://postgres@127.0.0.1/v4?connect_timeout=9")
    with pytest.raises(StoreError, match="invalid PostgreSQL URL"):
        postgres.connection_info("postgresql://postgres@127.0.0.1/v4?no_such_option=1")
    monkeypatch.setattr(postgres, "DEFAULT_CONNECT_TIMEOUT", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nothing ever answers the startup packet
        start = time.monotonic()
        with pytest.raises(StoreError, match="PostgreSQL"):
            open_store(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/v4")
        assert time.monotonic() - start < 10


def test_sqlite_checkpoints_run_on_their_own_thread(tmp_path) -> None:
    # A server's store disables SQLite's in-commit checkpoints; its thread moves the WAL into the file.
    from v4runtime.monitoring.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "ckpt.db")
    try:
        store.start_background(period_s=0.05)
        empty = (tmp_path / "ckpt.db").stat().st_size
        store.write_events(make_events(2000))
        deadline = time.monotonic() + 10
        while (tmp_path / "ckpt.db").stat().st_size <= empty and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "ckpt.db").stat().st_size > empty
        with store._pool.connection() as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        store.close()


# Driver errors: a store that cannot be used raises StoreError, naming it -----------------------------
MODEL = ModelRecord("v1", "current", "0" * 64, 10, 0.001, 0.9, 1.0, 1.0)
ALERT = AlertRecord(id=1, fingerprint="f", rule="R", status="pending", severity="warning", value=1.0, threshold=0.5,
                    labels={}, annotations={}, starts_at=1.0, ends_at=None, updated_at=1.0)
#: Every public method that writes, with arguments.
WRITES: dict[str, Callable[[Store], Any]] = {
    "write_events": lambda store: store.write_events(make_events(5, seed=7)),
    "save_models": lambda store: store.save_models([MODEL]),
    "update_models": lambda store: store.update_models(lambda records: [MODEL]),
    "prune": lambda store: store.prune(T0.timestamp(), T0.timestamp()),
    "insert_alert": lambda store: store.insert_alert(ALERT),
    "update_alert": lambda store: store.update_alert(ALERT),
}
#: Every public method that reads, with arguments.
READS: dict[str, Callable[[Store], Any]] = {
    "ping": lambda store: store.ping(),
    "count_events": lambda store: store.count_events(),
    "existing_ids": lambda store: store.existing_ids(["ev-7-0"]),
    "read_minutes": lambda store: store.read_minutes(0, 2**40),
    "get_alert": lambda store: store.get_alert(1),
    "active_alerts": lambda store: store.active_alerts(),
    "recent_alerts": lambda store: store.recent_alerts(limit=5, severity=None, active_only=False),
    "list_models": lambda store: store.list_models(),
}


def _store_error(call: Callable[[], Any], message: str, cause: type[BaseException]) -> StoreError:
    with pytest.raises(StoreError) as info:
        call()
    assert str(info.value) == message
    assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)
    return info.value


def test_sqlite_file_that_cannot_be_written_is_a_store_error_on_every_write_then_recovers(
    tmp_path: Path, unwritable: Unwritable
) -> None:
    db = tmp_path / "ro.db"
    store = open_store(f"sqlite:///{db}")
    try:
        # Every connection the pool opens from here on is read-only (SQLite falls back to it silently).
        unwritable.lock(db)
        for name, write in WRITES.items():
            error = _store_error(lambda write=write: write(store),
                                 f"SQLite store {db}: attempt to write a readonly database", sqlite3.OperationalError)
            assert "\n" not in str(error), name
        for read in READS.values():  # reads still work
            read(store)
        assert store.count_events() == 0 and store.list_models() == []
        # Fixed on disk: writes work again without reopening the store (no read-only connection stays pooled).
        unwritable.unlock(db)
        assert len(store.write_events(make_events(5, seed=7)).inserted) == 5
        store.save_models([MODEL])
        assert store.count_events() == 5 and store.existing_ids(["ev-7-0"]) == {"ev-7-0"}
    finally:
        store.close()


def test_sqlite_file_that_is_no_longer_a_database_is_a_store_error_on_every_call(tmp_path: Path) -> None:
    db = tmp_path / "garbled.db"
    store = open_store(f"sqlite:///{db}")
    try:
        with db.open("r+b") as f:  # same file, same inode: only its header is garbled
            f.write(b"not a database, not any more" * 4)
        for call in (*WRITES.values(), *READS.values()):
            _store_error(lambda call=call: call(store), f"SQLite store {db}: file is not a database", sqlite3.DatabaseError)
    finally:
        store.close()


def test_sqlite_programming_errors_stay_driver_errors(tmp_path: Path) -> None:
    # A bug is not an outage: the API answers it 500, and the ingest writer isolates the request that hit it.
    store = open_store(f"sqlite:///{tmp_path}/bugs.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="syntax error") as syntax:
            store._query("SELEC 1", ())
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL") as constraint:
            store._execute("INSERT INTO models (version) VALUES (?)", ("v1",))
        assert not isinstance(syntax.value, StoreError) and not isinstance(constraint.value, StoreError)
        assert store.ping() >= 0
    finally:
        store.close()


@pytest.mark.postgres
def test_postgresql_connection_lost_is_a_store_error_without_the_password_then_recovers(pg_url: str) -> None:
    import psycopg

    app = f"v4test_{uuid.uuid4().hex[:8]}"
    base = urlsplit(pg_url)
    # The test server trusts local connections, so a password in the URL is sent and ignored.
    url = urlunsplit(base._replace(netloc=f"{base.username}:s3cret-pw@{base.hostname}:{base.port}",
                                   query=f"{base.query}&application_name={app}"))
    label = f"PostgreSQL store {base.username}@{base.hostname}:{base.port}{base.path}"
    store = open_store(url)
    try:
        store.write_events(make_events(5))  # the pool now holds a live connection
        for name, call in {**WRITES, **READS}.items():
            with psycopg.connect(PG_BASE, autocommit=True) as admin:
                # The timeout makes it wait until the backend is gone.
                killed = admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                                       "WHERE application_name = %s", (app,)).fetchall()
            assert killed == [(True,)], name
            with pytest.raises(StoreError) as info:
                call(store)
            message = str(info.value)
            assert message.startswith(f"{label}: "), (name, message)
            assert "s3cret-pw" not in message and "\n" not in message, (name, message)
            assert isinstance(info.value.__cause__, psycopg.OperationalError | psycopg.InterfaceError), name
            assert store.count_events() == 5, name  # the dead connection was dropped, a new one opened
    finally:
        store.close()


# Write checks (readiness), lock timeouts, pool exhaustion -------------------------------------------
def test_sqlite_write_check_refuses_files_that_cannot_be_written_then_recovers(
    tmp_path: Path, unwritable: Unwritable
) -> None:
    db = tmp_path / "check.db"
    store = open_store(f"sqlite:///{db}")
    try:
        store.write_events(make_events(5))  # the WAL files exist from here on
        assert store.check_writable() >= 0
        for path in (db, db.with_name("check.db-wal"), db.with_name("check.db-shm")):
            unwritable.lock(path)
            with pytest.raises(StoreError) as info:
                store.check_writable()
            assert str(info.value) == f"SQLite store {db}: {path.name} is not writable"
            assert store.ping() >= 0  # what readiness checked before: it still answers
            unwritable.unlock(path)
            assert store.check_writable() >= 0
    finally:
        store.close()


def test_sqlite_write_check_waits_for_a_lock_only_its_own_timeout_and_writes_nothing(tmp_path: Path) -> None:
    from v4runtime.monitoring.store.sqlite import SQLiteStore

    db = tmp_path / "lock.db"
    store = SQLiteStore(db)  # a 30 s lock timeout for everything else
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        for timeout_s in (0.2, 1.0):
            start = time.monotonic()
            with pytest.raises(StoreError) as info:
                store.check_writable(timeout_s)
            elapsed = time.monotonic() - start
            assert str(info.value) == f"SQLite store {db}: database is locked"
            assert timeout_s * 0.9 <= elapsed < timeout_s + 2, (timeout_s, elapsed)
        other.execute("ROLLBACK")
        assert store.check_writable() >= 0
        with store._pool.connection() as conn:  # the short wait was the probe's only
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
            assert not conn.in_transaction
        assert db.with_name("lock.db-wal").stat().st_size == 0  # nothing was written
        assert store.count_events() == 0
    finally:
        other.close()
        store.close()


def test_sqlite_lock_timeout_is_a_setting_and_a_write_locked_past_it_is_a_store_error(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    default = open_store(f"sqlite:///{tmp_path}/default.db")
    try:
        with default._pool.connection() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    finally:
        default.close()
    for bad in (0, -1.0, float("inf"), float("nan"), 3601):
        with pytest.raises(StoreError, match="sqlite timeout must be more than 0 and at most 3600 seconds"):
            open_store(f"sqlite:///{db}", sqlite_timeout_s=bad)
    store = open_store(f"sqlite:///{db}", sqlite_timeout_s=0.5)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the timeout
        for name, write in WRITES.items():
            start = time.monotonic()
            _store_error(lambda write=write: write(store), f"SQLite store {db}: database is locked",
                         sqlite3.OperationalError)
            elapsed = time.monotonic() - start
            assert 0.45 <= elapsed < 3, (name, elapsed)
        other.execute("ROLLBACK")
        assert len(store.write_events(make_events(5)).inserted) == 5
    finally:
        other.close()
        store.close()


def test_a_pool_with_no_free_connection_is_a_store_error_naming_the_store(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store._pool.wait_s = 0.2
        with contextlib.ExitStack() as borrowed:  # every connection busy (long requests, say)
            for _ in range(store._pool._size):
                borrowed.enter_context(store._pool.connection())
            start = time.monotonic()
            with pytest.raises(StoreError) as info:
                store.count_events()
            assert str(info.value) == f"{store.label}: no database connection free after 0.2 s"
            assert time.monotonic() - start < 2
            with pytest.raises(StoreError, match="no database connection free after 0.05 s"):
                store.check_writable(0.05)  # readiness waits its own, shorter, time
        assert store.count_events() == 0
    finally:
        store.close()


@pytest.mark.postgres
def test_postgresql_read_only_sessions_fail_the_write_check_and_writes_are_store_errors(pg_url: str) -> None:
    import psycopg

    store = open_store(pg_url)
    try:
        assert store.check_writable() >= 0
        with store._pool.connection() as conn:  # the pool's only connection, as on a read-only standby
            conn.execute("SET SESSION default_transaction_read_only = on")
            conn.commit()
        with pytest.raises(StoreError) as info:
            store.check_writable()
        assert str(info.value) == f"{store.label}: transactions are read-only (default_transaction_read_only is on)"
        assert store.count_events() == 0  # reads still work
        error = _store_error(lambda: store.write_events(make_events(5)),
                             f"{store.label}: cannot execute INSERT in a read-only transaction",
                             psycopg.errors.ReadOnlySqlTransaction)
        assert "\n" not in str(error)
        with store._pool.connection() as conn:
            conn.execute("SET SESSION default_transaction_read_only = off")
            conn.commit()
        assert store.check_writable() >= 0
        assert len(store.write_events(make_events(5)).inserted) == 5
    finally:
        store.close()
