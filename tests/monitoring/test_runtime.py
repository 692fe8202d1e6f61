"""Retention as configured: the runtime prunes raw events and minute rows by their own ages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from v4runtime.config import MonitorSettings
from v4runtime.monitoring.runtime import Runtime
from v4runtime.monitoring.schemas import InferenceEvent


def _events(age_days: float, n: int, tag: str) -> list[InferenceEvent]:
    ts = datetime.now(UTC) - timedelta(days=age_days)
    return [InferenceEvent(request_id=f"{tag}-{i}", timestamp=ts, model_version="v4", latency_ms=5.0) for i in range(n)]


def test_retention_follows_the_settings(tmp_path: Path) -> None:
    settings = MonitorSettings(db_url=f"sqlite:///{tmp_path}/r.db", retention_days=7, aggregate_retention_days=90)
    runtime = Runtime.start(settings)
    try:
        store = runtime.store
        store.write_events(_events(1, 10, "fresh") + _events(30, 20, "month") + _events(200, 5, "old"))
        deleted_events, deleted_minutes = runtime.prune()
        assert deleted_events == 25  # raw events older than 7 days
        assert deleted_minutes == 1  # only the 200-day-old minute is past 90 days
        assert store.count_events() == 10
        start = int((datetime.now(UTC) - timedelta(days=31)).timestamp())
        kept = sum(agg.n for _, agg in store.read_minutes(start, start + 2 * 86400))
        assert kept == 20  # the month-old minute row is still there for long-window stats
    finally:
        asyncio.run(runtime.stop())


def test_sqlite_lock_timeout_follows_the_settings(tmp_path: Path) -> None:
    runtime = Runtime.start(MonitorSettings(db_url=f"sqlite:///{tmp_path}/t.db", sqlite_timeout_s=2.5))
    try:
        with runtime.store._pool.connection() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    finally:
        asyncio.run(runtime.stop())
