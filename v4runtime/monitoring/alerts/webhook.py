"""Webhook delivery in Alertmanager's webhook JSON shape (version 4), with retries and backoff."""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from v4runtime.monitoring.store import AlertRecord

log = logging.getLogger(__name__)

#: Alertmanager's "not ended" time.
ZERO_TIME = "0001-01-01T00:00:00Z"


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ZERO_TIME
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(alert: AlertRecord, *, external_url: str, receiver: str = "v4runtime") -> dict[str, Any]:
    """The webhook body Alertmanager would send for this one alert."""
    status = "resolved" if alert.status == "resolved" else "firing"
    group_labels = {"alertname": alert.rule}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert.rule}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": dict(alert.labels),
        "commonAnnotations": dict(alert.annotations),
        "externalURL": external_url,
        "alerts": [
            {
                "status": status,
                "labels": dict(alert.labels),
                "annotations": {**alert.annotations, "value": f"{alert.value:g}" if alert.value is not None else ""},
                "startsAt": _iso(alert.starts_at),
                "endsAt": _iso(alert.ends_at) if status == "resolved" else ZERO_TIME,
                "generatorURL": f"{external_url.rstrip('/')}/v1/alerts/recent",
                "fingerprint": alert.fingerprint,
            }
        ],
    }


class WebhookNotifier:
    """Posts payloads to every URL on a background thread.

    A delivery is retried on connection errors, 429 and 5xx with exponential backoff
    (``backoff_s``, doubled each time, at most ``max_backoff_s``) up to ``max_attempts`` tries.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        external_url: str = "http://127.0.0.1:8400",
        token: str | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.urls = list(urls)
        self.external_url = external_url
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.attempts = 0

    def __call__(self, alert: AlertRecord) -> None:
        """Queue the alert for every URL (never blocks the caller)."""
        payload = alertmanager_payload(alert, external_url=self.external_url)
        for url in self.urls:
            try:
                self._queue.put_nowait((url, payload))
            except queue.Full:
                self.failed += 1
                log.error("webhook queue full; dropped %s for %s", alert.rule, url)

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread = threading.Thread(target=self._run, name="v4-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the queued deliveries (bounded by ``timeout``)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._client.close()

    def deliver(self, url: str, payload: dict[str, Any]) -> bool:
        """POST one payload with retries; returns whether it was accepted (2xx)."""
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            self.attempts += 1
            try:
                response = self._client.post(url, json=payload)
                if response.is_success:
                    self.delivered += 1
                    return True
                retry = response.status_code == 429 or response.status_code >= 500
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                retry, reason = True, str(exc) or type(exc).__name__
            if not retry or attempt == self.max_attempts:
                break
            log.warning("webhook %s failed (%s); retry %d in %.1fs", url, reason, attempt, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        self.failed += 1
        log.error("webhook %s gave up after %d attempts", url, attempt)
        return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.deliver(*item)
