"""FastAPI app of the scan service.

``POST /v1/scan`` takes the raw bytes of one image as the request body and answers the
:class:`~v4runtime.scanner.ScanResult` as JSON. Each scan is reported to the monitoring API through
:class:`~v4runtime.client.MonitoringClient`, whose bounded background buffer means a slow or dead
monitoring API never slows or fails a scan.

At most ``max_scans`` scans run at once (a large image takes hundreds of MB while it is scanned),
and at most ``scan_queue`` more requests wait for a slot; a request beyond those is answered 503
``overloaded`` with ``Retry-After`` before its body is read.

Every error, including 404, 405 and an unexpected crash, answers with the monitoring API's envelope
``{"error": {"code", "message", "details", "request_id"}}`` and an ``X-Request-ID`` header (the
caller's when it is a valid id, ``[A-Za-z0-9._:-]{1,128}``, else a generated one).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from v4runtime import __version__
from v4runtime.config import DEFAULT_SCAN_QUEUE
from v4runtime.errors import ConfigError
from v4runtime.monitoring.api_errors import (
    api_error_handler,
    envelope,
    request_id_of,
    validation_error_handler,
)
from v4runtime.monitoring.middleware import DEFAULT_BODY_TIMEOUT, BodyTooLarge, EdgeMiddleware
from v4runtime.monitoring.schemas import ErrorEnvelope
from v4runtime.scanner import INTERNAL_REASONS, ScanResult, available_cpus

log = logging.getLogger(__name__)

#: Largest image body accepted, in bytes (the pixel cap of stream extraction applies as well).
DEFAULT_MAX_BODY = 32 * 1024 * 1024

#: What the monitoring API accepts as a ``model_version`` (see ``InferenceEvent``).
_MODEL_VERSION = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

#: Characters of a caller's X-Request-ID kept in a scan's event id: with ``.`` and 16 hex characters
#: it fits the monitoring API's 64-character request_id (a UUID, 36 characters, is kept whole).
_CALLER_ID_CHARS = 47

#: Query parameters POST /v1/scan takes (none): an unknown one is refused, never silently ignored.
_QUERY_PARAMS: frozenset[str] = frozenset()

#: Seconds a client refused with 503 ``overloaded`` is told to wait (``Retry-After``).
RETRY_AFTER_S = 1

_ERRORS = {
    408: "request_timeout: the body stalled for longer than the body timeout",
    413: "payload_too_large: the body is over the size limit (refused before it is read when declared)",
    415: "unsupported_media_type: a multipart form; send the image's raw bytes as the body",
    422: "unreadable_image: not a readable image; `details.reason` is the extractor's reason "
    "(`empty`, `truncated`, `not_an_image`, ...). validation_error: an unknown query parameter",
    500: "internal_error: an unexpected failure, not the image's fault (logged with the request id)",
    503: "overloaded: every scan slot and queue place is taken; retry after `Retry-After` seconds",
}


class _ClientGone(Exception):
    """The client closed the connection before its body was complete."""


class _Admission:
    """At most ``running`` scans at once, and at most ``queue`` more requests admitted meanwhile.

    An admitted request counts from before its body is read until it is answered; only the scan itself
    holds one of the ``running`` slots, so a slow upload waits in the queue without holding a CPU.
    Used from the event loop only: the counter needs no lock.
    """

    def __init__(self, running: int, queue: int) -> None:
        self.running, self.queue = running, queue
        self.admitted = 0  # requests between enter() and leave()
        self.scanning = 0  # of which holding a slot
        self._slots = asyncio.Semaphore(running)

    def enter(self) -> bool:
        """Admit one request; False when ``running + queue`` are admitted already."""
        if self.admitted >= self.running + self.queue:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        """The request was answered."""
        self.admitted -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``running`` slots (waiting, in arrival order, for a free one)."""
        async with self._slots:
            self.scanning += 1
            try:
                yield
            finally:
                self.scanning -= 1


