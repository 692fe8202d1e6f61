"""The long-lived parts of one server: store, batch writer, alert engine, notifier, auth, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from v4runtime.config import MonitorSettings
from v4runtime.monitoring.alerts import AlertEngine, Rule, WebhookNotifier, default_rules, load_rules
from v4runtime.monitoring.auth import Authenticator
from v4runtime.monitoring.ingest import BatchWriter
from v4runtime.monitoring.prom import Metrics
from v4runtime.monitoring.readcache import ReadCache
from v4runtime.monitoring.store import Store, open_store
from v4runtime.monitoring.store.base import WriteResult

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a request handler needs, created once per server (see :func:`Runtime.start`)."""

    settings: MonitorSettings
    store: Store
    writer: BatchWriter
    engine: AlertEngine
    notifier: WebhookNotifier
    auth: Authenticator
    metrics: Metrics
    started: float = field(default_factory=time.time)
    _retention_task: asyncio.Task[None] | None = None
    reads: ReadCache = field(init=False)

    def __post_init__(self) -> None:
        self.reads = ReadCache(self.store)

    @classmethod
    def start(cls, settings: MonitorSettings, *, store: Store | None = None, rules: list[Rule] | None = None) -> Runtime:
        """Open the store and start the writer, alert and webhook threads."""
        if store is None:
            store = open_store(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous,
                               sqlite_timeout_s=settings.sqlite_timeout_s)
        if rules is None:
            rules = load_rules(settings.alert_rules) if settings.alert_rules else default_rules()
        metrics = Metrics()
        external = settings.public_url or f"http://{settings.host}:{settings.port}"
        notifier = WebhookNotifier(settings.webhook_urls, external_url=external, token=settings.webhook_token)
        engine = AlertEngine(store, rules, notifier, interval_s=settings.alert_interval_s)

        def on_commit(result: WriteResult) -> None:
            metrics.observe_commit(result)
            engine.poke()

        writer = BatchWriter(store, on_commit=on_commit)
        auth = Authenticator(
            settings.read_tokens, settings.write_tokens,
            rate_per_s=settings.rate_limit_per_second, burst=settings.rate_limit_burst,
        )
        runtime = cls(settings, store, writer, engine, notifier, auth, metrics)
        metrics.gauge("v4_ingest_queue_depth", "Requests waiting for a group commit", lambda: writer.depth)
        metrics.gauge("v4_webhook_deliveries_failed", "Webhook deliveries given up", lambda: notifier.failed)
        metrics.gauge("v4_alert_evaluations", "Alert rule evaluations so far", lambda: engine.evaluations)
        store.start_background()
        writer.start()
        notifier.start()
        engine.start()
        return runtime

    def start_retention(self, period_s: float = 3600.0) -> None:
        """Prune old events and minute rows now and then every ``period_s`` (on the event loop)."""
        self._retention_task = asyncio.get_running_loop().create_task(self._retention_loop(period_s))

    async def _retention_loop(self, period_s: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.prune)
            except Exception:  # noqa: BLE001 - retry next period
                log.exception("retention pass failed")
            await asyncio.sleep(period_s)

    def prune(self, now: float | None = None) -> tuple[int, int]:
        """Apply the retention settings once; returns (events deleted, minute rows deleted)."""
        now = time.time() if now is None else now
        return self.store.prune(
            now - self.settings.retention_days * 86400, now - self.settings.aggregate_retention_days * 86400
        )

    async def stop(self) -> None:
        """Commit what is queued, stop the threads and close the store."""
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        await asyncio.to_thread(self.writer.stop)
        await asyncio.to_thread(self.engine.stop)
        await asyncio.to_thread(self.notifier.stop)
        self.store.close()
