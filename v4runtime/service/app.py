"""FastAPI app of the scan service.

``POST /v1/scan`` takes the raw bytes of one image as the request body and answers the
:class:`~v4runtime.scanner.ScanResult` as JSON. Each scan is reported to the monitoring API through
:class:`~v4runtime.client.MonitoringClient`, whose bounded background buffer means a slow or dead
monitoring API never slows or fails a scan.

Every error, including 404, 405 and an unexpected crash, answers with the monitoring API's envelope
``{"error": {"code", "message", "details", "request_id"}}`` and an ``X-Request-ID`` header (the
caller's when it is a valid id, ``[A-Za-z0-9._:-]{1,128}``, else a generated one).
"""

from __future__ import annotations

import re
import secrets
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from v4runtime import __version__
from v4runtime.errors import ConfigError
from v4runtime.monitoring.api_errors import (
    api_error_handler,
    envelope,
    request_id_of,
    validation_error_handler,
)
from v4runtime.monitoring.middleware import DEFAULT_BODY_TIMEOUT, BodyTooLarge, EdgeMiddleware
from v4runtime.monitoring.schemas import ErrorEnvelope

#: Largest image body accepted, in bytes (the pixel cap of stream extraction applies as well).
DEFAULT_MAX_BODY = 32 * 1024 * 1024

#: What the monitoring API accepts as a ``model_version`` (see ``InferenceEvent``).
_MODEL_VERSION = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

#: Characters of a caller's X-Request-ID kept in a scan's event id: with ``.`` and 16 hex characters
#: it fits the monitoring API's 64-character request_id (a UUID, 36 characters, is kept whole).
_CALLER_ID_CHARS = 47

_ERRORS = {
    408: "request_timeout: the body stalled for longer than the body timeout",
    413: "payload_too_large: the body is over the size limit (refused before it is read when declared)",
    415: "unsupported_media_type: a multipart form; send the image's raw bytes as the body",
    422: "unreadable_image: not a readable image; `details.reason` is the extractor's reason "
    "(`empty`, `truncated`, `not_an_image`, ...)",
    500: "internal_error: an unexpected failure (logged with the request id)",
}


class _ClientGone(Exception):
    """The client closed the connection before its body was complete."""


def _error(status: int, code: str, message: str, request_id: str, details: Any = None) -> JSONResponse:
    # The edge middleware adds X-Request-ID. A body left unread means the connection cannot carry another request.
    headers = {"Connection": "close"} if status in (408, 413, 415) else None
    return JSONResponse(envelope(code, message, request_id, details), status_code=status, headers=headers)


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
) -> FastAPI:
    """Build the app around one loaded ``scanner`` and an optional ``MonitoringClient``.

    Raises:
        ConfigError: ``monitor`` is given but the model's name is not a ``model_version`` the
            monitoring API accepts (every scan event would be rejected).
    """
    if monitor is not None and not _MODEL_VERSION.match(scanner.model_name):
        raise ConfigError(
            f"model name {scanner.model_name!r} cannot be reported to the monitoring API: a model_version "
            "is 1-64 characters of A-Z a-z 0-9 . _ : - (rename the model card's `name`)"
        )
    started = time.monotonic()
    counters = {"scans": 0, "stego": 0, "errors": 0, "client_disconnects": 0}

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
        content_type = request.headers.get("content-type", "").strip().lower()
        if content_type.startswith("multipart/"):
            return _error(
                415, "unsupported_media_type",
                f"{content_type.split(';')[0]} is not accepted: send the image's raw bytes as the body "
                "(e.g. curl --data-binary @image.png -H 'content-type: application/octet-stream')",
                request_id,
            )
        try:
            body = await _read_body(request, max_body_bytes)
        except _ClientGone:
            counters["client_disconnects"] += 1
            return Response(status_code=499)  # nobody reads it; ends the request without a traceback
        if body is None:
            return _error(413, "payload_too_large", f"image larger than {max_body_bytes} bytes", request_id)
        start = time.perf_counter()
        result = await run_in_threadpool(scanner.scan, body)
        latency_ms = (time.perf_counter() - start) * 1000.0
        counters["scans"] += 1
        if monitor is not None:
            monitor.log(
                request_id=_event_id(request_id, request.headers.get("x-request-id") == request_id),
                model_version=scanner.model_name,
                latency_ms=latency_ms,
                probability=result.probability,
                prediction=None if result.error else ("stego" if result.is_stego else "clean"),
                method=result.method,
                image_format=(result.format or "").lower() or None,
                image_bytes=len(body),
                error=result.error_reason if result.error else None,
            )
        if result.error:
            counters["errors"] += 1
            return _error(
                422, "unreadable_image", result.error, request_id, details={"reason": result.error_reason}
            )
        counters["stego"] += int(result.is_stego)
        data = result.to_dict()
        data.update(path=None, request_id=request_id, model=scanner.model_name)
        return JSONResponse(data)

    return app