def _error(
    status: int, code: str, message: str, request_id: str, details: Any = None, *,
    body_unread: bool = False, headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error envelope (the edge middleware adds X-Request-ID)."""
    headers = dict(headers or {})
    if body_unread:  # the rest of the body would be read as the next request: end the connection
        headers["Connection"] = "close"
    return JSONResponse(envelope(code, message, request_id, details), status_code=status, headers=headers or None)


def _unknown_query(request: Request, request_id: str) -> JSONResponse | None:
    """422 naming the unknown query parameters (``?threshold=0.9`` would otherwise be ignored), else None."""
    unknown = sorted(set(request.query_params) - _QUERY_PARAMS)
    if not unknown:
        return None
    details = [{"field": name, "message": "unknown query parameter", "type": "extra_forbidden"} for name in unknown]
    return _error(
        422, "validation_error",
        f"unknown query parameter '{unknown[0]}': POST /v1/scan takes none (the threshold is the "
        "service's, see /health)",
        request_id, details, body_unread=True,
    )


def _multipart(request: Request, request_id: str) -> JSONResponse | None:
    """415 for a multipart form (the body must be the image's raw bytes), else None."""
    content_type = request.headers.get("content-type", "").strip().lower()
    if not content_type.startswith("multipart/"):
        return None
    return _error(
        415, "unsupported_media_type",
        f"{content_type.split(';')[0]} is not accepted: send the image's raw bytes as the body "
        "(e.g. curl --data-binary @image.png -H 'content-type: application/octet-stream')",
        request_id, body_unread=True,
    )


def _overloaded(admission: _Admission, request_id: str) -> JSONResponse:
    """503 ``overloaded`` with ``Retry-After``, answered before the body is read."""
    return _error(
        503, "overloaded",
        f"the service is at capacity ({admission.running} scans running, {admission.queue} waiting): "
        f"retry in {RETRY_AFTER_S} s",
        request_id, body_unread=True, headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _run_scan(scanner: Any, body: bytes, request_id: str) -> ScanResult:
    """``scanner.scan(body)`` in a worker thread; a failure that is not the image's is logged here
    with the request id, and an exception becomes a result with reason ``internal``."""
    try:
        result: ScanResult = await run_in_threadpool(scanner.scan, body)
    except Exception as exc:  # e.g. inference failing: still answered, counted and reported
        log.exception("scan failed on the service's side (request %s)", request_id)
        return ScanResult(path="<bytes>", error=f"unexpected {type(exc).__name__}: {exc}", error_reason="internal")
    if result.error and result.error_reason in INTERNAL_REASONS:
        log.error("scan failed on the service's side (request %s): %s [%s]", request_id, result.error,
                  result.error_reason)
    return result


def _failure(result: ScanResult, request_id: str) -> JSONResponse:
    """The answer to a scan whose result has an error: 500 when it is not the file's fault, else 422."""
    details = {"reason": result.error_reason}
    if result.error_reason in INTERNAL_REASONS:
        return _error(500, "internal_error", "the scan failed on the service's side, not because of the "
                      "image; the service log has the details under this request id", request_id, details)
    return _error(422, "unreadable_image", result.error or "unreadable image", request_id, details)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it exceeds ``limit`` (never buffered past it).

    Raises:
        BodyStalled: (from the edge middleware, answered 408) no bytes arrived for the body timeout:
            a stalled upload, or a Content-Length larger than what the client sends.
        _ClientGone: the client disconnected mid-upload.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            message = await request.receive()
        except BodyTooLarge:  # the edge middleware counts the bytes of a body without Content-Length
            return None
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _event_id(request_id: str, from_caller: bool) -> str:
    """The request_id of one scan's monitoring event: unique per scan, and correlated with ``request_id``.

    The monitoring API stores one event per request_id (its idempotency key), while an X-Request-ID is
    only a correlation id that many scans may share (a job's id): reused as is, every scan after the
    first would be dropped as a duplicate. A caller's id gets a random suffix; an id the edge
    middleware generated (32 characters) is unique already and is kept as is.
    """
    if not from_caller:
        return request_id
    return f"{request_id[:_CALLER_ID_CHARS]}.{secrets.token_hex(8)}"


def create_scan_app(
    scanner: Any,
    monitor: Any | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT,
    max_scans: int | None = None,
    scan_queue: int = DEFAULT_SCAN_QUEUE,
) -> FastAPI:
    """Build the app around one loaded ``scanner`` and an optional ``MonitoringClient``.

    ``max_scans`` scans run at once (default: the CPUs this process may use) and ``scan_queue`` more
    requests may wait; beyond those a request is answered 503 ``overloaded``.

    Raises:
        ConfigError: ``monitor`` is given but the model's name is not a ``model_version`` the
            monitoring API accepts (every scan event would be rejected), or ``max_scans`` is below 1
            or ``scan_queue`` below 0.
    """
    if (max_scans is not None and max_scans < 1) or scan_queue < 0:
        raise ConfigError(f"max_scans must be at least 1 and scan_queue at least 0, got {max_scans} and {scan_queue}")
    if monitor is not None and not _MODEL_VERSION.match(scanner.model_name):
        raise ConfigError(
            f"model name {scanner.model_name!r} cannot be reported to the monitoring API: a model_version "
            "is 1-64 characters of A-Z a-z 0-9 . _ : - (rename the model card's `name`)"
        )
    started = time.monotonic()
    counters = {"scans": 0, "stego": 0, "errors": 0, "client_disconnects": 0, "overloaded": 0}
    admission = _Admission(max_scans or available_cpus(), scan_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's protocol
        yield
        if monitor is not None:
            await run_in_threadpool(monitor.close)

    app = FastAPI(title="V4 scan service", version=__version__, lifespan=lifespan)
    app.add_exception_handler(StarletteHTTPException, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(EdgeMiddleware, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok", "model": scanner.model_name}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        sent = dropped = invalid = buffered = in_flight = 0
        if monitor is not None:
            c = monitor.counters
            sent, dropped, invalid, buffered, in_flight = c.sent, c.dropped, c.invalid, c.buffered, c.in_flight
        return {
            "status": "ok",
            "version": __version__,
            "model": scanner.model_name,
            "model_sha256": scanner.model_sha256,
            "threshold": scanner.threshold,
            "uptime_s": round(time.monotonic() - started, 3),
            "counters": {
                **counters,
                "scans_running": admission.scanning,
                "scans_waiting": admission.admitted - admission.scanning,
                "monitor_events_sent": sent,
                "monitor_events_buffered": buffered,
                "monitor_events_in_flight": in_flight,
                "monitor_events_dropped": dropped,
                "monitor_events_invalid": invalid,
            },
        }

    @app.post(
        "/v1/scan",
        responses={status: {"model": ErrorEnvelope, "description": text} for status, text in _ERRORS.items()},
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "The raw bytes of one image (JPEG, PNG, GIF, WebP, BMP); not a multipart form.",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def scan(request: Request) -> Response:
        """Scan the image sent as the request body."""
        request_id = request_id_of(request)
        refused = _unknown_query(request, request_id) or _multipart(request, request_id)
        if refused is not None:
            return refused
        if not admission.enter():
            counters["overloaded"] += 1
            return _overloaded(admission, request_id)
        try:
            return await _admitted(request, request_id)
        finally:
            admission.leave()

    async def _admitted(request: Request, request_id: str) -> Response:
        """Read the body, scan it once a slot is free, report it and answer."""
        try:
            body = await _read_body(request, max_body_bytes)
        except _ClientGone:
            counters["client_disconnects"] += 1
            return Response(status_code=499)  # nobody reads it; ends the request without a traceback
        if body is None:
            return _error(413, "payload_too_large", f"image larger than {max_body_bytes} bytes", request_id,
                          body_unread=True)
        async with admission.slot():
            start = time.perf_counter()
            result = await _run_scan(scanner, body, request_id)
            latency_ms = (time.perf_counter() - start) * 1000.0
        counters["scans"] += 1
        if monitor is not None:
            _report(request, request_id, result, latency_ms, len(body))
        if result.error:
            counters["errors"] += 1
            return _failure(result, request_id)
        counters["stego"] += int(result.is_stego)
        data = result.to_dict()
        data.update(path=None, request_id=request_id, model=scanner.model_name, threshold=scanner.threshold)
        return JSONResponse(data)

    def _report(request: Request, request_id: str, result: ScanResult, latency_ms: float, size: int) -> None:
        """Queue the scan's monitoring event (never blocks: the client buffers it)."""
        monitor.log(
            request_id=_event_id(request_id, request.headers.get("x-request-id") == request_id),
            model_version=scanner.model_name,
            latency_ms=latency_ms,
            probability=result.probability,
            prediction=None if result.error else ("stego" if result.is_stego else "clean"),
            method=result.method,
            image_format=(result.format or "").lower() or None,
            image_bytes=size,
            error=result.error_reason if result.error else None,
        )

    return app
