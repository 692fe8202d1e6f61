"""Both store backends, for real: idempotent group commits, minute aggregates, retention, alerts, models."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from v4runtime.errors import StoreError
from v4runtime.monitoring.aggregates import build_stats
from v4runtime.monitoring.schemas import InferenceEvent
from v4runtime.monitoring.store import AlertRecord, ModelRecord, open_store

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
