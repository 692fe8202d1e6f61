"""Clients of the monitoring API: :class:`MonitoringClient` (threads) and :class:`AsyncMonitoringClient` (asyncio).

Logging is fire-and-forget: :meth:`MonitoringClient.log` puts the event in a bounded buffer and
returns at once; a background worker posts batches with retries and backoff (429 honouring
``Retry-After``, 5xx, network errors). When the server is slow or down the buffer fills and further
events are counted as dropped (see :attr:`MonitoringClient.counters`) — the caller's inference path is
never blocked and never sees an exception. :meth:`~MonitoringClient.close` flushes what is buffered.

The read calls (``health``, ``stats``, ``recent_alerts``, ...) are ordinary requests that return the
API's typed models and raise :class:`v4runtime.errors.MonitoringError` on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from v4runtime.errors import MonitoringError
from v4runtime.monitoring.schemas import (
    Alert,
    AlertList,
    Health,
    InferenceEvent,
    LogAccepted,
    ModelVersion,
    ModelVersions,
    Stats,
)

__all__ = ["AsyncMonitoringClient", "ClientCounters", "MonitoringClient"]

log = logging.getLogger(__name__)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class ClientCounters:
    """What the background sender has done so far."""

    sent: int = 0
    """Events the server acknowledged (202)."""
    dropped: int = 0
    """Events given up: buffer full, rejected by the server, or still unsent at close."""
    invalid: int = 0
    """Events that failed validation in :meth:`MonitoringClient.log` (never sent)."""
    retries: int = 0
    """Requests repeated after 429, 5xx or a network error."""
    failed_batches: int = 0
    """Batches that failed all their attempts (their events went back to the buffer when it had room)."""
    buffered: int = 0
    """Events waiting in the buffer now."""
    in_flight: int = 0
    """Events in a request to the server now (after a close: a request the server has not answered
    yet; its events are counted as sent or dropped when it ends)."""


def _event(event: InferenceEvent | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> InferenceEvent:
    if event is None:
        event = InferenceEvent.model_validate(dict(fields))
    elif not isinstance(event, InferenceEvent):
        event = InferenceEvent.model_validate({**event, **fields})
    return event


def _payload(events: Iterable[InferenceEvent]) -> dict[str, Any]:
    return {"events": [e.model_dump(mode="json", exclude_none=True) for e in events]}


def _error(response: httpx.Response) -> MonitoringError:
    try:
        body = response.json()["error"]
        code, message, rid = body["code"], body["message"], body.get("request_id")
    except (ValueError, KeyError, TypeError):
        code, message, rid = f"http_{response.status_code}", response.text[:200], None
    rid = rid or response.headers.get("x-request-id")
    return MonitoringError(
        f"monitoring API answered {response.status_code}: {message}", reason=code,
        status_code=response.status_code, request_id=rid,
    )


def _delay(attempt: int, backoff: float, cap: float, response: httpx.Response | None) -> float:
    """Seconds before the next attempt: the 429's ``Retry-After`` when usable, else exponential backoff."""
    if response is not None and response.status_code == 429:
        try:
            wait = float(response.headers.get("retry-after", backoff))
        except ValueError:  # an HTTP date or garbage
            wait = -1.0
        if math.isfinite(wait) and wait >= 0:  # NaN or a negative value would make time.sleep raise
            return min(wait, cap)
    return min(backoff * 2**attempt, cap)


#: Failures after which a request surely was not processed (it never reached the server).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _retryable(error: httpx.HTTPError | None, response: httpx.Response | None, idempotent: bool) -> bool:
    """Whether a failed attempt may be repeated.

    A non-idempotent request (a rollback) is repeated only when the server cannot have acted on it:
    a 429, or a connection that was never made. After a timeout or a 5xx it may have been applied.
    """
    if response is not None:
        return response.status_code in _RETRY_STATUS if idempotent else response.status_code == 429
    return idempotent or isinstance(error, _NOT_SENT)


def _parse(model: type[BaseModel], response: httpx.Response) -> Any:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise MonitoringError(
            f"monitoring API answered {response.status_code} with a body that is not a {model.__name__}: "
            f"{response.text[:200]!r}", reason="invalid_response", status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from exc


def _rejected_events(response: httpx.Response, size: int) -> set[int]:
    """Indices of the batch's events a 422 names (``events[3].timestamp``); empty when it names none."""
    try:
        details = response.json()["error"]["details"]
        fields = [d["field"] for d in details]
    except (ValueError, KeyError, TypeError):
        return set()
    bad: set[int] = set()
    for field in fields:
        match = re.match(r"^events\[(\d+)\]", str(field))
        if match is None:
            return set()  # an error about the request as a whole: no event to single out
        bad.add(int(match.group(1)))
    return bad if bad and max(bad) < size else set()


_MAX_TRIMS = 3


def _drop_rejected(
    batch: list[InferenceEvent], response: httpx.Response, counters: ClientCounters, trims: int
) -> list[InferenceEvent]:
    """After a 4xx: count the events the server refused as dropped; returns the rest, to send again.

    A 422 naming some events (``events[3].timestamp``: one scanner's clock ahead) costs only those
    events; any other refusal, or a batch refused too often, costs the whole batch (returns ``[]``).
    """
    bad = _rejected_events(response, len(batch)) if response.status_code == 422 and trims < _MAX_TRIMS else set()
    keep = [e for i, e in enumerate(batch) if i not in bad] if bad else []
    counters.dropped += len(batch) - len(keep)
    log.error("monitoring API rejected %d of %d events: %s", len(batch) - len(keep), len(batch), _error(response))
    return keep


def _report_unsent(held: int, in_flight: int, timeout: float) -> None:
    """Log what a close could not send in its time, so a shutdown never loses events unseen."""
    if held or in_flight:
        log.warning(
            "monitoring client closed after %g s with events unsent: %d dropped, %d in a request still out "
            "(dropped unless it succeeds)", timeout, held, in_flight,
        )


class _Buffer:
    """Bounded FIFO of events shared by ``log`` and the sender (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[InferenceEvent] = deque()
        self.lock = threading.Lock()
        self.counters = ClientCounters()
        self.closed = False

    def push(self, event: InferenceEvent) -> bool:
        with self.lock:
            if self.closed or len(self.items) >= self.capacity:
                self.counters.dropped += 1
                return False
            self.items.append(event)
            return True

    def take(self, n: int) -> list[InferenceEvent]:
        with self.lock:
            return [self.items.popleft() for _ in range(min(n, len(self.items)))]

    def give_back(self, events: list[InferenceEvent]) -> None:
        """Return an unsent batch to the front; what does not fit is dropped."""
        with self.lock:
            room = 0 if self.closed else self.capacity - len(self.items)
            keep = events[:room] if room > 0 else []
            self.counters.dropped += len(events) - len(keep)
            self.items.extendleft(reversed(keep))

    def close(self) -> int:
        """Take no more events: those held now, and a batch still being sent that fails later,
        count as dropped (under the lock, so no event is lost between the sender and ``close``).
        Returns how many were held."""
        with self.lock:
            self.closed = True
            held = len(self.items)
            self.counters.dropped += held
            self.items.clear()
            return held

    def __len__(self) -> int:
        return len(self.items)


class _Base:
    def __init__(
        self, base_url: str, token: str | None, timeout: float, batch_size: int, max_buffer: int,
        flush_interval: float, max_retries: int, backoff: float, max_backoff: float,
    ) -> None:
        if batch_size < 1 or max_buffer < 1:
            raise ValueError("batch_size and max_buffer must be positive")
        self.base_url = base_url.rstrip("/")
        self.api_url = self.base_url + "/v1"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.batch_size = min(batch_size, 10_000)
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._buffer = _Buffer(max_buffer)
        self._inflight = 0  # events of the batch the sender has out now
        self._warned_invalid = False

    @property
    def counters(self) -> ClientCounters:
        """A snapshot of the sender's counters."""
        c = self._buffer.counters
        return ClientCounters(c.sent, c.dropped, c.invalid, c.retries, c.failed_batches, len(self._buffer), self._inflight)

    def _drop_crashed(self, batch: list[InferenceEvent]) -> bool:
        """Count a batch whose send raised unexpectedly as dropped (sent again, it would fail again)."""
        log.exception("monitoring client: sending %d events failed unexpectedly (dropped)", len(batch))
        self._buffer.counters.dropped += len(batch)
        return False

    def _push(self, event: InferenceEvent | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> bool:
        try:
            item = _event(event, fields)
        except (ValidationError, TypeError) as exc:
            self._buffer.counters.invalid += 1
            if not self._warned_invalid:
                self._warned_invalid = True
                log.warning("monitoring event rejected by validation (counted as invalid): %s", exc)
            return False
        return self._buffer.push(item)

    def _stats_params(self, window: str, granularity: str, model_version: str | None) -> dict[str, str]:
        params = {"window": window, "granularity": granularity}
        if model_version is not None:
            params["model_version"] = model_version
        return params

    @staticmethod
    def _alert_params(severity: str | None, limit: int, active_only: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "active_only": str(active_only).lower()}
        if severity is not None:
            params["severity"] = severity
        return params


class MonitoringClient(_Base):
    """Synchronous client with a background sender thread.

    Args:
        base_url: server root, e.g. ``http://127.0.0.1:8400``.
        token: bearer token (a write token to log events).
        timeout: seconds per HTTP request.
        batch_size: events per POST.
        max_buffer: events held at most while the server is slow or down; beyond it events are dropped.
        flush_interval: seconds between background flushes when the buffer is not full.
        max_retries: retries per request after a 429, 5xx or network error.
        backoff: first retry delay in seconds (doubled each retry, at most ``max_backoff``).

    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 2.0,
        batch_size: int = 500,
        max_buffer: int = 10_000,
        flush_interval: float = 1.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, batch_size, max_buffer, flush_interval, max_retries, backoff, max_backoff)
        self._http = httpx.Client(headers=self.headers, timeout=timeout, transport=transport)
        self._sender_http = httpx.Client(headers=self.headers, timeout=timeout, transport=transport)
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="v4-monitoring-client", daemon=True)
        self._thread.start()

    def __enter__(self) -> MonitoringClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Logging --------------------------------------------------------------------------------
    def log(self, event: InferenceEvent | Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """Queue one event (an :class:`InferenceEvent`, a mapping, or keyword fields); never blocks or raises.

        Returns:
            ``False`` when the event was dropped (buffer full) or invalid.
        """
        queued = self._push(event, fields)
        if queued and len(self._buffer) >= self.batch_size:
            with self._wake:
                self._wake.notify()
        return queued

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the buffer is sent (or ``timeout`` passes); returns whether it is empty."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._wake.notify()
        while time.monotonic() < deadline:
            if not len(self._buffer) and not self._inflight:
                return True
            with self._wake:
                self._wake.notify()
            time.sleep(0.01)
        return not len(self._buffer) and not self._inflight

    def close(self, timeout: float = 5.0) -> None:
        """Flush and stop the sender within ``timeout`` seconds in all; what stayed unsent counts as dropped.

        A batch whose request is still out when the time is up (a monitoring API that accepts
        connections and never answers) is counted as dropped once that request fails.
        """
        if self._closing:
            return
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self._closing = True
        with self._wake:
            self._wake.notify()
        # One budget for both waits: a dead API must not make close() take twice its timeout.
        self._thread.join(max(0.0, deadline - time.monotonic()))
        _report_unsent(self._buffer.close(), self._inflight, timeout)
        self._http.close()
        # The sender's own HTTP client is closed by the sender as it ends: closing it here, under a
        # request still out, would make that request raise and lose its batch from the counters.

    def _run(self) -> None:
        try:
            self._send_until_closed()
        finally:
            self._sender_http.close()

    def _send_until_closed(self) -> None:
        while not self._closing:
            with self._wake:
                if len(self._buffer) < self.batch_size:
                    self._wake.wait(self.flush_interval)
            while len(self._buffer) and not self._closing:
                batch = self._buffer.take(self.batch_size)
                self._inflight = len(batch)
                try:
                    ok = self._send(batch)
                except Exception:  # a bug or a broken transport must not end the sender thread
                    ok = self._drop_crashed(batch)
                finally:
                    self._inflight = 0
                if not ok:
                    # Server down or overloaded: wait before the next try instead of spinning.
                    with self._wake:
                        self._wake.wait(max(self.flush_interval, self.backoff))
                    break

    def _send(self, batch: list[InferenceEvent]) -> bool:
        counters = self._buffer.counters
        attempt = trims = 0
        while True:
            response = None
            try:
                response = self._sender_http.post(f"{self.api_url}/metrics/log", json=_payload(batch))
                if response.status_code == 202:
                    counters.sent += len(batch)
                    return True
                if response.status_code not in _RETRY_STATUS:
                    batch = _drop_rejected(batch, response, counters, trims)
                    if batch:
                        trims += 1
                        continue  # the rest of the batch is fine: send it now
                    return True  # retrying cannot help; do not block the queue
            except httpx.HTTPError:
                pass
            if attempt >= self.max_retries or self._closing:
                break
            counters.retries += 1
            time.sleep(_delay(attempt, self.backoff, self.max_backoff, response))
            attempt += 1
        counters.failed_batches += 1
        self._buffer.give_back(batch)
        return False

    # Requests -------------------------------------------------------------------------------
    def _request(self, method: str, url: str, model: type[BaseModel], *, idempotent: bool = True,
                 **kwargs: Any) -> Any:
        if self._closing:
            raise MonitoringError("the monitoring client is closed", reason="closed")
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self._http.request(method, url, **kwargs)
                if response.is_success:
                    return _parse(model, response)
                if attempt == self.max_retries or not _retryable(None, response, idempotent):
                    raise _error(response)
            except httpx.HTTPError as exc:
                if attempt == self.max_retries or not _retryable(exc, None, idempotent):
                    raise MonitoringError(f"monitoring API unreachable: {exc!r}", reason="unreachable") from exc
            time.sleep(_delay(attempt, self.backoff, self.max_backoff, response))
        raise AssertionError("unreachable")  # pragma: no cover

    def log_now(self, events: Iterable[InferenceEvent | Mapping[str, Any]]) -> LogAccepted:
        """Send events now, bypassing the buffer; returns the server's answer.

        Raises:
            MonitoringError: the server refused the events or could not be reached.
        """
        items = [_event(e, {}) for e in events]
        return self._request("POST", f"{self.api_url}/metrics/log", LogAccepted, json=_payload(items))

    def health(self) -> Health:
        """``GET /health`` (a 503 answer raises)."""
        return self._request("GET", f"{self.base_url}/health", Health)

    def stats(self, window: str = "1h", *, granularity: str = "1m", model_version: str | None = None) -> Stats:
        """``GET /v1/metrics/stats``."""
        return self._request(
            "GET", f"{self.api_url}/metrics/stats", Stats, params=self._stats_params(window, granularity, model_version)
        )

    def recent_alerts(self, *, severity: str | None = None, limit: int = 50, active_only: bool = False) -> list[Alert]:
        """``GET /v1/alerts/recent``."""
        params = self._alert_params(severity, limit, active_only)
        return self._request("GET", f"{self.api_url}/alerts/recent", AlertList, params=params).alerts

    def acknowledge(self, alert_id: int, *, by: str = "operator", suppress_until: datetime | None = None) -> Alert:
        """``POST /v1/alerts/{id}/acknowledge``."""
        body: dict[str, Any] = {"by": by}
        if suppress_until is not None:
            body["suppress_until"] = suppress_until.isoformat()
        return self._request("POST", f"{self.api_url}/alerts/{alert_id}/acknowledge", Alert, json=body)

    def model_versions(self) -> ModelVersions:
        """``GET /v1/models/versions``."""
        return self._request("GET", f"{self.api_url}/models/versions", ModelVersions)

    def register_model(self, version: str, *, role: str = "canary", path: str | None = None,
                       sha256: str | None = None, size_bytes: int | None = None) -> ModelVersion:
        """``POST /v1/models/versions``."""
        body = {k: v for k, v in {"version": version, "role": role, "path": path, "sha256": sha256,
                                    "size_bytes": size_bytes}.items() if v is not None}
        return self._request("POST", f"{self.api_url}/models/versions", ModelVersion, json=body)

    def rollback(self, to_version: str | None = None, *, reason: str | None = None) -> ModelVersions:
        """``POST /v1/models/rollback``."""
        body = {k: v for k, v in {"to_version": to_version, "reason": reason}.items() if v is not None}
        # Not repeated after a timeout or a 5xx: the first attempt may have rolled back already, and a
        # second would answer 409 (or roll back further) for an operation that succeeded.
        return self._request("POST", f"{self.api_url}/models/rollback", ModelVersions, json=body, idempotent=False)


class AsyncMonitoringClient(_Base):
    """The asyncio twin of :class:`MonitoringClient`: ``log`` is synchronous and non-blocking, the
    sender is a task on the running loop, and the read calls are coroutines. Use ``async with`` or
    ``await client.aclose()``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 2.0,
        batch_size: int = 500,
        max_buffer: int = 10_000,
        flush_interval: float = 1.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, batch_size, max_buffer, flush_interval, max_retries, backoff, max_backoff)
        self._http = httpx.AsyncClient(headers=self.headers, timeout=timeout, transport=transport)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False

    async def __aenter__(self) -> AsyncMonitoringClient:
        self._ensure_task()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _ensure_task(self) -> None:
        if self._task is None and not self._closing:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def log(self, event: InferenceEvent | Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """Queue one event; never blocks or raises. Must be called with a running event loop."""
        queued = self._push(event, fields)
        try:
            self._ensure_task()
        except RuntimeError:  # no running loop: the event waits for the next flush
            return queued
        if queued and len(self._buffer) >= self.batch_size and self._wake is not None:
            self._wake.set()
        return queued

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the buffer is sent (or ``timeout`` passes)."""
        self._ensure_task()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not len(self._buffer) and not self._inflight:
                return True
            if self._wake is not None:
                self._wake.set()
            await asyncio.sleep(0.01)
        return not len(self._buffer) and not self._inflight

    async def aclose(self, timeout: float = 5.0) -> None:
        """Flush (bounded by ``timeout``) and stop; unsent events, including a batch whose request
        was still out, count as dropped."""
        if self._closing:
            return
        await self.flush(timeout)
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        _report_unsent(self._buffer.close(), 0, timeout)
        await self._http.aclose()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            while len(self._buffer) and not self._closing:
                batch = self._buffer.take(self.batch_size)
                self._inflight = len(batch)
                try:
                    ok = await self._send(batch)
                except Exception:  # a bug or a broken transport must not end the sender task
                    ok = self._drop_crashed(batch)
                finally:
                    self._inflight = 0
                if not ok:
                    await asyncio.sleep(max(self.flush_interval, self.backoff))
                    break

    async def _send(self, batch: list[InferenceEvent]) -> bool:
        counters = self._buffer.counters
        attempt = trims = 0
        try:
            while True:
                response = None
                try:
                    response = await self._http.post(f"{self.api_url}/metrics/log", json=_payload(batch))
                    if response.status_code == 202:
                        counters.sent += len(batch)
                        return True
                    if response.status_code not in _RETRY_STATUS:
                        batch = _drop_rejected(batch, response, counters, trims)
                        if batch:
                            trims += 1
                            continue
                        return True
                except httpx.HTTPError:
                    pass
                if attempt >= self.max_retries:
                    break
                counters.retries += 1
                await asyncio.sleep(_delay(attempt, self.backoff, self.max_backoff, response))
                attempt += 1
        except asyncio.CancelledError:
            self._buffer.give_back(batch)  # aclose() cancelled the send: it counts these as dropped
            raise
        counters.failed_batches += 1
        self._buffer.give_back(batch)
        return False

    async def _request(self, method: str, url: str, model: type[BaseModel], **kwargs: Any) -> Any:
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = await self._http.request(method, url, **kwargs)
                if response.is_success:
                    return _parse(model, response)
                if response.status_code not in _RETRY_STATUS or attempt == self.max_retries:
                    raise _error(response)
            except httpx.HTTPError as exc:
                if attempt == self.max_retries:
                    raise MonitoringError(f"monitoring API unreachable: {exc!r}", reason="unreachable") from exc
            await asyncio.sleep(_delay(attempt, self.backoff, self.max_backoff, response))
        raise AssertionError("unreachable")  # pragma: no cover

    async def log_now(self, events: Iterable[InferenceEvent | Mapping[str, Any]]) -> LogAccepted:
        """Send events now, bypassing the buffer."""
        items = [_event(e, {}) for e in events]
        return await self._request("POST", f"{self.api_url}/metrics/log", LogAccepted, json=_payload(items))

    async def health(self) -> Health:
        """``GET /health``."""
        return await self._request("GET", f"{self.base_url}/health", Health)

    async def stats(self, window: str = "1h", *, granularity: str = "1m", model_version: str | None = None) -> Stats:
        """``GET /v1/metrics/stats``."""
        params = self._stats_params(window, granularity, model_version)
        return await self._request("GET", f"{self.api_url}/metrics/stats", Stats, params=params)

    async def recent_alerts(self, *, severity: str | None = None, limit: int = 50, active_only: bool = False) -> list[Alert]:
        """``GET /v1/alerts/recent``."""
        params = self._alert_params(severity, limit, active_only)
        return (await self._request("GET", f"{self.api_url}/alerts/recent", AlertList, params=params)).alerts

    async def model_versions(self) -> ModelVersions:
        """``GET /v1/models/versions``."""
        return await self._request("GET", f"{self.api_url}/models/versions", ModelVersions)

